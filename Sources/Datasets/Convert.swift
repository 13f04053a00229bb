import CZlib
import Foundation

/// A width and height in pixels, parsed from `WxH`.
public struct ImageSize: Equatable, Sendable, CustomStringConvertible {
    public var width: Int, height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    /// Parses "32x32" (or "32X32"); nil when malformed or not positive.
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0,
              width <= 65536, height <= 65536 else { return nil }
        self.init(width: width, height: height)
    }

    public var description: String { "\(width)x\(height)" }
}

/// Settings shared by every conversion.
public struct ConversionOptions {
    /// Resize every image (and mask, and boxes) to this size; without it all images must match.
    public var size: ImageSize?
    /// Channels to store (1 gray or 3 RGB); nil keeps the converter's default (IDX 1, PNG 3).
    public var channels: Int?
    /// Replace an existing output file.
    public var overwrite: Bool
    /// Called after each image with (done, total).
    public var progress: ((Int, Int) -> Void)?

    public init(size: ImageSize? = nil, channels: Int? = nil, overwrite: Bool = false,
                progress: ((Int, Int) -> Void)? = nil) {
        self.size = size
        self.channels = channels
        self.overwrite = overwrite
        self.progress = progress
    }
}

/// What a conversion wrote, for the closing report.
public struct ConversionSummary: CustomStringConvertible {
    public var output: String
    public var task: VisionTask
    public var count: Int
    public var channels: Int, height: Int, width: Int
    public var classNames: [String]
    /// Per class: images (classification, tagging), boxes (detection) or images containing
    /// the class (segmentation).
    public var perClass: [Int]
    /// Boxes written (detection).
    public var boxes: Int = 0
    /// Things skipped on purpose, e.g. "3 crowd annotations".
    public var notes: [String] = []

    public var description: String {
        let unit: String
        switch task {
        case .classification: unit = "images"
        case .tagging: unit = "images tagged"
        case .detection: unit = "boxes"
        case .segmentation: unit = "images containing"
        }
        var lines = ["wrote \(output): \(task.rawValue), \(count) images of \(channels)x\(height)x\(width)"
                     + (task == .detection ? ", \(boxes) boxes" : "")]
        lines.append("\(unit) per class:")
        let width = classNames.map(\.count).max() ?? 0
        for (name, number) in zip(classNames, perClass) {
            lines.append("  " + name.padding(toLength: max(width, 1), withPad: " ", startingAt: 0) + "  \(number)")
        }
        lines += notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}

/// Conversions from common dataset formats to Percept's HDF5 layouts.
public enum Converter {
    // MARK: IDX (MNIST, Fashion-MNIST)

    /// Converts IDX image and label files (gzipped or raw) to a classification file.
    public static func idx(images imagesPath: String, labels labelsPath: String, classes: [String]?,
                           output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let labelsFile = try IDXReader(path: labelsPath)
        guard labelsFile.dimensions.count == 1 else {
            throw DatasetError(labelsPath, "an IDX label file has 1 dimension, this one has \(labelsFile.dimensions.count)")
        }
        let count = labelsFile.dimensions[0]
        let labels = try labelsFile.read(count: count, record: "label")
        let imagesFile = try IDXReader(path: imagesPath)
        guard imagesFile.dimensions.count == 3 else {
            throw DatasetError(imagesPath, "an IDX image file has 3 dimensions, this one has \(imagesFile.dimensions.count)")
        }
        guard imagesFile.dimensions[0] == count else {
            throw DatasetError(imagesPath, "holds \(imagesFile.dimensions[0]) images but \(lastComponent(labelsPath)) holds \(count) labels")
        }
        guard count > 0 else { throw DatasetError(imagesPath, "empty input: the file holds no images") }
        let sourceHeight = imagesFile.dimensions[1], sourceWidth = imagesFile.dimensions[2]
        guard sourceHeight > 0, sourceWidth > 0 else { throw DatasetError(imagesPath, "images of size \(sourceWidth)x\(sourceHeight)") }

        let maxLabel = Int(labels.max() ?? 0)
        let classNames = classes ?? (0...maxLabel).map { String($0) }
        if let bad = labels.firstIndex(where: { Int($0) >= classNames.count }) {
            throw DatasetError(labelsPath, "record \(bad): label \(labels[bad]) is outside the \(classNames.count) declared classes")
        }
        let channels = options.channels ?? 1
        let size = options.size ?? ImageSize(width: sourceWidth, height: sourceHeight)
        let writer = try DatasetWriter(path: output, task: .classification, channels: channels, height: size.height,
                                       width: size.width, source: "idx: \(lastComponent(imagesPath)), \(lastComponent(labelsPath))",
                                       overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: classNames.count)
        do {
            var pixels = [UInt8](repeating: 0, count: sourceHeight * sourceWidth)
            for index in 0..<count {
                try imagesFile.read(into: &pixels, record: "image \(index)")
                let image = Image(width: sourceWidth, height: sourceHeight, channels: 1, pixels: pixels)
                    .resized(width: size.width, height: size.height).converted(toChannels: channels)
                try writer.append(image: image, label: Int(labels[index]), source: "\(imagesPath): image \(index)")
                perClass[Int(labels[index])] += 1
                options.progress?(index + 1, count)
            }
            try imagesFile.expectEnd()
            try writer.finish(classNames: classNames)
        } catch {
            writer.abandon()
            throw error
        }
        return ConversionSummary(output: output, task: .classification, count: count, channels: channels,
                                 height: size.height, width: size.width, classNames: classNames, perClass: perClass)
    }

    // MARK: ImageFolder

    /// Converts a folder with one sub-folder of PNG images per class to a classification file.
    public static func folder(_ directory: String, output: String,
                              options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let classNames = try subdirectories(of: directory)
        guard !classNames.isEmpty else { throw DatasetError(directory, "empty input: no class sub-folders") }
        var files: [(path: String, label: Int)] = []
        var skipped = 0
        for (label, name) in classNames.enumerated() {
            let (pngs, others) = try pngFiles(in: directory + "/" + name)
            files += pngs.map { (directory + "/" + name + "/" + $0, label) }
            skipped += others
        }
        guard !files.isEmpty else { throw DatasetError(directory, "empty input: no PNG images in the class sub-folders") }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(files[0].path)
        let writer = try DatasetWriter(path: output, task: .classification, channels: channels, height: size.height,
                                       width: size.width, source: "folder: \(directory)", overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: classNames.count)
        do {
            for (index, file) in files.enumerated() {
                let image = try loadImage(file.path, channels: channels, size: options.size)
                try writer.append(image: image, label: file.label, source: file.path)
                perClass[file.label] += 1
                options.progress?(index + 1, files.count)
            }
            try writer.finish(classNames: classNames)
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .classification, count: files.count, channels: channels,
                                        height: size.height, width: size.width, classNames: classNames, perClass: perClass)
        if skipped > 0 { summary.notes.append("skipped \(skipped) files that are not PNG") }
        return summary
    }

    // MARK: Tags CSV

    /// Converts a folder of PNG images plus a CSV (`image,tags`) to a tagging file; how the
    /// tags field is split is `TagsCSV`'s rule. With `declaredTags` any other tag is an error;
    /// without, the tags are the sorted union of those used.
    public static func tags(images directory: String, csv csvPath: String, declaredTags: [String]? = nil,
                            output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let rows = try CSV.read(path: csvPath)
        guard let header = rows.first else { throw DatasetError(csvPath, "empty input: no header line") }
        guard header.fields.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) == ["image", "tags"] else {
            throw DatasetError(csvPath, "line \(header.line): header must be 'image,tags', found '\(header.fields.joined(separator: ","))'")
        }
        if let bad = declaredTags?.first(where: { $0.contains(TagsCSV.separator) }) {
            throw DatasetError(csvPath, "declared tag '\(bad)' contains '\(TagsCSV.separator)', which separates tags")
        }
        let semicolons = TagsCSV.usesSeparator(fields: rows.dropFirst().compactMap { $0.fields.count == 2 ? $0.fields[1] : nil },
                                               declaredTags: declaredTags ?? [])
        var records: [(line: Int, path: String, tags: [String])] = []
        // A second row for the same image: identical tags merge, other tags are an error.
        var recordOfPath: [String: Int] = [:]
        var merged: [(line: Int, repeats: Int)] = []
        for row in rows.dropFirst() {
            guard row.fields.count == 2 else {
                throw DatasetError(csvPath, "line \(row.line): expected 2 fields (image,tags), found \(row.fields.count)")
            }
            let name = row.fields[0].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw DatasetError(csvPath, "line \(row.line): empty image name") }
            guard let path = findImage(named: name, in: directory) else {
                throw DatasetError(csvPath, "line \(row.line): image '\(name)' not found in \(directory)")
            }
            let tags = TagsCSV.split(row.fields[1], separator: semicolons)
            if let earlier = recordOfPath[path].map({ records[$0] }) {
                guard Set(earlier.tags) == Set(tags) else {
                    throw DatasetError(csvPath, "image '\(name)' has two rows with different tags: line \(earlier.line) and line \(row.line)")
                }
                merged.append((row.line, earlier.line))
                continue
            }
            recordOfPath[path] = records.count
            records.append((row.line, path, tags))
        }
        guard !records.isEmpty else { throw DatasetError(csvPath, "empty input: no image rows") }
        let tagNames = declaredTags ?? Array(Set(records.flatMap(\.tags))).sorted()
        guard !tagNames.isEmpty else { throw DatasetError(csvPath, "no tags used and none declared") }
        let tagIndex = Dictionary(tagNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var indices: [[Int]] = []
        for record in records {
            indices.append(try record.tags.map { tag in
                guard let index = tagIndex[tag] else {
                    throw DatasetError(csvPath, "line \(record.line): tag '\(tag)' is not among the \(tagNames.count) declared tags")
                }
                return index
            })
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(records[0].path)
        let writer = try DatasetWriter(path: output, task: .tagging, channels: channels, height: size.height, width: size.width,
                                       tagCount: tagNames.count, source: "tags: \(directory), \(lastComponent(csvPath))",
                                       overwrite: options.overwrite)
        var perTag = [Int](repeating: 0, count: tagNames.count)
        do {
            for (index, record) in records.enumerated() {
                let image = try loadImage(record.path, channels: channels, size: options.size)
                try writer.append(image: image, tagIndices: indices[index], source: record.path)
                for tag in Set(indices[index]) { perTag[tag] += 1 }
                options.progress?(index + 1, records.count)
            }
            try writer.finish(classNames: tagNames)
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .tagging, count: records.count, channels: channels,
                                        height: size.height, width: size.width, classNames: tagNames, perClass: perTag)
        if let first = merged.first {
            summary.notes.append("merged \(merged.count) duplicate rows (\(merged.count > 1 ? "the first: " : "")line \(first.line) repeats line \(first.repeats))")
        }
        return summary
    }

    // MARK: COCO detection

    /// Converts COCO detection JSON plus a folder of PNG images to a detection file. Boxes go
    /// from COCO `[x, y, w, h]` to `[x1, y1, x2, y2]` pixels of the stored (resized) image;
    /// image and category ids are kept. Crowd and empty boxes are skipped.
    public static func coco(images directory: String, annotations jsonPath: String, output: String,
                            options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let coco = try COCOFile(path: jsonPath)
        guard !coco.images.isEmpty else { throw DatasetError(jsonPath, "empty input: no images") }
        guard !coco.categories.isEmpty else { throw DatasetError(jsonPath, "no categories") }
        var paths: [String] = []
        for image in coco.images {
            let path = directory + "/" + image.fileName
            guard FileManager.default.fileExists(atPath: path) else {
                throw DatasetError(jsonPath, "images[\(image.index)]: image '\(image.fileName)' (id \(image.id)) not found in \(directory)")
            }
            paths.append(path)
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(paths[0])
        let writer = try DatasetWriter(path: output, task: .detection, channels: channels, height: size.height,
                                       width: size.width, source: "coco: \(directory), \(lastComponent(jsonPath))",
                                       overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: coco.categories.count)
        var boxes = 0
        do {
            for (index, entry) in coco.images.enumerated() {
                let original = try PNG.read(path: paths[index], channels: channels == 1 ? 1 : 3)
                // Boxes are in the declared size's pixels: another PNG size would clip them silently.
                if let declared = entry.declaredSize, declared != ImageSize(width: original.width, height: original.height) {
                    throw DatasetError(jsonPath, "images[\(entry.index)]: '\(entry.fileName)' is declared \(declared) but the PNG is \(original.width)x\(original.height)")
                }
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(paths[index], "image is \(original.width)x\(original.height), expected \(size) (detection files hold one size: use --size)")
                }
                let image = original.resized(width: size.width, height: size.height).converted(toChannels: channels)
                let scaleX = Float(size.width) / Float(original.width), scaleY = Float(size.height) / Float(original.height)
                var imageBoxes: [DetectionBox] = []
                for annotation in coco.annotations[entry.id] ?? [] {
                    let x1 = max(0, min(Float(original.width), annotation.x)) * scaleX
                    let y1 = max(0, min(Float(original.height), annotation.y)) * scaleY
                    let x2 = max(0, min(Float(original.width), annotation.x + annotation.width)) * scaleX
                    let y2 = max(0, min(Float(original.height), annotation.y + annotation.height)) * scaleY
                    guard x2 > x1, y2 > y1 else { continue }
                    imageBoxes.append(DetectionBox(x1: x1, y1: y1, x2: x2, y2: y2, label: Int32(annotation.label)))
                    perClass[annotation.label] += 1
                }
                boxes += imageBoxes.count
                try writer.append(image: image, boxes: imageBoxes, imageID: entry.id, originalWidth: original.width,
                                  originalHeight: original.height, source: paths[index])
                options.progress?(index + 1, coco.images.count)
            }
            try writer.finish(classNames: coco.categories.map(\.name), categoryIDs: coco.categories.map(\.id))
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .detection, count: coco.images.count, channels: channels,
                                        height: size.height, width: size.width, classNames: coco.categories.map(\.name),
                                        perClass: perClass, boxes: boxes)
        if coco.crowdCount > 0 { summary.notes.append("skipped \(coco.crowdCount) crowd annotations") }
        let empty = coco.annotationCount - coco.crowdCount - boxes
        if empty > 0 { summary.notes.append("skipped \(empty) boxes with no area inside their image") }
        return summary
    }

    // MARK: Index masks

    /// Converts PNG images plus index-mask PNGs of the same names to a segmentation file.
    /// Mask values must be below the number of classes or 255 (ignore).
    public static func masks(images imageDirectory: String, masks maskDirectory: String, classes: [String]?,
                             output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let (names, skipped) = try pngFiles(in: imageDirectory)
        guard !names.isEmpty else { throw DatasetError(imageDirectory, "empty input: no PNG images") }
        for name in names where !FileManager.default.fileExists(atPath: maskDirectory + "/" + name) {
            throw DatasetError(maskDirectory + "/" + name, "no mask for image \(imageDirectory)/\(name)")
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(imageDirectory + "/" + names[0])
        let writer = try DatasetWriter(path: output, task: .segmentation, channels: channels, height: size.height,
                                       width: size.width, source: "masks: \(imageDirectory), \(maskDirectory)",
                                       overwrite: options.overwrite)
        var present = [Int](repeating: 0, count: 255)
        do {
            for (index, name) in names.enumerated() {
                let imagePath = imageDirectory + "/" + name, maskPath = maskDirectory + "/" + name
                let original = try PNG.read(path: imagePath, channels: channels == 1 ? 1 : 3)
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(imagePath, "image is \(original.width)x\(original.height), expected \(size) (use --size to resize)")
                }
                let mask = try PNG.readIndexMask(path: maskPath)
                guard mask.width == original.width, mask.height == original.height else {
                    throw DatasetError(maskPath, "mask is \(mask.width)x\(mask.height) but its image is \(original.width)x\(original.height)")
                }
                var seen = [Bool](repeating: false, count: 255)
                for (pixel, value) in mask.pixels.enumerated() where value != DatasetLayout.ignoreIndex {
                    if let classes, Int(value) >= classes.count {
                        throw DatasetError(maskPath, "value \(value) at pixel (\(pixel % mask.width), \(pixel / mask.width)) is outside the \(classes.count) declared classes")
                    }
                    seen[Int(value)] = true
                }
                for value in 0..<255 where seen[value] { present[value] += 1 }
                let image = original.resized(width: size.width, height: size.height).converted(toChannels: channels)
                try writer.append(image: image, mask: mask.resizedNearest(width: size.width, height: size.height), source: imagePath)
                options.progress?(index + 1, names.count)
            }
            let used = (present.lastIndex(where: { $0 > 0 }) ?? 0) + 1
            let classNames = classes ?? (0..<used).map { String($0) }
            try writer.finish(classNames: classNames)
            var summary = ConversionSummary(output: output, task: .segmentation, count: names.count, channels: channels,
                                            height: size.height, width: size.width, classNames: classNames,
                                            perClass: Array(present.prefix(classNames.count)))
            if skipped > 0 { summary.notes.append("skipped \(skipped) files that are not PNG") }
            return summary
        } catch {
            writer.abandon()
            throw error
        }
    }

    // MARK: helpers

    static func subdirectories(of directory: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(directory, "no such directory")
        }
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        return entries.filter { entry in
            var isDirectory: ObjCBool = false
            return !entry.hasPrefix(".") && FileManager.default.fileExists(atPath: directory + "/" + entry, isDirectory: &isDirectory)
                && isDirectory.boolValue
        }.sorted()
    }

    /// Sorted PNG file names in `directory` and the number of other (non-hidden) files.
    static func pngFiles(in directory: String) throws -> (names: [String], others: Int) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(directory, "no such directory")
        }
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }
        let pngs = entries.filter { $0.lowercased().hasSuffix(".png") }.sorted()
        return (pngs, entries.count - pngs.count)
    }

    static func findImage(named name: String, in directory: String) -> String? {
        for candidate in [name, name + ".png"] where FileManager.default.fileExists(atPath: directory + "/" + candidate) {
            return directory + "/" + candidate
        }
        return nil
    }

    static func firstSize(_ path: String) throws -> ImageSize {
        let info = try PNG.info(path: path)
        return ImageSize(width: info.width, height: info.height)
    }

    /// Reads a PNG with `channels` channels, resized when `size` is given.
    static func loadImage(_ path: String, channels: Int, size: ImageSize?) throws -> Image {
        let image = try PNG.read(path: path, channels: channels)
        guard let size else { return image }
        return image.resized(width: size.width, height: size.height)
    }
}

/// Streams an IDX file (MNIST format), gzipped or raw: zlib reads both transparently.
///
/// The header is checked before any record is read: records (all dimensions but the first)
/// of no bytes or over `Image.maximumPixels` bytes are an error, and so is a declared size the
/// file cannot hold: exactly, for a raw file; at deflate's best ratio (1032:1), for a gzipped
/// one, whose data is then read in pieces so that a lying count fails when the data ends.
final class IDXReader {
    let path: String
    let file: gzFile
    /// Dimensions from the header (first = number of records).
    let dimensions: [Int]
    let recordBytes: Int

    init(path: String) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw DatasetError(path, "no such file") }
        guard let file = gzopen(path, "rb") else { throw DatasetError(path, "cannot open: \(String(cString: strerror(errno)))") }
        self.file = file
        gzbuffer(file, 1 << 17)
        var header = [UInt8](repeating: 0, count: 4)
        do {
            try IDXReader.readExactly(file, &header, path: path, what: "header")
            guard header[0] == 0, header[1] == 0 else { throw DatasetError(path, "not an IDX file (bad magic number)") }
            guard header[2] == 0x08 else {
                throw DatasetError(path, "IDX element type 0x\(String(header[2], radix: 16)) is not unsigned bytes (0x08)")
            }
            let rank = Int(header[3])
            guard rank >= 1 && rank <= 4 else { throw DatasetError(path, "IDX header declares \(rank) dimensions") }
            var sizes = [UInt8](repeating: 0, count: 4 * rank)
            try IDXReader.readExactly(file, &sizes, path: path, what: "header")
            dimensions = (0..<rank).map { index in
                sizes[(4 * index)..<(4 * index + 4)].reduce(0) { $0 << 8 | Int($1) }
            }
            recordBytes = try IDXReader.checkedSizes(dimensions, headerBytes: 4 + 4 * rank, file: file, path: path)
        } catch {
            gzclose(file)
            throw error
        }
    }

    /// Bytes per record, after checking the declared sizes against the limit and the file.
    private static func checkedSizes(_ dimensions: [Int], headerBytes: Int, file: gzFile, path: String) throws -> Int {
        let shape = dimensions.dropFirst().map(String.init).joined(separator: "x")
        var record = 1
        for dimension in dimensions.dropFirst() {
            let (product, overflow) = record.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= Image.maximumPixels else {
                throw DatasetError(path, "IDX header declares records of \(shape) bytes, over the limit of \(Image.maximumPixels) (Image.maximumPixels)")
            }
            record = product
        }
        guard record > 0 || dimensions[0] == 0 else {
            throw DatasetError(path, "IDX header declares \(dimensions[0]) records of \(shape) bytes: empty records")
        }
        // Both factors are below 2^32 and 2^26: the product fits.
        let declared = dimensions[0] * record
        let fileBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
        guard let fileBytes else { return record }
        let what = "header declares \(dimensions[0]) records\(shape.isEmpty ? "" : " of \(shape)") (\(declared) bytes)"
        if gzdirect(file) == 1 {
            let available = fileBytes - headerBytes
            if declared > available { throw DatasetError(path, "truncated: \(what) but the file holds \(available) bytes after it") }
            if declared < available { throw DatasetError(path, "holds more data than its header declares: \(what), the file \(available)") }
        } else if declared > 1032 * fileBytes {
            throw DatasetError(path, "\(what), which a gzipped file of \(fileBytes) bytes cannot hold (truncated or corrupt)")
        }
        return record
    }

    deinit { gzclose(file) }

    static func readExactly(_ file: gzFile, _ buffer: inout [UInt8], path: String, what: String) throws {
        let wanted = buffer.count
        let got = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(wanted)) }
        if got < 0 { throw corrupt(file, path: path, what: what) }
        guard Int(got) == wanted else {
            throw DatasetError(path, "truncated: \(what) ends after \(got) of \(wanted) bytes")
        }
    }

    static func corrupt(_ file: gzFile, path: String, what: String) -> DatasetError {
        var code: Int32 = 0
        return DatasetError(path, "corrupt data reading \(what) (\(String(cString: gzerror(file, &code))))")
    }

    /// Reads the next record into `buffer` (of `recordBytes` bytes).
    func read(into buffer: inout [UInt8], record: String) throws {
        try IDXReader.readExactly(file, &buffer, path: path, what: record)
    }

    /// Reads `count` records, in pieces of at most 1 MB so that memory grows only with the data.
    func read(count: Int, record: String) throws -> [UInt8] {
        let total = count * recordBytes
        var buffer: [UInt8] = []
        buffer.reserveCapacity(min(total, 1 << 20))
        var piece = [UInt8](repeating: 0, count: min(total, 1 << 20))
        while buffer.count < total {
            let wanted = min(piece.count, total - buffer.count)
            let got = piece.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(wanted)) }
            if got < 0 { throw IDXReader.corrupt(file, path: path, what: "\(record) records") }
            buffer += piece.prefix(Int(got))
            guard Int(got) == wanted else {
                throw DatasetError(path, "truncated: \(record) records (\(count) expected) end after \(buffer.count) of \(total) bytes")
            }
        }
        return buffer
    }

    /// Fails if the file holds more data than its header declares.
    func expectEnd() throws {
        var extra = [UInt8](repeating: 0, count: 1)
        let got = extra.withUnsafeMutableBytes { gzread(file, $0.baseAddress, 1) }
        if got != 0 { throw DatasetError(path, "holds more data than its header declares") }
    }
}

/// The tags field of an `image,tags` CSV (read by `convert tags`, written by `tag predict`).
///
/// The rule: the tags of a row are separated by `;` when the file uses `;`, that is when any
/// row's tags field contains a `;` or a declared tag name contains a space or tab; otherwise
/// they are separated by spaces and tabs (the Kaggle Planet format, whose names hold no
/// spaces). With `;`, whitespace around each name is trimmed and empty names are dropped, so
/// a trailing `;` is allowed. Tag names cannot contain `;`.
public enum TagsCSV {
    public static let separator: Character = ";"

    /// Whether a file with these tags fields (and declared names) separates tags with `;`.
    static func usesSeparator(fields: [String], declaredTags: [String]) -> Bool {
        fields.contains { $0.contains(separator) } || declaredTags.contains { $0.contains(where: \.isWhitespace) }
    }

    /// The tag names of one field.
    static func split(_ field: String, separator semicolons: Bool) -> [String] {
        guard semicolons else { return field.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        return field.split(separator: separator).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The tags field for `tags`, read back as exactly these names by the rule above: names
    /// joined by `;`, and a single name that holds a space followed by `;` so that the file
    /// uses `;` even when no row has two tags. (Quote the field as any CSV field if needed.)
    public static func field(_ tags: [String]) -> String {
        let joined = tags.joined(separator: String(separator))
        return tags.count == 1 && joined.contains(where: \.isWhitespace) ? joined + String(separator) : joined
    }
}

/// A minimal CSV reader: comma separated, double-quoted fields may hold commas and "" quotes.
enum CSV {
    struct Row { let line: Int; let fields: [String] }

    static func read(path: String) throws -> [Row] {
        try parse(readData(path), path: path)
    }

    /// The rows of CSV `data`; `path` only names the source in errors.
    static func parse(_ data: Data, path: String) throws -> [Row] {
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(path, "not UTF-8 text") }
        var rows: [Row] = []
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).enumerated() {
            let line = rawLine
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            var fields: [String] = []
            var field = ""
            var quoted = false
            var characters = line.makeIterator()
            var pending: Character? = nil
            while let character = pending ?? characters.next() {
                pending = nil
                if quoted {
                    if character == "\"" {
                        if let next = characters.next() {
                            if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                        } else { quoted = false }
                    } else { field.append(character) }
                } else if character == "\"" && field.isEmpty {
                    quoted = true
                } else if character == "," {
                    fields.append(field); field = ""
                } else {
                    field.append(character)
                }
            }
            if quoted { throw DatasetError(path, "line \(index + 1): unterminated quoted field") }
            fields.append(field)
            rows.append(Row(line: index + 1, fields: fields))
        }
        return rows
    }
}

/// The parts of a COCO detection JSON file that conversion needs.
struct COCOFile {
    struct ImageEntry { let index: Int; let id: Int64; let fileName: String; let declaredSize: ImageSize? }
    struct Category { let id: Int64; let name: String }
    struct Annotation { let label: Int; let x: Float, y: Float, width: Float, height: Float }

    var images: [ImageEntry] = []
    /// Sorted by id; a category's position is its class index.
    var categories: [Category] = []
    var annotations: [Int64: [Annotation]] = [:]
    var crowdCount = 0
    var annotationCount = 0

    init(path: String) throws {
        try self.init(data: readData(path), path: path)
    }

    /// Parses COCO JSON `data`; `path` only names the source in errors.
    init(data: Data, path: String) throws {
        let root: Any
        do { root = try JSONSerialization.jsonObject(with: data) } catch {
            let reason = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
            throw DatasetError(path, "malformed JSON (\(reason.replacingOccurrences(of: "\n", with: " ")))")
        }
        guard let top = root as? [String: Any] else { throw DatasetError(path, "top level is not a JSON object") }
        func array(_ key: String) throws -> [[String: Any]] {
            guard let value = top[key] else { throw DatasetError(path, "missing '\(key)'") }
            guard let list = value as? [Any] else { throw DatasetError(path, "'\(key)' is not an array") }
            return try list.enumerated().map { index, item in
                guard let object = item as? [String: Any] else { throw DatasetError(path, "\(key)[\(index)] is not an object") }
                return object
            }
        }
        func integer(_ object: [String: Any], _ key: String, _ place: String) throws -> Int64 {
            guard let number = object[key] as? NSNumber, number.doubleValue == number.doubleValue.rounded() else {
                throw DatasetError(path, "\(place): '\(key)' missing or not an integer")
            }
            // Exact when written as an integer; a float spelling (3.0, 1e3) only where doubles
            // are exact. NSNumber.int64Value would wrap 2^64 - 1 to -1.
            if let exact = Int64(number.stringValue) { return exact }
            guard abs(number.doubleValue) < 9_007_199_254_740_992 else {
                throw DatasetError(path, "\(place): '\(key)' \(number.stringValue) is outside the 64-bit integer range")
            }
            return Int64(number.doubleValue)
        }
        for (index, object) in try array("categories").enumerated() {
            guard let name = object["name"] as? String else { throw DatasetError(path, "categories[\(index)]: 'name' missing or not a string") }
            categories.append(Category(id: try integer(object, "id", "categories[\(index)]"), name: name))
        }
        categories.sort { $0.id < $1.id }
        for index in 1..<max(categories.count, 1) where categories[index].id == categories[index - 1].id {
            throw DatasetError(path, "category id \(categories[index].id) is declared twice")
        }
        let classIndex = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($1.id, $0) })
        var imageIDs = Set<Int64>()
        for (index, object) in try array("images").enumerated() {
            guard let fileName = object["file_name"] as? String, !fileName.isEmpty else {
                throw DatasetError(path, "images[\(index)]: 'file_name' missing or not a string")
            }
            let id = try integer(object, "id", "images[\(index)]")
            guard imageIDs.insert(id).inserted else { throw DatasetError(path, "images[\(index)]: image id \(id) is declared twice") }
            var declaredSize: ImageSize?
            if object["width"] != nil || object["height"] != nil {
                let width = try integer(object, "width", "images[\(index)]"), height = try integer(object, "height", "images[\(index)]")
                guard width > 0, height > 0 else { throw DatasetError(path, "images[\(index)]: size \(width)x\(height) is not positive") }
                declaredSize = ImageSize(width: Int(width), height: Int(height))
            }
            images.append(ImageEntry(index: index, id: id, fileName: fileName, declaredSize: declaredSize))
        }
        for (index, object) in try array("annotations").enumerated() {
            let place = "annotations[\(index)]"
            let imageID = try integer(object, "image_id", place)
            let categoryID = try integer(object, "category_id", place)
            guard imageIDs.contains(imageID) else { throw DatasetError(path, "\(place): image_id \(imageID) is not among the images") }
            guard let label = classIndex[categoryID] else {
                throw DatasetError(path, "\(place): category_id \(categoryID) is outside the declared categories")
            }
            guard let box = object["bbox"] as? [NSNumber], box.count == 4,
                  box.allSatisfy({ $0.doubleValue.isFinite }) else {
                throw DatasetError(path, "\(place): 'bbox' must be 4 numbers [x, y, width, height]")
            }
            annotationCount += 1
            if let crowd = object["iscrowd"] as? NSNumber, crowd.intValue != 0 { crowdCount += 1; continue }
            annotations[imageID, default: []].append(Annotation(label: label, x: box[0].floatValue, y: box[1].floatValue,
                                                                width: box[2].floatValue, height: box[3].floatValue))
        }
    }
}
