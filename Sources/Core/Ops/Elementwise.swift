import Foundation

// Elementwise ops: one tight loop each over contiguous storage, with the pullback beside the
// forward. Binary ops require equal shapes; per-channel bias is its own op (`addingChannelBias`).

extension Tensor {
    /// Applies `f` to every element into a new untracked tensor of the same shape.
    @inlinable
    func mapped(_ f: (Float) -> Float) -> Tensor {
        let out = Tensor.uninitialized(shape)
        let x = pointer, y = out.pointer
        for i in 0..<count { y[i] = f(x[i]) }
        return out
    }

    /// Untracked `self + other` (used by pullbacks to sum gradient contributions).
    public func summed(with other: Tensor) -> Tensor {
        checkShape(count == other.count, "add \(shape) + \(other.shape)")
        let out = Tensor.uninitialized(shape)
        let a = pointer, b = other.pointer, y = out.pointer
        elementwise(count) { start, n in add(a + start, b + start, into: y + start, count: n) }
        return out
    }

    /// Untracked `self * scale`.
    public func scaled(by scale: Float) -> Tensor { mapped { $0 * scale } }

    /// `self + other` (same shape): residual joins.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        checkShape(lhs.shape == rhs.shape, "add \(lhs.shape) + \(rhs.shape)")
        return record(lhs.detached.summed(with: rhs), inputs: [lhs, rhs]) { g in [g, g] }
    }

    /// `self - other` (same shape).
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor {
        checkShape(lhs.shape == rhs.shape, "subtract \(lhs.shape) - \(rhs.shape)")
        let out = Tensor.uninitialized(lhs.shape)
        let a = lhs.pointer, b = rhs.pointer, y = out.pointer
        for i in 0..<out.count { y[i] = a[i] - b[i] }
        return record(out, inputs: [lhs, rhs]) { g in [g, g.scaled(by: -1)] }
    }

    /// Elementwise product (same shape).
    public static func * (lhs: Tensor, rhs: Tensor) -> Tensor {
        checkShape(lhs.shape == rhs.shape, "multiply \(lhs.shape) * \(rhs.shape)")
        let out = Tensor.uninitialized(lhs.shape)
        let a = lhs.pointer, b = rhs.pointer, y = out.pointer
        for i in 0..<out.count { y[i] = a[i] * b[i] }
        return record(out, inputs: [lhs, rhs]) { g in
            let ga = Tensor.uninitialized(lhs.shape), gb = Tensor.uninitialized(rhs.shape)
            let gp = g.pointer
            for i in 0..<g.count { ga.pointer[i] = gp[i] * b[i]; gb.pointer[i] = gp[i] * a[i] }
            return [ga, gb]
        }
    }

    /// Multiplication by a constant.
    public static func * (lhs: Tensor, rhs: Float) -> Tensor {
        record(lhs.scaled(by: rhs), inputs: [lhs]) { g in [g.scaled(by: rhs)] }
    }

    /// max(x, 0).
    public func relu() -> Tensor {
        let out = Tensor.uninitialized(shape)
        let x = pointer, y = out.pointer
        elementwise(count) { start, n in reluForward(x + start, into: y + start, count: n) }
        return Tensor.record(out, inputs: [self]) { g in [g.maskedBy(positive: out)] }
    }

    /// This gradient where `output` > 0 and zero elsewhere: the ReLU pullback given its output.
    func maskedBy(positive output: Tensor) -> Tensor {
        let dx = Tensor.uninitialized(shape)
        let y = output.pointer, gp = pointer, d = dx.pointer
        elementwise(count) { start, n in reluBackward(output: y + start, gradient: gp + start, into: d + start, count: n) }
        return dx
    }

    /// x for x > 0, slope * x otherwise.
    public func leakyRelu(slope: Float = 0.01) -> Tensor {
        let x = self
        let out = mapped { $0 > 0 ? $0 : slope * $0 }
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(g.shape)
            let xp = x.pointer, gp = g.pointer, d = dx.pointer
            for i in 0..<g.count { d[i] = xp[i] > 0 ? gp[i] : slope * gp[i] }
            return [dx]
        }
    }

    /// 1 / (1 + exp(-x)), computed without overflow for large |x|.
    public func sigmoid() -> Tensor {
        let out = mapped { stableSigmoid($0) }
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(g.shape)
            let y = out.pointer, gp = g.pointer, d = dx.pointer
            for i in 0..<g.count { d[i] = gp[i] * y[i] * (1 - y[i]) }
            return [dx]
        }
    }

    public func tanh() -> Tensor {
        let out = mapped { Foundation.tanh($0) }
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(g.shape)
            let y = out.pointer, gp = g.pointer, d = dx.pointer
            for i in 0..<g.count { d[i] = gp[i] * (1 - y[i] * y[i]) }
            return [dx]
        }
    }

    /// Sum of all elements, as a scalar tensor.
    public func sum() -> Tensor {
        var total: Double = 0
        for i in 0..<count { total += Double(pointer[i]) }
        let shape = self.shape
        return Tensor.record(Tensor(Float(total)), inputs: [self]) { g in
            [Tensor(shape: shape, repeating: g.scalar)]
        }
    }

    /// Mean of all elements, as a scalar tensor.
    public func mean() -> Tensor { sum() * (1 / Float(Swift.max(count, 1))) }

    /// Same elements, new shape (one dimension may be -1). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var target = newShape
        if let inferred = target.firstIndex(of: -1) {
            let known = target.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            checkShape(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            target[inferred] = count / known
        }
        checkShape(target.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        let oldShape = shape
        return Tensor.record(Tensor(shape: target, storage: storage), inputs: [self]) { g in
            [Tensor(shape: oldShape, storage: g.storage)]
        }
    }

    /// [N, ...] -> [N, product of the rest].
    public func flattened() -> Tensor {
        checkShape(rank >= 1, "flatten of a scalar")
        return reshaped([shape[0], count / Swift.max(shape[0], 1)])
    }
}

@inlinable func stableSigmoid(_ x: Float) -> Float {
    x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}

/// Concatenates NCHW (or [N, C]) tensors along the channel axis 1.
public func concatChannels(_ parts: [Tensor]) -> Tensor {
    precondition(!parts.isEmpty, "concat of no tensors")
    let first = parts[0].shape
    let n = first[0]
    let inner = first.count > 2 ? first[2...].reduce(1, *) : 1
    for p in parts {
        checkShape(p.rank == first.count && p.shape[0] == n && (p.rank <= 2 || Array(p.shape[2...]) == Array(first[2...])),
                   "concat channels: \(parts.map(\.shape))")
    }
    let channels = parts.map { $0.shape[1] }
    let total = channels.reduce(0, +)
    var outShape = first
    outShape[1] = total
    let out = Tensor.uninitialized(outShape)
    for b in 0..<n {
        var offset = 0
        for (p, c) in zip(parts, channels) {
            (out.pointer + (b * total + offset) * inner).update(from: p.pointer + b * c * inner, count: c * inner)
            offset += c
        }
    }
    return Tensor.record(out, inputs: parts) { g in
        var offset = 0
        return zip(parts, channels).map { p, c in
            let gp = Tensor.uninitialized(p.shape)
            for b in 0..<n {
                gp.pointer.advanced(by: b * c * inner)
                    .update(from: g.pointer + (b * total + offset) * inner, count: c * inner)
            }
            offset += c
            return gp
        }
    }
}

extension Tensor {
    /// Channels `range` of an NCHW (or [N, C]) tensor: [N, C, ...] -> [N, range.count, ...].
    public func channels(_ range: Range<Int>) -> Tensor {
        checkShape(rank >= 2 && range.lowerBound >= 0 && range.upperBound <= shape[1] && !range.isEmpty,
                   "channels \(range) of \(shape)")
        let n = shape[0], c = shape[1], inner = rank > 2 ? shape[2...].reduce(1, *) : 1
        var outShape = shape
        outShape[1] = range.count
        let out = Tensor.uninitialized(outShape)
        let part = range.count * inner
        for b in 0..<n {
            (out.pointer + b * part).update(from: pointer + (b * c + range.lowerBound) * inner, count: part)
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.zeros(inShape)
            for b in 0..<n {
                (dx.pointer + (b * c + range.lowerBound) * inner).update(from: g.pointer + b * part, count: part)
            }
            return [dx]
        }
    }
}

extension Tensor {
    /// The `height` x `width` patch at (`top`, `left`) of every plane of an NCHW tensor.
    public func cropped(top: Int, left: Int, height: Int, width: Int) -> Tensor {
        checkShape(rank == 4 && top >= 0 && left >= 0 && height >= 1 && width >= 1 && top + height <= shape[2] && left + width <= shape[3],
                   "cropped(top: \(top), left: \(left), height: \(height), width: \(width)) of \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let out = Tensor.uninitialized([shape[0], shape[1], height, width])
        for plane in 0..<planes {
            for y in 0..<height {
                (out.pointer + (plane * height + y) * width).update(from: pointer + (plane * h + top + y) * w + left, count: width)
            }
        }
        let inShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.zeros(inShape)
            for plane in 0..<planes {
                for y in 0..<height {
                    (dx.pointer + (plane * h + top + y) * w + left).update(from: g.pointer + (plane * height + y) * width, count: width)
                }
            }
            return [dx]
        }
    }
}

extension Tensor {
    /// [N, C, H, W] -> [N, C, H + 2 * padding, W + 2 * padding], the border of channel c filled
    /// with `values[c]`. For inference (image pyramids): it records no gradient.
    public func padded(by padding: Int, values: [Float]) -> Tensor {
        checkShape(rank == 4 && values.count == shape[1] && padding >= 0, "padded(by: \(padding)) of \(shape) with \(values.count) values")
        precondition(!isTracked, "padded(by:values:) is for inference and records no gradient")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        guard padding > 0 else { return self }
        let height = h + 2 * padding, width = w + 2 * padding
        let out = Tensor.uninitialized([n, c, height, width])
        for plane in 0..<(n * c) {
            let dst = out.pointer + plane * height * width, src = pointer + plane * h * w
            dst.update(repeating: values[plane % c], count: height * width)
            for y in 0..<h { (dst + (y + padding) * width + padding).update(from: src + y * w, count: w) }
        }
        return out
    }
}

extension Tensor {
    /// [N, C, H, W] mirrored left-right. For inference (test-time flips): it records no gradient.
    public func flippedHorizontally() -> Tensor {
        checkShape(rank == 4, "flippedHorizontally of \(shape)")
        precondition(!isTracked, "flippedHorizontally is for inference and records no gradient")
        let w = shape[3], rows = count / Swift.max(w, 1)
        let out = Tensor.uninitialized(shape)
        for row in 0..<rows {
            let src = pointer + row * w, dst = out.pointer + row * w
            for x in 0..<w { dst[x] = src[w - 1 - x] }
        }
        return out
    }
}
