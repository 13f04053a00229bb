import CKernels

/// A stride-1 convolution computed directly on zero-padded planes, without an im2col matrix.
///
/// On the flattened padded grid (rows `rowStride` floats long), output pixel `p` is the sum
/// over input channels and kernel taps of `w[tap] * input[p + offset(tap)]`, so a tile of
/// output channels and pixels is one run of FMAs over shifted input vectors (the C kernels in
/// `CKernels/conv_grid.c`). The grid has `kernelW - 1` junk columns per row that the kernels
/// compute and the copy-out drops. The input gradient is the same convolution of the padded
/// output gradient with the kernel flipped and transposed; the weight gradient is a separate
/// kernel that sums shifted products over pixels and images.
struct GridConv {
    let inChannels: Int, outChannels: Int
    let height: Int, width: Int
    let kernelH: Int, kernelW: Int
    let padH: Int, padW: Int

    var rowStride: Int { width + 2 * padW }
    var paddedHeight: Int { height + 2 * padH }
    var outHeight: Int { paddedHeight - kernelH + 1 }
    var outWidth: Int { rowStride - kernelW + 1 }
    var taps: Int { kernelH * kernelW }
    var outBlocks: Int { (outChannels + blockChannels - 1) / blockChannels }
    /// Grid positions that hold output rows.
    var gridPixels: Int { outHeight * rowStride }
    /// Grid positions the forward kernel computes (whole pixel blocks).
    var pixels: Int { roundUp(gridPixels, Int(PC_CONV_PIXEL_BLOCK)) }
    /// Floats between padded input planes: the padded image plus the zeros that reads of the
    /// last pixel block run into.
    var planeStride: Int { roundUp(paddedHeight * rowStride + Int(PC_CONV_PIXEL_BLOCK) + kernelW + 8, 16) }

    private var blockChannels: Int { Int(PC_CONV_CHANNEL_BLOCK) }

    /// Whether a convolution with these settings runs here (stride 1, one group, a kernel
    /// larger than 1x1 and padding small enough that the input gradient is a convolution too).
    static func handles(kernelH: Int, kernelW: Int, stride: Int, padding: Int, groups: Int) -> Bool {
        stride == 1 && groups == 1 && kernelH * kernelW > 1 && padding < kernelH && padding < kernelW
    }

    /// The convolution that computes this one's input gradient from its output gradient.
    var adjoint: GridConv {
        GridConv(inChannels: outChannels, outChannels: inChannels, height: outHeight, width: outWidth,
                 kernelH: kernelH, kernelW: kernelW, padH: kernelH - 1 - padH, padW: kernelW - 1 - padW)
    }

    /// Offsets of the kernel taps on the grid, row-major over (ky, kx), padded with zeros to
    /// `count` entries.
    func tapOffsets(count: Int? = nil) -> [Int] {
        var offsets = (0..<kernelH).flatMap { ky in (0..<kernelW).map { kx in ky * rowStride + kx } }
        offsets += Array(repeating: 0, count: (count ?? taps) - taps)
        return offsets
    }

    /// Weights [outChannels, inChannels, kh, kw] packed as the kernel reads them:
    /// [outBlocks][inChannels][taps][4], zero for the channels that pad the last block.
    /// `adjointOf: true` packs the flipped, transposed kernel of the input-gradient convolution
    /// from the forward weights (then this geometry's out channels are the forward's in channels).
    func packWeights(_ weight: UnsafePointer<Float>, adjointOf: Bool = false) -> TensorStorage {
        let block = blockChannels, t = taps
        let packed = TensorStorage(zeros: outBlocks * block * inChannels * t)
        for o in 0..<outChannels {
            let (b, k) = o.quotientAndRemainder(dividingBy: block)
            for c in 0..<inChannels {
                let dst = packed.pointer + ((b * inChannels + c) * t) * block + k
                if adjointOf {
                    // Forward weight [c][o][t] (its out channel c, in channel o), taps reversed.
                    let src = weight + (c * outChannels + o) * t
                    for tap in 0..<t { dst[tap * block] = src[t - 1 - tap] }
                } else {
                    let src = weight + (o * inChannels + c) * t
                    for tap in 0..<t { dst[tap * block] = src[tap] }
                }
            }
        }
        return packed
    }

    /// Copies image planes [channels, height, width] into the interior of zeroed padded planes.
    private func pad(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        for c in 0..<inChannels {
            let plane = dst + c * planeStride + padH * rowStride + padW
            let source = src + c * height * width
            for y in 0..<height { (plane + y * rowStride).update(from: source + y * width, count: width) }
        }
    }

    /// output[n] = conv(input[n]) (+ bias) for NCHW `input` [batch, inChannels, height, width]
    /// and `output` [batch, outChannels, outHeight, outWidth].
    func forward(_ input: UnsafePointer<Float>, batch: Int, packedWeights: UnsafePointer<Float>,
                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
        let offsets = tapOffsets()
        let (ho, wo, rs, px) = (outHeight, outWidth, rowStride, pixels)
        parallelFor(batch) { images in
            let padded = TensorStorage(zeros: inChannels * planeStride)
            let grid = TensorStorage(uninitializedCount: outBlocks * blockChannels * px)
            for i in images {
                pad(input + i * inChannels * height * width, into: padded.pointer)
                pc_conv_grid(padded.pointer, planeStride, Int32(inChannels), packedWeights, Int32(outBlocks),
                             offsets, Int32(taps), grid.pointer, px, px)
                let dst = output + i * outChannels * ho * wo
                for o in 0..<outChannels {
                    let shift = bias?[o] ?? 0
                    for y in 0..<ho {
                        let s = grid.pointer + o * px + y * rs, d = dst + (o * ho + y) * wo
                        if shift == 0 { d.update(from: s, count: wo) } else { for x in 0..<wo { d[x] = s[x] + shift } }
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
        // Images per kernel call: enough to amortise the final reductions, few enough that
        // their planes stay in L2 while every (output block, input channel) pair reads them.
        let bytesPerImage = (inChannels * planeStride + channels * dPixels) * 4
        let group = max(1, min(batch, 393_216 / bytesPerImage))
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
                        for y in 0..<ho { (dst + o * dPixels + y * rs).update(from: src + (o * ho + y) * wo, count: wo) }
                    }
                }
                pc_conv_grid_weight_grad(padded.pointer, planeStride, inChannels * planeStride, Int32(inChannels),
                                         dGrid.pointer, dPixels, channels * dPixels, Int32(channels),
                                         Int32(count), dPixels, offsets, Int32(paddedTaps), sum)
            }
        }
        let total = TensorStorage(uninitializedCount: length)
        partials.sum(into: total.pointer)
        for o in 0..<outChannels {
            for c in 0..<inChannels {
                (gradient + (o * inChannels + c) * taps)
                    .update(from: total.pointer + (o * inChannels + c) * paddedTaps, count: taps)
            }
        }
    }
}

@inline(__always)
func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
