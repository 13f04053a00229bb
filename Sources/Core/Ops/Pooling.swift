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

/// Sum of `count` floats with eight lanes in a fixed order: vectorised yet deterministic.
@inline(__always)
private func laneSum(_ p: UnsafePointer<Float>, _ count: Int) -> Float {
    let raw = UnsafeRawPointer(p)
    var lanes = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        lanes += raw.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride, as: SIMD8<Float>.self)
        i += 8
    }
    var total = lanes.sum()
    while i < count { total += p[i]; i += 1 }
    return total
}

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
                // Selects instead of branches (random data mispredicts half of them). Strict
                // comparisons, left before right and top before bottom, pick the same winner as a
                // row-major scan: the first maximum wins ties, as in PyTorch.
                let a = top[c], b = top[c + 1], p = bottom[c], q = bottom[c + 1]
                let topRight = b > a, bottomRight = q > p
                let topBest = topRight ? b : a, bottomBest = bottomRight ? q : p
                let useBottom = bottomBest > topBest
                row[ox] = useBottom ? bottomBest : topBest
                let right = useBottom ? bottomRight : topRight
                rowIndices[ox] = Int32(base + (useBottom ? w : 0) + c + (right ? 1 : 0))
            }
        } else {
            for ox in 0..<ow {
                let c = 2 * ox
                row[ox] = Swift.max(Swift.max(top[c], top[c + 1]), Swift.max(bottom[c], bottom[c + 1]))
            }
        }
    }
}

/// 2x2 stride-2 mean over pairs of rows.
private func avgPoolPairwise(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: PoolGeometry) {
    let w = geo.width, ow = geo.outWidth
    for oy in 0..<geo.outHeight {
        let top = x + 2 * oy * w, bottom = top + w
        let row = y + oy * ow
        for ox in 0..<ow {
            let c = 2 * ox
            row[ox] = 0.25 * ((top[c] + top[c + 1]) + (bottom[c] + bottom[c + 1]))
        }
    }
}

/// Max with argmax for any kernel, stride and padding; padded positions are skipped, so they
/// never win. The winner is the one a row-major scan of the window with strict comparisons
/// finds (PyTorch's ties: the first maximum), computed in two passes per output row: down the
/// window's rows for every column at once (contiguous, so vectorised), keeping each column's
/// first maximum and its flat index, then across each window's columns, where among equal
/// maxima the smaller flat index (the earlier in row-major order) wins.
private func maxPoolWithIndices(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                _ indices: UnsafeMutablePointer<Int32>, _ geo: PoolGeometry,
                                scratch: UnsafeMutablePointer<Float>, scratchIndices: UnsafeMutablePointer<Int32>) {
    let w = geo.width
    let lanes = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
    for oy in 0..<geo.outHeight {
        let (y0, y1) = geo.clipped(oy * geo.stride - geo.padding, geo.height)
        var ix = 0
        while ix + 8 <= w {
            var best = SIMD8<Float>(repeating: -.infinity)
            var at = SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: y0 * w + ix)) &+ lanes
            for iy in y0..<y1 {
                let v = UnsafeRawPointer(x + iy * w + ix).loadUnaligned(as: SIMD8<Float>.self)
                let better = v .> best
                best.replace(with: v, where: better)
                at.replace(with: SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: iy * w + ix)) &+ lanes, where: better)
            }
            UnsafeMutableRawPointer(scratch + ix).storeBytes(of: best, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(scratchIndices + ix).storeBytes(of: at, as: SIMD8<Int32>.self)
            ix += 8
        }
        for ix in ix..<w {
            var best = -Float.infinity, at = Int32(truncatingIfNeeded: y0 * w + ix)
            for iy in y0..<y1 {
                let v = x[iy * w + ix], better = v > best
                best = better ? v : best
                at = better ? Int32(truncatingIfNeeded: iy * w + ix) : at
            }
            scratch[ix] = best
            scratchIndices[ix] = at
        }
        let (row, rowIndices) = (y + oy * geo.outWidth, indices + oy * geo.outWidth)
        func reduceColumns(_ ox: Int) {
            let (x0, x1) = geo.clipped(ox * geo.stride - geo.padding, w)
            var best = scratch[x0], at = scratchIndices[x0]
            for ix in (x0 + 1)..<x1 {
                let v = scratch[ix], i = scratchIndices[ix]
                let better = v > best || (v == best && i < at)
                best = better ? v : best
                at = better ? i : at
            }
            row[ox] = best
            rowIndices[ox] = at
        }
        forColumnWindows(geo, single: reduceColumns) { ox, start in
            // reduceColumns's comparisons, lane by lane.
            var best = lanes8(scratch + start, stride: geo.stride), at = lanes8(scratchIndices + start, stride: geo.stride)
            for j in 1..<geo.kernel {
                let v = lanes8(scratch + start + j, stride: geo.stride)
                let i = lanes8(scratchIndices + start + j, stride: geo.stride)
                let better = (v .> best) .| ((v .== best) .& (i .< at))
                best.replace(with: v, where: better)
                at.replace(with: i, where: better)
            }
            UnsafeMutableRawPointer(row + ox).storeBytes(of: best, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(rowIndices + ox).storeBytes(of: at, as: SIMD8<Int32>.self)
        }
    }
}

/// The outputs of one row of a pooling's column pass: windows that lie inside the plane go
/// eight at a time to `eight` (with the first one's starting column) for strides 1 and 2
/// (ResNet's 3x3/2 stem pool); the windows the plane's edges clip, and every window at larger
/// strides, go one by one to `single`. One by one, the max pools' scalar loops mispredicted
/// their branches on every other window (perf, W5 training at two threads: 2.5% of the step
/// in the tracked max pool, 0.9% after; W5 inference: 3.4% in the untracked one).
@inline(__always)
private func forColumnWindows(_ geo: PoolGeometry, single: (Int) -> Void, eight: (_ ox: Int, _ start: Int) -> Void) {
    let first = (geo.padding + geo.stride - 1) / geo.stride
    let end = (geo.width + geo.padding - geo.kernel) / geo.stride + 1  // past the last whole window
    var ox = 0
    while ox < min(first, geo.outWidth) { single(ox); ox += 1 }  // wide windows on narrow planes: all clipped
    assert(ox <= geo.outWidth, "pool column pass ran past the row")
    if geo.stride <= 2 {
        while ox + 8 <= end { eight(ox, ox * geo.stride - geo.padding); ox += 8 }
    }
    while ox < geo.outWidth { single(ox); ox += 1 }
}

/// p[stride * k] for k < 8, stride 1 or 2; with stride 2 it reads 16 values, so p[15] must be
/// addressable (the pools' scratch rows have 16 values to spare).
@inline(__always)
private func lanes8<T: SIMDScalar>(_ p: UnsafePointer<T>, stride: Int) -> SIMD8<T> {
    assert(stride == 1 || stride == 2, "lanes8 takes strides 1 and 2")
    let raw = UnsafeRawPointer(p)
    return stride == 1 ? raw.loadUnaligned(as: SIMD8<T>.self) : raw.loadUnaligned(as: SIMD16<T>.self).evenHalf
}

/// Max (or sum times `scale`) over every window of one plane in two passes: the window's rows
/// are first reduced into `scratch` (one input row wide, contiguous and vectorisable), then each
/// output reduces its columns of `scratch`. Windows are clipped to the plane, which for the sum
/// equals adding padded zeros.
private func separablePool(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ geo: PoolGeometry,
                           scratch: UnsafeMutablePointer<Float>, maximum: Bool, scale: Float) {
    let w = geo.width
    for oy in 0..<geo.outHeight {
        let (y0, y1) = geo.clipped(oy * geo.stride - geo.padding, geo.height)
        scratch.update(from: x + y0 * w, count: w)
        for iy in (y0 + 1)..<y1 {
            let row = x + iy * w
            if maximum {
                for ix in 0..<w { scratch[ix] = Swift.max(scratch[ix], row[ix]) }
            } else {
                for ix in 0..<w { scratch[ix] += row[ix] }
            }
        }
        let out = y + oy * geo.outWidth
        func reduceColumns(_ ox: Int) {
            let (x0, x1) = geo.clipped(ox * geo.stride - geo.padding, w)
            var value = scratch[x0]
            if maximum {
                for ix in (x0 + 1)..<x1 { value = Swift.max(value, scratch[ix]) }
                out[ox] = value
            } else {
                for ix in (x0 + 1)..<x1 { value += scratch[ix] }
                out[ox] = value * scale
            }
        }
        forColumnWindows(geo, single: reduceColumns) { ox, start in
            // reduceColumns's operations in its order, lane by lane.
            var value = lanes8(scratch + start, stride: geo.stride)
            for j in 1..<geo.kernel {
                let v = lanes8(scratch + start + j, stride: geo.stride)
                if maximum { value.replace(with: v, where: v .>= value) } else { value += v }  // Swift.max: the later when equal
            }
            if !maximum { value *= scale }
            UnsafeMutableRawPointer(out + ox).storeBytes(of: value, as: SIMD8<Float>.self)
        }
    }
}

extension Tensor {
    /// Max pooling: [N, C, H, W] -> [N, C, Ho, Wo], Ho = (H + 2 padding - kernel) / stride + 1.
    ///
    /// Stride defaults to kernel; padding (at most kernel / 2, as in PyTorch) never wins.
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
            // 16 to spare past the row for `lanes8`, set so no read is of uninitialised memory.
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: geo.width + 16)
            let scratchIndices = UnsafeMutablePointer<Int32>.allocate(capacity: geo.width + 16)
            (scratch + geo.width).initialize(repeating: 0, count: 16)
            (scratchIndices + geo.width).initialize(repeating: 0, count: 16)
            defer { scratch.deallocate(); scratchIndices.deallocate() }
            for plane in planes {
                let src = x + plane * geo.planeSize, dst = y + plane * geo.outPlaneSize
                let at = indices.map { $0.pointer + plane * geo.outPlaneSize }
                if geo.isPairwise {
                    maxPoolPairwise(src, dst, at, geo)
                } else if let at {
                    maxPoolWithIndices(src, dst, at, geo, scratch: scratch, scratchIndices: scratchIndices)
                } else {
                    separablePool(src, dst, geo, scratch: scratch, maximum: true, scale: 1)
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

    /// Average pooling: [N, C, H, W] -> [N, C, Ho, Wo], Ho = (H + 2 padding - kernel) / stride + 1.
    ///
    /// Padded zeros count in the divisor (kernel * kernel), like PyTorch's default
    /// count_include_pad = true; stride defaults to kernel.
    public func avgPool2D(kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
        let stride = stride ?? kernel
        checkPooling("avgPool2D", shape, kernel: kernel, stride: stride, padding: padding)
        let (n, c) = (shape[0], shape[1])
        let geo = PoolGeometry(height: shape[2], width: shape[3], kernel: kernel, stride: stride, padding: padding)
        let out = Tensor.uninitialized([n, c, geo.outHeight, geo.outWidth])
        let scale = 1 / Float(kernel * kernel)
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: planeGrain(geo.planeSize)) { planes in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: geo.width + 16)  // 16 to spare for `lanes8`
            (scratch + geo.width).initialize(repeating: 0, count: 16)
            defer { scratch.deallocate() }
            for plane in planes {
                let src = x + plane * geo.planeSize, dst = y + plane * geo.outPlaneSize
                if geo.isPairwise {
                    avgPoolPairwise(src, dst, geo)
                } else {
                    separablePool(src, dst, geo, scratch: scratch, maximum: false, scale: scale)
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
                y[plane] = laneSum(x + plane * planeSize, planeSize) * scale
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

    /// Global max pooling: [N, C, H, W] -> [N, C], the largest value of each plane (the first
    /// one on ties); the gradient goes to that position only.
    public func globalMaxPool() -> Tensor {
        checkShape(rank == 4, "globalMaxPool: input \(shape) is not NCHW")
        let (n, c) = (shape[0], shape[1])
        let planeSize = shape[2] * shape[3]
        checkShape(planeSize > 0, "globalMaxPool: empty planes in \(shape)")
        let out = Tensor.uninitialized([n, c])
        var argmax = [Int32](repeating: 0, count: n * c)
        let x = pointer, y = out.pointer
        argmax.withUnsafeMutableBufferPointer { best in
            let best = best.baseAddress!
            parallelFor(n * c, grain: planeGrain(planeSize)) { planes in
                for plane in planes {
                    let p = x + plane * planeSize
                    var index = 0
                    for i in 1..<planeSize where p[i] > p[index] { index = i }
                    best[plane] = Int32(index)
                    y[plane] = p[index]
                }
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.zeros(inputShape)
            for plane in 0..<(n * c) { dx.pointer[plane * planeSize + Int(argmax[plane])] = g.pointer[plane] }
            return [dx]
        }
    }
}
