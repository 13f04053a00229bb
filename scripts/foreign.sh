#!/usr/bin/env bash
# Test and validation sets that differ from the training data the way another generator's do
# (issue 34), and the shipped models measured on them.
#
#   bash scripts/foreign.sh DATA_DIR [MODEL ...]
#
# DATA_DIR holds fmnist-train.h5 and fmnist-test.h5 (models/README.md, "Data"); the sets are
# written to DATA_DIR/foreign/. Test sets come from the test split (seed 2, as the standard test
# canvases) and are only ever measured on; the validation sets come from the training split
# (seed 3) and are what recipes are chosen on. With MODEL arguments (default: the shipped tagger,
# detector and segmenter) each is evaluated on every test set of its task.
set -euo pipefail
cd "$(dirname "$0")/.."
percept=$PWD/.build/release/percept
[ -x "$percept" ] || { echo "error: $percept not built; run scripts/setup.sh first" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: bash scripts/foreign.sh DATA_DIR [MODEL ...]" >&2; exit 2; }
data=$1; shift
for split in train test; do
    [ -f "$data/fmnist-$split.h5" ] || { echo "error: $data/fmnist-$split.h5: missing (see models/README.md, Data)" >&2; exit 1; }
done
out=$data/foreign
mkdir -p "$out"

# name : options : source split : seed.  ours = compose's defaults; f1-f3 = other settings of the
# options the task descriptions leave open; v1, v2 = validation sets with settings of their own.
sets=(
    "test-ours::test:2"
    "test-f1:--noise-distribution uniform --noise 0.0785 --resample bilinear-corners --overlap-rule brighter:test:2"
    "test-f2:--noise-distribution uniform --noise 0.118 --resample nearest --overlap-rule later:test:2"
    "test-f3:--noise-distribution half-normal --noise 0.08 --resample bicubic --overlap-rule later:test:2"
    "val-v1:--noise-distribution uniform --noise 0.098 --resample bilinear-corners --overlap-rule later:train:3"
    "val-v2:--noise-distribution half-normal --noise 0.1 --resample nearest --overlap-rule brighter:train:3"
)
tasks=("tagging:canvases:2000" "detection:scenes:1000" "segmentation:masks:2000")
for entry in "${tasks[@]}"; do
    IFS=: read -r task prefix count <<< "$entry"
    for set in "${sets[@]}"; do
        IFS=: read -r name options split seed <<< "$set"
        file=$out/$prefix-$name.h5
        [ -f "$file" ] && continue
        # shellcheck disable=SC2086  # options are words
        "$percept" compose "$task" --from "$data/fmnist-$split.h5" --count "$count" --seed "$seed" -o "$file" --quiet $options > /dev/null
    done
done
echo "sets in $out"

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/fashion-tagger.h5 models/fashion-detector.h5 models/fashion-segmenter.h5)
for model in "${models[@]}"; do
    task=$("$percept" inspect "$model" | sed -n '1s/.*, task \([a-z]*\),.*/\1/p')
    case $task in
        tagging) command=tag; prefix=canvases ;;
        detection) command=detect; prefix=scenes ;;
        segmentation) command=segment; prefix=masks ;;
        *) echo "$model: task '$task' has no foreign test sets (classification is Fashion-MNIST's test split)"; continue ;;
    esac
    for name in ours f1 f2 f3; do
        printf '%s on %s: ' "$model" "test-$name"
        "$percept" "$command" eval --model "$model" --data "$out/$prefix-test-$name.h5" | grep -m1 -E 'mAP|AP |mIoU'
    done
done
