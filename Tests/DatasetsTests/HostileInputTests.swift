import CZlib
import XCTest
@testable import PerceptDatasets
@testable import PerceptTasks

/// A valid 1x1 gray PNG whose header is rewritten to declare `width`x`height` (colour type and
/// bit depth as given), with the header's CRC fixed so that libpng accepts it.
func pngDeclaring(width: Int, height: Int, colorType: UInt8 = 0, bitDepth: UInt8 = 8) -> [UInt8] {
    var bytes = try! PNG.encode(Image(width: 1, height: 1, channels: 1, pixels: [7]))
    for (offset, value) in [(16, width), (20, height)] {
        for k in 0..<4 { bytes[offset + k] = UInt8((value >> (24 - 8 * k)) & 0xFF) }
    }
    bytes[24] = bitDepth
    bytes[25] = colorType
    let crc = bytes[12..<29].withUnsafeBytes { UInt32(crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, 17)) }
    for k in 0..<4 { bytes[29 + k] = UInt8((crc >> (24 - 8 * UInt32(k))) & 0xFF) }
    return bytes
}

final class HostilePNGTests: XCTestCase {
    func testHugeDeclaredSizeFailsBeforeAllocating() throws {
        let directory = TemporaryDirectory()
        for side in [100_000, 30_000] {
            let path = directory.file("huge\(side).png")
            let bytes = pngDeclaring(width: side, height: side)
            XCTAssertLessThanOrEqual(bytes.count, 100)
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            let fragments = [path, "\(side)x\(side)", "limit", "Image.maximumPixels"]
            assertDatasetError(fragments) { _ = try PNG.read(path: path, channels: 3) }
            assertDatasetError(fragments) { _ = try PNG.read(path: path, channels: 1) }
            assertDatasetError(fragments) { _ = try PNG.readIndexMask(path: path) }
            assertDatasetError(fragments) { _ = try PNG.info(path: path) }
        }
    }

    func testDeclaredSizeTheFileCannotHoldFails() throws {
        // 4000x4000 RGB is under the pixel limit, but 48 MB of pixels cannot deflate into 70 bytes.
        let directory = TemporaryDirectory()
        let path = directory.file("short.png")
        FileManager.default.createFile(atPath: path, contents: Data(pngDeclaring(width: 4000, height: 4000, colorType: 2)))
        assertDatasetError([path, "4000x4000", "bytes", "cannot hold"]) { _ = try PNG.read(path: path, channels: 3) }
        assertDatasetError([path, "4000x4000", "cannot hold"]) { _ = try PNG.readIndexMask(path: path) }
    }

    func testPixelLimitCanBeChosen() throws {
        let bytes = try PNG.encode(patternImage(width: 4, height: 4, channels: 3, seed: 1))
        assertDatasetError(["small.png", "4x4", "limit of 8 pixels"]) {
            _ = try PNG.read(bytes: bytes, path: "small.png", channels: 3, maximumPixels: 8)
        }
        XCTAssertEqual(try PNG.read(bytes: bytes, path: "small.png", channels: 3, maximumPixels: 16).width, 4)
        XCTAssertGreaterThanOrEqual(Image.maximumPixels, 8192 * 8192)
    }
}

final class HostileIDXTests: XCTestCase {
    func testDimensionsWhoseProductOverflowsFail() throws {
        let directory = TemporaryDirectory()
        for gzip in [false, true] {
            let path = directory.file(gzip ? "huge.gz" : "huge.idx")
            writeIDX(path, dimensions: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], data: [1, 2, 3], gzip: gzip)
            assertDatasetError([path, "4294967295x4294967295", "limit"]) { _ = try IDXReader(path: path) }
            let labels = directory.file("labels.idx")
            writeIDX(labels, dimensions: [3], data: [1, 2, 3], gzip: false)
            assertDatasetError([path, "limit"]) {
                _ = try Converter.idx(images: path, labels: labels, classes: nil, output: directory.file("out.h5"))
            }
        }
    }

    func testDeclaredCountBeyondTheDataFailsBeforeAllocating() throws {
        // A 10-byte label file declaring 2^30 labels.
        let directory = TemporaryDirectory()
        let raw = directory.file("labels.idx")
        writeIDX(raw, dimensions: [1 << 30], data: [1, 2], gzip: false)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: raw)[.size] as? Int, 10)
        assertDatasetError([raw, "truncated", "1073741824 records", "2 bytes"]) {
            _ = try IDXReader(path: raw)
        }
        // Gzipped: more than deflate could pack into the file is refused up front.
        let gz = directory.file("labels.gz")
        writeIDX(gz, dimensions: [1 << 30], data: [1, 2], gzip: true)
        assertDatasetError([gz, "1073741824 records", "cannot hold"]) { _ = try IDXReader(path: gz) }
    }

    func testGzippedCountBeyondTheDataFailsWhileReading() throws {
        // 1 MB of zeros deflates to about 1 kB, close to deflate's best ratio: a count a little
        // larger passes the ratio bound and must fail when the data runs out.
        let directory = TemporaryDirectory()
        let gz = directory.file("labels.gz")
        let count = (1 << 20) + 4096
        writeIDX(gz, dimensions: [count], data: [UInt8](repeating: 0, count: 1 << 20), gzip: true)
        let reader = try IDXReader(path: gz)
        assertDatasetError([gz, "truncated", "label records", "1048576 of \(count)"]) {
            _ = try reader.read(count: count, record: "label")
        }
    }

    func testManyEmptyRecordsFail() throws {
        // Found by Fuzz/FuzzIDX: 2^27 records of 0x34 bytes in a 16-byte file, which took
        // minutes to read one empty record at a time.
        let directory = TemporaryDirectory()
        let path = directory.file("empty.idx")
        writeIDX(path, dimensions: [1 << 27, 0, 34], data: [], gzip: false)
        assertDatasetError([path, "134217728 records", "0x34", "empty"]) { _ = try IDXReader(path: path) }
        let none = directory.file("none.idx")
        writeIDX(none, dimensions: [0, 0, 34], data: [], gzip: false)
        XCTAssertEqual(try IDXReader(path: none).dimensions, [0, 0, 34])
    }

    func testRawFileWithExtraDataFailsUpFront() throws {
        let directory = TemporaryDirectory()
        let raw = directory.file("labels.idx")
        writeIDX(raw, dimensions: [2], data: [1, 2, 3], gzip: false)
        assertDatasetError([raw, "more data than its header declares"]) { _ = try IDXReader(path: raw) }
    }
}

final class HostileDatasetTests: XCTestCase {
    /// The size checks measure the file a symbolic link points to, not the link.
    func testFilesBehindSymbolicLinksPassTheSizeChecks() throws {
        let directory = TemporaryDirectory()
        let images = (0..<6 * 28 * 28).map { UInt8($0 % 251) }
        for gzip in [false, true] {
            let target = directory.file("images-\(gzip).idx"), link = directory.file("link-\(gzip).idx")
            writeIDX(target, dimensions: [6, 28, 28], data: images, gzip: gzip)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            let reader = try IDXReader(path: link)
            XCTAssertEqual(try reader.read(count: 6, record: "images"), images, "gzip \(gzip)")
        }
        let target = directory.file("items.h5"), link = directory.file("items-link.h5")
        try writeComposeItems(target, perClass: 40)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        let dataset = try ClassificationDataset(path: link)
        XCTAssertEqual(try dataset.readImages(0..<dataset.count), try ClassificationDataset(path: target).readImages(0..<dataset.count))
    }

    /// A classification file whose `images` and `labels` declare `shape` (chunked and never
    /// written, so the file stays small).
    func writeDeclaring(_ shape: [Int], to path: String) throws {
        let file = try HDF5File(creatingPath: path)
        try file.setAttribute("format", DatasetLayout.datasetFormat)
        try file.setAttribute("format_version", 1)
        try file.setAttribute("task", "classification")
        try file.setAttribute("class_names", strings: ["a"])
        try file.createDataset("images", type: .uint8, shape: shape, chunkShape: [1, 1, 16, 16])
        try file.createDataset("labels", type: .int32, shape: [shape[0]], chunkShape: [min(shape[0], 1024)])
    }

    func testMoreImagesThanTheFileCanHoldAreRefusedOnOpen() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("count.h5")
        try writeDeclaring([1 << 30, 1, 16, 16], to: path)
        assertDatasetError([path, "'/images'", "cannot hold"]) { _ = try ClassificationDataset(path: path) }
    }

    func testModelTensorsLargerThanTheFileAreRefusedBeforeAllocating() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("model.h5")
        try ModelFile.save(module: TinyModel(), to: path, architecture: "{}", task: "classification", classNames: ["a"])
        do {
            let file = try HDF5File(openingPath: path, writable: true)
            try file.group("buffers").createDataset("huge", type: .float32, shape: [100_000, 100_000], chunkShape: [16, 16])
        }
        assertDatasetError([path, "'/buffers/huge'", "[100000, 100000]", "cannot hold"]) { _ = try ModelCheckpoint.read(path: path) }
    }

    func testElementTypesLargerThanEightBytesAreRefused() throws {
        // Found by Fuzz/FuzzHDF5: one bit flipped in a model file makes '/buffers/runningMean'
        // a 2 GB float type, for which libhdf5 allocated conversion buffers of several GB.
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
            + "/Inputs/model-with-2GB-float-type.h5"
        assertDatasetError([path, "'/buffers/runningMean'", "element"]) { _ = try ModelCheckpoint.read(path: path) }
    }

    func testHugeImagesAreRefusedOnOpen() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("huge.h5")
        try writeDeclaring([1, 1, 100_000, 100_000], to: path)
        assertDatasetError([path, "100000x100000", "limit", "Image.maximumPixels"]) { _ = try ClassificationDataset(path: path) }
        let channels = directory.file("channels.h5")
        try writeDeclaring([1, 70_000, 16, 16], to: channels)
        assertDatasetError([channels, "70000 channels"]) { _ = try ClassificationDataset(path: channels) }
        let small = directory.file("small.h5")
        try writeDeclaring([2, 1, 16, 16], to: small)
        XCTAssertEqual(try ClassificationDataset(path: small).width, 16)
    }
}

final class StaleTemporaryFileTests: XCTestCase {
    /// The id of a process that has exited.
    func deadProcessID() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        return process.processIdentifier
    }

    func testStartingAWriteRemovesTemporaryFilesOfDeadProcessesForTheSameOutput() throws {
        let directory = TemporaryDirectory()
        let dead = try deadProcessID()
        let stale = ".out.h5.tmp-\(dead)-1a2b", ours = ".out.h5.tmp-\(getpid())-3c4d"
        let alive = ".out.h5.tmp-1-5e6f", otherOutput = ".other.h5.tmp-\(dead)-7a8b", notOurs = ".out.h5.tmp-x-9c"
        for name in [stale, ours, alive, otherOutput, notOurs] { writeText("partial", directory.file(name)) }
        try AtomicOutput.write(Data("done".utf8), to: directory.file("out.h5"))
        XCTAssertEqual(directory.entries, [ours, alive, notOurs, otherOutput, "out.h5"].sorted())
    }
}

final class GrayAlphaMaskTests: XCTestCase {
    func testGrayAlphaMaskKeepsItsClassIndices() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("mask.png")
        // (index, alpha) pairs: opaque, transparent, half transparent, transparent ignore.
        let pixels: [UInt8] = [1, 255, 2, 0, 3, 128, 255, 0]
        writePNG(Image(width: 2, height: 2, channels: 2, pixels: pixels), path)
        XCTAssertEqual(try PNG.info(path: path).channels, 2)
        XCTAssertEqual(try PNG.readIndexMask(path: path).pixels, [1, 2, 3, 255])
    }

    func testSixteenBitGrayAlphaMaskKeepsIndicesOrRefusesTransparency() throws {
        let directory = TemporaryDirectory()
        let opaque = directory.file("opaque.png"), transparent = directory.file("transparent.png")
        FileManager.default.createFile(atPath: opaque, contents: Data(try PNG.encode16(
            width: 2, height: 1, channels: 2, samples: [1, 65535, 7, 65535])))
        XCTAssertEqual(try PNG.readIndexMask(path: opaque).pixels, [1, 7])
        FileManager.default.createFile(atPath: transparent, contents: Data(try PNG.encode16(
            width: 2, height: 1, channels: 2, samples: [1, 65535, 2, 0])))
        assertDatasetError([transparent, "16-bit gray+alpha", "pixel (1, 0)", "transparent"]) {
            _ = try PNG.readIndexMask(path: transparent)
        }
    }
}

/// Three 2x2 images p0, p1, p2 in `directory`/images; returns that folder.
func makeTagImages(_ directory: TemporaryDirectory) -> String {
    let folder = directory.file("images")
    for name in ["p0", "p1", "p2"] { writePNG(patternImage(width: 2, height: 2, channels: 3, seed: 1), folder + "/\(name).png") }
    return folder
}

final class TagSeparatorTests: XCTestCase {
    func tags(_ csv: String, declared: [String]? = nil) throws -> (names: [String], rows: [UInt8]) {
        let directory = TemporaryDirectory()
        let folder = makeTagImages(directory)
        writeText(csv, directory.file("tags.csv"))
        let output = directory.file("out.h5")
        let summary = try Converter.tags(images: folder, csv: directory.file("tags.csv"), declaredTags: declared, output: output)
        let dataset = try TaggingDataset(path: output)
        return (summary.classNames, try dataset.readTags(0..<dataset.count))
    }

    func testSemicolonsSeparateTagNamesThatHoldSpaces() throws {
        let result = try tags("image,tags\np0,Ankle boot; T-shirt\np1,Ankle boot\np2,\n")
        XCTAssertEqual(result.names, ["Ankle boot", "T-shirt"])
        XCTAssertEqual(result.rows, [1, 1, 1, 0, 0, 0])
    }

    func testADeclaredNameWithASpaceMeansSemicolons() throws {
        let result = try tags("image,tags\np0,Ankle boot\np1,Bag\np2,\n", declared: ["Ankle boot", "Bag"])
        XCTAssertEqual(result.rows, [1, 0, 0, 1, 0, 0])
    }

    func testSpacesStillSeparateWhenNoSemicolonIsUsed() throws {
        let result = try tags("image,tags\np0,haze primary\np1,clear\np2,\n")
        XCTAssertEqual(result.names, ["clear", "haze", "primary"])
        XCTAssertEqual(result.rows, [0, 1, 1, 1, 0, 0, 0, 0, 0])
    }

    func testWrittenFieldsReadBack() throws {
        let sets = [["Ankle boot"], [], ["Bag"]]
        XCTAssertEqual(sets.map(TagsCSV.field), ["Ankle boot;", "", "Bag"])
        XCTAssertEqual(TagsCSV.field(["Ankle boot", "Bag"]), "Ankle boot;Bag")
        let csv = "image,tags\n" + zip(["p0", "p1", "p2"], sets).map { "\($0),\(TagsCSV.field($1))" }.joined(separator: "\n")
        let result = try tags(csv)
        XCTAssertEqual(result.names, ["Ankle boot", "Bag"])
        XCTAssertEqual(result.rows, [1, 0, 0, 0, 0, 1])
    }

    func testDeclaredNamesWithASemicolonFail() throws {
        assertDatasetError(["tags.csv", "'a;b'", "';'"]) { _ = try self.tags("image,tags\np0,a\n", declared: ["a;b"]) }
    }
}

final class DuplicateTagRowTests: XCTestCase {
    func testConflictingRowsForOneImageFailNamingBothLines() throws {
        let directory = TemporaryDirectory()
        let folder = makeTagImages(directory)
        let csv = directory.file("tags.csv"), output = directory.file("out.h5")
        writeText("image,tags\np0,haze\np1,clear\np0.png,clear\n", csv)
        assertDatasetError([csv, "p0.png", "line 2", "line 4"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        XCTAssertFalse(directory.entries.contains("out.h5"))
    }

    func testIdenticalRowsForOneImageMergeWithANote() throws {
        let directory = TemporaryDirectory()
        let folder = makeTagImages(directory)
        let csv = directory.file("tags.csv"), output = directory.file("out.h5")
        writeText("image,tags\np0,haze primary\np1,clear\np0,primary haze\n", csv)
        let summary = try Converter.tags(images: folder, csv: csv, output: output)
        XCTAssertEqual(summary.count, 2)
        XCTAssertEqual(summary.notes, ["tags separated by spaces (detected; --separator chooses)", "merged 1 duplicate rows (line 4 repeats line 2)"])
        XCTAssertEqual(try TaggingDataset(path: output).count, 2)
    }
}

final class HostileCOCOTests: XCTestCase {
    func convert(_ json: String) throws -> ConversionSummary {
        let directory = TemporaryDirectory()
        let folder = directory.file("images")
        writePNG(patternImage(width: 8, height: 4, channels: 3, seed: 1), folder + "/a.png")
        writeText(json, directory.file("instances.json"))
        return try Converter.coco(images: folder, annotations: directory.file("instances.json"), output: directory.file("out.h5"))
    }

    func document(id: String = "1", width: Int = 8, height: Int = 4) -> String {
        #"{"images": [{"id": \#(id), "file_name": "a.png", "width": \#(width), "height": \#(height)}], "categories": [{"id": 1, "name": "a"}], "#
            + #""annotations": [{"image_id": \#(id), "category_id": 1, "bbox": [5, 2, 6, 4]}]}"#
    }

    func testDeclaredSizeThatDisagreesWithThePNGFails() throws {
        XCTAssertEqual(try convert(document()).boxes, 1)
        assertDatasetError(["instances.json", "images[0]", "a.png", "16x8", "8x4"]) { _ = try self.convert(self.document(width: 16, height: 8)) }
    }

    func testIdsBeyondSixtyFourBitsFail() throws {
        for id in ["18446744073709551615", "9223372036854775808", "1e30", "-9223372036854775809"] {
            assertDatasetError(["instances.json", "images[0]", "'id'", "64-bit"]) { _ = try self.convert(self.document(id: id)) }
        }
        XCTAssertEqual(try convert(document(id: "9223372036854775807")).count, 1)
        XCTAssertEqual(try convert(document(id: "-9223372036854775808")).count, 1)
    }
}
