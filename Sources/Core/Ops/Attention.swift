import CKernels

// Scaled dot-product attention over the positions of a feature map (the non-local block of Wang
// et al. 2018, DANet's position attention): every position i of an image takes the mean of all
// positions' values weighted by softmax_j(q_i . k_j / sqrt(d)). One image is three matrices of
// [channels, positions] (NCHW is exactly that), so each pass is a few GEMMs per image.

/// Row-wise softmax of a rows x columns matrix, in place.
private func softmaxRows(_ a: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
    for r in 0..<rows {
        let row = a + r * columns
        var peak = row[0]
        for j in 1..<columns where row[j] > peak { peak = row[j] }
        for j in 0..<columns { row[j] -= peak }
        pc_exp(row, columns)
        var total: Float = 0
        for j in 0..<columns { total += row[j] }
        let scale = 1 / total
        for j in 0..<columns { row[j] *= scale }
    }
}

extension Tensor {
    /// Attention of `query` [N, d, H, W] over `key` [N, d, H, W] applied to `value`
    /// [N, c, H, W]: out[n, :, i] = sum_j softmax_j(q_i . k_j / sqrt(d)) v[n, :, j], with i and j
    /// running over the H * W positions of image n. Returns [N, c, H, W].
    public static func attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor {
        checkShape(query.rank == 4 && key.shape == query.shape && value.rank == 4
                       && value.shape[0] == query.shape[0] && value.shape[2...] == query.shape[2...],
                   "attention: query \(query.shape), key \(key.shape), value \(value.shape) (expects [N, d, H, W] twice and [N, c, H, W])")
        let (n, d, c) = (query.shape[0], query.shape[1], value.shape[1])
        let p = query.shape[2] * query.shape[3]
        checkShape(p > 0 && d > 0, "attention: empty positions or keys in \(query.shape)")
        let scale = 1 / Float(d).squareRoot()
        // The weights of every image, [N, P, P], kept for the pullback.
        let weights = Tensor.uninitialized([n, p, p])
        let out = Tensor.uninitialized(value.shape)
        let q = query.pointer, k = key.pointer, v = value.pointer, a = weights.pointer, y = out.pointer
        parallelFor(n) { images in
            for i in images {
                let ai = a + i * p * p
                gemm(transposeA: true, m: p, n: p, k: d, alpha: scale, q + i * d * p, lda: p, k + i * d * p, ldb: p, ai, ldc: p)
                softmaxRows(ai, rows: p, columns: p)
                gemm(transposeB: true, m: c, n: p, k: p, v + i * c * p, lda: p, ai, ldb: p, y + i * c * p, ldc: p)
            }
        }
        return Tensor.record(out, inputs: [query, key, value]) { g in
            let dq = Tensor.uninitialized(query.shape), dk = Tensor.uninitialized(key.shape)
            let dv = Tensor.uninitialized(value.shape)
            // Pointers taken from the tensors here, so the closure keeps them (and the weights) alive.
            let gp = g.pointer, q = query.pointer, k = key.pointer, v = value.pointer, a = weights.pointer
            parallelFor(n) { images in
                let da = UnsafeMutablePointer<Float>.allocate(capacity: p * p)
                defer { da.deallocate() }
                for i in images {
                    let ai = a + i * p * p, gi = gp + i * c * p
                    // dV = G A and dA = G^T V.
                    gemm(m: c, n: p, k: p, gi, lda: p, ai, ldb: p, dv.pointer + i * c * p, ldc: p)
                    gemm(transposeA: true, m: p, n: p, k: c, gi, lda: p, v + i * c * p, ldb: p, da, ldc: p)
                    // Through the softmax: dS = A * (dA - rowsum(dA * A)).
                    for r in 0..<p {
                        let row = da + r * p, weight = ai + r * p
                        var dot: Float = 0
                        for j in 0..<p { dot += row[j] * weight[j] }
                        for j in 0..<p { row[j] = weight[j] * (row[j] - dot) }
                    }
                    // S = scale Q^T K: dQ = scale K dS^T, dK = scale Q dS.
                    gemm(transposeB: true, m: d, n: p, k: p, alpha: scale, k + i * d * p, lda: p, da, ldb: p,
                         dq.pointer + i * d * p, ldc: p)
                    gemm(m: d, n: p, k: p, alpha: scale, q + i * d * p, lda: p, da, ldb: p, dk.pointer + i * d * p, ldc: p)
                }
            }
            return [dq, dk, dv]
        }
    }
}
