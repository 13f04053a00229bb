import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// A training run's folder: what each file holds, a resumed run's results equal to an
/// uninterrupted run's, early stopping, and the event file's records.
final class RunFolderTests: XCTestCase {
    /// A small classification run: plain backbone of widths 4 and 8, batch 16, the data as its
    /// own validation set; `stopAfter` steps it is interrupted (as Ctrl-C does).
    func run(_ folder: TemporaryFolder, name: String, epochs: Int = 3, patience: Int = 0, learningRate: Float = 0.05,
             stopAfter: Int? = nil, resume: String? = nil) throws -> RunFolder {
        var config = ClassificationConfig()
        config.backbone = BackboneOptions(preset: .plain, widths: [4, 8])
        config.train.epochs = epochs
        config.train.batchSize = 16
        config.train.learningRate = learningRate
        config.train.patience = patience
        config.train.augment = false
        config.train.erasing = 0
        let runFolder = try resume.map { RunFolder(path: (($0 as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent) }
            ?? RunFolder.create(project: folder.path, task: .classification, name: name)
        var run = TrainingRun(config, data: folder.file("data.h5"), validation: folder.file("data.h5"), output: nil, runFolder: runFolder)
        run.log = { _ in }
        var steps = 0
        if let stopAfter { run.shouldStop = { steps += 1; return steps > stopAfter } }
        try run.run(resume: resume)
        return runFolder
    }

    func testTheFolderHoldsArgsResultsWeightsEventsAndPlots() throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("data.h5"), count: 48, seed: 3)
        let run = try run(folder, name: "train")
        XCTAssertEqual(run.path, folder.file("classify/train"))
        XCTAssertEqual(try RunFolder.create(project: folder.path, task: .classification, name: nil).path, folder.file("classify/train2"))
        // args.yaml is the resolved configuration and reads back as it.
        let args = try String(contentsOfFile: run.argsPath, encoding: .utf8)
        XCTAssertEqual(try ClassificationConfig().reading(yaml: args, source: "args.yaml").yaml(), args)
        XCTAssertTrue(args.contains("  widths: [4, 8]\n"), args)
        // results.csv: a row per epoch with the task's validation metrics.
        let results = try ResultsLog.read(path: run.resultsPath, through: .max)
        XCTAssertEqual(results.columns, ["epoch", "time", "lr", "train/loss", "val/accuracy", "val/top_k_accuracy", "val/macro_f1"])
        XCTAssertEqual(results.values("epoch"), [1, 2, 3])
        XCTAssertTrue(zip(results.values("time"), results.values("time").dropFirst()).allSatisfy { $0 < $1 })
        XCTAssertTrue(results.values("val/accuracy").allSatisfy { (0...1).contains($0) })
        // The weights: the best model and the resumable checkpoint.
        let last = try ModelCheckpoint.read(path: run.lastPath)
        XCTAssertEqual(last.epoch, 3)
        XCTAssertNotNil(last.optimizer)
        let (best, _) = try Classifier.load(path: run.bestPath)
        // The plot data's confusion matrix is the best model's on the validation set.
        let data = try JSONDecoder().decode(PlotData.self, from: Data(contentsOf: URL(fileURLWithPath: run.plotDataPath)))
        let c = best.configuration
        let evaluation = try best.evaluate(DataLoader(ClassificationDataset(path: folder.file("data.h5")), batchSize: 64, shuffle: false,
                                                      mean: c.mean, std: c.std))
        XCTAssertEqual(data.confusion, evaluation.matrix)
        XCTAssertEqual(results.values("val/accuracy").max()!, evaluation["accuracy"]!, accuracy: 5e-7)
        // One event file whose records are whole and checksummed.
        XCTAssertEqual(run.eventFiles.count, 1)
        let records = try TensorBoardRecords.read(run.eventFiles[0])
        XCTAssertEqual(records.count, 4, "the file version, then an event per epoch")
        for name in ["results.svg", "confusion_matrix.svg", "confusion_matrix_normalized.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.path + "/" + name), name)
        }
    }

    /// Interrupted in its second epoch after a row past the checkpoint was written (as a kill
    /// between the two leaves it), the resumed run ends with the uninterrupted run's results.
    func testAResumedRunsResultsEqualAnUninterruptedRuns() throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("data.h5"), count: 48, seed: 3)
        let straight = try run(folder, name: "straight")
        XCTAssertThrowsError(try run(folder, name: "cut", stopAfter: 4)) { error in
            XCTAssertTrue(error is TrainingInterrupted, "\(error)")
            XCTAssertTrue("\(error)".contains("the last checkpoint is \(folder.file("classify/cut/weights/last.h5")) (after epoch 1)"), "\(error)")
        }
        let cut = RunFolder(path: folder.file("classify/cut"))
        XCTAssertEqual(try ModelCheckpoint.read(path: cut.lastPath).epoch, 1)
        var log = try ResultsLog.read(path: cut.resultsPath, through: .max)
        XCTAssertEqual(log.rows.count, 1)
        try log.append([("epoch", 2), ("time", 9), ("lr", 9), ("train/loss", 9), ("val/accuracy", 9), ("val/top_k_accuracy", 9), ("val/macro_f1", 9)])
        _ = try run(folder, name: "cut", resume: cut.lastPath)
        let a = try ResultsLog.read(path: straight.resultsPath, through: .max), b = try ResultsLog.read(path: cut.resultsPath, through: .max)
        XCTAssertEqual(a.columns, b.columns)
        for column in a.columns where column != "time" {
            XCTAssertEqual(a.values(column).map { String(format: "%.6g", $0) }, b.values(column).map { String(format: "%.6g", $0) }, column)
        }
        // The events are the results again, one per epoch.
        XCTAssertEqual(try TensorBoardRecords.read(cut.eventFiles[0]).count, 4)
        XCTAssertEqual(try ModelCheckpoint.read(path: cut.lastPath).parameters.mapValues(\.scalars),
                       try ModelCheckpoint.read(path: straight.lastPath).parameters.mapValues(\.scalars))
        // More epochs extend the finished run.
        _ = try run(folder, name: "cut", epochs: 4, resume: cut.lastPath)
        XCTAssertEqual(try ResultsLog.read(path: cut.resultsPath, through: .max).values("epoch"), [1, 2, 3, 4])
    }

    /// patience N stops after N epochs without a better validation metric; the best stays.
    func testPatienceStopsARunThatNoLongerImproves() throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("data.h5"), count: 32, seed: 4)
        // A learning rate too small to change the accuracy: epoch 1 stays the best.
        let run = try run(folder, name: "patient", epochs: 6, patience: 2, learningRate: 1e-9)
        XCTAssertEqual(try ResultsLog.read(path: run.resultsPath, through: .max).values("epoch"), [1, 2, 3])
        XCTAssertEqual(try ModelCheckpoint.read(path: run.bestPath).epoch, 1)
    }

    func testTheEventWriterChecksumsAndEncodesAsTensorFlowDoes() throws {
        // CRC-32C check value of "123456789" (RFC 3720's test vector).
        XCTAssertEqual(TensorBoardWriter.crc32c(Array("123456789".utf8)), 0xE306_9283)
        var proto = ProtoWriter()
        proto.int(2, 300)
        XCTAssertEqual(proto.bytes, [0x10, 0xAC, 0x02])
    }
}

/// Reads the records of a TFRecord file, checking both checksums of each.
enum TensorBoardRecords {
    static func read(_ path: String) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var records: [[UInt8]] = [], i = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while i < bytes.count {
            let lengthBytes = Array(bytes[i..<(i + 8)])
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(lengthBytes[$1]) << (8 * UInt64($1)) })
            XCTAssertEqual(u32(i + 8), TensorBoardWriter.maskedCRC(lengthBytes))
            let data = Array(bytes[(i + 12)..<(i + 12 + length)])
            XCTAssertEqual(u32(i + 12 + length), TensorBoardWriter.maskedCRC(data))
            records.append(data)
            i += 16 + length
        }
        return records
    }
}
