import CKernels
import XCTest
@testable import PerceptCore

/// PyTorch's F.cross_entropy (mean reduction) written out in Double, sample by sample:
/// ((1 - e) sum w_y (-log p_y) + e / C sum_c w_c (-log p_c)) / sum of counted w_y.
func referenceCrossEntropy(_ logits: Tensor, _ labels: [Int32], ignoreIndex: Int32? = nil,
                           weights: [Float]? = nil, smoothing: Float = 0) -> Double {
    let (n, classes) = (logits.shape[0], logits.shape[1])
    let inner = logits.count / (n * classes)
    let xs = logits.scalars.map(Double.init)
    let e = Double(smoothing)
    var hard = 0.0, soft = 0.0, weightSum = 0.0
    for o in 0..<n {
        for i in 0..<inner {
            let label = labels[o * inner + i]
            if label == ignoreIndex { continue }
            let row = (0..<classes).map { xs[(o * classes + $0) * inner + i] }
            let peak = row.max()!
            let lse = peak + Foundation.log(row.map { Foundation.exp($0 - peak) }.reduce(0, +))
            let w = (0..<classes).map { Double(weights?[$0] ?? 1) }
            let y = Int(label)
            hard += w[y] * (lse - row[y])
            soft += (0..<classes).map { w[$0] * (lse - row[$0]) }.reduce(0, +)
            weightSum += w[y]
        }
    }
    return ((1 - e) * hard + e / Double(classes) * soft) / weightSum
}

final class GradientCheckLossTests: XCTestCase {
    /// Logits [4, 5] and labels including the ignore index 255.
    private let labels: [Int32] = [2, 255, 0, 4]
    private let weights = Tensor(shape: [5], scalars: [0.5, 1, 2, 1.5, 0.25])

    func testCrossEntropyGradients() {
        let logits = uniformTensor([4, 5], seed: 500, low: -2, high: 2)
        assertGradientsMatch([logits]) { softmaxCrossEntropy(logits: $0[0], labels: [2, 1, 0, 4]) }
        assertGradientsMatch([logits]) { softmaxCrossEntropy(logits: $0[0], labels: self.labels, ignoreIndex: 255) }
        assertGradientsMatch([logits]) { softmaxCrossEntropy(logits: $0[0], labels: [2, 1, 0, 4], classWeights: self.weights) }
        assertGradientsMatch([logits]) { softmaxCrossEntropy(logits: $0[0], labels: [2, 1, 0, 4], labelSmoothing: 0.1) }
        assertGradientsMatch([logits]) {
            softmaxCrossEntropy(logits: $0[0], labels: self.labels, ignoreIndex: 255, classWeights: self.weights, labelSmoothing: 0.2)
        }
    }

    func testPerPixelCrossEntropyGradients() {
        let logits = uniformTensor([2, 3, 2, 3], seed: 501, low: -2, high: 2)
        let pixelLabels: [Int32] = [0, 1, 2, 255, 1, 0, 2, 2, 255, 0, 1, 1]
        let classWeights = Tensor(shape: [3], scalars: [1, 0.5, 3])
        assertGradientsMatch([logits]) { softmaxCrossEntropy(logits: $0[0], labels: pixelLabels, ignoreIndex: 255) }
        assertGradientsMatch([logits]) {
            softmaxCrossEntropy(logits: $0[0], labels: pixelLabels, ignoreIndex: 255, classWeights: classWeights, labelSmoothing: 0.1)
        }
    }

    /// 17 x 17 = 289 positions: each image's plane is two blocks of the blocked log-softmax, the
    /// second one short, with ignored pixels, weights and smoothing; in both exp kernel builds.
    func testPerPixelCrossEntropyOverSeveralBlocksInBothKernelBuilds() {
        defer { pc_kernels_force_portable(0) }
        let logits = uniformTensor([2, 3, 17, 17], seed: 504, low: -3, high: 3)
        let labels: [Int32] = (0..<(2 * 289)).map { (p: Int) -> Int32 in p % 7 == 3 ? 255 : Int32((p * 5 / 3) % 3) }
        let weights: [Float] = [1, 0.5, 3]
        let classWeights = Tensor(shape: [3], scalars: weights)
        for portable: Int32 in [0, 1] {
            pc_kernels_force_portable(portable)
            assertGradientsMatch([logits]) {
                softmaxCrossEntropy(logits: $0[0], labels: labels, ignoreIndex: 255, classWeights: classWeights, labelSmoothing: 0.1)
            }
            let loss = softmaxCrossEntropy(logits: logits, labels: labels, ignoreIndex: 255, classWeights: classWeights, labelSmoothing: 0.1)
            XCTAssertEqual(Double(loss.scalar), referenceCrossEntropy(logits, labels, ignoreIndex: 255, weights: weights, smoothing: 0.1),
                           accuracy: 1e-5, "portable \(portable)")
        }
        // Ignored pixels get a zero gradient even where their logits are not finite.
        let broken = logits.copy()
        broken.pointer[3] = .nan
        let tracked = broken.trackingGradient()
        let gradient = softmaxCrossEntropy(logits: tracked, labels: labels, ignoreIndex: 255).backward()[tracked]!
        XCTAssertEqual(gradient.scalars[3], 0)
        XCTAssertTrue(gradient.scalars.allSatisfy { $0.isFinite })
    }

    func testCrossEntropyMatchesReference() {
        let logits = uniformTensor([4, 5], seed: 502, low: -3, high: 3)
        let w = weights.scalars
        let variants: [(Int32?, [Float]?, Float)] = [(nil, nil, 0), (255, nil, 0), (255, w, 0), (255, nil, 0.1), (255, w, 0.3)]
        for (ignore, classWeights, smoothing) in variants {
            let labels: [Int32] = ignore == nil ? [2, 1, 0, 4] : self.labels
            let loss = softmaxCrossEntropy(logits: logits, labels: labels, ignoreIndex: ignore,
                                           classWeights: classWeights.map { Tensor(shape: [5], scalars: $0) },
                                           labelSmoothing: smoothing)
            XCTAssertEqual(loss.shape, [])
            let expected = referenceCrossEntropy(logits, labels, ignoreIndex: ignore, weights: classWeights, smoothing: smoothing)
            XCTAssertEqual(Double(loss.scalar), expected, accuracy: 1e-5 * Swift.max(1, abs(expected)),
                           "ignore \(String(describing: ignore)) weights \(classWeights != nil) smoothing \(smoothing)")
        }
        let pixels = uniformTensor([2, 3, 2, 2], seed: 503, low: -3, high: 3)
        let pixelLabels: [Int32] = [0, 1, 2, 255, 2, 2, 255, 0]
        let pixelWeights: [Float] = [1, 0.5, 3]
        let loss = softmaxCrossEntropy(logits: pixels, labels: pixelLabels, ignoreIndex: 255,
                                       classWeights: Tensor(shape: [3], scalars: pixelWeights), labelSmoothing: 0.1)
        XCTAssertEqual(Double(loss.scalar),
                       referenceCrossEntropy(pixels, pixelLabels, ignoreIndex: 255, weights: pixelWeights, smoothing: 0.1),
                       accuracy: 1e-5)
    }

    func testCrossEntropyKnownValues() {
        // torch.nn.functional.cross_entropy(torch.tensor([[1., 2., 3.]]), torch.tensor([0])) = 2.4076.
        let logits = Tensor(shape: [1, 3], scalars: [1, 2, 3])
        XCTAssertEqual(softmaxCrossEntropy(logits: logits, labels: [0]).scalar, 2.4076059, accuracy: 1e-5)
        // With label_smoothing=0.1: 0.9 * 2.4076 + 0.1 / 3 * (2.4076 + 1.4076 + 0.4076).
        XCTAssertEqual(softmaxCrossEntropy(logits: logits, labels: [0], labelSmoothing: 0.1).scalar, 2.3076059, accuracy: 1e-5)
        // Uniform logits give log C whatever the labels.
        let uniform = Tensor(shape: [3, 7], repeating: 0.25)
        XCTAssertEqual(softmaxCrossEntropy(logits: uniform, labels: [0, 3, 6]).scalar, Foundation.log(7), accuracy: 1e-6)
        // Large logits stay finite: -log softmax([1000, 0])[1] = 1000.
        let large = Tensor(shape: [1, 2], scalars: [1000, 0])
        XCTAssertEqual(softmaxCrossEntropy(logits: large, labels: [1]).scalar, 1000, accuracy: 1e-3)
        XCTAssertEqual(softmaxCrossEntropy(logits: large, labels: [0]).scalar, 0, accuracy: 1e-6)
    }

    func testCrossEntropyIgnoresLabelsAndClassWeightsNormalise() {
        let logits = uniformTensor([4, 5], seed: 504)
        // Ignored rows change neither the loss nor receive gradient.
        let tracked = logits.trackingGradient()
        let loss = softmaxCrossEntropy(logits: tracked, labels: labels, ignoreIndex: 255)
        let kept = Tensor(shape: [3, 5], scalars: Array(logits.scalars[0..<5] + logits.scalars[10..<20]))
        XCTAssertEqual(loss.scalar, softmaxCrossEntropy(logits: kept, labels: [2, 0, 4]).scalar, accuracy: 1e-6)
        let gradient = loss.backward()[tracked]!.scalars
        XCTAssertEqual(Array(gradient[5..<10]), [0, 0, 0, 0, 0])
        // A class weight common to every target cancels in the weighted mean.
        let scaled = softmaxCrossEntropy(logits: logits, labels: [1, 1, 1, 1],
                                         classWeights: Tensor(shape: [5], scalars: [9, 3, 9, 9, 9]))
        XCTAssertEqual(scaled.scalar, softmaxCrossEntropy(logits: logits, labels: [1, 1, 1, 1]).scalar, accuracy: 1e-6)
    }

    func testCrossEntropyWithEveryLabelIgnoredIsZero() {
        let logits = uniformTensor([2, 3], seed: 505).trackingGradient()
        let loss = softmaxCrossEntropy(logits: logits, labels: [255, 255], ignoreIndex: 255)
        XCTAssertEqual(loss.scalar, 0)
        XCTAssertEqual(loss.backward()[logits]?.scalars, [Float](repeating: 0, count: 6))
    }

    func testBinaryCrossEntropyGradients() {
        let logits = uniformTensor([3, 4], seed: 506, low: -3, high: 3)
        let targets = uniformTensor([3, 4], seed: 507, low: 0, high: 1)
        assertGradientsMatch([logits, targets]) { binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1]) }
        let positiveWeight = Tensor(shape: [4], scalars: [0.5, 1, 2, 4])
        assertGradientsMatch([logits, targets]) {
            binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1], positiveWeight: positiveWeight)
        }
        let maps = uniformTensor([2, 3, 2, 2], seed: 508, low: -3, high: 3)
        let mapTargets = uniformTensor([2, 3, 2, 2], seed: 509, low: 0, high: 1)
        assertGradientsMatch([maps, mapTargets]) {
            binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1], positiveWeight: Tensor(shape: [3], scalars: [3, 1, 0.25]))
        }
    }

    func testBinaryCrossEntropyValues() {
        let logits = uniformTensor([3, 4], seed: 510, low: -4, high: 4)
        let targets = uniformTensor([3, 4], seed: 511, low: 0, high: 1)
        let pw: [Double] = [0.5, 1, 2, 4]
        // -(w t log s + (1 - t) log(1 - s)), averaged: fine in Double for moderate logits.
        var expected = 0.0
        for (j, (x, t)) in zip(logits.scalars, targets.scalars).enumerated() {
            let s = 1 / (1 + Foundation.exp(-Double(x)))
            expected -= pw[j % 4] * Double(t) * Foundation.log(s) + (1 - Double(t)) * Foundation.log(1 - s)
        }
        expected /= 12
        let loss = binaryCrossEntropyWithLogits(logits: logits, targets: targets,
                                                positiveWeight: Tensor(shape: [4], scalars: pw.map(Float.init)))
        XCTAssertEqual(Double(loss.scalar), expected, accuracy: 1e-5)
        // Zero logits cost log 2 whatever the targets.
        let zero = binaryCrossEntropyWithLogits(logits: Tensor(shape: [2, 2], repeating: 0),
                                                targets: Tensor(shape: [2, 2], scalars: [0, 1, 0.5, 0.2]))
        XCTAssertEqual(zero.scalar, Foundation.log(2), accuracy: 1e-6)
        // Saturated logits stay finite: confident right costs ~0, confident wrong costs |x|.
        let right = binaryCrossEntropyWithLogits(logits: Tensor(shape: [2], scalars: [100, -100]),
                                                 targets: Tensor(shape: [2], scalars: [1, 0]))
        XCTAssertEqual(right.scalar, 0, accuracy: 1e-6)
        let wrong = binaryCrossEntropyWithLogits(logits: Tensor(shape: [2], scalars: [100, -100]),
                                                 targets: Tensor(shape: [2], scalars: [0, 1]))
        XCTAssertEqual(wrong.scalar, 100, accuracy: 1e-3)
    }

    func testMultiClassHingeGradients() {
        // Logits 0.1 apart and margin 0.95 keep every margin term 0.05 away from its kink.
        let logits = distinctTensor([4, 5], seed: 512, spacing: 0.1)
        assertGradientsMatch([logits]) { multiClassHingeLoss(logits: $0[0], labels: [0, 4, 2, 2], margin: 0.95) }
        assertGradientsMatch([logits]) { multiClassHingeLoss(logits: $0[0], labels: [1, 3, 0, 4], margin: 0.45) }
    }

    func testMultiClassHingeValues() {
        // The torch.nn.MultiMarginLoss documentation example: 0.3250.
        let logits = Tensor(shape: [1, 4], scalars: [0.1, 0.2, 0.4, 0.8])
        XCTAssertEqual(multiClassHingeLoss(logits: logits, labels: [3]).scalar, 0.325, accuracy: 1e-6)
        // A sample whose label wins by more than the margin costs nothing; the other pays
        // (0.5 + 0.5) / 3, and the mean is over both samples.
        let confident = Tensor(shape: [2, 3], scalars: [5, 0, 0, 0, 0.5, 0])
        XCTAssertEqual(multiClassHingeLoss(logits: confident, labels: [0, 1]).scalar, 1.0 / 6, accuracy: 1e-6)
    }

    func testMeanSquaredError() {
        let a = uniformTensor([3, 4], seed: 513), b = uniformTensor([3, 4], seed: 514)
        assertGradientsMatch([a, b]) { meanSquaredError($0[0], $0[1]) }
        assertGradientsMatch([a, b], checked: [0]) { meanSquaredError($0[0], $0[1]) }
        let loss = meanSquaredError(Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), Tensor(shape: [2, 2], scalars: [1, 0, 4, 4]))
        XCTAssertEqual(loss.scalar, 1.25)
    }

    func testLossesOnUntrackedInputsBuildNoGraph() {
        let logits = uniformTensor([2, 3], seed: 515), targets = uniformTensor([2, 3], seed: 516, low: 0, high: 1)
        XCTAssertNil(softmaxCrossEntropy(logits: logits, labels: [0, 2]).node)
        XCTAssertNil(binaryCrossEntropyWithLogits(logits: logits, targets: targets).node)
        XCTAssertNil(multiClassHingeLoss(logits: logits, labels: [1, 0]).node)
        XCTAssertNil(meanSquaredError(logits, targets).node)
    }
}

final class GradientCheckEmptyBatchTests: XCTestCase {
    func testLossesOfAnEmptyBatchAreZero() {
        let empty = Tensor.zeros([0, 3]).trackingGradient()
        XCTAssertEqual(softmaxCrossEntropy(logits: empty, labels: []).scalar, 0)
        XCTAssertEqual(multiClassHingeLoss(logits: empty, labels: []).scalar, 0)
        XCTAssertEqual(softmaxCrossEntropy(logits: empty, labels: []).backward()[empty]?.shape, [0, 3])
    }
}
