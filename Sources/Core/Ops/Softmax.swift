import CKernels
import Foundation

// Softmax and log-softmax along one axis of a row-major tensor, seen as [outer, classes, inner]:
// [N, C] has inner = 1, [N, C, H, W] along axis 1 has inner = H * W. For inner > 1 the kernels
// sweep blocks of neighbouring positions class by class, so every pass reads contiguous memory.

/// Positions per work item along the inner axis; also the size of the per-chunk scratch rows.
let softmaxBlockSize = 256

struct SoftmaxLayout {
    let outer: Int, classes: Int, inner: Int

    init(_ shape: [Int], axis: Int, name: String) {
        checkShape(axis >= 0 && axis < shape.count, "\(name): axis \(axis) out of range for shape \(shape)")
        checkShape(shape[axis] > 0, "\(name): empty axis \(axis) in shape \(shape)")
        outer = shape[..<axis].reduce(1, *)
        classes = shape[axis]
        inner = shape[(axis + 1)...].reduce(1, *)
    }

    var blocksPerOuter: Int { (inner + softmaxBlockSize - 1) / softmaxBlockSize }
    var workItems: Int { outer * blocksPerOuter }
    var grain: Int { Swift.max(1, 8_192 / Swift.max(classes * Swift.min(inner, softmaxBlockSize), 1)) }

    /// Offset of (item's outer index, class 0, block start) and the block length.
    @inline(__always)
    func block(_ item: Int) -> (offset: Int, length: Int) {
        let o = item / blocksPerOuter, start = (item % blocksPerOuter) * softmaxBlockSize
        return (o * classes * inner + start, Swift.min(softmaxBlockSize, inner - start))
    }
}

/// exp in place over one block's class rows (`length` positions each, `inner` apart): one
/// vector run when the block spans whole planes (then the rows are contiguous), else one per row.
@inline(__always)
func exponentiate(_ block: UnsafeMutablePointer<Float>, _ layout: SoftmaxLayout, length: Int) {
    if length == layout.inner {
        pc_exp(block, layout.classes * length)
    } else {
        for k in 0..<layout.classes { pc_exp(block + k * layout.inner, length) }
    }
}

/// Writes softmax (or log-softmax) of `x` along the class axis into `y`.
func softmaxForward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            _ layout: SoftmaxLayout, logarithm: Bool) {
    let classes = layout.classes, inner = layout.inner
    parallelFor(layout.workItems, grain: layout.grain) { items in
        // Running max and sum for one block of positions.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * softmaxBlockSize)
        defer { scratch.deallocate() }
        let peak = scratch, total = scratch + softmaxBlockSize
        for item in items {
            let (offset, length) = layout.block(item)
            let src = x + offset, dst = y + offset
            peak.update(from: src, count: length)
            for k in 1..<classes {
                let row = src + k * inner
                for i in 0..<length where row[i] > peak[i] { peak[i] = row[i] }
            }
            total.update(repeating: 0, count: length)
            for k in 0..<classes {
                let row = src + k * inner, out = dst + k * inner
                for i in 0..<length { out[i] = row[i] - peak[i] }
            }
            exponentiate(dst, layout, length: length)
            for k in 0..<classes {
                let out = dst + k * inner
                for i in 0..<length { total[i] += out[i] }
            }
            if logarithm {
                // log softmax = (x - max) - log(sum exp(x - max)), kept in that order: forming
                // max + log(sum) first would round to the spacing of large logits.
                for i in 0..<length { total[i] = Foundation.log(total[i]) }
                for k in 0..<classes {
                    let row = src + k * inner, out = dst + k * inner
                    for i in 0..<length { out[i] = (row[i] - peak[i]) - total[i] }
                }
            } else {
                for i in 0..<length { total[i] = 1 / total[i] }
                for k in 0..<classes {
                    let out = dst + k * inner
                    for i in 0..<length { out[i] *= total[i] }
                }
            }
        }
    }
}

/// Pullback of softmax (dx = y * (g - sum(g * y))) or log-softmax (dx = g - exp(y) * sum(g)).
private func softmaxBackward(_ y: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                             _ layout: SoftmaxLayout, logarithm: Bool) {
    let classes = layout.classes, inner = layout.inner
    parallelFor(layout.workItems, grain: layout.grain) { items in
        let total = UnsafeMutablePointer<Float>.allocate(capacity: softmaxBlockSize)
        defer { total.deallocate() }
        for item in items {
            let (offset, length) = layout.block(item)
            total.update(repeating: 0, count: length)
            for k in 0..<classes {
                let gk = g + offset + k * inner, yk = y + offset + k * inner
                if logarithm {
                    for i in 0..<length { total[i] += gk[i] }
                } else {
                    for i in 0..<length { total[i] += gk[i] * yk[i] }
                }
            }
            if logarithm {
                // dx = g - exp(y) * sum(g), with exp(y) formed in dx first.
                for k in 0..<classes { (dx + offset + k * inner).update(from: y + offset + k * inner, count: length) }
                exponentiate(dx + offset, layout, length: length)
            }
            for k in 0..<classes {
                let gk = g + offset + k * inner, yk = y + offset + k * inner, dk = dx + offset + k * inner
                if logarithm {
                    for i in 0..<length { dk[i] = gk[i] - dk[i] * total[i] }
                } else {
                    for i in 0..<length { dk[i] = yk[i] * (gk[i] - total[i]) }
                }
            }
        }
    }
}

extension Tensor {
    /// Softmax along `axis` (default 1, the class / channel axis of [N, C] and [N, C, H, W]); same shape.
    public func softmax(axis: Int = 1) -> Tensor {
        let layout = SoftmaxLayout(shape, axis: axis, name: "softmax")
        let out = Tensor.uninitialized(shape)
        softmaxForward(pointer, out.pointer, layout, logarithm: false)
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(out.shape)
            softmaxBackward(out.pointer, g.pointer, dx.pointer, layout, logarithm: false)
            return [dx]
        }
    }

    /// Log-softmax along `axis` (default 1), computed as x - max - log(sum(exp(x - max))); same shape.
    public func logSoftmax(axis: Int = 1) -> Tensor {
        let layout = SoftmaxLayout(shape, axis: axis, name: "logSoftmax")
        let out = Tensor.uninitialized(shape)
        softmaxForward(pointer, out.pointer, layout, logarithm: true)
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(out.shape)
            softmaxBackward(out.pointer, g.pointer, dx.pointer, layout, logarithm: true)
            return [dx]
        }
    }
}
