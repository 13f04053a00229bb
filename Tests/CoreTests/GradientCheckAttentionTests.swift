import XCTest
@testable import Core

final class GradientCheckAttentionTests: XCTestCase {
    /// out[n, :, i] = sum_j softmax_j(q_i . k_j / sqrt(d)) v[n, :, j], in Double loops.
    private func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> [Float] {
        let (n, d, c) = (q.shape[0], q.shape[1], v.shape[1])
        let p = q.shape[2] * q.shape[3]
        let (qs, ks, vs) = (q.scalars, k.scalars, v.scalars)
        var out = [Float](repeating: 0, count: n * c * p)
        for b in 0..<n {
            for i in 0..<p {
                var logits = [Double](repeating: 0, count: p)
                for j in 0..<p {
                    for e in 0..<d { logits[j] += Double(qs[(b * d + e) * p + i]) * Double(ks[(b * d + e) * p + j]) }
                    logits[j] /= Double(d).squareRoot()
                }
                let peak = logits.max()!
                let exps = logits.map { Foundation.exp($0 - peak) }
                let total = exps.reduce(0, +)
                for ch in 0..<c {
                    var sum = 0.0
                    for j in 0..<p { sum += exps[j] / total * Double(vs[(b * c + ch) * p + j]) }
                    out[(b * c + ch) * p + i] = Float(sum)
                }
            }
        }
        return out
    }

    func testAttentionMatchesAReference() {
        let q = uniformTensor([2, 3, 3, 4], seed: 900, low: -2, high: 2)
        let k = uniformTensor([2, 3, 3, 4], seed: 901, low: -2, high: 2)
        let v = uniformTensor([2, 5, 3, 4], seed: 902)
        let out = Tensor.attention(query: q, key: k, value: v)
        XCTAssertEqual(out.shape, [2, 5, 3, 4])
        assertClose(out.scalars, referenceAttention(q, k, v), tolerance: 1e-5)
    }

    func testEqualKeysAverageTheValues() {
        // With every key the same, each position's weights are uniform: out = the mean value.
        let q = uniformTensor([1, 2, 2, 3], seed: 903)
        let k = Tensor(shape: [1, 2, 2, 3], repeating: 0.5)
        let v = uniformTensor([1, 2, 2, 3], seed: 904)
        let out = Tensor.attention(query: q, key: k, value: v).scalars
        for ch in 0..<2 {
            let mean = v.scalars[(ch * 6)..<(ch * 6 + 6)].reduce(0, +) / 6
            for i in 0..<6 { XCTAssertEqual(out[ch * 6 + i], mean, accuracy: 1e-6) }
        }
    }

    func testAttentionGradients() {
        let q = uniformTensor([2, 3, 2, 3], seed: 905, low: -1.5, high: 1.5)
        let k = uniformTensor([2, 3, 2, 3], seed: 906, low: -1.5, high: 1.5)
        let v = uniformTensor([2, 4, 2, 3], seed: 907)
        assertGradientsMatch([q, k, v], epsilon: 1e-3, relativeTolerance: 1e-2, absoluteTolerance: 1e-3) {
            Tensor.attention(query: $0[0], key: $0[1], value: $0[2])
        }
        // Each input alone, the others untracked (the pullback must not depend on which are tracked).
        for input in 0..<3 {
            assertGradientsMatch([q, k, v], checked: [input], epsilon: 1e-3, relativeTolerance: 1e-2, absoluteTolerance: 1e-3) {
                Tensor.attention(query: $0[0], key: $0[1], value: $0[2])
            }
        }
    }
}
