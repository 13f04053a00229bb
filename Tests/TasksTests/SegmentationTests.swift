import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// Side of the generated segmentation images.
let segmentationSide = 16

/// A 16 x 16 image with one or two 6 x 6 patches on noise: class 1 horizontal stripes, class 2
/// vertical stripes (the same brightness, so texture, not intensity, tells them apart). The
/// mask labels each patch's pixels with its class; the rest is background 0.
func segmentationExample(using generator: inout SeededGenerator) -> (image: Image, mask: Image) {
    let side = segmentationSide
    var pixels = (0..<(side * side)).map { _ in UInt8(generator.next() % 40) }
    var mask = [UInt8](repeating: 0, count: side * side)
    let count = 1 + Int(generator.next() % 2)
    for index in 0..<count {
        let label = 1 + Int(generator.next() % 2)
        // The two patches sit in the left and right halves, so they never overlap.
        let left = index * 8 + Int(generator.next() % 3), top = Int(generator.next() % 11)
        for y in top..<(top + 6) {
            for x in left..<(left + 6) {
                let on = label == 1 ? y % 2 == 0 : x % 2 == 0
                pixels[y * side + x] = on ? 200 : 90
                mask[y * side + x] = UInt8(label)
            }
        }
    }
    return (Image(width: side, height: side, channels: 1, pixels: pixels), Image(width: side, height: side, channels: 1, pixels: mask))
}

func writeSegmentationData(_ path: String, count: Int, seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: segmentationSide,
                                   width: segmentationSide, source: "generated striped patches")
    for _ in 0..<count {
        let (image, mask) = segmentationExample(using: &generator)
        try writer.append(image: image, mask: mask)
    }
    try writer.finish(classNames: ["background", "horizontal", "vertical"])
}

/// A small segmenter: ResNet of widths 4 and 8 (stride-1 stem, maps at strides 1, 1, 2).
func smallSegmenterConfiguration(dataset: ImageDataset, decoderWidth: Int, skips: [String] = ["stage1"], refineWidth: Int = 0)
    throws -> ModelConfiguration<SegmentationHead.Configuration> {
    let statistics = try channelStatistics(dataset)
    return ModelConfiguration(
        task: .segmentation, inputChannels: 1, inputHeight: dataset.height, inputWidth: dataset.width,
        classes: dataset.classNames,
        backbone: BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1]),
        head: SegmentationHead.Configuration(deepest: "stage2", skips: skips, decoderWidth: decoderWidth,
                                             refineWidth: refineWidth, classes: dataset.classNames.count),
        mean: statistics.mean, std: statistics.std)
}

final class SegmentationTests: XCTestCase {
    func testSegmenterTrainsWellAboveChanceAndReloads() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("train.h5"), count: 96, seed: 40)
        try writeSegmentationData(folder.file("val.h5"), count: 32, seed: 41)
        let train = try SegmentationDataset(path: folder.file("train.h5"))
        let validation = try SegmentationDataset(path: folder.file("val.h5"))
        let configuration = try smallSegmenterConfiguration(dataset: train, decoderWidth: 8)
        let model = try Model<SegmentationHead>(configuration, seed: 3)
        var options = smallOptions(epochs: 8, learningRate: 0.1)
        options.batchSize = 16
        let loader = DataLoader(validation, batchSize: 32, shuffle: false, mean: configuration.mean, std: configuration.std)
        let trainer = Trainer(model: model, train: DataLoader(train, batchSize: 16, shuffle: true, mean: configuration.mean,
                                                              std: configuration.std, seed: 1),
                              validation: loader, options: options, outputPath: folder.file("segmenter.h5"))
        var lines: [String] = []
        trainer.log = { lines.append($0) }
        let last = try XCTUnwrap(try trainer.run())
        XCTAssertEqual(last.metricName, "mIoU")
        // Labelling every pixel background scores IoU 0 on both item classes; guessing an item
        // class from brightness alone cannot tell the stripes apart (about 0.5 at best).
        XCTAssertGreaterThanOrEqual(last.value, 0.75, "log:\n" + lines.joined(separator: "\n"))

        let (best, _) = try Model<SegmentationHead>.load(path: folder.file("segmenter.h5"))
        let metrics = try best.measure(loader)
        XCTAssertGreaterThanOrEqual(metrics.meanIoU(includingBackground: false), last.value)
        XCTAssertEqual(metrics.pixels, 32 * segmentationSide * segmentationSide)
        let images = try normalisedImages(validation, for: best)
        let predictions = best.predict(images)
        XCTAssertEqual(predictions.count, 32)
        XCTAssertEqual([predictions[0].width, predictions[0].height], [segmentationSide, segmentationSide])
        XCTAssertTrue(predictions.allSatisfy { $0.mask.allSatisfy { $0 < 3 } })
    }

    /// Both decoder kinds give logits at the input size from maps of strides 1 and 2.
    func testDecoderAndScoreFusionGiveInputSizedLogits() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 42)
        let dataset = try SegmentationDataset(path: folder.file("data.h5"))
        var generator = SeededGenerator(seed: 8)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        for width in [0, 6] {
            for skips in [[], ["stage1"], ["stage1", "stem"]] {
                let model = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, decoderWidth: width, skips: skips), seed: 1)
                XCTAssertEqual(model(images).shape, [2, 3, 16, 16], "decoder width \(width), skips \(skips)")
            }
        }
        // A 3x3 classifier (same padding) keeps the input size; even sides are refused.
        var wide = try smallSegmenterConfiguration(dataset: dataset, decoderWidth: 0, skips: [])
        wide.head.classifierKernel = 3
        let wideModel = try Model<SegmentationHead>(wide, seed: 1)
        XCTAssertEqual(wideModel.head.classifier.weight.value.shape, [3, 8, 3, 3])
        XCTAssertEqual(wideModel(images).shape, [2, 3, 16, 16])
        wide.head.classifierKernel = 2
        XCTAssertThrowsError(try Model<SegmentationHead>(wide, seed: 1)) { XCTAssertTrue("\($0)".contains("kernel 2"), "\($0)") }
        // So do 3x3 skip scores in FCN fusion; even sides are refused there too.
        var fused = try smallSegmenterConfiguration(dataset: dataset, decoderWidth: 0, skips: ["stage1", "stem"])
        fused.head.skipKernel = 3
        let fusedModel = try Model<SegmentationHead>(fused, seed: 1)
        XCTAssertEqual(fusedModel.head.skipScores.map { Array($0.weight.value.shape.suffix(2)) }, [[3, 3], [3, 3]])
        XCTAssertEqual(fusedModel(images).shape, [2, 3, 16, 16])
        fused.head.skipKernel = 4
        XCTAssertThrowsError(try Model<SegmentationHead>(fused, seed: 1)) { XCTAssertTrue("\($0)".contains("skip score kernel 4"), "\($0)") }
        // Old model files have no classifier or skip kernel: 1.
        let old = try JSONDecoder().decode(SegmentationHead.Configuration.self,
                                           from: Data(#"{"segmentationInput":"stage2","segmentationSkips":[],"decoderWidth":0,"refineWidth":0,"outputs":3,"loss":"pixel_cross_entropy"}"#.utf8))
        XCTAssertNil(old.classifierKernel)
        XCTAssertNil(old.skipKernel)

        // The refinement starts as the identity: its output layer is zero.
        let plain = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, decoderWidth: 6, refineWidth: 0), seed: 1)
        let refined = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, decoderWidth: 6, refineWidth: 4), seed: 1)
        XCTAssertEqual(refined.head.inputs, ["stage2", "stage1", "input"])
        refined.setMode(.inference); plain.setMode(.inference)
        let refinedScores = refined(images)
        XCTAssertEqual(refinedScores.shape, [2, 3, 16, 16])
        // Everything before the refinement is drawn first, so the two models share those weights.
        XCTAssertEqual(refinedScores.scalars, plain(images).scalars)
        // A skip the backbone lacks, or one coarser than the map before it, is refused.
        XCTAssertThrowsError(try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, decoderWidth: 4, skips: ["stage9"]), seed: 1))
        var coarser = try smallSegmenterConfiguration(dataset: dataset, decoderWidth: 4, skips: ["stage1"])
        coarser.head.deepest = "stage1"
        coarser.head.skips = ["stage2"]
        XCTAssertThrowsError(try Model<SegmentationHead>(coarser, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("coarser"), "\(error)")
        }
    }

    /// Both kinds of context start as the identity (their output layer is zero), learn, are
    /// stored in the configuration, and are refused with a decoder.
    func testContextStartsAsTheIdentityAndLearns() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 8, seed: 48)
        let dataset = try SegmentationDataset(path: folder.file("data.h5"))
        let plainConfiguration = try smallSegmenterConfiguration(dataset: dataset, decoderWidth: 0, skips: [])
        let plain = try Model<SegmentationHead>(plainConfiguration, seed: 1)
        plain.setMode(.inference)
        var generator = SeededGenerator(seed: 9)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        let masks = (0..<(2 * 16 * 16)).map { _ in Int32(generator.next() % 3) }
        let geometry = InputGeometry(height: 16, width: 16)
        for kind in SegmentationContext.allCases {
            var configuration = plainConfiguration
            configuration.head.context = kind
            configuration.head.contextKeys = kind == .attention ? 5 : nil
            let model = try Model<SegmentationHead>(configuration, seed: 1)
            let context = try XCTUnwrap(model.head.context)
            XCTAssertEqual(context.query?.weight.value.shape, kind == .attention ? [5, 8, 1, 1] : nil)
            // The context is drawn after everything else, so both models share those weights.
            model.setMode(.inference)
            XCTAssertEqual(model(images).scalars, plain(images).scalars, "\(kind)")
            // Training reaches the output layer first, then (once it is nonzero) the mix.
            model.setMode(.training)
            let gradients = model.head.loss(model(images), masks, geometry: geometry).backward()
            let outputGradient = try XCTUnwrap(gradients[context.output.weight])
            XCTAssertTrue(outputGradient.scalars.contains { $0 != 0 }, "\(kind)")
            context.output.weight.value = uniformLogits(context.output.weight.shape, seed: 10)
            let again = model.head.loss(model(images), masks, geometry: geometry).backward()
            for parameter in [context.value.weight] + [context.query?.weight, context.key?.weight].compactMap({ $0 }) {
                XCTAssertTrue(try XCTUnwrap(again[parameter]).scalars.contains { $0 != 0 }, "\(kind)")
            }
            model.setMode(.inference)
            XCTAssertNotEqual(model(images).scalars, plain(images).scalars, "\(kind)")
            let stored = try JSONDecoder().decode(SegmentationHead.Configuration.self, from: JSONEncoder().encode(configuration.head))
            XCTAssertEqual(stored.context, kind)
            configuration.head.decoderWidth = 4
            configuration.head.skips = ["stage1"]
            XCTAssertThrowsError(try Model<SegmentationHead>(configuration, seed: 1)) { XCTAssertTrue("\($0)".contains("context"), "\($0)") }
        }
        let old = try JSONDecoder().decode(SegmentationHead.Configuration.self,
                                           from: Data(#"{"segmentationInput":"stage2","segmentationSkips":[],"decoderWidth":0,"refineWidth":0,"outputs":3,"loss":"pixel_cross_entropy"}"#.utf8))
        XCTAssertNil(old.context)
    }

    /// A hidden 3x3 layer sits between the deepest map and the class scores; it needs FCN fusion.
    func testHiddenLayerFeedsTheClassScores() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 49)
        var configuration = try smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), decoderWidth: 0, skips: [])
        configuration.head.hiddenWidth = 6
        configuration.head.context = .attention
        let model = try Model<SegmentationHead>(configuration, seed: 1)
        XCTAssertEqual(model.head.hidden?.conv.weight.shape, [6, 8, 3, 3])
        XCTAssertEqual(model.head.classifier.weight.shape, [3, 6, 1, 1])
        var generator = SeededGenerator(seed: 11)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        let masks = (0..<(2 * 16 * 16)).map { _ in Int32(generator.next() % 3) }
        let gradients = model.head.loss(model(images), masks, geometry: InputGeometry(height: 16, width: 16)).backward()
        let hiddenGradient = try XCTUnwrap(gradients[try XCTUnwrap(model.head.hidden).conv.weight])
        XCTAssertTrue(hiddenGradient.scalars.contains { $0 != 0 })
        let stored = try JSONDecoder().decode(SegmentationHead.Configuration.self, from: JSONEncoder().encode(configuration.head))
        XCTAssertEqual(stored.hiddenWidth, 6)
        configuration.head.context = nil
        configuration.head.decoderWidth = 4
        configuration.head.skips = ["stage1"]
        XCTAssertThrowsError(try Model<SegmentationHead>(configuration, seed: 1)) { XCTAssertTrue("\($0)".contains("hidden layer"), "\($0)") }
    }

    /// Refinements from backbone maps start as the identity (zero output layer), learn through all
    /// three layers, are stored, and refuse maps the backbone lacks or that get coarser.
    func testBackboneMapRefinementsStartAsTheIdentityAndLearn() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 50)
        let plainConfiguration = try smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), decoderWidth: 0, skips: [])
        var configuration = plainConfiguration
        configuration.head.refineMaps = ["stage1"]
        configuration.head.refineMapsWidth = 5
        let plain = try Model<SegmentationHead>(plainConfiguration, seed: 1)
        let model = try Model<SegmentationHead>(configuration, seed: 1)
        XCTAssertEqual(model.head.inputs, ["stage2", "stage1"])
        let refinement = try XCTUnwrap(model.head.mapRefinements.first)
        XCTAssertEqual(model.head.mapRefinements.count, 1)
        XCTAssertEqual(refinement.edges.weight.shape, [5, 4, 3, 3])
        XCTAssertEqual(refinement.mix.weight.shape, [5, 3 + 5, 1, 1])
        var generator = SeededGenerator(seed: 12)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        let masks = (0..<(2 * 16 * 16)).map { _ in Int32(generator.next() % 3) }
        let geometry = InputGeometry(height: 16, width: 16)
        // Drawn after everything else and zero at the output: the same scores as without it (here
        // stage1 is at the input's resolution; a coarser map would resize the scores in two steps).
        model.setMode(.inference); plain.setMode(.inference)
        XCTAssertEqual(model(images).scalars, plain(images).scalars)
        model.setMode(.training)
        let gradients = model.head.loss(model(images), masks, geometry: geometry).backward()
        XCTAssertTrue(try XCTUnwrap(gradients[refinement.output.weight]).scalars.contains { $0 != 0 })
        refinement.output.weight.value = uniformLogits(refinement.output.weight.shape, seed: 13)
        let again = model.head.loss(model(images), masks, geometry: geometry).backward()
        for parameter in [refinement.edges.weight, refinement.mix.weight, model.head.classifier.weight] {
            XCTAssertTrue(try XCTUnwrap(again[parameter]).scalars.contains { $0 != 0 })
        }
        model.setMode(.inference)
        XCTAssertNotEqual(model(images).scalars, plain(images).scalars)
        XCTAssertEqual(model(images).shape, [2, 3, 16, 16])
        let stored = try JSONDecoder().decode(SegmentationHead.Configuration.self, from: JSONEncoder().encode(configuration.head))
        XCTAssertEqual(stored.refineMaps, ["stage1"])
        XCTAssertEqual(stored.refineMapsWidth, 5)
        for (maps, width, message) in [(["stage9"], 5, "stage9"), (["stage1", "stage2"], 5, "coarser"), (["stage1"], 0, "width 0")] {
            var refused = configuration
            refused.head.refineMaps = maps
            refused.head.refineMapsWidth = width
            XCTAssertThrowsError(try Model<SegmentationHead>(refused, seed: 1)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        // A map coarser than the class scores (here the fused stage1 scores, stride 1) is refused too.
        var fused = configuration
        fused.head.skips = ["stage1"]
        fused.head.refineMaps = ["stage2"]
        XCTAssertThrowsError(try Model<SegmentationHead>(fused, seed: 1)) { XCTAssertTrue("\($0)".contains("coarser than the class scores"), "\($0)") }
    }

    /// With frozen backbone statistics the backbone's batch norms keep their running statistics
    /// through training (their scales still train); the head's batch norm keeps updating.
    func testFrozenBackboneStatisticsStayThroughTraining() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("train.h5"), count: 32, seed: 50)
        let train = try SegmentationDataset(path: folder.file("train.h5"))
        var configuration = try smallSegmenterConfiguration(dataset: train, decoderWidth: 0, skips: [])
        configuration.head.hiddenWidth = 4
        let model = try Model<SegmentationHead>(configuration, seed: 2)
        func norms(_ prefix: String) -> [(statistics: [Float], scale: [Float])] {
            var found: [(statistics: [Float], scale: [Float])] = []
            model.walk { path, object in
                if path.hasPrefix(prefix), let norm = object as? BatchNorm2D {
                    found.append((norm.runningMean.value.scalars + norm.runningVariance.value.scalars, norm.weight.value.scalars))
                }
            }
            return found
        }
        let backboneBefore = norms("backbone."), headBefore = norms("head.")
        XCTAssertFalse(backboneBefore.isEmpty)
        XCTAssertEqual(headBefore.count, 1)
        var options = smallOptions(epochs: 1, learningRate: 0.1)
        options.batchSize = 16
        options.freezeBackboneStatistics = true
        let trainer = Trainer(model: model, train: DataLoader(train, batchSize: 16, shuffle: true, mean: configuration.mean,
                                                              std: configuration.std, seed: 1),
                              validation: nil, options: options, outputPath: folder.file("frozen.h5"))
        trainer.log = { _ in }
        try trainer.run()
        let backboneAfter = norms("backbone."), headAfter = norms("head.")
        for (before, after) in zip(backboneBefore, backboneAfter) {
            XCTAssertEqual(before.statistics, after.statistics)
            XCTAssertNotEqual(before.scale, after.scale)
        }
        XCTAssertNotEqual(headBefore[0].statistics, headAfter[0].statistics)
        // The option is stored with the run, so a resumed run keeps it.
        let stored = try JSONDecoder().decode(TrainingOptions.self, from: Data(options.json().utf8))
        XCTAssertEqual(stored.freezeBackboneStatistics, true)
        // Trained again without the option, the same model object normalises with batch statistics.
        options.freezeBackboneStatistics = nil
        _ = Trainer(model: model, train: DataLoader(train, batchSize: 16, mean: configuration.mean, std: configuration.std),
                    validation: nil, options: options, outputPath: folder.file("again.h5"))
        var frozen = 0
        model.walk { _, object in if let norm = object as? BatchNorm2D, norm.freezesStatistics { frozen += 1 } }
        XCTAssertEqual(frozen, 0)
    }

    /// With flip averaging the predictor commutes with mirroring: segmenting a mirrored image
    /// gives the mirrored class map, exactly (a single pass gives no such guarantee).
    func testFlipAveragedPredictionsMirrorWithTheImage() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 44)
        var configuration = try smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), decoderWidth: 4, refineWidth: 3)
        configuration.head.flipAverage = true
        let model = try Model<SegmentationHead>(configuration, seed: 6)
        var generator = SeededGenerator(seed: 10)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        let direct = model.predict(images), mirrored = model.predict(images.flippedHorizontally())
        for (a, b) in zip(direct, mirrored) {
            let flippedBack: [UInt8] = (0..<256).map { (p: Int) -> UInt8 in
                let row: Int = p / 16, column: Int = p % 16
                return b.mask[row * 16 + 15 - column]
            }
            XCTAssertEqual(a.mask, flippedBack)
        }
    }

    /// Decoding takes each pixel's highest class; ties keep the lower class.
    func testDecodingIsThePerPixelArgmax() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 43)
        let model = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), decoderWidth: 4), seed: 1)
        // One image, 3 classes, 1 x 4 pixels (class-major planes).
        let logits = Tensor(shape: [1, 3, 1, 4], scalars: [0, 5, 1, 2,
                                                            3, 5, 0, 2,
                                                            1, 4, 2, 2])
        let prediction = try XCTUnwrap(model.head.decode(logits, geometry: InputGeometry(height: 1, width: 4)).first)
        XCTAssertEqual(prediction.mask, [1, 0, 2, 0])
    }
}

extension SegmentationTests {
    /// --lovasz adds its weight times the Lovász-softmax of the pixels' probabilities to the
    /// cross-entropy, with the same ignored pixels; model files without the field have none.
    func testLovaszTermIsAddedToTheCrossEntropy() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 45)
        var configuration = try smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), decoderWidth: 4)
        let plain = try Model<SegmentationHead>(configuration, seed: 1)
        configuration.head.lovaszWeight = 0.5
        let weighted = try Model<SegmentationHead>(configuration, seed: 1)
        let logits = uniformLogits([2, 3, 4, 4], seed: 46)
        var generator = SeededGenerator(seed: 47)
        let masks = (0..<32).map { _ in generator.next() % 5 == 0 ? Int32(255) : Int32(generator.next() % 3) }
        let geometry = InputGeometry(height: 4, width: 4)
        let crossEntropy = plain.head.loss(logits, masks, geometry: geometry).scalar
        let lovasz = lovaszSoftmax(probabilities: logits.softmax(axis: 1), labels: masks, ignoreIndex: 255).scalar
        XCTAssertGreaterThan(lovasz, 0.1)
        XCTAssertEqual(weighted.head.loss(logits, masks, geometry: geometry).scalar, crossEntropy + 0.5 * lovasz, accuracy: 1e-5)
        let stored = try JSONDecoder().decode(SegmentationHead.Configuration.self, from: JSONEncoder().encode(configuration.head))
        XCTAssertEqual(stored.lovaszWeight, 0.5)
        let old = try JSONDecoder().decode(SegmentationHead.Configuration.self,
                                           from: Data(#"{"segmentationInput":"stage2","segmentationSkips":[],"decoderWidth":0,"refineWidth":0,"outputs":3,"loss":"pixel_cross_entropy"}"#.utf8))
        XCTAssertNil(old.lovaszWeight)
    }

    private func uniformLogits(_ shape: [Int], seed: UInt64) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        return Tensor.randomUniform(shape, low: -2, high: 2, using: &generator)
    }
}

/// The metrics agree with torchvision's reference ConfusionMatrix on a worked example.
final class SegmentationMetricsTests: XCTestCase {
    func testConfusionMatrixIoUAndIgnoredPixels() {
        var metrics = SegmentationMetrics(classes: 3)
        let truth: [Int32] = [0, 0, 1, 1, 1, 2, 2, 255, 0, 1]
        let prediction: [UInt8] = [0, 1, 1, 1, 0, 2, 1, 2, 0, 1]
        truth.withUnsafeBufferPointer { metrics.add(prediction: prediction, truth: $0) }
        // Rows truth, columns prediction; the 255 pixel is not counted.
        XCTAssertEqual(metrics.confusion, [2, 1, 0,
                                           1, 3, 0,
                                           0, 1, 1])
        XCTAssertEqual(metrics.pixels, 9)
        XCTAssertEqual(metrics.pixelAccuracy, 6.0 / 9.0, accuracy: 1e-12)
        // IoU = diag / (row sum + column sum - diag): 2/(3+3-2), 3/(4+5-3), 1/(2+1-1).
        let iou = metrics.perClassIoU.map { $0! }
        XCTAssertEqual(iou[0], 0.5, accuracy: 1e-12)
        XCTAssertEqual(iou[1], 0.5, accuracy: 1e-12)
        XCTAssertEqual(iou[2], 0.5, accuracy: 1e-12)
        XCTAssertEqual(metrics.perClassAccuracy.map { $0! }, [2.0 / 3.0, 0.75, 0.5])
        XCTAssertEqual(metrics.meanIoU(includingBackground: true), 0.5, accuracy: 1e-12)

        // A class neither present nor predicted has no IoU and is left out of the means.
        var sparse = SegmentationMetrics(classes: 4)
        let t: [Int32] = [0, 1, 1, 0]
        t.withUnsafeBufferPointer { sparse.add(prediction: [0, 1, 0, 0], truth: $0) }
        XCTAssertNil(sparse.perClassIoU[2])
        XCTAssertNil(sparse.perClassIoU[3])
        XCTAssertEqual(sparse.meanIoU(includingBackground: false), 0.5, accuracy: 1e-12)
        XCTAssertEqual(sparse.meanIoU(includingBackground: true), (2.0 / 3.0 + 0.5) / 2, accuracy: 1e-12)
    }
}
