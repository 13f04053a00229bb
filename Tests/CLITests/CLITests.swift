import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// What one run of the `percept` executable printed and returned.
struct CommandResult {
    var status: Int32
    var standardOutput: String
    var standardError: String
    /// Lines of standard error that start with `error:`.
    var errorLines: [String] { standardError.split(separator: "\n").map(String.init).filter { $0.hasPrefix("error:") } }
}

/// The command could not be run: no executable, or no file for its error output.
struct CommandSetupError: Error, CustomStringConvertible { let description: String }

/// An executable of the package (`percept` by default) built beside this test bundle
/// (`PERCEPT_EXECUTABLE` overrides `percept`).
func perceptExecutable(_ name: String = "percept") throws -> URL {
    if name == "percept", let path = ProcessInfo.processInfo.environment["PERCEPT_EXECUTABLE"] { return URL(fileURLWithPath: path) }
    // SwiftPM puts products and the test bundle in the same directory (.build/<triple>/debug).
    var candidates = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
    if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
    for directory in candidates {
        let url = directory.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw CommandSetupError(description: "no \(name) executable in \(candidates.map(\.path)); build it or set PERCEPT_EXECUTABLE")
}

/// Runs `percept` with `arguments` and collects its output.
func percept(_ arguments: [String]) throws -> CommandResult {
    try runExecutable(try perceptExecutable(), arguments)
}

/// Runs the executable at `url` with `arguments` (and `environment` added) and collects its
/// output. It runs in a fresh working folder, removed afterwards, so that training's default run
/// folders (runs/...) land there; a test that reads a run folder names it with --project.
func runExecutable(_ url: URL, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = url
    let workingFolder = NSTemporaryDirectory() + "percept-cwd-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: workingFolder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: workingFolder) }
    process.currentDirectoryURL = URL(fileURLWithPath: workingFolder)
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.arguments = arguments
    // Standard error goes to a file so that reading standard output to its end cannot
    // deadlock on a full error pipe.
    let errorPath = NSTemporaryDirectory() + "percept-cli-stderr-\(UUID().uuidString)"
    guard FileManager.default.createFile(atPath: errorPath, contents: nil) else { throw CommandSetupError(description: "cannot create \(errorPath)") }
    defer { try? FileManager.default.removeItem(atPath: errorPath) }
    let errorFile = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
    let output = Pipe()
    process.standardOutput = output
    process.standardError = errorFile
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    try errorFile.close()
    let errorData = FileManager.default.contents(atPath: errorPath) ?? Data()
    return CommandResult(status: process.terminationStatus, standardOutput: String(decoding: outputData, as: UTF8.self),
                         standardError: String(decoding: errorData, as: UTF8.self))
}

/// A fresh temporary directory removed when the test ends.
final class Scratch {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "percept-cli-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A tiny model file of `task` for 1 x 8 x 8 images and three classes.
func writeModel(_ path: String, task: VisionTask) throws {
    func configuration<H: Head>(_ head: H.Architecture, _: H.Type) -> ModelConfiguration<H> {
        ModelConfiguration(task: task, inputChannels: 1, inputHeight: 8, inputWidth: 8, classes: ["a", "b", "c"],
                           backbone: BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [2]),
                           head: head, settings: H.Settings(), mean: [0.5], std: [0.25])
    }
    let layers = VectorHeadConfiguration(pooling: .flatten, inFeatures: 2 * 4 * 4, outputs: 3)
    switch task {
    case .classification: try Classifier(configuration(.init(layers: layers), ClassificationHead.self), seed: 0).save(to: path)
    case .tagging: try Tagger(configuration(.init(layers: layers), TaggingHead.self), seed: 0).save(to: path)
    default: XCTFail("no test model for \(task)")
    }
}

/// A tiny segmentation model file for 1 x 8 x 8 images and classes background, a, b.
func writeSegmenter(_ path: String) throws {
    let configuration = ModelConfiguration<SegmentationHead>(
        task: .segmentation, inputChannels: 1, inputHeight: 8, inputWidth: 8, classes: ["background", "a", "b"],
        backbone: BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [2, 4], blocks: [1, 1]),
        head: SegmentationHead.Architecture(deepest: "stage2", skips: ["stage1"], classes: 3), settings: .init(),
        mean: [0.5], std: [0.25])
    try Model<SegmentationHead>(configuration, seed: 0).save(to: path)
}

/// A classification dataset of six 8 x 8 gray images.
func writeDataset(_ path: String) throws {
    let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 8, width: 8, source: "test")
    for index in 0..<6 {
        try writer.append(image: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 * 7 + index * 40) % 256) }),
                          label: index % 3)
    }
    try writer.finish(classNames: ["a", "b", "c"])
}

final class CLITests: XCTestCase {
    func testHelpListsEveryCommand() throws {
        let result = try percept(["--help"])
        XCTAssertEqual(result.status, 0, result.standardError)
        for command in ["classify", "tag", "detect", "segment", "multi", "convert", "inspect", "plot", "export", "bench", "compose"] {
            XCTAssertTrue(result.standardOutput.range(of: "\n  \(command) ") != nil || result.standardOutput.contains("  \(command)\n"),
                          "`percept --help` does not list \(command):\n\(result.standardOutput)")
        }
    }

    /// `percept bench` says which kernel builds it measured: ours and OpenBLAS's.
    func testBenchNamesTheKernelBuilds() throws {
        let result = try percept(["bench", "--workload", "W1", "--mode", "inference", "--threads", "1", "--min-time", "0.05"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let lines = result.standardOutput.split(separator: "\n")
        let first = try XCTUnwrap(lines.first.map(String.init))
        XCTAssertTrue(["AVX-512", "AVX2", "portable C"].contains { first.hasPrefix("kernels: Percept \($0), OpenBLAS ") }, first)
        XCTAssertFalse(first.hasSuffix("OpenBLAS "), first)
        XCTAssertTrue(lines.contains { $0.hasPrefix("W1        inference        1") }, result.standardOutput)
    }

    /// Every train command lists the same short set of options: what users type daily, and the
    /// configuration's three (`--config`, `--set`, `--show-config`) for the rest.
    func testTrainHelpIsShortAndTheSameForEveryTask() throws {
        let expected = ["--data", "--val", "--output", "--project", "--name", "--backbone", "--epochs", "--batch", "--lr", "--seed", "--threads",
                        "--resume", "--force", "--config", "--set", "--show-config", "--help"]
        for task in ["classify", "tag", "detect", "segment"] {
            let result = try percept([task, "train", "--help"])
            XCTAssertEqual(result.status, 0, result.standardError)
            let options = result.standardOutput.components(separatedBy: "OPTIONS:").last!.split(separator: "\n").compactMap { line -> String? in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("-") else { return nil }
                return trimmed.split(separator: " ").first { $0.hasPrefix("--") }.map { String($0.split(separator: ",")[0]) }
            }
            XCTAssertEqual(options, expected, "\(task) train --help:\n\(result.standardOutput)")
            XCTAssertLessThanOrEqual(options.filter { $0 != "--help" }.count, 16)
        }
    }

    func testVersion() throws {
        let result = try percept(["--version"])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertEqual(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines), PerceptVersion.current)
    }

    func testComposeHelpMentionsEveryOption() throws {
        let result = try percept(["compose", "--help"])
        XCTAssertEqual(result.status, 0, result.standardError)
        for option in ["--from", "--output", "--count", "--size", "--min-items", "--max-items", "--scale-min", "--scale-max",
                       "--noise", "--noise-distribution", "--resample", "--overlap-rule", "--max-overlap", "--seed", "--preview", "--force", "--quiet", "tagging", "detection", "segmentation"] {
            XCTAssertTrue(result.standardOutput.contains(option), "`compose --help` does not mention \(option)")
        }
    }

    func testUnknownFlagFails() throws {
        let result = try percept(["classify", "train", "--data", "x.h5", "-o", "m.h5", "--no-such-flag"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.standardError.contains("--no-such-flag"), result.standardError)
        XCTAssertTrue(result.standardError.lowercased().contains("error"), result.standardError)
    }

    func testEvalWithTheWrongModelOrAMissingFileFailsWithOneErrorLine() throws {
        let scratch = Scratch()
        try writeModel(scratch.file("tagger.h5"), task: .tagging)
        try writeDataset(scratch.file("data.h5"))

        let wrongTask = try percept(["classify", "eval", "--model", scratch.file("tagger.h5"), "--data", scratch.file("data.h5")])
        XCTAssertEqual(wrongTask.status, 1)
        XCTAssertEqual(wrongTask.errorLines.count, 1, wrongTask.standardError)
        XCTAssertTrue(wrongTask.errorLines.first?.contains("tagger.h5") == true, wrongTask.standardError)
        XCTAssertEqual(wrongTask.standardOutput, "")

        let missing = try percept(["classify", "eval", "--model", scratch.file("nothing.h5"), "--data", scratch.file("data.h5")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.errorLines.count, 1, missing.standardError)
        XCTAssertTrue(missing.errorLines.first?.contains("nothing.h5") == true, missing.standardError)

        // The right kind of model evaluates.
        try writeModel(scratch.file("classifier.h5"), task: .classification)
        let good = try percept(["classify", "eval", "--model", scratch.file("classifier.h5"), "--data", scratch.file("data.h5"), "--json"])
        XCTAssertEqual(good.status, 0, good.standardError)
        XCTAssertTrue(good.standardOutput.contains("\"images\":6"), good.standardOutput)
    }

    /// One output policy: no command replaces an existing file without --force, none writes over
    /// its own input, and bad options or outputs are refused before any work.
    func testOutputsAndOptionsAreCheckedBeforeWork() throws {
        let scratch = Scratch()
        try writeModel(scratch.file("classifier.h5"), task: .classification)
        try writeDataset(scratch.file("data.h5"))
        let image = scratch.file("image.png")
        try PNG.write(Image(width: 8, height: 8, channels: 1, pixels: [UInt8](repeating: 90, count: 64)), to: image)
        let modelBytes = try Data(contentsOf: URL(fileURLWithPath: scratch.file("classifier.h5")))
        func refused(_ arguments: [String], mentioning text: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let result = try percept(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments) succeeded", file: file, line: line)
            XCTAssertNotEqual(result.status, 132, "\(arguments) crashed", file: file, line: line)
            XCTAssertTrue(result.standardError.contains(text), "\(arguments): \(result.standardError)", file: file, line: line)
        }
        // predict -o naming the model itself, or an existing file.
        try refused(["classify", "predict", "--model", scratch.file("classifier.h5"), image, "-o", scratch.file("classifier.h5")],
                    mentioning: "is also an input")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: scratch.file("classifier.h5"))), modelBytes, "the model was replaced")
        try "x".write(toFile: scratch.file("out.csv"), atomically: true, encoding: .utf8)
        try refused(["classify", "predict", "--model", scratch.file("classifier.h5"), image, "-o", scratch.file("out.csv")],
                    mentioning: "--force")
        XCTAssertEqual(try percept(["classify", "predict", "--model", scratch.file("classifier.h5"), image, "-o", scratch.file("out.csv"), "--force"]).status, 0)
        // --threads 0 or -1: a clean usage error, not a crash.
        for threads in ["--threads=0", "--threads=-1"] {
            try refused(["classify", "predict", "--model", scratch.file("classifier.h5"), image, threads], mentioning: "--threads")
            try refused(["classify", "eval", "--model", scratch.file("classifier.h5"), "--data", scratch.file("data.h5"), threads], mentioning: "--threads")
        }
        // train -o into a missing folder, or over the training data, fails before an epoch runs.
        try refused(["classify", "train", "--data", scratch.file("data.h5"), "--epochs", "1", "-o", scratch.file("missing/model.h5")],
                    mentioning: "does not exist")
        try refused(["classify", "train", "--data", scratch.file("data.h5"), "--epochs", "1", "-o", scratch.file("data.h5")],
                    mentioning: "is also an input")
        // Detection samples its own windows: erasing would do nothing there, so it is refused.
        try refused(["detect", "train", "--data", scratch.file("data.h5"), "--set", "erase=0.5", "-o", scratch.file("detector.h5")],
                    mentioning: "erase is not available for detection")
        // A validation set of other classes or image size is refused up front.
        let other = try DatasetWriter(path: scratch.file("other.h5"), task: .classification, channels: 1, height: 6, width: 6, source: "test")
        for index in 0..<3 { try other.append(image: Image(width: 6, height: 6, channels: 1), label: index) }
        try other.finish(classNames: ["a", "b", "c"])
        let mismatch = try percept(["classify", "train", "--data", scratch.file("data.h5"), "--val", scratch.file("other.h5"),
                                    "--epochs", "1", "-o", scratch.file("new.h5")])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertTrue(mismatch.errorLines.first?.contains("other.h5") == true, mismatch.standardError)
        XCTAssertFalse(mismatch.standardError.contains("epoch 1/1"), "trained before refusing: \(mismatch.standardError)")
        // Item pasting is a classification (and segmentation) training option: logged, and kept in the checkpoint for --resume.
        let pasted = try percept(["classify", "train", "--data", scratch.file("data.h5"), "--set", "preset=plain", "--set", "widths=[3, 3]",
                                  "--epochs", "1", "--set", "paste=0.5", "-o", scratch.file("pasted.h5")])
        XCTAssertEqual(pasted.status, 0, pasted.standardError)
        XCTAssertTrue(pasted.standardError.contains("augment on + erasing 0.5 + pasting 0.5"), pasted.standardError)
        let options = try XCTUnwrap(ModelCheckpoint.read(path: scratch.file("pasted.last.h5")).metadata["training_options"])
        XCTAssertTrue(options.contains("\"paste\":0.5"), options)
        // The recipe's erasing too: augment=false drops no setting silently.
        try refused(["classify", "train", "--data", scratch.file("data.h5"), "--set", "augment=false", "-o", scratch.file("p2.h5")],
                    mentioning: "erase is part of the augmentation, which augment=false turns off; set erase=0 too")
        try refused(["classify", "train", "--data", scratch.file("data.h5"), "--set", "paste=0.5", "--set", "augment=false",
                     "--set", "erase=0", "-o", scratch.file("p2.h5")], mentioning: "paste is part of the augmentation")
        for task in ["tag", "detect"] {
            try refused([task, "train", "--data", scratch.file("data.h5"), "--set", "paste=0.5", "-o", scratch.file("p3.h5")],
                        mentioning: "paste is for classification")
        }
    }

    func testPredictOnACorruptPNGFailsWithoutWritingCSV() throws {
        let scratch = Scratch()
        try writeModel(scratch.file("classifier.h5"), task: .classification)
        let good = scratch.file("good.png"), corrupt = scratch.file("corrupt.png")
        try PNG.write(Image(width: 8, height: 8, channels: 1), to: good)
        // A real PNG cut short: the signature and header survive, the image data does not.
        let bytes = try PNG.encode(Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8($0 * 3) }))
        XCTAssertTrue(FileManager.default.createFile(atPath: corrupt, contents: Data(bytes.prefix(bytes.count / 2))))

        let csv = scratch.file("out.csv")
        let result = try percept(["classify", "predict", "--model", scratch.file("classifier.h5"), good, corrupt, "-o", csv])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.errorLines.count, 1, result.standardError)
        XCTAssertTrue(result.errorLines.first?.contains("corrupt.png") == true, result.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: csv), "a CSV was written despite the error")

        let ok = try percept(["classify", "predict", "--model", scratch.file("classifier.h5"), good, "-o", csv])
        XCTAssertEqual(ok.status, 0, ok.standardError)
        XCTAssertEqual(ok.standardError, "wrote predictions for 1 image to \(csv)\n", "a command that writes files names them")
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "image,label,score")
        XCTAssertEqual(lines.count, 2)
    }

    func testSegmentPredictWritesMasksAtEachImagesSizeAndOverlays() throws {
        let scratch = Scratch()
        try writeSegmenter(scratch.file("segmenter.h5"))
        try FileManager.default.createDirectory(atPath: scratch.file("in"), withIntermediateDirectories: true)
        try PNG.write(Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8($0 * 4) }), to: scratch.file("in/small.png"))
        try PNG.write(Image(width: 12, height: 10, channels: 3, pixels: (0..<360).map { UInt8($0 % 256) }), to: scratch.file("in/other.png"))
        let arguments = ["segment", "predict", "--model", scratch.file("segmenter.h5"), scratch.file("in"),
                         "-o", scratch.file("masks"), "--overlay", scratch.file("overlays")]
        let result = try percept(arguments)
        XCTAssertEqual(result.status, 0, result.standardError)
        for (name, width, height) in [("small.png", 8, 8), ("other.png", 12, 10)] {
            let mask = try PNG.readIndexMask(path: scratch.file("masks/" + name))
            XCTAssertEqual([mask.width, mask.height], [width, height], name)
            XCTAssertTrue(mask.pixels.allSatisfy { $0 < 3 }, "\(name): class indices \(Set(mask.pixels))")
            let overlay = try PNG.read(path: scratch.file("overlays/" + name), channels: 3)
            XCTAssertGreaterThanOrEqual(overlay.width, 256, "overlays are enlarged for viewing")
        }
        // Existing masks are kept unless --force is given.
        let again = try percept(arguments)
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(again.errorLines.count, 1, again.standardError)
        XCTAssertTrue(again.errorLines.first?.contains("--force") == true, again.standardError)
        XCTAssertEqual(try percept(arguments + ["--force"]).status, 0)

        // eval --json: the confusion matrix [truth][prediction] beside the IoUs derived from it.
        let data = scratch.file("masks.h5")
        let writer = try DatasetWriter(path: data, task: .segmentation, channels: 1, height: 8, width: 8, source: "test")
        for index in 0..<3 {
            try writer.append(image: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 * 5 + index * 60) % 256) }),
                              mask: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 / 8 + index) % 3) }))
        }
        try writer.finish(classNames: ["background", "a", "b"])
        let evaluated = try percept(["segment", "eval", "--model", scratch.file("segmenter.h5"), "--data", data, "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.standardError)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(evaluated.standardOutput.utf8)) as? [String: Any])
        let confusion = try XCTUnwrap(report["confusion"] as? [[Int]], evaluated.standardOutput)
        XCTAssertEqual(confusion.count, 3)
        XCTAssertEqual(confusion.flatMap { $0 }.reduce(0, +), 3 * 64, "every pixel counted once")
        let perClass = try XCTUnwrap(report["per_class"] as? [[String: Any]])
        for c in 0..<3 {
            let union = confusion[c].reduce(0, +) + confusion.map { $0[c] }.reduce(0, +) - confusion[c][c]
            guard union > 0 else { continue }
            let iou = try XCTUnwrap(perClass[c]["iou"] as? Double)
            XCTAssertEqual(iou, Double(confusion[c][c]) / Double(union), accuracy: 1e-12, "class \(c)")
        }
    }

    /// The segmentation recipe starts the item classes' scores from the classifier behind the
    /// backbone where its classes are the dataset's (logged); start_scores=false leaves them fresh.
    func testSegmenterStartsItsScoresFromTheClassifier() throws {
        let scratch = Scratch()
        let classes = scratch.file("classes.h5")
        try writeDataset(classes)  // classes a, b, c
        let classifier = try percept(["classify", "train", "--data", classes, "--epochs", "1", "--batch", "3", "--set", "widths=[2,2,2]",
                                      "-o", scratch.file("classifier.h5")])
        XCTAssertEqual(classifier.status, 0, classifier.standardError)
        let data = scratch.file("masks.h5")
        let writer = try DatasetWriter(path: data, task: .segmentation, channels: 1, height: 8, width: 8, source: "test")
        for index in 0..<4 {
            try writer.append(image: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 * 5 + index * 30) % 256) }),
                              mask: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 / 8 + index) % 4) }))
        }
        try writer.finish(classNames: ["background", "a", "b", "c"])
        let train = ["segment", "train", "--data", data, "--epochs", "1", "--batch", "2", "--set", "weights=" + scratch.file("classifier.h5")]
        let started = try percept(train + ["-o", scratch.file("s.h5")])
        XCTAssertEqual(started.status, 0, started.standardError)
        XCTAssertTrue(started.standardError.contains("class scores from \(scratch.file("classifier.h5"))'s output layer"), started.standardError)
        let fresh = try percept(train + ["--set", "start_scores=false", "-o", scratch.file("f.h5")])
        XCTAssertEqual(fresh.status, 0, fresh.standardError)
        XCTAssertFalse(fresh.standardError.contains("class scores from"), fresh.standardError)
        // A resumed run may repeat its command line, but not change it.
        let resumed = try percept(train + ["--resume", scratch.file("s.last.h5"), "--set", "start_scores=false", "-o", scratch.file("r.h5")])
        XCTAssertNotEqual(resumed.status, 0)
        XCTAssertTrue(resumed.standardError.contains("head.start_scores: true stored, false given"), resumed.standardError)
        // A finished run has nothing to resume and says so, writing nothing; more epochs extend it.
        let finished = try percept(train + ["--resume", scratch.file("s.last.h5"), "-o", scratch.file("s.h5")])
        XCTAssertEqual(finished.status, 1)
        XCTAssertEqual(finished.errorLines, ["error: \(scratch.file("s.last.h5")): finished its 1 epochs: nothing to train; give more epochs (--epochs 11, say) to extend it"])
        XCTAssertFalse(finished.standardError.contains("wrote"), finished.standardError)
        let extended = try percept(["segment", "train", "--data", data, "--epochs", "2", "--batch", "2", "--set", "weights=" + scratch.file("classifier.h5"),
                                    "--resume", scratch.file("s.last.h5"), "-o", scratch.file("s.h5")])
        XCTAssertEqual(extended.status, 0, extended.standardError)
        XCTAssertTrue(extended.standardError.contains("resuming from") && extended.standardError.contains("epoch 2/2 done"), extended.standardError)
    }

    /// `backbone.weights` starts a segmenter from a classifier's backbone and normalisation;
    /// files that do not fit are refused before training, and `none` trains from scratch.
    func testSegmenterTrainsFromAClassifiersBackbone() throws {
        let scratch = Scratch()
        try writeModel(scratch.file("classifier.h5"), task: .classification)
        let data = scratch.file("masks.h5")
        let writer = try DatasetWriter(path: data, task: .segmentation, channels: 1, height: 8, width: 8, source: "test")
        // Not the eval test's pixels: those average exactly 0.5, the classifier's mean, which the
        // from-scratch run below must be seen not to use.
        for index in 0..<4 {
            try writer.append(image: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 * 7 + index * 50) % 256) }),
                              mask: Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 / 8 + index) % 3) }))
        }
        try writer.finish(classNames: ["background", "a", "b"])
        let train = ["segment", "train", "--data", data, "--epochs", "1", "--batch", "2"]

        let weights = "weights=" + scratch.file("classifier.h5")
        let started = try percept(train + ["--set", weights, "-o", scratch.file("s.h5")])
        XCTAssertEqual(started.status, 0, started.standardError)
        XCTAssertTrue(started.standardError.contains("backbone from \(scratch.file("classifier.h5"))"), started.standardError)
        let (segmenter, _) = try Model<SegmentationHead>.load(path: scratch.file("s.h5"))
        // The classifier's backbone (plain, width 2) and normalisation, not the recipe's or the data's.
        XCTAssertEqual(segmenter.configuration.backbone, BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [2]))
        XCTAssertEqual([segmenter.configuration.mean, segmenter.configuration.std], [[0.5], [0.25]])
        // The stored configuration says which backbone was built, so it repeats the run.
        let stored = try TrainingRun<SegmentationConfig>.storedConfig(in: scratch.file("s.h5"))
        XCTAssertEqual([stored.backbone.preset.rawValue, "\(stored.backbone.widths)"], ["plain", "[2]"])

        // backbone_lr_scale 0 trains the head alone: the backbone's weights stay the classifier's.
        // (This run also pastes every canvas, which segmentation takes and logs.)
        let frozen = try percept(train + ["--set", weights, "--set", "backbone_lr_scale=0", "--set", "paste=1", "-o", scratch.file("f.h5")])
        XCTAssertEqual(frozen.status, 0, frozen.standardError)
        XCTAssertTrue(frozen.standardError.contains("(backbone x0.0)"), frozen.standardError)
        XCTAssertTrue(frozen.standardError.contains("augment on + pasting 1.0"), frozen.standardError)
        let (classifier, trained, headOnly) = (try ModelCheckpoint.read(path: scratch.file("classifier.h5")),
                                               try ModelCheckpoint.read(path: scratch.file("s.h5")),
                                               try ModelCheckpoint.read(path: scratch.file("f.h5")))
        let backboneKeys = classifier.parameters.keys.filter { $0.hasPrefix("backbone.") }
        XCTAssertFalse(backboneKeys.isEmpty)
        for key in backboneKeys {
            XCTAssertEqual(headOnly.parameters[key]?.scalars, classifier.parameters[key]!.scalars, key)
        }
        XCTAssertTrue(backboneKeys.contains { trained.parameters[$0]?.scalars != classifier.parameters[$0]!.scalars },
                      "the default run did not train the backbone either")
        XCTAssertNotEqual(headOnly.parameters["head.classifier.weight"]?.scalars, trained.parameters["head.classifier.weight"]?.scalars)

        let scratchRun = try percept(train + ["--set", "weights=none", "--set", "preset=plain", "--set", "widths=[3,3]", "-o", scratch.file("n.h5")])
        XCTAssertEqual(scratchRun.status, 0, scratchRun.standardError)
        XCTAssertFalse(scratchRun.standardError.contains("backbone from"), scratchRun.standardError)
        XCTAssertNotEqual(try Model<SegmentationHead>.load(path: scratch.file("n.h5")).0.configuration.mean, [0.5])

        for (flags, text) in [(["--set", weights, "--set", "preset=plain", "--set", "widths=[2,4]"], "neither equals nor extends"),
                              (["--set", "weights=" + data], "masks.h5"),
                              (["--set", "weights=" + scratch.file("missing.h5")], "missing.h5")] {
            let refused = try percept(train + flags + ["-o", scratch.file("r.h5")])
            XCTAssertEqual(refused.status, 1, "\(flags): \(refused.standardError)")
            XCTAssertEqual(refused.errorLines.count, 1, refused.standardError)
            XCTAssertTrue(refused.errorLines.first?.contains(text) == true, "\(flags): \(refused.standardError)")
            XCTAssertFalse(refused.standardError.contains("epoch 1/1"), "trained before refusing: \(refused.standardError)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("r.h5")))
        }
        for (assignment, message) in [("backbone_lr_scale=-1", "backbone_lr_scale must be 0 to 10"), ("erase=1.5", "erase must be a probability"),
                                      ("paste=2", "paste must be a probability"), ("classifier_kernel=2", "classifier_kernel must be 1, 3, 5 or 7"),
                                      ("hidden_width=96", "unknown key 'hidden_width'"), ("lovasz=1", "unknown key 'lovasz'"),
                                      ("class_weights=[1,2]", "class_weights gives 2 weights")] {
            let refused = try percept(train + ["--set", assignment, "-o", scratch.file("r.h5")])
            XCTAssertEqual(refused.status, 1, assignment)
            XCTAssertEqual(refused.errorLines.count, 1, refused.standardError)
            XCTAssertTrue(refused.standardError.contains(message), "\(assignment): \(refused.standardError)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("r.h5")))
        }
        // Random erasing is a training option: logged, and kept in the checkpoint for --resume.
        let erased = try percept(train + ["--set", "weights=none", "--set", "preset=plain", "--set", "widths=[3,3]", "--set", "erase=0.5",
                                          "-o", scratch.file("e.h5")])
        XCTAssertEqual(erased.status, 0, erased.standardError)
        // The segmentation recipe pastes items with probability 0.5 unless told otherwise.
        XCTAssertTrue(erased.standardError.contains("augment on + erasing 0.5 + pasting 0.5"), erased.standardError)
        let options = try XCTUnwrap(ModelCheckpoint.read(path: scratch.file("e.last.h5")).metadata["training_options"])
        XCTAssertTrue(options.contains("\"erase\":0.5"), options)
        // A resumed run keeps the weights it has.
        let resumed = try percept(train + ["--resume", scratch.file("s.last.h5"), "--set", "weights=none", "-o", scratch.file("s.h5")])
        XCTAssertEqual(resumed.status, 1, resumed.standardError)
        XCTAssertTrue(resumed.errorLines.first?.contains("backbone.weights") == true, resumed.standardError)
    }

    /// `tag predict` writes tags that `convert tags` reads back, names with spaces included
    /// (the shipped tagger's "Ankle boot").
    func testTagPredictionsReadBackWithSpacesInNames() throws {
        let scratch = Scratch()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let images = scratch.file("canvases")
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        // A canvas with an ankle boot, among the samples.
        let sample = root.appendingPathComponent("samples/canvases/03-t-shirt-top+coat.png").path
        try FileManager.default.copyItem(atPath: sample, toPath: images + "/a.png")
        let predicted = try percept(["tag", "predict", "--model", root.appendingPathComponent("models/fashion-tagger.h5").path,
                                     images, "-o", scratch.file("tags.csv")])
        XCTAssertEqual(predicted.status, 0, predicted.standardError)
        // Rewrite the row so that it names "Ankle boot" beside what was predicted.
        let csv = try String(contentsOfFile: scratch.file("tags.csv"), encoding: .utf8)
        let row = try XCTUnwrap(csv.split(separator: "\n").dropFirst().first)
        let tags = row.split(separator: ",", maxSplits: 1)[1]
        let names = tags.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } + ["Ankle boot"]
        try ("image,tags\na.png," + names.joined(separator: ";") + "\n").write(toFile: scratch.file("edited.csv"), atomically: true, encoding: .utf8)
        let converted = try percept(["convert", "tags", "--images", images, "--csv", scratch.file("edited.csv"), "-o", scratch.file("tags.h5")])
        XCTAssertEqual(converted.status, 0, converted.standardError)
        XCTAssertTrue(try TaggingDataset(path: scratch.file("tags.h5")).classNames.contains("Ankle boot"))
        XCTAssertTrue(csv.contains(";") || names.count == 1, "predictions separate tags with ';': \(csv)")
    }

    func testComposeWritesADatasetAndReportsBadInputOnOneLine() throws {
        let scratch = Scratch()
        try writeDataset(scratch.file("items.h5"))
        let output = scratch.file("canvases.h5")
        let result = try percept(["compose", "detection", "--from", scratch.file("items.h5"), "-o", output, "--count", "5",
                                  "--size", "20x16", "--seed", "4", "--quiet"])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardOutput.contains("detection, 5 images of 1x16x20"), result.standardOutput)
        let dataset = try DetectionDataset(path: output)
        XCTAssertEqual(dataset.count, 5)
        XCTAssertTrue(dataset.source.contains("seed 4"), dataset.source)
        // Detection's standard scenes: repeated classes, scale 1-2, placement squares within IoU 0.1.
        for part in ["independently drawn classes", "scale 1.0-2.0", "max IoU 0.1 of placement boxes"] {
            XCTAssertTrue(dataset.source.contains(part), "detection defaults: \(dataset.source)")
        }
        // Segmentation's: 64x64, items at their own size, visible boxes within IoU 0.2.
        let segmentation = scratch.file("segmentation.h5")
        let composedMasks = try percept(["compose", "segmentation", "--from", scratch.file("items.h5"), "-o", segmentation,
                                         "--count", "2", "--quiet"])
        XCTAssertEqual(composedMasks.status, 0, composedMasks.standardError)
        let masks = try SegmentationDataset(path: segmentation)
        XCTAssertEqual([masks.width, masks.height], [64, 64])
        for part in ["independently drawn classes", "scale 1.0-1.0", "max IoU 0.2 of visible boxes"] {
            XCTAssertTrue(masks.source.contains(part), "segmentation defaults: \(masks.source)")
        }

        // Tagging lets visible boxes overlap by IoU 0.2, as the tagging issue describes its canvases.
        for (extra, limit) in [([String](), "0.2"), (["--max-overlap", "0.5"], "0.5")] {
            let tags = scratch.file("tags-\(limit).h5")
            let composed = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", tags, "--count", "3", "--quiet"] + extra)
            XCTAssertEqual(composed.status, 0, composed.standardError)
            let source = try TaggingDataset(path: tags).source
            XCTAssertTrue(source.contains("items of distinct classes") && source.contains("max IoU \(limit) of visible boxes"), "\(extra): \(source)")
        }

        // The details other generators do differently are recorded with the file.
        let foreign = scratch.file("foreign.h5")
        let composedForeign = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", foreign, "--count", "2",
                                           "--noise-distribution", "uniform", "--resample", "bilinear-corners",
                                           "--overlap-rule", "later", "--quiet"])
        XCTAssertEqual(composedForeign.status, 0, composedForeign.standardError)
        let foreignSource = try TaggingDataset(path: foreign).source
        for part in ["(bilinear-corners)", "uniform noise 0.05", "later item shown"] {
            XCTAssertTrue(foreignSource.contains(part), foreignSource)
        }
        let badFilter = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", scratch.file("bad.h5"),
                                     "--resample", "lanczos"])
        XCTAssertNotEqual(badFilter.status, 0)
        XCTAssertTrue(badFilter.standardError.contains("lanczos"), badFilter.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("bad.h5")))

        let exists = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", output, "--count", "5"])
        XCTAssertEqual(exists.status, 1)
        XCTAssertEqual(exists.errorLines.count, 1, exists.standardError)
        XCTAssertTrue(exists.errorLines.first?.contains("canvases.h5") == true, exists.standardError)

        let missing = try percept(["compose", "tagging", "--from", scratch.file("none.h5"), "-o", scratch.file("new.h5")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.errorLines.count, 1, missing.standardError)
        XCTAssertTrue(missing.errorLines.first?.contains("none.h5") == true, missing.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("new.h5")))

        let badOption = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", scratch.file("new.h5"),
                                     "--min-items", "3", "--max-items", "2"])
        XCTAssertNotEqual(badOption.status, 0)
        XCTAssertTrue(badOption.standardError.contains("--max-items"), badOption.standardError)
    }

    /// The first-class flags are keys of the configuration: they show in the log line and in
    /// the stored configuration, and a --set of the same key to another value is refused.
    func testFlagsAreConfigurationKeys() throws {
        let scratch = Scratch()
        try writeDataset(scratch.file("items.h5"))
        let canvases = scratch.file("canvases.h5")
        let composed = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", canvases, "--count", "8",
                                    "--size", "16x16", "--seed", "1", "--quiet"])
        XCTAssertEqual(composed.status, 0, composed.standardError)
        let sgd = try percept(["tag", "train", "--data", canvases, "--epochs", "1", "-o", scratch.file("sgd.h5")])
        XCTAssertEqual(sgd.status, 0, sgd.standardError)
        XCTAssertTrue(sgd.standardError.contains("sgd lr 0.2,"), sgd.standardError)
        let adam = try percept(["tag", "train", "--data", canvases, "--epochs", "1", "--set", "optimizer=adam", "--lr", "0.002",
                                "-o", scratch.file("adam.h5")])
        XCTAssertEqual(adam.status, 0, adam.standardError)
        XCTAssertTrue(adam.standardError.contains("adam lr 0.002,"), adam.standardError)
        let stored = try TrainingRun<TaggingConfig>.storedConfig(in: scratch.file("adam.h5"))
        XCTAssertEqual([stored.train.learningRate], [0.002])
        XCTAssertEqual(stored.train.optimizer, .adam)
        let clash = try percept(["tag", "train", "--data", canvases, "--lr", "0.1", "--set", "lr=0.2", "-o", scratch.file("x.h5")])
        XCTAssertEqual(clash.status, 1)
        XCTAssertEqual(clash.errorLines, ["error: --set lr and --lr both set train.lr, to different values; give one"])
    }

    /// `TASK train --show-config` prints the library's defaults (the typed configuration's), and
    /// what it prints, fed back with `--config`, resolves to the same configuration.
    func checkShowConfig<C: TaskConfig>(_ task: String, _ type: C.Type) throws {
        let shown = try percept([task, "train", "--show-config"])
        XCTAssertEqual(shown.status, 0, shown.standardError)
        XCTAssertEqual(shown.standardOutput, C().yaml(), task)
        let scratch = Scratch()
        try shown.standardOutput.write(toFile: scratch.file("args.yaml"), atomically: true, encoding: .utf8)
        let again = try percept([task, "train", "--config", scratch.file("args.yaml"), "--show-config"])
        XCTAssertEqual(again.standardOutput, shown.standardOutput, task)
        let changed = try percept([task, "train", "--config", scratch.file("args.yaml"), "--epochs", "3", "--set", "weight_decay=0.001", "--show-config"])
        XCTAssertEqual(changed.status, 0, changed.standardError)
        var expected = C()
        expected.train.epochs = 3
        expected.train.weightDecay = 0.001
        XCTAssertEqual(changed.standardOutput, expected.yaml(), task)
    }

    func testClassifyShowConfigIsTheLibraryDefault() throws { try checkShowConfig("classify", ClassificationConfig.self) }
    func testTagShowConfigIsTheLibraryDefault() throws { try checkShowConfig("tag", TaggingConfig.self) }
    func testDetectShowConfigIsTheLibraryDefault() throws { try checkShowConfig("detect", DetectionConfig.self) }
    func testSegmentShowConfigIsTheLibraryDefault() throws { try checkShowConfig("segment", SegmentationConfig.self) }

    /// eval and predict start from the model's stored settings; `--set` changes them for the
    /// run, `--show-config` prints them, and `inspect` shows what the file stores, as YAML.
    func testPredictSettingsComeFromTheModelAndTheCommandLine() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let tagger = root.appendingPathComponent("models/fashion-tagger.h5").path
        let canvases = root.appendingPathComponent("samples/canvases").path
        let shown = try percept(["tag", "predict", "--model", tagger, "--show-config"])
        XCTAssertEqual(shown.status, 0, shown.standardError)
        XCTAssertTrue(shown.standardOutput.hasPrefix("settings:\n  thresholds: [0.339"), shown.standardOutput)
        let stored = try percept(["tag", "predict", "--model", tagger, canvases])
        XCTAssertEqual(stored.status, 0, stored.standardError)
        XCTAssertTrue(stored.standardOutput.contains("00-trouser+coat.png,Trouser;Coat"), stored.standardOutput)
        // One threshold for every tag: at 1 only probabilities that round to 1 in float pass, far
        // fewer tags than the tuned thresholds give (12 on the 8 canvases).
        func tagCount(_ output: String) -> Int {
            output.split(separator: "\n").dropFirst().map { $0.split(separator: ",").dropFirst().joined().split(separator: ";").count }.reduce(0, +)
        }
        let strict = try percept(["tag", "predict", "--model", tagger, canvases, "--set", "thresholds=1"])
        XCTAssertEqual(strict.status, 0, strict.standardError)
        XCTAssertLessThanOrEqual(tagCount(strict.standardOutput), 2, strict.standardOutput)
        XCTAssertGreaterThanOrEqual(tagCount(stored.standardOutput), 10, stored.standardOutput)
        let wrong = try percept(["tag", "predict", "--model", tagger, canvases, "--set", "thresholds=[0.5, 0.5]"])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertEqual(wrong.errorLines.count, 1, wrong.standardError)
        XCTAssertTrue(wrong.standardError.contains("2 tag thresholds for a head with 10 tags"), wrong.standardError)
        let unknown = try percept(["tag", "predict", "--model", tagger, canvases, "--set", "nms_iou=0.5"])
        XCTAssertEqual(unknown.errorLines, ["error: --set nms_iou: unknown key 'nms_iou'; valid keys: settings.thresholds"])

        let detector = root.appendingPathComponent("models/fashion-detector.h5").path
        let settings = try percept(["detect", "eval", "--model", detector, "--set", "nms_iou=0.3", "--show-config"])
        XCTAssertEqual(settings.status, 0, settings.standardError)
        XCTAssertTrue(settings.standardOutput.contains("  nms_iou: 0.3\n") && settings.standardOutput.contains("  refinements: 10\n"),
                      settings.standardOutput)
        let inspected = try percept(["inspect", detector])
        XCTAssertEqual(inspected.status, 0, inspected.standardError)
        for line in ["  model (architecture and settings, as stored):", "    nms_iou: 0.4", "    window: 28", "    refinements: 10"] {
            XCTAssertTrue(inspected.standardOutput.contains(line + "\n"), "inspect lacks \(line):\n\(inspected.standardOutput)")
        }
    }

    /// A bad file among the inputs stops predict with no output at all (no first masks, no
    /// drawings); `--skip-bad` leaves it out with a warning and writes the rest. Other files in
    /// an input folder are counted in a note. JPEG inputs work like PNG ones.
    func testABadInputLeavesNoPartialOutputUnlessSkipped() throws {
        let scratch = Scratch()
        try writeSegmenter(scratch.file("segmenter.h5"))
        let input = scratch.file("in")
        try FileManager.default.createDirectory(atPath: input, withIntermediateDirectories: true)
        try PNG.write(Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8($0 * 4) }), to: input + "/a.png")
        let jpeg = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Inputs/jpeg/rgb-420.jpg")
        try FileManager.default.copyItem(atPath: jpeg.path, toPath: input + "/b.jpg")
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: input + "/c.png"))
        try PNG.write(Image(width: 8, height: 8, channels: 1), to: input + "/d.png")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: input + "/readme.txt"))
        let arguments = ["segment", "predict", "--model", scratch.file("segmenter.h5"), input, "-o", scratch.file("masks"),
                         "--overlay", scratch.file("overlays")]
        let stopped = try percept(arguments)
        XCTAssertEqual(stopped.status, 1)
        XCTAssertEqual(stopped.errorLines, ["error: \(input)/c.png: not a PNG or JPEG image"])
        XCTAssertTrue(stopped.standardError.contains("note: \(input): skipped 1 file that are not PNG or JPEG images"), stopped.standardError)
        for folder in ["masks", "overlays"] {
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.file(folder)), [], "\(folder) after a stopped run")
        }
        let skipping = try percept(arguments + ["--skip-bad"])
        XCTAssertEqual(skipping.status, 0, skipping.standardError)
        XCTAssertTrue(skipping.standardError.contains("warning: \(input)/c.png: not a PNG or JPEG image (skipped)"), skipping.standardError)
        XCTAssertTrue(skipping.standardError.contains("warning: skipped 1 of 4 images that could not be read"), skipping.standardError)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.file("masks")).sorted(), ["a.png", "b.png", "d.png"])
        // The JPEG's mask is at the JPEG's own size.
        let mask = try PNG.readIndexMask(path: scratch.file("masks/b.png"))
        XCTAssertEqual([mask.width, mask.height], [37, 23])

        try writeModel(scratch.file("classifier.h5"), task: .classification)
        let classified = try percept(["classify", "predict", "--model", scratch.file("classifier.h5"), input, "--skip-bad"])
        XCTAssertEqual(classified.status, 0, classified.standardError)
        XCTAssertEqual(classified.standardOutput.split(separator: "\n").map { String($0.split(separator: ",")[0]) },
                       ["image", input + "/a.png", input + "/b.jpg", input + "/d.png"])
    }

    /// Detections are clipped to the image, and a stopped run leaves no drawings.
    func testDetectionsStayInsideTheImageAndDrawingsAreAllOrNothing() throws {
        let scratch = Scratch()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        // A 64 x 48 corner of a sample scene: items cut by the border.
        let scene = try PNG.read(path: root.appendingPathComponent("samples/scenes/04.png").path, channels: 1)
        let corner = Image(width: 64, height: 48, channels: 1, pixels: (0..<(64 * 48)).map { scene.pixels[($0 / 64 + 40) * 160 + $0 % 64 + 96] })
        try FileManager.default.createDirectory(atPath: scratch.file("in"), withIntermediateDirectories: true)
        try PNG.write(corner, to: scratch.file("in/corner.png"))
        let detector = root.appendingPathComponent("models/fashion-detector.h5").path
        let result = try percept(["detect", "predict", "--model", detector, scratch.file("in/corner.png"), "-o", scratch.file("d.json"),
                                  "--set", "refinements=1"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let detections = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: scratch.file("d.json")))) as? [[String: Any]])
        XCTAssertFalse(detections.isEmpty)
        for detection in detections {
            let b = try XCTUnwrap(detection["bbox"] as? [Double])
            XCTAssertTrue(b[0] >= 0 && b[1] >= 0 && b[0] + b[2] <= 64 + 1e-3 && b[1] + b[3] <= 48 + 1e-3 && b[2] > 0 && b[3] > 0, "\(b)")
        }
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 0, 2]).write(to: URL(fileURLWithPath: scratch.file("in/z.jpg")))
        let stopped = try percept(["detect", "predict", "--model", detector, scratch.file("in"), "-o", scratch.file("e.json"),
                                   "--draw", scratch.file("drawn"), "--set", "refinements=0"])
        XCTAssertEqual(stopped.status, 1)
        XCTAssertEqual(stopped.errorLines.count, 1, stopped.standardError)
        XCTAssertTrue(stopped.errorLines[0].contains("z.jpg"), stopped.standardError)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.file("drawn")), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("e.json")))
    }

    /// A small RGB ImageFolder of JPEGs of mixed sizes (a CMYK one, a nested folder among them)
    /// converts with --size and trains a classifier that clearly beats chance, end to end
    /// through the command line; the validation folder takes the training set's classes.
    func testAJPEGImageFolderTrainsAClassifier() throws {
        let scratch = Scratch()
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Inputs/jpeg-folder").path
        for split in ["train", "val"] {
            let converted = try percept(["convert", "folder", folder + "/" + split, "--size", "16x16", "--classes", "red,green,blue",
                                         "-o", scratch.file(split + ".h5"), "--quiet"])
            XCTAssertEqual(converted.status, 0, converted.standardError)
            XCTAssertTrue(converted.standardOutput.contains(split == "train" ? "48 images" : "18 images"), converted.standardOutput)
        }
        let trained = try percept(["classify", "train", "--data", scratch.file("train.h5"), "--val", scratch.file("val.h5"),
                                   "--set", "preset=plain", "--set", "widths=[8,16]", "--epochs", "12", "--batch", "8", "--lr", "0.05",
                                   "-o", scratch.file("colours.h5")])
        XCTAssertEqual(trained.status, 0, trained.standardError)
        let evaluated = try percept(["classify", "eval", "--model", scratch.file("colours.h5"), "--data", scratch.file("val.h5"), "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.standardError)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(evaluated.standardOutput.utf8)) as? [String: Any])
        // Three classes: chance is 1/3.
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(report["accuracy"] as? Double), 0.8, trained.standardError)
        // JPEG prediction with the same colour rule; letterboxing is offered as in convert.
        let predicted = try percept(["classify", "predict", "--model", scratch.file("colours.h5"), folder + "/val/blue", "--letterbox"])
        XCTAssertEqual(predicted.status, 0, predicted.standardError)
        XCTAssertEqual(predicted.standardOutput.split(separator: "\n").count, 7)
    }

    /// A long predict run reports images done of total, images/s and ETA on stderr (plain lines
    /// when stderr is no terminal); here from the start, as PERCEPT_PROGRESS_SECONDS says.
    func testPredictShowsProgress() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let scratch = Scratch()
        let result = try runExecutable(try perceptExecutable(), ["classify", "predict", "--model", root.appendingPathComponent("models/fashion-classifier.h5").path,
                                                                 root.appendingPathComponent("samples/fashion").path, "-o", scratch.file("p.csv")],
                                       environment: ["PERCEPT_PROGRESS_SECONDS": "0"])
        XCTAssertEqual(result.status, 0, result.standardError)
        let lines = result.standardError.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("20/20 images  ") && $0.contains(" images/s  ETA 0s") }, result.standardError)
        XCTAssertFalse(result.standardError.contains("\r"), "no redrawn line when stderr is not a terminal")
    }
}

/// `percept export` refuses what it cannot write well, before it writes anything.
final class ExportCLITests: XCTestCase {
    func testExportWritesOnlyOnnxFilesAndNeverReplacesOneWithoutForce() throws {
        let scratch = Scratch()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let model = root.appendingPathComponent("models/fashion-classifier.h5").path
        let wrongSuffix = try percept(["export", "--model", model, "-o", scratch.file("model.h5")])
        XCTAssertNotEqual(wrongSuffix.status, 0)
        XCTAssertTrue(wrongSuffix.standardError.contains(".onnx"), wrongSuffix.standardError)

        let output = scratch.file("model.onnx")
        let first = try percept(["export", "--model", model, "-o", output])
        XCTAssertEqual(first.status, 0, first.standardError)
        let written = try Data(contentsOf: URL(fileURLWithPath: output))
        XCTAssertGreaterThan(written.count, 1000)
        let again = try percept(["export", "--model", model, "-o", output])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertEqual(again.errorLines.count, 1, again.standardError)
        XCTAssertTrue(again.errorLines[0].contains(output) && again.errorLines[0].contains("--force"), again.errorLines[0])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: output)), written)

        let notAModel = scratch.file("notes.h5")
        try Data("not HDF5".utf8).write(to: URL(fileURLWithPath: notAModel))
        let bad = try percept(["export", "--model", notAModel, "-o", scratch.file("bad.onnx")])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.errorLines.count, 1, bad.standardError)
        XCTAssertTrue(bad.errorLines[0].contains(notAModel), bad.errorLines[0])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("bad.onnx")))
    }
}

/// A multi-task model file serves every command that takes a model of one of its heads.
final class MultiTaskFileCLITests: XCTestCase {
    func testTaskCommandsTakeTheirHeadOfAMultiTaskFile() throws {
        let scratch = Scratch()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let detector = root.appendingPathComponent("models/fashion-detector.h5").path
        let (model, _) = try MultiTaskModel.load(path: detector)
        let multi = scratch.file("multi.h5")
        try model.save(to: multi)
        let scene = root.appendingPathComponent("samples/scenes/00.png").path
        var outputs: [String] = []
        for file in [detector, multi] {
            let output = scratch.file("\(outputs.count).json")
            let result = try percept(["detect", "predict", "--model", file, scene, "-o", output, "--set", "refinements=1"])
            XCTAssertEqual(result.status, 0, result.standardError)
            outputs.append(try String(contentsOfFile: output, encoding: .utf8))
        }
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertTrue(outputs[0].contains("\"bbox\""), outputs[0])

        let inspected = try percept(["inspect", multi])
        XCTAssertEqual(inspected.status, 0, inspected.standardError)
        XCTAssertTrue(inspected.standardOutput.contains("task multi") && inspected.standardOutput.contains("detection.output.weight"),
                      inspected.standardOutput)

        let classify = try percept(["classify", "predict", "--model", multi, scene])
        XCTAssertNotEqual(classify.status, 0)
        XCTAssertEqual(classify.errorLines.count, 1, classify.standardError)
        XCTAssertTrue(classify.errorLines[0].contains(multi) && classify.errorLines[0].contains("detection"), classify.errorLines[0])

        // It exports as a multi-task graph: outputs named after the head's task.
        let export = try percept(["export", "--model", multi, "-o", scratch.file("multi.onnx")])
        XCTAssertEqual(export.status, 0, export.standardError)
        let graph = try Data(contentsOf: URL(fileURLWithPath: scratch.file("multi.onnx")))
        XCTAssertNotNil(graph.range(of: Data("detection_scores".utf8)))
        XCTAssertNotNil(graph.range(of: Data("detection_deltas".utf8)))
    }

    /// `multi train` on two tasks, then `multi predict` with every output it writes.
    func testMultiTrainAndPredictWriteWhatTheySay() throws {
        let scratch = Scratch()
        try writeDataset(scratch.file("classes.h5"))
        let masks = try DatasetWriter(path: scratch.file("masks.h5"), task: .segmentation, channels: 1, height: 8, width: 8, source: "test")
        for index in 0..<6 {
            let pixels = (0..<64).map { UInt8(($0 * 5 + index * 30) % 256) }
            try masks.append(image: Image(width: 8, height: 8, channels: 1, pixels: pixels),
                             mask: Image(width: 8, height: 8, channels: 1, pixels: pixels.map { $0 > 128 ? 1 : 0 }))
        }
        try masks.finish(classNames: ["background", "bright"])
        let project = scratch.file("runs")
        let train = try percept(["multi", "train", "--classify", scratch.file("classes.h5"), "--segment", scratch.file("masks.h5"),
                                 "--val-segment", scratch.file("masks.h5"), "-o", scratch.file("multi.h5"), "--epochs", "1",
                                 "--set", "backbone.weights=none", "--set", "backbone.widths=[4,8,8]", "--project", project, "--name", "run"])
        XCTAssertEqual(train.status, 0, train.standardError)
        XCTAssertTrue(train.standardError.contains("(classify "), train.standardError)
        for file in ["multi.h5", "multi.last.h5", "runs/multi/run/results.csv", "runs/multi/run/args.yaml",
                     "runs/multi/run/weights/best.h5", "runs/multi/run/segment/plots.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.file(file)), "\(file) missing")
        }
        let results = try String(contentsOfFile: scratch.file("runs/multi/run/results.csv"), encoding: .utf8)
        XCTAssertTrue(results.hasPrefix("epoch,time,lr,train/loss,val/score,val/segment/"), results)
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.file("runs/multi/run/segment/val_predictions.png")))
        let plotted = try percept(["plot", scratch.file("runs/multi/run")])
        XCTAssertEqual(plotted.status, 0, plotted.standardError)
        XCTAssertTrue(plotted.standardError.contains("results.svg"), plotted.standardError)

        try PNG.write(Image(width: 12, height: 10, channels: 1, pixels: (0..<120).map { UInt8($0 * 2) }), to: scratch.file("a.png"))
        try PNG.write(Image(width: 8, height: 8, channels: 3, pixels: (0..<192).map { UInt8($0) }), to: scratch.file("b.png"))
        let arguments = ["multi", "predict", "--model", scratch.file("multi.h5"), scratch.file("a.png"), scratch.file("b.png"),
                         "-o", scratch.file("out"), "--draw", scratch.file("pictures")]
        let predict = try percept(arguments)
        XCTAssertEqual(predict.status, 0, predict.standardError)
        let classes = try String(contentsOfFile: scratch.file("out/classes.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(classes.count, 3)
        XCTAssertEqual(classes[0], "image,label,score")
        for name in ["out/masks/a.png", "out/masks/b.png", "pictures/a.png", "pictures/b.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.file(name)), "\(name) missing")
        }
        // Masks are at each image's own size.
        let mask = try ImageFile.read(path: scratch.file("out/masks/a.png"))
        XCTAssertEqual([mask.width, mask.height], [12, 10])
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("out/tags.csv")), "a model without a tagger writes no tags.csv")
        // Outputs are not replaced without --force; a head the model lacks is named before any work.
        let again = try percept(arguments)
        XCTAssertEqual(again.status, 1)
        XCTAssertEqual(again.errorLines.count, 1, again.standardError)
        XCTAssertTrue(again.errorLines[0].contains("--force"), again.errorLines[0])
        let missing = try percept(["multi", "predict", "--model", scratch.file("multi.h5"), scratch.file("a.png"), "-o", scratch.file("other"),
                                   "--heads", "classify,detect"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.errorLines.first?.contains("no detect head") ?? false, missing.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("other/classes.csv")))
        let frozen = try percept(["multi", "train", "--segment", scratch.file("masks.h5"), "--freeze-backbone", "-o", scratch.file("x.h5")])
        XCTAssertNotEqual(frozen.status, 0)
        XCTAssertTrue(frozen.standardError.contains("--from"), frozen.standardError)
    }

    func testMultiEvalReportsEachHeadAsItsSingleTaskEvalDoes() throws {
        let scratch = Scratch()
        try writeModel(scratch.file("classifier.h5"), task: .classification)
        try writeDataset(scratch.file("data.h5"))
        let (model, _) = try MultiTaskModel.load(path: scratch.file("classifier.h5"))
        try model.save(to: scratch.file("multi.h5"))

        let single = try percept(["classify", "eval", "--model", scratch.file("classifier.h5"), "--data", scratch.file("data.h5"), "--json"])
        XCTAssertEqual(single.status, 0, single.standardError)
        let joint = try percept(["multi", "eval", "--model", scratch.file("multi.h5"), "--classify", scratch.file("data.h5"), "--json"])
        XCTAssertEqual(joint.status, 0, joint.standardError)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(joint.standardOutput.utf8)) as? [String: Any])
        let expected = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(single.standardOutput.utf8)) as? NSDictionary)
        XCTAssertEqual(object.keys.sorted(), ["classification"])
        XCTAssertEqual(object["classification"] as? NSDictionary, expected)

        let table = try percept(["multi", "eval", "--model", scratch.file("multi.h5"), "--classify", scratch.file("data.h5")])
        XCTAssertEqual(table.status, 0, table.standardError)
        XCTAssertTrue(table.standardOutput.hasPrefix("classification:\n"), table.standardOutput)

        // A head the file lacks is named before any work; so is a call without any test set.
        let missing = try percept(["multi", "eval", "--model", scratch.file("multi.h5"), "--classify", scratch.file("data.h5"),
                                   "--segment", scratch.file("data.h5")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.errorLines.count, 1, missing.standardError)
        XCTAssertTrue(missing.errorLines[0].contains("multi.h5") && missing.errorLines[0].contains("no segmentation head"), missing.errorLines[0])
        XCTAssertEqual(missing.standardOutput, "")
        let none = try percept(["multi", "eval", "--model", scratch.file("multi.h5")])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.standardError.contains("--classify"), none.standardError)
    }
}
