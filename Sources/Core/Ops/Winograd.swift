import CKernels
import Foundation

/// The matrices of Winograd's minimal filtering algorithm F(m, r): m outputs of an r-tap
/// correlation from alpha = m + r - 1 inputs with alpha multiplications,
///     y = A^T [(G g) (.) (B^T d)],
/// and in two dimensions Y = A^T [(G g G^T) (.) (B^T d B)] A.
///
/// They come from Toom-Cook polynomial multiplication by the transposition principle. With E_n
/// the alpha x n matrix that evaluates a polynomial of degree < n at the points (0, 1, -1, 2,
/// -2, 1/2, -1/2, the first alpha - 1 of them, then infinity, which reads the leading
/// coefficient), the linear convolution s = h * g is E_alpha^-1 [(E_m h) (.) (E_r g)], and the
/// correlation is its transpose in h: A^T = E_m^T, G = E_r, B^T = E_alpha^-T. Row j of B^T is
/// then the j-th Lagrange basis polynomial; it is scaled by its denominator prod (p_j - p_k)
/// and G's row j divided by it (an exact rescaling), so B^T holds the small integer (or dyadic)
/// coefficients of prod over k != j of (x - p_k), exact in float, and the divisions fall on
/// the weights, which are transformed once, in double.
public struct WinogradTransform: Sendable, Equatable {
    public let m: Int, r: Int
    public var alpha: Int { m + r - 1 }
    /// A^T, m x alpha; G, alpha x r; B^T, alpha x alpha; all row-major.
    public let at: [Float], g: [Float], bt: [Float]

    static let points: [Double] = [0, 1, -1, 2, -2, 0.5, -0.5]

    public init(m: Int, r: Int) {
        let alpha = m + r - 1
        precondition(m >= 1 && r >= 1 && alpha <= Self.points.count + 1, "Winograd F(\(m), \(r)) needs alpha <= 8")
        self.m = m; self.r = r
        let p = Array(Self.points.prefix(alpha - 1))
        /// Row j of E_n: point j's powers 0..<n, or the leading coefficient for infinity.
        func evaluation(_ j: Int, _ n: Int) -> [Double] {
            j == alpha - 1 ? (0..<n).map { $0 == n - 1 ? 1 : 0 } : (0..<n).map { pow(p[j], Double($0)) }
        }
        let inverse = invertMatrix((0..<alpha).map { evaluation($0, alpha) })
        let scale = (0..<alpha).map { j in
            j == alpha - 1 ? 1.0 : p.indices.filter { $0 != j }.reduce(1.0) { $0 * (p[j] - p[$1]) }
        }
        bt = (0..<alpha).flatMap { j in (0..<alpha).map { k in Float(inverse[k][j] * scale[j]) } }
        g = (0..<alpha).flatMap { j in evaluation(j, r).map { Float($0 / scale[j]) } }
        at = (0..<m).flatMap { i in (0..<alpha).map { j in Float(evaluation(j, m)[i]) } }
    }
}

/// Gauss-Jordan inversion with partial pivoting of a small invertible matrix.
private func invertMatrix(_ matrix: [[Double]]) -> [[Double]] {
    let n = matrix.count
    var a = matrix.enumerated().map { i, row in row + (0..<n).map { $0 == i ? 1.0 : 0.0 } }
    for column in 0..<n {
        let pivot = (column..<n).max { abs(a[$0][column]) < abs(a[$1][column]) }!
        a.swapAt(column, pivot)
        let lead = a[column][column]
        a[column] = a[column].map { $0 / lead }
        for row in 0..<n where row != column {
            let factor = a[row][column]
            if factor != 0 { a[row] = zip(a[row], a[column]).map { $0 - factor * $1 } }
        }
    }
    return a.map { Array($0[n...]) }
}

/// A stride-1 square convolution computed with Winograd's F(m x m, r x r), which saves most of
/// the multiplications (F(4, 3): 36 instead of 144 per 4 x 4 outputs and channel pair; F(4, 5):
/// 64 instead of 400).
///
/// The output is cut into m x m tiles; each tile's alpha x alpha input patch is transformed
/// (`pc_winograd_input_transform`), the alpha^2 channel sums are matrix products
/// [tiles x inChannels] x [inChannels x outChannels] (`pc_winograd_products`, a 6 x 16
/// register-tiled AVX2 kernel that reads the operands in place; sgemm without AVX2), and the
/// output transform writes the tiles back to NCHW planes. Tiles go in blocks of `tileBlock`
/// so each block's transformed inputs and products stay in cache; where the transformed weights
/// outgrow L2, a block takes the batch's tiles in order, across images, so small planes (four
/// tiles at 7x7 or 8x8) still make deep products, and a batch of few blocks is also split by
/// output channels (`outputSlices`). In inference the transformed weights are kept between
/// calls (`WinogradWeightCache`).
///
/// Results agree with the direct convolution up to float rounding, which the transforms
/// amplify somewhat (tested within 1e-5 of sqrt(inChannels * kernel^2)). `conv2D` runs forward
/// passes, input gradients and weight gradients here.
struct WinogradConv {
    let inChannels: Int, outChannels: Int
    let height: Int, width: Int
    let kernel: Int, padding: Int
    let transform: WinogradTransform
    /// Tiles per block: 16 for up to 16 input channels, so a block's transformed inputs (36 KB
    /// for F(4, 3)) stay in L1 (measured on W3: inference +7% at one thread on an AVX-512 CPU),
    /// 64 above, so the transformed weights, which grow with both channel counts, are read once
    /// per 64 tiles.
    var tileBlock: Int
    /// Whether this is another convolution's adjoint (`init?(adjointOf:)`), whose `forward` takes
    /// that convolution's weights [outChannels, inChannels, k, k] of this one as they are: kernel
    /// (o, c) is then their kernel (c, o) flipped in both directions, read in place by the
    /// weight transform.
    let isAdjoint: Bool

    init(inChannels: Int, outChannels: Int, height: Int, width: Int, kernel: Int, padding: Int, m: Int,
         isAdjoint: Bool = false) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.height = height; self.width = width
        self.kernel = kernel; self.padding = padding
        self.transform = WinogradTransform(m: m, r: kernel)
        self.tileBlock = inChannels <= 16 ? 16 : 64
        self.isAdjoint = isAdjoint
    }

    /// The tile size for a kernel, output plane and channel counts, or nil where this path is not
    /// used: F(4, 3) for 3x3 and F(4, 5) for 5x5 kernels on planes of 7 or more each way (two
    /// tiles, the second at least 3/4 used: ResNet-18's last stage at 224 pixels); F(2, 3) for 3x3
    /// kernels on planes of 4 to 6 with 128 or more channels in and out (ResNet-18's 512-channel
    /// 4x4 stage at 128 pixels, where F(4, 3) wasted most of its tiles: there, against sgemm at
    /// two threads, 203-220 GFLOP/s-equivalent instead of 152-181 in all three passes; measured
    /// only at 512 channels, hence the bound). Smaller planes and channel counts stay on the
    /// direct sums or sgemm (`docs/performance.md`).
    static func tileSize(kernel: Int, outHeight: Int, outWidth: Int, inChannels: Int, outChannels: Int) -> Int? {
        let side = min(outHeight, outWidth)
        if kernel == 3, (4...6).contains(side), inChannels >= 128, outChannels >= 128 { return 2 }
        guard kernel == 3 || kernel == 5, side >= 7 else { return nil }
        return 4
    }

    /// Whether a convolution goes here: stride 1, one group, a square 3x3 or 5x5 kernel,
    /// padding below the kernel size, 16 or more channels in and out (so the products, not the
    /// transforms, carry the work) and a plane `tileSize` takes. Measured on this project's
    /// AVX2 machine: every W1-W4 inference convolution that qualifies runs faster this way,
    /// 11x11 and 8x8 output planes included (`docs/performance.md`).
    static func handles(inChannels: Int, outChannels: Int, outHeight: Int, outWidth: Int, kernelH: Int, kernelW: Int,
                        stride: Int, padding: Int, groups: Int) -> Bool {
        guard stride == 1, groups == 1, kernelH == kernelW, padding < kernelH,
              tileSize(kernel: kernelH, outHeight: outHeight, outWidth: outWidth, inChannels: inChannels,
                       outChannels: outChannels) != nil else { return false }
        return inChannels >= 16 && outChannels >= 16
    }

    /// Whether `conv` (forward) takes this path.
    static func handles(_ conv: GridConv) -> Bool {
        conv.padH == conv.padW
            && handles(inChannels: conv.inChannels, outChannels: conv.outChannels, outHeight: conv.outHeight,
                       outWidth: conv.outWidth, kernelH: conv.kernelH, kernelW: conv.kernelW, stride: conv.stride,
                       padding: conv.padH, groups: 1)
    }

    /// The Winograd form of a stride-1 square grid convolution.
    init(_ conv: GridConv) {
        precondition(conv.stride == 1 && conv.kernelH == conv.kernelW && conv.padH == conv.padW)
        self.init(inChannels: conv.inChannels, outChannels: conv.outChannels, height: conv.height, width: conv.width,
                  kernel: conv.kernelH, padding: conv.padH,
                  m: Self.tileSize(kernel: conv.kernelH, outHeight: conv.outHeight, outWidth: conv.outWidth,
                                   inChannels: conv.inChannels, outChannels: conv.outChannels)!)
    }

    /// The convolution that maps `conv`'s output gradient to its input gradient (the full
    /// correlation with the flipped, transposed kernel, cropped to the input), where it takes
    /// this path.
    init?(adjointOf conv: GridConv) {
        let (k, pad) = (conv.kernelH, conv.kernelH - 1 - conv.padH)
        guard conv.stride == 1, conv.kernelW == k, conv.padW == conv.padH,
              Self.handles(inChannels: conv.outChannels, outChannels: conv.inChannels, outHeight: conv.height,
                           outWidth: conv.width, kernelH: k, kernelW: k, stride: 1, padding: pad, groups: 1)
        else { return nil }
        self.init(inChannels: conv.outChannels, outChannels: conv.inChannels, height: conv.outHeight,
                  width: conv.outWidth, kernel: k, padding: pad,
                  m: Self.tileSize(kernel: k, outHeight: conv.height, outWidth: conv.width, inChannels: conv.outChannels,
                                   outChannels: conv.inChannels)!, isAdjoint: true)
    }

    /// Runs a weight transform (`pc_winograd_weight_transform`, `pc_winograd_weight_gradient_transform`)
    /// in parallel over ranges of input channels, each with every output channel: a range then
    /// writes whole runs of U's rows, and each of its vectors holds sixteen output channels.
    /// Split by output channels instead, at two threads ResNet-18's 64-channel layers gave each
    /// call eight, half a vector: their transform ran 3x slower, measured alone on a cold cache.
    /// Ranges are whole groups of 16 channels (the last may be short), so the weight gradient's
    /// rows [o][c][k][k] are split between threads into runs of 16 kernels (9 cache lines at 3x3).
    func forInputChannelRanges(_ body: (_ first: Int32, _ count: Int32) -> Void) {
        parallelFor((inChannels + 15) / 16) { groups in
            let first = groups.lowerBound * 16
            body(Int32(first), Int32(min(groups.upperBound * 16, inChannels) - first))
        }
    }

    var m: Int { transform.m }
    var alpha: Int { transform.alpha }
    var outHeight: Int { height + 2 * padding - kernel + 1 }
    var outWidth: Int { width + 2 * padding - kernel + 1 }
    var tilesY: Int { (outHeight + m - 1) / m }
    var tilesX: Int { (outWidth + m - 1) / m }
    var paddedHeight: Int { tilesY * m + kernel - 1 }
    var paddedWidth: Int { tilesX * m + kernel - 1 }

    /// output = conv(input) (+ bias) for NCHW `input` [batch, inChannels, height, width],
    /// `weight` [outChannels, inChannels, kernel, kernel] (for an adjoint, the forward
    /// convolution's [inChannels, outChannels, kernel, kernel]) and `output` [batch, outChannels,
    /// outHeight, outWidth].
    func forward(_ input: UnsafePointer<Float>, batch: Int, weight: UnsafePointer<Float>,
                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, cachingWeights: Bool = true) {
        let (lanes, a2) = (8, alpha * alpha)
        let (inPadded, outPadded) = (roundUp(inChannels, lanes), roundUp(outChannels, lanes))
        let inBlocks = inPadded / lanes
        let packedImage = inBlocks * paddedHeight * paddedWidth * lanes
        let (tiles, block) = (tilesY * tilesX, tileBlock)
        // Blocks span images only where the transformed weights outgrow L2 (1 MB on the machines
        // measured): then the fewer blocks read them, the better (ResNet-18's 128- to 512-channel
        // stages). Smaller weights stay in cache either way; there blocks keep within one image
        // as they always did (W1-W4 measured the same both ways, within this VM's noise).
        let spansImages = tiles < block && a2 * inPadded * outPadded * 4 > 1 << 20
        let blocksPerImage = (tiles + block - 1) / block
        let blocks = spansImages ? (batch * tiles + block - 1) / block : batch * blocksPerImage
        /// Block b's tiles among the batch's: [start, start + count).
        func blockTiles(_ b: Int) -> (start: Int, count: Int) {
            if spansImages { return (b * block, min(block, batch * tiles - b * block)) }
            let (image, index) = b.quotientAndRemainder(dividingBy: blocksPerImage)
            return (image * tiles + index * block, min(block, tiles - index * block))
        }
        let slices = outputSlices(blocks: blocks, outPadded: outPadded)
        let sliceWidth = roundUp((outPadded + slices - 1) / slices, 32)

        let transformWeights = { (u: UnsafeMutablePointer<Float>) in
            forInputChannelRanges { first, count in
                transform.g.withUnsafeBufferPointer { g in
                    let taps = kernel * kernel
                    let (outStride, inStride) = isAdjoint ? (taps, outChannels * taps) : (inChannels * taps, taps)
                    pc_winograd_weight_transform(weight, outStride, inStride, isAdjoint ? 1 : 0, Int32(outChannels),
                                                 first, count, Int32(kernel), Int32(alpha), g.baseAddress, u,
                                                 inPadded * outPadded, outPadded)
                }
            }
        }
        let u: TensorStorage
        if cachingWeights {
            u = WinogradWeightCache.shared.transformed(weight, of: self, make: transformWeights)
        } else {
            u = transformedWeightStorage()
            transformWeights(u.pointer)
        }
        let pack = { (image: Int, packed: UnsafeMutablePointer<Float>) in
            pc_winograd_pack_input(input + image * inChannels * height * width, Int32(inChannels), Int32(height),
                                   Int32(width), Int32(padding), Int32(padding), Int32(paddedHeight),
                                   Int32(paddedWidth), packed)
        }
        // With a batch of several images per chunk of work, each chunk packs the images of its
        // own items as it reaches them, so the packed planes it transforms are still in its
        // cache; a smaller batch (a chunk would hold parts of one image) is packed once up front.
        let packedAhead: TensorStorage? = batch >= 4 * Threads.count ? nil : TensorStorage(uninitializedCount: batch * packedImage)
        if let packedAhead {
            parallelFor(batch) { images in for i in images { pack(i, packedAhead.pointer + i * packedImage) } }
        }
        /// The runs of one image's tiles that make up the block of tiles [start, start + count)
        /// of the whole batch: (image, first tile, tiles, row in the block).
        func segments(_ start: Int, _ count: Int) -> [(image: Int, first: Int, count: Int, row: Int)] {
            var runs: [(image: Int, first: Int, count: Int, row: Int)] = [], g = start
            while g < start + count {
                let (image, first) = g.quotientAndRemainder(dividingBy: tiles)
                let n = min(tiles - first, start + count - g)
                runs.append((image, first, n, g - start))
                g += n
            }
            return runs
        }
        /// Each block's runs, worked out once for the input transforms, products and output transforms.
        let blockRuns = (0..<blocks).map { b in
            let (start, count) = blockTiles(b)
            return segments(start, count)
        }
        let blockFloats = a2 * block * inPadded
        /// Writes the transformed inputs of block `b`'s run into `v` ([alpha^2][block][inPadded]),
        /// packing its image into `packed` unless the batch was packed ahead.
        func transformInputs(_ run: (image: Int, first: Int, count: Int, row: Int), into v: UnsafeMutablePointer<Float>,
                             packed: TensorStorage?, packedIndex: inout Int, bt: UnsafePointer<Float>) {
            let source: UnsafeMutablePointer<Float>
            if let packed {
                if run.image != packedIndex { pack(run.image, packed.pointer); packedIndex = run.image }
                source = packed.pointer
            } else {
                source = packedAhead!.pointer + run.image * packedImage
            }
            pc_winograd_input_transform(source, Int32(inBlocks), Int32(paddedHeight), Int32(paddedWidth),
                                        Int32(m), Int32(alpha), bt, Int32(tilesX), Int32(run.first), Int32(run.count),
                                        v + run.row * inPadded, block * inPadded, inPadded)
        }
        transform.bt.withUnsafeBufferPointer { bt in
            // Blocks split into output slices transform their inputs once, in a pass of their
            // own over the runs of all blocks, which the slices then share: otherwise every item
            // would transform its block again (four times over for four slices of one block).
            let shared: TensorStorage? = slices > 1 ? TensorStorage(uninitializedCount: blocks * blockFloats) : nil
            if let shared {
                let runs = blockRuns.enumerated().flatMap { b, runs in runs.map { (block: b, run: $0) } }
                parallelFor(runs.count) { range in
                    let packed = packedAhead == nil ? TensorStorage(uninitializedCount: packedImage) : nil
                    var packedIndex = -1
                    for (b, run) in runs[range] {
                        transformInputs(run, into: shared.pointer + b * blockFloats, packed: packed, packedIndex: &packedIndex,
                                        bt: bt.baseAddress!)
                    }
                }
            }
            transform.at.withUnsafeBufferPointer { at in
                // Item = (block of tiles, slice of output channels), slices of one block adjacent.
                parallelFor(blocks * slices) { items in
                    let packed = packedAhead == nil && shared == nil ? TensorStorage(uninitializedCount: packedImage) : nil
                    var packedIndex = -1, transformedBlock = -1
                    let own = shared == nil ? TensorStorage(uninitializedCount: blockFloats) : nil
                    let products = TensorStorage(uninitializedCount: a2 * block * outPadded)
                    for item in items {
                        let (b, slice) = item.quotientAndRemainder(dividingBy: slices)
                        let (runs, count) = (blockRuns[b], blockTiles(b).count)
                        let v = shared.map { $0.pointer + b * blockFloats } ?? own!.pointer
                        if let own, b != transformedBlock {
                            for run in runs {
                                transformInputs(run, into: own.pointer, packed: packed, packedIndex: &packedIndex, bt: bt.baseAddress!)
                            }
                            transformedBlock = b
                        }
                        let c0 = slice * sliceWidth, width = min(sliceWidth, outPadded - c0)
                        guard width > 0 else { continue }
                        if pc_winograd_products(v, block * inPadded, inPadded, u.pointer + c0, inPadded * outPadded,
                                                outPadded, products.pointer + c0, block * outPadded, outPadded, Int32(a2),
                                                Int32(count), Int32(inPadded), Int32(width)) == 0 {
                            for xi in 0..<a2 {
                                gemm(m: count, n: width, k: inPadded, v + xi * block * inPadded, lda: inPadded,
                                     u.pointer + xi * inPadded * outPadded + c0, ldb: outPadded,
                                     products.pointer + xi * block * outPadded + c0, ldc: outPadded)
                            }
                        }
                        let channels = min(c0 + width, outChannels) - c0
                        for run in runs {
                            pc_winograd_output_transform(products.pointer + run.row * outPadded + c0, block * outPadded,
                                                         outPadded, Int32(channels), Int32(m), Int32(alpha), at.baseAddress,
                                                         bias.map { $0 + c0 }, Int32(tilesX), Int32(run.first),
                                                         Int32(run.count),
                                                         output + (run.image * outChannels + c0) * outHeight * outWidth,
                                                         Int32(outHeight), Int32(outWidth))
                        }
                    }
                }
            }
        }
    }

    /// Storage for U [alpha^2][inPadded][outPadded], zeroed only where channel counts are padded:
    /// the weight transform writes every row c < inChannels and column o < outChannels, so
    /// unpadded layers (all of ResNet-18's; 9.4 MB at 256 channels) skip the memset.
    func transformedWeightStorage() -> TensorStorage {
        let (inPadded, outPadded) = (roundUp(inChannels, 8), roundUp(outChannels, 8))
        let count = alpha * alpha * inPadded * outPadded
        return inPadded == inChannels && outPadded == outChannels ? TensorStorage(uninitializedCount: count) : TensorStorage(zeros: count)
    }

    /// Slices of the output channels each block of tiles is split into: one while the blocks
    /// keep every thread busy; otherwise (a small batch of small planes: ResNet-18's 7x7 stage
    /// at 224 pixels holds 32 tiles in batches of 8) enough 32-channel slices for two items per
    /// thread, each reading its own columns of the transformed weights.
    func outputSlices(blocks: Int, outPadded: Int) -> Int {
        let wanted = 2 * Threads.count
        guard blocks < wanted else { return 1 }
        return max(1, min(outPadded / 32, (wanted + blocks - 1) / blocks))
    }

    /// Tiles whose transforms one thread gathers before multiplying them out: the depth of each
    /// weight-gradient product (one image's 16 or 64 tiles alone would make shallow ones).
    var gradientTiles = 256

    /// gradient = dL/dweight [outChannels, inChannels, kernel, kernel] for NCHW `input`
    /// [batch, inChannels, height, width] and `outputGradient` [batch, outChannels, outHeight,
    /// outWidth]; overwrites `gradient`.
    ///
    /// The forward pass computes Y = A^T [sum over channels of U (.) V] A per tile, so by
    /// linearity dU[xi] = sum over tiles of V[xi]^T dP[xi] with dP = A dY A^T, and the weight
    /// gradient is G^T dU G: the tile sums become alpha^2 deep matrix products (sgemm, one per
    /// tile position, with the tiles as their depth) on 1/4 (F(4, 3)) of the direct method's
    /// multiplications.
    func weightGradient(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                        into gradient: UnsafeMutablePointer<Float>) {
        let (lanes, a2) = (8, alpha * alpha)
        let (inPadded, outPadded) = (roundUp(inChannels, lanes), roundUp(outChannels, lanes))
        let (inBlocks, outBlocks) = (inPadded / lanes, outPadded / lanes)
        let tiles = tilesY * tilesX
        let (gradHeight, gradWidth) = (tilesY * m, tilesX * m)
        if batch * tiles <= gradientTiles {
            shallowWeightGradient(input: input, outputGradient: outputGradient, batch: batch, into: gradient)
            return
        }
        let rows = gradientTiles
        // Chunks of whole images deep enough for the products, but at least one per thread.
        let grain = max(1, min(rows / tiles, batch / Threads.count))
        let partials = ChunkPartials(length: a2 * inPadded * outPadded)
        transform.bt.withUnsafeBufferPointer { bt in
            transform.at.withUnsafeBufferPointer { at in
                parallelFor(batch, grain: grain) { images in
                    let sum = partials.make(for: images.lowerBound)
                    let packed = TensorStorage(uninitializedCount: inBlocks * paddedHeight * paddedWidth * lanes)
                    let packedGradient = TensorStorage(uninitializedCount: outBlocks * gradHeight * gradWidth * lanes)
                    let v = TensorStorage(uninitializedCount: a2 * rows * inPadded)
                    let dp = TensorStorage(uninitializedCount: a2 * rows * outPadded)
                    var gathered = 0
                    func multiply() {
                        for xi in 0..<a2 {
                            gemm(transposeA: true, m: inPadded, n: outPadded, k: gathered,
                                 v.pointer + xi * rows * inPadded, lda: inPadded,
                                 dp.pointer + xi * rows * outPadded, ldb: outPadded,
                                 beta: 1, sum + xi * inPadded * outPadded, ldc: outPadded)
                        }
                        gathered = 0
                    }
                    for image in images {
                        packForGradient(image, input: input, outputGradient: outputGradient, packed: packed.pointer,
                                        packedGradient: packedGradient.pointer)
                        var first = 0
                        while first < tiles {
                            let count = min(rows - gathered, tiles - first)
                            pc_winograd_input_transform(packed.pointer, Int32(inBlocks), Int32(paddedHeight),
                                                        Int32(paddedWidth), Int32(m), Int32(alpha), bt.baseAddress,
                                                        Int32(tilesX), Int32(first), Int32(count),
                                                        v.pointer + gathered * inPadded, rows * inPadded, inPadded)
                            pc_winograd_gradient_transform(packedGradient.pointer, Int32(outBlocks), Int32(gradHeight),
                                                           Int32(gradWidth), Int32(m), Int32(alpha), at.baseAddress,
                                                           Int32(tilesX), Int32(first), Int32(count),
                                                           dp.pointer + gathered * outPadded, rows * outPadded, outPadded)
                            gathered += count
                            first += count
                            if gathered == rows { multiply() }
                        }
                    }
                    if gathered > 0 { multiply() }
                }
            }
        }
        let du = TensorStorage(uninitializedCount: a2 * inPadded * outPadded)
        partials.sum(into: du.pointer)
        inverseTransform(du.pointer, into: gradient)
    }

    /// The weight gradient of a batch whose tiles all fit one product's depth (`gradientTiles`:
    /// ResNet-18's 8x8 and 16x16 stages at 128 pixels): every image's tiles are transformed
    /// first, in parallel, then each tile position's product runs whole on one thread. Split by
    /// images instead, each thread wrote a full-size partial sum from its share of the depth and
    /// the partials were added after (W5's 8x8 stage at two threads: 247-258 GFLOP/s that way,
    /// 322-337 this way).
    private func shallowWeightGradient(input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                                       into gradient: UnsafeMutablePointer<Float>) {
        let (lanes, a2) = (8, alpha * alpha)
        let (inPadded, outPadded) = (roundUp(inChannels, lanes), roundUp(outChannels, lanes))
        let (inBlocks, outBlocks) = (inPadded / lanes, outPadded / lanes)
        let tiles = tilesY * tilesX, rows = batch * tiles
        let (gradHeight, gradWidth) = (tilesY * m, tilesX * m)
        let v = TensorStorage(uninitializedCount: a2 * rows * inPadded)
        let dp = TensorStorage(uninitializedCount: a2 * rows * outPadded)
        transform.bt.withUnsafeBufferPointer { bt in
            transform.at.withUnsafeBufferPointer { at in
                parallelFor(batch) { images in
                    let packed = TensorStorage(uninitializedCount: inBlocks * paddedHeight * paddedWidth * lanes)
                    let packedGradient = TensorStorage(uninitializedCount: outBlocks * gradHeight * gradWidth * lanes)
                    for image in images {
                        packForGradient(image, input: input, outputGradient: outputGradient, packed: packed.pointer,
                                        packedGradient: packedGradient.pointer)
                        pc_winograd_input_transform(packed.pointer, Int32(inBlocks), Int32(paddedHeight), Int32(paddedWidth),
                                                    Int32(m), Int32(alpha), bt.baseAddress, Int32(tilesX), 0, Int32(tiles),
                                                    v.pointer + image * tiles * inPadded, rows * inPadded, inPadded)
                        pc_winograd_gradient_transform(packedGradient.pointer, Int32(outBlocks), Int32(gradHeight),
                                                       Int32(gradWidth), Int32(m), Int32(alpha), at.baseAddress, Int32(tilesX),
                                                       0, Int32(tiles), dp.pointer + image * tiles * outPadded,
                                                       rows * outPadded, outPadded)
                    }
                }
            }
        }
        // In blocks of dU's rows of 64K floats or fewer, so the rows `gemm` clears (with a depth
        // of only the batch's tiles, clearing is a pass of its own) are still in L2 when the
        // product adds into them. Whole 1 MB matrices at a time, the clearing was 3.3% of W5's
        // two-thread training step (perf), its 512-channel F(2, 3) layers' 16.8 MB of dU.
        let rowBlock = max(8, min(inPadded, (1 << 16) / outPadded / 8 * 8))
        let rowBlocks = (inPadded + rowBlock - 1) / rowBlock
        let du = TensorStorage(uninitializedCount: a2 * inPadded * outPadded)
        parallelFor(a2 * rowBlocks) { items in
            for item in items {
                let (xi, block) = item.quotientAndRemainder(dividingBy: rowBlocks)
                let first = block * rowBlock
                gemm(transposeA: true, m: min(rowBlock, inPadded - first), n: outPadded, k: rows,
                     v.pointer + xi * rows * inPadded + first, lda: inPadded, dp.pointer + xi * rows * outPadded,
                     ldb: outPadded, du.pointer + (xi * inPadded + first) * outPadded, ldc: outPadded)
            }
        }
        inverseTransform(du.pointer, into: gradient)
    }

    /// Packs one image of `input` (padded) and of `outputGradient` (to whole tiles) as the
    /// weight gradient's transforms read them.
    private func packForGradient(_ image: Int, input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
                                 packed: UnsafeMutablePointer<Float>, packedGradient: UnsafeMutablePointer<Float>) {
        pc_winograd_pack_input(input + image * inChannels * height * width, Int32(inChannels), Int32(height), Int32(width),
                               Int32(padding), Int32(padding), Int32(paddedHeight), Int32(paddedWidth), packed)
        pc_winograd_pack_input(outputGradient + image * outChannels * outHeight * outWidth, Int32(outChannels),
                               Int32(outHeight), Int32(outWidth), 0, 0, Int32(tilesY * m), Int32(tilesX * m), packedGradient)
    }

    /// gradient [outChannels, inChannels, kernel, kernel] = G^T dU G from dU [alpha^2][inPadded][outPadded].
    private func inverseTransform(_ du: UnsafePointer<Float>, into gradient: UnsafeMutablePointer<Float>) {
        let (inPadded, outPadded) = (roundUp(inChannels, 8), roundUp(outChannels, 8))
        transform.g.withUnsafeBufferPointer { g in
            forInputChannelRanges { first, count in
                pc_winograd_weight_gradient_transform(du, inPadded * outPadded, outPadded, Int32(outChannels),
                                                      Int32(inChannels), first, count, Int32(kernel), Int32(alpha),
                                                      g.baseAddress, gradient)
            }
        }
    }
}

/// The transformed weights U = G g G^T of the last few inference convolutions, so a model
/// run image after image transforms each layer's weights once. An entry serves a call only when
/// the weights are bit for bit those it was made from (a kept copy is compared), so training
/// steps or loaded files between calls can never meet stale transforms.
final class WinogradWeightCache: @unchecked Sendable {
    static let shared = WinogradWeightCache()
    private struct Entry {
        let shape: [Int]
        let weights: TensorStorage
        let transformed: TensorStorage
    }
    private var entries: [Entry] = []
    private var lock = pthread_mutex_t()
    /// Entries kept; the least recently used goes first.
    let capacity = 24

    private init() { pthread_mutex_init(&lock, nil) }

    /// U for `weight` [outChannels, inChannels, kernel, kernel] under `conv`'s transform: from
    /// the cache, or made by `make` (which fills `transformedWeightStorage()`).
    func transformed(_ weight: UnsafePointer<Float>, of conv: WinogradConv,
                     make: (UnsafeMutablePointer<Float>) -> Void) -> TensorStorage {
        let shape = [conv.outChannels, conv.inChannels, conv.kernel, conv.transform.m, conv.isAdjoint ? 1 : 0]
        let count = conv.outChannels * conv.inChannels * conv.kernel * conv.kernel
        pthread_mutex_lock(&lock)
        if let i = entries.firstIndex(where: { $0.shape == shape && memcmp($0.weights.pointer, weight, count * 4) == 0 }) {
            let entry = entries.remove(at: i)
            entries.append(entry)
            pthread_mutex_unlock(&lock)
            return entry.transformed
        }
        pthread_mutex_unlock(&lock)
        let u = conv.transformedWeightStorage()
        make(u.pointer)
        let copy = TensorStorage(uninitializedCount: count)
        copy.pointer.update(from: weight, count: count)
        pthread_mutex_lock(&lock)
        entries.append(Entry(shape: shape, weights: copy, transformed: u))
        if entries.count > capacity { entries.removeFirst() }
        pthread_mutex_unlock(&lock)
        return u
    }
}

extension Tensor {
    /// Whether convolutions may take the Winograd path: on unless the environment sets
    /// PERCEPT_WINOGRAD=0; tests and `percept bench --no-winograd` switch it off to compare with
    /// the direct sums.
    nonisolated(unsafe) public static var winogradEnabled = ProcessInfo.processInfo.environment["PERCEPT_WINOGRAD"] != "0"
}
