import XCTest
@testable import PerceptCore

/// `function`'s forward with a deliberately wrong pullback: `corrupt(input, gradient)` is applied
/// to the correct vector-Jacobian product of `reference` (default: `function` itself).
func withWrongPullback(_ function: @escaping ([Tensor]) -> Tensor, reference: (([Tensor]) -> Tensor)? = nil,
                       corrupt: @escaping (Int, Tensor) -> Tensor = { $1 }) -> ([Tensor]) -> Tensor {
    let reference = reference ?? function
    return { inputs in
        let out = function(inputs.map { $0.detached })
        return Tensor.record(out, inputs: inputs) { g in
            let copies = inputs.map { $0.detached.copy().trackingGradient() }
            let gradients = reference(copies).backward(seed: g)
            return copies.indices.map { i in gradients[copies[i]].map { corrupt(i, $0) } }
        }
    }
}

/// A rank-2 tensor with its two indices swapped.
private func transposed(_ t: Tensor) -> Tensor {
    let (rows, columns) = (t.shape[0], t.shape[1])
    let values = t.scalars
    return Tensor(shape: [columns, rows], scalars: (0..<(rows * columns)).map { values[($0 % rows) * columns + $0 / rows] })
}

/// The gradient checker must catch the small mistakes that hide in real pullbacks.
final class GradientCheckPowerTests: XCTestCase {
    private let logits = uniformTensor([4, 5], seed: 1100, low: -2, high: 2)
    private let labels: [Int32] = [2, 1, 0, 4]

    private func assertCaught(_ what: String, _ result: GradientCheckResult, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(result.passed, "the checker passed \(what); worst \(result.worstRatio) at \(result.worst)",
                       file: file, line: line)
        XCTAssertGreaterThan(result.worstRatio, 1, what, file: file, line: line)
    }

    func testCorrectWrapperPasses() {
        // The wrapper itself is sound: with no corruption the check passes.
        let bce = withWrongPullback { binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1]) }
        let targets = uniformTensor([4, 5], seed: 1101, low: 0, high: 1)
        let result = checkGradients([logits, targets], checked: [0], bce)
        XCTAssertEqual(result.failures, [])
        XCTAssertLessThanOrEqual(result.worstRatio, 1)
    }

    func testCatchesHalvedBinaryCrossEntropyGradient() {
        let targets = uniformTensor([4, 5], seed: 1101, low: 0, high: 1)
        let halved = withWrongPullback({ binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1]) },
                                       corrupt: { $1 * 0.5 })
        assertCaught("a BCE gradient halved", checkGradients([logits, targets], checked: [0], halved))
    }

    func testCatchesDroppedLabelSmoothingTerm() {
        let dropped = withWrongPullback({ softmaxCrossEntropy(logits: $0[0], labels: self.labels, labelSmoothing: 0.1) },
                                        reference: { softmaxCrossEntropy(logits: $0[0], labels: self.labels) })
        assertCaught("a cross-entropy pullback without its label-smoothing term", checkGradients([logits], dropped))
    }

    func testCatchesMeanGradientDividedByTwiceTheCount() {
        let x = uniformTensor([8, 8], seed: 1102)
        let wrong = withWrongPullback({ $0[0].mean() }, corrupt: { $1 * 0.5 })
        assertCaught("a mean() gradient divided by 2N", checkGradients([x], wrong))
    }

    func testCatchesTransposedWeightGradient() {
        let x = uniformTensor([3, 4], seed: 1103), weight = uniformTensor([4, 4], seed: 1104)
        let wrong = withWrongPullback({ $0[0].linear($0[1]) }, corrupt: { i, g in i == 1 ? transposed(g) : g })
        assertCaught("a linear weight gradient with its indices swapped", checkGradients([x, weight], wrong))
    }

    func testCatchesTransposedGradientOfAScalarLoss() {
        let x = uniformTensor([8, 4], seed: 1105), weight = uniformTensor([4, 4], seed: 1106)
        let wrong = withWrongPullback({ $0[0].linear($0[1]).tanh().mean() }, corrupt: { i, g in i == 1 ? transposed(g) : g })
        assertCaught("a transposed weight gradient under a mean loss", checkGradients([x, weight], wrong))
    }
}
