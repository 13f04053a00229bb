import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// Joint training of one backbone and four heads (`percept multi train`), on small generated data.
final class MultiTaskTrainingTests: XCTestCase {
    /// Small data of every task, written once per test.
    func writeData(_ folder: TemporaryFolder) throws -> (train: [VisionTask: String], validation: [VisionTask: String]) {
        try writeClassificationData(folder.file("cls.h5"), count: 96, seed: 70)
        try writeClassificationData(folder.file("cls-val.h5"), count: 48, seed: 71)
        _ = try writeTaggingData(folder.file("tag.h5"), count: 96, seed: 72)
        _ = try writeTaggingData(folder.file("tag-val.h5"), count: 48, seed: 73)
        try writeDetectionData(folder.file("det.h5"), count: 48, seed: 74)
        try writeDetectionData(folder.file("det-val.h5"), count: 16, seed: 75)
        try writeSegmentationData(folder.file("seg.h5"), count: 96, seed: 76)
        try writeSegmentationData(folder.file("seg-val.h5"), count: 32, seed: 77)
        return ([.classification: folder.file("cls.h5"), .tagging: folder.file("tag.h5"), .detection: folder.file("det.h5"),
                 .segmentation: folder.file("seg.h5")],
                [.classification: folder.file("cls-val.h5"), .tagging: folder.file("tag-val.h5"), .detection: folder.file("det-val.h5"),
                 .segmentation: folder.file("seg-val.h5")])
    }

    /// A small recipe for the generated data: a ResNet of widths 8/16/16 from scratch (maps at
    /// strides 1, 2, 4), the window head on stage 2 with 4 px of context around 16 px windows,
    /// one dense look.
    func smallConfig(epochs: Int) -> MultiTaskConfig {
        var config = MultiTaskConfig()
        config.backbone = BackboneOptions(preset: .resnet8, widths: [8, 16, 16], stemStride: 1, weights: "none")
        config.train.epochs = epochs
        config.train.batchSize = 16
        config.train.learningRate = 0.05
        config.train.backboneLearningRateScale = 0.2
        config.train.seed = 3
        config.classify.batch = 0; config.classify.erase = 0
        config.tag.batch = 0
        config.segment.batch = 0; config.segment.paste = 0
        config.detect.batch = 32
        config.detect.head.window = smallWindow
        config.detect.head.hidden = 16
        config.detect.head.context = 4
        config.detect.sampling.minedScenes = 8
        config.detect.settings.scales = WindowHead.pyramid(window: smallWindow, minSize: 8, maxSize: 16, levels: 3)
        config.detect.settings.refinements = 0
        config.detect.settings.flipAverage = false
        config.detect.settings.shiftAverage = false
        config.segment.head.refineWidth = 0
        config.segment.head.skips = ["stage1"]
        config.segment.settings.flipAverage = false
        return config
    }

    func testJointTrainingBeatsChanceOnEveryHead() throws {
        let folder = TemporaryFolder()
        let (train, validation) = try writeData(folder)
        // As the recipe starts from a shipped classifier, this run starts from a small one of the
        // same backbone: its weights and batch-norm statistics (frozen, as the recipe's).
        let items = try ClassificationDataset(path: train[.classification]!)
        var classifierConfig = ClassificationConfig()
        classifierConfig.backbone = smallConfig(epochs: 1).backbone
        classifierConfig.train = smallOptions(epochs: 6, learningRate: 0.1)
        classifierConfig.train.batchSize = 16
        var pretraining = TrainingRun(classifierConfig, data: items.path, output: folder.file("classifier.h5"))
        pretraining.log = { _ in }
        try pretraining.run()
        // No validation: the file is the last epoch's model, and every head is measured at the end.
        var config = smallConfig(epochs: 20)
        config.backbone.weights = folder.file("classifier.h5")
        var run = MultiTaskTrainingRun(config, data: train, output: folder.file("multi.h5"))
        var lines: [String] = []
        run.log = { lines.append($0) }
        try run.run()
        let log = lines.joined(separator: "\n")
        XCTAssertTrue(log.contains("(classify "), "progress shows the loss per task:\n" + log)
        let (model, checkpoint) = try MultiTaskModel.load(path: folder.file("multi.h5"))
        XCTAssertEqual(model.tasks, [.classification, .tagging, .detection, .segmentation])
        XCTAssertNotNil(checkpoint.metadata[MultiTaskTrainingRun.metadataKey])
        func evaluate<H: Head, D: ImageDataset>(_ head: H.Type, _ path: String, _ open: (String) throws -> D) throws -> Evaluation {
            let view = try XCTUnwrap(model.model(H.self))
            let c = view.configuration
            return try view.evaluate(DataLoader(try open(path), batchSize: 16, shuffle: false, mean: c.mean, std: c.std))
        }
        // Chance: accuracy 1/3 of three classes; mAP about the tags' base rate; AP50 near 0 (random
        // boxes); mIoU near 0.2. The recipe's slow backbone (frozen statistics, a fifth of the
        // heads' rate) leaves the window head on this tiny pretrained net the furthest from done.
        let accuracy = try evaluate(ClassificationHead.self, validation[.classification]!, ClassificationDataset.init(path:))
        XCTAssertGreaterThan(accuracy.value, 0.7, accuracy.summary + "\n" + log)
        let tags = try evaluate(TaggingHead.self, validation[.tagging]!, TaggingDataset.init(path:))
        XCTAssertGreaterThan(tags.value, 0.7, tags.summary + "\n" + log)
        let boxes = try evaluate(WindowHead.self, validation[.detection]!, DetectionDataset.init(path:))
        XCTAssertGreaterThan(boxes["ap50"] ?? 0, 0.1, boxes.summary + "\n" + log)
        let masks = try evaluate(SegmentationHead.self, validation[.segmentation]!, SegmentationDataset.init(path:))
        XCTAssertGreaterThan(masks.value, 0.5, masks.summary + "\n" + log)
    }

    /// A head added on a frozen backbone leaves every other head's predictions bit for bit.
    func testAHeadAddedOnTheFrozenBackboneLeavesTheOthersExactlyAsTheyWere() throws {
        let folder = TemporaryFolder()
        let (train, _) = try writeData(folder)
        var first = MultiTaskTrainingRun(smallConfig(epochs: 2), data: [.classification: train[.classification]!, .tagging: train[.tagging]!],
                                         output: folder.file("two.h5"))
        first.log = { _ in }
        try first.run()
        var second = MultiTaskTrainingRun(smallConfig(epochs: 2), data: [.segmentation: train[.segmentation]!, .tagging: train[.tagging]!],
                                          output: folder.file("three.h5"))
        second.from = folder.file("two.h5")
        second.freezeBackbone = true
        second.log = { _ in }
        try second.run()
        let (before, _) = try MultiTaskModel.load(path: folder.file("two.h5"))
        let (after, checkpoint) = try MultiTaskModel.load(path: folder.file("three.h5"))
        XCTAssertEqual(after.tasks, [.classification, .tagging, .segmentation])
        XCTAssertEqual(checkpoint.metadata["freeze_backbone"], "true")
        let old = Dictionary(uniqueKeysWithValues: before.state.map { ($0.path, $0.value.scalars) })
        for (path, value) in after.state where path.hasPrefix("backbone.") || path.hasPrefix("classification.") {
            XCTAssertEqual(value.scalars, old[path], "\(path) changed")
        }
        // The retrained tagger did train.
        let tagWeights = after.state.filter { $0.path.hasPrefix("tagging.") }
        XCTAssertTrue(tagWeights.contains { old[$0.path] != $0.value.scalars }, "the tagging head did not train")
        var rng = SeededGenerator(seed: 11)
        let images = Tensor.randomNormal([3, 1, generatedSide, generatedSide], using: &rng)
        XCTAssertEqual(after(images, tasks: [.classification])[.classification]!.scalars,
                       before(images, tasks: [.classification])[.classification]!.scalars)
    }

    /// A run stopped after its first epoch and resumed ends with the weights of one that ran through.
    func testAStoppedRunResumesExactly() throws {
        let folder = TemporaryFolder()
        let (train, validation) = try writeData(folder)
        let data: [VisionTask: String] = [.classification: train[.classification]!, .detection: train[.detection]!]
        var whole = MultiTaskTrainingRun(smallConfig(epochs: 2), data: data, validation: [.classification: validation[.classification]!],
                                         output: folder.file("whole.h5"))
        whole.log = { _ in }
        try whole.run()
        var stopped = MultiTaskTrainingRun(smallConfig(epochs: 2), data: data, validation: [.classification: validation[.classification]!],
                                           output: folder.file("part.h5"))
        let firstEpochDone = Flag()
        stopped.log = { if $0.hasPrefix("epoch 1/2 done") { firstEpochDone.isSet = true } }
        stopped.shouldStop = { firstEpochDone.isSet }
        XCTAssertThrowsError(try stopped.run()) { XCTAssertTrue($0 is TrainingInterrupted, "\($0)") }
        firstEpochDone.isSet = false
        stopped.shouldStop = { false }
        try stopped.run(resume: folder.file("part.last.h5"))
        let (a, _) = try MultiTaskModel.load(path: folder.file("whole.last.h5"))
        let (b, _) = try MultiTaskModel.load(path: folder.file("part.last.h5"))
        for (x, y) in zip(a.state, b.state) { XCTAssertEqual(x.value.scalars, y.value.scalars, x.path) }
    }

    func testJointBatchesDrawEveryTaskOrOneAtATime() throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("a.h5"), count: 64, seed: 1)
        try writeSegmentationData(folder.file("b.h5"), count: 24, seed: 2)
        let a = DataLoader(try ClassificationDataset(path: folder.file("a.h5")), batchSize: 16, shuffle: true, mean: [0], std: [1], seed: 1)
        let b = DataLoader(try SegmentationDataset(path: folder.file("b.h5")), batchSize: 8, shuffle: true, mean: [0], std: [1], seed: 1)
        let all = JointBatches([(.classification, a), (.segmentation, b)], sampling: .all)
        XCTAssertEqual(all.batchCount, 4)
        var batches: [Batch] = []
        let stream = all.stream(epoch: 0)
        while let batch = try stream.nextBatch() { batches.append(batch) }
        XCTAssertEqual(batches.count, 4)
        XCTAssertTrue(batches.allSatisfy { $0.parts.map(\.task) == [.classification, .segmentation] })
        // The segmentation data (3 batches) starts over for the fourth step, in another order.
        XCTAssertEqual(batches.map { $0.parts[1].batch.count }, [8, 8, 8, 8])
        XCTAssertEqual(Set(batches[0..<3].flatMap { $0.parts[1].batch.indices }).count, 24)
        // The same epoch draws the same batches.
        let again = all.stream(epoch: 0)
        for batch in batches { XCTAssertEqual(try again.nextBatch()?.parts[1].batch.indices, batch.parts[1].batch.indices) }
        let alternating = JointBatches([(.classification, a), (.segmentation, b)], sampling: .roundRobin)
        XCTAssertEqual(alternating.batchCount, 7)
        let one = alternating.stream(epoch: 0)
        var order: [VisionTask] = []
        while let batch = try one.nextBatch() { XCTAssertEqual(batch.parts.count, 1); order.append(batch.parts[0].task) }
        XCTAssertEqual(order, [.classification, .segmentation, .classification, .segmentation, .classification, .segmentation, .classification])
    }

    /// Training crops carry context so that a window head on a padded backbone learns what the
    /// dense pass over a whole image computes: with context covering the receptive field, a
    /// crop's output equals the dense output at that window.
    func testContextCropsScoreAsTheDensePassDoes() throws {
        var rng = SeededGenerator(seed: 5)
        let backbone = BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])
        func head(context: Int) -> ModelConfiguration<WindowHead> {
            ModelConfiguration(task: .detection, inputChannels: 1, inputHeight: 40, inputWidth: 40, classes: ["a", "b"], backbone: backbone,
                               head: .init(input: "stage2", window: 8, featureSide: 4, hidden: 6, classes: 2, context: context),
                               settings: WindowHead.Settings(), mean: [0], std: [1])
        }
        let scene = Tensor.randomNormal([1, 1, 40, 40], using: &rng)
        for context in [0, 8] {
            let model = try Model<WindowHead>(head(context: context), seed: 4)
            model.setMode(.inference)
            let dense = model(scene)   // window (x, y) at pixel (2x, 2y)
            let (x, y) = (6, 5), side = 8 + 2 * context
            let crop = scene.cropped(top: 2 * y - context, left: 2 * x - context, height: side, width: side)
            let alone = model.context().runCrops(crop)
            let (w, plane) = (dense.shape[3], dense.shape[2] * dense.shape[3])
            let difference = (0..<dense.shape[1]).map { abs(alone.scalars[$0] - dense.scalars[$0 * plane + y * w + x]) }.max()!
            if context == 0 {
                XCTAssertGreaterThan(difference, 1e-3, "a bare crop's padding should change what a padded backbone sees")
            } else {
                XCTAssertLessThan(difference, 1e-4, "a crop with context scores as the dense pass")
            }
        }
    }
}

/// Second looks from features (`looks_from_features`): a window's patch sampled from the map of
/// the level nearest its fitting scale.
final class FeatureLookTests: XCTestCase {
    func testAViewOnALevelsGridGetsTheDensePassOutput() throws {
        let backbone = BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])
        var settings = WindowHead.Settings()
        settings.scales = [1]
        settings.shiftAverage = false
        settings.flipAverage = false
        settings.looksFromFeatures = true
        let configuration = ModelConfiguration<WindowHead>(
            task: .detection, inputChannels: 1, inputHeight: 40, inputWidth: 40, classes: ["a", "b"], backbone: backbone,
            head: .init(input: "stage2", window: 8, featureSide: 4, hidden: 6, classes: 2, context: 4),
            settings: settings, mean: [0], std: [1])
        let model = try Model<WindowHead>(configuration, seed: 8)
        model.setMode(.inference)
        var rng = SeededGenerator(seed: 9)
        let scene = Tensor.randomNormal([1, 1, 40, 40], using: &rng)
        let head = model.head, padding = head.levelPadding
        let maps = model.backbone.features(scene.padded(by: padding, values: [0]), through: "stage2")
        let dense = head(maps)
        // A box whose fitting window starts at level pixel (10, 14): map position (7, 9) of the padded level.
        let box = DetectionBox(x1: 12, y1: 16, x2: 16, y2: 20, label: 1)
        let fit = head.fittingWindow(box, height: 40, width: 40)
        XCTAssertEqual([fit.left, fit.top, Int(fit.scale)], [10, 14, 1])
        let refined = head.refine([Detection(box: box, score: 0.64)], image: 0, of: [(1, maps["stage2"])], height: 40, width: 40)
        let (x, y) = ((fit.left + padding) / head.stride, (fit.top + padding) / head.stride)
        let (w, plane) = (dense.shape[3], dense.shape[2] * dense.shape[3])
        let vector = Tensor(shape: [head.architecture.classes + 5], scalars: (0..<(head.architecture.classes + 5)).map { dense.scalars[$0 * plane + y * w + x] })
        let (p, deltas) = head.secondLook(vector.pointer, label: 1)
        let expected = WindowHead.coder.decode(deltas: deltas, reference: head.windowSquare(left: fit.left, top: fit.top, scale: 1, label: 1))
        XCTAssertEqual(refined[0].score, (p * 0.64).squareRoot(), accuracy: 1e-6)
        for (a, b) in zip([refined[0].box.x1, refined[0].box.y1, refined[0].box.x2, refined[0].box.y2], [expected.x1, expected.y1, expected.x2, expected.y2]) {
            XCTAssertEqual(a, b, accuracy: 1e-4)
        }
        // The whole pipeline takes the same path: a predicted scene's looks come from the kept maps.
        XCTAssertFalse(model.predict(scene, geometry: InputGeometry(height: 40, width: 40)).isEmpty)
    }
}

/// A flag set by one closure and read by another.
private final class Flag { var isSet = false }
