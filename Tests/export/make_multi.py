#!/usr/bin/env python3
"""Writes a four-head multi-task model file with h5py, in the layout docs/datasets.md documents,
from the shipped models: fashion-classifier-long's backbone and classification head, the
segmenter's head (trained on that backbone's shape), the detector's window head on the ResNet's
stage2 map (64 channels at stride 4, as the plain CNN's) and a tagging head of random weights
for its 128-channel map. The heads' predictions mean little on a backbone they were not all
trained with; what the file is for is checking that Percept reads what h5py writes and that the
multi-task ONNX graph computes what Percept does (Tests/export/check_onnx.py).

Usage: /usr/bin/python3 Tests/export/make_multi.py ROOT OUTPUT.h5   (Debian's python3-h5py)
"""
import json, sys

import h5py
import numpy as np

root, out = sys.argv[1], sys.argv[2]


def model(name):
    f = h5py.File(f"{root}/models/{name}.h5", "r")
    return f, json.loads(f.attrs["architecture"])


classifier, classify = model("fashion-classifier-long")
segmenter, segment = model("fashion-segmenter")
detector, detect = model("fashion-detector")
_, tag = model("fashion-tagger")
shared = {key: classify[key] for key in ("backbone", "inputChannels", "mean", "std")}
tag = {**tag, **shared, "head": {**tag["head"], "inFeatures": 128}}
architecture = {"task": "multi", **shared, "heads": {
    "classification": classify, "tagging": tag, "detection": {**detect, **shared}, "segmentation": {**segment, **shared}}}

rng = np.random.default_rng(7)
with h5py.File(out, "w") as f:
    f.attrs["format"] = "percept-model"
    f.attrs["format_version"] = 1
    f.attrs["task"] = "multi"
    f.attrs["architecture"] = json.dumps(architecture)
    parameters, buffers = f.create_group("parameters"), f.create_group("buffers")
    for group, kind in ((parameters, "parameters"), (buffers, "buffers")):
        for key, value in classifier[kind].items():
            if key.startswith("backbone."):
                group[key] = value[...]
            elif key.startswith("head."):
                group["classification." + key[5:]] = value[...]
        for source, task in ((segmenter, "segmentation"), (detector, "detection")):
            for key, value in source[kind].items():
                if key.startswith("head."):
                    group[task + "." + key[5:]] = value[...]
    classes = len(tag["classes"])
    parameters["tagging.output.weight"] = (rng.standard_normal((classes, 128)) * 0.1).astype(np.float32)
    parameters["tagging.output.bias"] = np.zeros(classes, dtype=np.float32)
print(f"wrote {out}")
