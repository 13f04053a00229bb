import PerceptCore
import XCTest
@testable import PerceptDatasets
@testable import PerceptTasks

final class LayoutTests: XCTestCase {
    func testClassificationRoundTrip() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("classes.h5")
        let writer = try DatasetWriter(path: path, task: .classification, channels: 3, height: 4, width: 5, source: "test")
        var images: [Image] = []
        for index in 0..<7 {
            let image = patternImage(width: 5, height: 4, channels: 3, seed: index)
            images.append(image)
            try writer.append(image: image, label: index % 3)
        }
        try writer.finish(classNames: ["cat", "dog", "émeu"])
        XCTAssertEqual(directory.entries, ["classes.h5"])

        let dataset = try ClassificationDataset(path: path)
        XCTAssertEqual(dataset.count, 7)
        XCTAssertEqual([dataset.channels, dataset.height, dataset.width], [3, 4, 5])
        XCTAssertEqual(dataset.classNames, ["cat", "dog", "émeu"])
        XCTAssertEqual(dataset.source, "test")
        let rows = try dataset.read(rows: 2..<5)
        XCTAssertEqual(rows.labels, [2, 0, 1])
        let plane = 3 * 4 * 5
        for (offset, index) in (2..<5).enumerated() {
            let planar = Array(rows.images[(offset * plane)..<((offset + 1) * plane)])
            let back = planar.withUnsafeBufferPointer { Image(planar: $0.baseAddress!, width: 5, height: 4, channels: 3) }
            XCTAssertEqual(back, images[index])
        }
    }
}

final class TaskLayoutTests: XCTestCase {
    func testTaggingRoundTrip() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("tags.h5")
        let writer = try DatasetWriter(path: path, task: .tagging, channels: 1, height: 2, width: 3, tagCount: 4, source: "test")
        let tagSets = [[0, 2], [], [1, 2, 3]]
        for (index, tags) in tagSets.enumerated() {
            try writer.append(image: patternImage(width: 3, height: 2, channels: 1, seed: index), tagIndices: tags)
        }
        try writer.finish(classNames: ["clear", "haze", "road", "water"])
        let dataset = try TaggingDataset(path: path)
        XCTAssertEqual(dataset.tagNames, ["clear", "haze", "road", "water"])
        XCTAssertEqual(try dataset.readTags(0..<3), [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1])
        XCTAssertEqual(try dataset.readImages(1..<2), patternImage(width: 3, height: 2, channels: 1, seed: 1).pixels)
    }

    func testSegmentationRoundTrip() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("masks.h5")
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 3, height: 2, width: 2, source: "test")
        try writer.append(image: patternImage(width: 2, height: 2, channels: 3, seed: 0),
                          mask: Image(width: 2, height: 2, channels: 1, pixels: [0, 1, 255, 2]))
        try writer.finish(classNames: ["background", "road", "car"])
        let dataset = try SegmentationDataset(path: path)
        XCTAssertEqual(dataset.classCount, 3)
        XCTAssertEqual(try dataset.readMasks(0..<1), [0, 1, 255, 2])
        XCTAssertEqual(try HDF5File(openingPath: path).integerAttribute("ignore_index"), 255)
    }

    func testDetectionRoundTrip() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("boxes.h5")
        let writer = try DatasetWriter(path: path, task: .detection, channels: 3, height: 4, width: 4, source: "test")
        let boxes: [[DetectionBox]] = [
            [DetectionBox(x1: 0, y1: 0, x2: 2, y2: 2, label: 1)],
            [],
            [DetectionBox(x1: 1, y1: 1, x2: 3, y2: 4, label: 0), DetectionBox(x1: 0.5, y1: 0, x2: 4, y2: 1.5, label: 1)],
        ]
        for (index, imageBoxes) in boxes.enumerated() {
            try writer.append(image: patternImage(width: 4, height: 4, channels: 3, seed: index), boxes: imageBoxes,
                              imageID: Int64(100 + index), originalWidth: 8, originalHeight: 6)
        }
        try writer.finish(classNames: ["person", "bicycle"], categoryIDs: [1, 2])
        let dataset = try DetectionDataset(path: path)
        XCTAssertEqual(dataset.boxCount, 3)
        XCTAssertEqual(dataset.categoryIDs, [1, 2])
        XCTAssertEqual(try dataset.readBoxes(0..<3), boxes)
        XCTAssertEqual(try dataset.readBoxes(1..<3), Array(boxes[1...]))
        XCTAssertEqual(try dataset.readImageIDs(0..<3), [100, 101, 102])
        XCTAssertEqual(try dataset.readOriginalSizes(2..<3).map { [$0.height, $0.width] }, [[6, 8]])
    }

    func testOpeningFilesThatAreNotOursFails() throws {
        let directory = TemporaryDirectory()
        let foreign = directory.file("foreign.h5")
        do {
            let file = try HDF5File(creatingPath: foreign)
            try file.createDataset("data", type: .float32, shape: [2]).writeAll(as: .float32, from: [Float(1), 2])
        }
        assertDatasetError(["foreign.h5", "not a Percept dataset"]) { _ = try ClassificationDataset(path: foreign) }

        let text = directory.file("text.h5")
        FileManager.default.createFile(atPath: text, contents: Data("hello".utf8))
        assertDatasetError(["text.h5", "not an HDF5 file"]) { _ = try ClassificationDataset(path: text) }
        assertDatasetError(["absent.h5", "no such file"]) { _ = try ClassificationDataset(path: directory.file("absent.h5")) }

        // A Percept classification file with its labels removed.
        let broken = directory.file("broken.h5")
        do {
            let file = try HDF5File(creatingPath: broken)
            try file.setAttribute("format", DatasetLayout.datasetFormat)
            try file.setAttribute("format_version", 1)
            try file.setAttribute("task", "classification")
            try file.setAttribute("class_names", strings: ["a"])
            let images = try file.createDataset("images", type: .uint8, shape: [1, 1, 1, 1])
            try images.writeAll(as: .uint8, from: [UInt8(3)])
        }
        assertDatasetError(["broken.h5", "missing dataset '/labels'"]) { _ = try ClassificationDataset(path: broken) }
        assertDatasetError(["broken.h5", "is a classification dataset, not segmentation"]) { _ = try SegmentationDataset(path: broken) }
        assertDatasetError(["foreign.h5", "not a Percept model file"]) { _ = try ModelCheckpoint.read(path: foreign) }
        XCTAssertEqual(directory.entries, ["broken.h5", "foreign.h5", "text.h5"])
    }

    func testLabelsOutsideTheClassesAreReportedOnRead() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("bad.h5")
        let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 1, width: 1, source: "test")
        try writer.append(image: Image(width: 1, height: 1, channels: 1, pixels: [0]), label: 0)
        try writer.append(image: Image(width: 1, height: 1, channels: 1, pixels: [0]), label: 5)
        try writer.finish(classNames: ["a", "b"])
        let dataset = try ClassificationDataset(path: path)
        assertDatasetError(["bad.h5", "label 5 of image 1", "2 classes"]) { _ = try dataset.readLabels(0..<2) }
    }

    func testWriterLeavesNothingWhenAbandonedOrEmpty() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("out.h5")
        do {
            let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 2, width: 2, source: "test")
            try writer.append(image: Image(width: 2, height: 2, channels: 1), label: 0)
            // Dropped without finish, as when a conversion throws.
        }
        XCTAssertEqual(directory.entries, [])
        let empty = try DatasetWriter(path: path, task: .classification, channels: 1, height: 2, width: 2, source: "test")
        assertDatasetError(["out.h5", "empty input"]) { try empty.finish(classNames: ["a"]) }
        XCTAssertEqual(directory.entries, [])
        FileManager.default.createFile(atPath: path, contents: Data("old".utf8))
        assertDatasetError(["out.h5", "exists", "--force"]) {
            _ = try DatasetWriter(path: path, task: .classification, channels: 1, height: 2, width: 2, source: "test")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data("old".utf8))
    }
}
