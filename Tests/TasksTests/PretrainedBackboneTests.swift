import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// Starting one task's backbone from another task's model file (a segmenter from a classifier).
final class PretrainedBackboneTests: XCTestCase {
    let backbone = BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])

    /// A classifier of 16 x 16 images with `backbone`, its weights and batch-norm statistics
    /// drawn at random (not the fresh ones every model of `seed` would get), saved to `path`.
    func writeClassifier(_ path: String, backbone: BackboneConfiguration, mean: [Float] = [0.3], std: [Float] = [0.4]) throws -> Classifier {
        let configuration = ModelConfiguration<ClassificationHead>(
            task: .classification, inputChannels: 1, inputHeight: 16, inputWidth: 16, classes: ["a", "b", "c"],
            backbone: backbone,
            head: .init(layers: VectorHeadConfiguration(pooling: .global, inFeatures: backbone.widths.last!, outputs: 3)), settings: .init(),
            mean: mean, std: std)
        let classifier = try Classifier(configuration, seed: 5)
        var generator = SeededGenerator(seed: 77)
        for (_, parameter) in classifier.index.parameters { parameter.value = Tensor.randomNormal(parameter.value.shape, using: &generator) }
        for (_, buffer) in classifier.index.buffers {
            let values = Tensor.randomNormal(buffer.value.shape, using: &generator)
            // Running variances must stay positive.
            buffer.value = Tensor(shape: values.shape, scalars: values.scalars.map { abs($0) + 0.5 })
        }
        try classifier.save(to: path)
        return classifier
    }

    func segmenterConfiguration(backbone: BackboneConfiguration, mean: [Float], std: [Float]) -> ModelConfiguration<SegmentationHead> {
        ModelConfiguration(task: .segmentation, inputChannels: 1, inputHeight: 16, inputWidth: 16,
                           classes: ["background", "horizontal", "vertical"], backbone: backbone,
                           head: SegmentationHead.Architecture(deepest: "stage2", classes: 3), settings: .init(),
                           mean: mean, std: std)
    }

    /// The segmenter's backbone computes exactly the classifier's features; its head is fresh.
    func testSegmenterStartsFromTheClassifiersBackbone() throws {
        let folder = TemporaryFolder()
        let classifier = try writeClassifier(folder.file("classifier.h5"), backbone: backbone)
        let pretrained = try PretrainedBackbone(path: folder.file("classifier.h5"))
        XCTAssertEqual(pretrained.configuration, backbone)
        XCTAssertEqual([pretrained.mean, pretrained.std], [[0.3], [0.4]])
        let configuration = segmenterConfiguration(backbone: backbone, mean: [0.3], std: [0.4])
        let segmenter = try Model<SegmentationHead>(configuration, startingFrom: pretrained, seed: 2)
        let fresh = try Model<SegmentationHead>(configuration, seed: 2)

        var generator = SeededGenerator(seed: 9)
        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        classifier.setMode(.inference); segmenter.setMode(.inference); fresh.setMode(.inference)
        let expected = classifier.backbone(images).scalars
        XCTAssertEqual(segmenter.backbone(images).scalars, expected)
        XCTAssertNotEqual(fresh.backbone(images).scalars, expected, "a fresh backbone would pass this test too")
        // The head is the one `seed` draws, untouched by the file.
        XCTAssertEqual(segmenter.head.classifier.weight.value.scalars, fresh.head.classifier.weight.value.scalars)
    }

    /// A backbone with stages after the classifier's last takes the classifier's stem and
    /// stages and keeps its fresh later ones; other differences are refused.
    func testADeeperBackboneStartsItsFirstStagesFromTheClassifier() throws {
        var deeper = backbone
        deeper.widths = [4, 8, 12]; deeper.blocks = [1, 1, 1]
        XCTAssertTrue(deeper.extends(backbone))
        XCTAssertFalse(backbone.extends(backbone))
        XCTAssertFalse(backbone.extends(deeper))
        var changed = deeper
        changed.widths = [4, 16, 12]
        XCTAssertFalse(changed.extends(backbone))
        var strided = deeper
        strided.stemStride = 2
        XCTAssertFalse(strided.extends(backbone))

        let folder = TemporaryFolder()
        let classifier = try writeClassifier(folder.file("classifier.h5"), backbone: backbone)
        let pretrained = try PretrainedBackbone(path: folder.file("classifier.h5"))
        var configuration = segmenterConfiguration(backbone: deeper, mean: [0.3], std: [0.4])
        configuration.head.deepest = "stage3"
        let segmenter = try Model<SegmentationHead>(configuration, startingFrom: pretrained, seed: 2)
        let fresh = try Model<SegmentationHead>(configuration, seed: 2)
        let loaded = Dictionary(uniqueKeysWithValues: segmenter.index.parameters.map { ($0.path, $0.parameter.value.scalars) }
            + segmenter.index.buffers.map { ($0.path, $0.buffer.value.scalars) })
        let drawn = Dictionary(uniqueKeysWithValues: fresh.index.parameters.map { ($0.path, $0.parameter.value.scalars) }
            + fresh.index.buffers.map { ($0.path, $0.buffer.value.scalars) })
        let source = classifier.index.parameters.map { ($0.path, $0.parameter.value.scalars) }
            + classifier.index.buffers.map { ($0.path, $0.buffer.value.scalars) }
        var copied = 0
        for (path, scalars) in source where path.hasPrefix("backbone.") {
            XCTAssertEqual(loaded[path], scalars, path)
            copied += 1
        }
        XCTAssertGreaterThan(copied, 10)
        let third = loaded.keys.filter { $0.hasPrefix("backbone.stages.2.") }
        XCTAssertFalse(third.isEmpty)
        for path in third { XCTAssertEqual(loaded[path], drawn[path], "\(path) should start fresh") }

        configuration.backbone = changed
        XCTAssertThrowsError(try Model<SegmentationHead>(configuration, startingFrom: pretrained, seed: 2)) { error in
            XCTAssertTrue("\(error)".contains("classifier.h5") && "\(error)".contains("backbone"), "\(error)")
        }
    }

    func testMismatchedBackbonesNormalisationAndBadWeightsAreRefused() throws {
        let folder = TemporaryFolder()
        var wider = backbone
        wider.widths = [4, 16]
        _ = try writeClassifier(folder.file("wide.h5"), backbone: wider)
        let pretrained = try PretrainedBackbone(path: folder.file("wide.h5"))
        XCTAssertThrowsError(try Model<SegmentationHead>(segmenterConfiguration(backbone: backbone, mean: [0.3], std: [0.4]),
                                                         startingFrom: pretrained, seed: 0)) { error in
            XCTAssertTrue("\(error)".contains("wide.h5") && "\(error)".contains("backbone"), "\(error)")
        }
        XCTAssertThrowsError(try Model<SegmentationHead>(segmenterConfiguration(backbone: wider, mean: [0.1], std: [0.4]),
                                                         startingFrom: pretrained, seed: 0)) { error in
            XCTAssertTrue("\(error)".contains("wide.h5") && "\(error)".contains("mean"), "\(error)")
        }

        // A weight that is not finite is refused when the file is read, naming the tensor.
        let classifier = try writeClassifier(folder.file("nan.h5"), backbone: backbone)
        let conv = try XCTUnwrap(classifier.index.parameters.first { $0.path == "backbone.stem.weight" }).parameter
        var scalars = conv.value.scalars
        scalars[3] = .nan
        conv.value = Tensor(shape: conv.value.shape, scalars: scalars)
        try classifier.save(to: folder.file("nan.h5"))
        XCTAssertThrowsError(try PretrainedBackbone(path: folder.file("nan.h5"))) { error in
            XCTAssertTrue("\(error)".contains("nan.h5") && "\(error)".contains("backbone.stem.weight"), "\(error)")
        }
        // A dataset is not a model file.
        try writeSegmentationData(folder.file("data.h5"), count: 2, seed: 1)
        XCTAssertThrowsError(try PretrainedBackbone(path: folder.file("data.h5"))) { error in
            XCTAssertTrue("\(error)".contains("data.h5"), "\(error)")
        }
    }

    func testShippedModelsAreFoundThroughTheEnvironmentThenThePackage() throws {
        let folder = TemporaryFolder()
        XCTAssertTrue(FileManager.default.createFile(atPath: folder.file("mine.h5"), contents: Data()))
        setenv("PERCEPT_MODELS", folder.path, 1)
        defer { unsetenv("PERCEPT_MODELS") }
        XCTAssertEqual(ShippedModels.locate("mine.h5"), folder.file("mine.h5"))
        XCTAssertNil(ShippedModels.locate("no-such-model.h5"))
        // The package's own models folder, above the test binary in .build.
        let found = try XCTUnwrap(ShippedModels.locate("fashion-classifier.h5"))
        XCTAssertEqual(try PretrainedBackbone(path: found).configuration.widths, [32, 64, 128])
    }

    /// A W1-shaped classifier of 16 x 16 windows (unpadded convolutions, flatten, hidden layer)
    /// becomes a dense window classifier: on one window the detector's class logits (after
    /// background) are the classifier's, which a wrongly ordered reshape of the hidden layer
    /// would break.
    func testWindowHeadStartsFromAW1Classifier() throws {
        let folder = TemporaryFolder()
        var plain = BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [3, 4])
        plain.padding = 0
        let geometry = InputGeometry(height: 16, width: 16)
        let layers = try VectorHeadConfiguration.standard(for: plain.featureInfo.last!, kind: .plain, geometry: geometry,
                                                          pooling: .flatten, outputs: 3)
        // 16 -> conv 14 -> pool 7 -> conv 5 -> pool 2: a 4 x 2 x 2 map.
        XCTAssertEqual([layers.inFeatures, layers.hidden], [16, 128])
        var widerLayers = layers
        widerLayers.hidden = 6
        let configuration = ModelConfiguration<ClassificationHead>(task: .classification, inputChannels: 1, inputHeight: 16, inputWidth: 16,
                                                                   classes: ["a", "b", "c"], backbone: plain,
                                                                   head: .init(layers: widerLayers), settings: .init(), mean: [0.3], std: [0.4])
        let classifier = try Classifier(configuration, seed: 4)
        var generator = SeededGenerator(seed: 21)
        for (_, parameter) in classifier.index.parameters { parameter.value = Tensor.randomNormal(parameter.value.shape, using: &generator) }
        try classifier.save(to: folder.file("w1.h5"))
        let pretrained = try PretrainedBackbone(path: folder.file("w1.h5"))

        let window = WindowHead.Architecture(input: "stage2", window: 16, featureSide: 2, hidden: 6, classes: 3)
        var settings = WindowHead.Settings()
        settings.scales = [1]
        let detector = try Model<WindowHead>(ModelConfiguration(task: .detection, inputChannels: 1, inputHeight: 16, inputWidth: 16,
                                                                classes: ["a", "b", "c"], backbone: plain, head: window, settings: settings,
                                                                mean: [0.3], std: [0.4]),
                                             startingFrom: pretrained, seed: 1)
        let freshBackground = detector.head.output.weight.value.scalars.prefix(6)
        XCTAssertFalse(detector.head.start(from: pretrained, classes: ["a", "c", "b"]), "classes in another order")
        XCTAssertTrue(detector.head.start(from: pretrained, classes: ["a", "b", "c"]))
        XCTAssertEqual(Array(detector.head.output.weight.value.scalars.prefix(6)), Array(freshBackground), "background row kept")

        let images = Tensor.randomNormal([2, 1, 16, 16], using: &generator)
        classifier.setMode(.inference); detector.setMode(.inference)
        let expected = classifier(images).scalars
        let outputs = detector(images)
        XCTAssertEqual(outputs.shape, [2, 3 + 5, 1, 1])
        for image in 0..<2 {
            for k in 0..<3 {
                XCTAssertEqual(outputs.scalars[image * 8 + 1 + k], expected[image * 3 + k], accuracy: 1e-4, "image \(image) class \(k)")
            }
        }
    }

    /// FCN's convolutionalised classifier: where the deepest map is the same vector f over a
    /// 3x3 neighbourhood, the segmenter's item scores there are the classifier's logits W f + b.
    func testSegmentationScoresStartFromTheClassifiersOutputLayer() throws {
        let folder = TemporaryFolder()
        let classifier = try writeClassifier(folder.file("classifier.h5"), backbone: backbone)
        let pretrained = try PretrainedBackbone(path: folder.file("classifier.h5"))
        var configuration = segmenterConfiguration(backbone: backbone, mean: [0.3], std: [0.4])
        configuration.classes = ["background", "a", "b", "c"]
        configuration.head.classes = 4
        configuration.head.classifierKernel = 3
        let segmenter = try Model<SegmentationHead>(configuration, startingFrom: pretrained, seed: 2)
        let fresh = segmenter.head.classifier.weight.value.scalars
        XCTAssertFalse(segmenter.head.start(from: pretrained, classes: ["a", "b", "c", "background"]), "background must come first")
        XCTAssertTrue(segmenter.head.start(from: pretrained, classes: ["background", "a", "b", "c"]))
        XCTAssertEqual(Array(segmenter.head.classifier.weight.value.scalars.prefix(8 * 9)), Array(fresh.prefix(8 * 9)), "background row kept")

        var generator = SeededGenerator(seed: 3)
        let f = (0..<8).map { _ in Float.random(in: -1...1, using: &generator) }
        let map = Tensor(shape: [1, 8, 5, 5], scalars: f.flatMap { Array(repeating: $0, count: 25) })
        let scores = segmenter.head.classifier(map)
        let w = classifier.head.output.weight.value.scalars, b = try XCTUnwrap(classifier.head.output.bias).value.scalars
        for c in 0..<3 {
            let logit = (0..<8).reduce(b[c]) { $0 + w[c * 8 + $1] * f[$1] }
            // Position (2, 2): its 3x3 neighbourhood lies inside the map.
            XCTAssertEqual(scores.scalars[(c + 1) * 25 + 2 * 5 + 2], logit, accuracy: 1e-5, "class \(c)")
        }
    }
}
