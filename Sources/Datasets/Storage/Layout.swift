import Foundation

/// The four vision tasks: what a dataset file is laid out for, what a model is trained for, and
/// the `TASK` of `percept TASK MODE`. The raw values are the names stored in files.
public enum VisionTask: String, Codable, Sendable, CaseIterable {
    case classification, tagging, detection, segmentation
}

/// Names and constants of the on-disk layout (documented in docs/datasets.md).
public enum DatasetLayout {
    /// Value of the root `format` attribute of every Percept dataset file.
    public static let datasetFormat = "percept-dataset"
    /// Value of the root `format` attribute of every Percept model file.
    public static let modelFormat = "percept-model"
    /// Layout version written by this code; readers accept this version and older.
    public static let formatVersion = 1
    /// Mask value for pixels that take no part in the loss.
    public static let ignoreIndex: UInt8 = 255
    /// Target size of one compressed chunk of per-image data.
    static let chunkBytes = 256 * 1024
    /// Rows per chunk for small per-image records (labels, offsets).
    static let smallChunkRows = 4096

    static func chunkRows(rowBytes: Int) -> Int { max(1, min(smallChunkRows, chunkBytes / max(rowBytes, 1))) }

    /// Fails unless images of `channels` x `height` x `width` are ones Percept reads and writes:
    /// 1 to 4 channels and at most `Image.maximumPixels` pixels, so that a file declaring huge
    /// images fails when opened rather than aborting when a batch is allocated.
    static func checkImageShape(channels: Int, height: Int, width: Int, path: String) throws {
        guard (1...4).contains(channels) else { throw DatasetError(path, "images of \(channels) channels (1 to 4 supported)") }
        guard height > 0, width > 0 else { throw DatasetError(path, "images of \(width)x\(height) pixels") }
        let (pixels, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, pixels <= Image.maximumPixels else {
            throw DatasetError(path, "images of \(width)x\(height) pixels, over the limit of \(Image.maximumPixels) (Image.maximumPixels)")
        }
    }
}

/// One object box in pixels of the stored image: corners `[x1, y1, x2, y2]` and a class index.
public struct DetectionBox: Equatable, Sendable {
    public var x1: Float, y1: Float, x2: Float, y2: Float
    /// Index into the file's `class_names` (not the COCO category id).
    public var label: Int32
    /// An ignore region (a COCO crowd, a VOC `difficult` object): neither to be found nor
    /// missed. Evaluation treats it as pycocotools treats crowds; training takes no window of it
    /// as an object or as background.
    public var ignore: Bool

    public init(x1: Float, y1: Float, x2: Float, y2: Float, label: Int32, ignore: Bool = false) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2; self.label = label; self.ignore = ignore
    }
}

/// Appends rows to a growable, chunked, shuffled and gzipped dataset, buffering one chunk so
/// that each HDF5 write covers whole chunks.
public final class RowAppender {
    let dataset: HDF5Dataset
    let type: HDF5ElementType
    /// Bytes in one row.
    public let rowBytes: Int
    let chunkRows: Int
    private var buffer: [UInt8]
    private var buffered = 0
    /// Rows appended so far (written or buffered).
    public private(set) var count = 0

    init(group: HDF5Group, name: String, type: HDF5ElementType, rowShape: [Int], chunkRows: Int? = nil) throws {
        self.type = type
        rowBytes = rowShape.reduce(1, *) * type.size
        self.chunkRows = chunkRows ?? DatasetLayout.chunkRows(rowBytes: rowBytes)
        dataset = try group.createDataset(name, type: type, shape: [0] + rowShape,
                                          chunkShape: [self.chunkRows] + rowShape, growable: true)
        buffer = [UInt8](repeating: 0, count: self.chunkRows * rowBytes)
    }

    /// Gives `body` the memory of the next row to fill (zeroed), then counts it appended.
    public func appendRow(_ body: (UnsafeMutableRawPointer) throws -> Void) throws {
        try buffer.withUnsafeMutableBytes { raw in
            let row = raw.baseAddress! + buffered * rowBytes
            row.initializeMemory(as: UInt8.self, repeating: 0, count: rowBytes)
            try body(row)
        }
        buffered += 1
        count += 1
        if buffered == chunkRows { try flush() }
    }

    /// Appends one row of values of the appender's element type.
    public func append<T>(_ values: [T]) throws {
        precondition(values.count * MemoryLayout<T>.stride == rowBytes, "row of \(values.count) values does not fit \(rowBytes) bytes")
        try appendRow { row in
            values.withUnsafeBytes { row.copyMemory(from: $0.baseAddress!, byteCount: rowBytes) }
        }
    }

    /// Writes the buffered rows.
    public func flush() throws {
        guard buffered > 0 else { return }
        try buffer.withUnsafeBytes { raw in
            try dataset.append(count: buffered, as: type, from: raw.baseAddress!)
        }
        buffered = 0
    }
}

/// Writes a Percept dataset file row by row with bounded memory. The file is built under a
/// temporary name and appears at `path` only when `finish` succeeds.
public final class DatasetWriter {
    public let path: String
    public let task: VisionTask
    public let channels: Int, height: Int, width: Int
    /// Number of tags (tagging files only).
    public let tagCount: Int
    let output: AtomicOutput
    var file: HDF5File?
    var images: RowAppender?
    var labels: RowAppender?
    var tags: RowAppender?
    var masks: RowAppender?
    var boxes: RowAppender?
    var boxLabels: RowAppender?
    var boxIgnore: RowAppender?
    var boxOffsets: RowAppender?
    var imageIDs: RowAppender?
    var originalSizes: RowAppender?
    /// Images appended so far.
    public private(set) var count = 0
    /// Boxes appended so far (detection).
    public private(set) var boxCount = 0

    /// Starts a file for `task` with images of `channels` x `height` x `width`; fails if
    /// `path` exists and `overwrite` is false.
    public init(path: String, task: VisionTask, channels: Int, height: Int, width: Int, tagCount: Int = 0,
                source: String, overwrite: Bool = false) throws {
        try DatasetLayout.checkImageShape(channels: channels, height: height, width: width, path: path)
        self.path = path
        self.task = task
        self.channels = channels
        self.height = height
        self.width = width
        self.tagCount = tagCount
        output = try AtomicOutput(path: path, overwrite: overwrite)
        do {
            let file = try HDF5File(creatingPath: output.temporaryPath)
            self.file = file
            try file.setAttribute("format", DatasetLayout.datasetFormat)
            try file.setAttribute("format_version", DatasetLayout.formatVersion)
            try file.setAttribute("task", task.rawValue)
            try file.setAttribute("source", source)
            images = try RowAppender(group: file, name: "images", type: .uint8, rowShape: [channels, height, width])
            switch task {
            case .classification:
                labels = try RowAppender(group: file, name: "labels", type: .int32, rowShape: [])
            case .tagging:
                precondition(tagCount > 0, "a tagging file needs at least one tag")
                tags = try RowAppender(group: file, name: "tags", type: .uint8, rowShape: [tagCount])
            case .segmentation:
                masks = try RowAppender(group: file, name: "masks", type: .uint8, rowShape: [height, width])
                try file.setAttribute("ignore_index", Int(DatasetLayout.ignoreIndex))
            case .detection:
                boxes = try RowAppender(group: file, name: "boxes", type: .float32, rowShape: [4], chunkRows: 4096)
                boxLabels = try RowAppender(group: file, name: "box_labels", type: .int32, rowShape: [])
                boxIgnore = try RowAppender(group: file, name: "box_ignore", type: .uint8, rowShape: [])
                boxOffsets = try RowAppender(group: file, name: "box_offsets", type: .int64, rowShape: [])
                imageIDs = try RowAppender(group: file, name: "image_ids", type: .int64, rowShape: [])
                originalSizes = try RowAppender(group: file, name: "original_sizes", type: .int32, rowShape: [2])
                try boxOffsets!.append([Int64(0)])
            }
        } catch {
            file = nil
            output.abandon()
            throw error
        }
    }

    private func appendImage(_ image: Image, source: String) throws {
        guard image.width == width, image.height == height else {
            throw DatasetError(source, "image is \(image.width)x\(image.height), expected \(width)x\(height) (use --size to resize)")
        }
        precondition(image.channels == channels, "image has \(image.channels) channels, file has \(channels)")
        try images!.appendRow { row in image.copyPlanar(into: row.assumingMemoryBound(to: UInt8.self)) }
        count += 1
    }

    /// Appends a classification record; `source` names the image in errors.
    public func append(image: Image, label: Int, source: String = "image") throws {
        precondition(task == .classification)
        try appendImage(image, source: source)
        try labels!.append([Int32(label)])
    }

    /// Appends a tagging record with the indices of the tags present.
    public func append(image: Image, tagIndices: [Int], source: String = "image") throws {
        precondition(task == .tagging)
        try appendImage(image, source: source)
        try tags!.appendRow { row in
            let bytes = row.assumingMemoryBound(to: UInt8.self)
            for index in tagIndices {
                precondition(index >= 0 && index < tagCount, "tag index \(index) outside 0..<\(tagCount)")
                bytes[index] = 1
            }
        }
    }

    /// Appends a segmentation record; `mask` is one channel of class indices (255 = ignore).
    public func append(image: Image, mask: Image, source: String = "image") throws {
        precondition(task == .segmentation && mask.channels == 1)
        guard mask.width == width, mask.height == height else {
            throw DatasetError(source, "mask is \(mask.width)x\(mask.height), expected \(width)x\(height)")
        }
        try appendImage(image, source: source)
        try masks!.append(mask.pixels)
    }

    /// Appends a detection record: boxes in pixels of the stored image, the image's id in
    /// its source (COCO `image_id`) and its size before resizing.
    public func append(image: Image, boxes imageBoxes: [DetectionBox], imageID: Int64,
                       originalWidth: Int, originalHeight: Int, source: String = "image") throws {
        precondition(task == .detection)
        try appendImage(image, source: source)
        for box in imageBoxes {
            try boxes!.append([box.x1, box.y1, box.x2, box.y2])
            try boxLabels!.append([box.label])
            try boxIgnore!.append([UInt8(box.ignore ? 1 : 0)])
        }
        boxCount += imageBoxes.count
        try boxOffsets!.append([Int64(boxCount)])
        try imageIDs!.append([imageID])
        try originalSizes!.append([Int32(originalHeight), Int32(originalWidth)])
    }

    /// Writes the class (or tag, or category) names and, for detection, the source's
    /// category ids, then closes the file and moves it to `path`.
    public func finish(classNames: [String], categoryIDs: [Int64]? = nil) throws {
        guard let file else { throw DatasetError(path, "writer already finished") }
        do {
            guard count > 0 else { throw DatasetError(path, "empty input: no images to write") }
            for appender in [images, labels, tags, masks, boxes, boxLabels, boxIgnore, boxOffsets, imageIDs, originalSizes] {
                try appender?.flush()
            }
            try file.setAttribute("class_names", strings: classNames)
            if let categoryIDs { try file.setAttribute("category_ids", integers: categoryIDs) }
            try file.flush()
        } catch {
            abandon()
            throw error
        }
        closeFile()
        try output.commit()
    }

    private func closeFile() {
        // Every dataset handle must be gone before the file id closes for the file to close.
        images = nil; labels = nil; tags = nil; masks = nil; boxes = nil; boxLabels = nil; boxIgnore = nil; boxOffsets = nil
        imageIDs = nil; originalSizes = nil
        file = nil
    }

    /// Drops the partial file, leaving no output.
    public func abandon() {
        closeFile()
        output.abandon()
    }

    deinit { if file != nil { abandon() } }
}
