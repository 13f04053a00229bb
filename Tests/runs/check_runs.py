#!/usr/bin/env python3
"""Checks a run folder from outside Swift: trains a small classifier and a small tagger with the
built `percept`, reads each run's TensorBoard events with TensorBoard's own reader and compares
them with results.csv, then renders every kind of SVG plot in headless Chromium to PNG and
checks the pictures are not blank. Needs: pip install tensorboard; Debian chromium.

Usage: python3 Tests/runs/check_runs.py PERCEPT [OUTPUT_FOLDER]
"""
import csv, math, os, shutil, subprocess, sys, tempfile, zlib

percept = os.path.abspath(sys.argv[1])
out = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="percept-runs-")
os.makedirs(out, exist_ok=True)
failures = passes = 0


def check(name, ok, detail=""):
    global failures, passes
    print(f"{'ok' if ok else 'FAIL'}: {name}" + (f" ({detail})" if detail and not ok else ""))
    failures += 0 if ok else 1
    passes += 1 if ok else 0


def run(*args):
    result = subprocess.run([percept, *args], capture_output=True, text=True, cwd=out)
    if result.returncode != 0:
        sys.exit(f"percept {' '.join(args)} failed: {result.stderr}")
    return result


# Data: Fashion-MNIST test images if Debian's package is there, else the repository's samples.
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fashion = "/usr/share/datasets/fashion-mnist"
run("convert", "idx", "--images", f"{fashion}/t10k-images-idx3-ubyte.gz", "--labels", f"{fashion}/t10k-labels-idx1-ubyte.gz",
    "-o", "items.h5", "--quiet", "--force")
run("compose", "tagging", "--from", "items.h5", "--count", "200", "--seed", "1", "-o", "tags.h5", "--quiet", "--force")
run("compose", "detection", "--from", "items.h5", "--count", "24", "--seed", "1", "-o", "scenes.h5", "--quiet", "--force")
small = ["--set", "preset=plain", "--set", "widths=[8,16]"]
run("classify", "train", "--data", "items.h5", "--val", "items.h5", "--epochs", "3", "--batch", "256", *small, "--name", "classify")
run("tag", "train", "--data", "tags.h5", "--val", "tags.h5", "--epochs", "3", "--set", "widths=[4,4,4]", "--name", "tag")
run("detect", "train", "--data", "scenes.h5", "--val", "scenes.h5", "--epochs", "1", "--set", "refinements=0", "--name", "detect")
folders = {"classify": f"{out}/runs/classify/classify", "tag": f"{out}/runs/tag/tag", "detect": f"{out}/runs/detect/detect"}

# TensorBoard's reader gives back results.csv.
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
for task, folder in folders.items():
    with open(f"{folder}/results.csv") as file:
        rows = list(csv.DictReader(file))
    events = EventAccumulator(folder)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    columns = [c for c in rows[0] if c != "epoch"]
    check(f"{task}: event tags are the CSV columns", tags == set(columns), f"{sorted(tags)} vs {columns}")
    for column in columns:
        scalars = events.Scalars(column) if column in tags else []
        steps = [s.step for s in scalars]
        check(f"{task}: {column} has a step per epoch", steps == [int(r["epoch"]) for r in rows], f"{steps}")
        for s, r in zip(scalars, rows):
            if not math.isclose(s.value, float(r[column]), rel_tol=1e-5, abs_tol=1e-7):
                check(f"{task}: {column} at epoch {s.step}", False, f"event {s.value}, csv {r[column]}")
                break

# Every SVG kind renders in Chromium to a picture with ink on it.
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
check("chromium is installed", chromium is not None)
kinds = [("classify", "results.svg"), ("classify", "confusion_matrix.svg"), ("classify", "confusion_matrix_normalized.svg"),
         ("tag", "PR_curve.svg"), ("tag", "F1_curve.svg"), ("detect", "PR_curve.svg"), ("detect", "F1_curve.svg")]


def ink(png_path):
    """Fraction of non-white pixels of an RGB(A) 8-bit PNG (Chromium's screenshots)."""
    data = open(png_path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i, idat = {}, 8, b""
    while i < len(data):
        length = int.from_bytes(data[i:i + 4], "big"); kind = data[i + 4:i + 8]; body = data[i + 8:i + 8 + length]
        if kind == b"IHDR": chunks["IHDR"] = body
        if kind == b"IDAT": idat += body
        i += 12 + length
    width, height = int.from_bytes(chunks["IHDR"][0:4], "big"), int.from_bytes(chunks["IHDR"][4:8], "big")
    channels = {2: 3, 6: 4}[chunks["IHDR"][9]]
    raw, stride, previous, dark = zlib.decompress(idat), width * channels, bytearray(width * channels), 0
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b = previous[x]; c = previous[x - channels] if x >= channels else 0
            if kind == 1: line[x] = (line[x] + a) & 255
            elif kind == 2: line[x] = (line[x] + b) & 255
            elif kind == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        dark += sum(1 for x in range(0, stride, channels) if min(line[x:x + 3]) < 200)
        previous = line
    return dark / (width * height)


if chromium:
    for task, name in kinds:
        svg, png = f"{folders[task]}/{name}", f"{out}/{task}-{name[:-4]}.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,820",
                        f"--screenshot={png}", f"file://{svg}"], capture_output=True, timeout=120)
        exists = os.path.exists(png)
        check(f"{task} {name} renders", exists)
        if exists:
            fraction = ink(png)
            check(f"{task} {name} has ink ({fraction:.3f} of the pixels)", 0.002 < fraction < 0.6, f"{fraction}")

print(f"pictures in {out}")
print(f"runs: {passes} passed, {failures} failed")
sys.exit(1 if failures else 0)
