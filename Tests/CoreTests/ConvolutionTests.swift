import XCTest
@testable import PerceptCore

/// Convolution forward values against a direct six-loop reference, over the code paths of
/// ConvPlan (contiguous shift, strided, pointwise, multi-image GEMMs, groups).
final class ConvolutionTests: XCTestCase {
    func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, padding: Int, groups: Int) -> [Float] {
        let (n, cin, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cout, k, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let ho = (h + 2 * padding - k) / stride + 1, wo = (wd + 2 * padding - kw) / stride + 1
        let cinG = cin / groups, coutG = cout / groups
        var out = [Float](repeating: 0, count: n * cout * ho * wo)
        for b0 in 0..<n { for o in 0..<cout { for oy in 0..<ho { for ox in 0..<wo {
            var s: Float = b?.pointer[o] ?? 0
            let g = o / coutG
            for ci in 0..<cinG { for ky in 0..<k { for kx in 0..<kw {
                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                s += x.pointer[((b0 * cin + g * cinG + ci) * h + iy) * wd + ix] * w.pointer[((o * cinG + ci) * k + ky) * kw + kx]
            } } }
            out[((b0 * cout + o) * ho + oy) * wo + ox] = s
        } } } }
        return out
    }

    func testMatchesDirectConvolution() {
        var rng = SeededGenerator(seed: 7)
        let cases: [(n: Int, cin: Int, cout: Int, h: Int, w: Int, k: Int, stride: Int, padding: Int, groups: Int)] = [
            (2, 3, 4, 5, 7, 3, 1, 1, 1),   // same-size: contiguous shift path
            (3, 2, 5, 6, 6, 3, 2, 1, 1),   // strided
            (2, 4, 6, 4, 5, 1, 1, 0, 2),   // pointwise, groups
            (5, 2, 3, 3, 3, 3, 1, 1, 1),   // 3x3 outputs: several images per GEMM
            (1, 2, 2, 9, 8, 5, 1, 2, 1),
            (2, 1, 2, 8, 9, 7, 2, 3, 1),
            (2, 3, 2, 6, 5, 3, 1, 0, 1),   // valid convolution
            (2, 2, 4, 7, 7, 1, 2, 0, 1),   // strided 1x1 projection
        ]
        for c in cases {
            let x = Tensor.randomNormal([c.n, c.cin, c.h, c.w], using: &rng)
            let w = Tensor.randomNormal([c.cout, c.cin / c.groups, c.k, c.k], using: &rng)
            let b = Tensor.randomNormal([c.cout], using: &rng)
            let y = x.conv2D(w, bias: b, stride: c.stride, padding: c.padding, groups: c.groups)
            let expected = reference(x, w, b, stride: c.stride, padding: c.padding, groups: c.groups)
            XCTAssertEqual(y.count, expected.count, "\(c)")
            for (a, e) in zip(y.scalars, expected) { XCTAssertEqual(a, e, accuracy: 1e-4, "\(c)") }
        }
    }

    /// Input and weight gradients against direct loops, on sizes that take the tiled path
    /// (40x40 output, more pixels than one tile), the multi-image path and strides.
    func testGradientsMatchDirectLoops() {
        var rng = SeededGenerator(seed: 11)
        let cases: [(n: Int, cin: Int, cout: Int, h: Int, w: Int, k: Int, stride: Int, padding: Int)] = [
            (2, 1, 2, 40, 40, 3, 1, 1), (2, 2, 3, 36, 33, 3, 2, 1), (6, 2, 3, 4, 4, 3, 1, 1), (2, 3, 2, 5, 6, 1, 1, 0),
            (2, 3, 2, 24, 24, 1, 1, 0), (1, 1, 2, 70, 70, 3, 2, 1), (1, 1, 2, 70, 70, 1, 2, 0),
        ]
        for c in cases {
            let x = Tensor.randomNormal([c.n, c.cin, c.h, c.w], using: &rng).trackingGradient()
            let w = Tensor.randomNormal([c.cout, c.cin, c.k, c.k], using: &rng).trackingGradient()
            let y = x.conv2D(w, stride: c.stride, padding: c.padding)
            let seed = Tensor.randomNormal(y.shape, using: &rng)
            let grads = y.backward(seed: seed)
            let (ho, wo) = (y.shape[2], y.shape[3])
            var dx = [Float](repeating: 0, count: x.count), dw = [Float](repeating: 0, count: w.count)
            for b in 0..<c.n { for o in 0..<c.cout { for oy in 0..<ho { for ox in 0..<wo {
                let g = seed.pointer[((b * c.cout + o) * ho + oy) * wo + ox]
                for ci in 0..<c.cin { for ky in 0..<c.k { for kx in 0..<c.k {
                    let iy = oy * c.stride - c.padding + ky, ix = ox * c.stride - c.padding + kx
                    guard iy >= 0, iy < c.h, ix >= 0, ix < c.w else { continue }
                    let xi = ((b * c.cin + ci) * c.h + iy) * c.w + ix, wi = ((o * c.cin + ci) * c.k + ky) * c.k + kx
                    dx[xi] += g * w.pointer[wi]
                    dw[wi] += g * x.pointer[xi]
                } } }
            } } } }
            for (a, e) in zip(grads[x]!.scalars, dx) { XCTAssertEqual(a, e, accuracy: 1e-3, "dx \(c)") }
            for (a, e) in zip(grads[w]!.scalars, dw) { XCTAssertEqual(a, e, accuracy: 1e-3 * max(1, abs(e)), "dw \(c)") }
        }
    }
}

final class ConvolutionProfileTests: XCTestCase {
    /// The recorder sees each convolution a forward pass runs, in order, with its shape and
    /// whether its input gradient is needed; outside `record` nothing is kept.
    func testTheRecorderListsTheConvolutionsOfAPass() throws {
        var rng = SeededGenerator(seed: 1)
        let x = Tensor.randomNormal([2, 3, 9, 9], using: &rng)
        let w1 = Tensor.randomNormal([4, 3, 3, 3], using: &rng).trackingGradient()
        let w2 = Tensor.randomNormal([5, 4, 1, 1], using: &rng).trackingGradient()
        let (y, layers) = ConvolutionRecorder.record { x.conv2D(w1, padding: 1).conv2D(w2, stride: 2) }
        XCTAssertEqual(y.shape, [2, 5, 5, 5])
        XCTAssertEqual(layers, [
            ConvolutionLayer(batch: 2, inChannels: 3, outChannels: 4, height: 9, width: 9, kernel: 3, stride: 1, padding: 1, needsInputGradient: false),
            ConvolutionLayer(batch: 2, inChannels: 4, outChannels: 5, height: 9, width: 9, kernel: 1, stride: 2, padding: 0, needsInputGradient: true),
        ])
        XCTAssertEqual(layers[1].multiplyAdds, 2 * 5 * 5 * 5 * 4)
        XCTAssertEqual(layers[0].description, "3x3/1 3->4 at 9x9")
        _ = x.conv2D(w1, padding: 1)
        XCTAssertNil(ConvolutionRecorder.layers)
    }

    /// Stride 2 with 64 or more input channels: conv2D's gradients are GEMMs
    /// (`GridConvPasses.gradientPlan`), fused or one at a time; they agree with the grid
    /// kernels' (checked against direct loops in GridConvTests) to rounding.
    func testStride2GradientsAsGEMMsMatchTheGridKernels() {
        let (n, cin, cout, h, w) = (3, 64, 24, 11, 10)
        let x = uniformTensor([n, cin, h, w], seed: 51), weight = uniformTensor([cout, cin, 3, 3], seed: 52)
        let conv = GridConv(inChannels: cin, outChannels: cout, height: h, width: w, kernelH: 3, kernelW: 3, padH: 1, padW: 1, stride: 2)
        let g = uniformTensor([n, cout, conv.outHeight, conv.outWidth], seed: 53)
        let dx = Tensor.uninitialized(x.shape), dw = Tensor.uninitialized(weight.shape)
        conv.inputGradient(g.pointer, weight: weight.pointer, batch: n, into: dx.pointer)
        conv.weightGradient(input: x.pointer, outputGradient: g.pointer, batch: n, into: dw.pointer)

        let passes = GridConvPasses(batch: n, inChannels: cin, outChannels: cout, height: h, width: w, kernelH: 3, kernelW: 3,
                                    stride: 2, padding: 1, groups: 1)!
        XCTAssertNotNil(passes.gradientPlan)
        let (xt, wt) = (x.trackingGradient(), weight.trackingGradient())
        let grads = xt.conv2D(wt, stride: 2, padding: 1).backward(seed: g)
        let alone = Tensor.uninitialized(x.shape), aloneW = Tensor.uninitialized(weight.shape)
        passes.inputGradient(g.pointer, weight: weight.pointer, batch: n, into: alone.pointer)
        passes.weightGradient(input: x.pointer, outputGradient: g.pointer, batch: n, into: aloneW.pointer)
        // Sums of up to 24 * 9 (input) and 3 * 30 (weights) products of values in [-1, 1].
        for (actual, scale) in [(grads[xt]!, Float(24 * 9).squareRoot()), (alone, Float(24 * 9).squareRoot())] {
            assertClose(actual.scalars.map { $0 / scale }, dx.scalars.map { $0 / scale }, tolerance: 1e-5, "input gradient")
        }
        for actual in [grads[wt]!, aloneW] {
            assertClose(actual.scalars.map { $0 / 10 }, dw.scalars.map { $0 / 10 }, tolerance: 1e-5, "weight gradient")
        }
        XCTAssertNotEqual(grads[wt]!.scalars, dw.scalars, "the weight gradient did not take the GEMM path")
    }

    /// Each pass is timed on the path conv2D takes: a stride-1 "same" 3x3 layer fuses its
    /// backward, a stride-2 one and a 1x1 layer do not, nor does one with 16 channels, which
    /// runs through Winograd's algorithm (unless that is switched off); a stride-2 layer with
    /// 64 channels does (its gradients are GEMMs).
    func testTimingCoversEachPass() {
        let winograd = Tensor.winogradEnabled
        for (kernel, stride, padding, channels, fuses) in [(3, 1, 1, 8, true), (3, 2, 1, 8, false), (1, 2, 0, 8, false),
                                                           (3, 1, 1, 16, !winograd), (3, 2, 1, 16, false),
                                                           (3, 2, 1, 64, true)] {
            let layer = ConvolutionLayer(batch: 2, inChannels: channels, outChannels: channels, height: 10, width: 10, kernel: kernel,
                                         stride: stride, padding: padding, needsInputGradient: true)
            let timing = timeConvolution(layer, minTime: 0.001)
            for seconds in [timing.forward, timing.inputGradient, timing.weightGradient] {
                XCTAssertTrue(seconds > 0 && seconds.isFinite, "\(layer): \(timing)")
            }
            XCTAssertEqual(timing.fusedBackward != nil, fuses, "\(layer)")
            XCTAssertEqual(timing.backward(needsInputGradient: false), timing.weightGradient)
        }
        XCTAssertGreaterThan(measureGEMMPeak(threads: 1, minTime: 0.01), 0)
    }
}
