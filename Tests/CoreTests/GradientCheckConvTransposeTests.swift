import XCTest
@testable import PerceptCore

/// Transposed convolution by its definition: every input pixel scatters weight * value into
/// output window (i * stride - padding + k).
func referenceConvTranspose2D(_ x: Tensor, _ weight: Tensor, bias: Tensor?, stride: Int, padding: Int,
                              outputPadding: Int) -> [Float] {
    let (n, cin, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
    let ho = (h - 1) * stride - 2 * padding + kh + outputPadding
    let wo = (w - 1) * stride - 2 * padding + kw + outputPadding
    let xs = x.scalars, ws = weight.scalars
    var out = [Double](repeating: 0, count: n * cout * ho * wo)
    for b in 0..<n {
        for o in 0..<cout {
            let shift = Double(bias?.scalars[o] ?? 0)
            for p in 0..<(ho * wo) { out[(b * cout + o) * ho * wo + p] = shift }
        }
        for c in 0..<cin {
            for iy in 0..<h {
                for ix in 0..<w {
                    let value = Double(xs[((b * cin + c) * h + iy) * w + ix])
                    for o in 0..<cout {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let oy = iy * stride - padding + ky, ox = ix * stride - padding + kx
                                guard oy >= 0, oy < ho, ox >= 0, ox < wo else { continue }
                                out[((b * cout + o) * ho + oy) * wo + ox] += value * Double(ws[((c * cout + o) * kh + ky) * kw + kx])
                            }
                        }
                    }
                }
            }
        }
    }
    return out.map(Float.init)
}

final class GradientCheckConvTransposeTests: XCTestCase {
    /// (input shape, weight shape [Cin, Cout, kh, kw], stride, padding, output padding, bias).
    static let cases: [([Int], [Int], Int, Int, Int, Bool)] = [
        ([2, 2, 3, 4], [2, 3, 3, 3], 1, 0, 0, true),
        ([2, 2, 3, 4], [2, 2, 3, 3], 2, 1, 1, false),
        ([1, 3, 3, 3], [3, 2, 3, 3], 2, 0, 0, true),
        ([3, 2, 2, 3], [2, 2, 4, 4], 2, 1, 0, true),
        ([1, 2, 3, 2], [2, 2, 2, 3], 3, 1, 2, false),
        ([2, 2, 4, 3], [2, 3, 1, 1], 1, 0, 0, true),
    ]

    private func tensors(_ index: Int, seed: UInt64) -> [Tensor] {
        let (inputShape, weightShape, _, _, _, bias) = Self.cases[index]
        var t = [uniformTensor(inputShape, seed: seed), uniformTensor(weightShape, seed: seed + 1)]
        if bias { t.append(uniformTensor([weightShape[1]], seed: seed + 2)) }
        return t
    }

    func testConvTransposeGradients() {
        for (i, (inputShape, weightShape, stride, padding, outputPadding, _)) in Self.cases.enumerated() {
            let failures = checkGradients(tensors(i, seed: UInt64(600 + 10 * i))) { t in
                t[0].convTranspose2D(t[1], bias: t.count > 2 ? t[2] : nil, stride: stride, padding: padding,
                                     outputPadding: outputPadding)
            }.failures
            for failure in failures {
                XCTFail("input \(inputShape) weight \(weightShape) s\(stride) p\(padding) op\(outputPadding): \(failure)")
            }
        }
    }

    func testConvTransposeMatchesDefinition() {
        for (i, (inputShape, weightShape, stride, padding, outputPadding, _)) in Self.cases.enumerated() {
            let t = tensors(i, seed: UInt64(700 + 10 * i))
            let bias = t.count > 2 ? t[2] : nil
            let out = t[0].convTranspose2D(t[1], bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
            let ho = (inputShape[2] - 1) * stride - 2 * padding + weightShape[2] + outputPadding
            let wo = (inputShape[3] - 1) * stride - 2 * padding + weightShape[3] + outputPadding
            XCTAssertEqual(out.shape, [inputShape[0], weightShape[1], ho, wo])
            assertClose(out.scalars, referenceConvTranspose2D(t[0], t[1], bias: bias, stride: stride, padding: padding,
                                                              outputPadding: outputPadding),
                        "input \(inputShape) weight \(weightShape) s\(stride) p\(padding) op\(outputPadding)")
        }
    }

    func testConvTransposeIsAdjointOfConv() {
        // <convT(x, W), y> = <x, conv(y, W)>: the same weight read as conv's [Cout', Cin', kh, kw].
        let x = uniformTensor([2, 3, 3, 4], seed: 800), weight = uniformTensor([3, 2, 3, 3], seed: 801)
        let up = x.convTranspose2D(weight, stride: 2, padding: 1, outputPadding: 1)
        let y = uniformTensor(up.shape, seed: 802)
        let down = y.conv2D(weight, stride: 2, padding: 1)
        XCTAssertEqual(down.shape, x.shape)
        let left = zip(up.scalars, y.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let right = zip(x.scalars, down.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        XCTAssertEqual(left, right, accuracy: 1e-4 * Swift.max(1, abs(left)))
    }

    func testConvTransposeInferenceBuildsNoGraph() {
        let t = tensors(0, seed: 810)
        XCTAssertNil(t[0].convTranspose2D(t[1], bias: t[2]).node)
    }
}
