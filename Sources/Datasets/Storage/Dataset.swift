import Foundation

/// Task targets and images of a contiguous row range, as stored (uint8 planar images).
public struct DatasetRows {
    /// The rows of the file these records come from.
    public var rows: Range<Int>
    /// `rows.count * channels * height * width` bytes, `[N, C, H, W]`.
    public var images: [UInt8] = []
    /// Classification labels, one per row.
    public var labels: [Int32] = []
    /// Tagging multi-hot rows, `rows.count * tagCount` bytes.
    public var tags: [UInt8] = []
    /// Segmentation masks, `rows.count * height * width` bytes (255 = ignore).
    public var masks: [UInt8] = []
    /// Detection: row `i` owns boxes `boxOffsets[i]..<boxOffsets[i + 1]` of `boxes` (4 floats each).
    public var boxOffsets: [Int] = []
    public var boxes: [Float] = []
    public var boxLabels: [Int32] = []
    /// 1 for an ignore region (files without `/box_ignore` have none).
    public var boxIgnore: [UInt8] = []
}

/// A Percept dataset file opened for reading; validates the common layout on open.
///
/// Use the task classes (`ClassificationDataset`, ...) which also check their own datasets.
public class ImageDataset {
    /// The file on disk.
    public let path: String
    public let task: VisionTask
    /// Number of images.
    public let count: Int
    public let channels: Int, height: Int, width: Int
    /// Class names (tag names for tagging, category names for detection).
    public let classNames: [String]
    /// Where the data was converted from.
    public let source: String
    public let formatVersion: Int
    /// Rows per stored chunk of `images`: the unit the loader reads and shuffles.
    public let blockRows: Int
    let file: HDF5File
    let images: HDF5Dataset

    init(path: String, expecting expected: VisionTask) throws {
        self.path = path
        file = try HDF5File(openingPath: path)
        guard file.hasAttribute("format") else {
            throw DatasetError(path, "not a Percept dataset (no 'format' attribute)")
        }
        let format = try file.stringAttribute("format")
        guard format == DatasetLayout.datasetFormat else {
            throw DatasetError(path, format == DatasetLayout.modelFormat
                               ? "is a Percept model file, not a dataset" : "not a Percept dataset (format '\(format)')")
        }
        formatVersion = try file.integerAttribute("format_version")
        guard formatVersion >= 1 && formatVersion <= DatasetLayout.formatVersion else {
            throw DatasetError(path, "format version \(formatVersion) is newer than this Percept reads (\(DatasetLayout.formatVersion))")
        }
        let taskName = try file.stringAttribute("task")
        guard let task = VisionTask(rawValue: taskName) else { throw DatasetError(path, "unknown task '\(taskName)'") }
        guard task == expected else {
            throw DatasetError(path, "is a \(task.rawValue) dataset, not \(expected.rawValue)")
        }
        self.task = task
        source = file.hasAttribute("source") ? try file.stringAttribute("source") : ""
        classNames = try file.stringsAttribute("class_names")
        images = try file.dataset("images")
        guard images.shape.count == 4, images.storedType.kind == .integer, images.storedType.size == 1 else {
            throw DatasetError(path, "'/images' must be uint8 [N, C, H, W], found \(images.storedType) \(images.shape)")
        }
        count = images.shape[0]
        channels = images.shape[1]
        height = images.shape[2]
        width = images.shape[3]
        guard count > 0 else { throw DatasetError(path, "'/images' holds no images") }
        try DatasetLayout.checkImageShape(channels: channels, height: height, width: width, path: path)
        _ = try images.checkedElementCount()
        blockRows = try images.layout().chunk?.first ?? DatasetLayout.chunkRows(rowBytes: channels * height * width)
    }

    /// Opens `member` and checks it has `count` rows of `rowShape` and the given kind.
    func rowDataset(_ member: String, rowShape: [Int]?, kind: HDF5TypeDescription.Kind, rows: Int? = nil) throws -> HDF5Dataset {
        let dataset = try file.dataset(member)
        let expectedRows = rows ?? count
        guard dataset.storedType.kind == kind, dataset.shape.first == expectedRows,
              rowShape == nil || Array(dataset.shape.dropFirst()) == rowShape! else {
            let shape = "[\(expectedRows)\(rowShape.map { $0.map { ", \($0)" }.joined() } ?? ", ...")]"
            throw DatasetError(path, "'/\(member)' must be \(kind == .float ? "float" : "integer") \(shape), found \(dataset.storedType) \(dataset.shape)")
        }
        return dataset
    }

    /// Reads the images of `rows` into `[N, C, H, W]` bytes.
    public func readImages(_ rows: Range<Int>) throws -> [UInt8] {
        try images.readRows(rows, as: .uint8)
    }

    /// Reads images and targets of a contiguous row range (one hyperslab per dataset).
    public func read(rows: Range<Int>) throws -> DatasetRows {
        var result = DatasetRows(rows: rows)
        result.images = try readImages(rows)
        try readTargets(rows, into: &result)
        return result
    }

    func readTargets(_ rows: Range<Int>, into result: inout DatasetRows) throws {}

    /// Reads images and targets of the rows of `runs` (ascending, disjoint, non-empty ranges),
    /// one after another, as one union hyperslab per dataset: a data-parallel rank's own rows.
    /// `rows` of the result counts them (0..<total); the caller knows which rows they are.
    public func read(runs: [Range<Int>]) throws -> DatasetRows {
        if runs.count == 1 { return try read(rows: runs[0]) }
        var result = DatasetRows(rows: 0..<runs.reduce(0) { $0 + $1.count })
        result.images = try images.readRows(runs: runs, as: .uint8)
        try readTargets(runs: runs, into: &result)
        return result
    }

    /// The targets of several runs: each run's, concatenated (the task classes with fixed-size
    /// targets read them as one union hyperslab instead).
    func readTargets(runs: [Range<Int>], into result: inout DatasetRows) throws {
        for run in runs {
            var part = DatasetRows(rows: run)
            try readTargets(run, into: &part)
            result.labels += part.labels
            result.tags += part.tags
            result.masks += part.masks
            let shift = result.boxLabels.count
            if result.boxOffsets.isEmpty { result.boxOffsets = [0] }
            result.boxOffsets += part.boxOffsets.dropFirst().map { $0 + shift }
            result.boxes += part.boxes
            result.boxLabels += part.boxLabels
            result.boxIgnore += part.boxIgnore
        }
    }

    /// The file row of the `offset`-th row read from `runs`.
    func row(_ offset: Int, of runs: [Range<Int>]) -> Int {
        var remaining = offset
        for run in runs {
            if remaining < run.count { return run.lowerBound + remaining }
            remaining -= run.count
        }
        return offset
    }

    /// Number of tags per image (tagging), else 0.
    public var tagCount: Int { 0 }
}

/// A classification file: `images` uint8 `[N, C, H, W]`, `labels` int32 `[N]`.
public final class ClassificationDataset: ImageDataset {
    private var labels: HDF5Dataset!

    /// Opens and validates a classification file.
    public init(path: String) throws {
        try super.init(path: path, expecting: .classification)
        labels = try rowDataset("labels", rowShape: [], kind: .integer)
        guard !classNames.isEmpty else { throw DatasetError(path, "attribute 'class_names' is empty") }
    }

    /// Number of classes.
    public var classCount: Int { classNames.count }

    /// Labels of `rows`, each checked against the declared classes.
    public func readLabels(_ rows: Range<Int>) throws -> [Int32] { try readLabels(runs: [rows]) }

    func readLabels(runs: [Range<Int>]) throws -> [Int32] {
        let values: [Int32] = try labels.readRows(runs: runs, as: .int32)
        for (offset, label) in values.enumerated() where label < 0 || Int(label) >= classNames.count {
            throw DatasetError(path, "label \(label) of image \(row(offset, of: runs)) is outside the \(classNames.count) classes")
        }
        return values
    }

    override func readTargets(_ rows: Range<Int>, into result: inout DatasetRows) throws {
        result.labels = try readLabels(rows)
    }

    override func readTargets(runs: [Range<Int>], into result: inout DatasetRows) throws {
        result.labels = try readLabels(runs: runs)
    }
}

/// A tagging file: `images`, `tags` uint8 multi-hot `[N, K]`, `class_names` = the K tag names.
public final class TaggingDataset: ImageDataset {
    private var tags: HDF5Dataset!

    /// Opens and validates a tagging file.
    public init(path: String) throws {
        try super.init(path: path, expecting: .tagging)
        tags = try rowDataset("tags", rowShape: [classNames.count], kind: .integer)
    }

    /// Tag names (the `class_names` attribute).
    public var tagNames: [String] { classNames }
    public override var tagCount: Int { classNames.count }

    /// Multi-hot rows of `rows`, `rows.count * tagCount` bytes of 0 or 1.
    public func readTags(_ rows: Range<Int>) throws -> [UInt8] { try readTags(runs: [rows]) }

    func readTags(runs: [Range<Int>]) throws -> [UInt8] {
        let values: [UInt8] = try tags.readRows(runs: runs, as: .uint8)
        if let bad = values.firstIndex(where: { $0 > 1 }) {
            throw DatasetError(path, "tags of image \(row(bad / tagCount, of: runs)) hold \(values[bad]), expected 0 or 1")
        }
        return values
    }

    override func readTargets(_ rows: Range<Int>, into result: inout DatasetRows) throws {
        result.tags = try readTags(rows)
    }

    override func readTargets(runs: [Range<Int>], into result: inout DatasetRows) throws {
        result.tags = try readTags(runs: runs)
    }
}

/// A segmentation file: `images`, `masks` uint8 `[N, H, W]` of class indices, 255 = ignore.
public final class SegmentationDataset: ImageDataset {
    private var masks: HDF5Dataset!

    /// Opens and validates a segmentation file.
    public init(path: String) throws {
        try super.init(path: path, expecting: .segmentation)
        masks = try rowDataset("masks", rowShape: [height, width], kind: .integer)
        guard !classNames.isEmpty else { throw DatasetError(path, "attribute 'class_names' is empty") }
    }

    /// Number of classes (mask values below it, or 255).
    public var classCount: Int { classNames.count }
    /// The mask value that marks pixels to ignore.
    public var ignoreIndex: UInt8 { DatasetLayout.ignoreIndex }

    /// Masks of `rows`, `rows.count * height * width` bytes, each value checked.
    public func readMasks(_ rows: Range<Int>) throws -> [UInt8] { try readMasks(runs: [rows]) }

    func readMasks(runs: [Range<Int>]) throws -> [UInt8] {
        let values: [UInt8] = try masks.readRows(runs: runs, as: .uint8)
        let limit = classNames.count
        if let bad = values.firstIndex(where: { Int($0) >= limit && $0 != DatasetLayout.ignoreIndex }) {
            throw DatasetError(path, "mask of image \(row(bad / (height * width), of: runs)) holds \(values[bad]), outside the \(limit) classes")
        }
        return values
    }

    override func readTargets(_ rows: Range<Int>, into result: inout DatasetRows) throws {
        result.masks = try readMasks(rows)
    }

    override func readTargets(runs: [Range<Int>], into result: inout DatasetRows) throws {
        result.masks = try readMasks(runs: runs)
    }
}

/// A detection file: `images`, `boxes` float32 `[M, 4]` (x1, y1, x2, y2 pixels), `box_labels`
/// int32 `[M]`, `box_offsets` int64 `[N + 1]`, `image_ids` int64 `[N]`, `original_sizes`
/// int32 `[N, 2]` (height, width before resizing), `class_names` and `category_ids`.
public final class DetectionDataset: ImageDataset {
    private var boxes: HDF5Dataset!
    private var boxLabels: HDF5Dataset!
    /// Absent in files written before ignore regions existed.
    private var boxIgnore: HDF5Dataset?
    private var boxOffsets: HDF5Dataset!
    private var imageIDs: HDF5Dataset!
    private var originalSizes: HDF5Dataset!
    /// The source's category id of each class (COCO `category_id`), by class index.
    public private(set) var categoryIDs: [Int64] = []
    /// Total number of boxes.
    public private(set) var boxCount = 0

    /// Opens and validates a detection file.
    public init(path: String) throws {
        try super.init(path: path, expecting: .detection)
        boxOffsets = try rowDataset("box_offsets", rowShape: [], kind: .integer, rows: count + 1)
        let boxTable = try file.dataset("boxes")
        boxCount = boxTable.shape.first ?? 0
        boxes = try rowDataset("boxes", rowShape: [4], kind: .float, rows: boxCount)
        boxLabels = try rowDataset("box_labels", rowShape: [], kind: .integer, rows: boxCount)
        if file.contains("box_ignore") { boxIgnore = try rowDataset("box_ignore", rowShape: [], kind: .integer, rows: boxCount) }
        imageIDs = try rowDataset("image_ids", rowShape: [], kind: .integer)
        originalSizes = try rowDataset("original_sizes", rowShape: [2], kind: .integer)
        if file.hasAttribute("category_ids") {
            guard case .integers(let ids) = try file.attribute("category_ids"), ids.count == classNames.count else {
                throw DatasetError(path, "attribute 'category_ids' must hold \(classNames.count) integers")
            }
            categoryIDs = ids
        } else {
            categoryIDs = (0..<classNames.count).map { Int64($0) }
        }
        let last: [Int64] = try boxOffsets.readRows(count..<(count + 1), as: .int64)
        guard last[0] == Int64(boxCount) else {
            throw DatasetError(path, "'/box_offsets' ends at \(last[0]) but '/boxes' holds \(boxCount) boxes")
        }
    }

    /// The source's image ids (COCO `image_id`) of `rows`.
    public func readImageIDs(_ rows: Range<Int>) throws -> [Int64] { try imageIDs.readRows(rows, as: .int64) }

    /// Sizes before resizing of `rows`, as (height, width) pairs.
    public func readOriginalSizes(_ rows: Range<Int>) throws -> [(height: Int, width: Int)] {
        let values: [Int32] = try originalSizes.readRows(rows, as: .int32)
        return (0..<rows.count).map { (Int(values[2 * $0]), Int(values[2 * $0 + 1])) }
    }

    /// Boxes of each image in `rows`.
    public func readBoxes(_ rows: Range<Int>) throws -> [[DetectionBox]] {
        var result = DatasetRows(rows: rows)
        try readTargets(rows, into: &result)
        return (0..<rows.count).map { index in
            (result.boxOffsets[index]..<result.boxOffsets[index + 1]).map { box in
                DetectionBox(x1: result.boxes[4 * box], y1: result.boxes[4 * box + 1],
                             x2: result.boxes[4 * box + 2], y2: result.boxes[4 * box + 3], label: result.boxLabels[box],
                             ignore: result.boxIgnore[box] != 0)
            }
        }
    }

    override func readTargets(_ rows: Range<Int>, into result: inout DatasetRows) throws {
        let offsets: [Int64] = try boxOffsets.readRows(rows.lowerBound..<(rows.upperBound + 1), as: .int64)
        let first = Int(offsets[0]), end = Int(offsets[offsets.count - 1])
        for index in 1..<offsets.count where offsets[index] < offsets[index - 1] || offsets[index] > Int64(boxCount) {
            throw DatasetError(path, "'/box_offsets' is not ascending within the boxes at image \(rows.lowerBound + index - 1)")
        }
        guard first >= 0, first <= end else {
            throw DatasetError(path, "'/box_offsets' is not ascending at image \(rows.lowerBound)")
        }
        result.boxOffsets = offsets.map { Int($0) - first }
        result.boxes = try boxes.readRows(first..<end, as: .float32)
        result.boxLabels = try boxLabels.readRows(first..<end, as: .int32)
        result.boxIgnore = try boxIgnore?.readRows(first..<end, as: .uint8) ?? [UInt8](repeating: 0, count: end - first)
        if let bad = result.boxLabels.first(where: { $0 < 0 || Int($0) >= classNames.count }) {
            throw DatasetError(path, "box label \(bad) near image \(rows.lowerBound) is outside the \(classNames.count) classes")
        }
    }
}

/// Opens any Percept dataset file as the class of its task.
public func openDataset(path: String) throws -> ImageDataset {
    let file = try HDF5File(openingPath: path)
    guard file.hasAttribute("task") else { throw DatasetError(path, "not a Percept dataset (no 'task' attribute)") }
    let task = try file.stringAttribute("task")
    switch VisionTask(rawValue: task) {
    case .classification?: return try ClassificationDataset(path: path)
    case .tagging?: return try TaggingDataset(path: path)
    case .detection?: return try DetectionDataset(path: path)
    case .segmentation?: return try SegmentationDataset(path: path)
    case nil: throw DatasetError(path, "unknown task '\(task)'")
    }
}
