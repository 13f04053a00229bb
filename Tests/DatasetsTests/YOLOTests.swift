import Foundation
import XCTest
@testable import PerceptDatasets

/// An Ultralytics dataset written file by file in a temporary directory: `images/<split>/*.png`,
/// `labels/<split>/*.txt` and a `data.yaml`.
final class YOLOFixture {
    let directory = TemporaryDirectory()
    var root: String { directory.path }

    /// Writes `text` at `relative` below the root, making its folders.
    func write(_ text: String, to relative: String) {
        let path = root + "/" + relative
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Writes a pattern PNG at `relative` below the root.
    func image(_ relative: String, width: Int, height: Int, seed: Int) {
        let path = root + "/" + relative
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! PNG.write(patternImage(width: width, height: height, channels: 3, seed: seed), to: path)
    }

    /// The data.yaml, written with `text`.
    @discardableResult
    func yaml(_ text: String, name: String = "data.yaml") -> String {
        write(text, to: name)
        return root + "/" + name
    }

    /// An output path in a folder of its own, so that a test can see that nothing was left there.
    var output: String {
        try! FileManager.default.createDirectory(atPath: root + "/out", withIntermediateDirectories: true)
        return root + "/out/det.h5"
    }

    /// Entries of the output folder.
    var outputEntries: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: root + "/out")) ?? []).sorted() }
}

/// One box in pixels of its original image, for writing both a YOLO line and a COCO annotation.
struct PixelBox { let label: Int; let x: Double, y: Double, width: Double, height: Double }

/// `class cx cy w h` of a pixel box in a `width` x `height` image, at full precision.
func yoloLine(_ box: PixelBox, width: Int, height: Int) -> String {
    let W = Double(width), H = Double(height)
    return "\(box.label) \((box.x + box.width / 2) / W) \((box.y + box.height / 2) / H) \(box.width / W) \(box.height / H)"
}

func readBoxes(_ path: String) throws -> [[DetectionBox]] {
    let dataset = try DetectionDataset(path: path)
    return try dataset.readBoxes(0..<dataset.count)
}

func assertBoxesEqual(_ a: [[DetectionBox]], _ b: [[DetectionBox]], accuracy: Float = 1e-3,
                      file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "image counts", file: file, line: line)
    for (image, (boxesA, boxesB)) in zip(a, b).enumerated() {
        XCTAssertEqual(boxesA.count, boxesB.count, "boxes of image \(image)", file: file, line: line)
        for (boxA, boxB) in zip(boxesA, boxesB) {
            XCTAssertEqual(boxA.label, boxB.label, "image \(image)", file: file, line: line)
            for (valueA, valueB) in [(boxA.x1, boxB.x1), (boxA.y1, boxB.y1), (boxA.x2, boxB.x2), (boxA.y2, boxB.y2)] {
                XCTAssertEqual(valueA, valueB, accuracy: accuracy, "image \(image): \(boxA) vs \(boxB)", file: file, line: line)
            }
        }
    }
}

final class YOLOConvertTests: XCTestCase {
    /// Three 40 x 30 images: two boxes, one box touching the right and bottom edges, none.
    let boxes: [[PixelBox]] = [
        [PixelBox(label: 0, x: 3, y: 4, width: 10, height: 8), PixelBox(label: 2, x: 20.5, y: 1.25, width: 15, height: 20)],
        [PixelBox(label: 1, x: 25, y: 10, width: 15, height: 20)],
        [],
    ]

    /// The same boxes as a YOLO dataset (the third image without a label file) and as COCO JSON.
    func writeTwins(_ fixture: YOLOFixture) -> (yaml: String, cocoImages: String, cocoJSON: String) {
        var images: [String] = [], annotations: [String] = []
        for (index, imageBoxes) in boxes.enumerated() {
            let name = "im\(index).png"
            fixture.image("images/train/\(name)", width: 40, height: 30, seed: index)
            if !imageBoxes.isEmpty {
                fixture.write(imageBoxes.map { yoloLine($0, width: 40, height: 30) + "\n" }.joined(), to: "labels/train/im\(index).txt")
            }
            images.append(#"{"id": \#(index + 1), "file_name": "\#(name)", "width": 40, "height": 30}"#)
            for box in imageBoxes {
                annotations.append(#"{"id": \#(annotations.count + 1), "image_id": \#(index + 1), "category_id": \#(box.label + 1), "bbox": [\#(box.x), \#(box.y), \#(box.width), \#(box.height)], "iscrowd": 0}"#)
            }
        }
        let categories = ["cat", "dog", "bird"].enumerated().map { #"{"id": \#($0 + 1), "name": "\#($1)"}"# }
        fixture.write(#"{"images": [\#(images.joined(separator: ", "))], "annotations": [\#(annotations.joined(separator: ", "))], "categories": [\#(categories.joined(separator: ", "))]}"#,
                      to: "coco.json")
        let yaml = fixture.yaml("path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog, bird]\n")
        return (yaml, fixture.root + "/images/train", fixture.root + "/coco.json")
    }

    /// The YOLO dataset and its COCO twin convert to the same file: images, boxes, classes, ids;
    /// as they are, stretched and letterboxed.
    func testYOLOAndItsCOCOTwinConvertToTheSameBoxes() throws {
        for (size, letterbox) in [(nil, false), (ImageSize(width: 24, height: 48), false), (ImageSize(width: 24, height: 48), true)] {
            let fixture = YOLOFixture()
            let (yaml, cocoImages, cocoJSON) = writeTwins(fixture)
            let yoloPath = fixture.file("yolo.h5"), cocoPath = fixture.file("coco.h5")
            var options = ConversionOptions(size: size)
            options.letterbox = letterbox
            let summary = try Converter.yolo(data: yaml, output: yoloPath, options: options)
            _ = try Converter.coco(images: cocoImages, annotations: cocoJSON, output: cocoPath, options: options)
            XCTAssertEqual(summary.boxes, 3)
            XCTAssertEqual(summary.perClass, [1, 1, 1])
            XCTAssertTrue(summary.notes.contains("1 images without boxes (background)"), "\(summary.notes)")
            let expected = try readBoxes(cocoPath)
            XCTAssertEqual(expected.map(\.count), [2, 1, 0])
            assertBoxesEqual(try readBoxes(yoloPath), expected)
            let yolo = try DetectionDataset(path: yoloPath), coco = try DetectionDataset(path: cocoPath)
            XCTAssertEqual(yolo.classNames, coco.classNames)
            XCTAssertEqual(yolo.categoryIDs, [1, 2, 3])
            XCTAssertEqual(yolo.categoryIDs, coco.categoryIDs)
            XCTAssertEqual(try yolo.readImageIDs(0..<3), [1, 2, 3])
            XCTAssertEqual(try yolo.readOriginalSizes(0..<3).map { [$0.height, $0.width] }, [[30, 40], [30, 40], [30, 40]])
            XCTAssertEqual([yolo.channels, yolo.height, yolo.width], [3, size?.height ?? 30, size?.width ?? 40])
            XCTAssertEqual(try yolo.readImages(0..<3), try coco.readImages(0..<3))
        }
    }

    func file(_ fixture: YOLOFixture, _ name: String) -> String { fixture.root + "/" + name }

    /// `names` as a flow list, a block list, a map and a block map all give the same classes.
    func testNamesAsListOrMap() throws {
        for names in ["names: [cat, dog]", "names:\n  - cat\n  - dog", "names: {0: cat, 1: dog}", "names:\n  1: dog\n  0: cat",
                      "nc: 2\nnames: ['cat', \"dog\"]"] {
            let fixture = YOLOFixture()
            fixture.image("images/train/a.png", width: 8, height: 8, seed: 0)
            fixture.write("1 0.5 0.5 0.5 0.5\n", to: "labels/train/a.txt")
            let yaml = fixture.yaml("train: images/train\n\(names)\n")
            let summary = try Converter.yolo(data: yaml, output: fixture.output)
            XCTAssertEqual(summary.classNames, ["cat", "dog"], names)
            XCTAssertEqual(summary.perClass, [0, 1], names)
        }
    }

    /// `--split val` reads the val folder (under `path`, relative to the YAML's folder); a text
    /// list of images works as a split; images without a label file, or with an empty one, are
    /// background.
    func testSplitsListsAndBackground() throws {
        let fixture = YOLOFixture()
        for (split, count) in [("train", 2), ("val", 3)] {
            for index in 0..<count { fixture.image("data/images/\(split)/\(index).png", width: 10, height: 10, seed: index) }
        }
        fixture.write("0 0.5 0.5 0.2 0.2\n", to: "data/labels/val/0.txt")
        fixture.write("", to: "data/labels/val/1.txt")       // empty: background, as 2.png without a file
        fixture.write("notes", to: "data/images/val/readme.md")
        let yaml = fixture.yaml("path: ../data\ntrain: images/train\nval: images/val\ntest: lists/test.txt\nnames: [a]\n", name: "cfg/data.yaml")
        // The list is relative to the root; its lines to the list's own folder (./ or not), or absolute.
        fixture.write("./../images/val/2.png\n\n../images/val/0.png\r\n\(fixture.root)/data/images/train/1.png\n", to: "data/lists/test.txt")
        let train = try Converter.yolo(data: yaml, split: .train, output: fixture.output)
        XCTAssertEqual([train.count, train.boxes], [2, 0])
        let val = try Converter.yolo(data: yaml, split: .val, output: fixture.output, options: ConversionOptions(overwrite: true))
        XCTAssertEqual([val.count, val.boxes], [3, 1])
        XCTAssertTrue(val.notes.contains("2 images without boxes (background)"), "\(val.notes)")
        XCTAssertTrue(val.notes.contains("skipped 1 files that are not PNG or JPEG images"), "\(val.notes)")
        XCTAssertEqual(try readBoxes(fixture.output).map(\.count), [1, 0, 0])
        assertBoxesEqual(try readBoxes(fixture.output), [[DetectionBox(x1: 4, y1: 4, x2: 6, y2: 6, label: 0)], [], []])
        let test = try Converter.yolo(data: yaml, split: .test, output: fixture.output, options: ConversionOptions(overwrite: true))
        XCTAssertEqual([test.count, test.boxes], [3, 1])
        // In the list's order: 2.png, 0.png (the boxed one), then train's 1.png.
        XCTAssertEqual(try readBoxes(fixture.output).map(\.count), [0, 1, 0])
    }

    /// A YAML inside its dataset with `train: ../train/images` (Roboflow's export) finds the
    /// folder below its own, as Ultralytics does; labels sit in `train/labels`.
    func testRoboflowLayout() throws {
        let fixture = YOLOFixture()
        fixture.image("train/images/a.png", width: 10, height: 10, seed: 0)
        fixture.write("0 0.5 0.5 0.4 0.4\n0 0.5 0.5 0.4 0.4\n", to: "train/labels/a.txt")
        let yaml = fixture.yaml("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['thing']\n")
        let summary = try Converter.yolo(data: yaml, output: fixture.output)
        XCTAssertEqual(summary.boxes, 1)
        XCTAssertTrue(summary.notes.contains("skipped 1 duplicate label lines (as Ultralytics does)"), "\(summary.notes)")
    }

    /// A box reaching past the edge by less than the tolerance is clipped; a zero-width box is
    /// skipped with a note; a class written 1.0 is class 1.
    func testToleranceAndZeroAreaBoxes() throws {
        let fixture = YOLOFixture()
        fixture.image("images/train/a.png", width: 100, height: 50, seed: 0)
        fixture.write("0 0.1 0.5 0.2008 0.2\n1 0.5 0.5 0 0.2\n1.0 0.9 0.5 0.2 1.0009\n", to: "labels/train/a.txt")
        let yaml = fixture.yaml("train: images/train\nnames: [a, b]\n")
        let summary = try Converter.yolo(data: yaml, output: fixture.output)
        XCTAssertEqual(summary.boxes, 2)
        XCTAssertTrue(summary.notes.contains("skipped 1 boxes with zero width or height"), "\(summary.notes)")
        assertBoxesEqual(try readBoxes(fixture.output), [[DetectionBox(x1: 0, y1: 20, x2: 20.04, y2: 30, label: 0),
                                                          DetectionBox(x1: 80, y1: 0, x2: 100, y2: 50, label: 1)]])
    }

    /// Ultralytics' img2label_paths: the last `/images/` becomes `/labels/`, the extension `.txt`.
    func testLabelPathOfAnImage() {
        XCTAssertEqual(YOLOLabelFile.path(forImage: "/d/images/train/x.jpg"), "/d/labels/train/x.txt")
        XCTAssertEqual(YOLOLabelFile.path(forImage: "/images/d/images/train/a.b.PNG"), "/images/d/labels/train/a.b.txt")
        XCTAssertEqual(YOLOLabelFile.path(forImage: "./pictures/x.png"), "./pictures/x.txt")
    }

    /// Paths from the YAML and lists join without the `.` components of `path: .` or `./images`,
    /// keeping a leading `./` (label paths are found by their `/images/` component).
    func testPathsJoinWithoutDotComponents() {
        XCTAssertEqual(YOLODataFile.join("set", "./images/val"), "set/images/val")
        XCTAssertEqual(YOLODataFile.join("set/.", "images/val"), "set/images/val")
        XCTAssertEqual(YOLODataFile.join("set/", "."), "set")
        XCTAssertEqual(YOLODataFile.join("", "images/val"), "./images/val")
        XCTAssertEqual(YOLODataFile.join(".", "./images"), "./images")
        XCTAssertEqual(YOLODataFile.join("/", "data/images"), "/data/images")
        XCTAssertEqual(YOLODataFile.join("set", "/abs/images"), "/abs/images")
        XCTAssertEqual(YOLODataFile.join("set/lists", "../images/a.png"), "set/lists/../images/a.png")
    }

    /// Predictions written as label lines read back as the same boxes.
    func testLabelLinesReadBack() throws {
        let box = DetectionBox(x1: 10, y1: 20, x2: 30, y2: 60, label: 2)
        let line = YOLOLabelFile.line(box, score: 0.5, imageWidth: 100, imageHeight: 80)
        XCTAssertEqual(line, "2 0.2 0.5 0.2 0.5 0.5")
        XCTAssertEqual(YOLOLabelFile.line(box, imageWidth: 100, imageHeight: 80), "2 0.2 0.5 0.2 0.5")
        let odd = DetectionBox(x1: 1.2345678, y1: 0, x2: 99.87654, y2: 7.5, label: 0)
        let labels = try YOLOLabelFile(text: YOLOLabelFile.line(odd, imageWidth: 100, imageHeight: 80), path: "x.txt", classCount: 3)
        let back = try XCTUnwrap(labels.boxes.first?.pixels(width: 100, height: 80))
        assertBoxesEqual([[back]], [[odd]])
    }

    /// Each bad input is one error naming the file and the line, and leaves no output file.
    func testBadInputsNameTheFileAndLine() throws {
        let labelCases: [(text: String, fragments: [String])] = [
            ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n", ["a.txt", "line 2", "expected 5 fields", "got 4"]),
            ("0 0.5 0.5 0.2 0.2 0.9\n", ["a.txt", "line 1", "got 6"]),
            ("0 0.1 0.1 0.2 0.1 0.2 0.2\n", ["a.txt", "line 1", "segment polygons are not supported"]),
            ("\n\n0 0.5 abc 0.2 0.2\n", ["a.txt", "line 3", "'abc' is not a number"]),
            ("0 0.5 nan 0.2 0.2\n", ["a.txt", "line 1", "'nan' is not a number"]),
            ("cat 0.5 0.5 0.2 0.2\n", ["a.txt", "line 1", "class 'cat' is not an integer"]),
            ("0 0.5 0.5 0.2 0.2\r\n2 0.5 0.5 0.2 0.2\r\n", ["a.txt", "line 2", "class 2", "outside the 2 names"]),
            ("-1 0.5 0.5 0.2 0.2\n", ["a.txt", "line 1", "class -1", "outside"]),
            ("0 0.95 0.5 0.2 0.2\n", ["a.txt", "line 1", "reaches outside the image"]),
            ("0 0.5 0.5 0.2 1.01\n", ["a.txt", "line 1", "reaches outside the image"]),
            ("0 0.5 0.5 -0.2 0.2\n", ["a.txt", "line 1", "negative width or height"]),
        ]
        for (text, fragments) in labelCases {
            let fixture = YOLOFixture()
            fixture.image("images/train/a.png", width: 8, height: 8, seed: 0)
            fixture.write(text, to: "labels/train/a.txt")
            let yaml = fixture.yaml("train: images/train\nnames: [a, b]\n")
            assertDatasetError(fragments) { _ = try Converter.yolo(data: yaml, output: fixture.output) }
            XCTAssertEqual(fixture.outputEntries, [], "output left behind after: \(fragments)")
        }

        let yamlCases: [(text: String, fragments: [String])] = [
            ("train: images/train\nval: images/val\nnames: [a]\n", ["data.yaml", "line 2", "'val' names", "images/val", "does not exist"]),
            ("train: images/train\nnames: [a]\n", ["data.yaml", "missing 'val'"]),
            ("val: images/train\n", ["data.yaml", "missing 'names'"]),
            ("val: images/train\nnames: a\n", ["data.yaml", "line 2", "'names' must be a list", "or a map"]),
            ("val: images/train\nnames: {0: a, 2: b}\n", ["data.yaml", "line 2", "class indices 0 to 1", "got 0, 2"]),
            ("val: images/train\nnames: {zero: a}\n", ["data.yaml", "line 2", "'zero' is not a class index"]),
            ("val: images/train\nnames: []\n", ["data.yaml", "line 2", "'names' is empty"]),
            ("val: images/train\nnc: 3\nnames: [a]\n", ["data.yaml", "line 2", "'nc' is 3", "holds 1"]),
            ("val: [images/train, {a: 1}]\nnames: [a]\n", ["data.yaml", "line 1", "'val' must be a single value"]),
            ("val: images/train\nnames: [a\n", ["data.yaml", "malformed YAML"]),
            ("- a\n- b\n", ["data.yaml", "not a YAML map"]),
            ("val: empty\nnames: [a]\n", ["data.yaml", "empty input"]),
            ("val: list.txt\nnames: [a]\n", ["list.txt", "line 2", "no such image", "images/train/zzz.png"]),
            ("val: bad-list.txt\nnames: [a]\n", ["bad-list.txt", "line 1", "'a.gif' is not a PNG or JPEG"]),
        ]
        for (text, fragments) in yamlCases {
            let fixture = YOLOFixture()
            fixture.image("images/train/a.png", width: 8, height: 8, seed: 0)
            try FileManager.default.createDirectory(atPath: fixture.root + "/empty", withIntermediateDirectories: true)
            fixture.write("images/train/a.png\n./images/train/zzz.png\n", to: "list.txt")
            fixture.write("a.gif\n", to: "bad-list.txt")
            let yaml = fixture.yaml(text)
            assertDatasetError(fragments) { _ = try Converter.yolo(data: yaml, split: .val, output: fixture.output) }
            XCTAssertEqual(fixture.outputEntries, [], "output left behind after: \(fragments)")
        }
    }

    /// Images of another size are refused without `--size`, as the COCO converter refuses them,
    /// after the first image was written: nothing is left behind.
    func testImagesOfAnotherSizeNeedSize() throws {
        let fixture = YOLOFixture()
        fixture.image("images/train/a.png", width: 8, height: 6, seed: 0)
        fixture.image("images/train/b.png", width: 6, height: 8, seed: 1)
        let yaml = fixture.yaml("train: images/train\nnames: [a]\n")
        assertDatasetError(["b.png", "6x8", "expected 8x6", "--size"]) { _ = try Converter.yolo(data: yaml, output: fixture.output) }
        XCTAssertEqual(fixture.outputEntries, [])
        let resized = try Converter.yolo(data: yaml, output: fixture.output, options: ConversionOptions(size: ImageSize(width: 8, height: 8)))
        XCTAssertEqual(resized.count, 2)
        XCTAssertEqual(fixture.outputEntries, ["det.h5"])
    }
}

extension YOLOFixture {
    func file(_ name: String) -> String { root + "/" + name }
}
