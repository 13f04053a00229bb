import PerceptCore
import PerceptDatasets
import Foundation

/// Everything needed to rebuild a model: stored as the `architecture` JSON of its file.
///
/// The head's architecture and settings are written into the same JSON object as these keys (a
/// head's keys must not be one of them), which keeps the layout that model files have always had.
public struct ModelConfiguration<H: Head>: Codable, Equatable, Sendable {
    public var task: VisionTask
    /// Input image shape the model was trained on.
    public var inputChannels: Int, inputHeight: Int, inputWidth: Int
    /// Class names (tag names for tagging).
    public var classes: [String]
    public var backbone: BackboneConfiguration
    /// What decides the head's weight shapes.
    public var head: H.Architecture
    /// How the head decodes: the model's default settings.
    public var settings: H.Settings
    /// Per-channel normalisation applied to value / 255.
    public var mean: [Float], std: [Float]

    public init(task: VisionTask, inputChannels: Int, inputHeight: Int, inputWidth: Int, classes: [String],
                backbone: BackboneConfiguration, head: H.Architecture, settings: H.Settings, mean: [Float], std: [Float]) {
        self.task = task; self.inputChannels = inputChannels; self.inputHeight = inputHeight
        self.inputWidth = inputWidth; self.classes = classes; self.backbone = backbone; self.head = head; self.settings = settings
        self.mean = mean; self.std = std
    }

    /// The size of the images the model takes.
    public var geometry: InputGeometry { InputGeometry(height: inputHeight, width: inputWidth) }

    enum CodingKeys: String, CodingKey { case task, inputChannels, inputHeight, inputWidth, classes, backbone, mean, std }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        task = try c.decode(VisionTask.self, forKey: .task)
        inputChannels = try c.decode(Int.self, forKey: .inputChannels)
        inputHeight = try c.decode(Int.self, forKey: .inputHeight)
        inputWidth = try c.decode(Int.self, forKey: .inputWidth)
        classes = try c.decode([String].self, forKey: .classes)
        backbone = try c.decode(BackboneConfiguration.self, forKey: .backbone)
        mean = try c.decode([Float].self, forKey: .mean)
        std = try c.decode([Float].self, forKey: .std)
        head = try H.Architecture(from: decoder)
        settings = try H.Settings(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(task, forKey: .task)
        try c.encode(inputChannels, forKey: .inputChannels)
        try c.encode(inputHeight, forKey: .inputHeight)
        try c.encode(inputWidth, forKey: .inputWidth)
        try c.encode(classes, forKey: .classes)
        try c.encode(backbone, forKey: .backbone)
        try c.encode(mean, forKey: .mean)
        try c.encode(std, forKey: .std)
        try head.encode(to: encoder)
        try settings.encode(to: encoder)
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// Decodes the architecture JSON of a model file.
    public static func decode(_ json: String, path: String) throws -> ModelConfiguration {
        do {
            return try JSONDecoder().decode(ModelConfiguration.self, from: Data(json.utf8))
        } catch let error as DecodingError {
            throw DatasetError(path, "architecture JSON does not describe a Percept model: \(describe(error))")
        }
    }
}

/// The task named by an architecture JSON, read before the rest is decoded for that task's head.
private struct TaskField: Decodable { var task: VisionTask }

/// "key 'loss': value 'focal' is not valid" rather than the whole DecodingError dump.
func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, let context):
        let at = path(context)
        return "missing key '\(at.isEmpty ? "" : at + ".")\(key.stringValue)'"
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        let at = path(context)
        return (at.isEmpty ? "" : "key '\(at)': ") + context.debugDescription
    @unknown default:
        return "\(error)"
    }
}

/// Something that trains: a loss per batch, an evaluation, and a file to save to. `Trainer`
/// drives any of them; a model with one head is one, and so would be one with several.
public protocol TrainableModel: AnyObject {
    /// The module whose parameters the optimizer updates and whose state checkpoints hold
    /// (the model itself, for a module).
    var module: Module { get }
    /// The batch's scalar loss, with the graph recorded.
    func loss(_ batch: Batch) -> Tensor
    /// Metrics over every batch of `loader`, in inference mode.
    func evaluate(_ loader: DataLoader) throws -> Evaluation
    /// Writes the model (and, for checkpoints, optimizer state and progress) atomically.
    func save(to path: String, optimizer: (any Optimizer)?, epoch: Int, step: Int, metadata: [String: String]) throws
    /// Whether a checkpoint holds this architecture (so its weights can continue this run).
    func matchesArchitecture(of checkpoint: ModelCheckpoint) -> Bool
    /// What the progress line adds after the loss (a multi-task model's loss per task), and
    /// starts afresh after each call.
    func takeProgressNote() -> String
}

extension TrainableModel {
    public func takeProgressNote() -> String { "" }
}

extension TrainableModel where Self: Module {
    public var module: Module { self }
}

/// Where a model's parts sit among its dotted parameter and buffer paths (weight files,
/// checkpoints, per-group learning rates): under the property names of `Model`.
public enum ModelPath {
    public static let backbone = "backbone."
    public static let head = "head."
}

/// A backbone and a head: images in, the head's predictions out.
public final class Model<H: Head>: Module, TrainableModel {
    public let backbone: any Backbone
    public let head: H
    /// Input size, classes, normalisation and backbone; the head's part is `head.architecture`
    /// and `head.settings`.
    private let base: ModelConfiguration<H>
    /// The deepest backbone map the head reads: the backbone stops there.
    private let deepestInput: String?

    /// A model with fresh weights drawn from `seed`.
    public init(_ configuration: ModelConfiguration<H>, seed: UInt64) throws {
        guard configuration.task == H.task else {
            throw ModelError("a \(configuration.task.rawValue) configuration cannot build a \(H.task.rawValue) head")
        }
        var rng = SeededGenerator(seed: seed)
        backbone = try configuration.backbone.make(using: &rng)
        let features = backbone.featureInfo
        head = try H(configuration.head, settings: configuration.settings, features: features, geometry: configuration.geometry,
                     seed: seed &+ 1, using: &rng)
        let wanted = Set(head.inputs)
        guard wanted.isSubset(of: features.map(\.name)) else {
            throw ModelError("head reads maps \(head.inputs.sorted()), backbone has \(features.map(\.name))")
        }
        deepestInput = features.last { wanted.contains($0.name) }?.name
        base = configuration
    }

    /// A model of `backbone` and `head` as they are, shared and not copied: one head of a
    /// multi-task model seen as a single-task model.
    init(sharing backbone: any Backbone, head: H, configuration: ModelConfiguration<H>) {
        self.backbone = backbone
        self.head = head
        let wanted = Set(head.inputs)
        deepestInput = backbone.featureInfo.last { wanted.contains($0.name) }?.name
        base = configuration
    }

    /// The model's full description, the head's current settings included.
    public var configuration: ModelConfiguration<H> {
        var c = base
        c.settings = head.settings
        return c
    }

    /// Decodes with `settings` from now on (checked to fit the head); the weights stay as they are.
    public func use(_ settings: H.Settings) throws {
        try settings.validate()
        try head.check(settings)
        head.settings = settings
    }

    public var geometry: InputGeometry { base.geometry }

    /// Raw head outputs for normalised images [N, C, H, W].
    public func callAsFunction(_ images: Tensor) -> Tensor {
        head(backbone.features(images, through: deepestInput))
    }

    public func loss(_ batch: Batch) -> Tensor {
        head.loss(head.trainingOutputs(backbone.features(batch.images, through: deepestInput)), head.targets(of: batch), geometry: geometry)
    }

    /// The prediction context for images of `geometry` (the model's input size by default).
    public func context(_ geometry: InputGeometry? = nil) -> PredictionContext {
        PredictionContext(geometry: geometry ?? self.geometry, background: zip(base.mean, base.std).map { -$0 / $1 },
                          runCrops: { [unowned self] in head.trainingOutputs(backbone.features($0, through: deepestInput)) },
                          features: { [unowned self] in backbone.features($0, through: deepestInput) },
                          run: { [unowned self] in self($0) })
    }

    /// Predictions for normalised images [N, C, H, W] (of the model's input size, or of
    /// `geometry` for heads that take any size), computed in batches in inference mode.
    public func predict(_ images: Tensor, geometry: InputGeometry? = nil, batchSize: Int = 256) -> [H.Prediction] {
        setMode(.inference)
        var predictions: [H.Prediction] = []
        let context = context(geometry)
        forEachSlice(of: images, batchSize: batchSize) { predictions += head.predict($0, context) }
        return predictions
    }

    /// Raw outputs for normalised images, batch by batch, concatenated along the first axis.
    public func outputs(_ images: Tensor, batchSize: Int = 256) -> Tensor {
        setMode(.inference)
        var chunks: [Tensor] = []
        forEachSlice(of: images, batchSize: batchSize) { chunks.append(self($0)) }
        guard let first = chunks.first else { return Tensor.uninitialized([0]) }
        let rows = chunks.reduce(0) { $0 + $1.shape[0] }
        let out = Tensor.uninitialized([rows] + Array(first.shape.dropFirst()))
        var offset = 0
        for chunk in chunks {
            (out.pointer + offset).update(from: chunk.pointer, count: chunk.count)
            offset += chunk.count
        }
        return out
    }

    private func forEachSlice(of images: Tensor, batchSize: Int, _ body: (Tensor) -> Void) {
        let n = images.shape[0]
        let per = images.count / max(n, 1)
        for start in stride(from: 0, to: n, by: batchSize) {
            let count = min(batchSize, n - start)
            let slice = Tensor.uninitialized([count] + Array(images.shape.dropFirst()))
            slice.pointer.update(from: images.pointer + start * per, count: count * per)
            body(slice)
        }
    }

    /// The head's metrics over every batch of `loader` (epoch 0 order), in inference mode; the
    /// model stays in inference mode (`Trainer` switches back at the start of every epoch).
    public func measure(_ loader: DataLoader) throws -> H.Metrics {
        setMode(.inference)
        var metrics = head.makeMetrics()
        let context = context()
        let batches = loader.batches(epoch: 0)
        while let batch = try batches.nextBatch() {
            head.measure(head.predict(batch.images, context), batch, into: &metrics)
        }
        return metrics
    }

    /// Whether `evaluate` also tunes the head's settings on the data it measures (a tagger's
    /// thresholds on the validation set) before reporting, so the best model is saved with them.
    public var calibratesOnValidation = false

    public func evaluate(_ loader: DataLoader) throws -> Evaluation {
        let metrics = try measure(loader)
        if calibratesOnValidation, let tuned = head.calibrated(from: metrics) { head.settings = tuned }
        return head.evaluation(of: metrics, classes: base.classes)
    }

    /// Reads a model file: checks its task, rebuilds the architecture from its JSON and loads
    /// the weights.
    public static func load(path: String) throws -> (Model, ModelCheckpoint) {
        let checkpoint = try ModelCheckpoint.read(path: path)
        return (try load(checkpoint, path: path), checkpoint)
    }

    /// The model `checkpoint` (read from `path`, which errors name) holds.
    public static func load(_ checkpoint: ModelCheckpoint, path: String) throws -> Model {
        if checkpoint.task == MultiTaskConfiguration.task {
            // A multi-task file: its head of this task, on the shared backbone.
            let multi = try MultiTaskModel.load(checkpoint, path: path)
            guard let model = multi.model(H.self) else {
                throw DatasetError(path, "is a multi-task model with heads \(multi.tasks.map(\.rawValue)), none for \(H.task.rawValue)")
            }
            return model
        }
        let task: VisionTask
        do {
            task = try JSONDecoder().decode(TaskField.self, from: Data(checkpoint.architecture.utf8)).task
        } catch let error as DecodingError {
            throw DatasetError(path, "architecture JSON does not describe a Percept model: \(describe(error))")
        }
        guard task == H.task else { throw DatasetError(path, "is a \(task.rawValue) model, not \(H.task.rawValue)") }
        let configuration = try ModelConfiguration<H>.decode(checkpoint.architecture, path: path)
        let model: Model
        do { model = try Model(configuration, seed: 0) } catch let error as ModelError {
            throw DatasetError(path, error.description)
        }
        guard configuration.classes.count == model.head.classCount, checkpoint.classNames.isEmpty || checkpoint.classNames == configuration.classes else {
            throw DatasetError(path, "names \(configuration.classes.count) classes (\(checkpoint.classNames.count) in class_names) for a head of \(model.head.classCount)")
        }
        try checkpoint.load(into: model, path: path)
        // After the load, whose key check makes the checkpoint's tensors exactly the model's.
        try checkpoint.checkFinite(path: path)
        model.setMode(.inference)
        return model
    }

    public func save(to path: String, optimizer: (any Optimizer)? = nil, epoch: Int = 0, step: Int = 0,
                     metadata: [String: String] = [:]) throws {
        let state = optimizer.map { OptimizerState(of: $0, for: self) }
        let c = configuration
        try ModelCheckpoint(module: self, architecture: c.json(), task: c.task.rawValue, classNames: c.classes,
                            optimizer: state, epoch: epoch, step: step, metadata: metadata).write(to: path)
    }

    public func matchesArchitecture(of checkpoint: ModelCheckpoint) -> Bool {
        (try? ModelConfiguration<H>.decode(checkpoint.architecture, path: "")) == configuration
    }
}

public typealias Classifier = Model<ClassificationHead>
public typealias Tagger = Model<TaggingHead>
