import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

extension BackbonePreset: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}

/// `--loss` spells the classification losses with hyphens.
extension ClassificationLoss: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "cross-entropy": self = .crossEntropy
        case "hinge": self = .hinge
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["cross-entropy", "hinge"] }
    public var defaultValueDescription: String { self == .crossEntropy ? "cross-entropy" : "hinge" }
}

/// `--pooling` spells the head poolings as users say them.
extension Pooling: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument {
        case "average": self = .global
        case "max": self = .globalMax
        case "score-max": self = .scoreMax
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["average", "max", "score-max"] }
}

/// Options shared by `percept classify train` and `percept tag train`.
struct TrainArguments: ParsableArguments {
    @Option(help: "Training dataset (HDF5, from `percept convert`).")
    var data: String

    @Option(help: "Validation dataset; picks the best epoch's model.")
    var val: String?

    @Option(help: "Backbone (default: the task's recipe).")
    var backbone: BackbonePreset?

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

    @Option(help: ArgumentHelp("Start the backbone from this model file's (any task's, e.g. a classifier's): its architecture, weights and input normalisation; the head starts fresh. 'none' trains from scratch (default: the task's recipe).", valueName: "MODEL.h5|none"))
    var backboneWeights: String?

    @Option(help: "Zero padding of the plain backbone's 3x3 convolutions: 1 keeps each map's size, 0 makes a window classifier whose dense scores equal its crops' (default: the task's recipe).")
    var padding: Int?

    @Option(help: "Head pooling for ResNet backbones: average or max of features over positions, or score-max (score every position, keep each output's maximum) (default: the task's recipe).")
    var pooling: Pooling?

    @Option(help: "Epochs (default: the task's recipe).")
    var epochs: Int?

    @Option(help: "Mini-batch size (default: 128).")
    var batch: Int?

    @Option(help: "Peak learning rate (default: the task's recipe for sgd, 0.002 for adam/adamw).")
    var lr: Float?

    @Option(help: "Learning rate of a pretrained backbone (--backbone-weights) as a fraction of the head's, e.g. 0.5 (default: the task's recipe; 1 where it has none).")
    var backboneLrScale: Float?

    @Flag(help: "Keep the backbone's batch-norm statistics as it starts (a pretrained backbone's, from --backbone-weights) instead of normalising with each batch's; its scales and shifts still train (default: the task's recipe).")
    var freezeBnStats = false

    @Option(help: "Optimizer: sgd (Nesterov momentum 0.9), adam or adamw (default: sgd).")
    var optimizer: OptimizerKind?

    @Option(help: "Weight decay (default: 5e-4; not applied to biases and batch-norm scales).")
    var weightDecay: Float?

    @Flag(inversion: .prefixedNo, help: "Random crop and horizontal flip (default: on).")
    var augment: Bool?

    @Option(help: "Random erasing: the probability that a training image also gets a random rectangle (2-40% of its area, aspect 0.3-3.3) filled with noise, as in Zhong et al. 2017; segmentation ignores its pixels (default: the task's recipe; 0 where it has none).")
    var erase: Float?

    @Option(help: "Item pasting, so that items overlap as on segmentation canvases: the probability that a training image also gets another training item pasted onto it by the brighter pixel. Classification: a whole image over its edge (the two frames overlapping by IoU 0.2 at most); the label stays the image's. Segmentation: one item region of another canvas with its mask labels, onto a canvas of fewer than 3 items, boxes overlapping by IoU 0.2 at most (default: the task's recipe, 0.5 for segmentation; 0 where it has none; classification and segmentation only).")
    var paste: Float?

    @Option(help: "Random seed: the same seed and thread count give the same model (default: 0).")
    var seed: UInt64?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(help: "Resume from a checkpoint written by an earlier run (MODEL.last.h5).")
    var resume: String?

    @Option(name: .shortAndLong, help: "Output model file; MODEL.last.h5 beside it holds the resumable checkpoint.")
    var output: String

    @Flag(help: "Replace an existing output model (a resumed run replaces its own outputs).")
    var force = false

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        if let backboneLrScale, !(backboneLrScale >= 0 && backboneLrScale <= 10) {
            throw ValidationError("--backbone-lr-scale must be between 0 and 10")
        }
        for (flag, probability) in [("--erase", erase), ("--paste", paste)] {
            guard let probability else { continue }
            if !(probability >= 0 && probability <= 1) { throw ValidationError("\(flag) must be between 0 and 1") }
            if augment == false, probability > 0 {
                throw ValidationError("\(flag) is part of the augmentation; --no-augment turns it off (drop one of them)")
            }
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let stemStride, stemStride != 1 && stemStride != 2 { throw ValidationError("--stem-stride must be 1 or 2") }
        if let padding, padding != 0 && padding != 1 { throw ValidationError("--padding must be 0 or 1") }
        guard output.hasSuffix(".h5") else { throw ValidationError("-o/--output should name an .h5 file, got '\(output)'") }
    }

    /// Refuses `--paste` for `task`, whose targets a pasted item would contradict (called from
    /// the `validate()` of tagging and detection).
    func refusePasting(task: String) throws {
        if let paste, paste > 0 {
            throw ValidationError("--paste is for classification and segmentation (a pasted item would have no label in \(task))")
        }
    }

    /// Whether the command line chooses the backbone (--backbone, --stem-stride, --stem-pool,
    /// --widths or --padding) rather than leaving it to the recipe.
    var choosesBackbone: Bool { backbone != nil || stemStride != nil || stemPool != nil || widths != nil || padding != nil }

    /// The recipe with this command line's overrides applied.
    func recipe(_ base: Recipe) -> Recipe {
        var r = base
        if let backbone, backbone != r.backbone {
            // The recipe's channel counts belong to its own backbone; another one gets its preset's.
            r.backbone = backbone
            r.widths = nil
        }
        if let stemStride { r.stemStride = stemStride }
        if let stemPool { r.stemPool = stemPool }
        if let widths { r.widths = widths }
        if let padding { r.padding = padding }
        if let pooling { r.pooling = pooling }
        if let epochs { r.options.epochs = epochs }
        if let batch { r.options.batchSize = batch }
        if let optimizer, optimizer != r.options.optimizer {
            // The recipe's learning rate is tuned for its optimizer; another one gets its own default.
            r.options.optimizer = optimizer
            r.options.learningRate = nil
        }
        if let lr { r.options.learningRate = lr }
        if let weightDecay { r.options.weightDecay = weightDecay }
        if let backboneLrScale { r.options.backboneLearningRateScale = backboneLrScale == 1 ? nil : backboneLrScale }
        if let augment { r.options.augment = augment }
        if let erase { r.options.erasing = erase == 0 ? nil : erase }
        if let paste { r.options.pasting = paste == 0 ? nil : paste }
        if let seed { r.options.seed = seed }
        if freezeBnStats { r.options.freezeBackboneStatistics = true }
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

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }
}

extension EvalArguments {
    /// The model (checked to be of `task`), the dataset (checked to fit it) and an ordered,
    /// normalised loader over it.
    func open<H: Head, D: ImageDataset>(_ openDataset: (String) throws -> D) throws -> (Model<H>, D, DataLoader) {
        if let threads { Threads.set(threads) }
        let (model, _) = try Model<H>.load(path: model)
        let dataset = try openDataset(data)
        try checkCompatible(dataset, model.configuration, modelPath: self.model)
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
    @Flag(help: "Replace the output file if it exists.")
    var force = false
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    /// Checks the output up front: never an input, an existing file only with --force, in a folder that exists.
    func checkOutput(inputs: [String]) throws {
        guard let output else { return }
        try checkOutputPath(output, inputs: [model] + inputs, force: force)
    }
}

extension PredictArguments {
    /// The model and its predictions for the named images, in order.
    func predict<H: Head>(_ head: H.Type) throws -> (model: Model<H>, paths: [String], predictions: [H.Prediction]) {
        if let threads { Threads.set(threads) }
        let paths = try collectImagePaths(images)
        try checkOutput(inputs: paths)
        let (model, _) = try Model<H>.load(path: model)
        return (model, paths, model.predict(try loadImages(paths, for: model.configuration)))
    }
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

/// Writes `text` to `path` atomically (replacing a file only with `force`), or to stdout when `path` is nil.
func emit(_ text: String, to path: String?, force: Bool) throws {
    guard let path else { print(text, terminator: ""); return }
    try AtomicOutput.write(Data(text.utf8), to: path, overwrite: force)
}

/// The output policy of every command, checked before any work: an output is never one of the
/// command's inputs, replaces an existing file only with `force`, and goes into a folder that exists.
func checkOutputPath(_ output: String, inputs: [String], force: Bool) throws {
    let target = URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath().path
    for input in inputs where URL(fileURLWithPath: input).standardizedFileURL.resolvingSymlinksInPath().path == target {
        throw DatasetError(output, "is also an input of this command; choose another output")
    }
    var isDirectory: ObjCBool = false
    let folder = (target as NSString).deletingLastPathComponent
    guard FileManager.default.fileExists(atPath: folder.isEmpty ? "." : folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw DatasetError(output, "folder \(folder) does not exist")
    }
    if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
        guard !isDirectory.boolValue else { throw DatasetError(output, "is a directory") }
        guard force else { throw DatasetError(output, "exists; pass --force to replace it") }
    }
}

/// Quotes a CSV field when it needs it.
func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

/// Trains a model with head `H` on `dataset` with the recipe and the command line's overrides:
/// `configure` makes the head's configuration from the backbone's deepest map, and `prepare` gets
/// the fresh model (and the pretrained backbone it started from) before training starts (not
/// when resuming).
func runTraining<H: Head>(_ head: H.Type, _ args: TrainArguments, base: Recipe, dataset: ImageDataset, validation: ImageDataset?,
                          configure: (Recipe, FeatureMapInfo, BackboneKind, InputGeometry) throws -> H.Configuration,
                          prepare: (Model<H>, Recipe, PretrainedBackbone?) throws -> Void = { _, _, _ in },
                          source: ((Model<H>, Recipe) throws -> any BatchSource)? = nil) throws {
    if let threads = args.threads { Threads.set(threads) }
    // Outputs are checked before any work: the model and its checkpoint, never an input.
    let checkpointPath = Trainer.checkpointPath(for: args.output)
    let inputs = [args.data] + (args.val.map { [$0] } ?? [])
    try checkOutputPath(args.output, inputs: inputs + (args.resume.map { [$0] } ?? []), force: args.force || args.resume != nil)
    try checkOutputPath(checkpointPath, inputs: inputs, force: args.force || args.resume != nil)
    if let validation {
        guard validation.channels == dataset.channels, validation.height == dataset.height, validation.width == dataset.width,
              validation.classNames == dataset.classNames else {
            throw DatasetError(validation.path, "holds \(validation.channels)x\(validation.height)x\(validation.width) images of classes \(validation.classNames), the training set \(dataset.path) \(dataset.channels)x\(dataset.height)x\(dataset.width) of \(dataset.classNames)")
        }
    }
    var recipe = args.recipe(base)
    let pretrained = args.resume == nil ? try pretrainedBackbone(args, recipe: recipe, dataset: dataset) : nil
    if args.resume == nil, recipe.options.freezeBackboneStatistics == true, pretrained == nil {
        throw ValidationError("--freeze-bn-stats keeps a pretrained backbone's statistics; this run starts from scratch (give --backbone-weights)")
    }
    let configuration: ModelConfiguration<H.Configuration>
    if let resume = args.resume {
        // A resumed run continues with the model and settings it was started with (as
        // Ultralytics does); flags that would change them are refused, not silently ignored.
        let checkpoint = try ModelCheckpoint.read(path: resume)
        guard let stored = checkpoint.metadata["training_options"],
              let options = try? JSONDecoder().decode(TrainingOptions.self, from: Data(stored.utf8)) else {
            throw DatasetError(resume, "is not a resumable training checkpoint (`train` writes one to MODEL.last.h5)")
        }
        let saved = try ModelConfiguration<H.Configuration>.decode(checkpoint.architecture, path: resume)
        if args.recipe(Recipe(backbone: .plain, stemStride: 0, options: options, labelSmoothing: 0)).options != options
            || args.choosesBackbone || args.pooling != nil || args.backboneWeights != nil {
            throw DatasetError(resume, "was started with other settings; resume without --backbone, --stem-stride, --stem-pool, --widths, --padding, --backbone-weights, or changed --epochs, --batch, --lr, --backbone-lr-scale, --optimizer, --weight-decay, --augment, --erase, --paste, --freeze-bn-stats, --seed")
        }
        recipe.options = options
        configuration = saved
    } else {
        // A pretrained backbone keeps the normalisation its features were learned on.
        let stats = try pretrained.map { (mean: $0.mean, std: $0.std) } ?? channelStatistics(dataset)
        configuration = try recipe.configuration(for: dataset, task: H.task, mean: stats.mean, std: stats.std,
                                                 backbone: args.choosesBackbone ? nil : pretrained?.configuration) {
            try configure(recipe, $0, $1, $2)
        }
    }
    guard configuration.inputChannels == dataset.channels, configuration.inputHeight == dataset.height,
          configuration.inputWidth == dataset.width, configuration.classes == dataset.classNames else {
        throw DatasetError(dataset.path, "does not match the images or classes of the model being resumed")
    }
    let model = try pretrained.map { try Model<H>(configuration, startingFrom: $0, seed: recipe.options.seed) }
        ?? Model<H>(configuration, seed: recipe.options.seed)
    if args.resume == nil { try prepare(model, recipe, pretrained) }
    let augmentation = recipe.options.augment
        ? Augmentation(cropPadding: max(2, dataset.height / 16), horizontalFlip: true, erasing: recipe.options.erasing ?? 0,
                       pasting: recipe.options.pasting ?? 0) : .none
    let loader = try source?(model, recipe)
        ?? DataLoader(dataset, batchSize: recipe.options.batchSize, shuffle: true, dropLast: dataset.count >= recipe.options.batchSize * 2,
                      augmentation: augmentation, mean: configuration.mean, std: configuration.std, seed: recipe.options.seed)
    let validationLoader = validation.map {
        DataLoader($0, batchSize: H.task == .detection ? 16 : 256, shuffle: false, mean: configuration.mean, std: configuration.std)
    }
    let b = configuration.backbone
    FileHandle.standardError.write(Data(("training \(H.task.rawValue): \(dataset.count) images \(dataset.channels)x\(dataset.height)x\(dataset.width), "
        + "\(dataset.classNames.count) classes, \(b.kind.rawValue) backbone widths \(b.widths) stem stride \(b.stemStride)\(b.poolsStem ? " + 2x2 max pool" : ""), \(model.parameterCount) parameters, "
        + "\(recipe.options.epochs) epochs, batch \(recipe.options.batchSize), \(recipe.options.optimizer.rawValue) lr \(recipe.options.peakLearningRate)"
        + (recipe.options.backboneLearningRateScale.map { " (backbone x\($0))" } ?? "") + ", "
        + "augment \(recipe.options.augment ? "on" : "off")"
        + (recipe.options.augment ? (recipe.options.erasing.map { " + erasing \($0)" } ?? "") + (recipe.options.pasting.map { " + pasting \($0)" } ?? "") : "")
        + (recipe.options.freezeBackboneStatistics == true ? ", backbone batch-norm statistics frozen" : "")
        + ", \(Threads.count) threads"
        + (pretrained.map { ", backbone from \($0.path)" } ?? "") + "\n").utf8))
    let trainer = Trainer(model: model, train: loader, validation: validationLoader, options: recipe.options, outputPath: args.output)
    try trainer.run(resume: args.resume)
    FileHandle.standardError.write(Data("wrote \(args.output) (resumable checkpoint: \(trainer.checkpointPath))\n".utf8))
}

/// The backbone a new run starts from: `--backbone-weights FILE` (checked to fit), none for
/// `--backbone-weights none`, else the recipe's shipped model where it is found and fits the
/// data and the command line's backbone (a run that cannot use it says so and starts from scratch).
func pretrainedBackbone(_ args: TrainArguments, recipe: Recipe, dataset: ImageDataset) throws -> PretrainedBackbone? {
    if let path = args.backboneWeights {
        guard path != "none" else { return nil }
        let pretrained = try PretrainedBackbone(path: path)
        guard pretrained.configuration.inputChannels == dataset.channels else {
            throw DatasetError(path, "has a backbone for \(pretrained.configuration.inputChannels)-channel images; \(dataset.path) holds \(dataset.channels)-channel images")
        }
        if args.choosesBackbone {
            let chosen = try recipe.backboneConfiguration(inputChannels: dataset.channels)
            guard chosen == pretrained.configuration || chosen.extends(pretrained.configuration) else {
                throw DatasetError(path, "holds a backbone \(pretrained.configuration), which --backbone, --stem-stride, --stem-pool, --widths or --padding contradict; drop them, or add stages after its last")
            }
        }
        return pretrained
    }
    guard let name = recipe.backboneWeights else { return nil }
    func fromScratch(_ reason: String) -> PretrainedBackbone? {
        FileHandle.standardError.write(Data("note: the recipe's backbone weights (\(name)) are not used: \(reason); training from scratch\n".utf8))
        return nil
    }
    guard !args.choosesBackbone else { return fromScratch("--backbone, --stem-stride, --stem-pool, --widths or --padding choose another backbone") }
    guard let path = ShippedModels.locate(name) else {
        return fromScratch("not found in $PERCEPT_MODELS, ./models or the package's models folder; pass --backbone-weights FILE")
    }
    let pretrained = try PretrainedBackbone(path: path)
    guard pretrained.configuration.inputChannels == dataset.channels else {
        return fromScratch("\(path) is for \(pretrained.configuration.inputChannels)-channel images, \(dataset.path) holds \(dataset.channels)-channel images")
    }
    return pretrained
}

/// Checks that a dataset's images fit a model before evaluating.
func checkCompatible<C>(_ dataset: ImageDataset, _ c: ModelConfiguration<C>, modelPath: String) throws {
    guard dataset.channels == c.inputChannels, dataset.height == c.inputHeight, dataset.width == c.inputWidth else {
        throw DatasetError(dataset.path, "images are \(dataset.channels)x\(dataset.height)x\(dataset.width), model \(modelPath) expects \(c.inputChannels)x\(c.inputHeight)x\(c.inputWidth)")
    }
    guard dataset.classNames.count == c.classes.count else {
        throw DatasetError(dataset.path, "has \(dataset.classNames.count) classes, model \(modelPath) has \(c.classes.count)")
    }
}
