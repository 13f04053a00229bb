import PerceptCore
import PerceptDatasets
import Foundation

/// How detection training samples windows from its scenes (the `sampling` section); the
/// defaults are the tuned recipe. Windows are flipped with the rest of the augmentation
/// (`train.augment`).
public struct WindowSampling: Configurable {
    /// Object windows per object and epoch, each jittered on its own.
    public var viewsPerObject = 2
    /// Random background windows per object window.
    public var negativesPerPositive: Float = 0.5
    /// Hard negatives (the current model's strongest false windows) per object window, at most;
    /// 0 turns mining off.
    public var hardNegativesPerPositive: Float = 0.5
    /// Scenes scanned for hard negatives at the start of each epoch from `miningStartEpoch` on.
    public var minedScenes = 128
    /// The first epoch (0-based) that mines hard negatives; before it the model knows too little.
    public var miningStartEpoch = 1
    /// Windows scoring at least this for an object are hard-negative candidates.
    public var miningThreshold: Float = 0.2
    /// A background window's square overlaps every object's square by less than this IoU.
    public var negativeIoU: Float = 0.3

    public init() {}

    enum CodingKeys: String, CodingKey {
        case viewsPerObject = "views", negativesPerPositive = "negatives", hardNegativesPerPositive = "hardNegatives",
             minedScenes, miningStartEpoch, miningThreshold, negativeIoU
    }

    public func validate() throws {
        try Check.that(viewsPerObject >= 1 && viewsPerObject <= 100, "views", "must be 1 to 100, got \(viewsPerObject)")
        try Check.that(negativesPerPositive >= 0 && negativesPerPositive <= 100, "negatives", "must be 0 to 100, got \(negativesPerPositive)")
        try Check.that(hardNegativesPerPositive >= 0 && hardNegativesPerPositive <= 100, "hard_negatives",
                       "must be 0 to 100, got \(hardNegativesPerPositive)")
        try Check.that(minedScenes >= 1, "mined_scenes", "must be at least 1, got \(minedScenes)")
        try Check.that(miningStartEpoch >= 0, "mining_start_epoch", "must not be negative, got \(miningStartEpoch)")
        try Check.that((0...1).contains(miningThreshold), "mining_threshold", "must be in [0, 1], got \(miningThreshold)")
        try Check.that((0...1).contains(negativeIoU), "negative_iou", "must be in [0, 1], got \(negativeIoU)")
    }
}

/// One training window: a `window`-pixel square at (`left`, `top`) of a scene scaled by `scale`.
struct TrainingWindow {
    var scene: Int
    /// Level size (the scene scaled and rounded), as the pyramid makes it.
    var levelHeight: Int, levelWidth: Int
    var left: Int, top: Int
    /// 0 background, c + 1 object class c.
    var label: Int32
    /// The object's tight box in window pixels (object windows).
    var box: DetectionBox?
    var flip: Bool
}

/// The square a window detector should fire on for a tight object box: centred on the box,
/// as wide as its longer side.
func objectSquare(_ box: DetectionBox) -> DetectionBox {
    let side = Swift.max(box.x2 - box.x1, box.y2 - box.y1)
    let cx = (box.x1 + box.x2) / 2, cy = (box.y1 + box.y2) / 2
    return DetectionBox(x1: cx - side / 2, y1: cy - side / 2, x2: cx + side / 2, y2: cy + side / 2, label: box.label)
}

/// Batches of training windows for a window head, drawn from the scenes of a detection file
/// (held in memory as bytes): every object once per epoch at the pyramid level that fits it
/// (jittered by up to half a level and half a window stride), random background windows, and
/// hard negatives mined with the current model at the start of each epoch. The same seed and
/// epoch give the same batches; mining reads the model's weights at that epoch's start, so a
/// resumed run mines what the uninterrupted one did.
public final class WindowSampler: BatchSource {
    public let model: Model<WindowHead>
    public let sampling: WindowSampling
    /// Mirror windows left-right with probability 1/2.
    public let flips: Bool
    /// Largest noise floor raised under each window crop (`Augmentation.noise`; 0: none).
    public let noise: Float
    /// Fraction of windows cropped from their level nearest-neighbour instead of bilinearly
    /// (`Augmentation.nearest`): sharp, jagged items, as scenes whose items were scaled by
    /// another filter show them.
    public let nearest: Float
    /// Probability of sharpening a window crop (`Augmentation.sharpen`).
    public let sharpen: Float
    public let batchSize: Int
    public let seed: UInt64
    let scenes: [UInt8]
    let boxes: [[DetectionBox]]
    let squares: [[DetectionBox]]
    let channels: Int, height: Int, width: Int
    let mean: [Float], std: [Float]
    /// Windows per epoch: objects, random and hard negatives together.
    let windowsPerEpoch: Int
    /// This process's slots of each global batch (`Shard`); every rank draws the epoch's
    /// windows alike (and mines the same hard negatives) and crops only its own.
    public let shard: Shard

    public init(dataset: DetectionDataset, model: Model<WindowHead>, sampling: WindowSampling, flip: Bool = true, noise: Float = 0,
                nearest: Float = 0, sharpen: Float = 0, batchSize: Int, seed: UInt64, shard: Shard = .whole) throws {
        self.model = model; self.sampling = sampling; self.flips = flip; self.noise = noise; self.nearest = nearest; self.sharpen = sharpen
        self.batchSize = batchSize; self.seed = seed; self.shard = shard
        scenes = try dataset.readImages(0..<dataset.count)
        boxes = try dataset.readBoxes(0..<dataset.count)
        squares = boxes.map { $0.map(objectSquare) }
        channels = dataset.channels; height = dataset.height; width = dataset.width
        let configuration = model.configuration
        mean = configuration.mean; std = configuration.std
        // Ignore regions are no object to learn, and (through `squares`) no background either.
        let positives = boxes.reduce(0) { $0 + $1.filter { !$0.ignore }.count } * sampling.viewsPerObject
        guard positives > 0 else { throw DatasetError(dataset.path, "holds no boxes to learn from") }
        windowsPerEpoch = positives + Int((Float(positives) * (sampling.negativesPerPositive + sampling.hardNegativesPerPositive)).rounded())
    }

    /// Batches per epoch; a last batch too small to give every rank a window is dropped.
    public var batchCount: Int { (shard.usedPositions(windowsPerEpoch, batchSize: batchSize) + batchSize - 1) / batchSize }

    var head: WindowHead { model.head }

    /// Scene `index` as a normalised [1, C, H, W] tensor.
    func sceneTensor(_ index: Int) -> Tensor {
        let image = scenes.withUnsafeBufferPointer { bytes in
            Image(planar: bytes.baseAddress! + index * channels * height * width, width: width, height: height, channels: channels)
        }
        return normalisedTensor(image, mean: mean, std: std)
    }

    /// Whether a window square (original pixels) overlaps no object or ignore region of `scene`
    /// by `negativeIoU` or more.
    func isBackground(_ square: DetectionBox, scene: Int) -> Bool {
        squares[scene].allSatisfy { intersectionOverUnion($0, square) < sampling.negativeIoU }
    }

    public func stream(epoch: Int) -> any BatchStream {
        var rng = SeededGenerator(seed: seed &+ 0x5EED &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        let levels = head.levels(height: height, width: width)
        let window = head.architecture.window, stride = head.stride, padding = head.levelPadding
        var windows: [TrainingWindow] = []
        // Objects: the level whose window fits the object's square, jittered.
        let scales = levels.map(\.scale)
        let halfStep = scales.count > 1 ? Foundation.log(scales[0] / scales[scales.count - 1]) / Float(scales.count - 1) / 2 : 0
        for (scene, sceneBoxes) in boxes.enumerated() {
            for box in sceneBoxes.filter({ !$0.ignore }).flatMap({ Array(repeating: $0, count: sampling.viewsPerObject) }) {
                let factor = Foundation.exp(halfStep * (2 * rng.nextUniform() - 1))
                let jitterX = (2 * rng.nextUniform() - 1) * Float(stride) / 2, jitterY = (2 * rng.nextUniform() - 1) * Float(stride) / 2
                let (levelHeight, levelWidth, effective, left, top) = head.fittingWindow(box, height: height, width: width,
                                                                                       scaleFactor: factor, shift: (jitterX, jitterY))
                let inWindow = DetectionBox(x1: box.x1 * effective - Float(left), y1: box.y1 * effective - Float(top),
                                            x2: box.x2 * effective - Float(left), y2: box.y2 * effective - Float(top), label: box.label)
                windows.append(TrainingWindow(scene: scene, levelHeight: levelHeight, levelWidth: levelWidth, left: left, top: top,
                                              label: box.label + 1, box: inWindow, flip: flips && rng.next() & 1 == 1))
            }
        }
        let positives = windows.count
        // Hard negatives first (they may fall short of their quota), random background for the rest.
        var negatives: [TrainingWindow] = []
        if sampling.hardNegativesPerPositive > 0 && epoch >= sampling.miningStartEpoch {
            let quota = Int((Float(positives) * sampling.hardNegativesPerPositive).rounded())
            negatives = mineHardNegatives(quota: quota, levels: levels, using: &rng)
        }
        let total = windowsPerEpoch - positives
        var tries = 0
        while negatives.count < total && tries < total * 100 {
            tries += 1
            let scene = Int.random(in: 0..<boxes.count, using: &rng)
            let level = levels[Int.random(in: 0..<levels.count, using: &rng)]
            let left = Int.random(in: -padding...Swift.max(-padding, level.width + padding - window), using: &rng)
            let top = Int.random(in: -padding...Swift.max(-padding, level.height + padding - window), using: &rng)
            let square = head.windowSquare(left: left, top: top, scale: level.scale)
            guard isBackground(square, scene: scene) else { continue }
            negatives.append(TrainingWindow(scene: scene, levelHeight: level.height, levelWidth: level.width, left: left, top: top,
                                            label: 0, box: nil, flip: flips && rng.next() & 1 == 1))
        }
        windows += negatives
        windows.shuffle(using: &rng)
        return WindowStream(sampler: self, windows: windows, epoch: epoch)
    }

    /// The current model's highest-scoring windows on `minedScenes` random scenes whose squares
    /// are background, at most `quota` of them, strongest first.
    func mineHardNegatives(quota: Int, levels: [(height: Int, width: Int, scale: Float)],
                           using rng: inout SeededGenerator) -> [TrainingWindow] {
        guard quota > 0 else { return [] }
        model.setMode(.inference)
        defer { model.setMode(.training) }
        let padding = head.levelPadding
        let background = model.context().background
        var found: [(window: TrainingWindow, score: Float)] = []
        for _ in 0..<Swift.min(sampling.minedScenes, boxes.count) {
            let scene = Int.random(in: 0..<boxes.count, using: &rng)
            let image = sceneTensor(scene)
            for level in levels {
                let resized = level.height == height && level.width == width ? image : image.resizedBilinear(height: level.height, width: level.width)
                let outputs = model(resized.padded(by: padding, values: background))
                for (x, y, score) in head.scoredWindows(outputs, threshold: sampling.miningThreshold) {
                    let square = head.windowSquare(x: x, y: y, scale: level.scale, padding: padding)
                    guard isBackground(square, scene: scene) else { continue }
                    found.append((TrainingWindow(scene: scene, levelHeight: level.height, levelWidth: level.width,
                                                 left: x * head.stride - padding, top: y * head.stride - padding,
                                                 label: 0, box: nil, flip: flips && rng.next() & 1 == 1), score))
                }
            }
        }
        // Strongest first; equal scores keep the order found, so mining is deterministic.
        let order = found.indices.sorted { found[$0].score > found[$1].score || (found[$0].score == found[$1].score && $0 < $1) }
        return order.prefix(quota).map { found[$0].window }
    }

    /// The crops of `windows` as a batch: [B, C, window + 2 context, window + 2 context] images
    /// (each window with the head's context around it), labels, object boxes in window pixels.
    /// A window's resampling (`nearest`), sharpening and noise floor are keyed by
    /// the seed, the epoch and its position in the epoch.
    func batch(_ windows: ArraySlice<TrainingWindow>, epoch: Int = 0) -> Batch {
        let context = head.architecture.context, windowSide = head.architecture.window
        let size = windowSide + 2 * context, plane = size * size
        let images = Tensor.uninitialized([windows.count, channels, size, size])
        let background = model.context().background
        var labels: [Int32] = [], boxes: [DetectionBox?] = [], scenes: [Int] = []
        var cache: (scene: Int, tensor: Tensor)?
        // Pixel value v is stored as v * pixelScale[c] + pixelShift[c] once normalised.
        let pixelScale = std.map { 1 / (255 * $0) }, pixelShift = zip(mean, std).map { -$0 / $1 }
        for (slot, (position, window)) in zip(windows.indices, windows).enumerated() {
            if cache?.scene != window.scene { cache = (window.scene, sceneTensor(window.scene)) }
            var generator = SeededGenerator(keys: seed, UInt64(epoch), UInt64(position))
            let nearest = self.nearest > 0 && generator.nextUniform() < self.nearest
            let crop = cache!.tensor.resizedBilinearWindow(height: window.levelHeight, width: window.levelWidth, left: window.left - context,
                                                           top: window.top - context, size: size, background: background, nearest: nearest)
            let destination = images.pointer + slot * channels * plane
            if window.flip {
                for c in 0..<channels {
                    for y in 0..<size {
                        for x in 0..<size { destination[(c * size + y) * size + x] = crop.pointer[(c * size + y) * size + size - 1 - x] }
                    }
                }
            } else {
                withExtendedLifetime(crop) { destination.update(from: crop.pointer, count: channels * plane) }
            }
            let sharpening = Sharpening(probability: sharpen, using: &generator)
            let floor = NoiseFloor(largest: noise, using: &generator)
            for c in 0..<channels {
                sharpening?.apply(to: destination + c * plane, width: size, height: size, scale: pixelScale[c], shift: pixelShift[c])
                floor?.apply(to: destination + c * plane, count: plane, scale: pixelScale[c], shift: pixelShift[c], using: &generator)
            }
            labels.append(window.label)
            scenes.append(window.scene)
            var box = window.box
            if window.flip, let b = box { box!.x1 = Float(windowSide) - b.x2; box!.x2 = Float(windowSide) - b.x1 }
            boxes.append(box)
        }
        return Batch(images: images, indices: scenes, windows: WindowLabels(classes: labels, boxes: boxes))
    }
}

/// The batches of one epoch's windows, cropped as they are read.
final class WindowStream: BatchStream {
    let sampler: WindowSampler
    let windows: [TrainingWindow]
    var next = 0

    let epoch: Int

    init(sampler: WindowSampler, windows: [TrainingWindow], epoch: Int) {
        self.sampler = sampler; self.windows = windows; self.epoch = epoch
    }

    func nextBatch() throws -> Batch? {
        let end = Swift.min(next + sampler.batchSize, windows.count)
        guard end - next >= sampler.shard.count else { return nil }
        defer { next = end }
        let slots = sampler.shard.slots(ofBatch: end - next)
        return sampler.batch(windows[(next + slots.lowerBound)..<(next + slots.upperBound)], epoch: epoch)
    }
}
