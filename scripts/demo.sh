#!/usr/bin/env bash
# The main job on the shipped defaults: runs the models in models/ on the sample images in
# samples/ and writes their predictions to out/ (needs the release build from scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
percept=.build/release/percept
[ -x "$percept" ] || { echo "error: $percept not built; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p out

"$percept" classify predict --model models/fashion-classifier.h5 samples/fashion -o out/fashion-predictions.csv --force
echo "== Fashion-MNIST classifier on samples/fashion (out/fashion-predictions.csv)"
cat out/fashion-predictions.csv

if [ -f models/fashion-tagger.h5 ]; then
    "$percept" tag predict --model models/fashion-tagger.h5 samples/canvases -o out/canvas-tags.csv --force
    echo "== multi-item tagger on samples/canvases (out/canvas-tags.csv)"
    cat out/canvas-tags.csv
fi

if [ -f models/fashion-detector.h5 ]; then
    "$percept" detect predict --model models/fashion-detector.h5 samples/scenes --annotations samples/scenes/annotations.json \
        --draw out/scenes-drawn -o out/scene-detections.json --force
    echo "== sliding-window detector on samples/scenes (out/scene-detections.json, drawings in out/scenes-drawn/)"
    head -c 600 out/scene-detections.json; echo
fi

if [ -f models/fashion-segmenter.h5 ]; then
    "$percept" segment predict --model models/fashion-segmenter.h5 samples/segmentation -o out/masks --overlay out/overlays --force
    echo "== segmenter on samples/segmentation (index masks in out/masks/, overlays in out/overlays/)"
fi

if [ -f models/fashion-multi.h5 ]; then
    "$percept" multi predict --model models/fashion-multi.h5 samples/scenes --annotations samples/scenes/annotations.json \
        -o out/multi --draw out/multi-drawn --force
    echo "== multi-task model (one backbone, four heads) on samples/scenes (out/multi/: classes.csv, tags.csv, detections.json, masks/; one picture per scene in out/multi-drawn/)"
    cat out/multi/tags.csv
fi
