import XCTest
@testable import PerceptCore

final class GradientCheckDropoutTests: XCTestCase {
    func testDropoutGradients() {
        // A fresh generator with the same seed on every call keeps the mask fixed across evaluations.
        let x = uniformTensor([4, 25], seed: 900)
        assertGradientsMatch([x]) { t in
            var rng = SeededGenerator(seed: 17)
            return t[0].dropout(probability: 0.5, training: true, using: &rng)
        }
        assertGradientsMatch([uniformTensor([2, 3, 2, 2], seed: 901)]) { t in
            var rng = SeededGenerator(seed: 18)
            return t[0].dropout(probability: 0.2, training: true, using: &rng)
        }
    }

    func testDropoutScalesSurvivorsAndDropsTheExpectedFraction() {
        let x = uniformTensor([100, 100], seed: 902, low: 0.5, high: 1.5)
        var rng = SeededGenerator(seed: 19)
        let y = x.dropout(probability: 0.3, training: true, using: &rng)
        var dropped = 0
        for (input, output) in zip(x.scalars, y.scalars) {
            if output == 0 {
                dropped += 1
            } else {
                XCTAssertEqual(output, input / 0.7, accuracy: 1e-6)
            }
        }
        // 10 000 Bernoulli(0.3) draws: standard deviation ~46, so +-250 is over 5 sigma.
        XCTAssertEqual(Double(dropped), 3_000, accuracy: 250)
    }

    func testSameSeedSameMaskAndGradientUsesIt() {
        let x = Tensor(shape: [64], repeating: 1).trackingGradient()
        var first = SeededGenerator(seed: 20), second = SeededGenerator(seed: 20)
        let a = x.dropout(probability: 0.5, training: true, using: &first)
        let b = x.dropout(probability: 0.5, training: true, using: &second)
        XCTAssertEqual(a.scalars, b.scalars)
        XCTAssertTrue(a.scalars.contains(0) && a.scalars.contains(2))
        // d(sum y)/dx is the mask itself.
        XCTAssertEqual(a.sum().backward()[x]?.scalars, a.scalars)
        // The generator moved on: a second draw gives another mask.
        let c = x.dropout(probability: 0.5, training: true, using: &first)
        XCTAssertNotEqual(a.scalars, c.scalars)
    }

    func testInferenceAndEdgeProbabilities() {
        let x = uniformTensor([3, 4], seed: 903)
        var rng = SeededGenerator(seed: 21)
        let inference = x.dropout(probability: 0.5, training: false, using: &rng)
        XCTAssertEqual(inference.scalars, x.scalars)
        XCTAssertNil(inference.node)
        XCTAssertEqual(x.dropout(probability: 0, training: true, using: &rng).scalars, x.scalars)
        XCTAssertEqual(x.dropout(probability: 1, training: true, using: &rng).scalars, [Float](repeating: 0, count: 12))
        XCTAssertNil(x.dropout(probability: 0.5, training: true, using: &rng).node)
    }
}
