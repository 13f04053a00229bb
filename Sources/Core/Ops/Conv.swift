import Foundation

/// Sizes of one 2-D convolution: an "image" side [channels, height, width] sampled by a
/// kernel at output positions [outHeight, outWidth]. Transposed convolution uses the same
/// geometry with the roles of input and output exchanged.
@usableFromInline
struct ConvGeometry {
    let channels: Int, height: Int, width: Int
    let kernelH: Int, kernelW: Int
    let stride: Int, padding: Int
    let outHeight: Int, outWidth: Int

    init(channels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int, stride: Int, padding: Int,
         outHeight: Int? = nil, outWidth: Int? = nil) {
        self.channels = channels; self.height = height; self.width = width
        self.kernelH = kernelH; self.kernelW = kernelW
        self.stride = stride; self.padding = padding
        self.outHeight = outHeight ?? (height + 2 * padding - kernelH) / stride + 1
        self.outWidth = outWidth ?? (width + 2 * padding - kernelW) / stride + 1
    }

    /// Rows of the column matrix: channels * kernelH * kernelW.
    var patchSize: Int { channels * kernelH * kernelW }
    var outPixels: Int { outHeight * outWidth }
    var imagePixels: Int { height * width }
    /// 1x1, stride 1, no padding: the image already is the column matrix.
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }

    /// Output columns [ox0, ox1) whose input column `ox * stride - padding + kx` lies inside.
    @inline(__always)
    func validColumns(_ kx: Int) -> (Int, Int) {
        let shift = kx - padding
        var lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride
        var hi = width - shift <= 0 ? 0 : (width - shift + stride - 1) / stride
        lo = min(lo, outWidth); hi = min(max(hi, lo), outWidth)
        return (lo, hi)
    }

    /// Writes the column matrix of `image` ([channels, height, width]) into `col`, whose rows
    /// are `ld` floats apart (so several images can sit side by side in one matrix).
    func im2col(_ image: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, ld: Int) {
        for c in 0..<channels {
            let plane = image + c * imagePixels
            for ky in 0..<kernelH {
                for kx in 0..<kernelW {
                    let row = col + ((c * kernelH + ky) * kernelW + kx) * ld
                    let (lo, hi) = validColumns(kx)
                    for oy in 0..<outHeight {
                        let dst = row + oy * outWidth
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height || lo >= hi {
                            dst.update(repeating: 0, count: outWidth)
                            continue
                        }
                        let src = plane + iy * width + kx - padding
                        if lo > 0 { dst.update(repeating: 0, count: lo) }
                        if stride == 1 {
                            (dst + lo).update(from: src + lo, count: hi - lo)
                        } else {
                            for ox in lo..<hi { dst[ox] = src[ox * stride] }
                        }
                        if hi < outWidth { (dst + hi).update(repeating: 0, count: outWidth - hi) }
                    }
                }
            }
        }
    }

    /// Adds the column matrix `col` back into `image` (the adjoint of `im2col`).
    func col2imAdd(_ col: UnsafePointer<Float>, ld: Int, _ image: UnsafeMutablePointer<Float>) {
        for c in 0..<channels {
            let plane = image + c * imagePixels
            for ky in 0..<kernelH {
                for kx in 0..<kernelW {
                    let row = col + ((c * kernelH + ky) * kernelW + kx) * ld
                    let (lo, hi) = validColumns(kx)
                    guard lo < hi else { continue }
                    for oy in 0..<outHeight {
                        let iy = oy * stride - padding + ky
                        if iy < 0 || iy >= height { continue }
                        let src = row + oy * outWidth
                        let dst = plane + iy * width + kx - padding
                        if stride == 1 {
                            for ox in lo..<hi { dst[ox] += src[ox] }
                        } else {
                            for ox in lo..<hi { dst[ox * stride] += src[ox] }
                        }
                    }
                }
            }
        }
    }
}

/// How many images share one GEMM so that its column count reaches a efficient width.
@usableFromInline
func imagesPerGEMM(outPixels: Int, batch: Int) -> Int {
    max(1, min(batch, 512 / max(outPixels, 1)))
}

extension Tensor {
    /// 2-D convolution: [N, Cin, H, W] * weight [Cout, Cin / groups, kh, kw] (+ bias [Cout])
    /// -> [N, Cout, Ho, Wo] with Ho = (H + 2 padding - kh) / stride + 1.
    public func conv2D(_ weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                       groups: Int = 1) -> Tensor {
        checkShape(rank == 4 && weight.rank == 4, "conv2D: input \(shape), weight \(weight.shape) (expects NCHW and [Cout, Cin/groups, kh, kw])")
        let (n, cin, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (cout, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        checkShape(groups >= 1 && cin % groups == 0 && cout % groups == 0 && weight.shape[1] == cin / groups,
                   "conv2D: input \(shape) with \(groups) groups does not match weight \(weight.shape)")
        checkShape(stride >= 1 && padding >= 0 && h + 2 * padding >= kh && w + 2 * padding >= kw,
                   "conv2D: kernel \(kh)x\(kw) does not fit input \(shape) with padding \(padding)")
        if let bias { checkShape(bias.shape == [cout], "conv2D: bias \(bias.shape), expected [\(cout)]") }
        let geo = ConvGeometry(channels: cin / groups, height: h, width: w, kernelH: kh, kernelW: kw,
                               stride: stride, padding: padding)
        let plan = ConvPlan(batch: n, groups: groups, outChannels: cout, geometry: geo)
        let out = Tensor.uninitialized([n, cout, geo.outHeight, geo.outWidth])
        plan.forward(input: pointer, weight: weight.pointer, bias: bias?.pointer, output: out.pointer)

        let x = self
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record(out, inputs: inputs) { g in
            var grads: [Tensor?] = [nil, nil, nil]
            let dx = x.isTracked ? Tensor.zeros(x.shape) : nil
            let dw = weight.isTracked ? Tensor.uninitialized(weight.shape) : nil
            plan.backward(input: x.pointer, weight: weight.pointer, outputGradient: g.pointer,
                          inputGradient: dx?.pointer, weightGradient: dw?.pointer)
            grads[0] = dx
            grads[1] = dw
            if let bias, bias.isTracked { grads[2] = g.channelSums() }
            return Array(grads.prefix(inputs.count))
        }
    }

    /// Sums of an NCHW tensor over N, H and W: [C].
    public func channelSums() -> Tensor {
        let (n, c) = (shape[0], shape[1])
        let inner = count / max(n * c, 1)
        let out = Tensor.zeros([c])
        for b in 0..<n {
            for ch in 0..<c {
                let p = pointer + (b * c + ch) * inner
                var s: Float = 0
                for i in 0..<inner { s += p[i] }
                out.pointer[ch] += s
            }
        }
        return out
    }
}

/// The work of one convolution over a batch, split into GEMMs over groups of images.
struct ConvPlan {
    let batch: Int, groups: Int, outChannels: Int
    let geometry: ConvGeometry

    var inChannels: Int { geometry.channels * groups }
    var outPerGroup: Int { outChannels / groups }
    var imagesPerGroup: Int { imagesPerGEMM(outPixels: geometry.outPixels, batch: batch) }

    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) {
        let geo = geometry
        let k = geo.patchSize, p = geo.outPixels
        let per = imagesPerGroup
        let chunks = (batch + per - 1) / per
        parallelFor(chunks) { range in
            let cols = per * p
            let col = geo.isPointwise && per == 1 ? nil : TensorStorage(uninitializedCount: k * cols)
            let staging = per == 1 ? nil : TensorStorage(uninitializedCount: outPerGroup * cols)
            for chunk in range {
                let first = chunk * per, count = min(per, batch - first)
                let width = count * p
                for g in 0..<groups {
                    // Column matrix [k, count * p] of this group's input channels.
                    let b: UnsafePointer<Float>
                    if let col {
                        for i in 0..<count {
                            let image = input + ((first + i) * inChannels + g * geo.channels) * geo.imagePixels
                            if geo.isPointwise {
                                for r in 0..<k { (col.pointer + r * width + i * p).update(from: image + r * p, count: p) }
                            } else {
                                geo.im2col(image, col.pointer + i * p, ld: width)
                            }
                        }
                        b = UnsafePointer(col.pointer)
                    } else {
                        b = input + (first * inChannels + g * geo.channels) * geo.imagePixels
                    }
                    let wg = weight + g * outPerGroup * k
                    if let staging {
                        gemm(m: outPerGroup, n: width, k: k, wg, lda: k, b, ldb: width, staging.pointer, ldc: width)
                        for i in 0..<count {
                            for o in 0..<outPerGroup {
                                let dst = output + ((first + i) * outChannels + g * outPerGroup + o) * p
                                let src = staging.pointer + o * width + i * p
                                let shift = bias?[g * outPerGroup + o] ?? 0
                                for j in 0..<p { dst[j] = src[j] + shift }
                            }
                        }
                    } else {
                        let dst = output + (first * outChannels + g * outPerGroup) * p
                        if let bias {
                            for o in 0..<outPerGroup { (dst + o * p).update(repeating: bias[g * outPerGroup + o], count: p) }
                        }
                        gemm(m: outPerGroup, n: p, k: k, wg, lda: k, b, ldb: p,
                             beta: bias == nil ? 0 : 1, dst, ldc: p)
                    }
                }
            }
        }
    }

    /// Accumulates input gradients into `inputGradient` (which must start zeroed) and writes
    /// weight gradients to `weightGradient`.
    func backward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                  inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>?) {
        let geo = geometry
        let k = geo.patchSize, p = geo.outPixels
        let per = imagesPerGroup
        let chunks = (batch + per - 1) / per
        let weightCount = outChannels * k
        // Each chunk of work accumulates its own weight gradient; they are summed at the end.
        let partials = ChunkPartials(length: weightCount)
        parallelFor(chunks) { range in
            let cols = per * p
            let col = TensorStorage(uninitializedCount: k * cols)
            let gradCols = TensorStorage(uninitializedCount: outPerGroup * cols)
            let dw = weightGradient == nil ? nil : partials.make(for: range.lowerBound)
            for chunk in range {
                let first = chunk * per, count = min(per, batch - first)
                let width = count * p
                for g in 0..<groups {
                    // Gather this group's output gradient as [outPerGroup, count * p].
                    for i in 0..<count {
                        for o in 0..<outPerGroup {
                            (gradCols.pointer + o * width + i * p)
                                .update(from: outputGradient + ((first + i) * outChannels + g * outPerGroup + o) * p, count: p)
                        }
                    }
                    let wg = weight + g * outPerGroup * k
                    if let dw {
                        for i in 0..<count {
                            let image = input + ((first + i) * inChannels + g * geo.channels) * geo.imagePixels
                            if geo.isPointwise {
                                for r in 0..<k { (col.pointer + r * width + i * p).update(from: image + r * p, count: p) }
                            } else {
                                geo.im2col(image, col.pointer + i * p, ld: width)
                            }
                        }
                        // dW[o, r] += sum_j dY[o, j] * col[r, j]
                        gemm(transposeB: true, m: outPerGroup, n: k, k: width, gradCols.pointer, lda: width,
                             col.pointer, ldb: width, beta: 1, dw + g * outPerGroup * k, ldc: k)
                    }
                    if let dx = inputGradient {
                        // dCol[r, j] = sum_o W[o, r] * dY[o, j], then scattered back to pixels.
                        gemm(transposeA: true, m: k, n: width, k: outPerGroup, wg, lda: k,
                             gradCols.pointer, ldb: width, col.pointer, ldc: width)
                        for i in 0..<count {
                            let image = dx + ((first + i) * inChannels + g * geo.channels) * geo.imagePixels
                            if geo.isPointwise {
                                for r in 0..<k {
                                    let src = col.pointer + r * width + i * p, dst = image + r * p
                                    for j in 0..<p { dst[j] += src[j] }
                                }
                            } else {
                                geo.col2imAdd(col.pointer + i * p, ld: width, image)
                            }
                        }
                    }
                }
            }
        }
        if let weightGradient { partials.sum(into: weightGradient) }
    }
}

/// Per-chunk accumulators (zeroed on creation) that are summed once a parallel loop ends, in
/// chunk order, so results do not depend on which thread ran which chunk.
final class ChunkPartials: @unchecked Sendable {
    let length: Int
    private var buffers: [(key: Int, storage: TensorStorage)] = []
    private var lock = pthread_mutex_t()

    init(length: Int) { self.length = length; pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }

    func make(for key: Int) -> UnsafeMutablePointer<Float> {
        let storage = TensorStorage(zeros: length)
        pthread_mutex_lock(&lock)
        buffers.append((key, storage))
        pthread_mutex_unlock(&lock)
        return storage.pointer
    }

    func sum(into destination: UnsafeMutablePointer<Float>) {
        destination.update(repeating: 0, count: length)
        for b in buffers.sorted(by: { $0.key < $1.key }) {
            let src = b.storage.pointer
            for i in 0..<length { destination[i] += src[i] }
        }
    }
}
