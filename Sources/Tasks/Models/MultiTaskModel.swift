import PerceptCore
import PerceptDatasets
import Foundation

/// A multi-task model's description: one backbone with its input channels and normalisation,
/// and any subset of the four heads, each described by the single-task configuration it would
/// have on its own (its class names, input size, architecture and settings). Every head's
/// backbone, channels and normalisation are the shared ones, so each head of a multi-task model
/// is also a single-task model, and a single-task model is the one-head case.
///
/// Stored as a model file's `architecture` JSON: `{"task": "multi", "backbone", "inputChannels",
/// "mean", "std", "heads": {"classification": {...}, ...}}`, each head's object exactly as a
/// single-task file of that task stores it (docs/datasets.md).
public struct MultiTaskConfiguration: Codable, Equatable, Sendable {
    /// The `task` attribute and JSON key of multi-task model files.
    public static let task = "multi"

    public var backbone: BackboneConfiguration
    public var inputChannels: Int
    public var mean: [Float], std: [Float]
    public var classification: ModelConfiguration<ClassificationHead>?
    public var tagging: ModelConfiguration<TaggingHead>?
    public var detection: ModelConfiguration<WindowHead>?
    public var segmentation: ModelConfiguration<SegmentationHead>?

    /// A multi-task configuration of heads whose backbone and normalisation are those of the first.
    public init(classification: ModelConfiguration<ClassificationHead>? = nil, tagging: ModelConfiguration<TaggingHead>? = nil,
                detection: ModelConfiguration<WindowHead>? = nil, segmentation: ModelConfiguration<SegmentationHead>? = nil) throws {
        let shared: (BackboneConfiguration, Int, [Float], [Float])
        if let c = classification { shared = (c.backbone, c.inputChannels, c.mean, c.std) }
        else if let c = tagging { shared = (c.backbone, c.inputChannels, c.mean, c.std) }
        else if let c = detection { shared = (c.backbone, c.inputChannels, c.mean, c.std) }
        else if let c = segmentation { shared = (c.backbone, c.inputChannels, c.mean, c.std) }
        else { throw ModelError("a multi-task model needs at least one head") }
        (backbone, inputChannels, mean, std) = shared
        self.classification = classification; self.tagging = tagging
        self.detection = detection; self.segmentation = segmentation
        try validate()
    }

    /// A description of the shared part only; heads are added before it builds a model.
    public init(backbone: BackboneConfiguration, inputChannels: Int, mean: [Float], std: [Float]) {
        self.backbone = backbone; self.inputChannels = inputChannels; self.mean = mean; self.std = std
    }

    /// The tasks of the heads held, in the order classification, tagging, detection, segmentation.
    public var tasks: [VisionTask] {
        [classification.map { _ in VisionTask.classification }, tagging.map { _ in .tagging },
         detection.map { _ in .detection }, segmentation.map { _ in .segmentation }].compactMap { $0 }
    }

    /// Throws unless there is a head and every head shares the backbone, channels and normalisation.
    public func validate() throws {
        guard !tasks.isEmpty else { throw ModelError("a multi-task model needs at least one head") }
        func check<H: Head>(_ c: ModelConfiguration<H>?) throws {
            guard let c else { return }
            guard c.task == H.task else { throw ModelError("the \(H.task.rawValue) head is described as a \(c.task.rawValue) model") }
            guard c.backbone == backbone, c.inputChannels == inputChannels, c.mean == mean, c.std == std else {
                throw ModelError("the \(H.task.rawValue) head's backbone or normalisation differs from the shared one")
            }
        }
        try check(classification); try check(tagging); try check(detection); try check(segmentation)
    }

    enum CodingKeys: String, CodingKey { case task, backbone, inputChannels, mean, std, heads }
    enum HeadKeys: String, CodingKey { case classification, tagging, detection, segmentation }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let task = try c.decode(String.self, forKey: .task)
        guard task == Self.task else {
            throw DecodingError.dataCorruptedError(forKey: .task, in: c, debugDescription: "'\(task)' is not '\(Self.task)'")
        }
        backbone = try c.decode(BackboneConfiguration.self, forKey: .backbone)
        inputChannels = try c.decode(Int.self, forKey: .inputChannels)
        mean = try c.decode([Float].self, forKey: .mean)
        std = try c.decode([Float].self, forKey: .std)
        let heads = try c.nestedContainer(keyedBy: HeadKeys.self, forKey: .heads)
        classification = try heads.decodeIfPresent(ModelConfiguration<ClassificationHead>.self, forKey: .classification)
        tagging = try heads.decodeIfPresent(ModelConfiguration<TaggingHead>.self, forKey: .tagging)
        detection = try heads.decodeIfPresent(ModelConfiguration<WindowHead>.self, forKey: .detection)
        segmentation = try heads.decodeIfPresent(ModelConfiguration<SegmentationHead>.self, forKey: .segmentation)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.task, forKey: .task)
        try c.encode(backbone, forKey: .backbone)
        try c.encode(inputChannels, forKey: .inputChannels)
        try c.encode(mean, forKey: .mean)
        try c.encode(std, forKey: .std)
        var heads = c.nestedContainer(keyedBy: HeadKeys.self, forKey: .heads)
        try heads.encodeIfPresent(classification, forKey: .classification)
        try heads.encodeIfPresent(tagging, forKey: .tagging)
        try heads.encodeIfPresent(detection, forKey: .detection)
        try heads.encodeIfPresent(segmentation, forKey: .segmentation)
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

/// One backbone and up to four heads: one backbone pass feeds every head asked for.
///
/// Parameters sit under `backbone.` and under each head's task name (`classification.`,
/// `tagging.`, `detection.`, `segmentation.`). `model(_:)` gives a head as a single-task
/// `Model` that shares this model's backbone and head objects, so every single-task path
/// (prediction, evaluation, export) works on one head of it, on the same weights.
public final class MultiTaskModel: Module {
    public let backbone: any Backbone
    public let classification: ClassificationHead?
    public let tagging: TaggingHead?
    public let detection: WindowHead?
    public let segmentation: SegmentationHead?
    private let base: MultiTaskConfiguration

    /// A model with fresh weights drawn from `seed`: the backbone as a single-task model of that
    /// seed draws it, then the heads in task order, the first as that single-task model's head.
    public init(_ configuration: MultiTaskConfiguration, seed: UInt64) throws {
        try configuration.validate()
        var rng = SeededGenerator(seed: seed)
        let backbone = try configuration.backbone.make(using: &rng)
        let features = backbone.featureInfo
        var index: UInt64 = 0
        func make<H: Head>(_ c: ModelConfiguration<H>?) throws -> H? {
            guard let c else { return nil }
            index += 1
            let head = try H(c.head, settings: c.settings, features: features, geometry: c.geometry, seed: seed &+ index, using: &rng)
            guard Set(head.inputs).isSubset(of: features.map(\.name)) else {
                throw ModelError("the \(H.task.rawValue) head reads maps \(head.inputs.sorted()), the backbone has \(features.map(\.name))")
            }
            guard c.classes.count == head.classCount else {
                throw ModelError("the \(H.task.rawValue) head scores \(head.classCount) classes, its configuration names \(c.classes.count)")
            }
            return head
        }
        self.backbone = backbone
        classification = try make(configuration.classification)
        tagging = try make(configuration.tagging)
        detection = try make(configuration.detection)
        segmentation = try make(configuration.segmentation)
        base = configuration
    }

    /// The model's full description, each head's current settings included.
    public var configuration: MultiTaskConfiguration {
        var c = base
        if let head = classification { c.classification?.settings = head.settings }
        if let head = tagging { c.tagging?.settings = head.settings }
        if let head = detection { c.detection?.settings = head.settings }
        if let head = segmentation { c.segmentation?.settings = head.settings }
        return c
    }

    public var tasks: [VisionTask] { base.tasks }

    /// The head of `task`, if the model has one.
    public func head(_ task: VisionTask) -> (any Head)? {
        switch task {
        case .classification: return classification
        case .tagging: return tagging
        case .detection: return detection
        case .segmentation: return segmentation
        }
    }

    /// Raw outputs of the heads of `tasks` (all by default) for normalised images [N, C, H, W],
    /// from one backbone pass that stops at the deepest map they read.
    public func callAsFunction(_ images: Tensor, tasks: [VisionTask]? = nil) -> [VisionTask: Tensor] {
        let heads = (tasks ?? self.tasks).compactMap { task in head(task).map { (task, $0) } }
        let wanted = Set(heads.flatMap { $0.1.inputs })
        let deepest = backbone.featureInfo.last { wanted.contains($0.name) }?.name
        let features = backbone.features(images, through: deepest)
        return Dictionary(uniqueKeysWithValues: heads.map { ($0.0, $0.1(features)) })
    }

    /// The head of `H`'s task as a single-task model sharing this model's backbone and head
    /// (nil when the model has no such head).
    public func model<H: Head>(_ head: H.Type) -> Model<H>? {
        switch H.task {
        case .classification: return view(classification as? H, base.classification as? ModelConfiguration<H>)
        case .tagging: return view(tagging as? H, base.tagging as? ModelConfiguration<H>)
        case .detection: return view(detection as? H, base.detection as? ModelConfiguration<H>)
        case .segmentation: return view(segmentation as? H, base.segmentation as? ModelConfiguration<H>)
        }
    }

    private func view<H: Head>(_ head: H?, _ configuration: ModelConfiguration<H>?) -> Model<H>? {
        guard let head, var configuration else { return nil }
        configuration.settings = head.settings
        return Model(sharing: backbone, head: head, configuration: configuration)
    }

    /// Writes the model atomically (task `multi`; see `MultiTaskConfiguration`), and for a
    /// checkpoint the optimizer's state.
    public func save(to path: String, optimizer: (any Optimizer)? = nil, epoch: Int = 0, step: Int = 0,
                     metadata: [String: String] = [:]) throws {
        try ModelCheckpoint(module: self, architecture: configuration.json(), task: MultiTaskConfiguration.task,
                            optimizer: optimizer.map { OptimizerState(of: $0, for: self) },
                            epoch: epoch, step: step, metadata: metadata).write(to: path)
    }

    /// Copies every weight and statistic of `other` into the tensors of the same path here
    /// (the backbone and the heads both hold); every path of `other` must exist here with its shape.
    public func copyWeights(of other: MultiTaskModel) throws {
        let own = Dictionary(state.map { ($0.path, $0.value) }, uniquingKeysWith: { a, _ in a })
        let theirs = other.state
        for (path, value) in theirs {
            guard let target = own[path], target.shape == value.shape else {
                throw ModelError("\(path): \(value.shape) has no counterpart of that shape in the model being built")
            }
        }
        for (path, value) in theirs { own[path]!.pointer.update(from: value.pointer, count: value.count) }
    }

    /// Reads a multi-task model file, or a single-task one as a model with its one head.
    public static func load(path: String) throws -> (MultiTaskModel, ModelCheckpoint) {
        let checkpoint = try ModelCheckpoint.read(path: path)
        return (try load(checkpoint, path: path), checkpoint)
    }

    /// The model `checkpoint` (read from `path`, which errors name) holds.
    public static func load(_ checkpoint: ModelCheckpoint, path: String) throws -> MultiTaskModel {
        var checkpoint = checkpoint
        let configuration: MultiTaskConfiguration
        if checkpoint.task == MultiTaskConfiguration.task {
            do {
                configuration = try JSONDecoder().decode(MultiTaskConfiguration.self, from: Data(checkpoint.architecture.utf8))
            } catch let error as DecodingError {
                throw DatasetError(path, "architecture JSON does not describe a Percept multi-task model: \(describe(error))")
            }
        } else {
            let json = checkpoint.architecture
            do {
                switch VisionTask(rawValue: checkpoint.task) {
                case .classification?: configuration = try .init(classification: .decode(json, path: path))
                case .tagging?: configuration = try .init(tagging: .decode(json, path: path))
                case .detection?: configuration = try .init(detection: .decode(json, path: path))
                case .segmentation?: configuration = try .init(segmentation: .decode(json, path: path))
                case nil: throw DatasetError(path, "is a model of task '\(checkpoint.task)', which Percept does not know")
                }
            } catch let error as ModelError { throw DatasetError(path, error.description) }
            // A single-task file's head sits under `head.`; here it sits under its task's name.
            let prefix = checkpoint.task + "."
            func renamed(_ tensors: [String: Tensor]) -> [String: Tensor] {
                Dictionary(uniqueKeysWithValues: tensors.map { key, value in
                    (key.hasPrefix(ModelPath.head) ? prefix + key.dropFirst(ModelPath.head.count) : key, value)
                })
            }
            checkpoint.parameters = renamed(checkpoint.parameters)
            checkpoint.buffers = renamed(checkpoint.buffers)
        }
        let model: MultiTaskModel
        do { model = try MultiTaskModel(configuration, seed: 0) } catch let error as ModelError {
            throw DatasetError(path, error.description)
        }
        try checkpoint.load(into: model, path: path)
        try checkpoint.checkFinite(path: path)
        model.setMode(.inference)
        return model
    }
}
