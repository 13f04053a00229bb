import PerceptCore
import Foundation

/// Settings of `Composer`: how many canvases, their size, and how items are drawn and placed.
public struct CompositionOptions {
    /// Canvases to write.
    public var count = 1000
    /// Canvas size.
    public var size = ImageSize(width: 64, height: 64)
    /// Items per canvas, drawn uniformly from `minItems...maxItems`.
    public var minItems = 1
    public var maxItems = 3
    /// Whether the items of one canvas have distinct classes; otherwise each item's class is
    /// drawn independently (repeats allowed).
    public var distinctClasses = true
    /// Scale factor of an item relative to its own size, drawn uniformly from `scaleMin...scaleMax`.
    public var scaleMin: Float = 0.8
    public var scaleMax: Float = 1.2
    /// Level of the background noise as a fraction of 255 (0: black): the standard deviation
    /// of half-normal noise, or the largest value of uniform noise.
    public var noise: Float = 0.05
    /// How background pixels are drawn.
    public var noiseDistribution = NoiseDistribution.halfNormal
    /// How items are scaled.
    public var resampling = ResamplingFilter.bilinear
    /// Which item a canvas and mask pixel show where items overlap.
    public var overlapRule = OverlapRule.brighter
    /// Largest IoU a new item's box may have with an earlier item's box on the same canvas:
    /// 0.3 from `init()`, the task's default from `init(task:)`.
    public var maxOverlap: Float = 0.3
    /// Which boxes `maxOverlap` compares.
    public var overlapMeasure = OverlapMeasure.visible
    /// Positions tried per item before it is dropped for overlapping too much.
    public var placementAttempts = 100
    /// Item pixels above this value count as the item (its tight box; blank items are never used).
    public var boxThreshold: UInt8 = 10
    /// Item pixels above this value are the item's class in segmentation masks.
    public var maskThreshold: UInt8 = 25
    /// Canvas `i` depends only on the item set, these options and (`seed`, `i`).
    public var seed: UInt64 = 0
    /// Replace an existing output file.
    public var overwrite = false
    /// Called after each canvas with (done, total).
    public var progress: ((Int, Int) -> Void)?

    public init() {}

    /// The scenes each task's issue describes (see models/README.md for the exact commands).
    ///
    /// Items are pasted by per-pixel maximum, so an overlapped item shows through its neighbour
    /// rather than being hidden by it. Tagging 64x64 canvases hold 1-3 items of distinct
    /// classes at scale 0.8-1.2 whose visible boxes overlap by IoU 0.2 at most, as the tagging
    /// issue describes them. Boxes and masks say where each item is, so detection and
    /// segmentation scenes draw classes independently (several items of one class):
    /// detection 160x160 scenes of 1-4 items scaled 1-2x whose placement squares overlap by
    /// IoU 0.1 at most; segmentation 64x64 canvases of 1-3 items at their own size whose
    /// visible boxes overlap by IoU 0.2 at most.
    public init(task: VisionTask) {
        switch task {
        case .classification:
            maxOverlap = 0
        case .tagging:
            maxOverlap = 0.2
        case .detection:
            size = ImageSize(width: 160, height: 160)
            maxItems = 4
            scaleMin = 1; scaleMax = 2
            maxOverlap = 0.1
            overlapMeasure = .placement
            distinctClasses = false
        case .segmentation:
            scaleMin = 1; scaleMax = 1
            maxOverlap = 0.2
            distinctClasses = false
        }
    }

    /// Checks the settings that do not depend on the item set; the message names the option.
    public func validate() throws {
        func fail(_ text: String) -> CompositionOptionError { CompositionOptionError(description: text) }
        guard count >= 1 else { throw fail("--count must be at least 1, got \(count)") }
        guard minItems >= 1 else { throw fail("--min-items must be at least 1, got \(minItems)") }
        guard maxItems >= minItems else { throw fail("--max-items (\(maxItems)) must be at least --min-items (\(minItems))") }
        guard scaleMin > 0, scaleMin.isFinite, scaleMax.isFinite else { throw fail("--scale-min must be positive, got \(scaleMin)") }
        guard scaleMax >= scaleMin else { throw fail("--scale-max (\(scaleMax)) must be at least --scale-min (\(scaleMin))") }
        guard noise >= 0, noise <= 1 else { throw fail("--noise must be in [0, 1], got \(noise)") }
        guard maxOverlap >= 0, maxOverlap <= 1 else { throw fail("--max-overlap must be in [0, 1], got \(maxOverlap)") }
        guard placementAttempts >= 1 else { throw fail("placement attempts must be at least 1") }
    }

    /// The settings as one line, for the output's `source` attribute.
    var summary: String {
        "\(count) canvases \(size), \(minItems)-\(maxItems) items of \(distinctClasses ? "distinct classes" : "independently drawn classes"), "
            + "scale \(scaleMin)-\(scaleMax) (\(resampling.rawValue)), \(noiseDistribution.rawValue) noise \(noise), "
            + "\(overlapRule.rawValue) item shown where items overlap, max IoU \(maxOverlap) of \(overlapMeasure.rawValue) boxes, "
            + "\(placementAttempts) placement tries, seed \(seed)"
    }
}

/// How `Composer` draws a canvas's background pixels.
public enum NoiseDistribution: String, Sendable, CaseIterable {
    /// |N(0, level x 255)|, rounded and clipped to 255.
    case halfNormal = "half-normal"
    /// Integers drawn uniformly from 0...round(level x 255).
    case uniform

    /// One pixel value for a level given in pixel units (the fraction times 255).
    @inline(__always) public func value(level: Float, using generator: inout SeededGenerator) -> UInt8 {
        switch self {
        case .halfNormal: return UInt8(min(255, (abs(generator.nextNormal()) * level).rounded()))
        case .uniform: return UInt8(truncatingIfNeeded: Int(generator.next() % (UInt64(min(255, level.rounded())) + 1)))
        }
    }
}

/// Which item a canvas pixel and its mask pixel show where pasted items overlap.
public enum OverlapRule: String, Sendable, CaseIterable {
    /// The brighter pixel (per-pixel maximum, so an overlapped item shows through); the mask
    /// goes to the brighter item, ties to the later one.
    case brighter
    /// The later item covers the earlier ones wherever its pixel is above the box threshold
    /// (its fainter edge is blended by maximum); the mask goes to the later item where its
    /// pixel is above the mask threshold and to the background where it covers with a fainter one.
    case later
}

/// The boxes whose overlap `CompositionOptions.maxOverlap` limits.
public enum OverlapMeasure: String, Sendable, CaseIterable {
    /// The tight boxes of the items' visible pixels.
    case visible
    /// The squares the scaled items are pasted in, margins included.
    case placement
}

/// An invalid `CompositionOptions` setting.
public struct CompositionOptionError: Error, CustomStringConvertible {
    public let description: String
}

/// One item pasted onto a canvas.
public struct ComposedItem: Equatable, Sendable {
    /// Row of the item in the item set.
    public var row: Int
    /// Class index of the item in the item set.
    public var label: Int
    /// Tight box of the scaled item's pixels above the box threshold, in canvas pixels
    /// (`x2`, `y2` exclusive, so a one-pixel item has a 1 x 1 box); `box.label == label`.
    public var box: DetectionBox
}

/// One generated canvas with everything the three output tasks need.
public struct ComposedCanvas: Sendable {
    /// The canvas, interleaved, with the item set's channels.
    public var image: Image
    /// The pasted items in paste order.
    public var items: [ComposedItem]
    /// One channel: 0 for background, 1 + class where a pasted item's pixel exceeds the mask
    /// threshold; where items overlap, the one `CompositionOptions.overlapRule` shows.
    public var mask: Image
    /// Items drawn for this canvas but not pasted: no position kept the overlap limit, or the
    /// item had no pixel above the box threshold after scaling.
    public var droppedItems: Int
}

/// Pastes items of a classification dataset onto larger canvases at seeded random positions and
/// scales, producing tagging, detection or segmentation datasets.
///
/// The whole item set is held in memory (read in row ranges): Fashion-MNIST's 60,000 28 x 28
/// items are 47 MB. The canvases are streamed to the writer one at a time.
public struct Composer {
    /// Class names of the item set.
    public let classNames: [String]
    /// Channels of the items and of the canvases.
    public let channels: Int
    public let itemWidth: Int, itemHeight: Int
    public let options: CompositionOptions
    /// What the items are: the item file and its own source, for the output's `source` attribute.
    public let itemDescription: String
    /// Items with no pixel above the box threshold; they are never drawn.
    public let blankItems: Int
    /// Items, interleaved `[N, H, W, C]`.
    let pixels: [UInt8]
    /// Usable (non-blank) item rows of each class.
    let rowsByClass: [[Int]]
    /// Classes with at least one usable item.
    let usableClasses: [Int]
    /// Class of each item.
    let labels: [Int32]

    /// Reads the whole item set of `items` (in row ranges) and checks it can fill canvases with `options`.
    public init(items: ClassificationDataset, options: CompositionOptions) throws {
        let rowBytes = items.channels * items.height * items.width
        var planar: [UInt8] = []
        planar.reserveCapacity(items.count * rowBytes)
        var labels: [Int32] = []
        labels.reserveCapacity(items.count)
        let step = max(items.blockRows, 1024)
        for start in stride(from: 0, to: items.count, by: step) {
            let rows = start..<min(start + step, items.count)
            planar += try items.readImages(rows)
            labels += try items.readLabels(rows)
        }
        let source = items.source.isEmpty ? "" : " (\(items.source))"
        try self.init(planarImages: planar, labels: labels, classNames: items.classNames, channels: items.channels,
                      height: items.height, width: items.width, options: options,
                      itemDescription: lastComponent(items.path) + source, itemPath: items.path)
    }

    /// An item set from memory: `planarImages` is `[N, C, H, W]` bytes as stored in dataset files.
    public init(planarImages: [UInt8], labels: [Int32], classNames: [String], channels: Int, height: Int, width: Int,
                options: CompositionOptions, itemDescription: String = "memory", itemPath: String = "items") throws {
        try options.validate()
        let rowBytes = channels * height * width
        precondition(channels > 0 && height > 0 && width > 0, "item shape must be positive")
        precondition(planarImages.count == labels.count * rowBytes, "\(labels.count) labels for \(planarImages.count) image bytes")
        guard !labels.isEmpty else { throw DatasetError(itemPath, "the item set holds no items") }
        var interleaved = planarImages
        if channels > 1 {
            planarImages.withUnsafeBufferPointer { source in
                for row in 0..<labels.count {
                    let image = Image(planar: source.baseAddress! + row * rowBytes, width: width, height: height, channels: channels)
                    interleaved.replaceSubrange((row * rowBytes)..<((row + 1) * rowBytes), with: image.pixels)
                }
            }
        }
        var rowsByClass = [[Int]](repeating: [], count: classNames.count)
        var blank = 0
        interleaved.withUnsafeBufferPointer { items in
            for (row, label) in labels.enumerated() {
                precondition(label >= 0 && Int(label) < classNames.count, "label \(label) outside the \(classNames.count) classes")
                let item = items.baseAddress! + row * rowBytes
                var visible = false
                for index in 0..<rowBytes where item[index] > options.boxThreshold { visible = true; break }
                if visible { rowsByClass[Int(label)].append(row) } else { blank += 1 }
            }
        }
        let usable = rowsByClass.indices.filter { !rowsByClass[$0].isEmpty }
        guard !options.distinctClasses || options.maxItems <= usable.count else {
            throw DatasetError(itemPath, "holds items of \(usable.count) classes with visible pixels, fewer than --max-items \(options.maxItems) (items on a canvas have distinct classes)")
        }
        self.classNames = classNames
        self.channels = channels
        itemWidth = width
        itemHeight = height
        self.options = options
        self.itemDescription = itemDescription
        blankItems = blank
        pixels = interleaved
        self.rowsByClass = rowsByClass
        usableClasses = usable
        self.labels = labels
    }

    /// Number of items in the set.
    public var itemCount: Int { labels.count }

    /// The generator of canvas `index`: the seed and index are hashed so that neighbouring
    /// canvases do not get overlapping SplitMix sequences.
    static func canvasGenerator(seed: UInt64, index: Int) -> SeededGenerator {
        var z = seed &+ (UInt64(index) &+ 1) &* 0xD1B5_4A32_D192_ED03
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return SeededGenerator(seed: z ^ (z >> 31))
    }

    /// Canvas number `index` (0-based): the same options, item set and index give the same canvas.
    public func canvas(index: Int) -> ComposedCanvas {
        var generator = Composer.canvasGenerator(seed: options.seed, index: index)
        let width = options.size.width, height = options.size.height, channels = self.channels
        var canvas = [UInt8](repeating: 0, count: width * height * channels)
        if options.noise > 0 {
            let level = options.noise * 255, distribution = options.noiseDistribution
            for index in canvas.indices { canvas[index] = distribution.value(level: level, using: &generator) }
        }
        var mask = [UInt8](repeating: 0, count: width * height)
        // The brightness of the item owning each mask pixel, so the visible item wins overlaps.
        var ownerValue = [UInt8](repeating: 0, count: width * height)
        var items: [ComposedItem] = []
        var dropped = 0

        let itemTotal = Int.random(in: options.minItems...options.maxItems, using: &generator)
        var classes = usableClasses
        if options.distinctClasses {
            for slot in 0..<itemTotal {
                classes.swapAt(slot, Int.random(in: slot..<classes.count, using: &generator))
            }
            classes = Array(classes.prefix(itemTotal))
        } else {
            classes = (0..<itemTotal).map { _ in usableClasses[Int.random(in: 0..<usableClasses.count, using: &generator)] }
        }
        // Placement squares of the items pasted so far (for `.placement` overlaps).
        var squares: [DetectionBox] = []
        for label in classes {
            let candidates = rowsByClass[label]
            let row = candidates[Int.random(in: 0..<candidates.count, using: &generator)]
            let scale = options.scaleMin + (options.scaleMax - options.scaleMin) * generator.nextUniform()
            let item = scaledItem(row: row, scale: scale)
            guard let content = visibleBounds(item) else { dropped += 1; continue }
            var position: (x: Int, y: Int)?
            for _ in 0..<options.placementAttempts {
                // Only the visible part must lie on the canvas; the item's empty margin may hang off.
                let x = Int.random(in: -content.x1...(width - content.x2), using: &generator)
                let y = Int.random(in: -content.y1...(height - content.y2), using: &generator)
                let fits: Bool
                switch options.overlapMeasure {
                case .visible:
                    let box = DetectionBox(x1: Float(x + content.x1), y1: Float(y + content.y1),
                                           x2: Float(x + content.x2), y2: Float(y + content.y2), label: Int32(label))
                    fits = items.allSatisfy { intersectionOverUnion($0.box, box) <= options.maxOverlap }
                case .placement:
                    let square = DetectionBox(x1: Float(x), y1: Float(y), x2: Float(x + item.width), y2: Float(y + item.height),
                                              label: Int32(label))
                    fits = squares.allSatisfy { intersectionOverUnion($0, square) <= options.maxOverlap }
                }
                if fits {
                    position = (x, y)
                    break
                }
            }
            guard let position else { dropped += 1; continue }
            squares.append(DetectionBox(x1: Float(position.x), y1: Float(position.y), x2: Float(position.x + item.width),
                                        y2: Float(position.y + item.height), label: Int32(label)))
            paste(item, at: position, label: label, canvas: &canvas, mask: &mask, ownerValue: &ownerValue,
                  canvasWidth: width, canvasHeight: height)
            items.append(ComposedItem(row: row, label: label, box: DetectionBox(
                x1: Float(position.x + content.x1), y1: Float(position.y + content.y1),
                x2: Float(position.x + content.x2), y2: Float(position.y + content.y2), label: Int32(label))))
        }
        return ComposedCanvas(image: Image(width: width, height: height, channels: channels, pixels: canvas), items: items,
                              mask: Image(width: width, height: height, channels: 1, pixels: mask), droppedItems: dropped)
    }

    /// Item `row` resized by `scale`, shrunk further if it would not fit on the canvas.
    func scaledItem(row: Int, scale: Float) -> Image {
        let rowBytes = itemWidth * itemHeight * channels
        let item = Image(width: itemWidth, height: itemHeight, channels: channels,
                         pixels: Array(pixels[(row * rowBytes)..<((row + 1) * rowBytes)]))
        var width = max(1, Int((Float(itemWidth) * scale).rounded()))
        var height = max(1, Int((Float(itemHeight) * scale).rounded()))
        if width > options.size.width || height > options.size.height {
            let fit = min(Float(options.size.width) / Float(width), Float(options.size.height) / Float(height))
            width = min(options.size.width, max(1, Int(Float(width) * fit)))
            height = min(options.size.height, max(1, Int(Float(height) * fit)))
        }
        return item.resized(width: width, height: height, filter: options.resampling)
    }

    /// The tight bounds (`x2`, `y2` exclusive) of the pixels above the box threshold, or nil if none is.
    func visibleBounds(_ item: Image) -> (x1: Int, y1: Int, x2: Int, y2: Int)? {
        var x1 = item.width, y1 = item.height, x2 = 0, y2 = 0
        let channels = item.channels, threshold = options.boxThreshold
        item.pixels.withUnsafeBufferPointer { pixels in
            for y in 0..<item.height {
                for x in 0..<item.width {
                    let pixel = pixels.baseAddress! + (y * item.width + x) * channels
                    var value = pixel[0]
                    for channel in 1..<max(channels, 1) { value = max(value, pixel[channel]) }
                    if value > threshold {
                        x1 = min(x1, x); y1 = min(y1, y); x2 = max(x2, x + 1); y2 = max(y2, y + 1)
                    }
                }
            }
        }
        return x2 > x1 ? (x1, y1, x2, y2) : nil
    }

    /// Pastes by `options.overlapRule`: by per-pixel maximum (items are light on black, so
    /// overlaps stay visible), marking the mask where the item's pixel is above the mask
    /// threshold and at least as bright as the current owner's; or covering what lies under the
    /// item's pixels above the box threshold.
    func paste(_ item: Image, at position: (x: Int, y: Int), label: Int, canvas: inout [UInt8], mask: inout [UInt8],
               ownerValue: inout [UInt8], canvasWidth: Int, canvasHeight: Int) {
        let channels = self.channels, threshold = options.maskThreshold, maskValue = UInt8(label + 1)
        let covers = options.overlapRule == .later, coverThreshold = options.boxThreshold
        item.pixels.withUnsafeBufferPointer { source in
            canvas.withUnsafeMutableBufferPointer { destination in
                mask.withUnsafeMutableBufferPointer { mask in
                    ownerValue.withUnsafeMutableBufferPointer { owner in
                        for y in 0..<item.height {
                            let canvasY = position.y + y
                            guard canvasY >= 0 && canvasY < canvasHeight else { continue }
                            for x in 0..<item.width {
                                let canvasX = position.x + x
                                guard canvasX >= 0 && canvasX < canvasWidth else { continue }
                                let pixel = source.baseAddress! + (y * item.width + x) * channels
                                let target = destination.baseAddress! + (canvasY * canvasWidth + canvasX) * channels
                                var value: UInt8 = 0
                                for channel in 0..<channels { value = max(value, pixel[channel]) }
                                let index = canvasY * canvasWidth + canvasX
                                if covers && value > coverThreshold {
                                    for channel in 0..<channels { target[channel] = pixel[channel] }
                                    mask[index] = value > threshold ? maskValue : 0
                                    owner[index] = value
                                    continue
                                }
                                for channel in 0..<channels { target[channel] = max(target[channel], pixel[channel]) }
                                if value > threshold && value >= owner[index] {
                                    mask[index] = maskValue
                                    owner[index] = value
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Class names the output of `task` declares: the item classes, and for segmentation
    /// "background" first.
    public func outputClassNames(for task: VisionTask) -> [String] {
        task == .segmentation ? ["background"] + classNames : classNames
    }

    /// Writes `options.count` canvases as a `task` dataset (tagging, detection or segmentation)
    /// to `output`, streaming them row by row.
    public func write(task: VisionTask, to output: String) throws -> ConversionSummary {
        guard task != .classification else {
            throw DatasetError(output, "compose writes tagging, detection or segmentation datasets, not classification")
        }
        let size = options.size
        let names = outputClassNames(for: task)
        let writer = try DatasetWriter(
            path: output, task: task, channels: channels, height: size.height, width: size.width,
            tagCount: task == .tagging ? classNames.count : 0,
            source: "compose \(task.rawValue) from \(itemDescription): \(options.summary)", overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: names.count)
        var boxes = 0, dropped = 0
        var canvasesByItemCount = [Int](repeating: 0, count: options.maxItems + 1)
        do {
            for index in 0..<options.count {
                let canvas = self.canvas(index: index)
                let source = "canvas \(index)"
                dropped += canvas.droppedItems
                canvasesByItemCount[canvas.items.count] += 1
                switch task {
                case .tagging:
                    let labels = canvas.items.map(\.label)
                    try writer.append(image: canvas.image, tagIndices: labels, source: source)
                    for label in labels { perClass[label] += 1 }
                case .detection:
                    try writer.append(image: canvas.image, boxes: canvas.items.map(\.box), imageID: Int64(index + 1),
                                      originalWidth: size.width, originalHeight: size.height, source: source)
                    for item in canvas.items { perClass[item.label] += 1 }
                    boxes += canvas.items.count
                case .segmentation:
                    try writer.append(image: canvas.image, mask: canvas.mask, source: source)
                    var present = [Bool](repeating: false, count: names.count)
                    for value in canvas.mask.pixels { present[Int(value)] = true }
                    for value in present.indices where present[value] { perClass[value] += 1 }
                case .classification:
                    preconditionFailure("rejected above")
                }
                options.progress?(index + 1, options.count)
            }
            try writer.finish(classNames: names, categoryIDs: task == .detection ? (1...classNames.count).map { Int64($0) } : nil)
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: task, count: options.count, channels: channels,
                                        height: size.height, width: size.width, classNames: names, perClass: perClass)
        summary.boxes = boxes
        summary.notes.append("canvases by number of items: "
            + (options.minItems...options.maxItems).map { "\($0): \(canvasesByItemCount[$0])" }.joined(separator: ", ")
            + (canvasesByItemCount[0..<options.minItems].reduce(0, +) > 0
               ? ", fewer than \(options.minItems): \(canvasesByItemCount[0..<options.minItems].reduce(0, +))" : ""))
        if dropped > 0 {
            summary.notes.append("dropped \(dropped) items that found no place within IoU \(options.maxOverlap) of earlier ones in \(options.placementAttempts) tries, or had no visible pixel after scaling")
        }
        summary.notes.append("read all \(itemCount) items into memory (\(String(format: "%.1f", Double(pixels.count) / 1_000_000)) MB)"
            + (blankItems > 0 ? "; \(blankItems) blank items (no pixel above \(options.boxThreshold)) never used" : ""))
        return summary
    }

    /// Opens the classification file `items`, composes `options.count` canvases and writes them
    /// as a `task` dataset to `output`.
    public static func compose(task: VisionTask, items: String, output: String,
                               options: CompositionOptions) throws -> ConversionSummary {
        try options.validate()
        let composer = try Composer(items: ClassificationDataset(path: items), options: options)
        return try composer.write(task: task, to: output)
    }

    /// An RGB contact sheet of the first `count` canvases, `columns` per row, each pixel
    /// repeated `zoom` times: detection boxes are outlined in their class's colour and
    /// segmentation canvases get their mask, coloured by class, beside them.
    public func preview(task: VisionTask, count: Int = 16, columns: Int = 4, zoom: Int = 2) -> Image {
        let canvases = (0..<max(0, min(count, options.count))).map { canvas(index: $0) }
        let tileWidth = options.size.width * (task == .segmentation ? 2 : 1), tileHeight = options.size.height
        let gap = 2
        let rows = (canvases.count + columns - 1) / max(columns, 1)
        let sheetWidth = (columns * (tileWidth + gap) + gap) * zoom, sheetHeight = (rows * (tileHeight + gap) + gap) * zoom
        var sheet = [UInt8](repeating: 96, count: max(sheetWidth * sheetHeight * 3, 3))
        func put(_ x: Int, _ y: Int, _ color: (UInt8, UInt8, UInt8), originX: Int, originY: Int) {
            for dy in 0..<zoom {
                for dx in 0..<zoom {
                    let offset = (((originY + y) * zoom + dy) * sheetWidth + (originX + x) * zoom + dx) * 3
                    sheet[offset] = color.0; sheet[offset + 1] = color.1; sheet[offset + 2] = color.2
                }
            }
        }
        for (number, canvas) in canvases.enumerated() {
            let originX = gap + (number % columns) * (tileWidth + gap), originY = gap + (number / columns) * (tileHeight + gap)
            let rgb = canvas.image.converted(toChannels: 3).pixels
            for y in 0..<tileHeight {
                for x in 0..<options.size.width {
                    let offset = (y * options.size.width + x) * 3
                    put(x, y, (rgb[offset], rgb[offset + 1], rgb[offset + 2]), originX: originX, originY: originY)
                    if task == .segmentation {
                        let value = Int(canvas.mask.pixels[y * options.size.width + x])
                        put(options.size.width + x, y, value == 0 ? (0, 0, 0) : Drawing.classColor(value - 1),
                            originX: originX, originY: originY)
                    }
                }
            }
            guard task == .detection else { continue }
            for item in canvas.items {
                let color = Drawing.classColor(item.label)
                let x1 = Int(item.box.x1), y1 = Int(item.box.y1), x2 = Int(item.box.x2) - 1, y2 = Int(item.box.y2) - 1
                for x in x1...x2 { put(x, y1, color, originX: originX, originY: originY); put(x, y2, color, originX: originX, originY: originY) }
                for y in y1...y2 { put(x1, y, color, originX: originX, originY: originY); put(x2, y, color, originX: originX, originY: originY) }
            }
        }
        return Image(width: max(sheetWidth, 1), height: max(sheetHeight, 1), channels: 3, pixels: sheet)
    }

}

/// Intersection over union of two boxes (0 when either has no area).
public func intersectionOverUnion(_ a: DetectionBox, _ b: DetectionBox) -> Float {
    let width = min(a.x2, b.x2) - max(a.x1, b.x1), height = min(a.y2, b.y2) - max(a.y1, b.y1)
    guard width > 0, height > 0 else { return 0 }
    let intersection = width * height
    let union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - intersection
    return union > 0 ? intersection / union : 0
}
