import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// The programs of docs/library.md (Sources/Examples) run and do what the document says.
final class LibraryExampleTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func examples(_ arguments: [String]) throws -> CommandResult {
        try runExecutable(try perceptExecutable("percept-examples"), arguments)
    }

    /// 48 gray 16 x 16 images of three classes (bright rows, bright columns, a bright square).
    func writeData(_ path: String) throws {
        var rng = SeededGenerator(seed: 3)
        let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 16, width: 16, source: "test")
        for index in 0..<48 {
            let pixels = (0..<256).map { p -> UInt8 in
                let (y, x) = (p / 16, p % 16)
                let on = index % 3 == 0 ? y % 4 == 0 : index % 3 == 1 ? x % 4 == 0 : (4..<12).contains(x) && (4..<12).contains(y)
                return on ? 200 : UInt8(rng.next() % 50)
            }
            try writer.append(image: Image(width: 16, height: 16, channels: 1, pixels: pixels), label: index % 3)
        }
        try writer.finish(classNames: ["rows", "columns", "square"])
    }

    func testPredictWithAShippedModel() throws {
        let result = try examples(["predict", root.appendingPathComponent("models/fashion-classifier.h5").path,
                                   root.appendingPathComponent("samples/fashion/0000-ankle-boot.png").path])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardOutput.hasPrefix("Ankle boot 0."), result.standardOutput)
        XCTAssertEqual(result.standardOutput.split(separator: "\n").count, 3)
    }

    func testTrainAClassifierWithSettingsInCode() throws {
        let scratch = Scratch()
        try writeData(scratch.file("train.h5"))
        let result = try examples(["train", scratch.file("train.h5"), scratch.file("model.h5")])
        XCTAssertEqual(result.status, 0, result.standardError)
        let stored = try TrainingRun<ClassificationConfig>.storedConfig(in: scratch.file("model.h5"))
        XCTAssertEqual([stored.train.epochs, stored.train.batchSize], [1, 16])
        XCTAssertEqual(stored.backbone.widths, [8, 16, 32])
        XCTAssertTrue(result.standardOutput.contains("  batch: 16\n"), result.standardOutput)
    }

    func testOverrideADetectorSettingInCode() throws {
        let result = try examples(["settings", root.appendingPathComponent("models/fashion-detector.h5").path,
                                   root.appendingPathComponent("samples/scenes/00.png").path])
        XCTAssertEqual(result.status, 0, result.standardError)
        let counts = result.standardOutput.split(separator: "\n").compactMap { $0.split(separator: " ").dropLast().last.flatMap { Int($0) } }
        XCTAssertEqual(counts.count, 2, result.standardOutput)
        XCTAssertGreaterThan(counts[0], counts[1], "a higher score threshold keeps fewer detections: \(result.standardOutput)")
    }

    func testACustomHeadOnABackboneTap() throws {
        let scratch = Scratch()
        try writeData(scratch.file("train.h5"))
        let result = try examples(["custom-head", scratch.file("train.h5")])
        XCTAssertEqual(result.status, 0, result.standardError)
        let accuracy = try XCTUnwrap(result.standardOutput.components(separatedBy: "accuracy ").last.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        // Three classes: chance is 1/3.
        XCTAssertGreaterThan(accuracy, 0.6, result.standardOutput)
    }
}
