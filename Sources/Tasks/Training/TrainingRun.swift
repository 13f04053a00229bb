import PerceptCore
import PerceptDatasets
import Foundation

/// What a task's training adds to the shared run: its dataset type, the data its head starts
/// from, and (for detection) its own batches.
public protocol TaskTraining: TaskConfig {
    associatedtype TaskDataset: ImageDataset
    /// Opens (and checks) a dataset of this task.
    static func openDataset(_ path: String) throws -> TaskDataset
    /// Starts a fresh model's head from the data or the pretrained file, before training;
    /// returns what it did, for the log.
    func prepare(_ model: Model<TaskHead>, dataset: TaskDataset, pretrained: PretrainedBackbone?) throws -> [String]
    /// The training batches, when the task does not read its images as they are (detection
    /// samples windows); nil for the standard loader.
    func batchSource(_ model: Model<TaskHead>, dataset: TaskDataset) throws -> (any BatchSource)?
    /// Whether validation also tunes the model's settings (a tagger's thresholds).
    var calibratesOnValidation: Bool { get }
}

extension TaskTraining {
    public func prepare(_ model: Model<TaskHead>, dataset: TaskDataset, pretrained: PretrainedBackbone?) throws -> [String] { [] }
    public func batchSource(_ model: Model<TaskHead>, dataset: TaskDataset) throws -> (any BatchSource)? { nil }
    public var calibratesOnValidation: Bool { false }
}

/// One training run of a task, as `percept TASK train` makes it: the datasets opened and checked,
/// the outputs checked before any work, the backbone started from the configured model file,
/// the head prepared, then `Trainer`'s epochs. The model file stores the resolved configuration
/// (metadata `config`, YAML), so `--resume` and `percept inspect` read exactly what ran.
public struct TrainingRun<Config: TaskTraining> {
    public var config: Config
    public var data: String
    public var validation: String?
    /// The best model (by validation metric, or the last without validation); its resumable
    /// checkpoint goes beside it (`Trainer.checkpointPath(for:)`). Optional with a run folder.
    public var output: String?
    /// Where the run leaves its folder for people and tools (`RunFolder`): args.yaml, results.csv,
    /// weights/best.h5 and last.h5, TensorBoard events and plots.
    public var runFolder: RunFolder?
    /// Replace existing outputs.
    public var force = false
    /// Receives progress lines.
    public var log: (String) -> Void = progressLog
    /// Asked between steps: true stops the run (Ctrl-C), leaving the last checkpoint.
    public var shouldStop: () -> Bool = { false }

    public init(_ config: Config, data: String, validation: String? = nil, output: String?, runFolder: RunFolder? = nil) {
        self.config = config; self.data = data; self.validation = validation; self.output = output; self.runFolder = runFolder
    }

    /// Where the best model goes: `output`, else the run folder's weights/best.h5.
    public var bestPath: String { output ?? runFolder?.bestPath ?? "model.h5" }

    /// The resumable checkpoint: beside `output`, else the run folder's weights/last.h5.
    public var checkpointPath: String { output.map(Trainer.checkpointPath(for:)) ?? runFolder?.lastPath ?? "model.last.h5" }

    /// The configuration stored in a model file or checkpoint by a training run.
    public static func storedConfig(in path: String) throws -> Config {
        let checkpoint = try ModelCheckpoint.read(path: path)
        guard let yaml = checkpoint.metadata[metadataKey] else {
            throw DatasetError(path, "holds no training configuration (it was not written by `train` of this Percept)")
        }
        do { return try Config().reading(yaml: yaml, source: path) } catch let error as ConfigError {
            throw DatasetError(path, "stored configuration: \(error)")
        }
    }

    /// The model file metadata key of the resolved configuration.
    public static var metadataKey: String { TrainingRunMetadata.config }

    /// Trains from scratch, or continues the checkpoint `resume` exactly where it stopped (its
    /// stored configuration must be this run's); returns the trained model (the last epoch's).
    /// Under `mpirun` every rank runs it with rank 0's configuration (`DataParallel.rankZeros`)
    /// and trains on its shard of each global batch; rank 0 alone validates and writes.
    @discardableResult
    public func run(resume given: String? = nil) throws -> Model<Config.TaskHead> {
        let (resume, cleanUp) = try DataParallel.sharedResume(given)
        defer { cleanUp() }
        try config.validate()
        guard output != nil || runFolder != nil else { throw ConfigError("a training run needs an output model file or a run folder") }
        let inputs = [data] + (validation.map { [$0] } ?? [])
        if let output, Distributed.isMain {
            try OutputPolicy.check(output, inputs: inputs + (resume.map { [$0] } ?? []), force: force || resume != nil)
            try OutputPolicy.check(checkpointPath, inputs: inputs, force: force || resume != nil)
        }
        let dataset = try Config.openDataset(data)
        try DataParallel.checkSameData([dataset])
        let validationSet = Distributed.isMain ? try validation.map { try Config.openDataset($0) } : nil
        if let validationSet {
            guard validationSet.channels == dataset.channels, validationSet.height == dataset.height,
                  validationSet.width == dataset.width, validationSet.classNames == dataset.classNames else {
                throw DatasetError(validationSet.path, "holds \(validationSet.channels)x\(validationSet.height)x\(validationSet.width) images of classes \(validationSet.classNames), the training set \(dataset.path) \(dataset.channels)x\(dataset.height)x\(dataset.width) of \(dataset.classNames)")
            }
        }
        let configuration: ModelConfiguration<Config.TaskHead>
        var pretrained: PretrainedBackbone?
        var config = self.config
        if let resume {
            // A resumed run continues with the model and configuration it was started with.
            var stored = try Self.storedConfig(in: resume)
            stored.train.epochs = config.train.epochs   // more epochs extend a run
            guard stored == config else {
                throw DatasetError(resume, "was started with another configuration (\(stored.differences(to: config))); resume with the one it stores (`percept inspect \(resume)`)")
            }
            let checkpoint = try ModelCheckpoint.read(path: resume)
            configuration = try ModelConfiguration<Config.TaskHead>.decode(checkpoint.architecture, path: resume)
        } else {
            pretrained = try startingBackbone(&config.backbone, dataset: dataset)
            let chosen = config.backbone.configuration(inputChannels: dataset.channels)
            // A pretrained backbone keeps the normalisation its features were learned on.
            let stats = try pretrained.map { (mean: $0.mean, std: $0.std) } ?? channelStatistics(dataset)
            let head = try config.headArchitecture(deepest: chosen.featureInfo.last!, backbone: chosen, dataset: dataset)
            configuration = ModelConfiguration(task: Config.TaskHead.task, inputChannels: dataset.channels, inputHeight: dataset.height,
                                               inputWidth: dataset.width, classes: dataset.classNames, backbone: chosen, head: head,
                                               settings: config.settings, mean: stats.mean, std: stats.std)
        }
        guard configuration.inputChannels == dataset.channels, configuration.inputHeight == dataset.height,
              configuration.inputWidth == dataset.width, configuration.classes == dataset.classNames else {
            throw DatasetError(dataset.path, "does not match the images or classes of the model being resumed")
        }
        let seed = config.train.seed
        let model = try pretrained.map { try Model<Config.TaskHead>(configuration, startingFrom: $0, seed: seed) }
            ?? Model<Config.TaskHead>(configuration, seed: seed)
        model.calibratesOnValidation = config.calibratesOnValidation && validationSet != nil
        if resume == nil { for line in try config.prepare(model, dataset: dataset, pretrained: pretrained) { log(line) } }
        let options = config.train
        let augmentation = options.augmentation(height: dataset.height, erasing: options.erasing, pasting: options.pasting)
        let loader = try config.batchSource(model, dataset: dataset)
            ?? DataLoader(dataset, batchSize: options.batchSize, shuffle: true, dropLast: dataset.count >= options.batchSize * 2,
                          augmentation: augmentation, mean: configuration.mean, std: configuration.std, seed: seed, shard: .current)
        let validationLoader = validationSet.map {
            DataLoader($0, batchSize: Config.TaskHead.task == .detection ? 16 : 256, shuffle: false, mean: configuration.mean, std: configuration.std)
        }
        let b = configuration.backbone
        log("training \(Config.TaskHead.task.rawValue): \(dataset.count) images \(dataset.channels)x\(dataset.height)x\(dataset.width), "
            + "\(dataset.classNames.count) classes, \(b.kind.rawValue) backbone widths \(b.widths) stem stride \(b.stemStride)\(b.poolsStem ? " + 2x2 max pool" : ""), \(model.parameterCount) parameters, "
            + "\(options.epochs) epochs, batch \(options.batchSize), \(options.optimizer.rawValue) lr \(options.learningRate)"
            + (options.backboneLearningRateScale != 1 ? " (backbone x\(options.backboneLearningRateScale))" : "")
            + ", augment \(options.augment ? "on" : "off")"
            + (options.augment ? (options.erasing > 0 ? " + erasing \(options.erasing)" : "") + (options.pasting > 0 ? " + pasting \(options.pasting)" : "") : "")
            + ", \(Threads.count) threads" + (Distributed.isParallel ? " on each of \(Distributed.size) ranks" : "")
            + (pretrained.map { ", backbone from \($0.path)" } ?? ""))
        let trainer = Trainer(model: model, train: loader, validation: validationLoader, options: options, outputPath: bestPath)
        trainer.checkpointPath = checkpointPath
        trainer.log = log
        trainer.patience = options.patience
        trainer.shouldStop = shouldStop
        try trainer.run(storing: config.yaml(), runFolder: runFolder, resume: resume)
        if let runFolder, let validationSet, Distributed.isMain {
            try finalPlots(runFolder, validation: validationSet)
        }
        return model
    }

    /// The validation plots of the best model: plots.json and its SVGs, and for detection and
    /// segmentation val_predictions.png (predictions beside the ground truth).
    func finalPlots(_ folder: RunFolder, validation: Config.TaskDataset) throws {
        let (best, _) = try Model<Config.TaskHead>.load(path: bestPath)
        let (evaluation, metrics) = try best.evaluation(on: validation)
        try best.writePlots(of: metrics, evaluation: evaluation, on: validation, into: folder.path,
                            results: try ResultsLog.read(path: folder.resultsPath, through: .max))
    }

    /// The backbone a new run starts from (`BackboneOptions.pretrained`).
    func startingBackbone(_ options: inout BackboneOptions, dataset: ImageDataset) throws -> PretrainedBackbone? {
        try options.pretrained(recipe: Config().backbone, channels: dataset.channels, data: dataset.path, log: log)
    }
}

extension ClassificationConfig: TaskTraining {
    public static func openDataset(_ path: String) throws -> ClassificationDataset { try ClassificationDataset(path: path) }
}

extension TaggingConfig: TaskTraining {
    public static func openDataset(_ path: String) throws -> TaggingDataset { try TaggingDataset(path: path) }

    /// The output layer starts at the tags' base rates in the training set.
    public func prepare(_ model: Model<TaggingHead>, dataset: TaggingDataset, pretrained: PretrainedBackbone?) throws -> [String] {
        model.head.initializeAtBaseRates(try tagFrequencies(dataset), seed: train.seed &+ 2)
        return []
    }

    public var calibratesOnValidation: Bool { head.tuneThresholds }
}

extension DetectionConfig: TaskTraining {
    public static func openDataset(_ path: String) throws -> DetectionDataset { try DetectionDataset(path: path) }

    /// The window classifier's fully connected layers from the pretrained W1 classifier.
    public func prepare(_ model: Model<WindowHead>, dataset: DetectionDataset, pretrained: PretrainedBackbone?) throws -> [String] {
        guard let pretrained, model.head.start(from: pretrained, classes: dataset.classNames) else { return [] }
        return ["window classifier's fully connected layers from \(pretrained.path)"]
    }

    public func batchSource(_ model: Model<WindowHead>, dataset: DetectionDataset) throws -> (any BatchSource)? {
        try WindowSampler(dataset: dataset, model: model, sampling: sampling, flip: train.augment, noise: train.noise,
                          nearest: train.nearest, sharpen: train.sharpen, batchSize: train.batchSize, seed: train.seed,
                          shard: .current)
    }
}

extension SegmentationConfig: TaskTraining {
    public static func openDataset(_ path: String) throws -> SegmentationDataset { try SegmentationDataset(path: path) }

    /// The item classes' scores from the pretrained classifier's output layer (`start_scores`).
    public func prepare(_ model: Model<SegmentationHead>, dataset: SegmentationDataset, pretrained: PretrainedBackbone?) throws -> [String] {
        guard head.startScores, let pretrained, model.head.start(from: pretrained, classes: dataset.classNames) else { return [] }
        return ["class scores from \(pretrained.path)'s output layer"]
    }
}
