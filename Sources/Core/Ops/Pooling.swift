import Foundation

// Spatial pooling over NCHW planes. Every plane is independent, so the kernels split work over
// batch * channel planes and need no cross-thread reductions.

/// Window sizes of one pooling op over a single plane.
private struct PoolGeometry {
    let height: Int, width: Int
    let kernel: Int, stride: Int, padding: Int
    let outHeight: Int, outWidth: Int

    init(height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
        self.height = height; self.width = width
        self.kernel = kernel; self.stride = stride; self.padding = padding
        outHeight = (height + 2 * padding - kernel) / stride + 1
        outWidth = (width + 2 * padding - kernel) / stride + 1
    }

    var planeSize: Int { height * width }
    var outPlaneSize: Int { outHeight * outWidth }
    /// The layout that dominates CNN inference and gets its own loop.
    var isPairwise: Bool { kernel == 2 && stride == 2 && padding == 0 }

    /// Clips the window starting at `start` (in padded coordinates) to [0, size).
    @inline(__always)
    func clipped(_ start: Int, _ size: Int) -> (Int, Int) {
        (Swift.max(start, 0), Swift.min(start + kernel, size))
    }
}

/// Argmax positions (flat index inside a plane) that a tracked max pool keeps for its pullback.
private final class IndexBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Int32>
    init(count: Int) { pointer = .allocate(capacity: Swift.max(count, 1)) }
    deinit { pointer.deallocate() }
}

/// Planes per parallel chunk, so that tiny planes are not handed out one by one.
@inline(__always)
private func planeGrain(_ planeSize: Int) -> Int { Swift.max(1, 16_384 / Swift.max(planeSize, 1)) }

private func checkPooling(_ name: String, _ shape: [Int], kernel: Int, stride: Int, padding: Int) {
    checkShape(shape.count == 4, "\(name): input \(shape) is not NCHW")
    checkShape(kernel >= 1 && stride >= 1 && padding >= 0 && padding <= kernel / 2,
               "\(name): kernel \(kernel), stride \(stride), padding \(padding) (padding must be at most kernel / 2)")
    checkShape(shape[2] + 2 * padding >= kernel && shape[3] + 2 * padding >= kernel,
               "\(name): kernel \(kernel) with padding \(padding) does not fit input \(shape)")
    checkShape(shape[2] * shape[3] <= Int(Int32.max), "\(name): plane of \(shape) too large for Int32 indices")
}

/// 2x2 stride-2 max over pairs of rows; `indices` (when given) receive the winning positions.
private func maxPoolPairwise(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                             _ indices: UnsafeMutablePointer<Int32>?, _ geo: PoolGeometry) {
    let w = geo.width, ow = geo.outWidth
    for oy in 0..<geo.outHeight {
        let top = x + 2 * oy * w, bottom = top + w
        let row = y + oy * ow
        if let indices {
            let rowIndices = indices + oy * ow
            let base = 2 * oy * w
            for ox in 0..<ow {
                let c = 2 * ox
                // Strict comparisons in scan order: the first maximum wins ties, as in PyTorch.
                var best = top[c], at = c
                if top[c + 1] > best { best = top[c + 1]; at = c + 1 }
                if bottom[c] > best { best = bottom[c]; at = w + c }
                if bottom[c + 1] > best { best = bottom[c + 1]; at = w + c + 1 }
                row[ox] = best
                rowIndices[ox] = Int32(base + at)
            }
        } else {
            for ox in 0..<ow {
                let c = 2 * ox
                row[ox] = Swift.max(Swift.max(top[c], top[c + 1]), Swift.max(bottom[c], bottom[c + 1]))
            }
        }
    }
}

/// Any kernel, stride and padding; padded positions never win because they are skipped.
private func maxPoolGeneral(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            _ indices: UnsafeMutablePointer<Int32>?, _ geo: PoolGeometry) {
    for oy in 0..<geo.outHeight {
        let (y0, y1) = geo.clipped(oy * geo.stride - geo.padding, geo.height)
        for ox in 0..<geo.outWidth {
            let (x0, x1) = geo.clipped(ox * geo.stride - geo.padding, geo.width)
            var best = -Float.infinity, at = y0 * geo.width + x0
            for iy in y0..<y1 {
                let row = x + iy * geo.width
                for ix in x0..<x1 where row[ix] > best {
                    best = row[ix]; at = iy * geo.width + ix
                }
            }
            y[oy * geo.outWidth + ox] = best
            indices?[oy * geo.outWidth + ox] = Int32(at)
        }
    }
}

extension Tensor {
    /// Max pooling: [N, C, H, W] -> [N, C, Ho, Wo], Ho = (H + 2 padding - kernel) / stride + 1
    /// (stride defaults to kernel; padding, at most kernel / 2, never wins).
    public func maxPool2D(kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        let stride = stride ?? kernel
        checkPooling("maxPool2D", shape, kernel: kernel, stride: stride, padding: padding)
        let (n, c) = (shape[0], shape[1])
        let geo = PoolGeometry(height: shape[2], width: shape[3], kernel: kernel, stride: stride, padding: padding)
        let out = Tensor.uninitialized([n, c, geo.outHeight, geo.outWidth])
        // Inference needs no argmax, which keeps the common 2x2 loop branch-free.
        let indices = isTracked ? IndexBuffer(count: out.count) : nil
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: planeGrain(geo.planeSize)) { planes in
            for plane in planes {
                let src = x + plane * geo.planeSize, dst = y + plane * geo.outPlaneSize
                let at = indices.map { $0.pointer + plane * geo.outPlaneSize }
                if geo.isPairwise {
                    maxPoolPairwise(src, dst, at, geo)
                } else {
                    maxPoolGeneral(src, dst, at, geo)
                }
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            guard let indices else { return [nil] }
            let dx = Tensor.zeros(inputShape)
            let gp = g.pointer, d = dx.pointer
            parallelFor(n * c, grain: planeGrain(geo.planeSize)) { planes in
                for plane in planes {
                    let src = gp + plane * geo.outPlaneSize, dst = d + plane * geo.planeSize
                    let at = indices.pointer + plane * geo.outPlaneSize
                    for j in 0..<geo.outPlaneSize { dst[Int(at[j])] += src[j] }
                }
            }
            return [dx]
        }
    }

    /// Average pooling: [N, C, H, W] -> [N, C, Ho, Wo] as `maxPool2D`; padded zeros count in
    /// the divisor (kernel * kernel), like PyTorch's default count_include_pad = true.
    public func avgPool2D(kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        let stride = stride ?? kernel
        checkPooling("avgPool2D", shape, kernel: kernel, stride: stride, padding: padding)
        let (n, c) = (shape[0], shape[1])
        let geo = PoolGeometry(height: shape[2], width: shape[3], kernel: kernel, stride: stride, padding: padding)
        let out = Tensor.uninitialized([n, c, geo.outHeight, geo.outWidth])
        let scale = 1 / Float(kernel * kernel)
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: planeGrain(geo.planeSize)) { planes in
            for plane in planes {
                let src = x + plane * geo.planeSize, dst = y + plane * geo.outPlaneSize
                for oy in 0..<geo.outHeight {
                    let (y0, y1) = geo.clipped(oy * stride - padding, geo.height)
                    for ox in 0..<geo.outWidth {
                        let (x0, x1) = geo.clipped(ox * stride - padding, geo.width)
                        var total: Float = 0
                        for iy in y0..<y1 {
                            let row = src + iy * geo.width
                            for ix in x0..<x1 { total += row[ix] }
                        }
                        dst[oy * geo.outWidth + ox] = total * scale
                    }
                }
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.zeros(inputShape)
            let gp = g.pointer, d = dx.pointer
            parallelFor(n * c, grain: planeGrain(geo.planeSize)) { planes in
                for plane in planes {
                    let src = gp + plane * geo.outPlaneSize, dst = d + plane * geo.planeSize
                    for oy in 0..<geo.outHeight {
                        let (y0, y1) = geo.clipped(oy * stride - padding, geo.height)
                        for ox in 0..<geo.outWidth {
                            let (x0, x1) = geo.clipped(ox * stride - padding, geo.width)
                            let share = src[oy * geo.outWidth + ox] * scale
                            for iy in y0..<y1 {
                                let row = dst + iy * geo.width
                                for ix in x0..<x1 { row[ix] += share }
                            }
                        }
                    }
                }
            }
            return [dx]
        }
    }

    /// Mean over each plane: [N, C, H, W] -> [N, C].
    public func globalAveragePool() -> Tensor {
        checkShape(rank == 4, "globalAveragePool: input \(shape) is not NCHW")
        let (n, c) = (shape[0], shape[1])
        let planeSize = shape[2] * shape[3]
        checkShape(planeSize > 0, "globalAveragePool: empty planes in \(shape)")
        let out = Tensor.uninitialized([n, c])
        let scale = 1 / Float(planeSize)
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: planeGrain(planeSize)) { planes in
            for plane in planes {
                let src = x + plane * planeSize
                var total: Float = 0
                for i in 0..<planeSize { total += src[i] }
                y[plane] = total * scale
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(inputShape)
            let gp = g.pointer, d = dx.pointer
            parallelFor(n * c, grain: planeGrain(planeSize)) { planes in
                for plane in planes {
                    (d + plane * planeSize).update(repeating: gp[plane] * scale, count: planeSize)
                }
            }
            return [dx]
        }
    }
}
