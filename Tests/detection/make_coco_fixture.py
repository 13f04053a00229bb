#!/usr/bin/env python3
"""Writes Tests/TasksTests/Fixtures/coco-eval-fixture.json: images with ground-truth boxes and
scored detections, and the numbers pycocotools' COCOeval (iouType 'bbox', default parameters)
computes for them. COCOEvaluationTests replays the images through Percept's COCOEvaluator and
compares; check_pycocotools.py re-runs pycocotools on the committed file.

Boxes are corners [x1, y1, x2, y2, slot] (detections add a score, crowd ground truth a 1) with every coordinate and score
a float32 value, so Swift's Float reads the same numbers. Category slot i is COCO category
categories[i]. Needs: pip install pycocotools (which brings numpy).

Usage: python3 Tests/detection/make_coco_fixture.py [output.json]
"""
import contextlib
import importlib.metadata
import io
import json
import os
import sys

import numpy as np

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "TasksTests", "Fixtures",
                       "coco-eval-fixture.json")
# Not sorted, so slots and pycocotools' sorted category order differ; 9 has no ground truth.
CATEGORIES = [7, 3, 11, 9]


def f32(value):
    return float(np.float32(value))


def box(x1, y1, x2, y2, slot):
    return [f32(x1), f32(y1), f32(x2), f32(y2), slot]


def crowd(x1, y1, x2, y2, slot):
    return box(x1, y1, x2, y2, slot) + [1]


def scored(x1, y1, x2, y2, slot, score):
    return box(x1, y1, x2, y2, slot) + [f32(score)]


def hand_made_images():
    """Images whose cases pycocotools decides by its exact rules, with their ids."""
    images = []
    # Same-class neighbours, each found, plus a lower-scored duplicate of the first (a false
    # positive at every threshold) and a detection of another class on the first; a large box.
    images.append((42, [box(10, 10, 50, 50, 0), box(52, 10, 92, 50, 0), box(100, 100, 220, 220, 2)],
                   [scored(11, 10, 51, 50, 0, 0.9), scored(52, 11, 92, 51, 0, 0.8),
                    scored(10, 10, 50, 49, 0, 0.7), scored(10, 10, 50, 50, 1, 0.6),
                    scored(105, 100, 220, 225, 2, 0.8)]))
    # IoU exactly 0.5 (matches only at 0.50) and exactly 0.75 (matches up to 0.75).
    images.append((7, [box(0, 0, 40, 40, 0), box(100, 100, 140, 140, 0)],
                   [scored(0, 0, 40, 20, 0, 0.5), scored(100, 100, 140, 130, 0, 0.5)]))
    # A detection with equal IoU (2/3) to two ground-truth boxes: pycocotools gives it the later
    # one, so the next detection, which overlaps only that one well, is a false positive.
    images.append((5, [box(0, 0, 10, 10, 1), box(4, 0, 14, 10, 1)],
                   [scored(2, 0, 12, 10, 1, 0.95), scored(5, 0, 15, 10, 1, 0.9)]))
    # Ground truth only.
    images.append((13, [box(20, 20, 60, 70, 0), box(5, 5, 25, 25, 2)], []))
    # Detections only: false positives, including for the category without ground truth.
    images.append((1, [], [scored(0, 0, 30, 30, 0, 0.85), scored(50, 50, 80, 90, 3, 0.99),
                           scored(10, 10, 20, 20, 2, 0.5)]))
    # Near misses: IoU 0.45 and 0.49 (below every threshold), and a true positive tied in score
    # with a false positive of image 5, which comes earlier in the file but later by id. Ground truth of area exactly 32^2 (small and medium) and a
    # large box.
    images.append((2, [box(0, 0, 32, 32, 2), box(100, 0, 200, 100, 2), box(60, 60, 80, 80, 1)],
                   [scored(0, 0, 32, 14.4, 2, 0.7), scored(100, 0, 200, 49, 2, 0.9),
                    scored(60.5, 60.25, 80.5, 80.25, 1, 0.9), scored(0.5, 0.5, 32.5, 32.5, 2, 0.3)]))
    # A small box listed before a medium one, and a detection overlapping the small one better
    # (IoU 900/1024) than the medium one (IoU 1024/1600). For AP_medium the small box is ignored
    # and pycocotools sorts it last, so up to IoU 0.60 the detection matches the medium box.
    images.append((60, [box(0, 0, 30, 30, 0), box(0, 0, 40, 40, 0)], [scored(0, 0, 32, 32, 0, 0.65)]))
    # More than 100 detections of one category: low-scored false positives, and a true positive
    # scored below them that the 100 per image cut drops.
    clutter = [scored(150 + (i % 10) * 3, 150 + (i // 10) * 3, 152 + (i % 10) * 3, 152 + (i // 10) * 3, 1,
                      0.2 + 0.001 * (i % 7)) for i in range(104)]
    images.append((21, [box(0, 0, 50, 50, 1), box(60, 0, 90, 30, 1)],
                   [scored(1, 1, 50, 50, 1, 0.6), scored(60, 0, 90, 30, 1, 0.1)] + clutter))
    # A crowd (iscrowd 1) listed first: detections inside it are ignored however many, one 60%
    # inside it matches it up to IoU 0.60 only, and a detection of the box beside it still counts,
    # though it overlaps the crowd too; a small crowd ignored in every area range.
    images.append((88, [crowd(100, 100, 200, 200, 0), box(0, 0, 40, 40, 0), crowd(50, 0, 60, 10, 2)],
                   [scored(110, 110, 130, 130, 0, 0.95), scored(150, 150, 190, 170, 0, 0.9),
                    scored(120, 105, 125, 190, 0, 0.4), scored(160, 80, 210, 130, 0, 0.85),
                    scored(0, 0, 40, 41, 0, 0.8), scored(30, 0, 110, 40, 0, 0.5), scored(51, 1, 59, 9, 2, 0.7)]))
    return images


def random_images(rng, ids):
    """Images of a few jittered true positives, duplicates, misses and false positives."""
    images = []
    for image_id in ids:
        ground_truth, detections = [], []
        for _ in range(rng.integers(1, 6)):
            slot = int(rng.integers(0, 3))
            width, height = rng.uniform(8, 120, size=2)
            x1, y1 = rng.uniform(0, 200, size=2)
            ground_truth.append(box(x1, y1, x1 + width, y1 + height, slot))
            kind = rng.random()
            if kind < 0.15:
                continue  # missed
            # Scores on a 1/16 grid, so several detections tie.
            jitter = rng.normal(0, 0.08 if kind < 0.8 else 0.3, size=4) * [width, height, width, height]
            score = np.round(rng.uniform(0.3, 1.0) * 16) / 16
            detections.append(scored(x1 + jitter[0], y1 + jitter[1], x1 + width + jitter[2],
                                     y1 + height + jitter[3], slot, score))
            if rng.random() < 0.3:  # a duplicate, scored lower
                detections.append(scored(x1 + jitter[1], y1 + jitter[0], x1 + width + jitter[3],
                                         y1 + height + jitter[2], slot, score - 0.25))
        for _ in range(rng.integers(0, 3)):  # background false positives
            x1, y1 = rng.uniform(0, 250, size=2)
            detections.append(scored(x1, y1, x1 + rng.uniform(5, 60), y1 + rng.uniform(5, 60),
                                     int(rng.integers(0, 4)), np.round(rng.uniform(0, 1) * 16) / 16))
        images.append((image_id, ground_truth, detections))
    return images


def coco_box(corners):
    """[x1, y1, x2, y2, ...] -> COCO [x, y, w, h]; exact in doubles for float32 corners."""
    return [corners[0], corners[1], corners[2] - corners[0], corners[3] - corners[1]]


def pycocotools_numbers(fixture):
    """COCOeval's numbers for the fixture's images: stats, and per-category AP and AP50 by slot."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = fixture["categories"]
    dataset = {"images": [], "annotations": [], "categories": [{"id": c, "name": str(c)} for c in categories]}
    results = []
    for image in fixture["images"]:
        dataset["images"].append({"id": image["id"], "width": 256, "height": 256})
        for corners in image["ground_truth"]:
            bbox = coco_box(corners)
            dataset["annotations"].append({"id": len(dataset["annotations"]) + 1, "image_id": image["id"],
                                           "category_id": categories[corners[4]], "bbox": bbox,
                                           "area": bbox[2] * bbox[3], "iscrowd": corners[5] if len(corners) > 5 else 0})
        for corners in image["detections"]:
            results.append({"image_id": image["id"], "category_id": categories[corners[4]],
                            "bbox": coco_box(corners), "score": corners[5]})
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO()
        ground_truth.dataset = dataset
        ground_truth.createIndex()
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()

    # precision is [T, R, K, A, M]: K in sorted category id order, area 'all', maxDets 100.
    precision = evaluation.eval["precision"]
    sorted_ids = list(evaluation.params.catIds)

    def defined_mean(values):
        values = values[values > -1]
        return float(np.mean(values)) if values.size else None

    per_class_ap = [defined_mean(precision[:, :, sorted_ids.index(c), 0, 2]) for c in categories]
    per_class_ap50 = [defined_mean(precision[0, :, sorted_ids.index(c), 0, 2]) for c in categories]
    return {"stats": [float(s) for s in evaluation.stats], "per_class_ap": per_class_ap,
            "per_class_ap50": per_class_ap50,
            "iou_thresholds": [float(t) for t in evaluation.params.iouThrs],
            "recall_thresholds": [float(r) for r in evaluation.params.recThrs]}


def fixture_json(fixture):
    """The fixture as JSON with one image, and one pycocotools entry, a line."""
    images = ",\n  ".join(json.dumps(image) for image in fixture["images"])
    numbers = ",\n  ".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in fixture["pycocotools"].items())
    return (f'{{"categories": {json.dumps(fixture["categories"])},\n "images": [\n  {images}\n ],\n'
            f' "pycocotools": {{\n  {numbers}\n }}\n}}\n')


def main():
    output = sys.argv[1] if len(sys.argv) > 1 else FIXTURE
    rng = np.random.default_rng(20240611)
    images = hand_made_images() + random_images(rng, [101, 3, 64, 30, 77, 12])
    fixture = {"categories": CATEGORIES,
               "images": [{"id": i, "ground_truth": g, "detections": d} for i, g, d in images]}
    fixture["pycocotools"] = dict(version=importlib.metadata.version("pycocotools"), **pycocotools_numbers(fixture))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as file:
        file.write(fixture_json(fixture))
    stats = fixture["pycocotools"]["stats"]
    print(f"wrote {output}: {len(images)} images, AP {stats[0]:.6f}, AP50 {stats[1]:.6f}, AP75 {stats[2]:.6f}")


if __name__ == "__main__":
    main()
