import PerceptCore
import PerceptDatasets
import Foundation

/// One multi-task training run, as `percept multi train` makes it: each task's datasets opened
/// and checked, the outputs checked before any work, the shared backbone started from the
/// configured model file (or the whole model from `from`), each head prepared as its
/// single-task run prepares it, then `Trainer`'s epochs of joint steps. The best model is the
/// one with the highest combined validation score: the mean over the validated heads of each
/// head's own headline metric (accuracy, mAP, AP, mIoU).
public struct MultiTaskTrainingRun {
    public var config: MultiTaskConfig
    /// Training dataset per task: the tasks trained.
    public var data: [VisionTask: String]
    /// Validation dataset per task (a subset of the tasks trained).
    public var validation: [VisionTask: String] = [:]
    public var output: String?
    public var runFolder: RunFolder?
    public var force = false
    /// A model file (multi-task or single-task) to start from: its backbone and heads are kept;
    /// the heads of the tasks given data train, a head it lacks is added.
    public var from: String?
    /// Train only the heads given data: the backbone's weights and statistics stay as they are,
    /// so every other head predicts exactly as before.
    public var freezeBackbone = false
    public var log: (String) -> Void = progressLog
    public var shouldStop: () -> Bool = { false }

    public init(_ config: MultiTaskConfig, data: [VisionTask: String], validation: [VisionTask: String] = [:],
                output: String?, runFolder: RunFolder? = nil) {
        self.config = config; self.data = data; self.validation = validation; self.output = output; self.runFolder = runFolder
    }

    public static let metadataKey = TrainingRunMetadata.config
    /// Metadata of the run's other choices, which a resumed run keeps.
    static let fromKey = "from", freezeKey = "freeze_backbone"

    public var bestPath: String { output ?? runFolder?.bestPath ?? "multi.h5" }
    public var checkpointPath: String { output.map(Trainer.checkpointPath(for:)) ?? runFolder?.lastPath ?? "multi.last.h5" }

    /// The configuration stored by a multi-task training run.
    public static func storedConfig(in path: String) throws -> MultiTaskConfig {
        let checkpoint = try ModelCheckpoint.read(path: path)
        guard checkpoint.task == MultiTaskConfiguration.task, let yaml = checkpoint.metadata[metadataKey] else {
            throw DatasetError(path, "holds no multi-task training configuration (it was not written by `percept multi train`)")
        }
        do { return try MultiTaskConfig().reading(yaml: yaml, source: path) } catch let error as ConfigError {
            throw DatasetError(path, "stored configuration: \(error)")
        }
    }

    /// Under `mpirun` every rank runs it with rank 0's configuration, as `TrainingRun.run` does.
    @discardableResult
    public func run(resume given: String? = nil) throws -> MultiTaskModel {
        let (resume, cleanUp) = try DataParallel.sharedResume(given)
        defer { cleanUp() }
        try config.validate()
        guard !data.isEmpty else { throw ConfigError("a multi-task run needs the training data of at least one task") }
        guard output != nil || runFolder != nil else { throw ConfigError("a training run needs an output model file or a run folder") }
        for task in validation.keys where data[task] == nil {
            throw ConfigError("validation data for \(task.rawValue) needs its training data too")
        }
        let inputs = Array(data.values) + Array(validation.values) + (from.map { [$0] } ?? [])
        if let output, Distributed.isMain {
            try OutputPolicy.check(output, inputs: inputs + (resume.map { [$0] } ?? []), force: force || resume != nil)
            try OutputPolicy.check(checkpointPath, inputs: inputs, force: force || resume != nil)
        }
        let sets = try JointDatasets(data, Distributed.isMain ? validation : [:])
        try DataParallel.checkSameData(sets.all.map(\.1))
        var config = self.config
        var freezeBackbone = self.freezeBackbone
        let model: MultiTaskModel
        var pretrained: PretrainedBackbone?
        if let resume {
            var stored = try Self.storedConfig(in: resume)
            stored.train.epochs = config.train.epochs
            guard stored == config else {
                throw DatasetError(resume, "was started with another configuration (\(stored.differences(to: config))); resume with the one it stores (`percept inspect \(resume)`)")
            }
            let checkpoint = try ModelCheckpoint.read(path: resume)
            freezeBackbone = checkpoint.metadata[Self.freezeKey] == "true"
            model = try MultiTaskModel.load(checkpoint, path: resume)
            try sets.check(fit: model, named: resume)
        } else if let from {
            let (base, _) = try MultiTaskModel.load(path: from)
            try sets.check(fit: base, named: from, onlyHeld: true)
            var description = base.configuration
            try sets.addMissingHeads(to: &description, config: config, backbone: description.backbone)
            model = try MultiTaskModel(description, seed: config.train.seed)
            try model.copyWeights(of: base)
            let kept = base.tasks.filter { data[$0] != nil }, added = data.keys.filter { base.head($0) == nil }
            log("from \(from): backbone and heads \(base.tasks.map(\.rawValue)); "
                + (kept.isEmpty ? "" : "retraining \(kept.map(\.rawValue)) (with their stored settings); ")
                + (added.isEmpty ? "" : "adding \(VisionTask.allCases.filter(added.contains).map(\.rawValue))"))
        } else {
            pretrained = try config.backbone.pretrained(recipe: MultiTaskConfig().backbone, channels: sets.channels,
                                                        data: sets.first.path, log: log)
            let backbone = config.backbone.configuration(inputChannels: sets.channels)
            let stats = try pretrained.map { (mean: $0.mean, std: $0.std) } ?? channelStatistics(sets.first)
            var description = MultiTaskConfiguration(backbone: backbone, inputChannels: sets.channels, mean: stats.mean, std: stats.std)
            try sets.addMissingHeads(to: &description, config: config, backbone: backbone)
            model = try MultiTaskModel(description, seed: config.train.seed)
            if let pretrained {
                try pretrained.load(into: model.backbone)
                for line in try sets.prepareHeads(of: model, config: config, pretrained: pretrained) { log(line) }
            } else {
                for line in try sets.prepareHeads(of: model, config: config, pretrained: nil) { log(line) }
            }
        }
        let trainee = try JointTrainee(model, sets: sets, config: config)
        if config.frozenBatchNorm, resume == nil, from == nil, pretrained == nil {
            // A fresh backbone's statistics would freeze at their initial values (no normalisation
            // at all): they are measured first, over batches of every task.
            try Distributed.synchronisedStep { try trainee.measureBatchNormStatistics(batches: 16) }
            log("backbone batch-norm statistics measured over 16 batches of each task, then frozen")
        }
        if config.frozenBatchNorm || freezeBackbone { model.backbone.freezeBatchNormStatistics() }
        if freezeBackbone { for p in model.backbone.parameters { p.isTrainable = false } }

        let b = model.configuration.backbone
        log("training multi-task \(sets.summary), \(b.kind.rawValue) backbone widths \(b.widths) stem stride \(b.stemStride), "
            + "\(model.parameterCount) parameters, \(config.train.epochs) epochs of \(trainee.source.batchCount) steps "
            + "(sampling \(config.sampling.rawValue)), \(config.train.optimizer.rawValue) lr \(config.train.learningRate)"
            + (freezeBackbone ? " (backbone frozen)" : config.train.backboneLearningRateScale != 1 ? " (backbone x\(config.train.backboneLearningRateScale))" : "")
            + (config.frozenBatchNorm && !freezeBackbone ? ", backbone batch-norm statistics frozen" : "")
            + ", \(Threads.count) threads" + (pretrained.map { ", backbone from \($0.path)" } ?? ""))
        let trainer = Trainer(model: trainee, train: trainee.source, validation: nil, options: config.train, outputPath: bestPath)
        if !sets.validation.isEmpty { trainer.validator = { try trainee.validate() } }
        trainer.checkpointPath = checkpointPath
        trainer.log = log
        trainer.patience = config.train.patience
        trainer.shouldStop = shouldStop
        trainer.fileMetadata = [Self.freezeKey: String(freezeBackbone)]
        if let from { trainer.fileMetadata[Self.fromKey] = from }
        try trainer.run(storing: config.yaml(), runFolder: runFolder, resume: resume)
        if let runFolder, !sets.validation.isEmpty, Distributed.isMain {
            let (best, _) = try MultiTaskModel.load(path: bestPath)
            try sets.writePlots(of: best, into: runFolder)
        }
        return model
    }
}

/// The datasets of a multi-task run, opened and checked: per task a training set and maybe a
/// validation set of the same images and classes.
struct JointDatasets {
    var classification: (train: ClassificationDataset, validation: ClassificationDataset?)?
    var tagging: (train: TaggingDataset, validation: TaggingDataset?)?
    var detection: (train: DetectionDataset, validation: DetectionDataset?)?
    var segmentation: (train: SegmentationDataset, validation: SegmentationDataset?)?

    init(_ data: [VisionTask: String], _ validation: [VisionTask: String]) throws {
        func open<D: ImageDataset>(_ task: VisionTask, _ open: (String) throws -> D) throws -> (D, D?)? {
            guard let path = data[task] else { return nil }
            let train = try open(path)
            let check = try validation[task].map(open)
            if let check {
                guard check.channels == train.channels, check.height == train.height, check.width == train.width,
                      check.classNames == train.classNames else {
                    throw DatasetError(check.path, "holds \(check.channels)x\(check.height)x\(check.width) images of classes \(check.classNames), the \(task.rawValue) training set \(train.path) \(train.channels)x\(train.height)x\(train.width) of \(train.classNames)")
                }
            }
            return (train, check)
        }
        classification = try open(.classification, ClassificationDataset.init(path:))
        tagging = try open(.tagging, TaggingDataset.init(path:))
        detection = try open(.detection, DetectionDataset.init(path:))
        segmentation = try open(.segmentation, SegmentationDataset.init(path:))
        let all = self.all
        guard let first = all.first else { throw ConfigError("a multi-task run needs the training data of at least one task") }
        for (_, set) in all where set.channels != first.1.channels {
            throw DatasetError(set.path, "holds \(set.channels)-channel images, the \(first.0.rawValue) data \(first.1.path) \(first.1.channels)-channel ones: one backbone reads them all")
        }
    }

    /// The training sets in task order.
    var all: [(VisionTask, ImageDataset)] {
        [classification.map { (VisionTask.classification, $0.train as ImageDataset) }, tagging.map { (.tagging, $0.train) },
         detection.map { (.detection, $0.train) }, segmentation.map { (.segmentation, $0.train) }].compactMap { $0 }
    }

    var first: ImageDataset { all[0].1 }
    var channels: Int { first.channels }

    var validation: [VisionTask] {
        [classification?.validation.map { _ in VisionTask.classification }, tagging?.validation.map { _ in .tagging },
         detection?.validation.map { _ in .detection }, segmentation?.validation.map { _ in .segmentation }].compactMap { $0 }
    }

    var summary: String {
        all.map { "\($0.0.rawValue) \($0.1.count) images \($0.1.height)x\($0.1.width)" }.joined(separator: ", ")
    }

    /// Adds a head for every task with data that `description` lacks, built as its section says.
    func addMissingHeads(to description: inout MultiTaskConfiguration, config: MultiTaskConfig, backbone: BackboneConfiguration) throws {
        var rng = SeededGenerator(seed: 0)
        let deepest = try backbone.make(using: &rng).featureInfo.last!
        func configuration<H: Head>(_ dataset: ImageDataset, _ head: H.Architecture, _ settings: H.Settings) -> ModelConfiguration<H> {
            ModelConfiguration(task: H.task, inputChannels: description.inputChannels, inputHeight: dataset.height, inputWidth: dataset.width,
                               classes: dataset.classNames, backbone: backbone, head: head, settings: settings,
                               mean: description.mean, std: description.std)
        }
        if let set = classification?.train, description.classification == nil {
            var c = ClassificationConfig(); c.head = config.classify.head
            description.classification = configuration(set, try c.headArchitecture(deepest: deepest, backbone: backbone, dataset: set), config.classify.settings)
        }
        if let set = tagging?.train, description.tagging == nil {
            var c = TaggingConfig(); c.head = config.tag.head
            description.tagging = configuration(set, try c.headArchitecture(deepest: deepest, backbone: backbone, dataset: set), config.tag.settings)
        }
        if let set = detection?.train, description.detection == nil {
            let head = try config.detect.head.architecture(backbone: backbone, channels: set.channels, classes: set.classNames.count,
                                                           categoryIDs: set.categoryIDs)
            description.detection = configuration(set, head, config.detect.settings)
        }
        if let set = segmentation?.train, description.segmentation == nil {
            var c = SegmentationConfig(); c.head = config.segment.head
            description.segmentation = configuration(set, try c.headArchitecture(deepest: deepest, backbone: backbone, dataset: set), config.segment.settings)
        }
        try description.validate()
    }

    /// Starts fresh heads as their single-task runs do: the classifier from the pretrained
    /// file's own classifier head where it has the same classes and shape, the tagger at its
    /// tags' base rates, the window classifier and segmentation scores from the pretrained
    /// classifier where they can. Returns what was done, for the log.
    func prepareHeads(of model: MultiTaskModel, config: MultiTaskConfig, pretrained: PretrainedBackbone?) throws -> [String] {
        var done: [String] = []
        if let head = model.classification, let set = classification?.train, let pretrained,
           pretrained.task == VisionTask.classification.rawValue, pretrained.classes == set.classNames {
            let own = head.namedParameters
            if own.count == pretrained.headParameters.count,
               own.allSatisfy({ pretrained.headParameters[$0.path]?.shape == $0.parameter.shape }) {
                for (path, parameter) in own { parameter.value.pointer.update(from: pretrained.headParameters[path]!.pointer, count: parameter.value.count) }
                done.append("classification head from \(pretrained.path)'s classifier")
            }
        }
        if let head = model.tagging, let set = tagging?.train {
            head.initializeAtBaseRates(try tagFrequencies(set), seed: config.train.seed &+ 2)
        }
        if let head = model.detection, let set = detection?.train, let pretrained, head.start(from: pretrained, classes: set.classNames) {
            done.append("window classifier's fully connected layers from \(pretrained.path)")
        }
        if let head = model.segmentation, let set = segmentation?.train, config.segment.head.startScores, let pretrained,
           head.start(from: pretrained, classes: set.classNames) {
            done.append("segmentation class scores from \(pretrained.path)'s output layer")
        }
        return done
    }

    /// Checks that every dataset fits the model's head of its task (images and classes); with
    /// `onlyHeld`, tasks the model has no head for are skipped (they get new heads).
    func check(fit model: MultiTaskModel, named path: String, onlyHeld: Bool = false) throws {
        func check<H: Head>(_ set: ImageDataset?, _ head: H.Type) throws {
            guard let set else { return }
            guard let view = model.model(H.self) else {
                if onlyHeld { return }
                throw DatasetError(path, "has no \(H.task.rawValue) head (it has \(model.tasks.map(\.rawValue)))")
            }
            let c = view.configuration
            guard c.inputChannels == set.channels, c.classes == set.classNames,
                  H.task == .detection || (c.inputHeight == set.height && c.inputWidth == set.width) else {
                throw DatasetError(set.path, "holds \(set.channels)x\(set.height)x\(set.width) images of classes \(set.classNames); \(path)'s \(H.task.rawValue) head takes \(c.inputChannels)x\(c.inputHeight)x\(c.inputWidth) images of \(c.classes)")
            }
        }
        try check(classification?.train, ClassificationHead.self)
        try check(tagging?.train, TaggingHead.self)
        try check(detection?.train, WindowHead.self)
        try check(segmentation?.train, SegmentationHead.self)
    }

    /// Each validated head's plots in the run folder's TASK folder, as a single-task run folder holds them.
    func writePlots(of model: MultiTaskModel, into folder: RunFolder) throws {
        func plots<H: Head>(_ set: ImageDataset?, _ head: H.Type) throws {
            guard let set, let view = model.model(H.self) else { return }
            let (evaluation, metrics) = try view.evaluation(on: set)
            try view.writePlots(of: metrics, evaluation: evaluation, on: set, into: folder.path + "/" + H.task.runFolderName)
        }
        try plots(classification?.validation, ClassificationHead.self)
        try plots(tagging?.validation, TaggingHead.self)
        try plots(detection?.validation, WindowHead.self)
        try plots(segmentation?.validation, SegmentationHead.self)
    }
}

/// A multi-task model as `Trainer` trains it: a joint batch's loss is the weighted sum of its
/// parts' head losses; validation measures every head that has validation data.
final class JointTrainee: TrainableModel {
    let model: MultiTaskModel
    let source: JointBatches
    private var losses: [VisionTask: Tensor] = [:]
    private var validators: [(task: VisionTask, run: () throws -> Evaluation)] = []
    private var weights: [VisionTask: Float] = [:]
    private var lossFunctions: [VisionTask: (Batch) -> Tensor] = [:]
    /// Running loss per task since the last progress note.
    private var recent: [VisionTask: (sum: Double, count: Int)] = [:]

    var module: Module { model }

    init(_ model: MultiTaskModel, sets: JointDatasets, config: MultiTaskConfig) throws {
        self.model = model
        let c = model.configuration
        let seed = config.train.seed, augment = config.train.augment
        var sources: [(VisionTask, any BatchSource)] = []
        var weights: [VisionTask: Float] = [:], lossFunctions: [VisionTask: (Batch) -> Tensor] = [:]
        var validators: [(task: VisionTask, run: () throws -> Evaluation)] = []
        func loader(_ set: ImageDataset, batch: Int, erase: Float, paste: Float) -> DataLoader {
            let augmentation = config.train.augmentation(height: set.height, erasing: erase, pasting: paste)
            let size = config.batchSize(batch)
            return DataLoader(set, batchSize: size, shuffle: true, dropLast: set.count >= size * 2,
                              augmentation: augmentation, mean: c.mean, std: c.std, seed: seed, shard: .current)
        }
        func validationLoader(_ set: ImageDataset?, _ task: VisionTask) -> DataLoader? {
            set.map { DataLoader($0, batchSize: task == .detection ? 16 : 256, shuffle: false, mean: c.mean, std: c.std) }
        }
        func add<H: Head>(_ head: H.Type, weight: Float, source: (Model<H>) throws -> any BatchSource, validation: ImageDataset?,
                          calibrates: Bool = false) throws {
            guard let view = model.model(H.self) else { return }
            sources.append((H.task, try source(view)))
            weights[H.task] = weight
            lossFunctions[H.task] = { view.loss($0) }
            if let loader = validationLoader(validation, H.task) {
                view.calibratesOnValidation = calibrates
                validators.append((H.task, { try view.evaluate(loader) }))
            }
        }
        if let (train, check) = sets.classification {
            try add(ClassificationHead.self, weight: config.classify.weight,
                    source: { _ in loader(train, batch: config.classify.batch, erase: config.classify.erase, paste: config.classify.paste) },
                    validation: check)
        }
        if let (train, check) = sets.tagging {
            try add(TaggingHead.self, weight: config.tag.weight,
                    source: { _ in loader(train, batch: config.tag.batch, erase: config.tag.erase, paste: 0) },
                    validation: check, calibrates: config.tag.head.tuneThresholds)
        }
        if let (train, check) = sets.detection {
            try add(WindowHead.self, weight: config.detect.weight,
                    source: { try WindowSampler(dataset: train, model: $0, sampling: config.detect.sampling, flip: augment,
                                                noise: config.train.noise, nearest: config.train.nearest, sharpen: config.train.sharpen,
                                                batchSize: config.batchSize(config.detect.batch), seed: seed, shard: .current) },
                    validation: check)
        }
        if let (train, check) = sets.segmentation {
            try add(SegmentationHead.self, weight: config.segment.weight,
                    source: { _ in loader(train, batch: config.segment.batch, erase: config.segment.erase, paste: config.segment.paste) },
                    validation: check)
        }
        source = JointBatches(sources, sampling: config.sampling)
        self.weights = weights; self.lossFunctions = lossFunctions; self.validators = validators
    }

    func loss(_ batch: Batch) -> Tensor {
        var total: Tensor?
        for (task, part) in batch.parts {
            let loss = lossFunctions[task]!(part)
            // Data-parallel, a rank's loss is its share of the global one: rank 0's share times
            // the ranks estimates it for the progress note.
            let value = Double(loss.scalar) * Double(Distributed.size)
            recent[task, default: (0, 0)].sum += value * Double(part.count)
            recent[task, default: (0, 0)].count += part.count
            let weighted = weights[task]! == 1 ? loss : loss * weights[task]!
            total = total.map { $0 + weighted } ?? weighted
        }
        return total!
    }

    /// The backbone's batch-norm statistics as the cumulative average over the first `batches`
    /// batches of every task (their sources' epoch 0).
    func measureBatchNormStatistics(batches: Int) throws {
        let streams = source.sources.map { $0.source.stream(epoch: 0) }
        let deepest = model.backbone.featureInfo.last!.name
        try model.backbone.measureBatchNormStatistics(batches: batches * streams.count) { index in
            guard let batch = try streams[index % streams.count].nextBatch() else { return }
            _ = model.backbone.features(batch.images, through: deepest)
        }
    }

    func takeProgressNote() -> String {
        defer { recent = [:] }
        let parts = VisionTask.allCases.compactMap { task in
            recent[task].map { String(format: "%@ %.3f", task.runFolderName, $0.sum / Double(max($0.count, 1))) }
        }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }

    /// Every validated head's evaluation, combined: the score is the mean of their headline
    /// metrics; each head's metrics appear as TASK/KEY.
    func validate() throws -> Evaluation {
        var metrics: [Evaluation.Metric] = [], summaries: [String] = [], values: [Double] = []
        for (task, run) in validators {
            let evaluation = try run()
            values.append(evaluation.value)
            summaries.append(task.runFolderName + " " + evaluation.summary)
            for metric in evaluation.metrics { metrics.append(.init(task.runFolderName + "/" + metric.key, nil, metric.value)) }
        }
        let score = values.reduce(0, +) / Double(max(values.count, 1))
        return Evaluation(metricName: "score", value: score, summary: String(format: "score %.4f (", score) + summaries.joined(separator: "; ") + ")",
                          metrics: [.init("score", "score", .metric(score))] + metrics)
    }

    func evaluate(_ loader: DataLoader) throws -> Evaluation {
        throw ModelError("a multi-task model validates each head on its own task's data")
    }

    func save(to path: String, optimizer: (any Optimizer)?, epoch: Int, step: Int, metadata: [String: String]) throws {
        try model.save(to: path, optimizer: optimizer, epoch: epoch, step: step, metadata: metadata)
    }

    func matchesArchitecture(of checkpoint: ModelCheckpoint) -> Bool {
        checkpoint.task == MultiTaskConfiguration.task
            && (try? JSONDecoder().decode(MultiTaskConfiguration.self, from: Data(checkpoint.architecture.utf8))) == model.configuration
    }
}

/// The joint batches of a multi-task run, drawn from each task's own batches as `sampling`
/// says. Within epoch `e`, a task's k-th pass over its data is its source's epoch
/// `e * 4096 + k`, so every epoch is determined by its number alone and a resumed run draws what
/// the uninterrupted one did.
final class JointBatches: BatchSource {
    let sources: [(task: VisionTask, source: any BatchSource)]
    let sampling: JointSampling

    init(_ sources: [(VisionTask, any BatchSource)], sampling: JointSampling) {
        self.sources = sources.map { (task: $0.0, source: $0.1) }
        self.sampling = sampling
    }

    var batchCount: Int {
        let counts = sources.map(\.source.batchCount)
        switch sampling {
        case .all: return counts.max() ?? 0
        case .roundRobin: return counts.reduce(0, +)
        }
    }

    var batchSize: Int {
        let sizes = sources.map(\.source.batchSize)
        switch sampling {
        case .all: return sizes.reduce(0, +)
        case .roundRobin: return sizes.reduce(0, +) / max(sizes.count, 1)
        }
    }

    func stream(epoch: Int) -> any BatchStream { JointStream(self, epoch: epoch) }

    final class JointStream: BatchStream {
        let owner: JointBatches
        let epoch: Int
        var streams: [(any BatchStream)?]
        var passes: [Int]
        var step = 0

        init(_ owner: JointBatches, epoch: Int) {
            self.owner = owner; self.epoch = epoch
            streams = Array(repeating: nil, count: owner.sources.count)
            passes = Array(repeating: -1, count: owner.sources.count)
        }

        /// The next batch of task `i`, starting its data over when it runs out.
        func next(_ i: Int) throws -> Batch {
            if let batch = try streams[i]?.nextBatch() { return batch }
            passes[i] += 1
            precondition(passes[i] < 4096, "a task's data would be shown 4096 times in one joint epoch")
            streams[i] = owner.sources[i].source.stream(epoch: epoch * 4096 + passes[i])
            guard let batch = try streams[i]!.nextBatch() else {
                throw ModelError("the \(owner.sources[i].task.rawValue) data gives no batch")
            }
            return batch
        }

        func nextBatch() throws -> Batch? {
            guard step < owner.batchCount else { return nil }
            defer { step += 1 }
            switch owner.sampling {
            case .all: return Batch(parts: try owner.sources.indices.map { (owner.sources[$0].task, try next($0)) })
            case .roundRobin:
                let i = step % owner.sources.count
                return Batch(parts: [(owner.sources[i].task, try next(i))])
            }
        }
    }
}
