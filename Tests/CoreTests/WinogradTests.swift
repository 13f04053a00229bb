import CKernels
import XCTest
@testable import PerceptCore

/// Winograd's F(m x m, r x r) convolution: its matrices against the direct correlation, both
/// kernel builds' forward pass and weight gradient against direct-loop references on shapes
/// with partial tiles, partial channel blocks and every padding, and `conv2D`'s choice of path.
final class WinogradTests: XCTestCase {
    override func tearDown() {
        pc_kernels_force_portable(0)
        Tensor.winogradEnabled = true
    }

    /// |A^T [(G g) (.) (B^T d)] - correlation(g, d)| per output, in double with the float
    /// matrices (B^T given separately so a test can damage it).
    private func errors(_ t: WinogradTransform, bt: [Float], d: [Double], g: [Double]) -> [Double] {
        let (m, r, alpha) = (t.m, t.r, t.alpha)
        var product = [Double](repeating: 0, count: alpha)
        for i in 0..<alpha {
            var gg = 0.0, bd = 0.0
            for k in 0..<r { gg += Double(t.g[i * r + k]) * g[k] }
            for k in 0..<alpha { bd += Double(bt[i * alpha + k]) * d[k] }
            product[i] = gg * bd
        }
        return (0..<m).map { i in
            var y = 0.0, expected = 0.0
            for j in 0..<alpha { y += Double(t.at[i * alpha + j]) * product[j] }
            for k in 0..<r { expected += g[k] * d[i + k] }
            return abs(y - expected)
        }
    }

    /// y = A^T [(G g) (.) (B^T d)] is the r-tap correlation of d, in one dimension, for every
    /// F(m, r) the points allow; only the matrices' float rounding separates the two sides.
    func testMatricesComputeTheCorrelation() {
        for (m, r) in [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5), (3, 3), (1, 3), (2, 2)] {
            let t = WinogradTransform(m: m, r: r)
            let alpha = t.alpha
            XCTAssertEqual(t.at.count, m * alpha); XCTAssertEqual(t.g.count, alpha * r); XCTAssertEqual(t.bt.count, alpha * alpha)
            var rng = SeededGenerator(seed: UInt64(10 * m + r))
            for _ in 0..<20 {
                let d = (0..<alpha).map { _ in Double(rng.nextUniform() * 2 - 1) }
                let g = (0..<r).map { _ in Double(rng.nextUniform() * 2 - 1) }
                XCTAssertLessThan(errors(t, bt: t.bt, d: d, g: g).max()!, 1e-5, "F(\(m), \(r))")
            }
        }
    }

    /// The check above can fail: B^T with one coefficient changed does not compute the correlation.
    func testCheckFailsOnADamagedMatrix() {
        let t = WinogradTransform(m: 4, r: 3)
        var bt = t.bt
        bt[7] += 1
        let d: [Double] = [0.3, -0.2, 0.9, 0.4, -0.7, 0.1], g: [Double] = [0.5, -0.25, 0.75]
        XCTAssertGreaterThan(errors(t, bt: bt, d: d, g: g).max()!, 1e-2)
    }

    /// The kernel builds this CPU runs: portable, AVX2 and AVX-512 where it has them (a level
    /// it lacks runs its best, so each listed level is tested once).
    static var levels: [Int32] {
        pc_kernels_force_portable(0)
        return Array(0...pc_kernels_level())
    }

    static let cases: [(batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int, kernel: Int, padding: Int)] = [
        (2, 16, 16, 16, 16, 3, 1),   // whole tiles, whole channel blocks
        (2, 19, 21, 18, 23, 3, 1),   // partial tiles and channel blocks
        (1, 17, 16, 21, 20, 3, 0),
        (1, 16, 18, 19, 17, 3, 2),
        (2, 20, 17, 22, 21, 5, 0),
        (1, 16, 24, 20, 19, 5, 2),
        (1, 18, 16, 21, 22, 5, 4),
        (9, 16, 16, 13, 12, 3, 1),   // enough images that each chunk of work packs its own; blocks
                                     // of tiles span images
        (1, 16, 72, 7, 7, 3, 1),     // a 7x7 plane: F(4, 3)'s 4 tiles make one block, which is split
                                     // by output channels into slices of 64 and 8 (`outputSlices`)
    ]

    func testBothBuildsMatchTheDirectConvolution() {
        for (i, c) in Self.cases.enumerated() {
            let seed = UInt64(900 + 10 * i)
            let x = uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed)
            let w = uniformTensor([c.outChannels, c.inChannels, c.kernel, c.kernel], seed: seed + 1)
            let b = uniformTensor([c.outChannels], seed: seed + 2)
            let expected = referenceConv2D(x, w, bias: b, stride: 1, padding: c.padding, groups: 1)
            let (ho, wo) = (c.height + 2 * c.padding - c.kernel + 1, c.width + 2 * c.padding - c.kernel + 1)
            XCTAssertTrue(WinogradConv.handles(inChannels: c.inChannels, outChannels: c.outChannels, outHeight: ho,
                                               outWidth: wo, kernelH: c.kernel, kernelW: c.kernel, stride: 1,
                                               padding: c.padding, groups: 1), "\(c)")
            // Sums of inChannels * kernel^2 products of values in [-1, 1]: compare relative to
            // their typical size.
            let scale = Float(c.inChannels * c.kernel * c.kernel).squareRoot()
            for level in Self.levels {
                pc_kernels_force_level(level)
                for m in [2, 4] {
                    var conv = WinogradConv(inChannels: c.inChannels, outChannels: c.outChannels, height: c.height,
                                            width: c.width, kernel: c.kernel, padding: c.padding, m: m)
                    conv.tileBlock = 7  // several blocks, the last one partial
                    let out = Tensor.uninitialized([c.batch, c.outChannels, ho, wo])
                    conv.forward(x.pointer, batch: c.batch, weight: w.pointer, bias: b.pointer, output: out.pointer)
                    assertClose(out.scalars.map { $0 / scale }, expected.map { $0 / scale }, tolerance: 1e-5,
                                "F(\(m), \(c.kernel)) kernel level \(level) \(c)")
                    let noBias = Tensor.uninitialized([c.batch, c.outChannels, ho, wo])
                    conv.forward(x.pointer, batch: c.batch, weight: w.pointer, bias: nil, output: noBias.pointer)
                    let bs = b.scalars, plane = ho * wo
                    let shifted = noBias.scalars.enumerated().map { $1 + bs[($0 / plane) % c.outChannels] }
                    assertClose(shifted.map { $0 / scale }, expected.map { $0 / scale }, tolerance: 1e-5, "no bias \(c)")
                }
            }
        }
    }

    /// A batch of small planes whose transformed weights outgrow L2 (ResNet-18's 8x8 stage in
    /// miniature): the batch's tiles make one block spanning images, split into output slices
    /// that share one input transform, made by a pass over the images before the products (each
    /// packing its own images at two threads and more). Its weight gradient takes every tile
    /// in one product per tile position. Both against direct loops, at one thread and at two.
    func testSlicedBlocksSpanningImagesAndTheirWeightGradient() {
        let (batch, channels, side) = (8, 96, 8)
        let x = uniformTensor([batch, channels, side, side], seed: 961)
        let w = uniformTensor([channels, channels, 3, 3], seed: 962)
        let dy = uniformTensor([batch, channels, side, side], seed: 963)
        let expected = referenceConv2D(x, w, bias: nil, stride: 1, padding: 1, groups: 1)
        let (xs, gs) = (x.scalars, dy.scalars)
        var expectedGradient = [Float](repeating: 0, count: channels * channels * 9)
        for o in 0..<channels {
            for c in 0..<channels {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        var sum: Double = 0
                        for n in 0..<batch {
                            for y in 0..<side where (0..<side).contains(y + ky - 1) {
                                for xo in 0..<side where (0..<side).contains(xo + kx - 1) {
                                    sum += Double(gs[((n * channels + o) * side + y) * side + xo])
                                        * Double(xs[((n * channels + c) * side + y + ky - 1) * side + xo + kx - 1])
                                }
                            }
                        }
                        expectedGradient[((o * channels + c) * 3 + ky) * 3 + kx] = Float(sum)
                    }
                }
            }
        }
        let saved = Threads.count
        defer { Threads.set(saved) }
        for threads in [1, 2] {
            Threads.set(threads)
            let conv = WinogradConv(inChannels: channels, outChannels: channels, height: side, width: side, kernel: 3,
                                    padding: 1, m: 4)
            XCTAssertEqual(conv.outputSlices(blocks: 1, outPadded: channels), threads == 1 ? 2 : 3)
            XCTAssertLessThanOrEqual(batch * 4, conv.gradientTiles, "the weight gradient's one-depth path")
            let out = Tensor.uninitialized([batch, channels, side, side])
            conv.forward(x.pointer, batch: batch, weight: w.pointer, bias: nil, output: out.pointer, cachingWeights: false)
            let scale = Float(channels * 9).squareRoot()
            assertClose(out.scalars.map { $0 / scale }, expected.map { $0 / scale }, tolerance: 1e-5, "forward, \(threads) threads")
            let dw = Tensor.uninitialized([channels, channels, 3, 3])
            conv.weightGradient(input: x.pointer, outputGradient: dy.pointer, batch: batch, into: dw.pointer)
            let gradientScale = Float(batch * side * side).squareRoot()
            assertClose(dw.scalars.map { $0 / gradientScale }, expectedGradient.map { $0 / gradientScale }, tolerance: 3e-5,
                        "weight gradient, \(threads) threads")
        }
    }

    /// The AVX-512 build runs each lane's operations in the AVX2 build's order, two channel
    /// blocks at a time, so forward passes and weight gradients are equal bit for bit, on
    /// partial channel blocks and odd block counts too (needs a CPU with AVX-512).
    func testAVX512BuildEqualsTheAVX2Build() throws {
        pc_kernels_force_portable(0)
        try XCTSkipIf(pc_kernels_level() < 2, "this CPU has no AVX-512")
        for (i, c) in Self.cases.enumerated() {
            let seed = UInt64(700 + 10 * i)
            let x = uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed)
            let w = uniformTensor([c.outChannels, c.inChannels, c.kernel, c.kernel], seed: seed + 1)
            let b = uniformTensor([c.outChannels], seed: seed + 2)
            let (ho, wo) = (c.height + 2 * c.padding - c.kernel + 1, c.width + 2 * c.padding - c.kernel + 1)
            let dy = uniformTensor([c.batch, c.outChannels, ho, wo], seed: seed + 3)
            var results: [[Float]] = []
            for level: Int32 in [1, 2] {
                pc_kernels_force_level(level)
                XCTAssertEqual(pc_kernels_level(), level)
                var conv = WinogradConv(inChannels: c.inChannels, outChannels: c.outChannels, height: c.height,
                                        width: c.width, kernel: c.kernel, padding: c.padding, m: 4)
                conv.tileBlock = 7
                let out = Tensor.uninitialized([c.batch, c.outChannels, ho, wo])
                conv.forward(x.pointer, batch: c.batch, weight: w.pointer, bias: b.pointer, output: out.pointer,
                             cachingWeights: false)
                let dw = Tensor.uninitialized([c.outChannels, c.inChannels, c.kernel, c.kernel])
                conv.weightGradient(input: x.pointer, outputGradient: dy.pointer, batch: c.batch, into: dw.pointer)
                results.append(out.scalars + dw.scalars)
            }
            XCTAssertEqual(results[0], results[1], "\(c)")
        }
    }

    /// conv2D takes the Winograd path for qualifying shapes in inference and training alike,
    /// and agrees with the direct sums to rounding; so do its input gradient (the adjoint
    /// convolution through Winograd) and its weight gradient. 24 input channels give the
    /// adjoint's weight transform a partial group of lanes on flipped kernels. The last two
    /// shapes take F(2, 3): 256 and 128 channels on 4x4 and 6x6 planes (the first with a weight
    /// gradient of more than one block of dU's rows, 248 and 8).
    func testConv2DForwardAndGradientsAgreeWithTheDirectPath() {
        for (channels, size, padding, kernel) in [(16, 20, 1, 3), (16, 20, 0, 3), (16, 20, 2, 5), (16, 20, 0, 5),
                                                  (24, 12, 1, 3), (256, 4, 1, 3), (128, 6, 1, 3)] {
            let outChannels = channels + 8
            let x = uniformTensor([2, channels, size, size], seed: 31)
            let w = uniformTensor([outChannels, channels, kernel, kernel], seed: 32)
            let b = uniformTensor([outChannels], seed: 33)
            let side = size + 2 * padding - kernel + 1
            XCTAssertEqual(WinogradConv.tileSize(kernel: kernel, outHeight: side, outWidth: side, inChannels: channels,
                                                 outChannels: outChannels), side < 7 ? 2 : 4)
            let g = uniformTensor([2, outChannels, side, side], seed: 34)
            func run(_ winograd: Bool) -> (inference: [Float], training: [Float], dx: [Float], dw: [Float]) {
                Tensor.winogradEnabled = winograd
                defer { Tensor.winogradEnabled = true }
                let inference = x.conv2D(w, bias: b, padding: padding).scalars
                let (xt, wt) = (x.trackingGradient(), w.trackingGradient())
                let y = xt.conv2D(wt, bias: b, padding: padding)
                let grads = y.backward(seed: g)
                return (inference, y.scalars, grads[xt]!.scalars, grads[wt]!.scalars)
            }
            let (direct, fast) = (run(false), run(true))
            let scale = Float(channels * kernel * kernel).squareRoot()
            XCTAssertNotEqual(fast.inference, direct.inference, "k\(kernel) p\(padding): inference did not take the Winograd path")
            XCTAssertNotEqual(fast.dx, direct.dx, "k\(kernel) p\(padding): the input gradient did not take the Winograd path")
            XCTAssertEqual(fast.training, fast.inference, "k\(kernel) p\(padding): training and inference forwards differ")
            assertClose(fast.inference.map { $0 / scale }, direct.inference.map { $0 / scale }, tolerance: 1e-5, "forward k\(kernel) p\(padding)")
            assertClose(fast.dx.map { $0 / scale }, direct.dx.map { $0 / scale }, tolerance: 1e-5, "dx k\(kernel) p\(padding)")
            XCTAssertNotEqual(fast.dw, direct.dw, "k\(kernel) p\(padding): the weight gradient did not take the Winograd path")
            // Each weight's gradient sums batch * side^2 products of values in [-1, 1].
            let sums = Float(2 * side * side).squareRoot()
            assertClose(fast.dw.map { $0 / sums }, direct.dw.map { $0 / sums }, tolerance: 1e-5, "dw k\(kernel) p\(padding)")
        }
        // Small planes with fewer channels, and 3x3 planes, stay off the Winograd path.
        XCTAssertNil(WinogradConv.tileSize(kernel: 3, outHeight: 4, outWidth: 4, inChannels: 64, outChannels: 512))
        XCTAssertNil(WinogradConv.tileSize(kernel: 3, outHeight: 3, outWidth: 3, inChannels: 512, outChannels: 512))
        XCTAssertNil(WinogradConv.tileSize(kernel: 5, outHeight: 6, outWidth: 6, inChannels: 512, outChannels: 512))
    }

    /// The weight gradient G^T [sum over tiles of V^T (A dY A^T)] G against a direct loop in
    /// double, for both builds and both tile sizes, with the tiles gathered for each product
    /// cut short of an image (5), spanning images (23) or all at once.
    func testWeightGradientMatchesTheDirectSums() {
        for (i, c) in Self.cases.enumerated() {
            let seed = UInt64(700 + 10 * i)
            let (ho, wo) = (c.height + 2 * c.padding - c.kernel + 1, c.width + 2 * c.padding - c.kernel + 1)
            let x = uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed)
            let dy = uniformTensor([c.batch, c.outChannels, ho, wo], seed: seed + 1)
            let (xs, gs, k, p) = (x.scalars, dy.scalars, c.kernel, c.padding)
            var expected = [Float](repeating: 0, count: c.outChannels * c.inChannels * k * k)
            for o in 0..<c.outChannels {
                for ci in 0..<c.inChannels {
                    for ky in 0..<k {
                        for kx in 0..<k {
                            var sum = 0.0
                            for n in 0..<c.batch {
                                for y in 0..<ho {
                                    let iy = y + ky - p
                                    guard iy >= 0, iy < c.height else { continue }
                                    for xo in 0..<wo {
                                        let ix = xo + kx - p
                                        guard ix >= 0, ix < c.width else { continue }
                                        sum += Double(gs[((n * c.outChannels + o) * ho + y) * wo + xo])
                                            * Double(xs[((n * c.inChannels + ci) * c.height + iy) * c.width + ix])
                                    }
                                }
                            }
                            expected[((o * c.inChannels + ci) * k + ky) * k + kx] = Float(sum)
                        }
                    }
                }
            }
            // Sums of batch * ho * wo products of values in [-1, 1], taken as up to a few hundred
            // tile sums in float and mapped back by G^T . G (for F(2, 5), errors reach 1.1e-5).
            let scale = Float(c.batch * ho * wo).squareRoot()
            for level in Self.levels {
                pc_kernels_force_level(level)
                for m in [2, 4] {
                    for gathered in [5, 23, 10_000] {
                        var conv = WinogradConv(inChannels: c.inChannels, outChannels: c.outChannels, height: c.height,
                                                width: c.width, kernel: c.kernel, padding: c.padding, m: m)
                        conv.gradientTiles = gathered
                        let dw = Tensor.uninitialized([c.outChannels, c.inChannels, k, k])
                        conv.weightGradient(input: x.pointer, outputGradient: dy.pointer, batch: c.batch, into: dw.pointer)
                        assertClose(dw.scalars.map { $0 / scale }, expected.map { $0 / scale }, tolerance: 3e-5,
                                    "F(\(m), \(k)) kernel level \(level) gathering \(gathered) \(c)")
                    }
                }
            }
        }
    }

    /// Finite differences against the Winograd path's gradients on a shape that takes it. The
    /// convolution is linear in each element, so a central difference is exact at any step; a
    /// large step keeps the transforms' rounding (about 1e-6 of each output) from swamping it.
    func testGradientCheckOnTheWinogradPath() {
        let x = uniformTensor([1, 16, 8, 8], seed: 41), w = uniformTensor([16, 16, 3, 3], seed: 42, low: -0.2, high: 0.2)
        XCTAssertTrue(WinogradConv.handles(inChannels: 16, outChannels: 16, outHeight: 8, outWidth: 8, kernelH: 3, kernelW: 3,
                                           stride: 1, padding: 1, groups: 1))
        XCTAssertNotNil(WinogradConv(adjointOf: GridConv(inChannels: 16, outChannels: 16, height: 8, width: 8,
                                                         kernelH: 3, kernelW: 3, padH: 1, padW: 1)))
        assertGradientsMatch([x, w], epsilon: 0.25) { $0[0].conv2D($0[1], padding: 1) }
    }
}
