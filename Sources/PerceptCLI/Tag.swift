import ArgumentParser
import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Multi-label tagging (independent sigmoids).",
        subcommands: [TagTrain.self, TagEval.self, TagPredict.self])
}

struct TagTrain: DataParallelCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a tagger on a tagging dataset (defaults: the tuned recipe; --show-config lists it).",
        discussion: "With --val, each tag's decision threshold is tuned for F1 on the validation set and stored in the model (key tune_thresholds).")

    @OptionGroup var arguments: TrainArguments

    func run() throws { try arguments.train(TaggingConfig.self) }
}

struct TagEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Mean average precision, micro/macro/example F1 and per-tag precision/recall/F1.")

    @OptionGroup var arguments: EvalArguments

    func run() throws { try arguments.evaluate(TaggingHead.self, TaggingDataset.init(path:)) }
}

struct TagPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Tag PNG or JPEG images; writes CSV `image,tags` with tag names separated by ';', as `convert tags` reads them.")

    @OptionGroup var arguments: PredictArguments
    @OptionGroup var csv: CSVOutput

    @Flag(help: "Fit images to the model's input with their aspect kept on a black canvas, as `convert --letterbox` made its data (default: stretch, as `convert --size`).")
    var letterbox = false

    @Flag(help: "Add one score column per tag.")
    var scores = false

    func run() throws {
        guard let (model, paths) = try arguments.open(TaggingHead.self) else { return }
        try csv.check(inputs: [arguments.model] + paths, force: arguments.force)
        let names = model.configuration.classes
        var text = "image,tags" + (scores ? "," + names.map(csvField).joined(separator: ",") : "") + "\n"
        let count = try arguments.forEachBatch(of: paths, batchSize: 256) { batch in
            let predictions = model.predict(modelInput(batch.map(\.image), for: model.configuration, letterbox: letterbox))
            for ((path, _), prediction) in zip(batch, predictions) {
                text += "\(csvField(path)),\(csvField(TagsCSV.field(prediction.tags.map { names[$0] })))"
                if scores { text += "," + prediction.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",") }
                text += "\n"
            }
        }
        try csv.write(text, force: arguments.force, what: "tags of \(count) image\(count == 1 ? "" : "s")")
    }
}
