import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

/// Options shared by `percept classify train` and `percept tag train`.
struct TrainArguments: ParsableArguments {
    @Option(help: "Training dataset (HDF5, from `percept convert`).")
    var data: String

    @Option(help: "Validation dataset; picks the best epoch's model.")
    var val: String?

    @Option(help: "Backbone: plain, resnet8, resnet14 or resnet20 (default: the task's recipe).")
    var backbone: String?

    @Option(help: "Stride of the ResNet stem convolution, 1 or 2 (default: the task's recipe).")
    var stemStride: Int?

    @Option(help: "Epochs (default: the task's recipe).")
    var epochs: Int?

    @Option(help: "Mini-batch size (default: 128).")
    var batch: Int?

    @Option(help: "Peak learning rate (default: 0.1 for sgd, 0.002 for adam/adamw).")
    var lr: Float?

    @Option(help: "Optimizer: sgd (Nesterov momentum 0.9), adam or adamw.")
    var optimizer: String?

    @Option(help: "Weight decay (default: 5e-4; not applied to biases and batch-norm scales).")
    var weightDecay: Float?

    @Flag(inversion: .prefixedNo, help: "Random crop and horizontal flip (default: on).")
    var augment: Bool?

    @Option(help: "Random seed: the same seed and thread count give the same model.")
    var seed: UInt64 = 0

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(help: "Resume from a checkpoint written by an earlier run (MODEL.last.h5).")
    var resume: String?

    @Option(name: .shortAndLong, help: "Output model file; MODEL.last.h5 beside it holds the resumable checkpoint.")
    var output: String

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let stemStride, stemStride != 1 && stemStride != 2 { throw ValidationError("--stem-stride must be 1 or 2") }
        if let optimizer, !["sgd", "adam", "adamw"].contains(optimizer) {
            throw ValidationError("--optimizer must be sgd, adam or adamw, got '\(optimizer)'")
        }
        if let backbone, !BackboneConfiguration.presetNames.contains(backbone) {
            throw ValidationError("--backbone must be one of \(BackboneConfiguration.presetNames.joined(separator: ", ")), got '\(backbone)'")
        }
        guard output.hasSuffix(".h5") else { throw ValidationError("-o/--output should name an .h5 file, got '\(output)'") }
    }

    /// The recipe with this command line's overrides applied.
    func recipe(_ base: Recipe) -> Recipe {
        var r = base
        if let backbone { r.backbone = backbone }
        if let stemStride { r.stemStride = stemStride }
        if let epochs { r.options.epochs = epochs }
        if let batch { r.options.batchSize = batch }
        if let lr { r.options.learningRate = lr }
        if let optimizer { r.options.optimizer = optimizer }
        if let weightDecay { r.options.weightDecay = weightDecay }
        if let augment { r.options.augment = augment }
        r.options.seed = seed
        return r
    }
}

/// Options shared by the `eval` subcommands.
struct EvalArguments: ParsableArguments {
    @Option(help: "Model file.")
    var model: String
    @Option(help: "Dataset to evaluate on (HDF5).")
    var data: String
    @Flag(help: "Print metrics as one JSON object.")
    var json = false
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
}

/// Options shared by the `predict` subcommands.
struct PredictArguments: ParsableArguments {
    @Option(help: "Model file.")
    var model: String
    @Argument(help: "PNG images or directories of them.")
    var images: [String]
    @Option(name: .shortAndLong, help: "CSV file to write (default: standard output).")
    var output: String?
    @Flag(help: "Add one score column per class.")
    var scores = false
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
}

/// Runs `body`, turning any error into one `error: ...` line on stderr and exit code 1.
func failingCleanly(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Writes `text` to `path` atomically, or to stdout when `path` is nil.
func emit(_ text: String, to path: String?) throws {
    guard let path else { print(text, terminator: ""); return }
    try AtomicOutput.write(Data(text.utf8), to: path, overwrite: true)
}

/// Quotes a CSV field when it needs it.
func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

/// Trains a model for `task` on `dataset` with the recipe and the command line's overrides.
func runTraining(_ args: TrainArguments, task: TaskKind, base: Recipe, dataset: ImageDataset, validation: ImageDataset?,
                 outputs: Int, loss: String, objective: any TrainingObjective) throws {
    if let threads = args.threads { Threads.set(threads) }
    let recipe = args.recipe(base)
    if let validation, validation.channels != dataset.channels || validation.height != dataset.height || validation.width != dataset.width {
        throw DatasetError(validation.path, "images are \(validation.channels)x\(validation.height)x\(validation.width), training images are \(dataset.channels)x\(dataset.height)x\(dataset.width)")
    }
    if let validation, validation.classNames != dataset.classNames {
        throw DatasetError(validation.path, "class names differ from the training set's")
    }
    let stats = try channelStatistics(dataset)
    let configuration = try makeConfiguration(task: task, dataset: dataset, backbone: recipe.backbone, stemStride: recipe.stemStride,
                                              outputs: outputs, loss: loss, labelSmoothing: recipe.labelSmoothing,
                                              mean: stats.mean, std: stats.std)
    let model = try Model(configuration, seed: recipe.options.seed)
    let augmentation = recipe.options.augment
        ? Augmentation(cropPadding: max(2, dataset.height / 16), horizontalFlip: true) : .none
    let loader = DataLoader(dataset, batchSize: recipe.options.batchSize, shuffle: true, dropLast: dataset.count >= recipe.options.batchSize * 2,
                            augmentation: augmentation, mean: stats.mean, std: stats.std, seed: recipe.options.seed)
    let validationLoader = validation.map {
        DataLoader($0, batchSize: 256, shuffle: false, mean: stats.mean, std: stats.std)
    }
    FileHandle.standardError.write(Data(("training \(task.rawValue): \(dataset.count) images \(dataset.channels)x\(dataset.height)x\(dataset.width), "
        + "\(outputs) classes, backbone \(recipe.backbone) (stem stride \(recipe.stemStride)), \(model.parameterCount) parameters, "
        + "\(recipe.options.epochs) epochs, batch \(recipe.options.batchSize), \(recipe.options.optimizer) lr \(recipe.options.peakLearningRate), "
        + "augment \(recipe.options.augment ? "on" : "off"), \(Threads.count) threads\n").utf8))
    let trainer = Trainer(model: model, objective: objective, train: loader, validation: validationLoader,
                          options: recipe.options, outputPath: args.output)
    try trainer.run(resume: args.resume)
    FileHandle.standardError.write(Data("wrote \(args.output) (resumable checkpoint: \(trainer.checkpointPath))\n".utf8))
}

/// Checks that a dataset's images fit a model before evaluating.
func checkCompatible(_ dataset: ImageDataset, _ model: Model, modelPath: String) throws {
    let c = model.configuration
    guard dataset.channels == c.inputChannels, dataset.height == c.inputHeight, dataset.width == c.inputWidth else {
        throw DatasetError(dataset.path, "images are \(dataset.channels)x\(dataset.height)x\(dataset.width), model \(modelPath) expects \(c.inputChannels)x\(c.inputHeight)x\(c.inputWidth)")
    }
    guard dataset.classNames.count == c.classes.count else {
        throw DatasetError(dataset.path, "has \(dataset.classNames.count) classes, model \(modelPath) has \(c.classes.count)")
    }
}
