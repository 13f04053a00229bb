import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Multi-label tagging (independent sigmoids).",
        subcommands: [TagTrain.self, TagEval.self, TagPredict.self])
}

struct TagTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a tagger on a tagging dataset.",
        discussion: "With no options this trains the tuned recipe (ResNet-8 with a stride-2 stem and global max pooling, binary cross-entropy, output layer started at the tags' base rates in the training set, SGD with Nesterov momentum, cosine schedule, crop and flip augmentation). With --val, per-tag decision thresholds are tuned on the validation set to maximise each tag's F1 and stored in the model.")

    @OptionGroup var arguments: TrainArguments

    @Flag(inversion: .prefixedNo, help: "Tune per-tag thresholds on the validation set (default: on when --val is given).")
    var tuneThresholds = true

    func validate() throws { try arguments.refusePasting(task: "tagging") }

    func run() throws {
        try failingCleanly {
            let dataset = try TaggingDataset(path: arguments.data)
            let validation = try arguments.val.map { try TaggingDataset(path: $0) }
            let tags = dataset.classNames.count
            try runTraining(TaggingHead.self, arguments, base: .tagging, dataset: dataset, validation: validation, configure: { recipe, map, kind, geometry in
                TaggingHead.Configuration(layers: try .standard(for: map, kind: kind, geometry: geometry, pooling: recipe.pooling, outputs: tags))
            }, prepare: { model, recipe, _ in
                model.head.initializeAtBaseRates(try tagFrequencies(dataset), seed: recipe.options.seed &+ 2)
            })
            if let validation, tuneThresholds {
                let (model, checkpoint) = try Tagger.load(path: arguments.output)
                let c = model.configuration
                let metrics = try model.measure(DataLoader(validation, batchSize: 256, shuffle: false, mean: c.mean, std: c.std))
                let thresholds = metrics.tunedThresholds()
                model.head.setThresholds(thresholds)
                try model.save(to: arguments.output, epoch: checkpoint.epoch, step: checkpoint.step)
                FileHandle.standardError.write(Data(("tuned per-tag thresholds on " + validation.path + String(format: ": micro-F1 %.4f at 0.5 -> %.4f\n",
                    metrics.microF1(thresholds: Array(repeating: 0.5, count: tags)),
                    metrics.microF1(thresholds: thresholds))).utf8))
            }
        }
    }
}

struct TagEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Mean average precision, micro/macro/example F1 and per-tag precision/recall/F1.")

    @OptionGroup var arguments: EvalArguments

    func run() throws {
        try failingCleanly {
            let (model, _, loader): (Tagger, _, _) = try arguments.open(TaggingDataset.init(path:))
            let c = model.configuration
            let metrics = try model.measure(loader)
            let thresholds = model.head.thresholds
            let perTag = metrics.perTag(thresholds: thresholds)
            let summary: [String: Double] = [
                "mAP": metrics.meanAveragePrecision, "micro_f1": metrics.microF1(thresholds: thresholds),
                "macro_f1": metrics.macroF1(thresholds: thresholds), "example_f1": metrics.exampleF1(thresholds: thresholds),
            ]
            if arguments.json {
                var object: [String: Any] = summary
                object["images"] = metrics.count
                object["per_tag"] = c.classes.indices.map { t in
                    ["tag": c.classes[t], "threshold": Double(thresholds[t]), "average_precision": metrics.averagePrecision(tag: t),
                     "precision": perTag[t].precision, "recall": perTag[t].recall, "f1": perTag[t].f1, "support": perTag[t].support] as [String: Any]
                }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print(String(format: "images %d  mAP %.4f  micro-F1 %.4f  macro-F1 %.4f  example-F1 %.4f", metrics.count,
                         summary["mAP"]!, summary["micro_f1"]!, summary["macro_f1"]!, summary["example_f1"]!))
            let width = max(12, c.classes.map(\.count).max() ?? 0)
            print("tag".padding(toLength: width, withPad: " ", startingAt: 0) + "  threshold     AP  precision  recall     f1  support")
            for t in c.classes.indices {
                print(c.classes[t].padding(toLength: width, withPad: " ", startingAt: 0)
                      + String(format: "  %9.3f  %.4f  %9.4f  %6.4f  %.4f  %7d", thresholds[t], metrics.averagePrecision(tag: t),
                               perTag[t].precision, perTag[t].recall, perTag[t].f1, perTag[t].support))
            }
        }
    }
}

struct TagPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Tag PNG images; writes CSV `image,tags` with tag names separated by ';', as `convert tags` reads them.")

    @OptionGroup var arguments: PredictArguments

    func run() throws {
        try failingCleanly {
            let (model, paths, predictions) = try arguments.predict(TaggingHead.self)
            let names = model.configuration.classes
            var csv = "image,tags" + (arguments.scores ? "," + names.map(csvField).joined(separator: ",") : "") + "\n"
            for (path, prediction) in zip(paths, predictions) {
                csv += "\(csvField(path)),\(csvField(TagsCSV.field(prediction.tags.map { names[$0] })))"
                if arguments.scores { csv += "," + prediction.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",") }
                csv += "\n"
            }
            try emit(csv, to: arguments.output, force: arguments.force)
        }
    }
}
