import XCTest
@testable import PerceptCore

/// The ops a window detector's head needs: channel slices and the weighted smooth L1 loss.
final class GradientCheckDetectionOpsTests: XCTestCase {
    func testChannelSliceGradientsAndValues() {
        var rng = SeededGenerator(seed: 61)
        let x = Tensor.randomNormal([2, 5, 3, 2], using: &rng)
        assertGradientsMatch([x]) { $0[0].channels(1..<4) }
        let slice = x.channels(3..<5)
        XCTAssertEqual(slice.shape, [2, 2, 3, 2])
        // Image 1, channel 4, pixel (2, 1) is channel 1 of the slice.
        let sliceIndex: Int = ((1 * 2 + 1) * 3 + 2) * 2 + 1, sourceIndex: Int = ((1 * 5 + 4) * 3 + 2) * 2 + 1
        XCTAssertEqual(slice.scalars[sliceIndex], x.scalars[sourceIndex])
    }

    func testSpatialCropGradientsAndValues() {
        var rng = SeededGenerator(seed: 63)
        let x = Tensor.randomNormal([2, 3, 5, 6], using: &rng)
        assertGradientsMatch([x]) { $0[0].cropped(top: 1, left: 2, height: 3, width: 3) }
        let patch = x.cropped(top: 2, left: 1, height: 2, width: 4)
        XCTAssertEqual(patch.shape, [2, 3, 2, 4])
        // Image 1, channel 2, patch pixel (1, 3) is source pixel (3, 4).
        let patchIndex: Int = ((1 * 3 + 2) * 2 + 1) * 4 + 3, sourceIndex: Int = ((1 * 3 + 2) * 5 + 3) * 6 + 4
        XCTAssertEqual(patch.scalars[patchIndex], x.scalars[sourceIndex])
    }

    func testPointwiseConvolutionGradientsAndSizeIndependentValues() {
        var rng = SeededGenerator(seed: 62)
        let x = Tensor.randomNormal([2, 5, 3, 4], using: &rng)
        let w = Tensor.randomNormal([3, 5, 1, 1], using: &rng), b = Tensor.randomNormal([3], using: &rng)
        assertGradientsMatch([x, w, b]) { $0[0].pointwiseConv2D($0[1], bias: $0[2]) }
        assertGradientsMatch([x, w]) { $0[0].pointwiseConv2D($0[1], bias: nil) }
        // The same sums as conv2D, to rounding; and one pixel alone gives its value in the whole image bit for bit.
        let full = x.pointwiseConv2D(w, bias: b)
        for (a, e) in zip(full.scalars, x.conv2D(w, bias: b).scalars) { XCTAssertEqual(a, e, accuracy: 1e-5) }
        let pixel = Tensor(shape: [1, 5, 1, 1], scalars: (0..<5).map { x.scalars[$0 * 12 + 7] })
        let alone = pixel.pointwiseConv2D(w, bias: b)
        XCTAssertEqual((0..<3).map { alone.scalars[$0] }, (0..<3).map { full.scalars[$0 * 12 + 7] })
    }

    func testSmoothL1GradientsOnBothBranches() {
        // Differences of about 0.2 (quadratic branch) and 3 (linear branch), none near |d| = beta.
        let prediction = Tensor(shape: [2, 3], scalars: [0.2, -3.1, 1.5, 0.1, 2.9, -0.3])
        let target = Tensor(shape: [2, 3], scalars: [0.05, 0.2, 1.3, -0.2, -0.4, -0.55])
        let weights = Tensor(shape: [2, 3], scalars: [1, 1, 0.5, 0, 2, 1])
        assertGradientsMatch([prediction], epsilon: 1e-3) { smoothL1Loss($0[0], target, weights: weights) }
    }

    func testSmoothL1Values() {
        // |d| = 0.5 (quadratic: 0.125), |d| = 2 (linear: 1.5), weight 0 ignored; mean over weights 1 + 3.
        let loss = smoothL1Loss(Tensor(shape: [3], scalars: [0.5, 3, 9]), Tensor(shape: [3], scalars: [0, 1, 0]),
                                weights: Tensor(shape: [3], scalars: [1, 3, 0]))
        XCTAssertEqual(loss.scalar, (0.125 + 3 * 1.5) / 4, accuracy: 1e-6)
        XCTAssertEqual(smoothL1Loss(Tensor(shape: [1], scalars: [2]), Tensor(shape: [1], scalars: [0]),
                                    weights: Tensor(shape: [1], scalars: [0])).scalar, 0)
    }
}
