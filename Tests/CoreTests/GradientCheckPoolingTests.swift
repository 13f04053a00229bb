import XCTest
@testable import PerceptCore

/// Direct-loop pooling reference: max ignores padding, average divides by kernel * kernel.
func referencePool2D(_ x: Tensor, kernel: Int, stride: Int, padding: Int, max: Bool) -> [Float] {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
    let xs = x.scalars
    var out: [Float] = []
    for plane in 0..<(n * c) {
        for oy in 0..<ho {
            for ox in 0..<wo {
                var best = -Float.infinity, total: Float = 0
                for ky in 0..<kernel {
                    for kx in 0..<kernel {
                        let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                        guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                        let v = xs[(plane * h + iy) * w + ix]
                        best = Swift.max(best, v)
                        total += v
                    }
                }
                out.append(max ? best : total / Float(kernel * kernel))
            }
        }
    }
    return out
}

final class GradientCheckPoolingTests: XCTestCase {
    /// (shape, kernel, stride, padding): the 2x2 fast path on even and odd sizes, then general windows.
    static let cases: [([Int], Int, Int, Int)] = [
        ([2, 2, 4, 6], 2, 2, 0),
        ([1, 2, 5, 7], 2, 2, 0),
        ([2, 2, 5, 7], 3, 2, 1),
        ([1, 2, 5, 7], 3, 1, 1),
        ([2, 1, 6, 7], 3, 3, 0),
        ([1, 2, 5, 4], 2, 1, 1),
        ([1, 1, 7, 5], 4, 2, 2),
    ]
    /// Planes wide enough for the eight-output vector loop of the general max pool's column pass
    /// (strides 1 and 2), with widths that leave clipped and unclipped windows after it.
    static let wide: [([Int], Int, Int, Int)] = [
        ([1, 2, 5, 40], 3, 2, 1),
        ([1, 1, 4, 37], 3, 2, 0),
        ([1, 2, 3, 29], 3, 1, 1),
        ([1, 1, 5, 35], 4, 2, 2),
        ([2, 2, 3, 1], 5, 1, 2),   // one column: every window clipped, more padding than outputs
    ]

    func testMaxPoolGradients() {
        for (i, (shape, kernel, stride, padding)) in Self.cases.enumerated() {
            let failures = checkGradients([distinctTensor(shape, seed: UInt64(40 + i))]) {
                $0[0].maxPool2D(kernel: kernel, stride: stride, padding: padding)
            }.failures
            for failure in failures { XCTFail("max pool \(shape) k\(kernel) s\(stride) p\(padding): \(failure)") }
        }
    }

    func testAvgPoolGradients() {
        for (i, (shape, kernel, stride, padding)) in Self.cases.enumerated() {
            let failures = checkGradients([uniformTensor(shape, seed: UInt64(60 + i))]) {
                $0[0].avgPool2D(kernel: kernel, stride: stride, padding: padding)
            }.failures
            for failure in failures { XCTFail("avg pool \(shape) k\(kernel) s\(stride) p\(padding): \(failure)") }
        }
    }

    func testPoolingMatchesDirectLoops() {
        for (i, (shape, kernel, stride, padding)) in (Self.cases + Self.wide).enumerated() {
            // Negative values show whether padding wrongly takes part in the max as zeros.
            let x = uniformTensor(shape, seed: UInt64(80 + i), low: -2, high: -0.5)
            let maxOut = x.maxPool2D(kernel: kernel, stride: stride, padding: padding)
            XCTAssertEqual(maxOut.scalars, referencePool2D(x, kernel: kernel, stride: stride, padding: padding, max: true),
                           "max pool \(shape) k\(kernel) s\(stride) p\(padding)")
            let tracked = x.trackingGradient().maxPool2D(kernel: kernel, stride: stride, padding: padding)
            XCTAssertEqual(tracked.scalars, maxOut.scalars, "tracked max pool path")
            let avgOut = x.avgPool2D(kernel: kernel, stride: stride, padding: padding)
            assertClose(avgOut.scalars, referencePool2D(x, kernel: kernel, stride: stride, padding: padding, max: false),
                        "avg pool \(shape) k\(kernel) s\(stride) p\(padding)")
        }
    }

    func testMaxPool4x4Values() {
        let x = Tensor(shape: [1, 1, 4, 4], scalars: [
            1, 3, 2, 0,
            5, 4, 1, 7,
            -1, -2, 6, 6.5,
            -3, 0, 8, 2,
        ])
        let y = x.maxPool2D(kernel: 2, stride: 2)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [5, 7, 0, 8])
        // The gradient goes only to the winners.
        let tracked = x.trackingGradient()
        let grads = tracked.maxPool2D(kernel: 2).sum().backward()
        XCTAssertEqual(grads[tracked]?.scalars, [
            0, 0, 0, 0,
            1, 0, 0, 1,
            0, 0, 0, 0,
            0, 1, 1, 0,
        ])
    }

    func testMaxPoolTiesGoToFirstElementInRowMajorOrder() {
        // PyTorch scans each window row by row and keeps the first maximum.
        let flat = Tensor(shape: [1, 1, 2, 2], repeating: 3).trackingGradient()
        XCTAssertEqual(flat.maxPool2D(kernel: 2).sum().backward()[flat]?.scalars, [1, 0, 0, 0])
        // Top-right beats bottom-left: a column-first scan would pick the other one.
        let diagonal = Tensor(shape: [1, 1, 2, 2], scalars: [0, 5, 5, 0]).trackingGradient()
        XCTAssertEqual(diagonal.maxPool2D(kernel: 2).sum().backward()[diagonal]?.scalars, [0, 1, 0, 0])
        let lower = Tensor(shape: [1, 1, 2, 2], scalars: [0, 1, 5, 5]).trackingGradient()
        XCTAssertEqual(lower.maxPool2D(kernel: 2).sum().backward()[lower]?.scalars, [0, 0, 1, 0])
        // The same on the general path.
        let window = Tensor(shape: [1, 1, 3, 3], scalars: [1, 0, 7, 7, 0, 0, 0, 7, 0]).trackingGradient()
        XCTAssertEqual(window.maxPool2D(kernel: 3, stride: 1).sum().backward()[window]?.scalars, [0, 0, 1, 0, 0, 0, 0, 0, 0])
    }

    /// With values from {0, 1, 2}, most windows hold tied maxima: the gradient of the sum counts,
    /// for each input, the windows it wins, which must match a row-major scan with strict
    /// comparisons (the first maximum wins), on every window shape and padding.
    func testMaxPoolWinnersMatchARowMajorScan() {
        var rng = SeededGenerator(seed: 17)
        for (shape, kernel, stride, padding) in Self.cases + Self.wide + [([2, 3, 9, 8], 3, 2, 1), ([1, 2, 8, 9], 3, 2, 0)] {
            let values = (0..<shape.reduce(1, *)).map { _ in Float(Int.random(in: 0...2, using: &rng)) }
            let x = Tensor(shape: shape, scalars: values).trackingGradient()
            let counts = x.maxPool2D(kernel: kernel, stride: stride, padding: padding).sum().backward()[x]!.scalars
            let (h, w) = (shape[2], shape[3])
            let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
            var expected = [Float](repeating: 0, count: values.count)
            for plane in 0..<(shape[0] * shape[1]) {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var best = -Float.infinity, at = -1
                        for iy in max(0, oy * stride - padding)..<min(h, oy * stride - padding + kernel) {
                            for ix in max(0, ox * stride - padding)..<min(w, ox * stride - padding + kernel) {
                                let i = (plane * h + iy) * w + ix
                                if at < 0 || values[i] > best { best = values[i]; at = i }
                            }
                        }
                        expected[at] += 1
                    }
                }
            }
            XCTAssertEqual(counts, expected, "\(shape) k\(kernel) s\(stride) p\(padding)")
        }
    }

    func testAvgPoolCountsPadding() {
        // count_include_pad: the corner window of a 3x3 kernel with padding 1 sees 4 ones out of 9.
        let x = Tensor(shape: [1, 1, 2, 2], repeating: 1)
        let y = x.avgPool2D(kernel: 3, stride: 1, padding: 1)
        assertClose(y.scalars, [4.0 / 9, 4.0 / 9, 4.0 / 9, 4.0 / 9])
    }

    func testGlobalAveragePool() {
        assertGradientsMatch([uniformTensor([2, 3, 3, 5], seed: 90)]) { $0[0].globalAveragePool() }
        let x = Tensor(shape: [1, 2, 1, 3], scalars: [1, 2, 3, -3, 0, 6])
        let y = x.globalAveragePool()
        XCTAssertEqual(y.shape, [1, 2])
        XCTAssertEqual(y.scalars, [2, 1])
    }

    func testPoolingInferenceBuildsNoGraph() {
        let x = uniformTensor([1, 1, 4, 4], seed: 91)
        XCTAssertNil(x.maxPool2D(kernel: 2).node)
        XCTAssertNil(x.maxPool2D(kernel: 3, stride: 1, padding: 1).node)
        XCTAssertNil(x.avgPool2D(kernel: 2).node)
        XCTAssertNil(x.globalAveragePool().node)
    }
}
