import PerceptCore
import PerceptDatasets

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
    /// What decides the head's weight shapes: stored in the model file's architecture JSON
    /// beside the backbone's (its keys sit in the same JSON object as `ModelConfiguration`'s
    /// own) and checked when the file is loaded.
    associatedtype Architecture: Codable, Equatable, Sendable
    /// How outputs are decoded (thresholds, NMS, pyramid, test-time looks): stored in the same
    /// JSON object as the model's defaults, and changed at load (`settings`) without rebuilding
    /// the model or copying a tensor. Keys missing from a file decode to the values that file's
    /// Percept used.
    associatedtype Settings: HeadSettings
    /// A batch's ground truth in the form the loss reads.
    associatedtype Targets
    /// What the head predicts for one image.
    associatedtype Prediction
    /// Accumulates predictions against ground truth over an evaluation.
    associatedtype Metrics

    /// The task this head solves (checked when a model file is loaded).
    static var task: VisionTask { get }

    var architecture: Architecture { get }

    /// The decoding settings in force; set them to decode differently (the weights stay).
    var settings: Settings { get set }

    /// A head with fresh weights for a backbone that returns `features`, on inputs of
    /// `geometry`; throws when the architecture does not fit them. `rng` continues the
    /// backbone's initialisation stream; `seed` seeds the head's own randomness (dropout).
    init(_ architecture: Architecture, settings: Settings, features: [FeatureMapInfo], geometry: InputGeometry,
         seed: UInt64, using rng: inout SeededGenerator) throws

    /// Throws when `settings` cannot decode this head's outputs (a threshold per tag of another
    /// count, say); called before they are set.
    func check(_ settings: Settings) throws

    /// Names of the backbone maps the head reads.
    var inputs: [String] { get }

    /// How many names the model's class list must hold: the classes (or tags) the head scores.
    var classCount: Int { get }

    /// Raw outputs (logits) from the backbone's maps.
    func callAsFunction(_ features: FeatureMaps) -> Tensor

    /// Raw outputs of a training batch (the outputs its loss reads); `self(features)` unless
    /// the head's training inputs differ from its inference ones (a window head's crops carry
    /// context).
    func trainingOutputs(_ features: FeatureMaps) -> Tensor

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

    /// The evaluation of `metrics`: the headline number (what picks the best epoch), the
    /// training log's line and the full report, per class of `classes`.
    func evaluation(of metrics: Metrics, classes: [String]) -> Evaluation

    /// Settings tuned on `metrics` of validation data (a tagger's per-tag thresholds), or nil
    /// for a head that has none to tune.
    func calibrated(from metrics: Metrics) -> Settings?

    /// Per class, the scored predictions behind precision-recall and F1 curves (tags, boxes at
    /// IoU 0.5), or nil for a head whose predictions have no such score.
    func scoredPredictions(of metrics: Metrics) -> [ScoredPredictions]?
}

/// What a head's `predict` has besides the images: their size, the value black takes after
/// normalisation (for padding), and the network pass from normalised images to raw outputs.
public struct PredictionContext {
    public var geometry: InputGeometry
    /// Per channel.
    public var background: [Float]
    public var run: (Tensor) -> Tensor
    /// The network on crops shaped as the head's training crops (`Head.trainingOutputs`): a
    /// window head's second looks. `run` unless given.
    public var runCrops: (Tensor) -> Tensor
    /// The backbone's maps of normalised images (nil where the network is not a backbone and a
    /// head, as in tests that stub `run`): a window head keeps its pyramid levels' maps for
    /// second looks from features.
    public var features: ((Tensor) -> FeatureMaps)?

    public init(geometry: InputGeometry, background: [Float], runCrops: ((Tensor) -> Tensor)? = nil,
                features: ((Tensor) -> FeatureMaps)? = nil, run: @escaping (Tensor) -> Tensor) {
        self.geometry = geometry; self.background = background; self.run = run; self.runCrops = runCrops ?? run
        self.features = features
    }
}

extension Head {
    public func check(_ settings: Settings) throws {}

    public func trainingOutputs(_ features: FeatureMaps) -> Tensor { self(features) }

    public func calibrated(from metrics: Metrics) -> Settings? { nil }

    public func scoredPredictions(of metrics: Metrics) -> [ScoredPredictions]? { nil }

    public func predict(_ images: Tensor, _ context: PredictionContext) -> [Prediction] {
        decode(context.run(images), geometry: context.geometry)
    }
}

/// A head's decoding settings: a configuration whose defaults are the recipe's.
public protocol HeadSettings: Configurable {
    init()
}

/// The settings of a head that decodes without any (a classifier's argmax).
public struct NoSettings: HeadSettings {
    public init() {}
}
