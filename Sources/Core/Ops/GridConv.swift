import CKernels

/// A convolution computed directly on zero-padded planes, without an im2col matrix.
///
/// On the flattened padded grid (rows `rowStride` floats long), output pixel `p` is the sum
/// over input channels and kernel taps of `w[tap] * input[p + offset(tap)]`, so a tile of
/// output channels and pixels is one run of FMAs over shifted input vectors (the C kernels in
/// `CKernels/conv_grid.c`). The grid has a few junk columns per row that the kernels compute
/// and the copy-out drops.
///
/// Stride `s` > 1 splits each padded plane into its s x s phases (the pixels whose row and
/// column leave remainders a and b modulo s), stored one after another per channel. Tap (ky, kx)
/// then reads phase (ky % s, kx % s) shifted by (ky / s, kx / s): a stride-1 pattern again.
///
/// Gradients: the weight gradient is a kernel that sums shifted products over pixels and
/// images. The input gradient is again a stride-1 grid convolution of the output gradient with
/// the kernel flipped and transposed, once per phase when strided (`adjoint(phase:)`).
struct GridConv {
    let inChannels: Int, outChannels: Int
    let height: Int, width: Int
    let kernelH: Int, kernelW: Int
    let padH: Int, padW: Int
    var stride: Int = 1

    var paddedHeight: Int { height + 2 * padH }
    var paddedWidth: Int { width + 2 * padW }
    /// Rows and columns of one phase plane (the whole padded plane at stride 1).
    var phaseHeight: Int { (paddedHeight + stride - 1) / stride }
    var rowStride: Int { (paddedWidth + stride - 1) / stride }
    var outHeight: Int { (paddedHeight - kernelH) / stride + 1 }
    var outWidth: Int { (paddedWidth - kernelW) / stride + 1 }
    var taps: Int { kernelH * kernelW }
    var outBlocks: Int { (outChannels + blockChannels - 1) / blockChannels }
    /// Grid positions that hold output rows.
    var gridPixels: Int { outHeight * rowStride }
    /// Grid positions the forward kernel computes (whole pixel blocks).
    var pixels: Int { roundUp(gridPixels, Int(PC_CONV_PIXEL_BLOCK)) }
    /// Floats between phase planes: the plane plus the zeros that reads of the last pixel
    /// block run into.
    var phaseStride: Int { roundUp(phaseHeight * rowStride + Int(PC_CONV_PIXEL_BLOCK) + kernelW + 8, 16) }
    /// Floats between the padded planes of consecutive channels.
    var planeStride: Int { stride * stride * phaseStride }

    private var blockChannels: Int { Int(PC_CONV_CHANNEL_BLOCK) }

    /// Whether a convolution with these settings runs here: one group, a kernel larger than
    /// 1x1, stride 1 or 2, and padding small enough that the input gradient is a convolution too.
    static func handles(kernelH: Int, kernelW: Int, stride: Int, padding: Int, groups: Int) -> Bool {
        (stride == 1 || stride == 2) && groups == 1 && kernelH * kernelW > 1
            && padding < kernelH && padding < kernelW
    }

    /// Whether `conv2D` takes this path for outputs of `outputPixels` per plane: from 5x5 up.
    /// Smaller planes (ResNet-18's 4x4 stage at 128 pixels) leave the kernels' pixel blocks
    /// mostly empty and their weight gradients sum few products per weight; there `ConvPlan`'s
    /// GEMMs, several images side by side, win (W5 training, one thread: 19.8 -> 32.4 images/s,
    /// AVX-512; W1-W4 have no such plane). Unpadded convolutions stay here whatever their size:
    /// the grid kernels sum each pixel alike in any plane, so a window classifier's dense scores
    /// equal its crops' bit for bit.
    static func suits(outputPixels: Int, padding: Int) -> Bool { padding == 0 || outputPixels > 16 }

    /// Offsets of the kernel taps on the grid, row-major over (ky, kx), padded with zeros to
    /// `count` entries.
    func tapOffsets(count: Int? = nil) -> [Int] {
        var offsets = (0..<kernelH).flatMap { ky in
            (0..<kernelW).map { kx in
                ((ky % stride) * stride + kx % stride) * phaseStride + (ky / stride) * rowStride + kx / stride
            }
        }
        offsets += Array(repeating: 0, count: (count ?? taps) - taps)
        return offsets
    }

    /// The stride-1 convolution that computes this one's input gradient from its output
    /// gradient: for stride s, the gradient of input phase (a, b), whose taps are
    /// (a + s i, b + s j); it yields `outHeight + taps down - 1` rows of phase rows.
    func adjoint(phase a: Int, _ b: Int) -> GridConv? {
        let rows = (kernelH - a + stride - 1) / stride, cols = (kernelW - b + stride - 1) / stride
        guard rows > 0, cols > 0 else { return nil }
        return GridConv(inChannels: outChannels, outChannels: inChannels, height: outHeight, width: outWidth,
                        kernelH: rows, kernelW: cols, padH: rows - 1, padW: cols - 1)
    }

    /// At stride 1, the convolution of the output gradient that yields the input gradient: the
    /// full correlation, cropped to the unpadded input by reduced padding (for "same"
    /// convolutions the padding is unchanged).
    var stride1Adjoint: GridConv {
        GridConv(inChannels: outChannels, outChannels: inChannels, height: outHeight, width: outWidth,
                 kernelH: kernelH, kernelW: kernelW, padH: kernelH - 1 - padH, padW: kernelW - 1 - padW)
    }

    /// Weights [outChannels, inChannels, kh, kw] packed as the kernel reads them:
    /// [outBlocks][inChannels][taps][4], zero for the channels that pad the last block.
    func packWeights(_ weight: UnsafePointer<Float>) -> TensorStorage {
        pack { o, c, tap in weight[(o * inChannels + c) * taps + tap] }
    }

    /// Packs this adjoint's kernel from the weights of `forward`, the convolution whose input
    /// gradient (phase (a, b)) it computes: forward taps (a + s i, b + s j), transposed and flipped.
    func packAdjointWeights(_ weight: UnsafePointer<Float>, of forward: GridConv, phase a: Int = 0, _ b: Int = 0) -> TensorStorage {
        let s = forward.stride, fkh = forward.kernelH, fkw = forward.kernelW
        return pack { o, c, tap in
            let (i, j) = tap.quotientAndRemainder(dividingBy: kernelW)
            let ky = a + s * (kernelH - 1 - i), kx = b + s * (kernelW - 1 - j)
            return weight[((c * outChannels + o) * fkh + ky) * fkw + kx]
        }
    }

    private func pack(_ value: (_ out: Int, _ in: Int, _ tap: Int) -> Float) -> TensorStorage {
        let block = blockChannels, t = taps
        let packed = TensorStorage(zeros: outBlocks * block * inChannels * t)
        parallelFor(outChannels, grain: max(1, 16_384 / (inChannels * t))) { outs in
            for o in outs {
                let (b, k) = o.quotientAndRemainder(dividingBy: block)
                for c in 0..<inChannels {
                    let dst = packed.pointer + ((b * inChannels + c) * t) * block + k
                    for tap in 0..<t { dst[tap * block] = value(o, c, tap) }
                }
            }
        }
        return packed
    }

    /// Copies image planes [channels, height, width] into the interior of zeroed padded planes
    /// (split into phases when strided).
    private func pad(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        if stride == 1 {
            for c in 0..<inChannels {
                var from = src + c * height * width
                var to = dst + c * planeStride + padH * rowStride + padW
                for _ in 0..<height { copyFloats(from, to, count: width); from += width; to += rowStride }
            }
            return
        }
        // Columns x0, x0 + s, ... (those with (x + padW) % s == b) go to phase column b.
        let phases = (0..<stride).map { b -> (first: Int, count: Int, column: Int) in
            let first = ((b - padW) % stride + stride) % stride
            return (first, max(0, (width - first + stride - 1) / stride), (first + padW) / stride)
        }
        for c in 0..<inChannels {
            let source = src + c * height * width, plane = dst + c * planeStride
            for y in 0..<height {
                let (yq, a) = (y + padH).quotientAndRemainder(dividingBy: stride)
                let row = source + y * width, phaseRow = plane + a * stride * phaseStride + yq * rowStride
                for (b, phase) in phases.enumerated() where phase.count > 0 {
                    let from = row + phase.first, to = phaseRow + b * phaseStride + phase.column
                    if stride == 2 { gatherEven(from, into: to, count: phase.count); continue }
                    for j in 0..<phase.count { to[j] = from[j * stride] }
                }
            }
        }
    }

    /// output[n] = conv(input[n]) (+ bias) for NCHW `input` [batch, inChannels, height, width]
    /// and `output` [batch, outChannels, outHeight, outWidth].
    func forward(_ input: UnsafePointer<Float>, batch: Int, packedWeights: UnsafePointer<Float>,
                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
        let offsets = tapOffsets()
        if batch < Threads.count && outBlocks > 1 {
            // Fewer images than threads (one large image, say): the threads share each image's
            // output channel blocks instead. Every output is the same run of FMAs either way.
            let padded = TensorStorage(zeros: inChannels * planeStride)
            let grid = TensorStorage(uninitializedCount: outBlocks * blockChannels * pixels)
            for i in 0..<batch {
                pad(input + i * inChannels * height * width, into: padded.pointer)
                parallelFor(outBlocks) { blocks in
                    offsets.withUnsafeBufferPointer { taps in
                        pc_conv_grid(padded.pointer, planeStride, Int32(inChannels),
                                     packedWeights + blocks.lowerBound * inChannels * self.taps * blockChannels,
                                     Int32(blocks.count), taps.baseAddress, Int32(self.taps),
                                     grid.pointer + blocks.lowerBound * blockChannels * pixels, pixels, pixels)
                    }
                    copyOut(grid.pointer, channels: (blocks.lowerBound * blockChannels)..<min(blocks.upperBound * blockChannels, outChannels),
                            bias: bias, into: output + i * outChannels * outHeight * outWidth)
                }
            }
            return
        }
        parallelFor(batch) { images in
            let padded = TensorStorage(zeros: inChannels * planeStride)
            let grid = TensorStorage(uninitializedCount: outBlocks * blockChannels * pixels)
            for i in images {
                pad(input + i * inChannels * height * width, into: padded.pointer)
                convolve(padded.pointer, packedWeights: packedWeights, offsets: offsets, grid: grid.pointer, bias: bias,
                         into: output + i * outChannels * outHeight * outWidth)
            }
        }
    }

    /// Copies the valid pixels of `channels` from `grid` (plus bias) to `output` [outChannels, outHeight, outWidth].
    private func copyOut(_ grid: UnsafePointer<Float>, channels: Range<Int>, bias: UnsafePointer<Float>?,
                         into output: UnsafeMutablePointer<Float>) {
        let (ho, wo, rs, px) = (outHeight, outWidth, rowStride, pixels)
        for o in channels {
            let shift = bias?[o] ?? 0
            for y in 0..<ho {
                let s = grid + o * px + y * rs, d = output + (o * ho + y) * wo
                if shift == 0 { copyFloats(s, d, count: wo) } else { for x in 0..<wo { d[x] = s[x] + shift } }
            }
        }
    }

    /// One image: runs the kernel over padded planes into `grid` and copies the valid pixels
    /// (plus bias) out to `output` [outChannels, outHeight, outWidth].
    private func convolve(_ padded: UnsafePointer<Float>, packedWeights: UnsafePointer<Float>, offsets: [Int],
                          grid: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
                          into output: UnsafeMutablePointer<Float>) {
        pc_conv_grid(padded, planeStride, Int32(inChannels), packedWeights, Int32(outBlocks),
                     offsets, Int32(taps), grid, pixels, pixels)
        copyOut(grid, channels: 0..<outChannels, bias: bias, into: output)
    }

    /// Both gradients of a stride-1 "same" convolution (2 padding + 1 = kernel) in one pass
    /// over the batch: the padded output gradient that the input-gradient convolution reads is,
    /// shifted by (padH, padW), the output gradient on this convolution's grid with zero junk
    /// columns, which is what the weight-gradient kernel reads. Returns false (doing nothing)
    /// for other geometries.
    func backward(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                  batch: Int, inputGradient: UnsafeMutablePointer<Float>,
                  weightGradient: UnsafeMutablePointer<Float>) -> Bool {
        guard stride == 1, 2 * padH + 1 == kernelH, 2 * padW + 1 == kernelW else { return false }
        let adjoint = stride1Adjoint
        let flipped = adjoint.packAdjointWeights(weight, of: self)
        let adjointOffsets = adjoint.tapOffsets()
        let paddedTaps = roundUp(taps, Int(PC_CONV_TAP_BLOCK))
        let offsets = tapOffsets(count: paddedTaps)
        let channels = outBlocks * blockChannels
        let (dStride, dShift, dPixels) = (adjoint.planeStride, padH * rowStride + padW, roundUp(gridPixels, 8))
        let group = imagesPerGroup(batch: batch, bytesPerImage: (inChannels * planeStride + channels * dStride) * 4)
        let length = channels * inChannels * paddedTaps
        let partials = ChunkPartials(length: length)
        parallelFor((batch + group - 1) / group) { range in
            let sum = partials.make(for: range.lowerBound)
            let padded = TensorStorage(zeros: group * inChannels * planeStride)
            let dPadded = TensorStorage(zeros: group * channels * dStride)
            let grid = TensorStorage(uninitializedCount: adjoint.outBlocks * blockChannels * adjoint.pixels)
            for g in range {
                let first = g * group, count = min(group, batch - first)
                for j in 0..<count {
                    let i = first + j
                    pad(input + i * inChannels * height * width, into: padded.pointer + j * inChannels * planeStride)
                    let d = dPadded.pointer + j * channels * dStride
                    adjoint.pad(outputGradient + i * outChannels * outHeight * outWidth, into: d)
                    adjoint.convolve(d, packedWeights: flipped.pointer, offsets: adjointOffsets, grid: grid.pointer,
                                     bias: nil, into: inputGradient + i * inChannels * height * width)
                }
                pc_conv_grid_weight_grad(padded.pointer, planeStride, inChannels * planeStride, Int32(inChannels),
                                         dPadded.pointer + dShift, dStride, channels * dStride, Int32(channels),
                                         Int32(count), dPixels, offsets, Int32(paddedTaps), sum)
            }
        }
        unpackWeightGradient(partials, paddedTaps: paddedTaps, into: weightGradient)
        return true
    }

    /// Images per weight-gradient kernel call: enough to amortise its final reductions, few
    /// enough that their planes stay in L2 while every (output block, input channel) pair
    /// reads them.
    private func imagesPerGroup(batch: Int, bytesPerImage: Int) -> Int {
        max(1, min(batch, 393_216 / bytesPerImage))
    }

    /// Sums the per-chunk [paddedOut][inChannels][paddedTaps] gradients into [out, in, kh, kw].
    private func unpackWeightGradient(_ partials: ChunkPartials, paddedTaps: Int, into gradient: UnsafeMutablePointer<Float>) {
        let total = TensorStorage(uninitializedCount: partials.length)
        partials.sum(into: total.pointer)
        for o in 0..<outChannels {
            for c in 0..<inChannels {
                (gradient + (o * inChannels + c) * taps)
                    .update(from: total.pointer + (o * inChannels + c) * paddedTaps, count: taps)
            }
        }
    }

    /// Writes the input gradient [batch, inChannels, height, width] for `outputGradient`.
    func inputGradient(_ outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>, batch: Int,
                       into gradient: UnsafeMutablePointer<Float>) {
        if stride == 1 {
            let adjoint = stride1Adjoint
            let packed = adjoint.packAdjointWeights(weight, of: self)
            adjoint.forward(outputGradient, batch: batch, packedWeights: packed.pointer, bias: nil, output: gradient)
            return
        }
        parallelZero(gradient, count: batch * inChannels * height * width)
        for a in 0..<stride {
            for b in 0..<stride {
                guard let adjoint = adjoint(phase: a, b) else { continue }
                let packed = adjoint.packAdjointWeights(weight, of: self, phase: a, b)
                let (ph, pw) = (adjoint.outHeight, adjoint.outWidth)
                let phase = TensorStorage(uninitializedCount: batch * inChannels * ph * pw)
                adjoint.forward(outputGradient, batch: batch, packedWeights: packed.pointer, bias: nil, output: phase.pointer)
                // Input pixel (y, x) is phase pixel ((y + padH) / s, (x + padW) / s).
                let y0 = ((a - padH) % stride + stride) % stride, x0 = ((b - padW) % stride + stride) % stride
                parallelFor(batch * inChannels) { planes in
                    for plane in planes {
                        let src = phase.pointer + plane * ph * pw, dst = gradient + plane * height * width
                        let column = (x0 + padW) / stride
                        let count = min((width - x0 + stride - 1) / stride, pw - column)
                        guard count > 0 else { continue }
                        for y in Swift.stride(from: y0, to: height, by: stride) {
                            let row = (y + padH) / stride
                            guard row < ph else { break }
                            let from = src + row * pw + column, to = dst + y * width + x0
                            for j in 0..<count { to[j * stride] = from[j] }
                        }
                    }
                }
            }
        }
    }

    /// Writes the weight gradient [outChannels, inChannels, kh, kw] of the batch.
    func weightGradient(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                        into gradient: UnsafeMutablePointer<Float>) {
        let tapBlock = Int(PC_CONV_TAP_BLOCK)
        let paddedTaps = roundUp(taps, tapBlock)
        let offsets = tapOffsets(count: paddedTaps)
        let channels = outBlocks * blockChannels
        let dPixels = roundUp(gridPixels, 8)
        let (ho, wo, rs) = (outHeight, outWidth, rowStride)
        let group = imagesPerGroup(batch: batch, bytesPerImage: (inChannels * planeStride + channels * dPixels) * 4)
        let groups = (batch + group - 1) / group
        let length = channels * inChannels * paddedTaps
        let partials = ChunkPartials(length: length)
        parallelFor(groups) { range in
            let sum = partials.make(for: range.lowerBound)
            let padded = TensorStorage(zeros: group * inChannels * planeStride)
            let dGrid = TensorStorage(zeros: group * channels * dPixels)
            for g in range {
                let first = g * group, count = min(group, batch - first)
                for j in 0..<count {
                    let i = first + j
                    pad(input + i * inChannels * height * width, into: padded.pointer + j * inChannels * planeStride)
                    let src = outputGradient + i * outChannels * ho * wo
                    let dst = dGrid.pointer + j * channels * dPixels
                    for o in 0..<outChannels {
                        for y in 0..<ho { copyFloats(src + (o * ho + y) * wo, dst + o * dPixels + y * rs, count: wo) }
                    }
                }
                pc_conv_grid_weight_grad(padded.pointer, planeStride, inChannels * planeStride, Int32(inChannels),
                                         dGrid.pointer, dPixels, channels * dPixels, Int32(channels),
                                         Int32(count), dPixels, offsets, Int32(paddedTaps), sum)
            }
        }
        unpackWeightGradient(partials, paddedTaps: paddedTaps, into: gradient)
    }
}

@inline(__always)
func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
