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
func smallSegmenterConfiguration(dataset: ImageDataset, skips: [String] = ["stage1"], refineWidth: Int = 0, flipAverage: Bool = false)
    throws -> ModelConfiguration<SegmentationHead> {
    let statistics = try channelStatistics(dataset)
    return ModelConfiguration(
        task: .segmentation, inputChannels: 1, inputHeight: dataset.height, inputWidth: dataset.width,
        classes: dataset.classNames,
        backbone: BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1]),
        head: SegmentationHead.Architecture(deepest: "stage2", skips: skips, refineWidth: refineWidth, classes: dataset.classNames.count),
        settings: SegmentationHead.Settings(flipAverage: flipAverage), mean: statistics.mean, std: statistics.std)
}

final class SegmentationTests: XCTestCase {
    func testSegmenterTrainsWellAboveChanceAndReloads() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("train.h5"), count: 96, seed: 40)
        try writeSegmentationData(folder.file("val.h5"), count: 32, seed: 41)
        let train = try SegmentationDataset(path: folder.file("train.h5"))
        let validation = try SegmentationDataset(path: folder.file("val.h5"))
        let configuration = try smallSegmenterConfiguration(dataset: train, skips: ["stage1", "stem"], refineWidth: 4)
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

    /// Score fusion gives logits at the input size from maps of strides 1 and 2.
    func testScoreFusionGivesInputSizedLogits() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 42)
        let dataset = try SegmentationDataset(path: folder.file("data.h5"))
        var generator = SeededGenerator(seed: 8)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        for skips in [[], ["stage1"], ["stage1", "stem"]] {
            let model = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, skips: skips), seed: 1)
            XCTAssertEqual(model(images).shape, [2, 3, 16, 16], "skips \(skips)")
        }
        // A 3x3 classifier (same padding) keeps the input size; even sides are refused.
        var wide = try smallSegmenterConfiguration(dataset: dataset, skips: [])
        wide.head.classifierKernel = 3
        let wideModel = try Model<SegmentationHead>(wide, seed: 1)
        XCTAssertEqual(wideModel.head.classifier.weight.value.shape, [3, 8, 3, 3])
        XCTAssertEqual(wideModel(images).shape, [2, 3, 16, 16])
        wide.head.classifierKernel = 2
        XCTAssertThrowsError(try Model<SegmentationHead>(wide, seed: 1)) { XCTAssertTrue("\($0)".contains("kernel 2"), "\($0)") }
        // So do 3x3 skip scores in FCN fusion; even sides are refused there too.
        var fused = try smallSegmenterConfiguration(dataset: dataset, skips: ["stage1", "stem"])
        fused.head.skipKernel = 3
        let fusedModel = try Model<SegmentationHead>(fused, seed: 1)
        XCTAssertEqual(fusedModel.head.skipScores.map { Array($0.weight.value.shape.suffix(2)) }, [[3, 3], [3, 3]])
        XCTAssertEqual(fusedModel(images).shape, [2, 3, 16, 16])
        fused.head.skipKernel = 4
        XCTAssertThrowsError(try Model<SegmentationHead>(fused, seed: 1)) { XCTAssertTrue("\($0)".contains("skip score kernel 4"), "\($0)") }
        // Old model files have no classifier or skip kernel: 1.
        let old = try JSONDecoder().decode(SegmentationHead.Architecture.self,
                                           from: Data(#"{"segmentationInput":"stage2","segmentationSkips":[],"decoderWidth":0,"refineWidth":0,"outputs":3,"loss":"pixel_cross_entropy"}"#.utf8))
        XCTAssertEqual([old.classifierKernel, old.skipKernel], [1, 1])

        // The refinement starts as the identity: its output layer is zero.
        let plain = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, refineWidth: 0), seed: 1)
        let refined = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, refineWidth: 4), seed: 1)
        XCTAssertEqual(refined.head.inputs, ["stage2", "stage1", "input"])
        refined.setMode(.inference); plain.setMode(.inference)
        let refinedScores = refined(images)
        XCTAssertEqual(refinedScores.shape, [2, 3, 16, 16])
        // Everything before the refinement is drawn first, so the two models share those weights.
        XCTAssertEqual(refinedScores.scalars, plain(images).scalars)
        // A skip the backbone lacks, or one coarser than the map before it, is refused.
        XCTAssertThrowsError(try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: dataset, skips: ["stage9"]), seed: 1))
        var coarser = try smallSegmenterConfiguration(dataset: dataset, skips: ["stage1"])
        coarser.head.deepest = "stage1"
        coarser.head.skips = ["stage2"]
        XCTAssertThrowsError(try Model<SegmentationHead>(coarser, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("coarser"), "\(error)")
        }
    }

    /// Options of earlier Percepts that measured no gain are refused by name in old model
    /// files, unless the file holds their default value.
    func testRetiredOptionsInOldFilesAreRefusedByName() throws {
        let base = #""segmentationInput":"stage2","segmentationSkips":[],"refineWidth":0,"outputs":3"#
        func decode(_ extra: String) throws -> SegmentationHead.Architecture {
            try JSONDecoder().decode(SegmentationHead.Architecture.self, from: Data("{\(base)\(extra)}".utf8))
        }
        XCTAssertNoThrow(try decode(#","decoderWidth":0,"loss":"pixel_cross_entropy""#))
        for (extra, option) in [(#","context":"attention","contextKeys":32"#, "context"), (#","hiddenWidth":96"#, "hidden layer"),
                                (#","refineMaps":["stage1"]"#, "refinement from backbone maps"), (#","lovaszWeight":1"#, "Lovász"),
                                (#","decoderWidth":32"#, "U-Net decoder"), (#","loss":"focal""#, "segmentation loss")] {
            XCTAssertThrowsError(try decode(extra), extra) { XCTAssertTrue("\($0)".contains(option), "\($0)") }
        }
        // Through a model file: one error naming the file and the option.
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 45)
        let model = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5"))), seed: 1)
        var json = model.configuration.json()
        json.removeLast()
        json += #","hiddenWidth":96}"#
        try ModelCheckpoint(module: model, architecture: json, task: "segmentation", classNames: model.configuration.classes).write(to: folder.file("old.h5"))
        XCTAssertThrowsError(try Model<SegmentationHead>.load(path: folder.file("old.h5"))) { error in
            XCTAssertTrue("\(error)".contains("old.h5") && "\(error)".contains("hidden layer before the scores"), "\(error)")
        }
    }

    /// With flip averaging the predictor commutes with mirroring: segmenting a mirrored image
    /// gives the mirrored class map, exactly (a single pass gives no such guarantee).
    func testFlipAveragedPredictionsMirrorWithTheImage() throws {
        let folder = TemporaryFolder()
        try writeSegmentationData(folder.file("data.h5"), count: 4, seed: 44)
        let configuration = try smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5")), refineWidth: 3,
                                                            flipAverage: true)
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
        let model = try Model<SegmentationHead>(smallSegmenterConfiguration(dataset: SegmentationDataset(path: folder.file("data.h5"))), seed: 1)
        // One image, 3 classes, 1 x 4 pixels (class-major planes).
        let logits = Tensor(shape: [1, 3, 1, 4], scalars: [0, 5, 1, 2,
                                                            3, 5, 0, 2,
                                                            1, 4, 2, 2])
        let prediction = try XCTUnwrap(model.head.decode(logits, geometry: InputGeometry(height: 1, width: 4)).first)
        XCTAssertEqual(prediction.mask, [1, 0, 2, 0])
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
