import Foundation

/// Precision, recall and F1 of one class or tag; 0 where undefined (no predictions / no positives).
public struct PrecisionRecall: Codable, Equatable, Sendable {
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var support: Int

    public init(truePositives tp: Int, falsePositives fp: Int, falseNegatives fn: Int) {
        precision = tp + fp == 0 ? 0 : Double(tp) / Double(tp + fp)
        recall = tp + fn == 0 ? 0 : Double(tp) / Double(tp + fn)
        f1 = tp == 0 ? 0 : 2 * Double(tp) / Double(2 * tp + fp + fn)
        support = tp + fn
    }
}

/// Single-label classification metrics accumulated over batches of scores.
public struct ClassificationMetrics: Sendable {
    public let classes: Int
    public let topK: Int
    /// confusion[truth][prediction]
    public private(set) var confusion: [[Int]]
    public private(set) var topKHits = 0
    public private(set) var count = 0

    public init(classes: Int, topK: Int = 5) {
        self.classes = classes
        self.topK = min(topK, classes)
        confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes)
    }

    /// Adds a batch of decoded predictions and their true labels.
    public mutating func add(_ predictions: [ClassPrediction], labels: [Int32]) {
        precondition(predictions.count == labels.count, "\(predictions.count) predictions for \(labels.count) labels")
        for (prediction, label) in zip(predictions, labels) {
            precondition(prediction.logits.count == classes, "prediction over \(prediction.logits.count) classes, metrics over \(classes)")
            confusion[Int(label)][prediction.label] += 1
            if prediction.rank(of: Int(label)) < topK { topKHits += 1 }
            count += 1
        }
    }

    public var accuracy: Double {
        count == 0 ? 0 : Double((0..<classes).reduce(0) { $0 + confusion[$1][$1] }) / Double(count)
    }
    public var topKAccuracy: Double { count == 0 ? 0 : Double(topKHits) / Double(count) }

    public var perClass: [PrecisionRecall] {
        (0..<classes).map { c in
            let tp = confusion[c][c]
            let fp = (0..<classes).reduce(0) { $0 + confusion[$1][c] } - tp
            let fn = confusion[c].reduce(0, +) - tp
            return PrecisionRecall(truePositives: tp, falsePositives: fp, falseNegatives: fn)
        }
    }

    public var macroF1: Double {
        let p = perClass
        return p.isEmpty ? 0 : p.map(\.f1).reduce(0, +) / Double(p.count)
    }
}

/// Multi-label tagging metrics over stored scores, so thresholds can be tuned afterwards.
public struct TaggingMetrics: Sendable {
    public let tags: Int
    /// Probabilities, [N * tags] row-major.
    public private(set) var scores: [Float] = []
    /// Ground truth, [N * tags] of 0/1.
    public private(set) var truth: [UInt8] = []

    public init(tags: Int) { self.tags = tags }

    public var count: Int { truth.count / max(tags, 1) }

    /// Adds a batch of probabilities (after the sigmoid) and multi-hot targets, both [N * tags].
    public mutating func add(probabilities: UnsafeBufferPointer<Float>, targets: UnsafeBufferPointer<Float>) {
        precondition(probabilities.count == targets.count && probabilities.count % tags == 0,
                     "tagging metrics: \(probabilities.count) scores, \(targets.count) targets, \(tags) tags")
        scores.append(contentsOf: probabilities)
        truth.append(contentsOf: targets.map { $0 >= 0.5 ? 1 : 0 })
    }

    func counts(tag: Int, threshold: Float) -> (tp: Int, fp: Int, fn: Int) {
        var tp = 0, fp = 0, fn = 0
        for i in 0..<count {
            let predicted = TagPrediction.isPresent(scores[i * tags + tag], threshold: threshold)
            let actual = truth[i * tags + tag] == 1
            if predicted && actual { tp += 1 } else if predicted { fp += 1 } else if actual { fn += 1 }
        }
        return (tp, fp, fn)
    }

    /// Per-tag precision/recall/F1 at the given thresholds.
    public func perTag(thresholds: [Float]) -> [PrecisionRecall] {
        (0..<tags).map { t in
            let c = counts(tag: t, threshold: thresholds[t])
            return PrecisionRecall(truePositives: c.tp, falsePositives: c.fp, falseNegatives: c.fn)
        }
    }

    /// F1 over all (image, tag) decisions pooled.
    public func microF1(thresholds: [Float]) -> Double {
        var tp = 0, fp = 0, fn = 0
        for t in 0..<tags {
            let c = counts(tag: t, threshold: thresholds[t])
            tp += c.tp; fp += c.fp; fn += c.fn
        }
        return PrecisionRecall(truePositives: tp, falsePositives: fp, falseNegatives: fn).f1
    }

    /// Unweighted mean of per-tag F1.
    public func macroF1(thresholds: [Float]) -> Double {
        let p = perTag(thresholds: thresholds)
        return p.map(\.f1).reduce(0, +) / Double(max(tags, 1))
    }

    /// Mean over images of the F1 between predicted and true tag sets (1 when both are empty).
    public func exampleF1(thresholds: [Float]) -> Double {
        guard count > 0 else { return 0 }
        var total = 0.0
        for i in 0..<count {
            var tp = 0, predicted = 0, actual = 0
            for t in 0..<tags {
                let p = TagPrediction.isPresent(scores[i * tags + t], threshold: thresholds[t]), a = truth[i * tags + t] == 1
                if p { predicted += 1 }
                if a { actual += 1 }
                if p && a { tp += 1 }
            }
            total += predicted + actual == 0 ? 1 : 2 * Double(tp) / Double(predicted + actual)
        }
        return total / Double(count)
    }

    /// Average precision of one tag: mean of precision at each true positive's rank (ties
    /// broken pessimistically), as in scikit-learn's average_precision_score.
    public func averagePrecision(tag: Int) -> Double {
        let order = (0..<count).sorted { scores[$0 * tags + tag] > scores[$1 * tags + tag] }
        let positives = order.reduce(0) { $0 + Int(truth[$1 * tags + tag]) }
        guard positives > 0 else { return 0 }
        var tp = 0, seen = 0, sum = 0.0
        var i = 0
        while i < order.count {
            // Handle a run of tied scores as one threshold step.
            var j = i
            var runPositives = 0
            let s = scores[order[i] * tags + tag]
            while j < order.count && scores[order[j] * tags + tag] == s {
                runPositives += Int(truth[order[j] * tags + tag]); j += 1
            }
            tp += runPositives; seen = j
            sum += Double(runPositives) / Double(positives) * Double(tp) / Double(seen)
            i = j
        }
        return sum
    }

    /// Mean of per-tag average precision over tags that have positives.
    public var meanAveragePrecision: Double {
        let withPositives = (0..<tags).filter { t in (0..<count).contains { truth[$0 * tags + t] == 1 } }
        guard !withPositives.isEmpty else { return 0 }
        return withPositives.map { averagePrecision(tag: $0) }.reduce(0, +) / Double(withPositives.count)
    }

    /// Per-tag thresholds maximising that tag's F1 on these scores (0.5 where a tag has no positives).
    public func tunedThresholds() -> [Float] {
        (0..<tags).map { t in
            let order = (0..<count).sorted { scores[$0 * tags + t] > scores[$1 * tags + t] }
            let positives = order.reduce(0) { $0 + Int(truth[$1 * tags + t]) }
            guard positives > 0 else { return 0.5 }
            var tp = 0, best = -1.0, bestThreshold: Float = 0.5
            for (rank, i) in order.enumerated() {
                tp += Int(truth[i * tags + t])
                let s = scores[i * tags + t]
                // Only cut between distinct scores.
                if rank + 1 < order.count && scores[order[rank + 1] * tags + t] == s { continue }
                let f1 = 2 * Double(tp) / Double(rank + 1 + positives)
                if f1 > best {
                    best = f1
                    let next = rank + 1 < order.count ? scores[order[rank + 1] * tags + t] : 0
                    bestThreshold = (s + next) / 2
                }
            }
            return bestThreshold
        }
    }
}
