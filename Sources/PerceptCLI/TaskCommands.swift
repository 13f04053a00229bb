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

    @Flag(inversion: .prefixedNo, help: "Max-pool the ResNet stem's output 2x2 (default: the task's recipe).")
    var stemPool: Bool?

    @Option(help: ArgumentHelp("Channels per backbone stage, e.g. 32,64,128 (default: the backbone's).", valueName: "C1,C2,..."),
            transform: { text in
                let values = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !values.isEmpty, values.count == text.split(separator: ",").count, values.allSatisfy({ $0 > 0 }) else {
                    throw ValidationError("--widths must be positive integers separated by commas, got '\(text)'")
                }
                return values
            })
    var widths: [Int]?

    @Option(help: "Head pooling for ResNet backbones: average or max of features over positions, or score-max (score every position, keep each output's maximum) (default: the task's recipe).")
    var pooling: String?

    /// The --pooling values and the head pooling each selects.
    static let poolingChoices: [String: Pooling] = ["average": .global, "max": .globalMax, "score-max": .scoreMax]

    @Option(help: "Epochs (default: the task's recipe).")
    var epochs: Int?

    @Option(help: "Mini-batch size (default: 128).")
    var batch: Int?

    @Option(help: "Peak learning rate (default: the task's recipe for sgd, 0.002 for adam/adamw).")
    var lr: Float?

    @Option(help: "Optimizer: sgd (Nesterov momentum 0.9), adam or adamw.")
    var optimizer: String?

    @Option(help: "Weight decay (default: 5e-4; not applied to biases and batch-norm scales).")
    var weightDecay: Float?

    @Flag(inversion: .prefixedNo, help: "Random crop and horizontal flip (default: on).")
    var augment: Bool?

    @Option(help: "Random seed: the same seed and thread count give the same model (default: 0).")
    var seed: UInt64?

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
        if let pooling, Self.poolingChoices[pooling] == nil {
            throw ValidationError("--pooling must be average, max or score-max, got '\(pooling)'")
        }
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
        if let stemPool { r.stemPool = stemPool }
        if let widths { r.widths = widths }
        if let pooling, let choice = Self.poolingChoices[pooling] { r.pooling = choice }
        if let epochs { r.options.epochs = epochs }
        if let batch { r.options.batchSize = batch }
        if let optimizer, optimizer != r.options.optimizer {
            // The recipe's learning rate is tuned for its optimizer; another one gets its own default.
            r.options.optimizer = optimizer
            r.options.learningRate = nil
        }
        if let lr { r.options.learningRate = lr }
        if let weightDecay { r.options.weightDecay = weightDecay }
        if let augment { r.options.augment = augment }
        if let seed { r.options.seed = seed }
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

extension EvalArguments {
    /// The model (checked to be of `task`), the dataset (checked to fit it) and an ordered,
    /// normalised loader over it.
    func open<D: ImageDataset>(_ task: TaskKind, _ openDataset: (String) throws -> D) throws -> (Model, D, DataLoader) {
        if let threads { Threads.set(threads) }
        let (model, _) = try Model.load(path: model, expecting: task)
        let dataset = try openDataset(data)
        try checkCompatible(dataset, model, modelPath: self.model)
        let c = model.configuration
        return (model, dataset, DataLoader(dataset, batchSize: 256, shuffle: false, mean: c.mean, std: c.std))
    }
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
                 outputs: Int, loss: String, objective makeObjective: (ModelConfiguration) -> any TrainingObjective) throws {
    if let threads = args.threads { Threads.set(threads) }
    var recipe = args.recipe(base)
    let configuration: ModelConfiguration
    if let resume = args.resume {
        // A resumed run continues with the model and settings it was started with (as
        // Ultralytics does); flags that would change them are refused, not silently ignored.
        let checkpoint = try ModelCheckpoint.read(path: resume)
        guard let stored = checkpoint.metadata["training_options"],
              let options = try? JSONDecoder().decode(TrainingOptions.self, from: Data(stored.utf8)),
              let saved = try? JSONDecoder().decode(ModelConfiguration.self, from: Data(checkpoint.architecture.utf8)) else {
            throw DatasetError(resume, "is not a resumable training checkpoint (`train` writes one to MODEL.last.h5)")
        }
        if args.recipe(Recipe(backbone: "", stemStride: 0, options: options, labelSmoothing: 0)).options != options
            || args.backbone != nil || args.stemStride != nil || args.stemPool != nil || args.widths != nil || args.pooling != nil {
            throw DatasetError(resume, "was started with other settings; resume without --backbone, --stem-stride, --stem-pool, --widths, or changed --epochs, --batch, --lr, --optimizer, --weight-decay, --augment, --seed")
        }
        recipe.options = options
        configuration = saved
    } else {
        let stats = try channelStatistics(dataset)
        configuration = try makeConfiguration(task: task, dataset: dataset, backbone: recipe.backbone, stemStride: recipe.stemStride,
                                              stemPool: recipe.stemPool,
                                              widths: recipe.widths, pooling: recipe.pooling, outputs: outputs, loss: loss,
                                              labelSmoothing: recipe.labelSmoothing, mean: stats.mean, std: stats.std)
    }
    guard configuration.inputChannels == dataset.channels, configuration.inputHeight == dataset.height,
          configuration.inputWidth == dataset.width, configuration.classes == dataset.classNames else {
        throw DatasetError(dataset.path, "does not match the images or classes of the model being resumed")
    }
    let stats = (mean: configuration.mean, std: configuration.std)
    let model = try Model(configuration, seed: recipe.options.seed)
    if args.resume == nil, let tagging = dataset as? TaggingDataset {
        model.head.initializeAtBaseRates(try tagFrequencies(tagging), seed: recipe.options.seed &+ 2)
    }
    let augmentation = recipe.options.augment
        ? Augmentation(cropPadding: max(2, dataset.height / 16), horizontalFlip: true) : .none
    let loader = DataLoader(dataset, batchSize: recipe.options.batchSize, shuffle: true, dropLast: dataset.count >= recipe.options.batchSize * 2,
                            augmentation: augmentation, mean: stats.mean, std: stats.std, seed: recipe.options.seed)
    let validationLoader = validation.map {
        DataLoader($0, batchSize: 256, shuffle: false, mean: stats.mean, std: stats.std)
    }
    FileHandle.standardError.write(Data(("training \(task.rawValue): \(dataset.count) images \(dataset.channels)x\(dataset.height)x\(dataset.width), "
        + "\(outputs) classes, \(configuration.backbone.kind) backbone widths \(configuration.backbone.widths) stem stride \(configuration.backbone.stemStride)\(configuration.backbone.poolsStem ? " + 2x2 max pool" : ""), \(model.parameterCount) parameters, "
        + "\(recipe.options.epochs) epochs, batch \(recipe.options.batchSize), \(recipe.options.optimizer) lr \(recipe.options.peakLearningRate), "
        + "augment \(recipe.options.augment ? "on" : "off"), \(Threads.count) threads\n").utf8))
    let trainer = Trainer(model: model, objective: makeObjective(configuration), train: loader, validation: validationLoader,
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
