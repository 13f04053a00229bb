import XCTest
@testable import PerceptCore

/// One conv2D configuration under test.
struct ConvCase: CustomStringConvertible {
    var batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int
    var kernel: Int, stride: Int = 1, padding: Int = 0, groups: Int = 1, bias: Bool = true
    /// Kernel width when it differs from the height.
    var kernelWidth: Int? = nil
    var kw: Int { kernelWidth ?? kernel }

    var description: String {
        "N\(batch) Cin\(inChannels) Cout\(outChannels) \(height)x\(width) k\(kernel)x\(kw) s\(stride) p\(padding) g\(groups) bias \(bias)"
    }
}

/// Direct-loop convolution used as the forward reference.
func referenceConv2D(_ x: Tensor, _ weight: Tensor, bias: Tensor?, stride: Int, padding: Int, groups: Int) -> [Float] {
    let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let ho = (h + 2 * padding - kh) / stride + 1, wo = (w + 2 * padding - kw) / stride + 1
    let cinPerGroup = cin / groups, coutPerGroup = cout / groups
    let xs = x.scalars, ws = weight.scalars, bs = bias?.scalars
    var out = [Float](repeating: 0, count: n * cout * ho * wo)
    for b in 0..<n {
        for o in 0..<cout {
            let group = o / coutPerGroup
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var total: Double = Double(bs?[o] ?? 0)
                    for ci in 0..<cinPerGroup {
                        let c = group * cinPerGroup + ci
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                total += Double(xs[((b * cin + c) * h + iy) * w + ix])
                                    * Double(ws[((o * cinPerGroup + ci) * kh + ky) * kw + kx])
                            }
                        }
                    }
                    out[((b * cout + o) * ho + oy) * wo + ox] = Float(total)
                }
            }
        }
    }
    return out
}

final class GradientCheckConvTests: XCTestCase {
    /// Kernels 1, 3, 5, 7; strides 1 and 2; padding 0 to 3; groups 2; bias on and off; batch > 1;
    /// non-square 5x7 inputs; the multi-image GEMM path (3x3 outputs, batch 5) and the one-image
    /// paths (outputs above 256 pixels, with and without im2col).
    static let cases: [ConvCase] = [
        ConvCase(batch: 2, inChannels: 3, outChannels: 2, height: 5, width: 7, kernel: 1),
        ConvCase(batch: 2, inChannels: 2, outChannels: 3, height: 5, width: 7, kernel: 1, stride: 2, bias: false),
        ConvCase(batch: 2, inChannels: 2, outChannels: 3, height: 5, width: 7, kernel: 3, padding: 1),
        ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 5, width: 7, kernel: 3, stride: 2, padding: 1, bias: false),
        ConvCase(batch: 1, inChannels: 2, outChannels: 2, height: 4, width: 5, kernel: 3, padding: 2),
        ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 5, width: 7, kernel: 5, padding: 2),
        ConvCase(batch: 1, inChannels: 2, outChannels: 3, height: 5, width: 7, kernel: 5, stride: 2, bias: false),
        ConvCase(batch: 2, inChannels: 1, outChannels: 2, height: 5, width: 7, kernel: 7, padding: 3),
        ConvCase(batch: 1, inChannels: 2, outChannels: 2, height: 5, width: 7, kernel: 7, stride: 2, padding: 3, bias: false),
        ConvCase(batch: 2, inChannels: 4, outChannels: 4, height: 5, width: 7, kernel: 3, padding: 1, groups: 2),
        ConvCase(batch: 2, inChannels: 4, outChannels: 2, height: 3, width: 4, kernel: 1, groups: 2, bias: false),
        ConvCase(batch: 5, inChannels: 2, outChannels: 3, height: 5, width: 5, kernel: 3),
        ConvCase(batch: 2, inChannels: 1, outChannels: 2, height: 16, width: 17, kernel: 3, padding: 1),
        ConvCase(batch: 2, inChannels: 1, outChannels: 2, height: 16, width: 17, kernel: 1, bias: false),
        // Non-square kernels, a kernel wider than the input, grouped on the one-image path.
        ConvCase(batch: 2, inChannels: 2, outChannels: 2, height: 4, width: 5, kernel: 1, padding: 0, kernelWidth: 3),
        ConvCase(batch: 1, inChannels: 2, outChannels: 3, height: 5, width: 3, kernel: 3, stride: 2, padding: 1, kernelWidth: 2),
        ConvCase(batch: 2, inChannels: 1, outChannels: 2, height: 3, width: 2, kernel: 5, padding: 2),
        ConvCase(batch: 1, inChannels: 2, outChannels: 2, height: 16, width: 17, kernel: 3, padding: 1, groups: 2),
        // 4x4 planes (ResNet-18's last stage): GEMMs over images side by side, and the weight
        // gradient as one GEMM over the whole batch.
        ConvCase(batch: 5, inChannels: 3, outChannels: 4, height: 4, width: 4, kernel: 3, padding: 1),
        ConvCase(batch: 3, inChannels: 3, outChannels: 4, height: 8, width: 8, kernel: 3, stride: 2, padding: 1, bias: false),
    ]

    private func tensors(for c: ConvCase, seed: UInt64) -> [Tensor] {
        var inputs = [
            uniformTensor([c.batch, c.inChannels, c.height, c.width], seed: seed),
            uniformTensor([c.outChannels, c.inChannels / c.groups, c.kernel, c.kw], seed: seed + 1),
        ]
        if c.bias { inputs.append(uniformTensor([c.outChannels], seed: seed + 2)) }
        return inputs
    }

    func testConvGradients() {
        for (i, c) in Self.cases.enumerated() {
            let inputs = tensors(for: c, seed: UInt64(100 + 10 * i))
            let failures = checkGradients(inputs) { t in
                t[0].conv2D(t[1], bias: t.count > 2 ? t[2] : nil, stride: c.stride, padding: c.padding, groups: c.groups)
            }.failures
            for failure in failures { XCTFail("\(c): \(failure)") }
        }
    }

    func testConvMatchesDirectLoops() {
        for (i, c) in Self.cases.enumerated() {
            let t = tensors(for: c, seed: UInt64(300 + 10 * i))
            let bias = c.bias ? t[2] : nil
            let out = t[0].conv2D(t[1], bias: bias, stride: c.stride, padding: c.padding, groups: c.groups)
            let expected = referenceConv2D(t[0], t[1], bias: bias, stride: c.stride, padding: c.padding, groups: c.groups)
            let ho = (c.height + 2 * c.padding - c.kernel) / c.stride + 1
            let wo = (c.width + 2 * c.padding - c.kw) / c.stride + 1
            XCTAssertEqual(out.shape, [c.batch, c.outChannels, ho, wo], "\(c)")
            assertClose(out.scalars, expected, tolerance: 1e-5, "\(c)")
        }
    }

    func testConvWithOnlyWeightTracked() {
        let c = ConvCase(batch: 3, inChannels: 2, outChannels: 2, height: 4, width: 3, kernel: 3, padding: 1)
        assertGradientsMatch(tensors(for: c, seed: 500), checked: [1]) { t in t[0].conv2D(t[1], bias: t[2], padding: 1) }
        assertGradientsMatch(tensors(for: c, seed: 510), checked: [0]) { t in t[0].conv2D(t[1], bias: t[2], padding: 1) }
    }

    func testConvInferenceBuildsNoGraph() {
        let c = ConvCase(batch: 1, inChannels: 1, outChannels: 1, height: 3, width: 3, kernel: 3)
        let t = tensors(for: c, seed: 520)
        XCTAssertNil(t[0].conv2D(t[1], bias: t[2]).node)
    }
}
