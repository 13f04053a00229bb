import CZlib
import Foundation

extension Converter {
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
        let fileBytes = fileSize(atPath: path)
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
