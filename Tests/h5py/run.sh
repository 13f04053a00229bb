#!/usr/bin/env bash
# Layout check from the Python side: Debian's python3-h5py reads the files Percept writes
# (the percept CLI on tiny generated inputs, and a model file written by the test suite) and
# checks them against docs/datasets.md. Run from anywhere; PERCEPT_SCRATCH_PATH picks the
# SwiftPM build folder (default .build).
set -euo pipefail
cd "$(dirname "$0")/../.."
scratch="${PERCEPT_SCRATCH_PATH:-.build}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

swift build --scratch-path "$scratch" --product percept >/dev/null
percept="$(swift build --scratch-path "$scratch" --show-bin-path)/percept"

# A model file with parameters, buffers and optimizer state, written by the Swift code.
PERCEPT_FIXTURE_DIR="$work" swift test --scratch-path "$scratch" --filter DatasetsTests.FixtureTests >"$work/fixture.log" 2>&1 \
    || { cat "$work/fixture.log"; exit 1; }
# A filter that matched no test would pass without writing anything.
[ -f "$work/model.h5" ] || { cat "$work/fixture.log"; echo "run.sh: FixtureTests wrote no $work/model.h5" >&2; exit 1; }

# Debian's interpreter, which has python3-h5py, even when another python3 is first on PATH.
/usr/bin/python3 Tests/h5py/check.py "$percept" "$work"
