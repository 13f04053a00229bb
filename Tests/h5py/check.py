"""Checks with h5py that files written by `percept convert` (and a model file written by the
Swift tests) have exactly the layout docs/datasets.md describes; also checks bad-input errors."""
import gzip, json, os, struct, subprocess, sys, zlib

import h5py
import numpy as np

percept, work = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def png(path, pixels, palette=None):
    """Writes an 8-bit PNG with Python's zlib (gray, gray+alpha, RGB, RGBA or palette)."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color = 3 if palette is not None else {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
    if palette is not None:
        body += chunk(b"PLTE", bytes(palette))
    body += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + body)


def run(*args, expect_ok=True):
    result = subprocess.run([percept, *args, "--quiet"] if args[0] == "convert" else [percept, *args],
                            capture_output=True, text=True)
    if expect_ok:
        check(f"percept {' '.join(args[:2])} exit", result.returncode == 0, result.stderr)
    return result


def common(f, task):
    check(f"{task} format", f.attrs["format"] == "percept-dataset")
    check(f"{task} version", int(f.attrs["format_version"]) == 1)
    check(f"{task} task", f.attrs["task"] == task)
    check(f"{task} source", isinstance(f.attrs["source"], str) and len(f.attrs["source"]) > 0)
    check(f"{task} images dtype", f["images"].dtype == np.uint8 and f["images"].ndim == 4)
    check(f"{task} images gzip", f["images"].compression == "gzip" and f["images"].shuffle)


rng = np.random.default_rng(0)

# Classification from IDX (gzipped), as Fashion-MNIST ships.
images = rng.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
labels = np.array([0, 2, 1, 2, 0], dtype=np.uint8)
with gzip.open(f"{work}/img.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 5, 6, 4) + images.tobytes())
with gzip.open(f"{work}/lab.gz", "wb") as f:
    f.write(struct.pack(">II", 0x801, 5) + labels.tobytes())
run("convert", "idx", "--images", f"{work}/img.gz", "--labels", f"{work}/lab.gz", "--classes", "a,b,c", "-o", f"{work}/idx.h5")
with h5py.File(f"{work}/idx.h5", "r") as f:
    common(f, "classification")
    check("idx images", np.array_equal(f["images"][:, 0], images))
    check("idx labels", f["labels"].dtype == np.int32 and np.array_equal(f["labels"][:], labels))
    check("idx class names", list(f.attrs["class_names"]) == ["a", "b", "c"])

# Classification from an image folder, with every 8-bit colour type.
pictures = rng.integers(0, 256, size=(4, 3, 5, 3), dtype=np.uint8)
png(f"{work}/folder/cat/0.png", pictures[0])
png(f"{work}/folder/cat/1.png", np.dstack([pictures[1], np.full((3, 5), 255, np.uint8)]))
png(f"{work}/folder/dog/0.png", pictures[2][:, :, 0])
png(f"{work}/folder/dog/1.png", np.dstack([pictures[3][:, :, 0], np.full((3, 5), 255, np.uint8)]))
run("convert", "folder", f"{work}/folder", "-o", f"{work}/folder.h5")
with h5py.File(f"{work}/folder.h5", "r") as f:
    common(f, "classification")
    check("folder shape", f["images"].shape == (4, 3, 3, 5), f["images"].shape)
    check("folder rgb", np.array_equal(f["images"][0], pictures[0].transpose(2, 0, 1)))
    check("folder rgba", np.array_equal(f["images"][1], pictures[1].transpose(2, 0, 1)))
    check("folder gray", all(np.array_equal(f["images"][2, c], pictures[2][:, :, 0]) for c in range(3)))
    check("folder labels", list(f["labels"][:]) == [0, 0, 1, 1])
    check("folder classes", list(f.attrs["class_names"]) == ["cat", "dog"])

# Tagging from a CSV.
for name in ["p0", "p1", "p2"]:
    png(f"{work}/tagimg/{name}.png", rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
with open(f"{work}/tags.csv", "w") as f:
    f.write("image,tags\np0,haze primary\np1,clear\np2,\n")
run("convert", "tags", "--images", f"{work}/tagimg", "--csv", f"{work}/tags.csv", "-o", f"{work}/tags.h5")
with h5py.File(f"{work}/tags.h5", "r") as f:
    common(f, "tagging")
    check("tags names", list(f.attrs["class_names"]) == ["clear", "haze", "primary"])
    check("tags multi-hot", f["tags"].dtype == np.uint8 and f["tags"][:].tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]])

# Detection from COCO JSON, resized: boxes scale with the image.
png(f"{work}/coco/a.png", rng.integers(0, 256, size=(10, 20, 3), dtype=np.uint8))
png(f"{work}/coco/b.png", rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8))
coco = {"images": [{"id": 501, "file_name": "a.png"}, {"id": 502, "file_name": "b.png"}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [{"image_id": 501, "category_id": 3, "bbox": [2, 2, 4, 6]},
                        {"image_id": 501, "category_id": 1, "bbox": [10, 0, 10, 10]},
                        {"image_id": 502, "category_id": 1, "bbox": [0, 5, 5, 5]},
                        {"image_id": 502, "category_id": 3, "bbox": [4, 0, 6, 4], "iscrowd": 1}]}
with open(f"{work}/coco.json", "w") as f:
    json.dump(coco, f)
run("convert", "coco", "--images", f"{work}/coco", "--annotations", f"{work}/coco.json", "--size", "10x10", "-o", f"{work}/coco.h5")
with h5py.File(f"{work}/coco.h5", "r") as f:
    common(f, "detection")
    check("coco boxes dtype", f["boxes"].dtype == np.float32 and f["boxes"].shape == (4, 4))
    check("coco boxes", np.allclose(f["boxes"][:], [[1, 2, 3, 8], [5, 0, 10, 10], [0, 5, 5, 10], [4, 0, 10, 4]]), f["boxes"][:])
    check("coco labels", list(f["box_labels"][:]) == [1, 0, 0, 1])
    check("coco ignore regions", f["box_ignore"].dtype == np.uint8 and list(f["box_ignore"][:]) == [0, 0, 0, 1], f["box_ignore"][:])
    check("coco offsets", list(f["box_offsets"][:]) == [0, 2, 4])
    check("coco image ids", list(f["image_ids"][:]) == [501, 502])
    check("coco original sizes", f["original_sizes"][:].tolist() == [[10, 20], [10, 10]])
    check("coco names", list(f.attrs["class_names"]) == ["person", "car"])
    check("coco category ids", list(f.attrs["category_ids"]) == [1, 3])

# Segmentation from palette and gray index masks.
png(f"{work}/seg/img/x.png", rng.integers(0, 256, size=(2, 3, 3), dtype=np.uint8))
png(f"{work}/seg/img/y.png", rng.integers(0, 256, size=(2, 3, 3), dtype=np.uint8))
palette = [v for i in range(256) for v in (i, 255 - i, 0)]
png(f"{work}/seg/mask/x.png", np.array([[0, 1, 2], [255, 1, 0]], np.uint8), palette=palette)
png(f"{work}/seg/mask/y.png", np.array([[2, 2, 2], [0, 0, 255]], np.uint8))
run("convert", "masks", "--images", f"{work}/seg/img", "--masks", f"{work}/seg/mask", "--classes", "bg,road,car",
    "-o", f"{work}/seg.h5")
with h5py.File(f"{work}/seg.h5", "r") as f:
    common(f, "segmentation")
    check("seg masks", f["masks"].dtype == np.uint8 and f["masks"][:].tolist() == [[[0, 1, 2], [255, 1, 0]], [[2, 2, 2], [0, 0, 255]]])
    check("seg ignore", int(f.attrs["ignore_index"]) == 255)

# Inspect prints the task.
result = run("inspect", f"{work}/coco.h5")
check("inspect", "Percept detection dataset" in result.stdout, result.stdout)

# The model file written by the Swift tests.
with h5py.File(f"{work}/model.h5", "r") as f:
    check("model format", f.attrs["format"] == "percept-model")
    check("model architecture", json.loads(f.attrs["architecture"])["backbone"] == "tiny")
    check("model epoch/step", int(f.attrs["epoch"]) == 3 and int(f.attrs["step"]) == 99)
    check("model parameter", f["parameters/stem.weight"].dtype == np.float32
          and f["parameters/stem.weight"][:].tolist() == [[1, 2, 3], [4, 5, 6]])
    check("model buffer", f["buffers/runningMean"][:].tolist() == [0.5, 0.25, 0.125])
    check("model optimizer", f["optimizer"].attrs["name"] == "sgd"
          and float(f["optimizer"].attrs["learningRate"]) == 0.1
          and f["optimizer/velocity/stem.weight"].shape == (2, 3))

# Bad input: one line naming the file, exit code 1, no output left.
with open(f"{work}/bad.csv", "w") as f:
    f.write("image,tags\np0,haze\nmissing,clear\n")
result = run("convert", "tags", "--images", f"{work}/tagimg", "--csv", f"{work}/bad.csv", "-o", f"{work}/bad.h5", expect_ok=False)
lines = result.stderr.strip().splitlines()
check("bad csv exit", result.returncode == 1, result.returncode)
check("bad csv message", len(lines) == 1 and lines[0].startswith("error: ") and "bad.csv: line 3" in lines[0], result.stderr)
check("bad csv no output", not any(n.startswith("bad.h5") or n.startswith(".bad.h5") for n in os.listdir(work)))
result = run("convert", "idx", "--images", f"{work}/img.gz", "--labels", f"{work}/lab.gz", "-o", f"{work}/idx.h5", expect_ok=False)
check("existing output", result.returncode == 1 and "--force" in result.stderr, result.stderr)
result = run("inspect", f"{work}/tags.csv", expect_ok=False)
check("inspect non-hdf5", result.returncode == 1 and "not an HDF5 file" in result.stderr, result.stderr)

print(f"h5py: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
