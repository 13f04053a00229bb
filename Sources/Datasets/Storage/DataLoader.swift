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

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, erasing: Float = 0, pasting: Float = 0) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
        self.erasing = erasing
        self.pasting = pasting
    }

    /// No augmentation.
    public static let none = Augmentation()
}

/// One image's crop and flip, applied alike to its pixels, its mask and its boxes: output pixel
/// (x, y) shows source pixel (`sourceX(x)`, `y + offsetY`), and sources outside the image are
/// padding.
struct CropFlip {
    let width: Int, height: Int
    let offsetX: Int, offsetY: Int
    let flip: Bool

    /// Draws the flip, then the x and y offsets in [-padding, padding], from `generator`.
    init(width: Int, height: Int, augmentation: Augmentation, using generator: inout SeededGenerator) {
        self.width = width; self.height = height
        let padding = augmentation.cropPadding
        flip = augmentation.horizontalFlip && generator.next() & 1 == 1
        offsetX = padding > 0 ? Int.random(in: 0...(2 * padding), using: &generator) - padding : 0
        offsetY = padding > 0 ? Int.random(in: 0...(2 * padding), using: &generator) - padding : 0
    }

    @inline(__always) func sourceX(_ x: Int) -> Int { (flip ? width - 1 - x : x) + offsetX }

    /// Fills the `height` x `width` plane `output` from the plane `input`: `convert` maps a
    /// source value, `padding` fills what comes from outside.
    @inline(__always)
    func apply<Source, Output>(_ input: UnsafePointer<Source>, into output: UnsafeMutablePointer<Output>,
                               padding: Output, _ convert: (Source) -> Output) {
        for y in 0..<height {
            let sourceY = y + offsetY
            let outRow = output + y * width
            if sourceY < 0 || sourceY >= height {
                outRow.update(repeating: padding, count: width)
                continue
            }
            let inRow = input + sourceY * width
            for x in 0..<width {
                let sx = sourceX(x)
                outRow[x] = sx >= 0 && sx < width ? convert(inRow[sx]) : padding
            }
        }
    }

    /// The box as it appears in the output, clipped to it; nil when nothing of it is left.
    func apply(_ box: DetectionBox) -> DetectionBox? {
        let w = Float(width), h = Float(height)
        var x1 = max(0, min(w, box.x1 - Float(offsetX))), x2 = max(0, min(w, box.x2 - Float(offsetX)))
        let y1 = max(0, min(h, box.y1 - Float(offsetY))), y2 = max(0, min(h, box.y2 - Float(offsetY)))
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

    /// A loader over `dataset`; `mean`/`std` (one value per channel) default to no
    /// normalisation; `windowRows` defaults to 64 MiB worth of images.
    public init(_ dataset: ImageDataset, batchSize: Int, shuffle: Bool = true, dropLast: Bool = false,
                augmentation: Augmentation = .none, mean: [Float]? = nil, std: [Float]? = nil,
                seed: UInt64 = 0, windowRows: Int? = nil, prefetch: Bool = true) {
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
    }

    /// Batches per epoch.
    public var batchCount: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

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

/// Produces the batches of one epoch, in order, on the calling thread.
final class EpochPlan {
    let loader: DataLoader
    let dataset: ImageDataset
    var generator: SeededGenerator
    /// Row ranges of the blocks still to read, window by window.
    var windows: [[Range<Int>]] = []
    var windowIndex = 0
    var blocks: [DatasetRows] = []
    /// (block, row within block) in visiting order for the current window.
    var order: [(Int, Int)] = []
    var orderIndex = 0
    var emitted = 0
    /// The current image with another item pasted onto it, and its mask (`Augmentation.pasting`).
    var pastingBuffer: [UInt8] = [], pastingMask: [UInt8] = []
    let total: Int

    init(loader: DataLoader, epoch: Int) {
        self.loader = loader
        let dataset = loader.dataset
        self.dataset = dataset
        generator = SeededGenerator(seed: loader.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        let blockRows = dataset.blockRows
        var ranges = stride(from: 0, to: dataset.count, by: blockRows).map { $0..<min($0 + blockRows, dataset.count) }
        if loader.shuffle { ranges.shuffle(using: &generator) }
        let perWindow = max(1, loader.windowRows / blockRows)
        windows = stride(from: 0, to: ranges.count, by: perWindow).map { Array(ranges[$0..<min($0 + perWindow, ranges.count)]) }
        total = loader.dropLast ? dataset.count / loader.batchSize * loader.batchSize : dataset.count
    }

    private func loadWindow() throws -> Bool {
        guard windowIndex < windows.count else { return false }
        blocks = []  // release the old window before reading the next: one window in memory
        blocks = try windows[windowIndex].map { try dataset.read(rows: $0) }
        windowIndex += 1
        order.removeAll(keepingCapacity: true)
        for (block, rows) in blocks.enumerated() {
            for row in 0..<rows.rows.count { order.append((block, row)) }
        }
        if loader.shuffle { order.shuffle(using: &generator) }
        orderIndex = 0
        return true
    }

    /// The next batch, or nil at the end of the epoch.
    func next() throws -> Batch? {
        guard emitted < total else { return nil }
        let size = min(loader.batchSize, total - emitted)
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

        for slot in 0..<size {
            while orderIndex >= order.count {
                guard try loadWindow() else { throw DatasetError(dataset.path, "ran out of rows before the epoch ended") }
            }
            let (blockIndex, row) = order[orderIndex]
            orderIndex += 1
            let block = blocks[blockIndex]
            indices.append(block.rows.lowerBound + row)
            let transform = CropFlip(width: width, height: height, augmentation: loader.augmentation, using: &generator)
            let erased = ErasedRectangle(width: width, height: height, probability: loader.augmentation.erasing, using: &generator)
            let pastedItem = dataset.task == .classification
                ? PastedItem(width: width, height: height, probability: loader.augmentation.pasting, candidates: order, using: &generator) : nil
            let pastedRegion = dataset.task == .segmentation
                ? PastedRegion(target: (blockIndex, row), width: width, height: height, probability: loader.augmentation.pasting,
                               candidates: order, mask: { Array(self.blocks[$0.0].masks[($0.1 * plane)..<(($0.1 + 1) * plane)]) },
                               using: &generator) : nil
            let out = images.pointer + slot * channels * plane
            let normalise = { (image: UnsafePointer<UInt8>) in
                for channel in 0..<channels {
                    let scale = scale[channel], shift = shift[channel]
                    transform.apply(image + channel * plane, into: out + channel * plane, padding: shift) {
                        Float($0) * scale + shift
                    }
                    // Noise over the pixel range, normalised as the pixels are.
                    erased?.apply(to: out + channel * plane, width: width) { self.generator.nextUniform() * 255 * scale + shift }
                }
            }
            let pasting = pastedItem != nil || pastedRegion != nil
            if pasting {
                pastingBuffer.removeAll(keepingCapacity: true)
                pastingBuffer.append(contentsOf: block.images[(row * channels * plane)..<((row + 1) * channels * plane)])
            }
            if let pastedItem {
                let (otherBlock, otherRow) = pastedItem.source
                blocks[otherBlock].images.withUnsafeBufferPointer { other in
                    pastingBuffer.withUnsafeMutableBufferPointer { buffer in
                        for channel in 0..<channels {
                            pastedItem.apply(to: buffer.baseAddress! + channel * plane,
                                             item: other.baseAddress! + (otherRow * channels + channel) * plane, width: width, height: height)
                        }
                    }
                }
            }
            if let pastedRegion {
                let (otherBlock, otherRow) = pastedRegion.source
                pastingMask.removeAll(keepingCapacity: true)
                pastingMask.append(contentsOf: block.masks[(row * plane)..<((row + 1) * plane)])
                blocks[otherBlock].images.withUnsafeBufferPointer { otherImages in
                    blocks[otherBlock].masks.withUnsafeBufferPointer { otherMasks in
                        pastingBuffer.withUnsafeMutableBufferPointer { image in
                            pastingMask.withUnsafeMutableBufferPointer { mask in
                                pastedRegion.apply(image: image.baseAddress!, mask: mask.baseAddress!,
                                                   sourceImage: otherImages.baseAddress! + otherRow * channels * plane,
                                                   sourceMask: otherMasks.baseAddress! + otherRow * plane,
                                                   width: width, height: height, channels: channels)
                            }
                        }
                    }
                }
            }
            if pasting {
                pastingBuffer.withUnsafeBufferPointer { normalise($0.baseAddress!) }
            } else {
                block.images.withUnsafeBufferPointer { normalise($0.baseAddress! + row * channels * plane) }
            }
            switch dataset.task {
            case .classification:
                labels.append(block.labels[row])
            case .tagging:
                let count = dataset.tagCount
                block.tags.withUnsafeBufferPointer { source in
                    for k in 0..<count { tags!.pointer[slot * count + k] = Float(source[row * count + k]) }
                }
            case .segmentation:
                let (maskSource, maskOffset) = pastedRegion == nil ? (block.masks, row * plane) : (pastingMask, 0)
                maskSource.withUnsafeBufferPointer { source in
                    masks.withUnsafeMutableBufferPointer { out in
                        transform.apply(source.baseAddress! + maskOffset, into: out.baseAddress! + slot * plane,
                                        padding: Int32(DatasetLayout.ignoreIndex)) { Int32($0) }
                        erased?.apply(to: out.baseAddress! + slot * plane, width: width) { Int32(DatasetLayout.ignoreIndex) }
                    }
                }
            case .detection:
                boxes.append((block.boxOffsets[row]..<block.boxOffsets[row + 1]).compactMap { box in
                    transform.apply(DetectionBox(x1: block.boxes[4 * box], y1: block.boxes[4 * box + 1],
                                                 x2: block.boxes[4 * box + 2], y2: block.boxes[4 * box + 3],
                                                 label: block.boxLabels[box], ignore: block.boxIgnore[box] != 0))
                })
            }
        }
        emitted += size
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
