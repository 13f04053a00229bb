#!/usr/bin/env python3
"""Exports every shipped model with the built `percept`, with ONNX test data sets of the sample
images (Percept's own outputs), then checks each file with onnx's full checker and runs it with
onnxruntime: every output within 1e-4 of Percept's. Needs: pip install onnx onnxruntime.

Usage: python3 Tests/export/check_onnx.py PERCEPT [OUTPUT_FOLDER]
"""
import glob, json, os, subprocess, sys, tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

percept = os.path.abspath(sys.argv[1])
out = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="percept-onnx-")
os.makedirs(out, exist_ok=True)
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
passes = failures = 0


def check(name, ok, detail=""):
    global passes, failures
    print(f"{'ok' if ok else 'FAIL'}: {name}" + (f" ({detail})" if detail else ""))
    passes += ok
    failures += not ok


def samples(folder, count):
    return sorted(glob.glob(f"{root}/samples/{folder}/*.png"))[:count]


def check_test_data(name, session):
    """Every output of every test data set of `name`'s export: onnxruntime within 1e-4 of Percept."""
    names = [o.name for o in session.get_outputs()]
    read = lambda f: numpy_helper.to_array(onnx.TensorProto.FromString(open(f, "rb").read()))
    for folder_path in sorted(glob.glob(f"{out}/{name}.test_data/test_data_set_*")):
        got = session.run(None, {"images": read(f"{folder_path}/input_0.pb")})
        for k, output in enumerate(names):
            expected = read(f"{folder_path}/output_{k}.pb")
            difference = float(np.abs(got[k] - expected).max())
            check(f"{name} {os.path.basename(folder_path)} {output} {list(got[k].shape)}: max |onnxruntime - percept| {difference:.2e}",
                  got[k].shape == expected.shape and difference <= 1e-4)


models = [("fashion-classifier", "fashion", 6), ("fashion-classifier-long", "fashion", 3), ("fashion-window-classifier", "fashion", 3),
          ("fashion-tagger", "canvases", 4), ("fashion-segmenter", "segmentation", 4), ("fashion-detector", "scenes", 2),
          ("fashion-multi", "scenes", 2)]
for name, folder, count in models:
    path = f"{out}/{name}.onnx"
    subprocess.run([percept, "export", "--model", f"{root}/models/{name}.h5", "-o", path, "--force",
                    "--test-data", *samples(folder, count)], check=True, capture_output=True)
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
        check(f"{name}: onnx.checker (full)", True)
    except Exception as error:  # noqa: BLE001
        check(f"{name}: onnx.checker (full)", False, str(error).splitlines()[0])
    metadata = {p.key: p.value for p in model.metadata_props}
    check(f"{name}: metadata", {"task", "classes", "input_channels", "mean", "std", "percept_version"} <= set(metadata), str(sorted(metadata)))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    check_test_data(name, session)
    # Any batch size; any image size for the fully convolutional exports.
    inputs = session.get_inputs()[0].shape
    check(f"{name}: dynamic batch", isinstance(inputs[0], str), str(inputs))
    if metadata["task"] in ("detection", "segmentation", "multi"):
        check(f"{name}: dynamic height and width", isinstance(inputs[2], str) and isinstance(inputs[3], str), str(inputs))
        channels = int(metadata["input_channels"])
        outputs = session.run(None, {"images": np.random.default_rng(0).random((2, channels, 72, 100), dtype=np.float32)})
        check(f"{name}: a batch of two 100x72 images runs", outputs[0].shape[0] == 2, str([o.shape for o in outputs]))

# A multi-task file written by h5py (Tests/export/make_multi.py): one graph, an output per head,
# any image size.
h5py_python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
subprocess.run([h5py_python, f"{root}/Tests/export/make_multi.py", root, f"{out}/multi.h5"], check=True)
subprocess.run([percept, "export", "--model", f"{out}/multi.h5", "-o", f"{out}/multi.onnx", "--force",
                "--test-data", *samples("scenes", 2), *samples("segmentation", 2)], check=True, capture_output=True)
model = onnx.load(f"{out}/multi.onnx")
onnx.checker.check_model(model, full_check=True)
check("multi: onnx.checker (full)", True)
session = ort.InferenceSession(f"{out}/multi.onnx", providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
check("multi: an output per head", names == ["classification_probabilities", "tagging_scores", "detection_scores",
                                             "detection_deltas", "segmentation_scores"], str(names))
metadata = {p.key: p.value for p in model.metadata_props}
check("multi: metadata", metadata["task"] == "multi" and sorted(json.loads(metadata["classes"])) == ["classification", "detection", "segmentation", "tagging"])
check_test_data("multi", session)

# The host program of docs/export.md: the exported detector in onnxruntime with the pyramid, NMS
# and second looks in Python gives `percept detect predict`'s detections, with the model's own
# recipe, with second looks off, and on photos larger than max_side.
scenes = samples("scenes", 100)
# Photos larger than max_side (640), scaled down before the pyramid: a grey 800x700 canvas and an
# RGB 900x720 one (the colour rule), each holding a sample scene scaled so that after the
# scaling down its items have their trained size.
from PIL import Image
canvas = Image.new("L", (800, 700), 0)
canvas.paste(Image.open(scenes[0]).resize((200, 200), Image.BILINEAR), (300, 250))
canvas.save(f"{out}/large-grey.png")
canvas = Image.new("L", (900, 720), 0)
canvas.paste(Image.open(scenes[1]).resize((225, 225), Image.BILINEAR), (50, 400))
Image.merge("RGB", (canvas, canvas.point(lambda v: min(255, int(v * 0.9) + 10)), canvas.point(lambda v: int(v * 0.8)))).save(f"{out}/large-rgb.png")
large = [f"{out}/large-grey.png", f"{out}/large-rgb.png"]
for recipe, images in (([], scenes), (["--set", "refinements=0"], scenes), ([], large)):
    label = (" ".join(recipe[1:]) or "model's recipe") + (", photos above max_side" if images is large else "")
    subprocess.run([percept, "detect", "predict", "--model", f"{root}/models/fashion-detector.h5", *images, "--force",
                    "-o", f"{out}/percept.json", *recipe], check=True, capture_output=True)
    subprocess.run([sys.executable, f"{root}/scripts/onnx_detect.py", f"{out}/fashion-detector.onnx", *images,
                    "-o", f"{out}/onnx.json", *recipe], check=True)
    expected, got = json.load(open(f"{out}/percept.json")), json.load(open(f"{out}/onnx.json"))
    check(f"onnx_detect.py ({label}): as many detections as percept detect predict", len(got) == len(expected) > 0,
          f"{len(got)} and {len(expected)}")
    same = [a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"] and a["file_name"] == b["file_name"]
            for a, b in zip(got, expected)]
    check(f"onnx_detect.py ({label}): the same images and classes in the same order", all(same), f"{same.count(False)} differ")
    box = max((abs(p - q) for a, b in zip(got, expected) for p, q in zip(a["bbox"], b["bbox"])), default=0)
    score = max((abs(a["score"] - b["score"]) for a, b in zip(got, expected)), default=0)
    check(f"onnx_detect.py ({label}): boxes within 1e-3 (max {box:.2e}), scores within 1e-4 (max {score:.2e})",
          box <= 1e-3 and score <= 1e-4)

print(f"onnx: {passes} passed, {failures} failed")
sys.exit(1 if failures else 0)
