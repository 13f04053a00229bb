import Core
import Datasets
import Foundation

/// The four tasks a Percept model can be trained for.
public enum TaskKind: String, Codable, Sendable, CaseIterable {
    case classification, tagging, detection, segmentation
}

/// Everything needed to rebuild a model: stored as the `architecture` JSON of its file.
public struct ModelConfiguration: Codable, Equatable, Sendable {
    public var task: TaskKind
    /// Input image shape the model was trained on.
    public var inputChannels: Int, inputHeight: Int, inputWidth: Int
    /// Class names (tag names for tagging).
    public var classes: [String]
    public var backbone: BackboneConfiguration
    public var head: HeadConfiguration
    /// "cross_entropy" or "hinge" (classification), "binary_cross_entropy" (tagging).
    public var loss: String
    public var labelSmoothing: Float
    /// Per-class decision thresholds for tagging (0.5 when absent).
    public var thresholds: [Float]?
    /// Per-channel normalisation applied to value / 255.
    public var mean: [Float], std: [Float]

    public init(task: TaskKind, inputChannels: Int, inputHeight: Int, inputWidth: Int, classes: [String],
                backbone: BackboneConfiguration, head: HeadConfiguration, loss: String,
                labelSmoothing: Float = 0, thresholds: [Float]? = nil, mean: [Float], std: [Float]) {
        self.task = task; self.inputChannels = inputChannels; self.inputHeight = inputHeight
        self.inputWidth = inputWidth; self.classes = classes; self.backbone = backbone; self.head = head
        self.loss = loss; self.labelSmoothing = labelSmoothing; self.thresholds = thresholds
        self.mean = mean; self.std = std
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

/// A backbone and a head: [N, C, H, W] images -> [N, classes] logits.
public final class Model: Layer {
    public let backbone: any Backbone
    public let head: VectorHead
    public internal(set) var configuration: ModelConfiguration

    /// A model with fresh weights drawn from `seed`.
    public init(_ configuration: ModelConfiguration, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        backbone = try configuration.backbone.make(using: &rng)
        head = VectorHead(configuration.head, seed: seed &+ 1, using: &rng)
        self.configuration = configuration
        try checkFeatureSize()
    }

    /// Checks that the head's input matches what the backbone produces for the input size.
    func checkFeatureSize() throws {
        let stride = backbone.outStride
        let h = configuration.inputHeight, w = configuration.inputWidth
        let features = configuration.head.pooling != .flatten
            ? backbone.outChannels
            : backbone.outChannels * ((h + stride - 1) / stride) * ((w + stride - 1) / stride)
        if configuration.head.pooling == .flatten && (h % stride != 0 || w % stride != 0) {
            throw ModelError("input \(h)x\(w) is not divisible by the backbone stride \(stride)")
        }
        guard features == configuration.head.inFeatures else {
            throw ModelError("head expects \(configuration.head.inFeatures) features, backbone gives \(features)")
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { head(backbone(x)) }

    /// Reads a model file: rebuilds the architecture from its JSON and loads the weights.
    public static func load(path: String, expecting task: TaskKind? = nil) throws -> (Model, ModelCheckpoint) {
        let checkpoint = try ModelCheckpoint.read(path: path)
        let configuration: ModelConfiguration
        do {
            configuration = try JSONDecoder().decode(ModelConfiguration.self, from: Data(checkpoint.architecture.utf8))
        } catch {
            throw DatasetError(path, "architecture JSON does not describe a Percept model: \(error)")
        }
        if let task, configuration.task != task {
            throw DatasetError(path, "is a \(configuration.task.rawValue) model, not \(task.rawValue)")
        }
        let model: Model
        do { model = try Model(configuration, seed: 0) } catch let error as ModelError {
            throw DatasetError(path, error.description)
        }
        try checkpoint.load(into: model, path: path)
        model.setMode(.inference)
        return (model, checkpoint)
    }

    /// Writes this model (and, for checkpoints, optimizer state and progress) atomically.
    public func save(to path: String, optimizer: (any Optimizer)? = nil, epoch: Int = 0, step: Int = 0,
                     metadata: [String: String] = [:]) throws {
        let state = optimizer.map { opt in
            OptimizerState(name: opt.name, hyperparameters: opt.configuration,
                           tensors: Dictionary(opt.stateTensors(of: self).map { ($0.name, $0.value) },
                                               uniquingKeysWith: { a, _ in a }))
        }
        try ModelCheckpoint(module: self, architecture: configuration.json(), task: configuration.task.rawValue,
                            classNames: configuration.classes, optimizer: state, epoch: epoch, step: step,
                            metadata: metadata).write(to: path)
    }

    /// Sets tagging thresholds (saved with the model).
    public func setThresholds(_ thresholds: [Float]) { configuration.thresholds = thresholds }

    /// Runs inference over `images` ([N, C, H, W], already normalised) in batches.
    public func predict(_ images: Tensor, batchSize: Int = 256) -> Tensor {
        setMode(.inference)
        let n = images.shape[0], k = configuration.head.outputs
        let out = Tensor.uninitialized([n, k])
        let per = images.count / max(n, 1)
        for start in stride(from: 0, to: n, by: batchSize) {
            let count = min(batchSize, n - start)
            let slice = Tensor.uninitialized([count] + Array(images.shape.dropFirst()))
            slice.pointer.update(from: images.pointer + start * per, count: count * per)
            let logits = self(slice)
            (out.pointer + start * k).update(from: logits.pointer, count: count * k)
        }
        return out
    }
}
