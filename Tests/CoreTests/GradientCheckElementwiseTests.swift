import XCTest
@testable import PerceptCore

/// Gradient checks for the elementwise, reduction, shape and linear ops.
final class GradientCheckElementwiseTests: XCTestCase {
    func testAddSubtractMultiply() {
        let a = uniformTensor([2, 3, 2], seed: 1), b = uniformTensor([2, 3, 2], seed: 2)
        assertGradientsMatch([a, b]) { $0[0] + $0[1] }
        assertGradientsMatch([a, b]) { $0[0] - $0[1] }
        assertGradientsMatch([a, b]) { $0[0] * $0[1] }
    }

    func testScalarMultiply() {
        assertGradientsMatch([uniformTensor([3, 4], seed: 3)]) { $0[0] * -2.5 }
    }

    func testSharedInputGradientsAdd() {
        // x enters the graph three times; the graph must sum all contributions.
        assertGradientsMatch([uniformTensor([7], seed: 4)]) { x in x[0] * x[0] + x[0] * 3 }
    }

    func testActivations() {
        let x = awayFromZeroTensor([2, 3, 4], seed: 5)
        assertGradientsMatch([x]) { $0[0].relu() }
        assertGradientsMatch([x]) { $0[0].leakyRelu(slope: 0.1) }
        let wide = uniformTensor([2, 3, 4], seed: 6, low: -4, high: 4)
        assertGradientsMatch([wide]) { $0[0].sigmoid() }
        assertGradientsMatch([wide]) { $0[0].tanh() }
    }

    func testActivationValues() {
        let x = Tensor(shape: [4], scalars: [-2, -0.5, 0.5, 3])
        XCTAssertEqual(x.relu().scalars, [0, 0, 0.5, 3])
        assertClose(x.leakyRelu(slope: 0.1).scalars, [-0.2, -0.05, 0.5, 3])
        assertClose(Tensor(shape: [3], scalars: [0, -100, 100]).sigmoid().scalars, [0.5, 0, 1])
    }

    func testReductions() {
        let x = uniformTensor([2, 3, 5], seed: 7)
        assertGradientsMatch([x]) { $0[0].sum() }
        assertGradientsMatch([x]) { $0[0].mean() }
        XCTAssertEqual(Tensor(shape: [2, 2], scalars: [1, 2, 3, 6]).mean().scalar, 3)
    }

    func testReshapeAndFlatten() {
        let x = uniformTensor([2, 3, 2, 2], seed: 8)
        // Multiplying after the reshape makes the gradient depend on the element order.
        let weights = uniformTensor([6, 4], seed: 9)
        assertGradientsMatch([x, weights]) { $0[0].reshaped([-1, 4]) * $0[1] }
        let flatWeights = uniformTensor([2, 12], seed: 10)
        assertGradientsMatch([x, flatWeights]) { $0[0].flattened() * $0[1] }
    }

    func testConcatChannels() {
        let a = uniformTensor([2, 1, 2, 3], seed: 11)
        let b = uniformTensor([2, 3, 2, 3], seed: 12)
        let c = uniformTensor([2, 2, 2, 3], seed: 13)
        assertGradientsMatch([a, b, c]) { concatChannels($0) }
        let rows = [uniformTensor([3, 2], seed: 14), uniformTensor([3, 4], seed: 15)]
        assertGradientsMatch(rows) { concatChannels($0) }
        // Only some parts tracked: the others must simply receive no gradient.
        assertGradientsMatch([a, b, c], checked: [1]) { concatChannels($0) }
    }

    func testConcatChannelsValues() {
        let a = Tensor(shape: [2, 1, 1, 2], scalars: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 2, 1, 2], scalars: [5, 6, 7, 8, 9, 10, 11, 12])
        XCTAssertEqual(concatChannels([a, b]).scalars, [1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12])
    }

    func testLinear() {
        let x = uniformTensor([3, 4], seed: 16)
        let weight = uniformTensor([5, 4], seed: 17)
        let bias = uniformTensor([5], seed: 18)
        assertGradientsMatch([x, weight, bias]) { $0[0].linear($0[1], bias: $0[2]) }
        assertGradientsMatch([x, weight]) { $0[0].linear($0[1]) }
        assertGradientsMatch([x, weight, bias], checked: [1, 2]) { $0[0].linear($0[1], bias: $0[2]) }
    }

    func testLinearValues() {
        let x = Tensor(shape: [1, 2], scalars: [1, 2])
        let weight = Tensor(shape: [2, 2], scalars: [1, 0, 3, -1])
        let bias = Tensor(shape: [2], scalars: [0.5, 1])
        XCTAssertEqual(x.linear(weight, bias: bias).scalars, [1.5, 2])
    }

    func testComposedNetwork() {
        // A small two-layer MLP end to end, so that chained pullbacks are checked too.
        let x = uniformTensor([4, 3], seed: 19)
        let w1 = uniformTensor([5, 3], seed: 20), b1 = uniformTensor([5], seed: 21)
        let w2 = uniformTensor([2, 5], seed: 22)
        assertGradientsMatch([x, w1, b1, w2]) { t in t[0].linear(t[1], bias: t[2]).tanh().linear(t[3]).mean() }
    }
}

/// The checker itself must be able to fail.
final class GradientCheckSelfTests: XCTestCase {
    func testCheckerRejectsWrongPullback() {
        let x = uniformTensor([5], seed: 23)
        // Square with a pullback that forgets the factor 2.
        let failures = checkGradients([x]) { t in
            let input = t[0]
            let out = Tensor(shape: input.shape, scalars: input.scalars.map { $0 * $0 })
            return Tensor.record(out, inputs: [input]) { g in
                [Tensor(shape: input.shape, scalars: zip(g.scalars, input.scalars).map { $0 * $1 })]
            }
        }.failures
        XCTAssertFalse(failures.isEmpty, "a gradient off by a factor of 2 passed the check")
    }

    func testCheckerRejectsMissingGraph() {
        // An op that forgets to record its pullback returns untracked outputs.
        let failures = checkGradients([uniformTensor([3], seed: 24)]) { $0[0].detached.copy() }.failures
        XCTAssertTrue(failures.contains { $0.contains("without a graph node") })
    }

    func testCheckerAcceptsCorrectPullback() {
        let failures = checkGradients([uniformTensor([5], seed: 25)]) { t in t[0] * t[0] }.failures
        XCTAssertEqual(failures, [])
    }
}
