import Core
import Datasets

/// Where a batch of outputs came from: the size of the images the network saw and, for a
/// level of an image pyramid, how much the original image was scaled to make it. Heads whose
/// outputs are positions (windows, pixels) use it to map them back to the original image;
/// classification and tagging ignore it.
public struct InputGeometry: Equatable, Sendable {
    /// Size of the network's input images.
    public var height: Int, width: Int
    /// Network-input pixels per original-image pixel (1 without a pyramid).
    public var scale: Float

    public init(height: Int, width: Int, scale: Float = 1) {
        self.height = height; self.width = width; self.scale = scale
    }
}

/// A task head, in dlib's sense of a loss layer: it owns its layers, its loss, its decoding of
/// outputs into predictions, and its metrics, so one object serves training and inference and
/// no caller interprets raw outputs.
///
/// A head reads named backbone maps (`inputs`), never images or files: a model may feed several
/// heads from one backbone pass.
public protocol Head: Module {
    /// The head's settings, stored in the model file's architecture JSON beside the backbone's
    /// (its keys sit in the same JSON object as `ModelConfiguration`'s own).
    associatedtype Configuration: Codable, Equatable, Sendable
    /// A batch's ground truth in the form the loss reads.
    associatedtype Targets
    /// What the head predicts for one image.
    associatedtype Prediction
    /// Accumulates predictions against ground truth over an evaluation.
    associatedtype Metrics

    /// The task this head solves (checked when a model file is loaded).
    static var task: VisionTask { get }

    var configuration: Configuration { get }

    /// A head with fresh weights for a backbone that returns `features`, on inputs of
    /// `geometry`; throws when the configuration does not fit them. `rng` continues the
    /// backbone's initialisation stream; `seed` seeds the head's own randomness (dropout).
    init(_ configuration: Configuration, features: [FeatureMapInfo], geometry: InputGeometry,
         seed: UInt64, using rng: inout SeededGenerator) throws

    /// Names of the backbone maps the head reads.
    var inputs: [String] { get }

    /// How many names the model's class list must hold: the classes (or tags) the head scores.
    var classCount: Int { get }

    /// Raw outputs (logits) from the backbone's maps.
    func callAsFunction(_ features: FeatureMaps) -> Tensor

    /// The part of `batch` this head learns from.
    func targets(of batch: Batch) -> Targets

    /// Scalar training loss of `outputs` against `targets` (records the graph in training mode).
    func loss(_ outputs: Tensor, _ targets: Targets, geometry: InputGeometry) -> Tensor

    /// One prediction per image of `outputs`.
    func decode(_ outputs: Tensor, geometry: InputGeometry) -> [Prediction]

    /// One prediction per normalised image of `images`: by default the decoded outputs of one
    /// pass; a head may run more passes (a window head scores an image pyramid and merges it).
    func predict(_ images: Tensor, _ context: PredictionContext) -> [Prediction]

    /// Empty metrics for an evaluation.
    func makeMetrics() -> Metrics

    /// Adds one batch's predictions and the batch's ground truth to `metrics`.
    func measure(_ predictions: [Prediction], _ batch: Batch, into metrics: inout Metrics)

    /// The evaluation's headline number (what picks the best epoch), summary line and values.
    func evaluation(of metrics: Metrics) -> Evaluation
}

/// What a head's `predict` has besides the images: their size, the value black takes after
/// normalisation (for padding), and the network pass from normalised images to raw outputs.
public struct PredictionContext {
    public var geometry: InputGeometry
    /// Per channel.
    public var background: [Float]
    public var run: (Tensor) -> Tensor

    public init(geometry: InputGeometry, background: [Float], run: @escaping (Tensor) -> Tensor) {
        self.geometry = geometry; self.background = background; self.run = run
    }
}

extension Head {
    public func predict(_ images: Tensor, _ context: PredictionContext) -> [Prediction] {
        decode(context.run(images), geometry: context.geometry)
    }
}

/// A validation result: the number that picks the best model, and a line for people.
public struct Evaluation: Sendable {
    public var metricName: String
    public var value: Double
    public var summary: String
    /// Every metric by name, for JSON output.
    public var values: [String: Double]

    public init(metricName: String, value: Double, summary: String, values: [String: Double]) {
        self.metricName = metricName; self.value = value; self.summary = summary; self.values = values
    }
}
