extension Tensor {
    /// Fully connected layer: [N, in] x weight [out, in] + bias [out] -> [N, out].
    public func linear(_ weight: Tensor, bias: Tensor? = nil) -> Tensor {
        checkShape(rank == 2 && weight.rank == 2 && shape[1] == weight.shape[1],
                   "linear: input \(shape), weight \(weight.shape) (expects [N, in] and [out, in])")
        let n = shape[0], inFeatures = shape[1], outFeatures = weight.shape[0]
        if let bias { checkShape(bias.shape == [outFeatures], "linear: bias \(bias.shape), expected [\(outFeatures)]") }
        let out = Tensor.uninitialized([n, outFeatures])
        let x = self
        parallelFor(n, grain: 16) { rows in
            let y = out.pointer + rows.lowerBound * outFeatures
            if let bias {
                for r in 0..<rows.count { (y + r * outFeatures).update(from: bias.pointer, count: outFeatures) }
            }
            gemm(transposeB: true, m: rows.count, n: outFeatures, k: inFeatures,
                 x.pointer + rows.lowerBound * inFeatures, lda: inFeatures, weight.pointer, ldb: inFeatures,
                 beta: bias == nil ? 0 : 1, y, ldc: outFeatures)
        }
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record(out, inputs: inputs) { g in
            var grads: [Tensor?] = [nil, nil, nil]
            if x.isTracked {
                let dx = Tensor.uninitialized(x.shape)
                parallelFor(n, grain: 16) { rows in
                    gemm(m: rows.count, n: inFeatures, k: outFeatures,
                         g.pointer + rows.lowerBound * outFeatures, lda: outFeatures,
                         weight.pointer, ldb: inFeatures, dx.pointer + rows.lowerBound * inFeatures, ldc: inFeatures)
                }
                grads[0] = dx
            }
            if weight.isTracked {
                let dw = Tensor.uninitialized(weight.shape)
                parallelFor(outFeatures, grain: 8) { rows in
                    gemm(transposeA: true, m: rows.count, n: inFeatures, k: n,
                         g.pointer + rows.lowerBound, lda: outFeatures, x.pointer, ldb: inFeatures,
                         dw.pointer + rows.lowerBound * inFeatures, ldc: inFeatures)
                }
                grads[1] = dw
            }
            if let bias, bias.isTracked {
                let db = Tensor.zeros([outFeatures])
                for r in 0..<n {
                    let row = g.pointer + r * outFeatures
                    for j in 0..<outFeatures { db.pointer[j] += row[j] }
                }
                grads[2] = db
            }
            return Array(grads.prefix(inputs.count))
        }
    }
}
