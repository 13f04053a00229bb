import CKernels
import Foundation

// Losses reduce to a scalar (rank-0) tensor with mean reduction. Partial sums are taken over
// fixed blocks of samples and added in block order, so the loss does not depend on the number
// of threads or on which thread ran which block.

/// Samples per block of a loss reduction.
private let lossBlock = 1_024

/// Sums `body(range)` over consecutive blocks of `0..<count`, in parallel, in block order.
private func blockSum(_ count: Int, _ body: (Range<Int>) -> Double) -> Double {
    let blocks = (count + lossBlock - 1) / lossBlock
    guard blocks > 0 else { return 0 }
    let partials = UnsafeMutablePointer<Double>.allocate(capacity: blocks)
    defer { partials.deallocate() }
    parallelFor(blocks) { range in
        for block in range {
            let start = block * lossBlock
            partials[block] = body(start..<Swift.min(start + lossBlock, count))
        }
    }
    var total: Double = 0
    for block in 0..<blocks { total += partials[block] }
    return total
}

/// Runs `body` over blocks of `0..<count` in parallel (for pullbacks that write disjoint ranges).
private func blockFor(_ count: Int, _ body: (Range<Int>) -> Void) {
    let blocks = (count + lossBlock - 1) / lossBlock
    parallelFor(blocks) { range in
        for block in range {
            let start = block * lossBlock
            body(start..<Swift.min(start + lossBlock, count))
        }
    }
}

/// Stable log(1 + exp(-|x|)) + max(-x, 0) = log(1 + exp(-x)).
@inline(__always)
private func softplusOfNegative(_ x: Float) -> Float {
    Foundation.log1p(Foundation.exp(-Swift.abs(x))) + Swift.max(-x, 0)
}

/// Softmax cross-entropy, mean over counted targets: logits [N, C] + N labels, or [N, C, H, W] + N*H*W labels -> scalar.
///
/// Fused log-softmax and NLL with PyTorch `F.cross_entropy` semantics; per-pixel labels are in
/// (n, h, w) order.
///
/// Labels equal to `ignoreIndex` add nothing and are left out of the mean (the loss is 0, not
/// NaN, when every label is ignored). `classWeights` [C] weight each target's term and the mean
/// divides by the summed weights of counted targets. `labelSmoothing` e mixes the one-hot target
/// with the uniform distribution: (1 - e) * nll + e / C * sum over classes of w_c * (-log p_c).
/// Gradients flow to the logits only.
public func softmaxCrossEntropy(logits: Tensor, labels: [Int32], ignoreIndex: Int32? = nil,
                                classWeights: Tensor? = nil, labelSmoothing: Float = 0) -> Tensor {
    checkShape(logits.rank >= 2, "softmaxCrossEntropy: logits \(logits.shape) need a class axis 1")
    let (n, classes) = (logits.shape[0], logits.shape[1])
    let inner = logits.shape[2...].reduce(1, *)
    let samples = n * inner
    checkShape(labels.count == samples, "softmaxCrossEntropy: logits \(logits.shape) need \(samples) labels, got \(labels.count)")
    checkShape(classes > 0, "softmaxCrossEntropy: logits \(logits.shape) have no classes")
    if let classWeights {
        checkShape(classWeights.shape == [classes], "softmaxCrossEntropy: class weights \(classWeights.shape) for \(classes) classes")
    }
    precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "softmaxCrossEntropy: label smoothing \(labelSmoothing) outside [0, 1]")
    for label in labels where label != ignoreIndex && (label < 0 || Int(label) >= classes) {
        preconditionFailure("softmaxCrossEntropy: label \(label) out of range for \(classes) classes")
    }

    let weights = classWeights?.pointer
    // Validation above rejected Int32.min unless it is the ignore index, so it can stand for "none".
    let ignored = ignoreIndex ?? Int32.min
    var weightSum: Float = Float(classes)
    if let weights { weightSum = 0; for k in 0..<classes { weightSum += weights[k] } }
    let smoothing = labelSmoothing, target = 1 - labelSmoothing
    let uniform = smoothing / Float(classes)
    // Log-probabilities, kept for the pullback (which exponentiates them back): the blocked,
    // vectorised log-softmax, so every pass reads contiguous memory.
    let layout = SoftmaxLayout(logits.shape, axis: 1, name: "softmaxCrossEntropy")
    let logProbabilities = TensorStorage(uninitializedCount: logits.count)
    softmaxForward(logits.pointer, logProbabilities.pointer, layout, logarithm: true)
    let logP = UnsafePointer(logProbabilities.pointer)
    var counted: Double = 0
    var total: Double = 0
    labels.withUnsafeBufferPointer { labelsPointer in
        // An empty batch has no base address and nothing to add.
        guard let label = labelsPointer.baseAddress else { return }
        counted = blockSum(samples) { range in
            var weight: Double = 0
            for s in range where label[s] != ignored {
                weight += Double(weights?[Int(label[s])] ?? 1)
            }
            return weight
        }
        total = blockSum(samples) { range in
            var sum: Double = 0
            for s in range where label[s] != ignored {
                let (o, i) = s.quotientAndRemainder(dividingBy: inner)
                let row = logP + o * classes * inner + i
                let y = Int(label[s])
                var term = target * (weights?[y] ?? 1) * -row[y * inner]
                if smoothing > 0 {
                    var spread: Float = 0
                    for k in 0..<classes { spread -= (weights?[k] ?? 1) * row[k * inner] }
                    term += uniform * spread
                }
                sum += Double(term)
            }
            return sum
        }
    }
    // Data-parallel steps divide by the weight of the global batch (`Distributed.globalSum`).
    counted = Distributed.globalSum(counted)
    let normaliser = counted > 0 ? Float(1 / counted) : 0
    let loss = Tensor(counted > 0 ? Float(total / counted) : 0)
    let shape = logits.shape
    // Pullbacks hold tensors and storage, not their pointers: they stay alive until backward.
    return Tensor.record(loss, inputs: [logits]) { g in
        let dx = Tensor.uninitialized(shape)
        let scale = g.scalar * normaliser
        let weights = classWeights?.pointer, logP = UnsafePointer(logProbabilities.pointer)
        // d/dx_k = (1 - e) w_y (p_k - [k = y]) + e / C (p_k sum(w) - w_k), over the weight sum:
        // per position, a factor on p_k, a per-class offset, and a correction at the label.
        labels.withUnsafeBufferPointer { labelsPointer in
            guard let label = labelsPointer.baseAddress else { return }
            parallelFor(layout.workItems, grain: layout.grain) { items in
                let factor = UnsafeMutablePointer<Float>.allocate(capacity: softmaxBlockSize)
                defer { factor.deallocate() }
                for item in items {
                    let (offset, length) = layout.block(item)
                    // Inner > 1: `length` neighbouring positions, class planes `inner` apart.
                    // Inner = 1: one sample, its classes side by side.
                    let (o, start) = offset.quotientAndRemainder(dividingBy: classes * inner)
                    let first = o * inner + start
                    // Ignored positions are overwritten with 0 below, whatever is formed for them here.
                    for i in 0..<length {
                        let y = label[first + i]
                        factor[i] = y == ignored ? 0 : scale * (target * (weights?[Int(y)] ?? 1) + uniform * weightSum)
                    }
                    for k in 0..<classes { (dx.pointer + offset + k * inner).update(from: logP + offset + k * inner, count: length) }
                    exponentiate(dx.pointer + offset, layout, length: length)
                    for k in 0..<classes {
                        let d = dx.pointer + offset + k * inner
                        let shift = scale * (uniform * (weights?[k] ?? 1))
                        for i in 0..<length { d[i] = factor[i] * d[i] - shift }
                    }
                    for i in 0..<length {
                        guard label[first + i] != ignored else {
                            // Written, not 0 x p: an ignored pixel's gradient is 0 whatever its logits.
                            for k in 0..<classes { dx.pointer[offset + k * inner + i] = 0 }
                            continue
                        }
                        let y = Int(label[first + i])
                        dx.pointer[offset + y * inner + i] -= scale * target * (weights?[y] ?? 1)
                    }
                }
            }
        }
        return [dx]
    }
}

/// Binary cross-entropy on logits, mean over all elements: logits and targets in [0, 1] of the same shape -> scalar.
///
/// PyTorch `binary_cross_entropy_with_logits` semantics.
/// `positiveWeight` [C] scales the positive term per class along axis 1 (PyTorch's pos_weight
/// for [N, C]; for NCHW it corresponds to a pos_weight of shape [C, 1, 1]). Computed as
/// (1 - t) x + (1 + (w - 1) t) log(1 + exp(-x)) with a stable softplus; gradients flow to the
/// logits and to the targets.
public func binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, positiveWeight: Tensor? = nil) -> Tensor {
    checkShape(logits.shape == targets.shape, "binaryCrossEntropyWithLogits: logits \(logits.shape) vs targets \(targets.shape)")
    let count = logits.count
    let channels = logits.rank >= 2 ? logits.shape[1] : 1
    let inner = logits.rank >= 2 ? logits.shape[2...].reduce(1, *) : 1
    if let positiveWeight {
        checkShape(logits.rank >= 2 && positiveWeight.shape == [channels],
                   "binaryCrossEntropyWithLogits: positive weight \(positiveWeight.shape) for logits \(logits.shape) (expects [C] along axis 1)")
    }
    let posWeight = positiveWeight?.pointer
    let x = logits.pointer, t = targets.pointer
    let total = blockSum(count) { range in
        var sum: Double = 0
        for j in range {
            let w = posWeight?[(j / inner) % channels] ?? 1
            let logWeight = 1 + (w - 1) * t[j]
            sum += Double((1 - t[j]) * x[j] + logWeight * softplusOfNegative(x[j]))
        }
        return sum
    }
    let scale = 1 / Float(Swift.max(Distributed.globalSum(Double(count)), 1))
    let loss = Tensor(Float(total) * scale)
    let shape = logits.shape
    return Tensor.record(loss, inputs: [logits, targets]) { g in
        let seed = g.scalar * scale
        let posWeight = positiveWeight?.pointer
        let x = logits.pointer, t = targets.pointer
        let dx = logits.isTracked ? Tensor.uninitialized(shape) : nil
        let dt = targets.isTracked ? Tensor.uninitialized(shape) : nil
        blockFor(count) { range in
            for j in range {
                let w = posWeight?[(j / inner) % channels] ?? 1
                let logWeight = 1 + (w - 1) * t[j]
                // d/dx = (1 - t) + logWeight (sigmoid(x) - 1); d/dt = -x + (w - 1) softplus(-x).
                if let dx { dx.pointer[j] = seed * ((1 - t[j]) + logWeight * (stableSigmoid(x[j]) - 1)) }
                if let dt { dt.pointer[j] = seed * (-x[j] + (w - 1) * softplusOfNegative(x[j])) }
            }
        }
        return [dx, dt]
    }
}

/// Multi-class hinge loss: logits [N, C] + N labels -> scalar mean of sum_{j != y} max(0, margin - x_y + x_j) / C.
///
/// This is PyTorch's `MultiMarginLoss` (p = 1, no weights), not Crammer-Singer's max over j,
/// so that results compare directly with PyTorch.
public func multiClassHingeLoss(logits: Tensor, labels: [Int32], margin: Float = 1) -> Tensor {
    checkShape(logits.rank == 2, "multiClassHingeLoss: logits \(logits.shape) are not [N, C]")
    let (n, classes) = (logits.shape[0], logits.shape[1])
    checkShape(labels.count == n, "multiClassHingeLoss: logits \(logits.shape) need \(n) labels, got \(labels.count)")
    for label in labels where label < 0 || Int(label) >= classes {
        preconditionFailure("multiClassHingeLoss: label \(label) out of range for \(classes) classes")
    }
    let x = logits.pointer
    let total = labels.withUnsafeBufferPointer { labelsPointer -> Double in
        guard let label = labelsPointer.baseAddress else { return 0 }
        return blockSum(n) { range in
            var sum: Double = 0
            for s in range {
                let row = x + s * classes, y = Int(label[s])
                var rowSum: Float = 0
                for j in 0..<classes where j != y { rowSum += Swift.max(0, margin - row[y] + row[j]) }
                sum += Double(rowSum)
            }
            return sum
        }
    }
    let scale = 1 / Float(Swift.max(Distributed.globalSum(Double(n * classes)), 1))
    let loss = Tensor(Float(total) * scale)
    let shape = logits.shape
    return Tensor.record(loss, inputs: [logits]) { g in
        let dx = Tensor.uninitialized(shape)
        let step = g.scalar * scale
        let x = logits.pointer
        labels.withUnsafeBufferPointer { labelsPointer in
            guard let label = labelsPointer.baseAddress else { return }
            blockFor(n) { range in
                for s in range {
                    let row = x + s * classes, d = dx.pointer + s * classes, y = Int(label[s])
                    var active: Float = 0
                    for j in 0..<classes {
                        let violated = j != y && margin - row[y] + row[j] > 0
                        d[j] = violated ? step : 0
                        if violated { active += 1 }
                    }
                    d[y] = -step * active
                }
            }
        }
        return [dx]
    }
}

/// Mean of (prediction - target)^2 over all elements, same shapes -> scalar.
public func meanSquaredError(_ prediction: Tensor, _ target: Tensor) -> Tensor {
    checkShape(prediction.shape == target.shape, "meanSquaredError: prediction \(prediction.shape) vs target \(target.shape)")
    let count = prediction.count
    let a = prediction.pointer, b = target.pointer
    let total = blockSum(count) { range in
        var sum: Float = 0
        for j in range {
            let d = a[j] - b[j]
            sum += d * d
        }
        return Double(sum)
    }
    let scale = 1 / Float(Swift.max(Distributed.globalSum(Double(count)), 1))
    let shape = prediction.shape
    return Tensor.record(Tensor(Float(total) * scale), inputs: [prediction, target]) { g in
        let dp = Tensor.uninitialized(shape)
        let factor = 2 * g.scalar * scale
        let a = prediction.pointer, b = target.pointer
        for j in 0..<count { dp.pointer[j] = factor * (a[j] - b[j]) }
        return [dp, target.isTracked ? dp.scaled(by: -1) : nil]
    }
}

/// Smooth L1 (Huber) loss, weighted mean: prediction and target of one shape, `weights` of that
/// shape (0 leaves an element out) -> scalar sum(w * huber(p - t)) / sum(w), 0 when every weight is 0.
///
/// huber(d) = 0.5 d^2 / beta for |d| < beta, |d| - 0.5 beta otherwise (PyTorch `smooth_l1_loss`).
/// Gradients flow to the prediction only.
public func smoothL1Loss(_ prediction: Tensor, _ target: Tensor, weights: Tensor, beta: Float = 1) -> Tensor {
    checkShape(prediction.shape == target.shape && prediction.shape == weights.shape,
               "smoothL1Loss: prediction \(prediction.shape), target \(target.shape), weights \(weights.shape)")
    precondition(beta > 0, "smoothL1Loss: beta \(beta) must be positive")
    let count = prediction.count
    let p = prediction.pointer, t = target.pointer, w = weights.pointer
    var weightSum: Double = 0, total: Double = 0
    for j in 0..<count where w[j] != 0 {
        let d = Swift.abs(p[j] - t[j])
        total += Double(w[j] * (d < beta ? 0.5 * d * d / beta : d - 0.5 * beta))
        weightSum += Double(w[j])
    }
    weightSum = Distributed.globalSum(weightSum)
    let normaliser = weightSum > 0 ? Float(1 / weightSum) : 0
    let shape = prediction.shape
    return Tensor.record(Tensor(Float(total) * normaliser), inputs: [prediction]) { g in
        let dp = Tensor.uninitialized(shape)
        let scale = g.scalar * normaliser
        let p = prediction.pointer, t = target.pointer, w = weights.pointer
        for j in 0..<count {
            let d = p[j] - t[j]
            dp.pointer[j] = w[j] == 0 ? 0 : scale * w[j] * (Swift.abs(d) < beta ? d / beta : (d > 0 ? 1 : -1))
        }
        return [dp]
    }
}
