import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Single-label image classification (softmax).",
        subcommands: [ClassifyTrain.self, ClassifyEval.self, ClassifyPredict.self])
}

struct ClassifyTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classifier on a classification dataset.",
        discussion: "With no options this trains the tuned recipe (ResNet-8, SGD with Nesterov momentum, cosine schedule with warm-up, label smoothing 0.1, crop and flip augmentation).")

    @OptionGroup var arguments: TrainArguments

    @Option(help: "Loss: cross-entropy (softmax log-likelihood) or hinge (multi-class margin).")
    var loss: ClassificationLoss = .crossEntropy

    @Option(help: "Label smoothing for cross-entropy (default: 0.1).")
    var labelSmoothing: Float?

    func validate() throws {
        if let labelSmoothing, !(0..<1).contains(labelSmoothing) { throw ValidationError("--label-smoothing must be in [0, 1)") }
    }

    func run() throws {
        try failingCleanly {
            let dataset = try ClassificationDataset(path: arguments.data)
            let validation = try arguments.val.map { try ClassificationDataset(path: $0) }
            var recipe = Recipe.classification
            if let labelSmoothing { recipe.labelSmoothing = labelSmoothing }
            if loss == .hinge { recipe.labelSmoothing = 0 }
            let classes = dataset.classNames.count
            try runTraining(ClassificationHead.self, arguments, base: recipe, dataset: dataset, validation: validation) { recipe, map, kind, geometry in
                ClassificationHead.Configuration(
                    layers: try .standard(for: map, kind: kind, geometry: geometry, pooling: recipe.pooling, outputs: classes),
                    loss: loss, labelSmoothing: recipe.labelSmoothing)
            }
        }
    }
}

struct ClassifyEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Accuracy, top-5, per-class precision/recall/F1 and the confusion matrix.")

    @OptionGroup var arguments: EvalArguments

    func run() throws {
        try failingCleanly {
            let (model, _, loader): (Classifier, _, _) = try arguments.open(ClassificationDataset.init(path:))
            let c = model.configuration
            let metrics = try model.measure(loader)
            let perClass = metrics.perClass
            if arguments.json {
                let object: [String: Any] = [
                    "images": metrics.count, "accuracy": metrics.accuracy, "top_k": metrics.topK,
                    "top_k_accuracy": metrics.topKAccuracy, "macro_f1": metrics.macroF1,
                    "per_class": zip(c.classes, perClass).map { name, p in
                        ["class": name, "precision": p.precision, "recall": p.recall, "f1": p.f1, "support": p.support] as [String: Any]
                    },
                    "confusion_matrix": metrics.confusion,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print(String(format: "images %d  accuracy %.4f  top-%d accuracy %.4f  macro-F1 %.4f",
                         metrics.count, metrics.accuracy, metrics.topK, metrics.topKAccuracy, metrics.macroF1))
            let width = max(12, c.classes.map(\.count).max() ?? 0)
            print("class".padding(toLength: width, withPad: " ", startingAt: 0) + "  precision  recall     f1  support")
            for (name, p) in zip(c.classes, perClass) {
                print(name.padding(toLength: width, withPad: " ", startingAt: 0)
                      + String(format: "  %9.4f  %6.4f  %6.4f  %7d", p.precision, p.recall, p.f1, p.support))
            }
            print("confusion matrix (rows: truth, columns: prediction)")
            for row in metrics.confusion { print(row.map { String(format: "%6d", $0) }.joined()) }
        }
    }
}

struct ClassifyPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify PNG images; writes CSV `image,label,score` (top K rows per image).")

    @OptionGroup var arguments: PredictArguments

    @Option(help: "Rows per image: the K most likely classes.")
    var top: Int = 1

    func validate() throws { if top < 1 { throw ValidationError("--top must be at least 1") } }

    func run() throws {
        try failingCleanly {
            let (model, paths, predictions) = try arguments.predict(ClassificationHead.self)
            let classes = model.configuration.classes
            var csv = "image,label,score" + (arguments.scores ? "," + classes.map(csvField).joined(separator: ",") : "") + "\n"
            for (path, prediction) in zip(paths, predictions) {
                for (label, score) in prediction.top(top) {
                    csv += "\(csvField(path)),\(csvField(classes[label])),\(String(format: "%.6f", score))"
                    if arguments.scores { csv += "," + prediction.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",") }
                    csv += "\n"
                }
            }
            try emit(csv, to: arguments.output, force: arguments.force)
        }
    }
}
