#!/usr/bin/env bash
# Regenerates the seed corpus in Fuzz/Corpus (committed; run only to change it). Small valid
# inputs of every kind each reader accepts: PNGs of each colour type and depth, IDX files raw
# and gzipped, tags CSVs, COCO JSON, and Percept HDF5 files written by Percept itself.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=Fuzz/Corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{PNG,IDX,COCO,Tags,HDF5}
ln -s PNG "$corpus/Mask"   # the mask reader starts from the same PNGs
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$corpus" "$work" <<'PY'
import gzip, json, os, struct, sys, zlib
corpus, work = sys.argv[1], sys.argv[2]

def png(width, height, color_type, bit_depth, rows, palette=None, trns=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + row for row in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette: out += chunk(b"PLTE", palette)
    if trns: out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

seeds = {
    "gray8": png(3, 2, 0, 8, [bytes([0, 1, 2]), bytes([3, 255, 4])]),
    "gray1": png(8, 1, 0, 1, [bytes([0b10110010])]),
    "gray16": png(2, 2, 0, 16, [struct.pack(">HH", 1, 2), struct.pack(">HH", 255, 0)]),
    "gray-alpha8": png(2, 1, 4, 8, [bytes([1, 255, 2, 0])]),
    "gray-alpha16": png(1, 1, 4, 16, [struct.pack(">HH", 3, 65535)]),
    "gray-trns": png(2, 1, 0, 8, [bytes([1, 2])], trns=struct.pack(">H", 2)),
    "rgb8": png(2, 2, 2, 8, [bytes(range(6)), bytes(range(6, 12))]),
    "rgba8": png(1, 2, 6, 8, [bytes([1, 2, 3, 128]), bytes([4, 5, 6, 255])]),
    "rgb16": png(1, 1, 2, 16, [struct.pack(">HHH", 1, 2, 3)]),
    "palette4": png(4, 1, 3, 4, [bytes([0x01, 0x23])], palette=bytes(range(12))),
    "palette8-trns": png(2, 1, 3, 8, [bytes([0, 2])], palette=bytes(range(9)), trns=bytes([0, 128])),
}
for name, data in seeds.items():
    open(f"{corpus}/PNG/{name}.png", "wb").write(data)

def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)
images, labels = idx([2, 2, 3], range(12)), idx([2], [0, 1])
for name, data in {"images": images, "labels": labels, "volume": idx([1, 1, 2, 2], [9] * 4)}.items():
    open(f"{corpus}/IDX/{name}.idx", "wb").write(data)
    open(f"{corpus}/IDX/{name}.idx.gz", "wb").write(gzip.compress(data))

coco = {"images": [{"id": 42, "file_name": "a.png", "width": 8, "height": 4},
                   {"id": 7, "file_name": "b.png", "width": 4, "height": 8}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [{"id": 1, "image_id": 42, "category_id": 18, "bbox": [2, 1, 4, 2], "iscrowd": 0},
                        {"id": 2, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1.5, 1], "iscrowd": 1},
                        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 2, 2, 4]}]}
open(f"{corpus}/COCO/instances.json", "w").write(json.dumps(coco))
open(f"{corpus}/COCO/minimal.json", "w").write('{"images": [], "categories": [], "annotations": []}')

tags = {
    "spaces.csv": "image,tags\np0,haze primary\np1.png,\np2,primary\n",
    "semicolons.csv": "image,tags\r\np0,Ankle boot; Bag\np1,Ankle boot;\np2,\n",
    "quoted.csv": 'image,tags\n"p0","haze primary"\n"p1",""\n',
    "duplicates.csv": "image,tags\np0,haze\np1,Bag\np0,haze\n",
}
for name, text in tags.items():
    open(f"{corpus}/Tags/{name}", "w").write(text)

# Inputs for the HDF5 seeds, converted below by percept.
os.makedirs(f"{work}/img/a"); os.makedirs(f"{work}/img/b"); os.makedirs(f"{work}/masks")
for path in ("a/0.png", "b/1.png"):
    open(f"{work}/img/{path}", "wb").write(seeds["rgb8"])
for name in ("p0.png", "p1.png", "p2.png", "a.png"):
    open(f"{work}/{name}", "wb").write(seeds["rgb8"])
open(f"{work}/masks/p0.png", "wb").write(png(2, 2, 0, 8, [bytes([0, 1]), bytes([255, 1])]))
open(f"{work}/tags.csv", "w").write(tags["spaces.csv"])
json.dump({"images": [{"id": 1, "file_name": "a.png", "width": 2, "height": 2}], "categories": [{"id": 3, "name": "x"}],
           "annotations": [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}]}, open(f"{work}/coco.json", "w"))
open(f"{work}/images.idx", "wb").write(images); open(f"{work}/labels.idx", "wb").write(labels)
PY

swift build --product percept >/dev/null
percept="$(swift build --show-bin-path)/percept"
mkdir -p "$work/seg"; cp "$work/p0.png" "$work/seg/p0.png"
"$percept" convert idx --images "$work/images.idx" --labels "$work/labels.idx" -o "$corpus/HDF5/classification.h5" --quiet
"$percept" convert tags --images "$work" --csv "$work/tags.csv" -o "$corpus/HDF5/tagging.h5" --quiet
"$percept" convert coco --images "$work" --annotations "$work/coco.json" -o "$corpus/HDF5/detection.h5" --quiet
"$percept" convert masks --images "$work/seg" --masks "$work/masks" -o "$corpus/HDF5/segmentation.h5" --quiet
PERCEPT_FIXTURE_DIR="$work" swift test --filter DatasetsTests.FixtureTests >/dev/null
cp "$work/model.h5" "$corpus/HDF5/model.h5"
du -sh "$corpus"/*
