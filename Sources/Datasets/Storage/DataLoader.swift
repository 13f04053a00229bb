import PerceptCore
import Foundation

/// Random training-time transforms, applied identically to an image and its mask or boxes.
public struct Augmentation: Sendable {
    /// Random crop of the original size from the image padded by this many pixels (0: none).
    public var cropPadding: Int
    /// Mirror left-right with probability 1/2.
    public var horizontalFlip: Bool
    /// Probability of random erasing (Zhong et al. 2017) after the crop and flip: a rectangle of
    /// 2-40% of the image, aspect ratio 0.3-3.3, filled with uniform noise; its mask pixels are
    /// ignored. 0: never.
    public var erasing: Float
    /// Probability that another item drawn from the loaded rows is pasted onto the image before
    /// the crop and flip, by the rule compose draws canvases with (the brighter pixel wins), so
    /// that items overlap as on segmentation canvases. Classification (`PastedItem`): a whole
    /// image (rarely the image itself, which changes nothing) over the image's edge, the two
    /// frames overlapping with IoU 0.2 at most; the label stays the image's. Segmentation
    /// (`PastedRegion`): one item region of another canvas with its label, onto a canvas of
    /// fewer than 3 items, its box overlapping theirs by IoU 0.2 at most. Other tasks: unused.
    /// 0: never.
    public var pasting: Float
    /// Largest level of background noise (a fraction of 255) raised under each image after the
    /// crop and flip; see `NoiseFloor`. 0: none.
    public var noise: Float
    /// Largest relative change of size: each image is scaled about its centre by a factor drawn
    /// uniformly from [1 - scale, 1 + scale] with the crop and flip (Ultralytics' `scale`). 0: none.
    public var scale: Float
    /// Fraction of rescaled images sampled nearest-neighbour instead of bilinearly, so that a model
    /// sees items scaled by a sharper filter than its data's (masks are always nearest).
    public var nearest: Float
    /// Probability of sharpening an image after the crop and flip; see `Sharpening`. 0: never.
    public var sharpen: Float

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, erasing: Float = 0, pasting: Float = 0, noise: Float = 0,
                scale: Float = 0, nearest: Float = 0, sharpen: Float = 0) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
        self.erasing = erasing
        self.pasting = pasting
        self.noise = noise
        self.scale = scale
        self.nearest = nearest
        self.sharpen = sharpen
    }

    /// No augmentation.
    public static let none = Augmentation()
}

/// One image's crop, flip and scale, applied alike to its pixels, its mask and its boxes: the
/// image is scaled by `scale` about its centre, shifted by (`offsetX`, `offsetY`) and mirrored,
/// so output pixel centre (x + 1/2, y + 1/2) shows source point (`u(x)`, `v(y)`); sources
/// outside the image are padding. Rescaled images are sampled bilinearly or (`Augmentation.nearest`)
/// nearest-neighbour; masks always nearest-neighbour (the pixel whose span holds the point).
struct CropFlip {
    let width: Int, height: Int
    let offsetX: Int, offsetY: Int
    let flip: Bool
    /// 1: no rescaling (every output pixel is one source pixel).
    let scale: Float
    /// Nearest source column and row of each output column and row (out of range: padding).
    let columns: [Int], rows: [Int]
    /// For an image rescaled bilinearly: each output column's and row's lower source pixel and
    /// the upper one's weight; nil when images are sampled nearest-neighbour too.
    let bilinear: (columns: [Int], columnWeights: [Float], rows: [Int], rowWeights: [Float])?

    /// Draws the flip, then the x and y offsets in [-padding, padding], then (with
    /// `augmentation.scale`) the scale and the filter, from `generator`.
    init(width: Int, height: Int, augmentation: Augmentation, using generator: inout SeededGenerator) {
        self.width = width; self.height = height
        let padding = augmentation.cropPadding
        flip = augmentation.horizontalFlip && generator.next() & 1 == 1
        offsetX = padding > 0 ? Int.random(in: 0...(2 * padding), using: &generator) - padding : 0
        offsetY = padding > 0 ? Int.random(in: 0...(2 * padding), using: &generator) - padding : 0
        var nearest = true
        if augmentation.scale > 0 {
            scale = 1 + augmentation.scale * (2 * generator.nextUniform() - 1)
            nearest = augmentation.nearest > 0 && generator.nextUniform() < augmentation.nearest
        } else {
            scale = 1
        }
        let (flip, offsetX, offsetY, scale) = (flip, offsetX, offsetY, scale)
        columns = (0..<width).map { x in Int((Self.source(flip ? width - 1 - x : x, size: width, scale: scale) + Float(offsetX)).rounded(.down)) }
        rows = (0..<height).map { y in Int((Self.source(y, size: height, scale: scale) + Float(offsetY)).rounded(.down)) }
        if scale != 1 && !nearest {
            // Pixel centres: source coordinate u - 1/2 lies between pixels floor and floor + 1.
            func axis(_ size: Int, offset: Int, flipped: Bool) -> (lower: [Int], weight: [Float]) {
                var lower: [Int] = [], weight: [Float] = []
                for x in 0..<size {
                    let u = Self.source(flipped ? size - 1 - x : x, size: size, scale: scale) + Float(offset) - 0.5
                    let i = u.rounded(.down)
                    lower.append(Int(i)); weight.append(u - i)
                }
                return (lower, weight)
            }
            let x = axis(width, offset: offsetX, flipped: flip), y = axis(height, offset: offsetY, flipped: false)
            bilinear = (x.lower, x.weight, y.lower, y.weight)
        } else {
            bilinear = nil
        }
    }

    /// Where output pixel `x`'s centre falls in the unshifted source, in pixel units (pixel i
    /// spans [i, i + 1)).
    @inline(__always) static func source(_ x: Int, size: Int, scale: Float) -> Float {
        let centre = Float(size) / 2
        return scale == 1 ? Float(x) + 0.5 : (Float(x) + 0.5 - centre) / scale + centre
    }

    /// Fills the `height` x `width` plane `output` from the plane `input` nearest-neighbour:
    /// `convert` maps a source value, `padding` fills what comes from outside.
    @inline(__always)
    func apply<Source, Output>(_ input: UnsafePointer<Source>, into output: UnsafeMutablePointer<Output>,
                               padding: Output, _ convert: (Source) -> Output) {
        for y in 0..<height {
            let sourceY = rows[y]
            let outRow = output + y * width
            if sourceY < 0 || sourceY >= height {
                outRow.update(repeating: padding, count: width)
                continue
            }
            let inRow = input + sourceY * width
            for x in 0..<width {
                let sx = columns[x]
                outRow[x] = sx >= 0 && sx < width ? convert(inRow[sx]) : padding
            }
        }
    }

    /// Fills the plane `output` with the image plane `input`'s pixels times `multiplier` plus
    /// `shift` (outside: `shift`, a black pixel), bilinearly when the image is rescaled so.
    func apply(image input: UnsafePointer<UInt8>, into output: UnsafeMutablePointer<Float>, multiplier: Float, shift: Float) {
        guard let tables = bilinear else { return apply(input, into: output, padding: shift) { Float($0) * multiplier + shift } }
        let (lowerX, weightX, lowerY, weightY) = tables
        @inline(__always) func pixel(_ x: Int, _ y: Int) -> Float {
            x >= 0 && x < width && y >= 0 && y < height ? Float(input[y * width + x]) * multiplier + shift : shift
        }
        for y in 0..<height {
            let y0 = lowerY[y], ty = weightY[y]
            for x in 0..<width {
                let x0 = lowerX[x], tx = weightX[x]
                let top = pixel(x0, y0) * (1 - tx) + pixel(x0 + 1, y0) * tx
                let bottom = pixel(x0, y0 + 1) * (1 - tx) + pixel(x0 + 1, y0 + 1) * tx
                output[y * width + x] = top * (1 - ty) + bottom * ty
            }
        }
    }

    /// The box as it appears in the output, clipped to it; nil when nothing of it is left.
    func apply(_ box: DetectionBox) -> DetectionBox? {
        let w = Float(width), h = Float(height)
        // The inverse of `source`: source point s shows at (s - offset - size / 2) * scale + size / 2.
        let mapX = { (x: Float) in max(0, min(w, (x - Float(self.offsetX) - w / 2) * self.scale + w / 2)) }
        let mapY = { (y: Float) in max(0, min(h, (y - Float(self.offsetY) - h / 2) * self.scale + h / 2)) }
        var x1 = mapX(box.x1), x2 = mapX(box.x2)
        let y1 = mapY(box.y1), y2 = mapY(box.y2)
        if flip { (x1, x2) = (w - x2, w - x1) }
        // Boxes cropped away entirely have no area left to learn from.
        return x2 > x1 && y2 > y1 ? DetectionBox(x1: x1, y1: y1, x2: x2, y2: y2, label: box.label, ignore: box.ignore) : nil
    }
}

/// The rectangle one image's random erasing covers (rows `y`, columns `x`), drawn as
/// torchvision's `RandomErasing` does: up to ten tries at an area and a log-uniform aspect ratio
/// until the rectangle fits.
struct ErasedRectangle {
    let x: Range<Int>, y: Range<Int>

    /// Nil when the image is not erased this time (probability `1 - probability`, or no try fits).
    /// Draws nothing when `probability` is 0, so runs without erasing keep their random stream.
    init?(width: Int, height: Int, probability: Float, using generator: inout SeededGenerator) {
        guard probability > 0, generator.nextUniform() < probability else { return nil }
        let area = Float(width * height), logRatio = Foundation.log(Float(0.3))
        for _ in 0..<10 {
            let target = area * Float.random(in: 0.02...0.4, using: &generator)
            let ratio = Foundation.exp(Float.random(in: logRatio...(-logRatio), using: &generator))
            let h = Int((target * ratio).squareRoot().rounded()), w = Int((target / ratio).squareRoot().rounded())
            guard h >= 1, w >= 1, h < height, w < width else { continue }
            let top = Int.random(in: 0...(height - h), using: &generator)
            let left = Int.random(in: 0...(width - w), using: &generator)
            x = left..<(left + w); y = top..<(top + h)
            return
        }
        return nil
    }

    /// Sets the rectangle of the `width`-wide plane `plane` to values from `fill`.
    func apply<T>(to plane: UnsafeMutablePointer<T>, width: Int, _ fill: () -> T) {
        for row in y { for column in x { plane[row * width + column] = fill() } }
    }
}

/// A noise floor raised under one image (`Augmentation.noise`): every pixel becomes the maximum
/// of itself and a fresh noise value, as if the image had been composed on a noisier
/// background. The level is drawn uniformly from [0, largest] and the distribution (half-normal
/// or uniform, as `compose --noise-distribution` draws backgrounds) at random, so a model learns
/// to ignore backgrounds from black to heavy noise.
public struct NoiseFloor {
    /// In pixel units (0-255).
    public let level: Float
    public let distribution: NoiseDistribution

    /// Nil when `largest` is 0; draws nothing then, so runs without noise keep their random stream.
    public init?(largest: Float, using generator: inout SeededGenerator) {
        guard largest > 0 else { return nil }
        level = largest * 255 * generator.nextUniform()
        distribution = generator.next() & 1 == 0 ? .halfNormal : .uniform
    }

    /// Raises `count` values of one normalised plane (pixel v stored as v * scale + shift, scale > 0).
    public func apply(to plane: UnsafeMutablePointer<Float>, count: Int, scale: Float, shift: Float,
                      using generator: inout SeededGenerator) {
        for index in 0..<count {
            plane[index] = max(plane[index], Float(distribution.value(level: level, using: &generator)) * scale + shift)
        }
    }
}

/// One image's sharpening (`Augmentation.sharpen`), as torchvision's `adjust_sharpness`: each
/// interior pixel moves away from its 3x3 smoothing (weights 1, centre 5, over 13) by `factor`
/// (1: unchanged, 2: twice the difference), clamped to the pixel range; border pixels stay.
/// Items that a sharper filter scaled (nearest-neighbour) look so beside bilinear ones.
public struct Sharpening {
    public let factor: Float

    /// Nil when the image is not sharpened (probability `1 - probability`); draws nothing when
    /// `probability` is 0, so runs without sharpening keep their random stream. The factor is
    /// drawn uniformly from [1, 2].
    public init?(probability: Float, using generator: inout SeededGenerator) {
        guard probability > 0, generator.nextUniform() < probability else { return nil }
        factor = 1 + generator.nextUniform()
    }

    init(factor: Float) { self.factor = factor }

    /// Sharpens one normalised `width` x `height` plane (pixel v stored as v * scale + shift, scale > 0).
    public func apply(to plane: UnsafeMutablePointer<Float>, width: Int, height: Int, scale: Float, shift: Float) {
        guard width >= 3, height >= 3 else { return }
        let low = shift, high = 255 * scale + shift
        // The two rows above the one being written, as they were before sharpening.
        var above = Array(UnsafeBufferPointer(start: plane, count: width))
        var current = Array(UnsafeBufferPointer(start: plane + width, count: width))
        for y in 1..<(height - 1) {
            let below = plane + (y + 1) * width, row = plane + y * width
            for x in 1..<(width - 1) {
                let ring = above[x - 1] + above[x] + above[x + 1] + current[x - 1] + current[x + 1] + below[x - 1] + below[x] + below[x + 1]
                let smooth = (ring + 5 * current[x]) / 13
                row[x] = min(high, max(low, smooth + factor * (current[x] - smooth)))
            }
            swap(&above, &current)
            for x in 0..<width { current[x] = below[x] }
        }
    }
}

/// One mini-batch: images as floats plus the targets of the dataset's task.
public struct Batch {
    /// `[B, C, H, W]`, value/255, then `(x - mean[c]) / std[c]` when the loader normalises.
    public var images: Tensor
    /// Row of each image in the file (for window crops: the scene each was cut from).
    public var indices: [Int]
    /// Classification labels (empty for other tasks).
    public var labels: [Int32]
    /// Tagging targets `[B, K]` of 0 and 1 (nil for other tasks).
    public var tags: Tensor?
    /// Segmentation targets `[B, H, W]` flattened row-major; 255 marks ignored pixels.
    public var masks: [Int32]
    /// Detection targets per image, in pixels of the (augmented) batch image.
    public var boxes: [[DetectionBox]]
    /// Window crops' targets (detection training batches; nil for others).
    public var windows: WindowLabels?
    /// A joint batch of multi-task training: one batch per task, in task order, named by the
    /// task (the fields above stay empty).
    public var parts: [(task: VisionTask, batch: Batch)] = []

    /// Number of images (of all parts, for a joint batch).
    public var count: Int { parts.isEmpty ? indices.count : parts.reduce(0) { $0 + $1.batch.count } }

    /// A joint batch of one batch per task.
    public init(parts: [(task: VisionTask, batch: Batch)]) {
        self.init(images: .zeros([0]), indices: [])
        self.parts = parts
    }

    /// A batch made by hand (e.g. of window crops): the task fields that do not apply stay empty.
    public init(images: Tensor, indices: [Int], labels: [Int32] = [], tags: Tensor? = nil, masks: [Int32] = [],
                boxes: [[DetectionBox]] = [], windows: WindowLabels? = nil) {
        self.images = images; self.indices = indices; self.labels = labels; self.tags = tags
        self.masks = masks; self.boxes = boxes; self.windows = windows
    }
}

/// The ground truth of a batch of window crops: a class per window (0 background, c + 1 for
/// object class c) and, for object windows, the object's tight box in window pixels.
public struct WindowLabels: Sendable {
    public var classes: [Int32]
    public var boxes: [DetectionBox?]

    public init(classes: [Int32], boxes: [DetectionBox?]) {
        precondition(classes.count == boxes.count, "\(classes.count) window classes for \(boxes.count) boxes")
        self.classes = classes; self.boxes = boxes
    }
}

/// Batches that one epoch of training reads, in order: what `Trainer` loops over.
public protocol BatchStream: AnyObject {
    /// The next batch, nil at the end of the epoch; throws when the data cannot be read.
    func nextBatch() throws -> Batch?
}

/// Where training batches come from: a `DataLoader` over a file, or a sampler that builds
/// batches of its own (window crops for a detector).
public protocol BatchSource: AnyObject {
    /// Batches per epoch.
    var batchCount: Int { get }
    /// Images per full batch.
    var batchSize: Int { get }
    /// The batches of epoch `epoch`: the same epoch gives the same batches.
    func stream(epoch: Int) -> any BatchStream
}

/// Reads shuffled mini-batches from a dataset file with bounded memory.
///
/// Each epoch visits the file's chunks (`blockRows` rows each) in a seeded random order,
/// reads a window of chunks by hyperslab, shuffles the rows inside the window and emits
/// batches; memory stays at one window plus two batches however large the file is. A
/// background thread prepares the next batch while the caller computes on the current one.
public final class DataLoader: Sequence, BatchSource {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    /// Drop the last batch when it is smaller than `batchSize`.
    public let dropLast: Bool
    public let augmentation: Augmentation
    /// Per-channel mean and standard deviation applied after scaling to [0, 1].
    public let mean: [Float], std: [Float]
    public let seed: UInt64
    /// Rows read and shuffled together: larger windows mix better and cost more memory.
    public let windowRows: Int
    /// Default window: this many bytes of stored images.
    public static let defaultWindowBytes = 64 << 20
    /// Whether a background thread reads one batch ahead.
    public let prefetch: Bool
    /// Epoch used by the next `makeIterator()`.
    public var nextEpoch = 0
    /// This process's part of every batch in data-parallel training (`batchSize` is then the
    /// global batch); the whole batch by default.
    public let shard: Shard

    /// A loader over `dataset`; `mean`/`std` (one value per channel) default to no
    /// normalisation; `windowRows` defaults to 64 MiB worth of images.
    public init(_ dataset: ImageDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
                augmentation: Augmentation = .none, mean: [Float]? = nil, std: [Float]? = nil,
                seed: UInt64 = 0, windowRows: Int? = nil, prefetch: Bool = true, shard: Shard = .whole) {
        precondition(batchSize > 0, "batch size must be positive")
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.augmentation = augmentation
        self.mean = mean ?? [Float](repeating: 0, count: dataset.channels)
        self.std = std ?? [Float](repeating: 1, count: dataset.channels)
        precondition(self.mean.count == dataset.channels && self.std.count == dataset.channels,
                     "mean and std need one value per channel (\(dataset.channels))")
        self.seed = seed
        let rowBytes = dataset.channels * dataset.height * dataset.width
        self.windowRows = Swift.max(windowRows ?? DataLoader.defaultWindowBytes / Swift.max(rowBytes, 1), 1)
        self.prefetch = prefetch
        self.shard = shard
    }

    /// Batches per epoch.
    public var batchCount: Int { (epochPositions + batchSize - 1) / batchSize }

    /// Images per epoch (of every rank): all, or without a partial last batch when `dropLast`
    /// or when it is too small to give each rank an image.
    var epochPositions: Int { shard.usedPositions(dataset.count, batchSize: batchSize, dropLast: dropLast) }

    /// The batches of epoch `epoch`: the same seed and epoch give the same batches.
    public func batches(epoch: Int) -> BatchIterator {
        BatchIterator(plan: EpochPlan(loader: self, epoch: epoch), prefetch: prefetch)
    }

    public func stream(epoch: Int) -> any BatchStream { batches(epoch: epoch) }

    /// Iterates the next epoch (`nextEpoch`, then increments it). A read error mid-epoch
    /// stops the program; use `batches(epoch:)` and `nextBatch()` to handle it.
    public func makeIterator() -> BatchIterator {
        defer { nextEpoch += 1 }
        return batches(epoch: nextEpoch)
    }
}

/// One image's random draws, keyed by the run's seed, the epoch and the image's file row (never
/// by a process's own stream), so every data-parallel rank count draws them alike.
struct SampleDraws {
    var generator: SeededGenerator
    let transform: CropFlip
    let erased: ErasedRectangle?
    /// Index into the window's rows of the image whose item is pasted on (`Augmentation.pasting`).
    let donor: Int?
    let noise: NoiseFloor?
    let sharpening: Sharpening?

    init(seed: UInt64, epoch: Int, row: Int, width: Int, height: Int, augmentation: Augmentation, pastes: Bool, candidates: Int) {
        generator = SeededGenerator(keys: seed, UInt64(epoch), UInt64(row))
        transform = CropFlip(width: width, height: height, augmentation: augmentation, using: &generator)
        erased = ErasedRectangle(width: width, height: height, probability: augmentation.erasing, using: &generator)
        donor = pastes ? Pasting.donor(probability: augmentation.pasting, candidates: candidates, using: &generator) : nil
        noise = NoiseFloor(largest: augmentation.noise, using: &generator)
        sharpening = Sharpening(probability: augmentation.sharpen, using: &generator)
    }
}

/// Produces the batches of one epoch, in order, on the calling thread.
///
/// The epoch's order is one seeded permutation of the file's rows: its chunks (`blockRows`
/// rows) shuffled, then the rows inside each window of chunks. Global batch `b` is positions
/// `b * batchSize ..< (b + 1) * batchSize` of that order; this process takes its `shard`'s slots
/// of each, and reads only those rows (and the rows pasted onto them) from each window, as one
/// union hyperslab.
final class EpochPlan {
    let loader: DataLoader
    let dataset: ImageDataset
    let epoch: Int
    /// Draws only the permutation, so the order does not depend on what the batches draw.
    var permutation: SeededGenerator
    /// Row ranges of the blocks, window by window, in visiting order.
    var windows: [[Range<Int>]] = []
    var windowIndex = 0
    /// The loaded window's file rows in visiting order, and the epoch position of the first.
    var windowRows: [Int] = []
    var windowStart = 0
    /// This process's rows of the window (and their donors), and where each file row is in it.
    var data = DatasetRows(rows: 0..<0)
    var slot: [Int: Int] = [:]
    var nextBatchIndex = 0
    /// The current image with another item pasted onto it, and its mask (`Augmentation.pasting`).
    var pastingBuffer: [UInt8] = [], pastingMask: [UInt8] = []
    /// Positions in the epoch: every row, or without the partial last batch (`dropLast`, or one
    /// too small to give every rank an image).
    let total: Int
    let pastes: Bool

    init(loader: DataLoader, epoch: Int) {
        self.loader = loader
        self.epoch = epoch
        let dataset = loader.dataset
        self.dataset = dataset
        permutation = SeededGenerator(seed: loader.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        let blockRows = dataset.blockRows
        var ranges = stride(from: 0, to: dataset.count, by: blockRows).map { $0..<min($0 + blockRows, dataset.count) }
        if loader.shuffle { ranges.shuffle(using: &permutation) }
        let perWindow = max(1, loader.windowRows / blockRows)
        windows = stride(from: 0, to: ranges.count, by: perWindow).map { Array(ranges[$0..<min($0 + perWindow, ranges.count)]) }
        total = loader.epochPositions
        pastes = loader.augmentation.pasting > 0 && (dataset.task == .classification || dataset.task == .segmentation)
    }

    private func draws(row: Int) -> SampleDraws {
        SampleDraws(seed: loader.seed, epoch: epoch, row: row, width: dataset.width, height: dataset.height,
                    augmentation: loader.augmentation, pastes: pastes, candidates: windowRows.count)
    }

    /// Reads the next window's rows that this process needs.
    private func loadWindow() throws -> Bool {
        guard windowIndex < windows.count else { return false }
        windowStart += windowRows.count
        windowRows = windows[windowIndex].flatMap { Array($0) }
        windowIndex += 1
        if loader.shuffle { windowRows.shuffle(using: &permutation) }
        var needed = Set<Int>()
        for (index, row) in windowRows.enumerated() {
            let position = windowStart + index
            guard position < total, loader.shard.takes(position: position, batchSize: loader.batchSize, total: total) else { continue }
            needed.insert(row)
            if pastes, let donor = draws(row: row).donor { needed.insert(windowRows[donor]) }
        }
        data = DatasetRows(rows: 0..<0)   // release the old window before reading the next
        slot = [:]
        let rows = needed.sorted()
        for (index, row) in rows.enumerated() { slot[row] = index }
        var runs: [Range<Int>] = []
        for row in rows {
            if let last = runs.last, last.upperBound == row { runs[runs.count - 1] = last.lowerBound..<(row + 1) } else { runs.append(row..<(row + 1)) }
        }
        if !runs.isEmpty { data = try dataset.read(runs: runs) }
        return true
    }

    /// The next batch (this process's part of the next global batch), or nil at the end of the epoch.
    func next() throws -> Batch? {
        let batchStart = nextBatchIndex * loader.batchSize
        guard batchStart < total else { return nil }
        nextBatchIndex += 1
        let positions = loader.shard.slots(ofBatch: min(loader.batchSize, total - batchStart)).map { batchStart + $0 }
        let size = positions.count
        let channels = dataset.channels, height = dataset.height, width = dataset.width
        let plane = height * width
        let images = Tensor.uninitialized([size, channels, height, width])
        var indices: [Int] = []
        indices.reserveCapacity(size)
        var labels: [Int32] = []
        let tags: Tensor? = dataset.task == .tagging ? Tensor.zeros([size, dataset.tagCount]) : nil
        var masks: [Int32] = dataset.task == .segmentation ? [Int32](repeating: 0, count: size * plane) : []
        var boxes: [[DetectionBox]] = []
        let scale = loader.std.map { 1 / (255 * $0) }
        let shift = zip(loader.mean, loader.std).map { -$0 / $1 }

        for (batchSlot, position) in positions.enumerated() {
            while position >= windowStart + windowRows.count {
                guard try loadWindow() else { throw DatasetError(dataset.path, "ran out of rows before the epoch ended") }
            }
            let row = windowRows[position - windowStart]
            let index = slot[row]!
            indices.append(row)
            var draws = self.draws(row: row)
            let transform = draws.transform, erased = draws.erased, noise = draws.noise, sharpening = draws.sharpening
            let donor = draws.donor.map { windowRows[$0] }
            let pastedItem = dataset.task == .classification
                ? donor.flatMap { PastedItem(width: width, height: height, source: $0, using: &draws.generator) } : nil
            let rows = self.data
            let maskOf = { (row: Int) in Array(rows.masks[(self.slot[row]! * plane)..<((self.slot[row]! + 1) * plane)]) }
            let pastedRegion = dataset.task == .segmentation
                ? donor.flatMap { PastedRegion(target: maskOf(row), width: width, height: height, source: $0, mask: maskOf,
                                               using: &draws.generator) } : nil
            let out = images.pointer + batchSlot * channels * plane
            var generator = draws.generator
            let normalise = { (image: UnsafePointer<UInt8>) in
                for channel in 0..<channels {
                    let scale = scale[channel], shift = shift[channel]
                    transform.apply(image: image + channel * plane, into: out + channel * plane, multiplier: scale, shift: shift)
                    sharpening?.apply(to: out + channel * plane, width: width, height: height, scale: scale, shift: shift)
                    noise?.apply(to: out + channel * plane, count: plane, scale: scale, shift: shift, using: &generator)
                    // Noise over the pixel range, normalised as the pixels are.
                    erased?.apply(to: out + channel * plane, width: width) { generator.nextUniform() * 255 * scale + shift }
                }
            }
            let pasting = pastedItem != nil || pastedRegion != nil
            if pasting {
                pastingBuffer.removeAll(keepingCapacity: true)
                pastingBuffer.append(contentsOf: rows.images[(index * channels * plane)..<((index + 1) * channels * plane)])
            }
            if let pastedItem {
                let other = slot[pastedItem.source]!
                rows.images.withUnsafeBufferPointer { images in
                    pastingBuffer.withUnsafeMutableBufferPointer { buffer in
                        for channel in 0..<channels {
                            pastedItem.apply(to: buffer.baseAddress! + channel * plane,
                                             item: images.baseAddress! + (other * channels + channel) * plane, width: width, height: height)
                        }
                    }
                }
            }
            if let pastedRegion {
                let other = slot[pastedRegion.source]!
                pastingMask.removeAll(keepingCapacity: true)
                pastingMask.append(contentsOf: rows.masks[(index * plane)..<((index + 1) * plane)])
                rows.images.withUnsafeBufferPointer { otherImages in
                    rows.masks.withUnsafeBufferPointer { otherMasks in
                        pastingBuffer.withUnsafeMutableBufferPointer { image in
                            pastingMask.withUnsafeMutableBufferPointer { mask in
                                pastedRegion.apply(image: image.baseAddress!, mask: mask.baseAddress!,
                                                   sourceImage: otherImages.baseAddress! + other * channels * plane,
                                                   sourceMask: otherMasks.baseAddress! + other * plane,
                                                   width: width, height: height, channels: channels)
                            }
                        }
                    }
                }
            }
            if pasting {
                pastingBuffer.withUnsafeBufferPointer { normalise($0.baseAddress!) }
            } else {
                rows.images.withUnsafeBufferPointer { normalise($0.baseAddress! + index * channels * plane) }
            }
            switch dataset.task {
            case .classification:
                labels.append(rows.labels[index])
            case .tagging:
                let count = dataset.tagCount
                rows.tags.withUnsafeBufferPointer { source in
                    for k in 0..<count { tags!.pointer[batchSlot * count + k] = Float(source[index * count + k]) }
                }
            case .segmentation:
                let (maskSource, maskOffset) = pastedRegion == nil ? (rows.masks, index * plane) : (pastingMask, 0)
                maskSource.withUnsafeBufferPointer { source in
                    masks.withUnsafeMutableBufferPointer { out in
                        transform.apply(source.baseAddress! + maskOffset, into: out.baseAddress! + batchSlot * plane,
                                        padding: Int32(DatasetLayout.ignoreIndex)) { Int32($0) }
                        erased?.apply(to: out.baseAddress! + batchSlot * plane, width: width) { Int32(DatasetLayout.ignoreIndex) }
                    }
                }
            case .detection:
                boxes.append((rows.boxOffsets[index]..<rows.boxOffsets[index + 1]).compactMap { box in
                    transform.apply(DetectionBox(x1: rows.boxes[4 * box], y1: rows.boxes[4 * box + 1],
                                                 x2: rows.boxes[4 * box + 2], y2: rows.boxes[4 * box + 3],
                                                 label: rows.boxLabels[box], ignore: rows.boxIgnore[box] != 0))
                })
            }
        }
        return Batch(images: images, indices: indices, labels: labels, tags: tags, masks: masks, boxes: boxes)
    }
}

/// A one-slot hand-over between the reading thread and the consumer.
final class BatchChannel: @unchecked Sendable {
    let condition = NSCondition()
    var slot: Result<Batch?, Error>?
    var cancelled = false

    func put(_ value: Result<Batch?, Error>) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while slot != nil && !cancelled { condition.wait() }
        if cancelled { return false }
        slot = value
        condition.broadcast()
        return true
    }

    func take() -> Result<Batch?, Error> {
        condition.lock()
        defer { condition.unlock() }
        while slot == nil { condition.wait() }
        let value = slot!
        slot = nil
        condition.broadcast()
        return value
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}

/// Iterates the batches of one epoch, optionally read ahead on a background thread.
public final class BatchIterator: IteratorProtocol, Sequence, BatchStream {
    private let plan: EpochPlan
    private let channel: BatchChannel?
    private var finished = false

    init(plan: EpochPlan, prefetch: Bool) {
        self.plan = plan
        if prefetch {
            let channel = BatchChannel()
            self.channel = channel
            let thread = Thread { [plan] in
                while true {
                    let result = Result { try plan.next() }
                    guard channel.put(result) else { return }
                    if case .success(let batch) = result, batch == nil { return }
                    if case .failure = result { return }
                }
            }
            thread.name = "percept.dataloader"
            thread.start()
        } else {
            channel = nil
        }
    }

    /// The next batch, nil at the end of the epoch; throws when the file cannot be read.
    public func nextBatch() throws -> Batch? {
        guard !finished else { return nil }
        let result = channel.map { $0.take() } ?? Result { try plan.next() }
        switch result {
        case .success(let batch):
            if batch == nil { finished = true }
            return batch
        case .failure(let error):
            finished = true
            throw error
        }
    }

    /// The next batch; a read error stops the program with the error's message.
    public func next() -> Batch? {
        do { return try nextBatch() } catch { fatalError("\(error)") }
    }

    deinit { channel?.cancel() }
}
