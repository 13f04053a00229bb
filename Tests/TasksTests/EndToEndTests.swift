import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// Every task trains on small generated data through the real `Trainer` and must clearly beat chance.
final class EndToEndTests: XCTestCase {
    func testClassificationTrainsWellAboveChanceAndItsFilesReload() throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("train.h5"), count: 120, seed: 10)
        try writeClassificationData(folder.file("val.h5"), count: 60, seed: 11)
        let train = try ClassificationDataset(path: folder.file("train.h5"))
        let validation = try ClassificationDataset(path: folder.file("val.h5"))
        let configuration = try smallClassifierConfiguration(dataset: train)
        let model = try Classifier(configuration, seed: 1)
        let options = smallOptions(epochs: 6)
        let trainer = Trainer(
            model: model,
            train: DataLoader(train, batchSize: options.batchSize, shuffle: true, mean: configuration.mean,
                              std: configuration.std, seed: options.seed),
            validation: DataLoader(validation, batchSize: 64, shuffle: false, mean: configuration.mean, std: configuration.std),
            options: options, outputPath: folder.file("model.h5"))
        var lines: [String] = []
        trainer.log = { lines.append($0) }
        let last = try XCTUnwrap(try trainer.run())

        XCTAssertEqual(last.metricName, "accuracy")
        XCTAssertGreaterThanOrEqual(last.value, 0.8, "chance is 1/3; log:\n" + lines.joined(separator: "\n"))
        XCTAssertEqual(lines.filter { $0.contains("done in") }.count, 6)

        // The best model on disk reloads and is at least as good as the last epoch.
        let (best, checkpoint) = try Classifier.load(path: folder.file("model.h5"))
        XCTAssertEqual(best.configuration, configuration)
        XCTAssertTrue((1...6).contains(checkpoint.epoch))
        let loader = DataLoader(validation, batchSize: 64, shuffle: false, mean: configuration.mean, std: configuration.std)
        let bestMetrics = try best.measure(loader)
        XCTAssertGreaterThanOrEqual(bestMetrics.accuracy, last.value)
        XCTAssertEqual(bestMetrics.count, 60)

        // The resumable checkpoint is the final model: the same logits, bit for bit.
        let (reloaded, lastCheckpoint) = try Classifier.load(path: trainer.checkpointPath)
        XCTAssertEqual(lastCheckpoint.epoch, 6)
        XCTAssertEqual(lastCheckpoint.step, 6 * 8)
        XCTAssertNotNil(lastCheckpoint.optimizer)
        let images = try normalisedImages(validation, for: model)
        XCTAssertEqual(reloaded.outputs(images).scalars, model.outputs(images).scalars)

        // A classification model file is refused as a tagger, naming the file.
        XCTAssertThrowsError(try Tagger.load(path: folder.file("model.h5"))) { error in
            XCTAssertTrue("\(error)".contains("model.h5") && "\(error)".contains("not tagging"), "\(error)")
        }
    }

    func testTaggingTrainsWellAboveChanceAndTunedThresholdsSurviveReload() throws {
        let folder = TemporaryFolder()
        try writeTaggingData(folder.file("train.h5"), count: 160, seed: 20)
        let positiveRate = try writeTaggingData(folder.file("val.h5"), count: 80, seed: 21)
        let train = try TaggingDataset(path: folder.file("train.h5"))
        let validation = try TaggingDataset(path: folder.file("val.h5"))
        let configuration = try smallTaggerConfiguration(dataset: train)
        let model = try Tagger(configuration, seed: 2)
        let options = smallOptions(epochs: 8)
        let validationLoader = DataLoader(validation, batchSize: 80, shuffle: false, mean: configuration.mean, std: configuration.std)
        let trainer = Trainer(
            model: model,
            train: DataLoader(train, batchSize: options.batchSize, shuffle: true, mean: configuration.mean,
                              std: configuration.std, seed: options.seed),
            validation: validationLoader, options: options, outputPath: folder.file("tagger.h5"))
        var lines: [String] = []
        trainer.log = { lines.append($0) }
        let last = try XCTUnwrap(try trainer.run())

        // A scorer that ignores the image has an expected average precision equal to the
        // positive rate (about 0.4 here).
        XCTAssertGreaterThan(positiveRate, 0.25)
        XCTAssertLessThan(positiveRate, 0.55)
        XCTAssertEqual(last.metricName, "mAP")
        XCTAssertGreaterThanOrEqual(last.value, max(0.9, positiveRate + 0.4), "log:\n" + lines.joined(separator: "\n"))
        XCTAssertTrue(lines.last?.hasPrefix("trained 8 epochs in ") == true, "log:\n" + lines.joined(separator: "\n"))
        // The summary's best is the highest of the per-epoch validation figures.
        let epochValues = lines.dropLast().compactMap { line -> Double? in
            guard let range = line.range(of: "val mAP ") else { return nil }
            return Double(line[range.upperBound...].prefix(while: { !$0.isWhitespace }))
        }
        XCTAssertEqual(epochValues.count, 8, "log:\n" + lines.joined(separator: "\n"))
        // "...; best val mAP 0.9876 at epoch 7": the highest, at the first epoch that reached it.
        let bestEpoch = try XCTUnwrap(epochValues.firstIndex(of: try XCTUnwrap(epochValues.max()))) + 1
        XCTAssertEqual(lines.last?.components(separatedBy: "best val mAP ").last,
                       String(format: "%.4f at epoch %d", try XCTUnwrap(epochValues.max()), bestEpoch))

        let (tagger, _) = try Tagger.load(path: folder.file("tagger.h5"))
        let metrics = try tagger.measure(validationLoader)
        XCTAssertGreaterThanOrEqual(metrics.meanAveragePrecision, last.value)
        let thresholds = metrics.tunedThresholds()
        XCTAssertGreaterThanOrEqual(metrics.microF1(thresholds: thresholds), 0.8)
        try tagger.use(TaggingHead.Settings(thresholds: thresholds))
        try tagger.save(to: folder.file("tuned.h5"))
        let (tuned, _) = try Tagger.load(path: folder.file("tuned.h5"))
        XCTAssertEqual(tuned.configuration.settings.thresholds, thresholds)
        let images = try normalisedImages(validation, for: tagger)
        XCTAssertEqual(tuned.outputs(images).scalars, tagger.outputs(images).scalars)
    }
}
