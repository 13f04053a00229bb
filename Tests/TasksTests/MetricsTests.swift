import PerceptTasks
import XCTest

final class ClassificationMetricsTests: XCTestCase {
    /// Six scored images of three classes; predictions (argmax) are 0, 2, 1, 2, 2, 0.
    let scores: [Float] = [2, 1, 0, 0.5, 0.2, 0.9, 0.1, 3, 0.2, 1, 0, 2, 0, 0.5, 1, 2, 0, 1]
    let labels: [Int32] = [0, 0, 1, 1, 2, 2]

    func metrics(topK: Int) -> ClassificationMetrics {
        var metrics = ClassificationMetrics(classes: 3, topK: topK)
        let predictions = (0..<6).map { i in
            ClassPrediction(logits: Array(scores[3 * i..<3 * i + 3]), probabilities: Array(scores[3 * i..<3 * i + 3]))
        }
        // Two batches, to check that they accumulate.
        metrics.add(Array(predictions[0..<3]), labels: Array(labels[0..<3]))
        metrics.add(Array(predictions[3..<6]), labels: Array(labels[3..<6]))
        return metrics
    }

    func testAccuracyTopKAndConfusion() {
        let m = metrics(topK: 2)
        XCTAssertEqual(m.count, 6)
        XCTAssertEqual(m.confusion, [[1, 0, 1], [0, 1, 1], [1, 0, 1]])
        XCTAssertEqual(m.accuracy, 0.5, accuracy: 1e-12)
        // Only image 3 (truth 1 scored lowest) misses the top two.
        XCTAssertEqual(m.topK, 2)
        XCTAssertEqual(m.topKAccuracy, 5.0 / 6.0, accuracy: 1e-12)
        // top-k is capped at the number of classes, where every image is a hit.
        let all = metrics(topK: 5)
        XCTAssertEqual(all.topK, 3)
        XCTAssertEqual(all.topKAccuracy, 1)
    }

    func testPerClassPrecisionRecallAndF1() {
        let perClass = metrics(topK: 2).perClass
        let expected: [(precision: Double, recall: Double, f1: Double)] = [(0.5, 0.5, 0.5), (1, 0.5, 2.0 / 3.0), (1.0 / 3.0, 0.5, 0.4)]
        for (c, (got, want)) in zip(perClass, expected).enumerated() {
            XCTAssertEqual(got.precision, want.precision, accuracy: 1e-12, "class \(c)")
            XCTAssertEqual(got.recall, want.recall, accuracy: 1e-12, "class \(c)")
            XCTAssertEqual(got.f1, want.f1, accuracy: 1e-12, "class \(c)")
            XCTAssertEqual(got.support, 2)
        }
        XCTAssertEqual(metrics(topK: 2).macroF1, (0.5 + 2.0 / 3.0 + 0.4) / 3, accuracy: 1e-12)
        // A class never predicted and never present has 0 everywhere rather than NaN.
        let empty = PrecisionRecall(truePositives: 0, falsePositives: 0, falseNegatives: 0)
        XCTAssertEqual([empty.precision, empty.recall, empty.f1], [0, 0, 0])
    }
}

final class PredictionTests: XCTestCase {
    /// Classes rank by logit, ties keeping the lower index first; scores are the probabilities.
    func testClassPredictionRanksByLogitAndReportsProbabilities() {
        let prediction = ClassPrediction(logits: [1, 3, 3, -2], probabilities: [0.1, 0.4, 0.4, 0.1])
        XCTAssertEqual(prediction.ranking, [1, 2, 0, 3])
        XCTAssertEqual(prediction.label, 1)
        XCTAssertEqual(prediction.score, 0.4)
        XCTAssertEqual(prediction.top(2).map(\.label), [1, 2])
        XCTAssertEqual(prediction.top(9).count, 4)
        XCTAssertEqual([0, 1, 2, 3].map(prediction.rank(of:)), [2, 0, 0, 3])
    }

    /// A tag is present when its probability reaches its own threshold, equality included.
    func testTagPredictionUsesEachTagsThreshold() {
        let prediction = TagPrediction(probabilities: [0.2, 0.5, 0.9, 0.05], thresholds: [0.1, 0.6, 0.9, 0.5])
        XCTAssertEqual(prediction.tags, [0, 2])
    }
}

final class TaggingMetricsTests: XCTestCase {
    /// Five images, three tags. Tag 0 has distinct scores, tag 1 ties, tag 2 no positives.
    func metrics() -> TaggingMetrics {
        let probabilities: [Float] = [0.9, 0.9, 0.2,
                                      0.8, 0.9, 0.6,
                                      0.7, 0.1, 0.1,
                                      0.6, 0.1, 0.1,
                                      0.5, 0.1, 0.1]
        let targets: [Float] = [1, 0, 0,
                                0, 1, 0,
                                1, 1, 0,
                                0, 0, 0,
                                1, 0, 0]
        var metrics = TaggingMetrics(tags: 3)
        probabilities.withUnsafeBufferPointer { p in
            targets.withUnsafeBufferPointer { t in
                metrics.add(probabilities: UnsafeBufferPointer(rebasing: p[0..<6]), targets: UnsafeBufferPointer(rebasing: t[0..<6]))
                metrics.add(probabilities: UnsafeBufferPointer(rebasing: p[6...]), targets: UnsafeBufferPointer(rebasing: t[6...]))
            }
        }
        return metrics
    }

    func testAveragePrecisionMatchesHandComputedValues() {
        let m = metrics()
        XCTAssertEqual(m.count, 5)
        // Tag 0, ranked 1 0 1 0 1: precision at each hit 1/1, 2/3, 3/5.
        XCTAssertEqual(m.averagePrecision(tag: 0), (1 + 2.0 / 3.0 + 3.0 / 5.0) / 3, accuracy: 1e-12)
        // Tag 1, tied pairs count as one step (scikit-learn): 0.5 recall at precision 1/2, then 1.0 at 2/5.
        XCTAssertEqual(m.averagePrecision(tag: 1), 0.5 * 0.5 + 0.5 * 0.4, accuracy: 1e-12)
        XCTAssertEqual(m.averagePrecision(tag: 2), 0)
        // The mean skips the tag without positives.
        XCTAssertEqual(m.meanAveragePrecision, ((1 + 2.0 / 3.0 + 3.0 / 5.0) / 3 + 0.45) / 2, accuracy: 1e-12)
    }

    func testMicroMacroAndExampleF1AtOneHalf() {
        let m = metrics(), half: [Float] = [0.5, 0.5, 0.5]
        let perTag = m.perTag(thresholds: half)
        // Tag 0: everything predicted (0.5 counts), tp 3 fp 2; tag 1: tp 1 fp 1 fn 1; tag 2: fp 1.
        XCTAssertEqual(perTag.map(\.f1), [0.75, 0.5, 0])
        XCTAssertEqual(perTag.map(\.support), [3, 2, 0])
        XCTAssertEqual(m.microF1(thresholds: half), 8.0 / 13.0, accuracy: 1e-12)
        XCTAssertEqual(m.macroF1(thresholds: half), 1.25 / 3, accuracy: 1e-12)
        // Per image: 2/3, 2/4, 2/3, 0 (one false tag, none true), 1.
        XCTAssertEqual(m.exampleF1(thresholds: half), (2.0 / 3.0 + 0.5 + 2.0 / 3.0 + 0 + 1) / 5, accuracy: 1e-12)
        // Predicting nothing for an image without tags counts as a perfect match.
        XCTAssertEqual(m.exampleF1(thresholds: [1, 1, 1]), 1.0 / 5.0, accuracy: 1e-12)
    }

    func testTunedThresholdsMaximiseEachTagsF1() {
        let m = metrics(), half: [Float] = [0.5, 0.5, 0.5]
        let tuned = m.tunedThresholds()
        // Tag 0 is best taking all five (F1 6/8), tag 1 taking all five (F1 4/7), tag 2 has no positives.
        XCTAssertEqual(tuned[0], 0.25, accuracy: 1e-6)
        XCTAssertEqual(tuned[1], 0.05, accuracy: 1e-6)
        XCTAssertEqual(tuned[2], 0.5)
        let perTag = m.perTag(thresholds: tuned)
        XCTAssertEqual(perTag[0].f1, 0.75, accuracy: 1e-12)
        XCTAssertEqual(perTag[1].f1, 4.0 / 7.0, accuracy: 1e-12)
        XCTAssertGreaterThan(m.macroF1(thresholds: tuned), m.macroF1(thresholds: half))
        // No single threshold does better on any tag than the tuned one.
        for tag in 0..<2 {
            for candidate in stride(from: Float(0), through: 1, by: 0.05) {
                var thresholds = tuned
                thresholds[tag] = candidate
                XCTAssertLessThanOrEqual(m.perTag(thresholds: thresholds)[tag].f1, perTag[tag].f1 + 1e-12, "tag \(tag) at \(candidate)")
            }
        }
    }
}
