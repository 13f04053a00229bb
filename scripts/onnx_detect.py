#!/usr/bin/env python3
"""Runs a detector exported by `percept export` with onnxruntime, as `percept detect predict` runs it:
the image pyramid, dense window scores per level, decoding, per-class NMS, second looks (with
mirror and shift averaging) and clipping. Writes COCO results JSON like `percept detect predict`.

The recipe (scales, thresholds, looks) is the one the model file holds, read from the ONNX
metadata; --set KEY=VALUE changes one, as Percept's own flag does (e.g. --set refinements=0).
Needs: pip install numpy pillow onnxruntime.

Usage: python3 scripts/onnx_detect.py MODEL.onnx IMAGE... [-o detections.json] [--set KEY=VALUE]
"""
import argparse, json, math, sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

f32 = np.float32


def rounded(x):
    """Swift's rounded(): to nearest, halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def sampling(size_in, size_out):
    """Bilinear sampling along one axis with half-pixel centres (PyTorch align_corners=False)."""
    source = np.maximum(f32(size_in) / f32(size_out) * (np.arange(size_out, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
    lower = np.minimum(source.astype(np.int64), size_in - 1)
    return lower, np.where(lower < size_in - 1, lower + 1, lower), (source - lower).astype(f32)


def resized(x, height, width):
    """[N, C, H, W] float32 scaled to height x width, bilinear."""
    (r0, r1, wy), (c0, c1, wx) = sampling(x.shape[2], height), sampling(x.shape[3], width)
    wy, wx = wy[:, None], wx[None, :]
    top, bottom = x[:, :, r0, :], x[:, :, r1, :]
    return ((1 - wy) * ((1 - wx) * top[..., c0] + wx * top[..., c1]) + wy * ((1 - wx) * bottom[..., c0] + wx * bottom[..., c1])).astype(f32)


def area_weights(source, destination):
    """Percept's resampling along one axis as a [destination, source] matrix: a triangle widened
    by the reduction factor, so that scaling down averages the covered area (PIL's BILINEAR)."""
    scale = source / destination
    support = max(scale, 1.0)
    weights = np.zeros((destination, source))
    for x in range(destination):
        center = (x + 0.5) * scale
        low, high = max(0, math.floor(center - support)), min(source, math.ceil(center + support))
        row = np.maximum(0, 1 - np.abs((np.arange(low, high) + 0.5 - center) / support))
        if row.sum() <= 0:  # a single source pixel at the edge: nearest neighbour
            row[:] = 0
            row[min(len(row) - 1, max(0, int(center) - low))] = 1
        weights[x, low:high] = row / row.sum()
    return weights.astype(f32)


def scaled_down(pixels, width, height):
    """[H, W, C] uint8 pixels resized as Percept's Image.resized does: across, then down, rounded."""
    across = np.einsum("xw,hwc->hxc", area_weights(pixels.shape[1], width), pixels.astype(f32))
    down = np.einsum("yh,hxc->yxc", area_weights(pixels.shape[0], height), across)
    return np.clip(np.floor(down + f32(0.5)), 0, 255).astype(np.uint32)


def level(height, width, scale):
    """A pyramid level: the image's size times `scale`, rounded, and its effective scale."""
    h, w = max(1, rounded(f32(height) * f32(scale))), max(1, rounded(f32(width) * f32(scale)))
    return h, w, (f32(w) / f32(width) + f32(h) / f32(height)) / f32(2)


def decode(deltas, square, weights, clamp):
    """R-CNN deltas (dx, dy, dw, dh) relative to `square` (x1, y1, x2, y2) -> a box."""
    w, h = square[2] - square[0], square[3] - square[1]
    cx, cy = square[0] + f32(0.5) * w, square[1] + f32(0.5) * h
    dw, dh = np.minimum(deltas[2] / weights[2], clamp), np.minimum(deltas[3] / weights[3], clamp)
    cx, cy = deltas[0] / weights[0] * w + cx, deltas[1] / weights[1] * h + cy
    hw, hh = f32(0.5) * np.exp(dw) * w, f32(0.5) * np.exp(dh) * h
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh]).astype(f32)


def iou(a, b):
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0


def merge(found, s):
    """Per-class NMS (IoU above nmsIoU suppresses; equal scores keep input order), at most maxDetections."""
    order = sorted(range(len(found)), key=lambda i: -found[i][2])
    kept, suppressed = [], set()
    for rank, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(found[i])
        for j in order[rank + 1:]:
            if j not in suppressed and found[j][0] == found[i][0] and iou(found[i][1], found[j][1]) > s["nmsIoU"]:
                suppressed.add(j)
    return kept[:s["maxDetections"]]


class Detector:
    def __init__(self, path, overrides):
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("task") != "detection":
            sys.exit(f"error: {path}: a {meta.get('task', 'non-Percept')} model, not a Percept detector")
        stored = json.loads(meta["percept_model"])
        if unknown := sorted(set(overrides) - set(stored)):
            sys.exit(f"error: unknown setting {', '.join(unknown)} (the model's: {', '.join(sorted(stored))})")
        self.s = {**stored, **overrides}
        if self.s["boxVoting"]:
            sys.exit("error: box voting is not done here: --set boxVoting=false")
        if self.s.get("looksFromFeatures"):
            sys.exit("error: second looks from the pyramid's maps are not done here: --set looksFromFeatures=false")
        if int(meta.get("window_context", "0")) != 0:
            sys.exit(f"error: {path}: its windows were trained with {meta['window_context']} px of context; this script crops bare windows")
        self.window, self.stride, self.padding = int(meta["window"]), int(meta["stride"]), int(meta["level_padding"])
        self.weights = np.array(json.loads(meta["delta_weights"]), dtype=f32)
        self.clamp = f32(meta["delta_max_log_scale"])
        self.channels = int(meta["input_channels"])

    def run(self, x):
        return self.session.run(["scores", "deltas"], {"images": x})

    def square(self, left, top, scale):
        """The window with top-left corner (left, top) of a level scaled by `scale`, in image pixels."""
        return np.array([left, top, left + self.window, top + self.window], dtype=f32) / f32(scale)

    def pyramid(self, x):
        """Every window scoring at least scoreThreshold on some level: (class, box, score)."""
        _, _, h, w = x.shape
        found = []
        for scale in self.s["scales"]:
            lh, lw, effective = level(h, w, scale)
            image = x if (lh, lw) == (h, w) else resized(x, lh, lw)
            padded = np.pad(image, ((0, 0), (0, 0), (self.padding,) * 2, (self.padding,) * 2))  # pixel value 0: black
            if min(padded.shape[2:]) < self.window:
                continue
            scores, deltas = (a[0] for a in self.run(padded))
            label = scores[1:].argmax(axis=0)
            score = np.take_along_axis(scores[1:], label[None], axis=0)[0]
            ys, xs = np.nonzero(score >= f32(self.s["scoreThreshold"]))
            if len(ys) > self.s["candidatesPerLevel"]:  # the level's best candidates only
                keep = np.argsort(-score[ys, xs], kind="stable")[:self.s["candidatesPerLevel"]]
                ys, xs = ys[keep], xs[keep]
            for y, x_ in zip(ys, xs):
                square = self.square(x_ * self.stride - self.padding, y * self.stride - self.padding, effective)
                found.append((int(label[y, x_]), decode(deltas[:, y, x_], square, self.weights, self.clamp), score[y, x_]))
        return found

    def fitting_window(self, box, h, w, shift):
        """The level and window that fit `box`: its square a window wide, centred, moved by `shift`."""
        cx, half_side = (box[0] + box[2]) / 2, max(box[2] - box[0], box[3] - box[1]) / 2
        side = max((cx + half_side) - (cx - half_side), f32(1))  # the width of the box's square, as Percept computes it
        scales = np.array(self.s["scales"], dtype=f32)
        lh, lw, scale = level(h, w, min(max(f32(self.window) / side, scales.min()), scales.max()))
        half = f32(self.window) / 2
        left = rounded((box[0] + box[2]) / 2 * scale - half + shift[0])
        top = rounded((box[1] + box[3]) / 2 * scale - half + shift[1])
        return lh, lw, scale, left, top

    def second_look(self, found, x):
        """Each detection rescored and regressed from the window that fits it (and its mirror and
        half-stride shifts); its score becomes the geometric mean with the new probability."""
        _, c, h, w = x.shape
        d = f32(self.stride) / 2
        shifts = [(f32(0), f32(0))] + ([(d, 0), (-d, 0), (0, d), (0, -d)] if self.s["shiftAverage"] else [])
        fits = [self.fitting_window(box, h, w, shift) for _, box, _ in found for shift in shifts]
        levels, n = {}, self.window
        batch = np.zeros((len(fits), c, n, n), dtype=f32)  # pixel value 0 (black) outside the level
        for crop, (lh, lw, _, left, top) in zip(batch, fits):
            if (lh, lw) not in levels:
                levels[lh, lw] = resized(x, lh, lw)[0]
            y0, y1, x0, x1 = max(top, 0), min(top + n, lh), max(left, 0), min(left + n, lw)
            if y1 > y0 and x1 > x0:
                crop[:, y0 - top:y1 - top, x0 - left:x1 - left] = levels[lh, lw][:, y0:y1, x0:x1]
        if self.s["flipAverage"]:
            batch = np.concatenate([batch, batch[..., ::-1]])
        scores, deltas = (a[:, :, 0, 0] for a in self.run(np.ascontiguousarray(batch)))
        m, looked = len(fits), []
        for i, (label, _, score) in enumerate(found):
            probability, corners = f32(0), np.zeros(4, dtype=f32)
            for slot in range(i * len(shifts), (i + 1) * len(shifts)):
                p, delta = scores[slot, label + 1], deltas[slot]
                if self.s["flipAverage"]:
                    mirror = deltas[m + slot]
                    p = (p + scores[m + slot, label + 1]) / 2
                    delta = np.array([delta[0] - mirror[0], delta[1] + mirror[1], delta[2] + mirror[2], delta[3] + mirror[3]], dtype=f32) / 2
                _, _, scale, left, top = fits[slot]
                probability += p
                corners += decode(delta, self.square(left, top, scale), self.weights, self.clamp)
            looked.append((label, corners / f32(len(shifts)), np.sqrt(probability / f32(len(shifts)) * score)))
        return looked

    def __call__(self, image):
        """Detections (class, [x1, y1, x2, y2], score) of a PIL image, in its pixels."""
        width, height = image.size
        pixels = np.asarray(image, dtype=np.uint32).reshape(height, width, -1)
        if self.channels == 1 and pixels.shape[2] >= 3:  # Percept's colour rule: BT.601 luma, rounded
            pixels = (pixels[..., :1] * 19595 + pixels[..., 1:2] * 38470 + pixels[..., 2:3] * 7471 + 0x8000) >> 16
        elif self.channels == 3 and pixels.shape[2] < 3:
            pixels = np.repeat(pixels[..., :1], 3, axis=2)
        size = (width, height)
        if max(size) > self.s["maxSide"]:  # larger photos are scaled down first, their boxes scaled back
            k = self.s["maxSide"] / max(size)
            size = (max(1, rounded(width * k)), max(1, rounded(height * k)))
            pixels = scaled_down(pixels, *size)
        x = np.ascontiguousarray((pixels[..., :self.channels].astype(f32) / f32(255)).transpose(2, 0, 1)[None])
        found = merge(self.pyramid(x), self.s)
        for _ in range(self.s["refinements"] if found else 0):
            found = merge(self.second_look(found, x), self.s)
        sx, sy = f32(width) / f32(size[0]), f32(height) / f32(size[1])
        clipped = []
        for label, box, score in found:
            box = np.clip(box, 0, np.array([size[0], size[1]] * 2, dtype=f32)) * np.array([sx, sy, sx, sy], dtype=f32)
            if box[2] > box[0] and box[3] > box[1]:
                clipped.append((label, box, score))
        return clipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("images", nargs="+")
    parser.add_argument("-o", "--output", help="COCO results JSON to write (default: print it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change one setting of the model's recipe")
    args = parser.parse_args()
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    detector = Detector(args.model, overrides)
    categories = detector.s["categoryIDs"] or list(range(1, len(detector.s["classes"]) + 1))
    results = []
    for number, path in enumerate(args.images, start=1):
        for label, box, score in detector(ImageOps.exif_transpose(Image.open(path))):
            results.append({"image_id": number, "category_id": categories[label], "score": float(score), "file_name": path.split("/")[-1],
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    text = json.dumps(results, indent=1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
