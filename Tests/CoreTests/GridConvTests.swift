import CKernels
import XCTest
@testable import PerceptCore

/// The direct stride-1 convolution (`GridConv`): the kernel builds (AVX-512, AVX2, portable C) against
/// the direct-loop reference and each other, on shapes that leave partial channel blocks,
/// partial tap blocks, non-square kernels, padding below and above half the kernel, stride 2.
final class GridConvTests: XCTestCase {
    static let cases: [ConvCase] = [
        ConvCase(batch: 3, inChannels: 5, outChannels: 6, height: 9, width: 11, kernel: 3, padding: 1),
        ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 7, width: 6, kernel: 5, padding: 2),
        ConvCase(batch: 2, inChannels: 2, outChannels: 5, height: 6, width: 8, kernel: 1, padding: 0, kernelWidth: 3),
        ConvCase(batch: 1, inChannels: 2, outChannels: 3, height: 5, width: 5, kernel: 3, padding: 0),
        ConvCase(batch: 2, inChannels: 2, outChannels: 4, height: 4, width: 5, kernel: 3, padding: 2),
        ConvCase(batch: 3, inChannels: 16, outChannels: 16, height: 32, width: 32, kernel: 3, padding: 1),
        // Stride 2: phases of odd and even sizes, kernels with fewer taps in some phases.
        ConvCase(batch: 2, inChannels: 3, outChannels: 5, height: 9, width: 8, kernel: 3, stride: 2, padding: 1),
        ConvCase(batch: 2, inChannels: 2, outChannels: 3, height: 10, width: 7, kernel: 3, stride: 2, padding: 0),
        ConvCase(batch: 1, inChannels: 2, outChannels: 4, height: 11, width: 12, kernel: 5, stride: 2, padding: 2),
        ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 6, width: 9, kernel: 2, stride: 2, padding: 1, kernelWidth: 3),
        ConvCase(batch: 1, inChannels: 1, outChannels: 2, height: 13, width: 13, kernel: 7, stride: 2, padding: 3),
        ConvCase(batch: 4, inChannels: 16, outChannels: 32, height: 32, width: 32, kernel: 3, stride: 2, padding: 1),
    ]

    override func tearDown() { pc_kernels_force_portable(0) }

    private func run(_ c: ConvCase, seed: UInt64) -> (y: Tensor, dx: Tensor, dw: Tensor, db: Tensor, seed: Tensor) {
        let x = uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed).trackingGradient()
        let w = uniformTensor([c.outChannels, c.inChannels, c.kernel, c.kw], seed: seed + 1).trackingGradient()
        let b = uniformTensor([c.outChannels], seed: seed + 2).trackingGradient()
        let y = x.conv2D(w, bias: b, stride: c.stride, padding: c.padding)
        let g = uniformTensor(y.shape, seed: seed + 3)
        let grads = y.backward(seed: g)
        return (y, grads[x]!, grads[w]!, grads[b]!, g)
    }

    func testBothKernelBuildsMatchReferenceAndEachOther() {
        for (i, c) in Self.cases.enumerated() {
            XCTAssertTrue(GridConv.handles(kernelH: c.kernel, kernelW: c.kw, stride: c.stride, padding: c.padding, groups: 1), "\(c)")
            let seed = UInt64(700 + 10 * i)
            pc_kernels_force_portable(0)
            let fast = run(c, seed: seed)
            pc_kernels_force_portable(1)
            let portable = run(c, seed: seed)
            pc_kernels_force_portable(0)

            let x = uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed)
            let w = uniformTensor([c.outChannels, c.inChannels, c.kernel, c.kw], seed: seed + 1)
            let b = uniformTensor([c.outChannels], seed: seed + 2)
            let expected = referenceConv2D(x, w, bias: b, stride: c.stride, padding: c.padding, groups: 1)
            assertClose(fast.y.scalars, expected, tolerance: 1e-4, "forward \(c)")
            assertClose(portable.y.scalars, expected, tolerance: 1e-4, "portable forward \(c)")
            assertClose(fast.dx.scalars, portable.dx.scalars, tolerance: 1e-4, "dx \(c)")
            assertClose(fast.dw.scalars, portable.dw.scalars, tolerance: 1e-3, "dw \(c)")
            assertClose(fast.db.scalars, portable.db.scalars, tolerance: 1e-4, "db \(c)")

            // Input and weight gradients against the adjoint written out as loops.
            let (ho, wo) = (fast.y.shape[2], fast.y.shape[3])
            var dx = [Float](repeating: 0, count: x.count), dw = [Float](repeating: 0, count: w.count)
            let (xs, ws, gs) = (x.scalars, w.scalars, fast.seed.scalars)
            for n in 0..<c.batch { for o in 0..<c.outChannels { for oy in 0..<ho { for ox in 0..<wo {
                let g = gs[((n * c.outChannels + o) * ho + oy) * wo + ox]
                for ci in 0..<c.inChannels { for ky in 0..<c.kernel { for kx in 0..<c.kw {
                    let iy = oy * c.stride - c.padding + ky, ix = ox * c.stride - c.padding + kx
                    guard iy >= 0, iy < c.height, ix >= 0, ix < c.width else { continue }
                    let xi = ((n * c.inChannels + ci) * c.height + iy) * c.width + ix
                    let wi = ((o * c.inChannels + ci) * c.kernel + ky) * c.kw + kx
                    dx[xi] += g * ws[wi]
                    dw[wi] += g * xs[xi]
                } } }
            } } } }
            assertClose(fast.dx.scalars, dx, tolerance: 1e-3, "dx loops \(c)")
            assertClose(fast.dw.scalars, dw, tolerance: 1e-3, "dw loops \(c)")
        }
    }

    /// The AVX-512 forward kernel gives each output the AVX2 kernel's FMAs in the same order, so
    /// outputs and input gradients (the adjoint runs the same kernel) are equal bit for bit,
    /// with odd pixel blocks and partial channel blocks; weight gradients agree to rounding
    /// (needs a CPU with AVX-512).
    func testAVX512KernelEqualsTheAVX2Kernel() throws {
        pc_kernels_force_portable(0)
        try XCTSkipIf(pc_kernels_level() < 2, "this CPU has no AVX-512")
        defer { Tensor.winogradEnabled = true }
        Tensor.winogradEnabled = false  // the 16-channel cases too go through the grid kernels
        for (i, c) in Self.cases.enumerated() {
            pc_kernels_force_level(1)
            let avx2 = run(c, seed: UInt64(400 + 10 * i))
            pc_kernels_force_level(2)
            let avx512 = run(c, seed: UInt64(400 + 10 * i))
            XCTAssertEqual(avx2.y.scalars, avx512.y.scalars, "forward \(c)")
            XCTAssertEqual(avx2.dx.scalars, avx512.dx.scalars, "dx \(c)")
            // The weight gradient's sums split over 16 lanes instead of 8: equal up to rounding.
            assertClose(avx2.dw.scalars, avx512.dw.scalars, tolerance: 1e-4, "dw \(c)")
        }
    }

    func testGroupedPointwiseAndStride3ConvolutionsUseTheGEMMPath() {
        XCTAssertFalse(GridConv.handles(kernelH: 3, kernelW: 3, stride: 3, padding: 1, groups: 1))
        XCTAssertFalse(GridConv.handles(kernelH: 3, kernelW: 3, stride: 1, padding: 1, groups: 2))
        XCTAssertFalse(GridConv.handles(kernelH: 1, kernelW: 1, stride: 1, padding: 0, groups: 1))
        XCTAssertFalse(GridConv.handles(kernelH: 3, kernelW: 3, stride: 1, padding: 3, groups: 1))
    }
}
