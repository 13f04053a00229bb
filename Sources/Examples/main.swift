// The programs of docs/library.md, compiled by `swift build` so they never rot, and run by
// CLITests.LibraryExampleTests. Each section is what a Swift user of Percept copies.
//
//   percept-examples predict MODEL.h5 IMAGE.png
//   percept-examples train TRAIN.h5 OUTPUT.h5
//   percept-examples settings DETECTOR.h5 SCENE.png
//   percept-examples custom-head TRAIN.h5
import Foundation
import PerceptCore
import PerceptDatasets
import PerceptTasks

// MARK: 1. Load a shipped model and predict on an image file

func predict(model path: String, image: String) throws {
    let (classifier, _) = try Classifier.load(path: path)
    let images = try loadImages([image], for: classifier.configuration)   // [1, C, H, W], normalised
    let prediction = classifier.predict(images)[0]
    for (label, score) in prediction.top(3) {
        print(classifier.configuration.classes[label], String(format: "%.3f", score))
    }
}

// MARK: 2. Train a classifier from an HDF5 file

func train(data: String, output: String) throws {
    var config = ClassificationConfig()             // the tuned recipe
    config.train.epochs = 1                          // settings are typed fields...
    config.backbone.widths = [8, 16, 32]
    config = try config.applying(ConfigOverrides(assignments: ["batch=16"]))   // ...or keys, as --set takes them
    var run = TrainingRun(config, data: data, output: output)
    run.force = true
    run.log = { print("  " + $0) }
    let model = try run.run()
    print("trained \(model.parameterCount) parameters; \(output) stores this configuration:")
    print(try TrainingRun<ClassificationConfig>.storedConfig(in: output).yaml(), terminator: "")
}

// MARK: 3. Override a setting in code

func settings(detector path: String, scene: String) throws {
    let (detector, _) = try Model<WindowHead>.load(path: path)
    let image = try ImageFile.read(path: scene, channels: detector.configuration.inputChannels)
    let c = detector.configuration
    let input = normalisedTensor(image, mean: c.mean, std: c.std)
    let geometry = InputGeometry(height: image.height, width: image.width)
    for threshold: Float in [0.05, 0.9] {
        var settings = detector.head.settings            // the model file's defaults
        settings.scoreThreshold = threshold
        settings.refinements = 0                         // one dense look, no second looks
        try detector.use(settings)                       // checked; the weights stay as they are
        let found = detector.predict(input, geometry: geometry)[0]
        print("score threshold \(threshold): \(found.count) detections")
    }
}

// MARK: 4. Plug a custom head onto a backbone

/// Classifies from a named backbone map (a tap) with 1x1 class scores averaged over positions:
/// the whole Head protocol in one small type.
final class TapClassifier: Module, Head {
    struct Architecture: Codable, Equatable, Sendable {
        var map: String
        var classes: Int
    }
    typealias Settings = NoSettings
    typealias Targets = [Int32]
    typealias Prediction = ClassPrediction
    typealias Metrics = ClassificationMetrics

    static let task = VisionTask.classification
    let architecture: Architecture
    var settings = NoSettings()
    let scores: Conv2D

    init(_ architecture: Architecture, settings: NoSettings, features: [FeatureMapInfo], geometry: InputGeometry,
         seed: UInt64, using rng: inout SeededGenerator) throws {
        guard let map = features.first(where: { $0.name == architecture.map }) else {
            throw ModelError("no map '\(architecture.map)' among \(features.map(\.name))")
        }
        self.architecture = architecture
        scores = Conv2D(map.channels, architecture.classes, kernel: 1, using: &rng)
    }

    var inputs: [String] { [architecture.map] }
    var classCount: Int { architecture.classes }

    func callAsFunction(_ features: FeatureMaps) -> Tensor { scores(features[architecture.map]).globalAveragePool() }
    func targets(of batch: Batch) -> [Int32] { batch.labels }
    func loss(_ outputs: Tensor, _ labels: [Int32], geometry: InputGeometry) -> Tensor {
        softmaxCrossEntropy(logits: outputs, labels: labels)
    }
    func decode(_ outputs: Tensor, geometry: InputGeometry) -> [ClassPrediction] {
        let probabilities = outputs.softmax(axis: 1), (n, k) = (outputs.shape[0], outputs.shape[1])
        return (0..<n).map { i in
            ClassPrediction(logits: Array(UnsafeBufferPointer(start: outputs.pointer + i * k, count: k)),
                            probabilities: Array(UnsafeBufferPointer(start: probabilities.pointer + i * k, count: k)))
        }
    }
    func makeMetrics() -> ClassificationMetrics { ClassificationMetrics(classes: architecture.classes) }
    func measure(_ predictions: [ClassPrediction], _ batch: Batch, into metrics: inout ClassificationMetrics) {
        metrics.add(predictions, labels: batch.labels)
    }
    func evaluation(of metrics: ClassificationMetrics, classes: [String]) -> Evaluation {
        Evaluation(metricName: "accuracy", value: metrics.accuracy, summary: String(format: "accuracy %.4f", metrics.accuracy),
                   metrics: [.init("accuracy", "accuracy", .metric(metrics.accuracy))])
    }
}

func customHead(data path: String) throws {
    let dataset = try ClassificationDataset(path: path)
    let backbone = BackbonePreset.resnet8.configuration(inputChannels: dataset.channels)
    let (mean, std) = try channelStatistics(dataset)
    let configuration = ModelConfiguration<TapClassifier>(
        task: .classification, inputChannels: dataset.channels, inputHeight: dataset.height, inputWidth: dataset.width,
        classes: dataset.classNames, backbone: backbone, head: .init(map: "stage2", classes: dataset.classNames.count),
        settings: NoSettings(), mean: mean, std: std)
    let model = try Model<TapClassifier>(configuration, seed: 0)
    var options = TrainingOptions()
    options.epochs = 2
    options.batchSize = 16
    let loader = DataLoader(dataset, batchSize: 16, shuffle: true, mean: mean, std: std, seed: 0)
    let output = NSTemporaryDirectory() + "tap-classifier-\(UUID().uuidString).h5"
    defer { try? FileManager.default.removeItem(atPath: output); try? FileManager.default.removeItem(atPath: Trainer.checkpointPath(for: output)) }
    let trainer = Trainer(model: model, train: loader, validation: nil, options: options, outputPath: output)
    trainer.log = { _ in }
    try trainer.run()
    let evaluation = try model.evaluate(DataLoader(dataset, batchSize: 64, shuffle: false, mean: mean, std: std))
    print("a head on stage2 of a \(backbone.kind.rawValue) backbone: training \(evaluation.summary)")
}

// MARK: the command line of this example program

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    switch (arguments.first, arguments.count) {
    case ("predict", 3): try predict(model: arguments[1], image: arguments[2])
    case ("train", 3): try train(data: arguments[1], output: arguments[2])
    case ("settings", 3): try settings(detector: arguments[1], scene: arguments[2])
    case ("custom-head", 2): try customHead(data: arguments[1])
    default:
        FileHandle.standardError.write(Data("usage: percept-examples predict MODEL IMAGE | train DATA OUTPUT | settings DETECTOR SCENE | custom-head DATA\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
