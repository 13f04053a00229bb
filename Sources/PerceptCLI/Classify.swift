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
    var loss: String = "cross-entropy"

    @Option(help: "Label smoothing for cross-entropy (default: 0.1).")
    var labelSmoothing: Float?

    func validate() throws {
        guard ["cross-entropy", "hinge"].contains(loss) else { throw ValidationError("--loss must be cross-entropy or hinge, got '\(loss)'") }
        if let labelSmoothing, !(0..<1).contains(labelSmoothing) { throw ValidationError("--label-smoothing must be in [0, 1)") }
    }

    func run() throws {
        try failingCleanly {
            let dataset = try ClassificationDataset(path: arguments.data)
            let validation = try arguments.val.map { try ClassificationDataset(path: $0) }
            var recipe = Recipe.classification
            if let labelSmoothing { recipe.labelSmoothing = labelSmoothing }
            if loss == "hinge" { recipe.labelSmoothing = 0 }
            try runTraining(arguments, task: .classification, base: recipe, dataset: dataset, validation: validation,
                            outputs: dataset.classNames.count, loss: loss == "hinge" ? "hinge" : "cross_entropy",
                            objective: { ClassificationObjective(classes: $0.classes.count, hinge: $0.loss == "hinge",
                                                                 labelSmoothing: $0.labelSmoothing) })
        }
    }
}

struct ClassifyEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Accuracy, top-5, per-class precision/recall/F1 and the confusion matrix.")

    @OptionGroup var arguments: EvalArguments

    func run() throws {
        try failingCleanly {
            let (model, _, loader) = try arguments.open(.classification, ClassificationDataset.init(path:))
            let c = model.configuration
            let metrics = try ClassificationMetrics.measure(model, loader)
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
            if let threads = arguments.threads { Threads.set(threads) }
            let (model, _) = try Model.load(path: arguments.model, expecting: .classification)
            let paths = try collectImagePaths(arguments.images)
            let classes = model.configuration.classes
            let probabilities = model.predict(try loadImages(paths, for: model.configuration)).softmax(axis: 1)
            let k = classes.count
            var csv = "image,label,score" + (arguments.scores ? "," + classes.map(csvField).joined(separator: ",") : "") + "\n"
            for (i, path) in paths.enumerated() {
                let row = Array(UnsafeBufferPointer(start: probabilities.pointer + i * k, count: k))
                let ranked = row.indices.sorted { row[$0] > row[$1] }.prefix(min(top, k))
                for c in ranked {
                    csv += "\(csvField(path)),\(csvField(classes[c])),\(String(format: "%.6f", row[c]))"
                    if arguments.scores { csv += "," + row.map { String(format: "%.6f", $0) }.joined(separator: ",") }
                    csv += "\n"
                }
            }
            try emit(csv, to: arguments.output)
        }
    }
}
