import Foundation

// Spatial resizing of NCHW planes. Pullbacks scatter each output gradient back to the input
// pixels it was read from; planes are independent, so the scatter needs no synchronisation.

/// For each output coordinate along one axis: the two input neighbours and the weight of the
/// upper one, with PyTorch's align_corners = false sampling; `nearest` takes the one input pixel
/// whose span holds the output pixel's centre (PIL's nearest, PyTorch's nearest-exact), weight 0.
private final class LinearSampling {
    let count: Int
    let lower: UnsafeMutablePointer<Int>
    let upper: UnsafeMutablePointer<Int>
    let upperWeight: UnsafeMutablePointer<Float>

    init(inputSize: Int, outputSize: Int, nearest: Bool = false) {
        count = outputSize
        lower = .allocate(capacity: Swift.max(outputSize, 1))
        upper = .allocate(capacity: Swift.max(outputSize, 1))
        upperWeight = .allocate(capacity: Swift.max(outputSize, 1))
        let scale = Float(inputSize) / Float(outputSize)
        for o in 0..<outputSize {
            if nearest {
                let i = Swift.min(Int(scale * (Float(o) + 0.5)), inputSize - 1)
                lower[o] = i; upper[o] = i; upperWeight[o] = 0
                continue
            }
            // Pixel centres line up: source = (o + 0.5) * in / out - 0.5, clamped at the left edge.
            let source = Swift.max(scale * (Float(o) + 0.5) - 0.5, 0)
            let i0 = Swift.min(Int(source), inputSize - 1)
            lower[o] = i0
            upper[o] = i0 < inputSize - 1 ? i0 + 1 : i0
            upperWeight[o] = source - Float(i0)
        }
    }

    deinit {
        lower.deallocate(); upper.deallocate(); upperWeight.deallocate()
    }
}

private func resizeGrain(_ planeSize: Int) -> Int { Swift.max(1, 16_384 / Swift.max(planeSize, 1)) }

extension Tensor {
    /// Bilinear resize (PyTorch align_corners = false): [N, C, H, W] -> [N, C, height, width].
    public func resizedBilinear(height: Int, width: Int) -> Tensor {
        checkShape(rank == 4 && shape[2] > 0 && shape[3] > 0, "resizedBilinear: input \(shape) is not a non-empty NCHW tensor")
        checkShape(height >= 1 && width >= 1, "resizedBilinear: target \(height)x\(width) for input \(shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let rows = LinearSampling(inputSize: h, outputSize: height)
        let columns = LinearSampling(inputSize: w, outputSize: width)
        let out = Tensor.uninitialized([n, c, height, width])
        let inPlane = h * w, outPlane = height * width
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: resizeGrain(outPlane)) { planes in
            for plane in planes {
                let src = x + plane * inPlane, dst = y + plane * outPlane
                for oy in 0..<height {
                    let top = src + rows.lower[oy] * w, bottom = src + rows.upper[oy] * w
                    let wy = rows.upperWeight[oy], wy0 = 1 - wy
                    let row = dst + oy * width
                    for ox in 0..<width {
                        let a = columns.lower[ox], b = columns.upper[ox]
                        let wx = columns.upperWeight[ox], wx0 = 1 - wx
                        row[ox] = wy0 * (wx0 * top[a] + wx * top[b]) + wy * (wx0 * bottom[a] + wx * bottom[b])
                    }
                }
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.zeros(inputShape)
            let gp = g.pointer, d = dx.pointer
            parallelFor(n * c, grain: resizeGrain(outPlane)) { planes in
                for plane in planes {
                    let src = gp + plane * outPlane, dst = d + plane * inPlane
                    for oy in 0..<height {
                        let top = dst + rows.lower[oy] * w, bottom = dst + rows.upper[oy] * w
                        let wy = rows.upperWeight[oy], wy0 = 1 - wy
                        let row = src + oy * width
                        for ox in 0..<width {
                            let a = columns.lower[ox], b = columns.upper[ox]
                            let wx = columns.upperWeight[ox], wx0 = 1 - wx
                            let upperShare = wy * row[ox], lowerShare = wy0 * row[ox]
                            top[a] += wx0 * lowerShare
                            top[b] += wx * lowerShare
                            bottom[a] += wx0 * upperShare
                            bottom[b] += wx * upperShare
                        }
                    }
                }
            }
            return [dx]
        }
    }

    /// A `size` x `size` window of this image resized bilinearly to `height` x `width` (exactly the
    /// pixels `resizedBilinear(height:width:)` gives there), with its top-left corner at (`left`,
    /// `top`) of the resized image; window pixels outside it take `background[c]`. [1, C, H, W]
    /// -> [1, C, size, size]. For window crops of an image pyramid; it records no gradient.
    /// `nearest` samples nearest-neighbour instead (the pixel whose span holds each centre).
    public func resizedBilinearWindow(height: Int, width: Int, left: Int, top: Int, size: Int, background: [Float],
                                      nearest: Bool = false) -> Tensor {
        checkShape(rank == 4 && shape[0] == 1 && shape[2] > 0 && shape[3] > 0 && background.count == shape[1],
                   "resizedBilinearWindow: input \(shape) with \(background.count) background values")
        precondition(!isTracked, "resizedBilinearWindow is for inference and records no gradient")
        let (c, h, w) = (shape[1], shape[2], shape[3])
        let rows = LinearSampling(inputSize: h, outputSize: height, nearest: nearest)
        let columns = LinearSampling(inputSize: w, outputSize: width, nearest: nearest)
        let out = Tensor.uninitialized([1, c, size, size])
        for channel in 0..<c {
            let src = pointer + channel * h * w, dst = out.pointer + channel * size * size
            for wy in 0..<size {
                let oy = top + wy
                let row = dst + wy * size
                guard oy >= 0 && oy < height else { row.update(repeating: background[channel], count: size); continue }
                let topRow = src + rows.lower[oy] * w, bottomRow = src + rows.upper[oy] * w
                let wy1 = rows.upperWeight[oy], wy0 = 1 - wy1
                for wx in 0..<size {
                    let ox = left + wx
                    guard ox >= 0 && ox < width else { row[wx] = background[channel]; continue }
                    let a = columns.lower[ox], b = columns.upper[ox]
                    let wx1 = columns.upperWeight[ox], wx0 = 1 - wx1
                    row[wx] = wy0 * (wx0 * topRow[a] + wx1 * topRow[b]) + wy1 * (wx0 * bottomRow[a] + wx1 * bottomRow[b])
                }
            }
        }
        return out
    }

    /// Bilinear upsampling by an integer factor (align_corners = false): [N, C, H, W] -> [N, C, H * scale, W * scale].
    public func upsampleBilinear(scale: Int) -> Tensor {
        checkShape(rank == 4 && scale >= 1, "upsampleBilinear: input \(shape), scale \(scale)")
        return resizedBilinear(height: shape[2] * scale, width: shape[3] * scale)
    }

    /// Nearest-neighbour upsampling by an integer factor: [N, C, H, W] -> [N, C, H * scale, W * scale].
    public func upsampleNearest(scale: Int) -> Tensor {
        checkShape(rank == 4 && scale >= 1, "upsampleNearest: input \(shape), scale \(scale)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (height, width) = (h * scale, w * scale)
        let out = Tensor.uninitialized([n, c, height, width])
        let inPlane = h * w, outPlane = height * width
        let x = pointer, y = out.pointer
        parallelFor(n * c, grain: resizeGrain(outPlane)) { planes in
            for plane in planes {
                let src = x + plane * inPlane, dst = y + plane * outPlane
                for iy in 0..<h {
                    // Widen one input row, then copy it to the remaining rows of its block.
                    let first = dst + iy * scale * width, row = src + iy * w
                    for ix in 0..<w { (first + ix * scale).update(repeating: row[ix], count: scale) }
                    for r in 1..<scale { (first + r * width).update(from: first, count: width) }
                }
            }
        }
        let inputShape = shape
        return Tensor.record(out, inputs: [self]) { g in
            let dx = Tensor.uninitialized(inputShape)
            let gp = g.pointer, d = dx.pointer
            parallelFor(n * c, grain: resizeGrain(outPlane)) { planes in
                for plane in planes {
                    let src = gp + plane * outPlane, dst = d + plane * inPlane
                    for iy in 0..<h {
                        let row = dst + iy * w
                        row.update(repeating: 0, count: w)
                        for r in 0..<scale {
                            let block = src + (iy * scale + r) * width
                            for ix in 0..<w {
                                var total: Float = 0
                                for s in 0..<scale { total += block[ix * scale + s] }
                                row[ix] += total
                            }
                        }
                    }
                }
            }
            return [dx]
        }
    }
}
