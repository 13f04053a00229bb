import XCTest
@testable import PerceptCore

final class GradientCheckUpsampleTests: XCTestCase {
    func testBilinear2x2MatchesPyTorch() {
        // F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let y = x.upsampleBilinear(scale: 2)
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        assertClose(y.scalars, [
            1, 1.25, 1.75, 2,
            1.5, 1.75, 2.25, 2.5,
            2.5, 2.75, 3.25, 3.5,
            3, 3.25, 3.75, 4,
        ])
    }

    func testBilinearResizeOfARamp() {
        // Width 3 -> 5: sources (o + 0.5) * 0.6 - 0.5 = -0.2 (clamped), 0.4, 1, 1.6, 2.2 (clamped at the edge).
        let ramp = Tensor(shape: [1, 1, 1, 3], scalars: [0, 1, 2])
        assertClose(ramp.resizedBilinear(height: 1, width: 5).scalars, [0, 0.4, 1, 1.6, 2])
        // Downsampling 4 -> 2 averages neighbour pairs: sources 0.5 and 2.5.
        let wide = Tensor(shape: [1, 1, 1, 4], scalars: [0, 2, 4, 6])
        assertClose(wide.resizedBilinear(height: 1, width: 2).scalars, [1, 5])
        // A constant image stays constant at any size.
        let constant = Tensor(shape: [1, 2, 3, 2], repeating: 7)
        XCTAssertTrue(constant.resizedBilinear(height: 5, width: 7).scalars.allSatisfy { abs($0 - 7) < 1e-5 })
    }

    func testBilinearGradients() {
        let x = uniformTensor([2, 2, 3, 4], seed: 300)
        assertGradientsMatch([x]) { $0[0].upsampleBilinear(scale: 2) }
        assertGradientsMatch([x]) { $0[0].resizedBilinear(height: 5, width: 7) }
        assertGradientsMatch([uniformTensor([1, 2, 5, 7], seed: 301)]) { $0[0].resizedBilinear(height: 3, width: 4) }
        assertGradientsMatch([uniformTensor([1, 1, 1, 3], seed: 302)]) { $0[0].upsampleBilinear(scale: 3) }
    }

    func testNearestValues() {
        let x = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        let y = x.upsampleNearest(scale: 2)
        XCTAssertEqual(y.shape, [1, 1, 4, 4])
        XCTAssertEqual(y.scalars, [
            1, 1, 2, 2,
            1, 1, 2, 2,
            3, 3, 4, 4,
            3, 3, 4, 4,
        ])
        XCTAssertEqual(x.upsampleNearest(scale: 1).scalars, x.scalars)
    }

    func testNearestGradients() {
        let x = uniformTensor([2, 2, 3, 2], seed: 303)
        assertGradientsMatch([x]) { $0[0].upsampleNearest(scale: 2) }
        assertGradientsMatch([x]) { $0[0].upsampleNearest(scale: 3) }
        assertGradientsMatch([x]) { $0[0].upsampleNearest(scale: 1) }
    }

    func testUpsampleInferenceBuildsNoGraph() {
        let x = uniformTensor([1, 1, 2, 2], seed: 304)
        XCTAssertNil(x.upsampleNearest(scale: 2).node)
        XCTAssertNil(x.upsampleBilinear(scale: 2).node)
        XCTAssertNil(x.resizedBilinear(height: 3, width: 5).node)
    }
}
