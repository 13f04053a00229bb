import XCTest
@testable import PerceptCore

final class GradientCheckSoftmaxTests: XCTestCase {
    func testSoftmaxGradients() {
        assertGradientsMatch([uniformTensor([3, 4], seed: 400, low: -3, high: 3)]) { $0[0].softmax() }
        assertGradientsMatch([uniformTensor([2, 3, 2, 3], seed: 401, low: -3, high: 3)]) { $0[0].softmax(axis: 1) }
        assertGradientsMatch([uniformTensor([3, 2, 4], seed: 402)]) { $0[0].softmax(axis: 0) }
        assertGradientsMatch([uniformTensor([3, 2, 4], seed: 403)]) { $0[0].softmax(axis: 2) }
    }

    func testLogSoftmaxGradients() {
        assertGradientsMatch([uniformTensor([3, 4], seed: 404, low: -3, high: 3)]) { $0[0].logSoftmax() }
        assertGradientsMatch([uniformTensor([2, 3, 2, 3], seed: 405, low: -3, high: 3)]) { $0[0].logSoftmax(axis: 1) }
        assertGradientsMatch([uniformTensor([3, 2, 4], seed: 406)]) { $0[0].logSoftmax(axis: 2) }
    }

    func testSoftmaxOverManyPositions() {
        // More than one 256-position block per image, so the block split and its tail are used.
        let x = uniformTensor([2, 3, 17, 17], seed: 407, low: -5, high: 5)
        let y = x.softmax()
        let log = x.logSoftmax()
        let (c, inner) = (3, 17 * 17)
        for b in 0..<2 {
            for i in 0..<inner {
                var total: Float = 0
                for k in 0..<c {
                    let index = (b * c + k) * inner + i
                    total += y.scalars[index]
                    XCTAssertEqual(Foundation.log(y.scalars[index]), log.scalars[index], accuracy: 1e-5)
                }
                XCTAssertEqual(total, 1, accuracy: 1e-6, "image \(b) position \(i)")
            }
        }
    }

    func testSoftmaxValues() {
        let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 0, 0, 0])
        assertClose(x.softmax().scalars, [0.09003057, 0.24472847, 0.66524096, 1.0 / 3, 1.0 / 3, 1.0 / 3])
        assertClose(x.logSoftmax().scalars, [-2.40760596, -1.40760596, -0.40760596, -1.09861229, -1.09861229, -1.09861229])
    }

    func testSoftmaxIsStableForLargeLogits() {
        let x = Tensor(shape: [2, 3], scalars: [1000, 1001, 1002, -1000, -1001, -1002])
        let y = x.softmax(), log = x.logSoftmax()
        XCTAssertTrue(y.scalars.allSatisfy { $0.isFinite } && log.scalars.allSatisfy { $0.isFinite })
        assertClose(y.scalars, [0.09003057, 0.24472847, 0.66524096, 0.66524096, 0.24472847, 0.09003057])
        assertClose(log.scalars, [-2.40760596, -1.40760596, -0.40760596, -0.40760596, -1.40760596, -2.40760596])
    }

    func testSoftmaxInferenceBuildsNoGraph() {
        let x = uniformTensor([2, 3], seed: 408)
        XCTAssertNil(x.softmax().node)
        XCTAssertNil(x.logSoftmax().node)
    }
}
