import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// `percept convert yolo` and `percept detect predict --save-txt`, through the built executable.
final class YOLOCLITests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    func writeImage(_ path: String, width: Int, height: Int) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try PNG.write(Image(width: width, height: height, channels: 3, pixels: (0..<(width * height * 3)).map { UInt8($0 * 7 % 256) }), to: path)
    }

    /// A val split converts with --size and --channels; a bad label line is one error line with
    /// no output; an existing output needs --force.
    func testConvertYOLOEndToEnd() throws {
        let scratch = Scratch()
        try writeImage(scratch.file("set/images/val/a.png"), width: 20, height: 10)
        try writeImage(scratch.file("set/images/val/b.png"), width: 20, height: 10)
        try write("1 0.5 0.5 0.5 0.4\n0 0.25 0.25 0.1 0.2\n", to: scratch.file("set/labels/val/a.txt"))
        try write("names:\n  0: cat\n  1: dog\npath: .\ntrain: images/train\nval: images/val\n", to: scratch.file("set/data.yaml"))
        let output = scratch.file("det.h5")
        func arguments(_ output: String) -> [String] {
            ["convert", "yolo", "--data", scratch.file("set/data.yaml"), "--split", "val", "-o", output, "--size", "40x40", "--channels", "1", "--quiet"]
        }
        let converted = try percept(arguments(output))
        XCTAssertEqual(converted.status, 0, converted.standardError)
        XCTAssertTrue(converted.standardOutput.contains("wrote \(output): detection, 2 images of 1x40x40, 2 boxes"), converted.standardOutput)
        XCTAssertTrue(converted.standardOutput.contains("note: 1 images without boxes (background)"), converted.standardOutput)
        let dataset = try DetectionDataset(path: output)
        XCTAssertEqual(dataset.classNames, ["cat", "dog"])
        XCTAssertEqual(dataset.categoryIDs, [1, 2])
        let boxes = try dataset.readBoxes(0..<2)
        XCTAssertEqual(boxes[1], [])
        let expected: [(Int32, [Float])] = [(1, [10, 12, 30, 28]), (0, [8, 6, 12, 14])]
        XCTAssertEqual(boxes[0].map(\.label), expected.map(\.0))
        for (box, (_, corners)) in zip(boxes[0], expected) {
            for (value, target) in zip([box.x1, box.y1, box.x2, box.y2], corners) { XCTAssertEqual(value, target, accuracy: 1e-4, "\(box)") }
        }

        let refused = try percept(arguments(output))
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.errorLines.count, 1, refused.standardError)
        XCTAssertTrue(refused.errorLines[0].contains("--force"), refused.standardError)

        try write("0 0.5 0.5 0.5\n", to: scratch.file("set/labels/val/b.txt"))
        let bad = try percept(arguments(scratch.file("bad.h5")))
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.errorLines, ["error: \(scratch.file("set/labels/val/b.txt")): line 1: expected 5 fields 'class cx cy w h', got 4"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("bad.h5")))
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: scratch.path).contains { $0.hasPrefix(".bad.h5") })

        let help = try percept(["convert", "--help"])
        XCTAssertTrue(help.standardOutput.contains("  yolo "), help.standardOutput)
    }

    /// `detect predict --save-txt` writes one label file per image whose lines are the JSON's
    /// detections, normalised; without their score column they convert back to the same boxes.
    /// Existing label files need --force, and a stopped run leaves none.
    func testDetectPredictSavesLabelsThatConvertBack() throws {
        let scratch = Scratch()
        let detector = root.appendingPathComponent("models/fashion-detector.h5").path
        let classes = try ModelCheckpoint.read(path: detector).classNames
        let scene = scratch.file("set/images/train/00.png")
        try FileManager.default.createDirectory(atPath: scratch.file("set/images/train"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: root.appendingPathComponent("samples/scenes/00.png").path, toPath: scene)
        let arguments = ["detect", "predict", "--model", detector, scene, "-o", scratch.file("d.json"),
                         "--save-txt", scratch.file("predicted"), "--set", "refinements=0"]
        let predicted = try percept(arguments)
        XCTAssertEqual(predicted.status, 0, predicted.standardError)
        XCTAssertTrue(predicted.standardError.contains("and labels to \(scratch.file("predicted"))"), predicted.standardError)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.file("predicted")), ["00.txt"])

        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.file("d.json")))) as? [[String: Any]])
        let text = try String(contentsOfFile: scratch.file("predicted/00.txt"), encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertFalse(lines.isEmpty, "no detections in the sample scene")
        XCTAssertEqual(lines.count, json.count)
        for (fields, detection) in zip(lines, json) {
            XCTAssertEqual(fields.count, 6, "\(fields)")
            let label = try XCTUnwrap(Int(fields[0]))
            XCTAssertTrue(classes.indices.contains(label), "\(fields)")
            let numbers = fields.dropFirst().compactMap(Double.init)
            XCTAssertEqual(numbers.count, 5, "\(fields)")
            XCTAssertTrue(numbers.allSatisfy { (0...1).contains($0) }, "\(fields)")
            // The same box as the JSON's [x, y, w, h] pixels of the 160 x 160 scene.
            let bbox = try XCTUnwrap(detection["bbox"] as? [Double])
            let pixels = [numbers[0] * 160 - numbers[2] * 80, numbers[1] * 160 - numbers[3] * 80, numbers[2] * 160, numbers[3] * 160]
            for (value, target) in zip(pixels, bbox) { XCTAssertEqual(value, target, accuracy: 1e-3, "\(fields) vs \(bbox)") }
            XCTAssertEqual(numbers[4], try XCTUnwrap(detection["score"] as? Double), accuracy: 1e-5)
        }

        // Back through convert yolo, the score column dropped (training labels hold 5 fields).
        try write(lines.map { $0.prefix(5).joined(separator: " ") + "\n" }.joined(), to: scratch.file("set/labels/train/00.txt"))
        try write("train: images/train\nnames: [\(classes.map { "'\($0)'" }.joined(separator: ", "))]\n", to: scratch.file("set/data.yaml"))
        let converted = try percept(["convert", "yolo", "--data", scratch.file("set/data.yaml"), "-o", scratch.file("back.h5"), "--quiet"])
        XCTAssertEqual(converted.status, 0, converted.standardError)
        let back = try DetectionDataset(path: scratch.file("back.h5"))
        XCTAssertEqual(back.classNames, classes)
        let boxes = try back.readBoxes(0..<1)[0]
        XCTAssertEqual(boxes.count, json.count)
        for (box, (detection, fields)) in zip(boxes, zip(json, lines)) {
            XCTAssertEqual(String(box.label), fields[0])
            let bbox = try XCTUnwrap(detection["bbox"] as? [Double])
            let corners = [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]]
            for (value, target) in zip([box.x1, box.y1, box.x2, box.y2], corners) { XCTAssertEqual(Double(value), target, accuracy: 1e-3, "\(box) vs \(bbox)") }
        }

        // Existing label files are refused without --force (the JSON replaced with it).
        let again = try percept(arguments.map { $0 == scratch.file("d.json") ? scratch.file("d2.json") : $0 })
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(again.errorLines, ["error: \(scratch.file("predicted/00.txt")): exists; pass --force to replace it"])
        XCTAssertEqual(try percept(arguments + ["--force"]).status, 0)

        // A bad image among the inputs stops the run before any label file is written.
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 2]).write(to: URL(fileURLWithPath: scratch.file("set/images/train/zz.jpg")))
        let stopped = try percept(["detect", "predict", "--model", detector, scratch.file("set/images/train"), "-o", scratch.file("e.json"),
                                   "--save-txt", scratch.file("stopped"), "--set", "refinements=0"])
        XCTAssertEqual(stopped.status, 1)
        XCTAssertEqual(stopped.errorLines.count, 1, stopped.standardError)
        XCTAssertTrue(stopped.errorLines[0].contains("zz.jpg"), stopped.standardError)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.file("stopped")), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("e.json")))
    }
}
