import Foundation

// Batch normalisation as one primitive: the forward keeps per-channel mean and 1/std, and the
// pullback uses the closed-form gradient instead of differentiating a chain of elementwise ops.
// Every reduction runs over one channel inside one loop iteration, so results do not depend on
// how parallelFor splits the channels.

extension Tensor {
    /// Batch norm over axis 1: [N, C, H, W] or [N, C] with gamma, beta and running statistics [C] -> input shape.
    ///
    /// Training normalises with the batch mean and biased variance, and replaces
    /// `runningMean.value` / `runningVar.value` with `(1 - momentum) * running + momentum * batch`
    /// (unbiased variance there, as PyTorch does). The Buffer objects are updated; tensors read
    /// from them earlier keep their old values. Inference normalises with the running statistics
    /// and leaves the buffers alone. Gradients flow to the input, gamma and beta.
    ///
    /// `relu: true` applies ReLU to the result in the same pass (and its pullback inside this
    /// one): the same values and gradients as `.relu()` after it, without the extra tensor.
    public func batchNorm2D(gamma: Tensor, beta: Tensor, runningMean: Buffer, runningVar: Buffer,
                            momentum: Float = 0.1, epsilon: Float = 1e-5, training: Bool, relu: Bool = false) -> Tensor {
        checkShape(rank == 4 || rank == 2, "batchNorm2D: input \(shape) is neither [N, C, H, W] nor [N, C]")
        let (n, c) = (shape[0], shape[1])
        let inner = rank == 4 ? shape[2] * shape[3] : 1
        checkShape(gamma.shape == [c] && beta.shape == [c], "batchNorm2D: gamma \(gamma.shape), beta \(beta.shape) for input \(shape)")
        checkShape(runningMean.value.shape == [c] && runningVar.value.shape == [c],
                   "batchNorm2D: running mean \(runningMean.value.shape), running var \(runningVar.value.shape) for input \(shape)")
        let valuesPerChannel = n * inner
        let mean = Tensor.uninitialized([c]), inverseStd = Tensor.uninitialized([c])
        let x = self
        let grain = Swift.max(1, 16_384 / Swift.max(valuesPerChannel, 1))

        if training {
            checkShape(valuesPerChannel > 1, "batchNorm2D: training needs more than one value per channel, input \(shape)")
            let variance = Tensor.uninitialized([c])
            var totalCount = valuesPerChannel
            if Distributed.synchronises {
                // SyncBN: the moments of the global batch, in one process's two passes: the sum
                // (and count) over the ranks, then the squared deviations from the global mean,
                // each one allreduce of Double sums. The ranks then round as one process does
                // (K = 1 is bit for bit the unsynchronised path): training is sensitive enough
                // that 1e-7 differences here grew to 1e-5 in weights within 8 steps, measured.
                var sums = [Double](repeating: 0, count: c + 1)
                sums.withUnsafeMutableBufferPointer { sums in
                    let p = sums.baseAddress!
                    parallelFor(c, grain: grain) { channels in
                        for channel in channels {
                            p[channel] = channelSum(x.pointer, batch: n, channels: c, inner: inner, channel: channel, centre: nil)
                        }
                    }
                    p[c] = Double(valuesPerChannel)
                    Distributed.sumInStep(p, count: c + 1)
                    for channel in 0..<c { mean.pointer[channel] = Float(p[channel] / p[c]) }
                    totalCount = Int(p[c])
                    parallelFor(c, grain: grain) { channels in
                        for channel in channels {
                            p[channel] = channelSum(x.pointer, batch: n, channels: c, inner: inner, channel: channel, centre: mean.pointer[channel])
                        }
                    }
                    Distributed.sumInStep(p, count: c)
                    for channel in 0..<c {
                        let v = Float(p[channel] / p[c])
                        variance.pointer[channel] = v
                        inverseStd.pointer[channel] = 1 / (v + epsilon).squareRoot()
                    }
                }
            } else {
                parallelFor(c, grain: grain) { channels in
                    for channel in channels {
                        let (mu, v) = channelMoments(x.pointer, batch: n, channels: c, inner: inner, channel: channel)
                        mean.pointer[channel] = mu
                        variance.pointer[channel] = v
                        inverseStd.pointer[channel] = 1 / (v + epsilon).squareRoot()
                    }
                }
            }
            let newMean = Tensor.uninitialized([c]), newVar = Tensor.uninitialized([c])
            let unbiased = Float(totalCount) / Float(totalCount - 1)
            let oldMean = runningMean.value.pointer, oldVar = runningVar.value.pointer
            for channel in 0..<c {
                newMean.pointer[channel] = (1 - momentum) * oldMean[channel] + momentum * mean.pointer[channel]
                newVar.pointer[channel] = (1 - momentum) * oldVar[channel] + momentum * variance.pointer[channel] * unbiased
            }
            // Replaced rather than overwritten: a checkpoint snapshot may share the old storage.
            runningMean.value = newMean
            runningVar.value = newVar
        } else {
            let runMean = runningMean.value.pointer, runVar = runningVar.value.pointer
            for channel in 0..<c {
                mean.pointer[channel] = runMean[channel]
                inverseStd.pointer[channel] = 1 / (runVar[channel] + epsilon).squareRoot()
            }
        }

        let out = Tensor.uninitialized(shape)
        parallelFor(n * c, grain: Swift.max(1, 16_384 / Swift.max(inner, 1))) { planes in
            for plane in planes {
                let channel = plane % c
                let scale = gamma.pointer[channel] * inverseStd.pointer[channel]
                let shift = beta.pointer[channel] - mean.pointer[channel] * scale
                let src = x.pointer + plane * inner, dst = out.pointer + plane * inner
                if relu {
                    for i in 0..<inner { dst[i] = Swift.max(src[i] * scale + shift, 0) }
                } else {
                    for i in 0..<inner { dst[i] = src[i] * scale + shift }
                }
            }
        }

        let synchronised = training && Distributed.synchronises
        return Tensor.record(out, inputs: [x, gamma, beta]) { outputGradient in
            let gammaGrad = Tensor.uninitialized([c]), betaGrad = Tensor.uninitialized([c])
            let dx = x.isTracked ? Tensor.uninitialized(x.shape) : nil
            // Through the fused ReLU first: zero where the output was clipped. With an input
            // gradient to make, each plane's masked gradient goes into its own place in dx, and
            // the affine map below overwrites it there while the channel is in cache.
            let masksInPlace = relu && dx != nil && !synchronised
            let g = relu && !masksInPlace ? outputGradient.maskedBy(positive: out) : outputGradient
            /// The (masked) output gradient of the plane at `offset`.
            func gradientPlane(_ offset: Int) -> UnsafePointer<Float> {
                UnsafePointer(masksInPlace ? dx!.pointer + offset : g.pointer + offset)
            }
            if synchronised {
                synchronisedBatchNormPullback(g: g, x: x, gamma: gamma, mean: mean, inverseStd: inverseStd, batch: n, channels: c,
                                              inner: inner, grain: grain, gammaGrad: gammaGrad, betaGrad: betaGrad, dx: dx)
                return [dx, gammaGrad, betaGrad]
            }
            let count = Float(valuesPerChannel)
            parallelFor(c, grain: grain) { channels in
                for channel in channels {
                    let mu = mean.pointer[channel], invStd = inverseStd.pointer[channel]
                    // sum(g) and sum(g * xhat) per channel, accumulated per plane in Float then in Double.
                    var sumG: Double = 0, sumGX: Double = 0
                    for b in 0..<n {
                        let offset = (b * c + channel) * inner
                        if masksInPlace, let dx {
                            reluBackward(output: out.pointer + offset, gradient: g.pointer + offset, into: dx.pointer + offset,
                                         count: inner)
                        }
                        let sums = gradientSums(gradientPlane(offset), x.pointer + offset, inner, mean: mu)
                        sumG += Double(sums.0)
                        sumGX += Double(sums.1)
                    }
                    let dBeta = Float(sumG), dGamma = Float(sumGX) * invStd
                    betaGrad.pointer[channel] = dBeta
                    gammaGrad.pointer[channel] = dGamma
                    guard let dx else { continue }
                    let scale = gamma.pointer[channel] * invStd
                    if training {
                        // Batch statistics depend on every input: dx = scale * (g - mean(g) - xhat * mean(g * xhat)).
                        // As an affine map of (g, x): dx = scale * g + slope * x + offset.
                        let meanG = dBeta / count, meanGX = dGamma / count
                        let slope = -scale * invStd * meanGX
                        let shift = -scale * meanG - slope * mu
                        for b in 0..<n {
                            let offset = (b * c + channel) * inner
                            affineCombination(gradientPlane(offset), scale, x.pointer + offset, slope, shift,
                                              into: dx.pointer + offset, count: inner)
                        }
                    } else {
                        for b in 0..<n {
                            let offset = (b * c + channel) * inner
                            let gp = gradientPlane(offset), d = dx.pointer + offset
                            for i in 0..<inner { d[i] = scale * gp[i] }
                        }
                    }
                }
            }
            return [dx, gammaGrad, betaGrad]
        }
    }
}

/// The batch-norm pullback of a step synchronised across ranks: dx needs the means of g and
/// g * xhat over the global batch (one allreduce of both sums), while gamma's and beta's
/// gradients stay this rank's own sums (the step's gradient allreduce adds the ranks' parts).
private func synchronisedBatchNormPullback(g: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, inverseStd: Tensor, batch n: Int,
                                           channels c: Int, inner: Int, grain: Int, gammaGrad: Tensor, betaGrad: Tensor, dx: Tensor?) {
    var sums = [Double](repeating: 0, count: 2 * c + 1)
    sums.withUnsafeMutableBufferPointer { sums in
        let p = sums.baseAddress!
        parallelFor(c, grain: grain) { channels in
            for channel in channels {
                var sumG: Double = 0, sumGX: Double = 0
                for b in 0..<n {
                    let offset = (b * c + channel) * inner
                    let (planeG, planeGX) = gradientSums(g.pointer + offset, x.pointer + offset, inner, mean: mean.pointer[channel])
                    sumG += Double(planeG)
                    sumGX += Double(planeGX)
                }
                p[channel] = sumG; p[c + channel] = sumGX
                betaGrad.pointer[channel] = Float(sumG)
                gammaGrad.pointer[channel] = Float(sumGX) * inverseStd.pointer[channel]
            }
        }
        p[2 * c] = Double(n * inner)
        Distributed.sumInStep(p, count: 2 * c + 1)
    }
    guard let dx else { return }
    let count = Float(sums[2 * c])
    parallelFor(c, grain: grain) { channels in
        for channel in channels {
            let mu = mean.pointer[channel], invStd = inverseStd.pointer[channel]
            let scale = gamma.pointer[channel] * invStd
            // As the unsynchronised pullback rounds them, from the global sums.
            let meanG = Float(sums[channel]) / count, meanGX = Float(sums[c + channel]) * invStd / count
            let slope = -scale * invStd * meanGX
            let shift = -scale * meanG - slope * mu
            for b in 0..<n {
                let offset = (b * c + channel) * inner
                affineCombination(g.pointer + offset, scale, x.pointer + offset, slope, shift, into: dx.pointer + offset, count: inner)
            }
        }
    }
}

/// Mean and biased variance of one channel (two passes: stable for large offsets).
private func channelMoments(_ x: UnsafePointer<Float>, batch: Int, channels: Int, inner: Int,
                            channel: Int) -> (mean: Float, variance: Float) {
    let count = Double(batch * inner)
    let mean = Float(channelSum(x, batch: batch, channels: channels, inner: inner, channel: channel, centre: nil) / count)
    return (mean, Float(channelSum(x, batch: batch, channels: channels, inner: inner, channel: channel, centre: mean) / count))
}

/// One channel's sum over the batch (`centre` nil) or its sum of squared deviations from
/// `centre`: per plane in Float lanes, across planes in Double.
private func channelSum(_ x: UnsafePointer<Float>, batch: Int, channels: Int, inner: Int, channel: Int, centre: Float?) -> Double {
    var total: Double = 0
    for b in 0..<batch {
        let sums = laneSums(x + (b * channels + channel) * inner, inner, mean: centre)
        total += Double(centre == nil ? sums.0 : sums.1)
    }
    return total
}

// Plane reductions with eight lanes in a fixed order: the compiler cannot vectorise a plain
// float loop (it may not reorder the additions), and a fixed order keeps results deterministic.

/// Sum of a plane, and (when `mean` is given) its sum of squared deviations from `mean`.
@inline(__always)
private func laneSums(_ p: UnsafePointer<Float>, _ count: Int, mean: Float?) -> (Float, Float) {
    let raw = UnsafeRawPointer(p)
    let stride = MemoryLayout<Float>.stride
    var sums = SIMD8<Float>(repeating: 0)
    var i = 0
    if let mean {
        let centre = SIMD8<Float>(repeating: mean)
        while i + 8 <= count {
            let d = raw.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self) - centre
            sums += d * d
            i += 8
        }
        var total = sums.sum()
        while i < count { let d = p[i] - mean; total += d * d; i += 1 }
        return (0, total)
    }
    while i + 8 <= count {
        sums += raw.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
        i += 8
    }
    var total = sums.sum()
    while i < count { total += p[i]; i += 1 }
    return (total, 0)
}

/// d[i] = a * u[i] + b * v[i] + c.
@inline(__always)
private func affineCombination(_ u: UnsafePointer<Float>, _ a: Float, _ v: UnsafePointer<Float>, _ b: Float, _ c: Float,
                               into d: UnsafeMutablePointer<Float>, count: Int) {
    let (va, vb, vc) = (Vector(repeating: a), Vector(repeating: b), Vector(repeating: c))
    var i = 0
    while i + 8 <= count { store(load(u + i) * va + load(v + i) * vb + vc, d + i); i += 8 }
    while i < count { d[i] = a * u[i] + b * v[i] + c; i += 1 }
}

/// sum(g) and sum(g * (x - mean)) over one plane.
@inline(__always)
private func gradientSums(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ count: Int,
                          mean: Float) -> (Float, Float) {
    let rawG = UnsafeRawPointer(g), rawX = UnsafeRawPointer(x)
    let stride = MemoryLayout<Float>.stride
    let centre = SIMD8<Float>(repeating: mean)
    var sumG = SIMD8<Float>(repeating: 0), sumGX = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let gv = rawG.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
        let xv = rawX.loadUnaligned(fromByteOffset: i * stride, as: SIMD8<Float>.self)
        sumG += gv
        sumGX += gv * (xv - centre)
        i += 8
    }
    var totalG = sumG.sum(), totalGX = sumGX.sum()
    while i < count { totalG += g[i]; totalGX += g[i] * (x[i] - mean); i += 1 }
    return (totalG, totalGX)
}
