import XCTest
@testable import PerceptCore

/// Checks across ops: a small network end to end, pullbacks that outlive their temporaries,
/// and inference (untracked inputs) building no graph for any op.
final class GradientCheckCompositeTests: XCTestCase {
    /// conv -> batch norm -> relu -> max pool -> transposed conv -> bilinear -> per-pixel cross-entropy.
    private func segmentationLoss(_ t: [Tensor]) -> Tensor {
        let statistics = (Buffer(Tensor(shape: [3], repeating: 0)), Buffer(Tensor(shape: [3], repeating: 1)))
        let features = t[0].conv2D(t[1], bias: t[2], padding: 1)
            .batchNorm2D(gamma: t[3], beta: t[4], runningMean: statistics.0, runningVar: statistics.1, training: true)
            .leakyRelu(slope: 0.1)
            .maxPool2D(kernel: 2)
        let logits = features.convTranspose2D(t[5], stride: 2).upsampleBilinear(scale: 1)
        let labels: [Int32] = (0..<(2 * 4 * 4)).map { Int32($0 % 3) }
        return softmaxCrossEntropy(logits: logits, labels: labels, labelSmoothing: 0.1)
    }

    func testSmallSegmentationNetwork() {
        let inputs = [
            uniformTensor([2, 2, 4, 4], seed: 1000),
            uniformTensor([3, 2, 3, 3], seed: 1001), uniformTensor([3], seed: 1002),
            uniformTensor([3], seed: 1003, low: 0.5, high: 1.5), uniformTensor([3], seed: 1004),
            uniformTensor([3, 3, 2, 2], seed: 1005),
        ]
        // Max pool and leaky relu have kinks; a smaller step keeps random inputs clear of them.
        assertGradientsMatch(inputs, epsilon: 2e-3) { self.segmentationLoss($0) }
    }

    /// Gradients computed while every temporary is still alive, and again after the temporaries
    /// are released and their memory is reused: pullbacks must hold what they read.
    func testPullbacksKeepWhatTheyReadAlive() {
        let ops: [(String, (Tensor) -> Tensor)] = [
            ("maxPool2D", { ($0 * 1).maxPool2D(kernel: 2).sum() }),
            ("maxPool2D k3", { ($0 * 1).maxPool2D(kernel: 3, stride: 1, padding: 1).sum() }),
            ("avgPool2D", { ($0 * 1).avgPool2D(kernel: 2).sum() }),
            ("globalAveragePool", { ($0 * 1).globalAveragePool().sum() }),
            ("batchNorm2D", { x in
                let out = (x * 1).batchNorm2D(gamma: Tensor(shape: [2], scalars: [1.5, 0.5]), beta: Tensor(shape: [2], repeating: 0.1),
                                              runningMean: Buffer(Tensor.zeros([2])), runningVar: Buffer(Tensor(shape: [2], repeating: 1)),
                                              training: true)
                return (out * out).sum()
            }),
            ("resizedBilinear", { ($0 * 1).resizedBilinear(height: 3, width: 5).sum() }),
            ("upsampleNearest", { ($0 * 1).upsampleNearest(scale: 2).sum() }),
            ("softmax", { x in (x * 1).softmax() * Tensor(shape: x.shape, scalars: (0..<x.count).map(Float.init)) }),
            ("logSoftmax", { x in (x * 1).logSoftmax() * Tensor(shape: x.shape, scalars: (0..<x.count).map(Float.init)) }),
            ("softmaxCrossEntropy", { x in
                softmaxCrossEntropy(logits: x * 1, labels: [0, 1, 1, 0, 255, 1, 0, 1], ignoreIndex: 255,
                                    classWeights: Tensor(shape: [2], scalars: [0.3, 2]), labelSmoothing: 0.1)
            }),
            ("binaryCrossEntropyWithLogits", { x in
                binaryCrossEntropyWithLogits(logits: x * 1, targets: Tensor(shape: x.shape, repeating: 0.25),
                                             positiveWeight: Tensor(shape: [2], scalars: [2, 0.5]))
            }),
            ("multiClassHingeLoss", { x in multiClassHingeLoss(logits: (x * 1).reshaped([4, 4]), labels: [0, 1, 2, 3]) }),
            ("meanSquaredError", { x in meanSquaredError(x * 1, Tensor(shape: x.shape, repeating: 0.5)) }),
            ("convTranspose2D", { x in
                (x * 1).convTranspose2D(Tensor(shape: [2, 1, 2, 2], scalars: [1, -1, 2, 0.5, 0, 1, -2, 3]),
                                        bias: Tensor(shape: [1], scalars: [0.25]), stride: 2).sum()
            }),
            ("dropout", { x in
                var rng = SeededGenerator(seed: 5)
                return (x * 1).dropout(probability: 0.5, training: true, using: &rng).sum()
            }),
        ]
        let input = distinctTensor([1, 2, 2, 4], seed: 1010)
        for (name, op) in ops {
            let x = input.trackingGradient()
            let expected = op(x).sum().backward()[x]!.scalars
            let loss = op(x).sum()
            // Reuse freed memory with garbage before the pullbacks run.
            var garbage: [Tensor] = []
            for size in [1, 2, 4, 8, 16, 32, 64] { for _ in 0..<8 { garbage.append(Tensor(shape: [size], repeating: 1e30)) } }
            let actual = loss.backward()[x]!.scalars
            XCTAssertEqual(actual, expected, name)
            XCTAssertFalse(garbage.isEmpty)
        }
    }

    func testEveryNewOpOnUntrackedInputsBuildsNoGraph() {
        let x = uniformTensor([2, 2, 4, 4], seed: 1020)
        var rng = SeededGenerator(seed: 1021)
        let outputs: [(String, Tensor)] = [
            ("maxPool2D", x.maxPool2D(kernel: 2)),
            ("avgPool2D", x.avgPool2D(kernel: 3, stride: 1, padding: 1)),
            ("globalAveragePool", x.globalAveragePool()),
            ("batchNorm2D training", x.batchNorm2D(gamma: Tensor(shape: [2], repeating: 1), beta: Tensor.zeros([2]),
                                                   runningMean: Buffer(Tensor.zeros([2])), runningVar: Buffer(Tensor(shape: [2], repeating: 1)),
                                                   training: true)),
            ("upsampleBilinear", x.upsampleBilinear(scale: 2)),
            ("upsampleNearest", x.upsampleNearest(scale: 2)),
            ("softmax", x.softmax()),
            ("logSoftmax", x.logSoftmax()),
            ("softmaxCrossEntropy", softmaxCrossEntropy(logits: x, labels: [Int32](repeating: 1, count: 32))),
            ("binaryCrossEntropyWithLogits", binaryCrossEntropyWithLogits(logits: x, targets: x.sigmoid())),
            ("multiClassHingeLoss", multiClassHingeLoss(logits: x.reshaped([8, 8]), labels: [0, 1, 2, 3, 4, 5, 6, 7])),
            ("meanSquaredError", meanSquaredError(x, x * 2)),
            ("convTranspose2D", x.convTranspose2D(Tensor(shape: [2, 3, 3, 3], repeating: 0.1), stride: 2)),
            ("dropout", x.dropout(probability: 0.5, training: true, using: &rng)),
        ]
        for (name, output) in outputs { XCTAssertNil(output.node, "\(name) built a graph node in inference") }
    }
}
