import Foundation
import PerceptDatasets

// COCO box detection metrics as pycocotools' COCOeval computes them (iouType "bbox", default
// parameters, every box iscrowd = 0), so our numbers can stand beside published ones.
// Tests/detection/make_coco_fixture.py runs pycocotools itself on a fixture that
// COCOEvaluationTests replays here. What has to match pycocotools exactly:
// - IoU on [x, y, w, h] boxes in Double, in the order of operations of maskApi.c's `bbIou`.
// - Per image and category: detections sorted by score, stable for ties, the first 100 kept.
// - Greedy matching (`matches`), with pycocotools' rule for equal IoUs: the later ground
//   truth wins.
// - Accumulation over images in increasing image id, stable sort by score; precision
//   tp / (tp + fp + eps) made monotone, then read at 101 recall points (searchsorted "left").
// - A category without ground truth has no precision (pycocotools' -1) and is left out of means.

/// A box as COCO writes it: corner (x, y), width and height, in pixels.
public struct COCOBox: Equatable, Sendable {
    public var x: Double, y: Double, width: Double, height: Double
    /// A crowd (ground truth only, COCO's `iscrowd`): ignored, and overlapped by the share of a
    /// detection inside it rather than by IoU.
    public var crowd: Bool

    public init(x: Double, y: Double, width: Double, height: Double, crowd: Bool = false) {
        self.x = x; self.y = y; self.width = width; self.height = height; self.crowd = crowd
    }

    /// The box of `box`'s corners; exact, since a difference of two Floats fits in a Double.
    /// An ignore region is a crowd.
    public init(_ box: DetectionBox) {
        x = Double(box.x1); y = Double(box.y1)
        width = Double(box.x2) - Double(box.x1); height = Double(box.y2) - Double(box.y1)
        crowd = box.ignore
    }

    /// `width * height`, pycocotools' area of a detection (and ours of a ground-truth box).
    public var area: Double { width * height }

    /// pycocotools' `maskUtils.iou` of this detection and ground truth `other` (maskApi.c's
    /// `bbIou`): intersection over union, or over this box's area where `other` is a crowd.
    @inlinable
    public func intersectionOverUnion(_ other: COCOBox) -> Double {
        let width = min(self.width + x, other.width + other.x) - max(x, other.x)
        if width <= 0 { return 0 }
        let height = min(self.height + y, other.height + other.y) - max(y, other.y)
        if height <= 0 { return 0 }
        let intersection = width * height
        return intersection / (other.crowd ? area : area + other.area - intersection)
    }
}

/// COCO's twelve summary numbers and per-category AP; -1 where pycocotools prints -1 (no
/// category has ground truth in that setting).
public struct COCOSummary: Codable, Equatable, Sendable {
    /// AP averaged over IoU 0.50:0.05:0.95 and categories (100 detections, all areas).
    public var ap: Double
    public var ap50: Double, ap75: Double
    /// AP over ground truth of area < 32², 32²...96², > 96² (bounds belong to both sides).
    public var apSmall: Double, apMedium: Double, apLarge: Double
    /// Recall averaged over IoU 0.50:0.05:0.95 and categories, with at most 1, 10 and 100
    /// detections per image and category.
    public var ar1: Double, ar10: Double, ar100: Double
    public var arSmall: Double, arMedium: Double, arLarge: Double
    /// AP and AP at IoU 0.5 per category slot; nil for a category without ground truth.
    public var perClassAP: [Double?], perClassAP50: [Double?]

    /// The numbers in pycocotools' `COCOeval.stats` order.
    public var stats: [Double] {
        [ap, ap50, ap75, apSmall, apMedium, apLarge, ar1, ar10, ar100, arSmall, arMedium, arLarge]
    }
}

/// Accumulates ground truth and detections image by image, then computes COCO's box metrics.
///
/// Category slot `i` is `DetectionBox.label == i` and COCO category `categories[i]`; results
/// are per slot.
public struct COCOEvaluator: Sendable {
    /// COCO category ids of the slots.
    public let categories: [Int]
    /// pycocotools' `np.linspace(.5, 0.95, 10)`, bit for bit.
    public static let iouThresholds = linearSpace(from: 0.5, to: 0.95, count: 10)
    /// pycocotools' `np.linspace(.0, 1.00, 101)`, bit for bit.
    public static let recallThresholds = linearSpace(from: 0, to: 1, count: 101)
    /// Detections per image and category that count, for AR; AP uses the last.
    public static let maximumDetections = [1, 10, 100]
    /// Ground-truth areas of "all", "small", "medium" and "large". Ours are box areas; COCO's
    /// annotation files give mask areas, so on COCO itself only AP_small/medium/large and
    /// AR_small/medium/large can differ from pycocotools'.
    public static let areaRanges: [ClosedRange<Double>] = [0...1e10, 0...1024, 1024...9216, 9216...1e10]

    struct Image {
        var groundTruth: [DetectionBox]
        var detections: [Detection]
    }
    var images: [Int: Image] = [:]

    /// Images added.
    public var imageCount: Int { images.count }

    public init(categories: [Int]) {
        self.categories = categories
    }

    /// Adds one image's ground truth and detections (labels are category slots); each image once.
    public mutating func add(imageID: Int, groundTruth: [DetectionBox], detections: [Detection]) {
        precondition(images[imageID] == nil, "image \(imageID) added twice")
        for label in groundTruth.map(\.label) + detections.map(\.box.label) {
            precondition(categories.indices.contains(Int(label)), "label \(label) outside \(categories.count) categories")
        }
        images[imageID] = Image(groundTruth: groundTruth, detections: detections)
    }

    /// Category `category`'s detections over every image (at most 100 per image, as COCO
    /// counts them), each marked right where it matched ground truth at IoU 0.5, and its ground
    /// truth count (crowds left out); detections matched to a crowd are left out too.
    public func scoredDetections(category: Int) -> ScoredPredictions {
        var scores: [Float] = [], correct: [Bool] = [], positives = 0
        for id in images.keys.sorted() {
            let boxes = images[id]!.boxes(of: Int32(category))
            guard let evaluation = evaluate(boxes.groundTruth, boxes.detections, areaRange: Self.areaRanges[0]) else { continue }
            positives += evaluation.groundTruthCount
            for d in evaluation.scores.indices where !evaluation.ignored[d] {   // threshold 0 is IoU 0.5
                scores.append(Float(evaluation.scores[d]))
                correct.append(evaluation.matched[d])
            }
        }
        return ScoredPredictions(scores: scores, correct: correct, positives: positives)
    }

    /// COCO's metrics over the images added so far.
    public func summarize() -> COCOSummary {
        let imageIDs = images.keys.sorted()
        // Indices into areaRanges and maximumDetections.
        let all = 0, small = 1, medium = 2, large = 3, one = 0, ten = 1, hundred = 2
        // accumulated[category][area][maximum detections]
        let accumulated: [[[Curves?]]] = categories.indices.map { category in
            let boxes = imageIDs.map { images[$0]!.boxes(of: Int32(category)) }
            return Self.areaRanges.map { areaRange in
                let evaluations = boxes.compactMap { evaluate($0.groundTruth, $0.detections, areaRange: areaRange) }
                return Self.maximumDetections.map { accumulate(evaluations, maximumDetections: $0) }
            }
        }
        let thresholds = Self.iouThresholds.count, recalls = Self.recallThresholds.count
        let fifty = Self.iouThresholds.firstIndex(of: 0.5)!, seventyFive = Self.iouThresholds.firstIndex(of: 0.75)!
        /// Where one threshold's precisions (or, for nil, all of them) lie in `Curves.precision`.
        func precisions(at threshold: Int?) -> Range<Int> {
            threshold.map { ($0 * recalls)..<(($0 + 1) * recalls) } ?? 0..<(thresholds * recalls)
        }
        func averagePrecision(area: Int, threshold: Int? = nil) -> Double {
            meanOfDefined(accumulated.map { $0[area][hundred].map { $0.precision[precisions(at: threshold)] } })
        }
        func averageRecall(area: Int, limit: Int = hundred) -> Double {
            meanOfDefined(accumulated.map { $0[area][limit].map { $0.recall[...] } })
        }
        return COCOSummary(
            ap: averagePrecision(area: all), ap50: averagePrecision(area: all, threshold: fifty),
            ap75: averagePrecision(area: all, threshold: seventyFive),
            apSmall: averagePrecision(area: small), apMedium: averagePrecision(area: medium),
            apLarge: averagePrecision(area: large),
            ar1: averageRecall(area: all, limit: one), ar10: averageRecall(area: all, limit: ten),
            ar100: averageRecall(area: all),
            arSmall: averageRecall(area: small), arMedium: averageRecall(area: medium), arLarge: averageRecall(area: large),
            perClassAP: accumulated.map { $0[all][hundred].map { mean($0.precision[...]) } },
            perClassAP50: accumulated.map { $0[all][hundred].map { mean($0.precision[precisions(at: fifty)]) } })
    }

    /// One image's detections of one category, matched to its ground truth at every IoU threshold.
    struct ImageEvaluation {
        /// Scores of the detections, highest first (at most 100).
        var scores: [Double]
        /// matched[t * D + d], ignored[t * D + d]: detection d at threshold t.
        var matched: [Bool], ignored: [Bool]
        /// Ground truth within the area range.
        var groundTruthCount: Int
    }

    /// pycocotools' `evaluateImg` for one image, category and area range; nil without boxes.
    func evaluate(_ groundTruth: [COCOBox], _ allDetections: [(box: COCOBox, score: Double)],
                  areaRange: ClosedRange<Double>) -> ImageEvaluation? {
        if groundTruth.isEmpty && allDetections.isEmpty { return nil }
        let detections = allDetections.prefix(Self.maximumDetections.last!)
        // Crowds and ground truth outside the area range are ignored and go last (a stable partition).
        let outside = groundTruth.map { $0.crowd || !areaRange.contains($0.area) }
        let order = groundTruth.indices.filter { !outside[$0] } + groundTruth.indices.filter { outside[$0] }
        let ious = detections.map { detection in order.map { detection.box.intersectionOverUnion(groundTruth[$0]) } }
        let ignoredGroundTruth = order.map { outside[$0] }
        let count = detections.count
        var matched = [Bool](repeating: false, count: Self.iouThresholds.count * count)
        var ignored = matched
        for (t, threshold) in Self.iouThresholds.enumerated() {
            let matches = Self.matches(ious: ious, ignoredGroundTruth: ignoredGroundTruth, crowds: order.map { groundTruth[$0].crowd },
                                       threshold: threshold)
            for (d, match) in matches.enumerated() {
                if let match {
                    matched[t * count + d] = true
                    ignored[t * count + d] = ignoredGroundTruth[match]
                } else {
                    // An unmatched detection outside the area range does not count either.
                    ignored[t * count + d] = !areaRange.contains(detections[d].box.area)
                }
            }
        }
        return ImageEvaluation(scores: detections.map(\.score), matched: matched, ignored: ignored,
                               groundTruthCount: outside.filter { !$0 }.count)
    }

    /// The ground truth (column of `ious`, [D][G]) each detection matches at one IoU threshold.
    ///
    /// pycocotools' greedy loop: detections in score order each take, among ground truth not yet
    /// taken, the one of highest IoU >= threshold, scanning ground truth in order (ignored last)
    /// and letting a later one win a tie (`if iou < best: continue`); once matched to ground
    /// truth that counts, the scan stops at the first ignored one. A crowd is never taken: it
    /// absorbs every detection inside it.
    static func matches(ious: [[Double]], ignoredGroundTruth: [Bool], crowds: [Bool], threshold: Double) -> [Int?] {
        var taken = [Bool](repeating: false, count: ignoredGroundTruth.count)
        return ious.map { row in
            var best = min(threshold, 1 - 1e-10), match: Int? = nil
            for g in row.indices where !taken[g] || crowds[g] {
                if let m = match, !ignoredGroundTruth[m], ignoredGroundTruth[g] { break }
                if row[g] < best { continue }
                best = row[g]; match = g
            }
            if let match, !crowds[match] { taken[match] = true }
            return match
        }
    }

    /// Precision [T * R] at the recall thresholds and final recall [T] of one category.
    struct Curves {
        var precision: [Double], recall: [Double]
    }

    /// pycocotools' `accumulate` for one category and area range; nil without ground truth.
    func accumulate(_ evaluations: [ImageEvaluation], maximumDetections: Int) -> Curves? {
        let groundTruthCount = evaluations.reduce(0) { $0 + $1.groundTruthCount }
        if groundTruthCount == 0 { return nil }
        // (image, detection) pairs in image order, then by score, stable like numpy's mergesort.
        var entries: [(image: Int, detection: Int, score: Double)] = []
        for (image, evaluation) in evaluations.enumerated() {
            for d in 0..<min(maximumDetections, evaluation.scores.count) {
                entries.append((image, d, evaluation.scores[d]))
            }
        }
        entries = entries.enumerated().sorted { a, b in
            a.element.score > b.element.score || (a.element.score == b.element.score && a.offset < b.offset)
        }.map(\.element)

        let recalls = Self.recallThresholds
        var precision = [Double](repeating: 0, count: Self.iouThresholds.count * recalls.count)
        var recall = [Double](repeating: 0, count: Self.iouThresholds.count)
        var curvePrecision = [Double](repeating: 0, count: entries.count), curveRecall = curvePrecision
        for t in Self.iouThresholds.indices {
            var truePositives = 0.0, falsePositives = 0.0
            for (i, entry) in entries.enumerated() {
                let evaluation = evaluations[entry.image], index = t * evaluation.scores.count + entry.detection
                if !evaluation.ignored[index] {
                    if evaluation.matched[index] { truePositives += 1 } else { falsePositives += 1 }
                }
                curveRecall[i] = truePositives / Double(groundTruthCount)
                curvePrecision[i] = truePositives / (falsePositives + truePositives + Double.ulpOfOne)
            }
            recall[t] = curveRecall.last ?? 0
            // The precision envelope: the best precision at this recall or any higher.
            for i in stride(from: entries.count - 1, to: 0, by: -1) where curvePrecision[i] > curvePrecision[i - 1] {
                curvePrecision[i - 1] = curvePrecision[i]
            }
            // The first point reaching each recall threshold; precision 0 past the curve's end.
            var i = 0
            for (r, threshold) in recalls.enumerated() {
                while i < entries.count && curveRecall[i] < threshold { i += 1 }
                if i == entries.count { break }
                precision[t * recalls.count + r] = curvePrecision[i]
            }
        }
        return Curves(precision: precision, recall: recall)
    }
}

extension COCOEvaluator.Image {
    /// The image's ground truth and score-sorted detections of one category, as COCO boxes.
    func boxes(of label: Int32) -> (groundTruth: [COCOBox], detections: [(box: COCOBox, score: Double)]) {
        let ofLabel = detections.filter { $0.box.label == label }
        return (groundTruth.filter { $0.label == label }.map(COCOBox.init),
                indicesByScoreDescending(ofLabel).map { (COCOBox(ofLabel[$0].box), Double(ofLabel[$0].score)) })
    }
}

/// `count` evenly spaced values from `start` to `end` computed as numpy's `linspace` does
/// (`start + i * step`, the last one exactly `end`), so that thresholds compare bit for bit.
private func linearSpace(from start: Double, to end: Double, count: Int) -> [Double] {
    let step = (end - start) / Double(count - 1)
    return (0..<count).map { $0 == count - 1 ? end : Double($0) * step + start }
}

private func mean(_ values: ArraySlice<Double>) -> Double {
    values.reduce(0, +) / Double(values.count)
}

/// Mean of every value of the defined slices, pycocotools' `np.mean(s[s > -1])`; -1 if none.
private func meanOfDefined(_ slices: [ArraySlice<Double>?]) -> Double {
    let defined = slices.compactMap { $0 }
    let count = defined.reduce(0) { $0 + $1.count }
    return count == 0 ? -1 : defined.reduce(0) { $0 + $1.reduce(0, +) } / Double(count)
}

/// Detections as COCO results JSON objects: `image_id`, `category_id` (`categoryIDs[label]`),
/// `bbox` [x, y, w, h] and `score`, plus `file_name` when given; one object per detection.
///
/// Values are the Floats' exact Double values, so pycocotools reading the file sees the same
/// boxes, IoUs and score order as `COCOEvaluator`.
public func cocoResults(_ detections: [(imageID: Int64, fileName: String?, detections: [Detection])],
                        categoryIDs: [Int64]) -> [[String: Any]] {
    detections.flatMap { image in
        image.detections.map { detection in
            let box = COCOBox(detection.box)
            var result: [String: Any] = [
                "image_id": image.imageID, "category_id": categoryIDs[Int(detection.box.label)],
                "bbox": [box.x, box.y, box.width, box.height], "score": Double(detection.score),
            ]
            if let fileName = image.fileName { result["file_name"] = fileName }
            return result
        }
    }
}
