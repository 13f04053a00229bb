#!/usr/bin/env python3
"""Re-runs pycocotools on the committed COCO fixture and exits 1 unless its numbers are the ones
stored there, so the numbers COCOEvaluationTests compares with are pycocotools' own.
Needs: pip install pycocotools. Usage: python3 Tests/detection/check_pycocotools.py [fixture.json]
"""
import json
import math
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts in the checkout
from make_coco_fixture import FIXTURE, pycocotools_numbers  # noqa: E402

# Room for a numpy whose summation order differs; the stored numbers have ~1e-16 rounding.
TOLERANCE = 1e-12


def differences(stored, fresh, path="pycocotools"):
    """Where two JSON values differ beyond TOLERANCE, as readable lines."""
    if isinstance(stored, dict) and isinstance(fresh, dict) and stored.keys() == fresh.keys():
        return [line for key in stored for line in differences(stored[key], fresh[key], f"{path}.{key}")]
    if isinstance(stored, list) and isinstance(fresh, list) and len(stored) == len(fresh):
        return [line for i, (a, b) in enumerate(zip(stored, fresh)) for line in differences(a, b, f"{path}[{i}]")]
    if isinstance(stored, float) and isinstance(fresh, float):
        return [] if math.isclose(stored, fresh, rel_tol=0, abs_tol=TOLERANCE) else [f"{path}: stored {stored!r}, pycocotools {fresh!r}"]
    return [] if stored == fresh else [f"{path}: stored {stored!r}, pycocotools {fresh!r}"]


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else FIXTURE
    with open(path) as file:
        fixture = json.load(file)
    stored = {key: value for key, value in fixture["pycocotools"].items() if key != "version"}
    lines = differences(stored, pycocotools_numbers(fixture))
    for line in lines:
        print(line)
    print(f"{path}: {'differs from' if lines else 'matches'} pycocotools")
    sys.exit(1 if lines else 0)


if __name__ == "__main__":
    main()
