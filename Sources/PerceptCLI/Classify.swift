import ArgumentParser
import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Single-label image classification (softmax).",
        subcommands: [ClassifyTrain.self, ClassifyEval.self, ClassifyPredict.self])
}

struct ClassifyTrain: DataParallelCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a classifier on a classification dataset (defaults: the tuned recipe; --show-config lists it).")

    @OptionGroup var arguments: TrainArguments

    func run() throws { try arguments.train(ClassificationConfig.self) }
}

struct ClassifyEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Accuracy, top-5, per-class precision/recall/F1 and the confusion matrix.")

    @OptionGroup var arguments: EvalArguments

    func run() throws { try arguments.evaluate(ClassificationHead.self, ClassificationDataset.init(path:)) }
}

struct ClassifyPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict", abstract: "Classify PNG or JPEG images; writes CSV `image,label,score` (top K rows per image).")

    @OptionGroup var arguments: PredictArguments
    @OptionGroup var csv: CSVOutput

    @Option(help: "Rows per image: the K most likely classes.")
    var top: Int = 1

    @Flag(help: "Fit images to the model's input with their aspect kept on a black canvas, as `convert --letterbox` made its data (default: stretch, as `convert --size`).")
    var letterbox = false

    @Flag(help: "Add one score column per class.")
    var scores = false

    func validate() throws { if top < 1 { throw ValidationError("--top must be at least 1") } }

    func run() throws {
        guard let (model, paths) = try arguments.open(ClassificationHead.self) else { return }
        try csv.check(inputs: [arguments.model] + paths, force: arguments.force)
        let classes = model.configuration.classes
        var text = "image,label,score" + (scores ? "," + classes.map(csvField).joined(separator: ",") : "") + "\n"
        let count = try arguments.forEachBatch(of: paths, batchSize: 256) { batch in
            let predictions = model.predict(modelInput(batch.map(\.image), for: model.configuration, letterbox: letterbox))
            for ((path, _), prediction) in zip(batch, predictions) {
                for (label, score) in prediction.top(top) {
                    text += "\(csvField(path)),\(csvField(classes[label])),\(String(format: "%.6f", score))"
                    if scores { text += "," + prediction.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",") }
                    text += "\n"
                }
            }
        }
        try csv.write(text, force: arguments.force, what: "predictions for \(count) image\(count == 1 ? "" : "s")")
    }
}
