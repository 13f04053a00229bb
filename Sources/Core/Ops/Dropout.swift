import Foundation

extension Tensor {
    /// Inverted dropout, any shape -> same shape: zero with `probability`, scale survivors by 1 / (1 - probability).
    ///
    /// In inference (or with probability 0) the input itself is returned.
    /// The mask is drawn from `rng` (one uniform per element, in row-major order), so a seeded
    /// generator reproduces it; the pullback reuses the same mask.
    public func dropout(probability: Float, training: Bool, using rng: inout some RandomNumberGenerator) -> Tensor {
        precondition(probability >= 0 && probability <= 1, "dropout: probability \(probability) outside [0, 1]")
        guard training, probability > 0 else { return self }
        // Dropping everything would scale by infinity; PyTorch returns zeros, and so do we.
        let keep = probability < 1 ? 1 / (1 - probability) : 0
        let mask = Tensor.uninitialized(shape)
        let m = mask.pointer
        for i in 0..<count { m[i] = rng.nextUniform() < probability ? 0 : keep }
        let out = Tensor.uninitialized(shape)
        let x = pointer, y = out.pointer
        for i in 0..<count { y[i] = x[i] * m[i] }
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(g.shape)
            let gp = g.pointer, d = dx.pointer
            for i in 0..<g.count { d[i] = gp[i] * mask.pointer[i] }
            return [dx]
        }
    }
}
