import Foundation
import PerceptDatasets

// Box utilities for a sliding-window detector, in the spirit of torchvision's `ops/boxes.py`
// and `_utils.BoxCoder`: each one does one job on boxes in image pixels. Boxes are
// `DetectionBox` corners (x1, y1) to (x2, y2) with width `x2 - x1`; the IoU of two boxes is
// Datasets' `intersectionOverUnion(_:_:)`, which every helper here uses.

/// One detection in image coordinates: a box (its `label` is the class index) and its score.
public struct Detection: Sendable, Equatable {
    public var box: DetectionBox
    public var score: Float

    public init(box: DetectionBox, score: Float) {
        self.box = box; self.score = score
    }
}

/// Area of a box, `(x2 - x1) * (y2 - y1)`; 0 for a box with no width or height.
@inlinable
public func boxArea(_ box: DetectionBox) -> Float {
    max(0, box.x2 - box.x1) * max(0, box.y2 - box.y1)
}

/// Indices of `detections` by score, highest first; equal scores keep their input order.
func indicesByScoreDescending(_ detections: [Detection]) -> [Int] {
    // Swift's sort is not documented as stable, so the index breaks ties explicitly.
    Array(detections.indices).sorted { a, b in
        let scoreA = detections[a].score, scoreB = detections[b].score
        return scoreA > scoreB || (scoreA == scoreB && a < b)
    }
}

/// Greedy non-maximum suppression: `[N] -> [K]`, K <= N, highest score first.
///
/// Visits detections by score (ties in input order) and keeps one unless a kept detection
/// overlaps it by IoU > `iouThreshold` (torchvision's `nms` rule). With `perClass`, only
/// detections of the same `box.label` suppress each other (torchvision's `batched_nms`).
public func nonMaximumSuppression(_ detections: [Detection], iouThreshold: Float, perClass: Bool = true) -> [Detection] {
    let order = indicesByScoreDescending(detections)
    var suppressed = [Bool](repeating: false, count: detections.count)
    var kept: [Detection] = []
    kept.reserveCapacity(detections.count)
    for (rank, index) in order.enumerated() where !suppressed[index] {
        let keeper = detections[index]
        kept.append(keeper)
        for other in order[(rank + 1)...] where !suppressed[other] {
            let candidate = detections[other].box
            if perClass && candidate.label != keeper.box.label { continue }
            if intersectionOverUnion(keeper.box, candidate) > iouThreshold { suppressed[other] = true }
        }
    }
    return kept
}

/// Box voting (Gidaris & Komodakis, 2015): `kept [K], candidates [N] -> [K]`.
///
/// Each kept box becomes the score-weighted mean of the corners of the candidates of its class
/// that overlap it by IoU >= `iouThreshold` (usually the detections before suppression, the
/// kept box among them); its score and label stay. A kept box no candidate overlaps, or whose
/// overlapping candidates all score 0, is returned unchanged.
public func boxVoting(kept: [Detection], candidates: [Detection], iouThreshold: Float) -> [Detection] {
    kept.map { detection in
        var x1 = 0.0, y1 = 0.0, x2 = 0.0, y2 = 0.0, weight = 0.0
        for candidate in candidates where candidate.box.label == detection.box.label
            && intersectionOverUnion(detection.box, candidate.box) >= iouThreshold {
            let score = Double(candidate.score)
            x1 += score * Double(candidate.box.x1); y1 += score * Double(candidate.box.y1)
            x2 += score * Double(candidate.box.x2); y2 += score * Double(candidate.box.y2)
            weight += score
        }
        guard weight > 0 else { return detection }
        let box = DetectionBox(x1: Float(x1 / weight), y1: Float(y1 / weight), x2: Float(x2 / weight),
                               y2: Float(y2 / weight), label: detection.box.label)
        return Detection(box: box, score: detection.score)
    }
}

/// R-CNN box deltas of a target box relative to a reference box (a window or an anchor), and back.
///
/// With centres (cx, cy) and sizes (w, h), a target t relative to a reference r is
/// `(wx (cx_t - cx_r) / w_r, wy (cy_t - cy_r) / h_r, ww log(w_t / w_r), wh log(h_t / h_r))`.
/// The weights scale the deltas to roughly unit variance for a regression loss; they are the
/// reciprocals of the deltas' standard deviations. The default (1, 1, 1, 1) gives the raw
/// deltas; torchvision's Faster R-CNN uses (10, 10, 5, 5). Same convention as torchvision's
/// `BoxCoder`: `encode` multiplies by the weights, `decode` divides by them.
public struct BoxCoder: Sendable {
    /// Weights of dx, dy, dw, dh.
    public var weights: (x: Float, y: Float, width: Float, height: Float)
    /// Upper bound on decoded dw and dh (after dividing by the weights), so `exp` cannot
    /// overflow: log(1000 / 16), as in torchvision.
    public var maximumLogScale: Float

    public init(weights: (x: Float, y: Float, width: Float, height: Float) = (1, 1, 1, 1),
                maximumLogScale: Float = log(1000 / 16)) {
        self.weights = weights; self.maximumLogScale = maximumLogScale
    }

    /// Deltas (dx, dy, dw, dh) of `target` relative to `reference`; both need a positive width and height.
    public func encode(target: DetectionBox, reference: DetectionBox) -> (Float, Float, Float, Float) {
        let referenceWidth = reference.x2 - reference.x1, referenceHeight = reference.y2 - reference.y1
        let targetWidth = target.x2 - target.x1, targetHeight = target.y2 - target.y1
        let referenceCenterX = reference.x1 + 0.5 * referenceWidth, referenceCenterY = reference.y1 + 0.5 * referenceHeight
        let targetCenterX = target.x1 + 0.5 * targetWidth, targetCenterY = target.y1 + 0.5 * targetHeight
        return (weights.x * (targetCenterX - referenceCenterX) / referenceWidth,
                weights.y * (targetCenterY - referenceCenterY) / referenceHeight,
                weights.width * log(targetWidth / referenceWidth),
                weights.height * log(targetHeight / referenceHeight))
    }

    /// The box whose deltas relative to `reference` are `deltas`, labelled like `reference`;
    /// dw and dh are clamped at `maximumLogScale` first.
    public func decode(deltas: (Float, Float, Float, Float), reference: DetectionBox) -> DetectionBox {
        let referenceWidth = reference.x2 - reference.x1, referenceHeight = reference.y2 - reference.y1
        let referenceCenterX = reference.x1 + 0.5 * referenceWidth, referenceCenterY = reference.y1 + 0.5 * referenceHeight
        let dw = min(deltas.2 / weights.width, maximumLogScale), dh = min(deltas.3 / weights.height, maximumLogScale)
        let centerX = deltas.0 / weights.x * referenceWidth + referenceCenterX
        let centerY = deltas.1 / weights.y * referenceHeight + referenceCenterY
        let halfWidth = 0.5 * exp(dw) * referenceWidth, halfHeight = 0.5 * exp(dh) * referenceHeight
        return DetectionBox(x1: centerX - halfWidth, y1: centerY - halfHeight, x2: centerX + halfWidth,
                            y2: centerY + halfHeight, label: reference.label)
    }
}
