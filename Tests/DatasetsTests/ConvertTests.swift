import CZlib
import XCTest
@testable import PerceptDatasets

/// Writes an IDX file (gzipped when `gzip`), magic bytes and dimensions as given.
func writeIDX(_ path: String, dimensions: [Int], data: [UInt8], gzip: Bool, magic: [UInt8]? = nil) {
    var bytes = magic ?? [0, 0, 8, UInt8(dimensions.count)]
    for dimension in dimensions { bytes += [24, 16, 8, 0].map { UInt8((dimension >> $0) & 0xFF) } }
    bytes += data
    if gzip {
        let file = gzopen(path, "wb")!
        bytes.withUnsafeBytes { _ = gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        gzclose(file)
    } else {
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }
}

func writePNG(_ image: Image, _ path: String, palette: [UInt8]? = nil) {
    try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    FileManager.default.createFile(atPath: path, contents: Data(try! PNG.encode(image, palette: palette)))
}

func writeText(_ text: String, _ path: String) {
    FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
}

final class ConvertIDXTests: XCTestCase {
    func testGzippedAndRawIDXConvertWithResizeAndChannels() throws {
        for gzip in [true, false] {
            let directory = TemporaryDirectory()
            let images = directory.file("images.idx"), labels = directory.file("labels.idx")
            let pixels = (0..<(3 * 4 * 2)).map { UInt8($0 * 10) }
            writeIDX(images, dimensions: [3, 4, 2], data: pixels, gzip: gzip)
            writeIDX(labels, dimensions: [3], data: [2, 0, 2], gzip: gzip)
            let output = directory.file("out.h5")
            var progress: [Int] = []
            let summary = try Converter.idx(images: images, labels: labels, classes: ["a", "b", "c"], output: output,
                                            options: ConversionOptions(progress: { done, _ in progress.append(done) }))
            XCTAssertEqual(summary.perClass, [1, 0, 2])
            XCTAssertEqual(progress, [1, 2, 3])
            let dataset = try ClassificationDataset(path: output)
            XCTAssertEqual([dataset.count, dataset.channels, dataset.height, dataset.width], [3, 1, 4, 2])
            XCTAssertEqual(try dataset.readImages(0..<3), pixels)
            XCTAssertEqual(try dataset.readLabels(0..<3), [2, 0, 2])

            let resized = directory.file("resized.h5")
            _ = try Converter.idx(images: images, labels: labels, classes: nil, output: resized,
                                  options: ConversionOptions(size: ImageSize(width: 4, height: 8), channels: 3))
            let big = try ClassificationDataset(path: resized)
            XCTAssertEqual([big.channels, big.height, big.width], [3, 8, 4])
            XCTAssertEqual(big.classNames, ["0", "1", "2"])
        }
    }

    func testBadIDXInputsFailWithoutOutput() throws {
        let directory = TemporaryDirectory()
        let images = directory.file("images.gz"), labels = directory.file("labels.gz"), output = directory.file("out.h5")
        writeIDX(images, dimensions: [2, 2, 2], data: [UInt8](repeating: 1, count: 8), gzip: true)
        writeIDX(labels, dimensions: [2], data: [0, 3], gzip: true)
        assertDatasetError(["labels.gz", "record 1", "label 3", "2 declared classes"]) {
            _ = try Converter.idx(images: images, labels: labels, classes: ["a", "b"], output: output)
        }
        // Truncated image data.
        let short = directory.file("short.gz")
        writeIDX(short, dimensions: [2, 2, 2], data: [UInt8](repeating: 1, count: 5), gzip: true)
        assertDatasetError(["short.gz", "truncated", "image 1"]) {
            _ = try Converter.idx(images: short, labels: labels, classes: nil, output: output)
        }
        // Bad magic number and wrong rank.
        let magic = directory.file("magic.idx")
        writeIDX(magic, dimensions: [2], data: [0, 1], gzip: false, magic: [1, 2, 3, 4])
        assertDatasetError(["magic.idx", "not an IDX file"]) {
            _ = try Converter.idx(images: images, labels: magic, classes: nil, output: output)
        }
        assertDatasetError(["labels.gz", "3 dimensions"]) {
            _ = try Converter.idx(images: labels, labels: labels, classes: nil, output: output)
        }
        // Corrupt gzip stream.
        var bytes = [UInt8](FileManager.default.contents(atPath: images)!)
        for index in 12..<bytes.count - 8 { bytes[index] ^= 0x5A }
        let corrupt = directory.file("corrupt.gz")
        FileManager.default.createFile(atPath: corrupt, contents: Data(bytes))
        assertDatasetError(["corrupt.gz"]) { _ = try Converter.idx(images: corrupt, labels: labels, classes: nil, output: output) }
        // Count mismatch and empty input.
        let three = directory.file("three.gz")
        writeIDX(three, dimensions: [3], data: [0, 0, 0], gzip: true)
        assertDatasetError(["images.gz", "2 images", "3 labels"]) {
            _ = try Converter.idx(images: images, labels: three, classes: nil, output: output)
        }
        let emptyImages = directory.file("empty-images.gz"), emptyLabels = directory.file("empty-labels.gz")
        writeIDX(emptyImages, dimensions: [0, 2, 2], data: [], gzip: true)
        writeIDX(emptyLabels, dimensions: [0], data: [], gzip: true)
        assertDatasetError(["empty-images.gz", "empty input"]) {
            _ = try Converter.idx(images: emptyImages, labels: emptyLabels, classes: nil, output: output)
        }
        assertDatasetError(["nope.gz", "no such file"]) {
            _ = try Converter.idx(images: images, labels: directory.file("nope.gz"), classes: nil, output: output)
        }
        XCTAssertFalse(directory.entries.contains { $0.contains("out.h5") }, "\(directory.entries)")
    }

    func testExistingOutputNeedsForce() throws {
        let directory = TemporaryDirectory()
        let images = directory.file("i.gz"), labels = directory.file("l.gz"), output = directory.file("out.h5")
        writeIDX(images, dimensions: [1, 1, 1], data: [9], gzip: true)
        writeIDX(labels, dimensions: [1], data: [0], gzip: true)
        writeText("previous", output)
        assertDatasetError(["out.h5", "exists", "--force"]) {
            _ = try Converter.idx(images: images, labels: labels, classes: nil, output: output)
        }
        XCTAssertEqual(FileManager.default.contents(atPath: output), Data("previous".utf8))
        _ = try Converter.idx(images: images, labels: labels, classes: nil, output: output, options: ConversionOptions(overwrite: true))
        XCTAssertEqual(try ClassificationDataset(path: output).count, 1)
        XCTAssertEqual(directory.entries, ["i.gz", "l.gz", "out.h5"])
    }
}

final class ConvertFolderTests: XCTestCase {
    func testFolderConvertsClassesInSortedOrder() throws {
        let directory = TemporaryDirectory()
        let root = directory.file("data")
        writePNG(patternImage(width: 4, height: 3, channels: 3, seed: 1), root + "/dog/b.png")
        writePNG(patternImage(width: 4, height: 3, channels: 1, seed: 2), root + "/cat/a.png")
        writePNG(patternImage(width: 4, height: 3, channels: 4, seed: 3), root + "/dog/a.png")
        writeText("notes", root + "/dog/readme.txt")
        let output = directory.file("out.h5")
        let summary = try Converter.folder(root, output: output)
        XCTAssertEqual(summary.classNames, ["cat", "dog"])
        XCTAssertEqual(summary.perClass, [1, 2])
        XCTAssertEqual(summary.notes, ["skipped 1 files that are not PNG or JPEG images"])
        let dataset = try ClassificationDataset(path: output)
        XCTAssertEqual(try dataset.readLabels(0..<3), [0, 1, 1])
        XCTAssertEqual(dataset.channels, 3)
        let expected = patternImage(width: 4, height: 3, channels: 3, seed: 1)
        var planar = [UInt8](repeating: 0, count: 36)
        expected.copyPlanar(into: &planar)
        XCTAssertEqual(try dataset.readImages(2..<3), planar)
        XCTAssertTrue(summary.description.contains("dog  2"))
    }

    /// Images in nested folders of a class belong to it (as torchvision's ImageFolder walks each
    /// class folder), JPEGs beside PNGs.
    func testNestedFoldersAndJPEGsAreTaken() throws {
        let directory = TemporaryDirectory()
        let root = directory.file("data")
        writePNG(patternImage(width: 4, height: 3, channels: 1, seed: 2), root + "/cat/2019/x.png")
        writePNG(patternImage(width: 4, height: 3, channels: 1, seed: 4), root + "/cat/a.png")
        let jpeg = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Inputs/jpeg/rgb-420.jpg")
        try FileManager.default.createDirectory(atPath: root + "/dog", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: jpeg.path, toPath: root + "/dog/photo.JPG")
        let summary = try Converter.folder(root, output: directory.file("out.h5"),
                                           options: ConversionOptions(size: ImageSize(width: 4, height: 3), channels: 1))
        XCTAssertEqual(summary.perClass, [2, 1])
        XCTAssertEqual(summary.notes, [])
        let dataset = try ClassificationDataset(path: directory.file("out.h5"))
        XCTAssertEqual(try dataset.readLabels(0..<3), [0, 0, 1])
        let photo = try ImageFile.read(path: jpeg.path, channels: 1).resized(width: 4, height: 3)
        XCTAssertEqual(try dataset.readImages(2..<3), photo.pixels)
    }

    /// --classes fixes the classes and their order (a validation folder lacking one gets a
    /// warning), and a folder not among them is an error.
    func testFolderClassesOption() throws {
        let directory = TemporaryDirectory()
        let root = directory.file("val")
        writePNG(patternImage(width: 4, height: 3, channels: 3, seed: 1), root + "/dog/a.png")
        writePNG(patternImage(width: 4, height: 3, channels: 3, seed: 2), root + "/bird/b.png")
        let summary = try Converter.folder(root, classes: ["dog", "cat", "bird"], output: directory.file("val.h5"))
        XCTAssertEqual(summary.classNames, ["dog", "cat", "bird"])
        XCTAssertEqual(summary.perClass, [1, 0, 1])
        XCTAssertEqual(summary.notes, ["warning: class 'cat' has no images"])
        XCTAssertEqual(try ClassificationDataset(path: directory.file("val.h5")).readLabels(0..<2), [0, 2])
        assertDatasetError(["val/bird", "not among --classes"]) {
            _ = try Converter.folder(root, classes: ["dog", "cat"], output: directory.file("other.h5"))
        }
    }

    /// --letterbox keeps the aspect: the image centred on black, boxes moved with it, masks
    /// padded with 255 (ignore).
    func testLetterbox() throws {
        let white = Image(width: 4, height: 2, channels: 1, pixels: [UInt8](repeating: 255, count: 8))
        let (boxed, placement) = white.letterboxed(width: 4, height: 4)
        XCTAssertEqual(placement, Letterbox(width: 4, height: 2, canvasWidth: 4, canvasHeight: 4))
        XCTAssertEqual([placement.offsetX, placement.offsetY, placement.width, placement.height], [0, 1, 4, 2])
        XCTAssertEqual(boxed.pixels, [0, 0, 0, 0] + [UInt8](repeating: 255, count: 8) + [0, 0, 0, 0])

        let directory = TemporaryDirectory()
        let folder = directory.file("images")
        writePNG(patternImage(width: 8, height: 4, channels: 3, seed: 1), folder + "/a.png")
        writeText("""
        {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 4}], "categories": [{"id": 3, "name": "x"}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 1, 4, 2]}]}
        """, directory.file("a.json"))
        var options = ConversionOptions(size: ImageSize(width: 4, height: 4))
        options.letterbox = true
        _ = try Converter.coco(images: folder, annotations: directory.file("a.json"), output: directory.file("det.h5"), options: options)
        // Scaled by 1/2, moved down by 1: [2, 1, 6, 3] -> [1, 1.5, 3, 2.5].
        XCTAssertEqual(try DetectionDataset(path: directory.file("det.h5")).readBoxes(0..<1), [[DetectionBox(x1: 1, y1: 1.5, x2: 3, y2: 2.5, label: 0)]])
        writePNG(Image(width: 8, height: 4, channels: 1, pixels: [UInt8](repeating: 1, count: 32)), directory.file("masks/a.png"))
        _ = try Converter.masks(images: folder, masks: directory.file("masks"), classes: ["bg", "x"], output: directory.file("seg.h5"), options: options)
        XCTAssertEqual(try SegmentationDataset(path: directory.file("seg.h5")).readMasks(0..<1),
                       [255, 255, 255, 255, 1, 1, 1, 1, 1, 1, 1, 1, 255, 255, 255, 255])
    }

    func testBadFolderInputs() throws {
        let directory = TemporaryDirectory()
        let output = directory.file("out.h5")
        let root = directory.file("data")
        try FileManager.default.createDirectory(atPath: root + "/cat", withIntermediateDirectories: true)
        assertDatasetError(["data", "empty input"]) { _ = try Converter.folder(root, output: output) }
        writePNG(patternImage(width: 4, height: 4, channels: 3, seed: 1), root + "/cat/a.png")
        writePNG(patternImage(width: 5, height: 4, channels: 3, seed: 1), root + "/cat/b.png")
        assertDatasetError(["cat/b.png", "5x4", "expected 4x4", "--size"]) { _ = try Converter.folder(root, output: output) }
        XCTAssertNoThrow(try Converter.folder(root, output: directory.file("sized.h5"),
                                              options: ConversionOptions(size: ImageSize(width: 2, height: 2))))
        let good = try PNG.encode(patternImage(width: 4, height: 4, channels: 3, seed: 1))
        FileManager.default.createFile(atPath: root + "/cat/b.png", contents: Data(good.prefix(good.count - 20)))
        assertDatasetError(["cat/b.png", "corrupt or truncated PNG"]) { _ = try Converter.folder(root, output: output) }
        FileManager.default.createFile(atPath: root + "/cat/b.png", contents: Data("GIF89a".utf8))
        assertDatasetError(["cat/b.png", "not a PNG or JPEG image"]) { _ = try Converter.folder(root, output: output) }
        XCTAssertEqual(directory.entries, ["data", "sized.h5"])
    }
}

final class ConvertTagsTests: XCTestCase {
    func makeImages(_ directory: TemporaryDirectory) -> String {
        let folder = directory.file("images")
        for name in ["train_0", "train_1", "train_2"] {
            writePNG(patternImage(width: 3, height: 3, channels: 3, seed: name.count), folder + "/\(name).png")
        }
        return folder
    }

    func testTagsCSVConverts() throws {
        let directory = TemporaryDirectory()
        let folder = makeImages(directory)
        let csv = directory.file("labels.csv")
        writeText("image,tags\r\ntrain_0,haze primary\r\n\"train_1\",clear primary water\r\ntrain_2.png,\n", csv)
        let output = directory.file("tags.h5")
        let summary = try Converter.tags(images: folder, csv: csv, output: output)
        XCTAssertEqual(summary.classNames, ["clear", "haze", "primary", "water"])
        XCTAssertEqual(summary.perClass, [1, 1, 2, 1])
        let dataset = try TaggingDataset(path: output)
        XCTAssertEqual(try dataset.readTags(0..<3), [0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0])
    }

    func testBadTagsInputs() throws {
        let directory = TemporaryDirectory()
        let folder = makeImages(directory)
        let csv = directory.file("labels.csv"), output = directory.file("out.h5")
        writeText("image,tags\ntrain_0,haze\ntrain_9,clear\n", csv)
        assertDatasetError(["labels.csv", "line 3", "train_9", "not found"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        writeText("image,tags\ntrain_0,haze,extra\n", csv)
        assertDatasetError(["labels.csv", "line 2", "expected 2 fields"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        // Without a tags column the other columns are one-hot tags: 'haze' is no 0 or 1.
        writeText("name,labels\ntrain_0,haze\n", csv)
        assertDatasetError(["labels.csv", "line 2", "one-hot column 'labels'", "'haze'"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        assertDatasetError(["labels.csv", "line 1", "no column 'tagz'"]) {
            _ = try Converter.tags(images: folder, csv: csv, tagsColumn: "tagz", output: output)
        }
        writeText("image,tags\n\"train_0,haze\n", csv)
        assertDatasetError(["labels.csv", "line 2", "unterminated"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        writeText("image,tags\n", csv)
        assertDatasetError(["labels.csv", "empty input"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        writeText("", csv)
        assertDatasetError(["labels.csv", "empty input"]) { _ = try Converter.tags(images: folder, csv: csv, output: output) }
        writeText("image,tags\ntrain_0,haze\ntrain_1,fog\n", csv)
        assertDatasetError(["labels.csv", "line 3", "'fog'", "2 declared tags"]) {
            _ = try Converter.tags(images: folder, csv: csv, declaredTags: ["haze", "clear"], output: output)
        }
        XCTAssertEqual(directory.entries, ["images", "labels.csv"])
    }

    /// The forms tag CSVs come in: Planet's `image_name,tags` with spaces, `|` and quoted `,`
    /// separators (detected and said, or chosen), named columns, and one-hot 0/1 columns.
    func testTagCSVForms() throws {
        let directory = TemporaryDirectory()
        let folder = makeImages(directory)
        let csv = directory.file("labels.csv")
        func tags(_ text: String, separator: TagsCSV.Separator? = nil, imageColumn: String? = nil, tagsColumn: String? = nil)
            throws -> (names: [String], rows: [UInt8], notes: [String]) {
            writeText(text, csv)
            let output = directory.file("out-\(UUID().uuidString).h5")
            let summary = try Converter.tags(images: folder, csv: csv, imageColumn: imageColumn, tagsColumn: tagsColumn,
                                             separator: separator, output: output)
            let dataset = try TaggingDataset(path: output)
            return (dataset.classNames, try dataset.readTags(0..<dataset.count), summary.notes)
        }
        let planet = try tags("image_name,tags\ntrain_0,haze primary\ntrain_1,clear\n")
        XCTAssertEqual(planet.names, ["clear", "haze", "primary"])
        XCTAssertEqual(planet.rows, [0, 1, 1, 1, 0, 0])
        let piped = try tags("image,tags\ntrain_0,dog|cat\ntrain_1,cat\n")
        XCTAssertEqual(piped.names, ["cat", "dog"])
        XCTAssertEqual(piped.rows, [1, 1, 1, 0])
        XCTAssertEqual(piped.notes, ["tags separated by '|' (detected; --separator chooses)"])
        let commas = try tags("image,tags\ntrain_0,\"dog,cat\"\ntrain_1,cat\n")
        XCTAssertEqual(commas.names, ["cat", "dog"])
        XCTAssertEqual(commas.rows, [1, 1, 1, 0])
        let chosen = try tags("image,tags\ntrain_0,sea lion|cat\n", separator: .pipe)
        XCTAssertEqual(chosen.names, ["cat", "sea lion"])
        XCTAssertEqual(chosen.notes, [])
        let named = try tags("id,file,labels\n1,train_1,b;a\n2,train_0,a\n", imageColumn: "file", tagsColumn: "labels")
        XCTAssertEqual(named.names, ["a", "b"])
        XCTAssertEqual(named.rows, [1, 1, 1, 0])
        let oneHot = try tags("image,dog,cat,bird\ntrain_0,1,0,1\ntrain_1,0,0,0\n")
        XCTAssertEqual(oneHot.names, ["dog", "cat", "bird"])
        XCTAssertEqual(oneHot.rows, [1, 0, 1, 0, 0, 0])
        XCTAssertEqual(oneHot.notes, ["tags from 3 one-hot columns"])
    }
}

final class ConvertCOCOTests: XCTestCase {
    func makeCOCO(_ directory: TemporaryDirectory, json: String? = nil) -> (String, String) {
        let folder = directory.file("images")
        writePNG(patternImage(width: 8, height: 4, channels: 3, seed: 1), folder + "/a.png")
        writePNG(patternImage(width: 4, height: 8, channels: 3, seed: 2), folder + "/b.png")
        let path = directory.file("instances.json")
        writeText(json ?? """
        {"images": [{"id": 42, "file_name": "a.png", "width": 8, "height": 4},
                    {"id": 7, "file_name": "b.png", "width": 4, "height": 8}],
         "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
         "annotations": [{"id": 1, "image_id": 42, "category_id": 18, "bbox": [2, 1, 4, 2], "iscrowd": 0},
                         {"id": 2, "image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 1},
                         {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 2, 2, 4]}]}
        """, path)
        return (folder, path)
    }

    func testCOCOConvertsWithResizedBoxesAndKeptIds() throws {
        let directory = TemporaryDirectory()
        let (folder, json) = makeCOCO(directory)
        let output = directory.file("det.h5")
        let summary = try Converter.coco(images: folder, annotations: json, output: output,
                                         options: ConversionOptions(size: ImageSize(width: 4, height: 4)))
        XCTAssertEqual(summary.classNames, ["person", "dog"])
        XCTAssertEqual(summary.perClass, [1, 1])
        XCTAssertEqual(summary.notes, ["kept 1 crowd annotation as ignore regions (pycocotools' iscrowd)"])
        let dataset = try DetectionDataset(path: output)
        XCTAssertEqual(dataset.categoryIDs, [1, 18])
        XCTAssertEqual(try dataset.readImageIDs(0..<2), [42, 7])
        XCTAssertEqual(try dataset.readOriginalSizes(0..<2).map { [$0.height, $0.width] }, [[4, 8], [8, 4]])
        XCTAssertEqual(try dataset.readBoxes(0..<2), [
            [DetectionBox(x1: 1, y1: 1, x2: 3, y2: 3, label: 1),    // x scaled by 4/8
             DetectionBox(x1: 0, y1: 0, x2: 0.5, y2: 1, label: 0, ignore: true)],   // the crowd
            [DetectionBox(x1: 1, y1: 1, x2: 3, y2: 3, label: 0)],   // y scaled by 4/8
        ])
    }

    func testBadCOCOInputs() throws {
        let directory = TemporaryDirectory()
        let output = directory.file("out.h5")
        var (folder, json) = makeCOCO(directory)
        assertDatasetError(["b.png", "4x8", "expected 8x4", "--size"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [{"id": 1, "file_name": "zzz.png"}], "categories": [{"id": 1, "name": "a"}], "annotations": []}"#)
        assertDatasetError(["instances.json", "images[0]", "zzz.png", "not found"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}]}"#)
        assertDatasetError(["instances.json", "annotations[0]", "category_id 5", "outside"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}"#)
        assertDatasetError(["instances.json", "annotations[0]", "bbox"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 1, "#)
        assertDatasetError(["instances.json", "malformed JSON"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [], "categories": [{"id": 1, "name": "a"}], "annotations": []}"#)
        assertDatasetError(["instances.json", "empty input"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        (folder, json) = makeCOCO(directory, json: #"{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 1]}]}"#)
        assertDatasetError(["instances.json", "annotations[0]", "image_id 3"]) { _ = try Converter.coco(images: folder, annotations: json, output: output) }
        XCTAssertEqual(directory.entries, ["images", "instances.json"])
    }
}

final class ConvertMasksTests: XCTestCase {
    func testMasksConvertKeepingIndicesAndResizingNearest() throws {
        let directory = TemporaryDirectory()
        let images = directory.file("images"), masks = directory.file("masks")
        writePNG(patternImage(width: 2, height: 2, channels: 3, seed: 1), images + "/x.png")
        writePNG(Image(width: 2, height: 2, channels: 1, pixels: [0, 2, 255, 1]), masks + "/x.png",
                 palette: (0..<256).flatMap { [UInt8($0), UInt8(255 - $0), 0] })
        writePNG(patternImage(width: 2, height: 2, channels: 3, seed: 2), images + "/y.png")
        writePNG(Image(width: 2, height: 2, channels: 1, pixels: [1, 1, 1, 1]), masks + "/y.png")
        let output = directory.file("seg.h5")
        let summary = try Converter.masks(images: images, masks: masks, classes: ["bg", "road", "car"], output: output,
                                          options: ConversionOptions(size: ImageSize(width: 4, height: 4)))
        XCTAssertEqual(summary.perClass, [1, 2, 1])
        let dataset = try SegmentationDataset(path: output)
        XCTAssertEqual(try dataset.readMasks(0..<1), [0, 0, 2, 2, 0, 0, 2, 2, 255, 255, 1, 1, 255, 255, 1, 1])
        let derived = try Converter.masks(images: images, masks: masks, classes: nil, output: directory.file("derived.h5"))
        XCTAssertEqual(derived.classNames, ["0", "1", "2"])
    }

    /// Palette masks read by index equal their index-PNG twins; binary 0/255 masks are refused
    /// with a hint, or mapped with --binary; ADE20K's zero label and Cityscapes' label maps.
    func testMaskConventions() throws {
        let directory = TemporaryDirectory()
        let images = directory.file("images")
        writePNG(patternImage(width: 3, height: 2, channels: 3, seed: 1), images + "/x.png")
        let values: [UInt8] = [0, 1, 7, 26, 255, 0]
        writePNG(Image(width: 3, height: 2, channels: 1, pixels: values), directory.file("gray/x.png"))
        writePNG(Image(width: 3, height: 2, channels: 1, pixels: values), directory.file("palette/x.png"),
                 palette: (0..<256).flatMap { (i: Int) -> [UInt8] in [UInt8(i), UInt8((3 * i) % 256), UInt8(255 - i)] })
        func converted(_ masks: String, _ mapping: MaskMapping, _ name: String) throws -> [UInt8] {
            _ = try Converter.masks(images: images, masks: directory.file(masks), classes: nil, mapping: mapping, output: directory.file(name))
            return try SegmentationDataset(path: directory.file(name)).readMasks(0..<1)
        }
        XCTAssertEqual(try converted("gray", .identity, "gray.h5"), values)
        XCTAssertEqual(try converted("palette", .identity, "palette.h5"), values, "a palette mask is read by index")
        XCTAssertEqual(try converted("gray", .reduceZeroLabel, "ade.h5"), [255, 0, 6, 25, 255, 255])
        writeText("# Cityscapes: id train_id\n7 0\n26 13\n", directory.file("map.txt"))
        XCTAssertEqual(try converted("gray", try MaskMapping.labelMap(path: directory.file("map.txt")), "city.h5"), [255, 255, 0, 13, 255, 255])
        writeText(#"{"1": 2, "7": 0}"#, directory.file("map.json"))
        XCTAssertEqual(try converted("gray", try MaskMapping.labelMap(path: directory.file("map.json")), "city2.h5"), [255, 2, 0, 255, 255, 255])
        writeText("7 0 1\n", directory.file("bad.txt"))
        assertDatasetError(["bad.txt", "line 1"]) { _ = try MaskMapping.labelMap(path: directory.file("bad.txt")) }
        // A foreground mask stored as 0/255: every object pixel would become "ignore".
        writePNG(Image(width: 3, height: 2, channels: 1, pixels: [0, 255, 255, 0, 0, 255]), directory.file("binary/x.png"))
        assertDatasetError(["binary", "only 0 and 255", "--binary"]) {
            _ = try Converter.masks(images: images, masks: directory.file("binary"), classes: nil, output: directory.file("b.h5"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.file("b.h5")))
        XCTAssertEqual(try converted("binary", .binary, "b2.h5"), [0, 1, 1, 0, 0, 1])
    }

    func testBadMaskInputs() throws {
        let directory = TemporaryDirectory()
        let images = directory.file("images"), masks = directory.file("masks"), output = directory.file("out.h5")
        writePNG(patternImage(width: 2, height: 2, channels: 3, seed: 1), images + "/x.png")
        try FileManager.default.createDirectory(atPath: masks, withIntermediateDirectories: true)
        assertDatasetError(["masks/x.png", "no mask"]) { _ = try Converter.masks(images: images, masks: masks, classes: nil, output: output) }
        writePNG(Image(width: 2, height: 2, channels: 1, pixels: [0, 4, 0, 0]), masks + "/x.png")
        assertDatasetError(["masks/x.png", "value 4", "pixel (1, 0)", "3 declared classes"]) {
            _ = try Converter.masks(images: images, masks: masks, classes: ["a", "b", "c"], output: output)
        }
        writePNG(Image(width: 3, height: 2, channels: 1, pixels: [0, 0, 0, 0, 0, 0]), masks + "/x.png")
        assertDatasetError(["masks/x.png", "3x2", "2x2"]) { _ = try Converter.masks(images: images, masks: masks, classes: nil, output: output) }
        let empty = directory.file("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        assertDatasetError(["empty", "empty input"]) { _ = try Converter.masks(images: empty, masks: masks, classes: nil, output: output) }
        XCTAssertEqual(directory.entries, ["empty", "images", "masks"])
    }
}
