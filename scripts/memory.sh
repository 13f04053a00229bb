#!/usr/bin/env bash
# Training memory must not grow with the dataset (issue 13). Writes two classification files
# of 3x64x64 noise images with h5py (10,000 and 200,000 images by default, the second about
# 2.5 GB on disk: noise does not compress), trains one epoch on each with the same settings
# and prints each run's peak RSS and their ratio. Usage: scripts/memory.sh [SMALL] [LARGE].
# Needs Debian's python3-h5py and GNU time; WORK (default a temporary folder) keeps the files.
set -euo pipefail
cd "$(dirname "$0")/.."
small="${1:-10000}" large="${2:-200000}"
work="${WORK:-$(mktemp -d)}"
[ -n "${WORK:-}" ] || trap 'rm -rf "$work"' EXIT
swift build -c release --product percept >/dev/null
percept="$(swift build -c release --show-bin-path)/percept"

make_dataset() {  # ROWS PATH
    [ -f "$2" ] && return
    /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
rows, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
chunk = 21  # about 256 KiB of 3x64x64 images, as Percept writes them
with h5py.File(path + ".tmp", "w") as f:
    f.attrs["format"] = "percept-dataset"
    f.attrs["format_version"] = 1
    f.attrs["task"] = "classification"
    f.attrs["source"] = "scripts/memory.sh: uniform noise"
    f.attrs["class_names"] = [f"class {k}" for k in range(10)]
    images = f.create_dataset("images", (rows, 3, 64, 64), np.uint8, chunks=(chunk, 3, 64, 64), shuffle=True, compression="gzip", compression_opts=4)
    block = 4200
    for start in range(0, rows, block):
        n = min(block, rows - start)
        images[start:start + n] = rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
    f.create_dataset("labels", data=rng.integers(0, 10, rows, dtype=np.int32), chunks=(4096,), shuffle=True, compression="gzip", compression_opts=4)
import os; os.rename(path + ".tmp", path)
PY
}

peak_rss() {  # ROWS -> peak RSS in KiB of one epoch
    local data="$work/noise-$1.h5" out="$work/model-$1.h5"
    make_dataset "$1" "$data"
    rm -f "$out" "$work/model-$1.last.h5"
    /usr/bin/time -f '%M' -o "$work/rss-$1" "$percept" classify train --data "$data" --epochs 1 \
        --set preset=plain --set 'widths=[8,16]' --batch 128 -o "$out" >"$work/train-$1.log" 2>&1 \
        || { cat "$work/train-$1.log" >&2; exit 1; }
    cat "$work/rss-$1"
}

a=$(peak_rss "$small") b=$(peak_rss "$large")
printf 'images %9d  file %6d MB  peak RSS %7.1f MB\n' "$small" $(( $(stat -c %s "$work/noise-$small.h5") / 1000000 )) "$(echo "$a / 1024" | bc -l)"
printf 'images %9d  file %6d MB  peak RSS %7.1f MB\n' "$large" $(( $(stat -c %s "$work/noise-$large.h5") / 1000000 )) "$(echo "$b / 1024" | bc -l)"
printf 'ratio %.3f (goal: at most 1.10)\n' "$(echo "$b / $a" | bc -l)"
[ "$(echo "$b <= 1.1 * $a" | bc -l)" = 1 ]
