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

    /// Output rows [oy0, oy1) whose input row `oy * stride - padding + ky` lies inside.
    @inline(__always)
    func validRows(_ ky: Int) -> (Int, Int) {
        let shift = ky - padding
        var lo = shift >= 0 ? 0 : (-shift + stride - 1) / stride
        var hi = height - shift <= 0 ? 0 : (height - shift + stride - 1) / stride
        lo = min(lo, outHeight); hi = min(max(hi, lo), outHeight)
        return (lo, hi)
    }

    /// Stride 1 with output as wide as the input ("same" convolutions): each kernel tap is a
    /// shifted copy of the whole plane, so rows need not be handled one at a time.
    var isContiguousShift: Bool { stride == 1 && outWidth == width }

    /// Tiles of at most this many output pixels gather their rows through a table
    /// (`withSourceTable`): on 4x4 planes (ResNet-18's last stage at 128 pixels) the row-by-row
    /// code spent its time on bounds, not copies (perf, W5 training at two threads: im2col 4.4%
    /// of the samples).
    static let smallTile = 64

    /// Calls `body` with, for each kernel tap and each output pixel of `pixels`, the offset in
    /// an input plane that the pixel reads at that tap, or -1 where it falls on padding:
    /// [kernelH * kernelW][pixels.count], taps row-major.
    func withSourceTable(_ pixels: Range<Int>, _ body: (UnsafePointer<Int32>) -> Void) {
        let n = pixels.count
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: kernelH * kernelW * n) { table in
            for ky in 0..<kernelH {
                for kx in 0..<kernelW {
                    for (j, d) in pixels.enumerated() {
                        let iy = (d / outWidth) * stride - padding + ky, ix = (d % outWidth) * stride - padding + kx
                        let inside = iy >= 0 && iy < height && ix >= 0 && ix < width
                        table[(ky * kernelW + kx) * n + j] = inside ? Int32(iy * width + ix) : -1
                    }
                }
            }
            body(UnsafePointer(table.baseAddress!))
        }
    }

    /// The small-tile loops of `im2col` and `col2imAdd`: `body(planeOffset, row, sources)` for
    /// each channel and kernel tap, in that order, with the tap's row of `col` and its
    /// `pixels.count` entries of the source table.
    private func forEachTapRow(_ pixels: Range<Int>, col: UnsafeMutablePointer<Float>, ld: Int,
                               _ body: (Int, UnsafeMutablePointer<Float>, UnsafePointer<Int32>) -> Void) {
        withSourceTable(pixels) { table in
            let taps = kernelH * kernelW
            for c in 0..<channels {
                for tap in 0..<taps { body(c * imagePixels, col + (c * taps + tap) * ld, table + tap * pixels.count) }
            }
        }
    }

    /// Writes the column matrix of `image` ([channels, height, width]) for the output pixels
    /// `pixels` into `col`: column j holds pixel `pixels.lowerBound + j`, rows are `ld` floats
    /// apart (so a tile of pixels, or several images side by side, form one GEMM operand).
    func im2col(_ image: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, ld: Int,
                pixels: Range<Int>? = nil) {
        let (t0, t1) = pixels.map { ($0.lowerBound, $0.upperBound) } ?? (0, outPixels)
        if t1 - t0 <= Self.smallTile {
            forEachTapRow(t0..<t1, col: col, ld: ld) { offset, row, sources in
                let plane = image + offset
                for j in 0..<(t1 - t0) { row[j] = sources[j] >= 0 ? plane[Int(sources[j])] : 0 }
            }
            return
        }
        for c in 0..<channels {
            let plane = image + c * imagePixels
            for ky in 0..<kernelH {
                let (oy0, oy1) = validRows(ky)
                for kx in 0..<kernelW {
                    // row[d] is output pixel d, for d in t0..<t1.
                    let row = col + ((c * kernelH + ky) * kernelW + kx) * ld - t0
                    let (lo, hi) = validColumns(kx)
                    let first = max(oy0 * outWidth + lo, t0), last = min((oy1 - 1) * outWidth + hi, t1)
                    if oy0 >= oy1 || lo >= hi || first >= last {
                        (row + t0).update(repeating: 0, count: t1 - t0)
                        continue
                    }
                    if first > t0 { (row + t0).update(repeating: 0, count: first - t0) }
                    if last < t1 { (row + last).update(repeating: 0, count: t1 - last) }
                    if isContiguousShift {
                        // row[d] = plane[d + offset] over [first, last): every read lies inside
                        // the plane. Then blank the padded columns the copy ran over.
                        let offset = (ky - padding) * width + (kx - padding)
                        (row + first).update(from: plane + first + offset, count: last - first)
                        if lo > 0 || hi < outWidth {
                            for oy in (first / outWidth)...((last - 1) / outWidth) {
                                let base = oy * outWidth
                                for ox in 0..<lo where base + ox >= first && base + ox < last { row[base + ox] = 0 }
                                for ox in hi..<outWidth where base + ox >= first && base + ox < last { row[base + ox] = 0 }
                            }
                        }
                        continue
                    }
                    for oy in (first / outWidth)...((last - 1) / outWidth) {
                        let base = oy * outWidth
                        let a = max(first - base, 0), b = min(last - base, outWidth)
                        let dst = row + base
                        let src = plane + (oy * stride - padding + ky) * width + kx - padding
                        for ox in a..<max(a, min(lo, b)) { dst[ox] = 0 }
                        let c0 = max(a, lo), c1 = max(min(hi, b), c0)
                        if stride == 2 {
                            gatherEven(src + 2 * c0, into: dst + c0, count: c1 - c0)
                        } else {
                            for ox in c0..<c1 { dst[ox] = src[ox * stride] }
                        }
                        for ox in max(a, hi)..<max(b, max(a, hi)) { dst[ox] = 0 }
                    }
                }
            }
        }
    }

    /// Adds the column matrix `col` (laid out as `im2col` writes it) back into `image`: the
    /// adjoint of `im2col`. `col` is scratch: tiles of more than `smallTile` pixels zero its
    /// entries that fall on padding.
    func col2imAdd(_ col: UnsafeMutablePointer<Float>, ld: Int, _ image: UnsafeMutablePointer<Float>,
                   pixels: Range<Int>? = nil) {
        let (t0, t1) = pixels.map { ($0.lowerBound, $0.upperBound) } ?? (0, outPixels)
        if t1 - t0 <= Self.smallTile {
            // Each pixel's contributions in the order of the loops below: the same sums.
            forEachTapRow(t0..<t1, col: col, ld: ld) { offset, row, sources in
                let plane = image + offset
                for j in 0..<(t1 - t0) where sources[j] >= 0 { plane[Int(sources[j])] += row[j] }
            }
            return
        }
        for c in 0..<channels {
            let plane = image + c * imagePixels
            for ky in 0..<kernelH {
                let (oy0, oy1) = validRows(ky)
                for kx in 0..<kernelW {
                    let row = col + ((c * kernelH + ky) * kernelW + kx) * ld - t0
                    let (lo, hi) = validColumns(kx)
                    let first = max(oy0 * outWidth + lo, t0), last = min((oy1 - 1) * outWidth + hi, t1)
                    guard oy0 < oy1, lo < hi, first < last else { continue }
                    if isContiguousShift {
                        if lo > 0 || hi < outWidth {
                            for oy in (first / outWidth)...((last - 1) / outWidth) {
                                let base = oy * outWidth
                                for ox in 0..<lo where base + ox >= first && base + ox < last { row[base + ox] = 0 }
                                for ox in hi..<outWidth where base + ox >= first && base + ox < last { row[base + ox] = 0 }
                            }
                        }
                        let offset = (ky - padding) * width + (kx - padding)
                        addInPlace(plane + first + offset, row + first, count: last - first)
                        continue
                    }
                    for oy in (first / outWidth)...((last - 1) / outWidth) {
                        let base = oy * outWidth
                        let a = max(first - base, lo), b = min(last - base, hi)
                        guard a < b else { continue }
                        let src = row + base
                        let dst = plane + (oy * stride - padding + ky) * width + kx - padding
                        if stride == 2 {
                            scatterAddEven(src + a, into: dst + 2 * a, count: b - a)
                        } else {
                            for ox in a..<b { dst[ox * stride] += src[ox] }
                        }
                    }
                }
            }
        }
    }
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
        if groups == 1 && kh == kw {
            ConvolutionRecorder.note(ConvolutionLayer(batch: n, inChannels: cin, outChannels: cout, height: h, width: w, kernel: kh,
                                                      stride: stride, padding: padding, needsInputGradient: isTracked))
        }
        if let passes = GridConvPasses(batch: n, inChannels: cin, outChannels: cout, height: h, width: w, kernelH: kh,
                                       kernelW: kw, stride: stride, padding: padding, groups: groups) {
            return gridConv2D(passes, weight: weight, bias: bias)
        }
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

    /// `conv2D` through `GridConv` (stride 1 or 2, one group), its passes as `GridConvPasses`
    /// runs them.
    private func gridConv2D(_ passes: GridConvPasses, weight: Tensor, bias: Tensor?) -> Tensor {
        let n = shape[0], conv = passes.conv
        let out = Tensor.uninitialized([n, conv.outChannels, conv.outHeight, conv.outWidth])
        let x = self
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        let training = inputs.contains { $0.isTracked }
        // Inference keeps each layer's transformed weights between calls; training changes them
        // every step, so it transforms them afresh.
        passes.forward(pointer, batch: n, weight: weight.pointer, bias: bias?.pointer, output: out.pointer,
                       cachingWeights: !training)
        guard training else { return out }

        return Tensor.record(out, inputs: inputs) { g in
            var grads: [Tensor?] = [nil, nil, nil]
            if x.isTracked, weight.isTracked {
                let dx = Tensor.uninitialized(x.shape), dw = Tensor.uninitialized(weight.shape)
                if passes.fusedBackward(input: x.pointer, outputGradient: g.pointer, weight: weight.pointer, batch: n,
                                        inputGradient: dx.pointer, weightGradient: dw.pointer) {
                    grads[0] = dx
                    grads[1] = dw
                }
            }
            if x.isTracked, grads[0] == nil {
                let dx = Tensor.uninitialized(x.shape)
                passes.inputGradient(g.pointer, weight: weight.pointer, batch: n, into: dx.pointer)
                grads[0] = dx
            }
            if weight.isTracked, grads[1] == nil {
                let dw = Tensor.uninitialized(weight.shape)
                passes.weightGradient(input: x.pointer, outputGradient: g.pointer, batch: n, into: dw.pointer)
                grads[1] = dw
            }
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

/// The work of one convolution over a batch, as GEMMs on cache-sized column matrices.
///
/// Large outputs are cut into tiles of pixels whose column matrix stays in L2 (the im2col
/// matrix of a whole 32x32 image with 144 rows would not), and each tile's GEMM reads it while
/// it is hot. Small outputs (8x8, 16x16) put several images side by side in one GEMM instead,
/// so the GEMM is wide enough to run efficiently.
struct ConvPlan {
    let batch: Int, groups: Int, outChannels: Int
    let geometry: ConvGeometry

    var inChannels: Int { geometry.channels * groups }
    var outPerGroup: Int { outChannels / groups }

    /// Column-matrix width (floats per row) aimed for: about 256 KiB of columns.
    var targetColumns: Int {
        let k = geometry.patchSize
        return max(256, min(2048, (131_072 / max(k, 1) + 15) / 16 * 16))
    }
    /// Images per GEMM (> 1 only when one image's output is narrower than the target), but
    /// never so many that some worker thread gets no chunk of the batch (ResNet-18's 4x4 stage:
    /// all 16 images would fill one GEMM, and the second thread would wait).
    var imagesPerGEMM: Int {
        let p = geometry.outPixels
        guard p < targetColumns / 2 else { return 1 }
        let perThread = (batch + Threads.count - 1) / Threads.count
        return max(1, min(batch, targetColumns / max(p, 1), perThread))
    }
    /// Pixels per tile when images are processed one at a time.
    var tileWidth: Int { geometry.isPointwise ? geometry.outPixels : min(geometry.outPixels, targetColumns) }

    func image(_ base: UnsafePointer<Float>, _ index: Int, group: Int) -> UnsafePointer<Float> {
        base + (index * inChannels + group * geometry.channels) * geometry.imagePixels
    }

    func forward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>) {
        let geo = geometry
        let k = geo.patchSize, p = geo.outPixels
        let per = imagesPerGEMM
        if per == 1 {
            let tile = tileWidth
            parallelFor(batch) { images in
                let col = geo.isPointwise ? nil : TensorStorage(uninitializedCount: k * tile)
                for i in images {
                    for g in 0..<groups {
                        let src = image(input, i, group: g)
                        let dst = output + (i * outChannels + g * outPerGroup) * p
                        if let bias {
                            for o in 0..<outPerGroup { (dst + o * p).update(repeating: bias[g * outPerGroup + o], count: p) }
                        }
                        let wg = weight + g * outPerGroup * k
                        for t0 in stride(from: 0, to: p, by: tile) {
                            let width = min(tile, p - t0)
                            if let col {
                                geo.im2col(src, col.pointer, ld: tile, pixels: t0..<(t0 + width))
                                gemm(m: outPerGroup, n: width, k: k, wg, lda: k, col.pointer, ldb: tile,
                                     beta: bias == nil ? 0 : 1, dst + t0, ldc: p)
                            } else {
                                gemm(m: outPerGroup, n: width, k: k, wg, lda: k, src + t0, ldb: p,
                                     beta: bias == nil ? 0 : 1, dst + t0, ldc: p)
                            }
                        }
                    }
                }
            }
            return
        }
        let chunks = (batch + per - 1) / per
        parallelFor(chunks) { range in
            let cols = per * p
            let col = TensorStorage(uninitializedCount: k * cols)
            let staging = TensorStorage(uninitializedCount: outPerGroup * cols)
            for chunk in range {
                let first = chunk * per, count = min(per, batch - first)
                let width = count * p
                for g in 0..<groups {
                    // Column matrix [k, count * p]: the images side by side.
                    for i in 0..<count { fillColumns(image(input, first + i, group: g), col.pointer + i * p, ld: width) }
                    gemm(m: outPerGroup, n: width, k: k, weight + g * outPerGroup * k, lda: k,
                         col.pointer, ldb: width, staging.pointer, ldc: width)
                    for i in 0..<count {
                        for o in 0..<outPerGroup {
                            let dst = output + ((first + i) * outChannels + g * outPerGroup + o) * p
                            let src = staging.pointer + o * width + i * p
                            let shift = bias?[g * outPerGroup + o] ?? 0
                            for j in 0..<p { dst[j] = src[j] + shift }
                        }
                    }
                }
            }
        }
    }

    /// im2col of one whole image, or a plain copy for pointwise convolutions.
    func fillColumns(_ src: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, ld: Int) {
        if geometry.isPointwise {
            let p = geometry.outPixels
            for r in 0..<geometry.patchSize { (col + r * ld).update(from: src + r * p, count: p) }
        } else {
            geometry.im2col(src, col, ld: ld)
        }
    }

    /// Accumulates input gradients into `inputGradient` (which must start zeroed) and writes
    /// weight gradients to `weightGradient`.
    func backward(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                  inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>?) {
        let geo = geometry
        let k = geo.patchSize, p = geo.outPixels
        var weightGradient = weightGradient
        let per = imagesPerGEMM
        if per > 1, per * p < 512, let dw = weightGradient, batch * p * k <= Self.wholeBatchColumns {
            wholeBatchWeightGradient(input: input, outputGradient: outputGradient, into: dw)
            weightGradient = nil
        }
        // Each chunk of work accumulates its own weight gradient; they are summed at the end.
        let partials = ChunkPartials(length: outChannels * k)
        if per == 1 {
            let tile = tileWidth
            parallelFor(batch) { images in
                let col = TensorStorage(uninitializedCount: k * tile)
                let dw = weightGradient == nil ? nil : partials.make(for: images.lowerBound)
                for i in images {
                    for g in 0..<groups {
                        let src = image(input, i, group: g)
                        let gy = outputGradient + (i * outChannels + g * outPerGroup) * p
                        let wg = weight + g * outPerGroup * k
                        for t0 in stride(from: 0, to: p, by: tile) {
                            let width = min(tile, p - t0), pixels = t0..<(t0 + width)
                            if let dw {
                                // dW[o, r] += sum_j dY[o, j] * col[r, j]
                                let b: UnsafePointer<Float>, ldb: Int
                                if geo.isPointwise { (b, ldb) = (src + t0, p) } else {
                                    geo.im2col(src, col.pointer, ld: tile, pixels: pixels)
                                    (b, ldb) = (UnsafePointer(col.pointer), tile)
                                }
                                gemm(transposeB: true, m: outPerGroup, n: k, k: width, gy + t0, lda: p,
                                     b, ldb: ldb, beta: 1, dw + g * outPerGroup * k, ldc: k)
                            }
                            if let dx = inputGradient {
                                // dCol[r, j] = sum_o W[o, r] * dY[o, j], scattered back to pixels.
                                let dst = dx + (i * inChannels + g * geo.channels) * geo.imagePixels
                                if geo.isPointwise {
                                    gemm(transposeA: true, m: k, n: width, k: outPerGroup, wg, lda: k,
                                         gy + t0, ldb: p, beta: 1, dst + t0, ldc: p)
                                } else {
                                    gemm(transposeA: true, m: k, n: width, k: outPerGroup, wg, lda: k,
                                         gy + t0, ldb: p, col.pointer, ldc: tile)
                                    geo.col2imAdd(col.pointer, ld: tile, dst, pixels: pixels)
                                }
                            }
                        }
                    }
                }
            }
        } else {
            let chunks = (batch + per - 1) / per
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
                        if let dw {
                            for i in 0..<count { fillColumns(image(input, first + i, group: g), col.pointer + i * p, ld: width) }
                            gemm(transposeB: true, m: outPerGroup, n: k, k: width, gradCols.pointer, lda: width,
                                 col.pointer, ldb: width, beta: 1, dw + g * outPerGroup * k, ldc: k)
                        }
                        if let dx = inputGradient {
                            gemm(transposeA: true, m: k, n: width, k: outPerGroup, weight + g * outPerGroup * k, lda: k,
                                 gradCols.pointer, ldb: width, col.pointer, ldc: width)
                            for i in 0..<count {
                                let dst = dx + ((first + i) * inChannels + g * geo.channels) * geo.imagePixels
                                if geo.isPointwise {
                                    for r in 0..<k { addInPlace(dst + r * p, col.pointer + r * width + i * p, count: p) }
                                } else {
                                    geo.col2imAdd(col.pointer + i * p, ld: width, dst)
                                }
                            }
                        }
                    }
                }
            }
        }
        if let weightGradient { partials.sum(into: weightGradient) }
    }
}

extension ConvPlan {
    /// Column-matrix floats up to which a small-plane layer's weight gradient is one GEMM over
    /// the whole batch (32 MB).
    static let wholeBatchColumns = 8 << 20

    /// The weight gradient of a layer with small output planes as one GEMM per group over every
    /// image's columns, its output channels split between the threads, where the per-chunk
    /// GEMMs would sum fewer than 512 products per weight into a partial each (ResNet-18's 4x4
    /// stage: 16 per image) and their partials, as large as the weights, be added up after
    /// (W5 training, 2 threads: that stage's weight gradient 99 -> 157 GFLOP/s). One block of
    /// rows per thread: each GEMM packs all of `col` again (the 128->256 stride-2 layer's fused
    /// backward at 2 threads: 95-112 GFLOP/s in blocks of 16 rows, 121-140 in two blocks).
    func wholeBatchWeightGradient(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, into dw: UnsafeMutablePointer<Float>) {
        let k = geometry.patchSize, p = geometry.outPixels, width = batch * p
        let col = TensorStorage(uninitializedCount: k * width), gradCols = TensorStorage(uninitializedCount: outPerGroup * width)
        for g in 0..<groups {
            parallelFor(batch) { images in
                for i in images {
                    fillColumns(image(input, i, group: g), col.pointer + i * p, ld: width)
                    for o in 0..<outPerGroup {
                        (gradCols.pointer + o * width + i * p).update(from: outputGradient + (i * outChannels + g * outPerGroup + o) * p, count: p)
                    }
                }
            }
            // dW[o, r] = sum over the batch's pixels j of dY[o, j] * col[r, j].
            parallelFor(outPerGroup, grain: max(16, (outPerGroup + Threads.count - 1) / Threads.count)) { rows in
                gemm(transposeB: true, m: rows.count, n: k, k: width, gradCols.pointer + rows.lowerBound * width, lda: width,
                     col.pointer, ldb: width, dw + (g * outPerGroup + rows.lowerBound) * k, ldc: k)
            }
        }
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

    /// The partials' sum, in key order, each thread adding up its own slice (every element's
    /// sum has the same order whatever the thread count).
    func sum(into destination: UnsafeMutablePointer<Float>) {
        let sources = buffers.sorted(by: { $0.key < $1.key }).map(\.storage)
        guard let first = sources.first else { destination.update(repeating: 0, count: length); return }
        parallelFor(length, grain: 1 << 16) { range in
            let d = destination + range.lowerBound
            d.update(from: first.pointer + range.lowerBound, count: range.count)
            for source in sources.dropFirst() { addInPlace(d, source.pointer + range.lowerBound, count: range.count) }
        }
    }
}

extension Tensor {
    /// 1x1 convolution whose every output sums its input channels in one fixed order, whatever
    /// the image size: [N, C, H, W] with weight [O, C, 1, 1] and bias [O] -> [N, O, H, W].
    ///
    /// `conv2D` hands 1x1 layers to sgemm, whose blocking (and so rounding) depends on the
    /// number of pixels; a window head needs the score of a window computed densely over an
    /// image to equal that of its crop bit for bit. The gradients go through sgemm.
    public func pointwiseConv2D(_ weight: Tensor, bias: Tensor?) -> Tensor {
        checkShape(rank == 4 && weight.rank == 4 && weight.shape[1] == shape[1] && weight.shape[2] == 1 && weight.shape[3] == 1,
                   "pointwiseConv2D: input \(shape), weight \(weight.shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let o = weight.shape[0], plane = h * w
        if let bias { checkShape(bias.shape == [o], "pointwiseConv2D: bias \(bias.shape) for \(o) outputs") }
        let out = Tensor.uninitialized([n, o, h, w])
        let x = pointer, wp = weight.pointer, bp = bias?.pointer, y = out.pointer
        parallelFor(n * o, grain: Swift.max(1, 4096 / Swift.max(plane * c, 1))) { planes in
            for index in planes {
                let (image, channel) = index.quotientAndRemainder(dividingBy: o)
                let dst = y + index * plane, src = x + image * c * plane, row = wp + channel * c
                dst.update(repeating: 0, count: plane)
                for k in 0..<c {
                    let weight = row[k], input = src + k * plane
                    for p in 0..<plane { dst[p] += weight * input[p] }
                }
                if let bp { let b = bp[channel]; for p in 0..<plane { dst[p] += b } }
            }
        }
        let input = self
        let inputs = bias.map { [input, weight, $0] } ?? [input, weight]
        return Tensor.record(out, inputs: inputs) { g in
            var dx: Tensor?, dw: Tensor?, db: Tensor?
            if input.isTracked {
                let d = Tensor.uninitialized(input.shape)
                for image in 0..<n {
                    gemm(transposeA: true, m: c, n: plane, k: o, weight.pointer, lda: c,
                         g.pointer + image * o * plane, ldb: plane, d.pointer + image * c * plane, ldc: plane)
                }
                dx = d
            }
            if weight.isTracked {
                let d = Tensor.zeros(weight.shape)
                for image in 0..<n {
                    gemm(transposeB: true, m: o, n: c, k: plane, g.pointer + image * o * plane, lda: plane,
                         input.pointer + image * c * plane, ldb: plane, beta: 1, d.pointer, ldc: c)
                }
                dw = d
            }
            if let bias, bias.isTracked {
                let d = Tensor.zeros([o])
                for image in 0..<n {
                    for channel in 0..<o {
                        let src = g.pointer + (image * o + channel) * plane
                        var sum: Float = 0
                        for p in 0..<plane { sum += src[p] }
                        d.pointer[channel] += sum
                    }
                }
                db = d
            }
            return bias == nil ? [dx, dw] : [dx, dw, db]
        }
    }
}

/// The passes of a `GridConv` layer as `conv2D` runs them, so the step and `percept bench
/// --layers` (`timeConvolution`) take the same path. Where the shape suits Winograd's
/// algorithm, the forward pass, the input gradient (itself a stride-1 convolution of the output
/// gradient) and the weight gradient run through `WinogradConv`. Otherwise the forward pass runs
/// on the direct grid kernels, and so do the gradients, whose stride-1 "same" backward fuses
/// both in one pass, except at stride 2 with 64 or more input channels: there the gradients
/// are `ConvPlan`'s GEMMs, both in one pass (W5 training, one thread, AVX-512: the 128->256
/// layer's input gradient 49-59 -> 69-79 GFLOP/s and weight gradient 37-42 -> 57-71; the grid
/// kernels keep the forward pass, 82-92 against sgemm's 69-79 on the 64->128 layer). With
/// fewer channels the grid kernels win (W2's 16->32 and 32->64 layers: weight gradient 49-55
/// against the GEMMs' 33-39).
struct GridConvPasses {
    let conv: GridConv
    let winograd: WinogradConv?
    /// The GEMMs that compute the gradients instead of the grid kernels, where they do.
    let gradientPlan: ConvPlan?

    /// The passes of a convolution that runs here, or nil where `conv2D` runs it as `ConvPlan`'s
    /// GEMMs: kernels `GridConv` does not handle, and padded planes of 16 outputs or fewer that
    /// Winograd's algorithm does not take either (`GridConv.suits`).
    init?(batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int,
          stride: Int, padding: Int, groups: Int) {
        guard GridConv.handles(kernelH: kernelH, kernelW: kernelW, stride: stride, padding: padding, groups: groups)
        else { return nil }
        conv = GridConv(inChannels: inChannels, outChannels: outChannels, height: height, width: width,
                        kernelH: kernelH, kernelW: kernelW, padH: padding, padW: padding, stride: stride)
        winograd = Tensor.winogradEnabled && WinogradConv.handles(conv) ? WinogradConv(conv) : nil
        guard winograd != nil || GridConv.suits(outputPixels: conv.outHeight * conv.outWidth, padding: padding)
        else { return nil }
        gradientPlan = winograd == nil && stride == 2 && inChannels >= 64
            ? ConvPlan(batch: batch, groups: 1, outChannels: outChannels,
                       geometry: ConvGeometry(channels: inChannels, height: height, width: width, kernelH: kernelH,
                                              kernelW: kernelW, stride: stride, padding: padding))
            : nil
    }

    func forward(_ input: UnsafePointer<Float>, batch: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                 output: UnsafeMutablePointer<Float>, cachingWeights: Bool) {
        if let winograd {
            winograd.forward(input, batch: batch, weight: weight, bias: bias, output: output, cachingWeights: cachingWeights)
        } else {
            let packed = conv.packWeights(weight)
            conv.forward(input, batch: batch, packedWeights: packed.pointer, bias: bias, output: output)
        }
    }

    /// Both gradients in one pass where the direct kernels or the GEMMs fuse them; false
    /// (nothing written) otherwise.
    func fusedBackward(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                       batch: Int, inputGradient: UnsafeMutablePointer<Float>,
                       weightGradient: UnsafeMutablePointer<Float>) -> Bool {
        if let gradientPlan {
            planBackward(gradientPlan, input: input, weight: weight, outputGradient: outputGradient, batch: batch,
                         inputGradient: inputGradient, weightGradient: weightGradient)
            return true
        }
        guard winograd == nil else { return false }
        return conv.backward(input: input, outputGradient: outputGradient, weight: weight, batch: batch,
                             inputGradient: inputGradient, weightGradient: weightGradient)
    }

    func inputGradient(_ outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>, batch: Int,
                       into gradient: UnsafeMutablePointer<Float>) {
        if let gradientPlan {
            planBackward(gradientPlan, input: nil, weight: weight, outputGradient: outputGradient, batch: batch,
                         inputGradient: gradient, weightGradient: nil)
        } else if winograd != nil, let adjoint = WinogradConv(adjointOf: conv) {
            adjoint.forward(outputGradient, batch: batch, weight: weight, bias: nil, output: gradient, cachingWeights: false)
        } else {
            conv.inputGradient(outputGradient, weight: weight, batch: batch, into: gradient)
        }
    }

    func weightGradient(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                        into gradient: UnsafeMutablePointer<Float>) {
        if let gradientPlan {
            planBackward(gradientPlan, input: input, weight: nil, outputGradient: outputGradient, batch: batch,
                         inputGradient: nil, weightGradient: gradient)
        } else if let winograd {
            winograd.weightGradient(input: input, outputGradient: outputGradient, batch: batch, into: gradient)
        } else {
            conv.weightGradient(input: input, outputGradient: outputGradient, batch: batch, into: gradient)
        }
    }

    /// The gradients asked for through `gradientPlan`: the input gradient (which ConvPlan adds
    /// into) is zeroed first. ConvPlan reads the input only for the weight gradient and the
    /// weights only for the input gradient, so a pass that needs one of them alone has no other.
    private func planBackward(_ plan: ConvPlan, input: UnsafePointer<Float>?, weight: UnsafePointer<Float>?,
                              outputGradient: UnsafePointer<Float>, batch: Int,
                              inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>?) {
        if let inputGradient { parallelZero(inputGradient, count: batch * conv.inChannels * conv.height * conv.width) }
        plan.backward(input: input ?? outputGradient, weight: weight ?? outputGradient, outputGradient: outputGradient,
                      inputGradient: inputGradient, weightGradient: weightGradient)
    }
}
