import PerceptCore
import PerceptDatasets
import Foundation

/// One image's tags: the probability of every tag and the ones that pass their thresholds.
public struct TagPrediction: Sendable {
    /// Sigmoid probability of each tag.
    public let probabilities: [Float]
    /// Indices of the tags predicted present, ascending.
    public let tags: [Int]

    public init(probabilities: [Float], thresholds: [Float]) {
        self.probabilities = probabilities
        tags = probabilities.indices.filter { Self.isPresent(probabilities[$0], threshold: thresholds[$0]) }
    }

    /// The one decision rule: a tag is present when its probability reaches its threshold.
    @inlinable public static func isPresent(_ probability: Float, threshold: Float) -> Bool { probability >= threshold }
}

/// Multi-label tagging on the deepest map: a vector head with independent sigmoids trained
/// with binary cross-entropy, started at the tags' base rates; decodes tag sets at per-tag
/// thresholds; mean average precision and F1.
public final class TaggingHead: VectorHeadLayers, Head {
    public struct Architecture: Codable, Equatable, Sendable {
        public var layers: VectorHeadConfiguration

        public init(layers: VectorHeadConfiguration) { self.layers = layers }

        // `head` is the key model files have always used for the layers; `loss` is read only to
        // refuse a loss this Percept does not have (files have only ever held binary cross-entropy).
        enum CodingKeys: String, CodingKey { case layers = "head", loss }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            layers = try c.decode(VectorHeadConfiguration.self, forKey: .layers)
            try Retired.refuse(c, .loss, unless: "binary_cross_entropy", option: "tagging loss")
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(layers, forKey: .layers)
        }
    }

    /// How tag probabilities become tag sets.
    public struct Settings: HeadSettings {
        /// Per-tag decision thresholds, tuned on validation data by `tag train`; one value
        /// applies to every tag, and none means 0.5 each.
        public var thresholds: [Float] = []

        public init() {}
        public init(thresholds: [Float]) { self.thresholds = thresholds }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            thresholds = try c.decodeIfPresent([Float].self, forKey: .thresholds) ?? []
        }

        public func validate() throws {
            try Check.that(thresholds.allSatisfy { $0 >= 0 && $0 <= 1 }, "thresholds", "must each be in [0, 1], got \(thresholds)")
        }
    }

    /// Multi-hot [N, tags] targets.
    public typealias Targets = Tensor
    public typealias Prediction = TagPrediction
    public typealias Metrics = TaggingMetrics

    public static let task = VisionTask.tagging

    public let architecture: Architecture
    /// Thresholds are tuned after training and may be overridden at load.
    public var settings: Settings

    public init(_ architecture: Architecture, settings: Settings = Settings(), features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        self.architecture = architecture
        self.settings = settings
        try super.init(architecture.layers, features: features, geometry: geometry, seed: seed, using: &rng)
        try check(settings)
    }

    public func check(_ settings: Settings) throws {
        do { try settings.validate() } catch let error as ConfigError { throw ModelError("tagging head settings: \(error)") }
        guard settings.thresholds.count <= 1 || settings.thresholds.count == layout.outputs else {
            throw ModelError("\(settings.thresholds.count) tag thresholds for a head with \(layout.outputs) tags")
        }
    }

    public var tagCount: Int { layout.outputs }
    public var classCount: Int { layout.outputs }
    /// The decision threshold of every tag.
    public var thresholds: [Float] {
        settings.thresholds.count > 1 ? settings.thresholds : Array(repeating: settings.thresholds.first ?? 0.5, count: tagCount)
    }

    /// Starts the output layer at the targets' base rates, as RetinaNet does for its sigmoid
    /// classifier (Lin et al. 2017): weights N(0, 0.01^2), so the first logits barely depend on
    /// the image, and each bias at the log-odds of its output's frequency, so training starts at
    /// the loss of predicting the base rate rather than at large random logits. (With score-max
    /// pooling the maximum over positions starts each output a little above its base rate.)
    public func initializeAtBaseRates(_ frequencies: [Float], seed: UInt64) {
        checkShape(frequencies.count == tagCount, "\(frequencies.count) base rates for a head with \(tagCount) outputs")
        guard let bias = output.bias else { preconditionFailure("the base-rate start sets the output layer's bias, which this head lacks") }
        var rng = SeededGenerator(seed: seed)
        output.weight.value = .randomNormal(output.weight.value.shape, std: 0.01, using: &rng)
        let logOdds = frequencies.map { rate -> Float in
            let p = Swift.min(Swift.max(rate, 1e-3), 1 - 1e-3)
            return Foundation.log(p / (1 - p))
        }
        bias.value = Tensor(shape: [tagCount], scalars: logOdds)
    }

    public func targets(of batch: Batch) -> Tensor {
        guard let tags = batch.tags else { preconditionFailure("a tagging head needs a batch from a tagging dataset") }
        return tags
    }

    public func loss(_ outputs: Tensor, _ targets: Tensor, geometry: InputGeometry) -> Tensor {
        binaryCrossEntropyWithLogits(logits: outputs, targets: targets)
    }

    /// [N, tags] logits -> sigmoid probabilities, same shape.
    public func probabilities(_ outputs: Tensor) -> Tensor { outputs.sigmoid() }

    /// [N, tags] logits -> N tag sets at the stored thresholds.
    public func decode(_ outputs: Tensor, geometry: InputGeometry) -> [TagPrediction] {
        let p = probabilities(outputs), k = outputs.shape[1], thresholds = thresholds
        return (0..<outputs.shape[0]).map { i in
            TagPrediction(probabilities: Array(UnsafeBufferPointer(start: p.pointer + i * k, count: k)), thresholds: thresholds)
        }
    }

    public func makeMetrics() -> TaggingMetrics { TaggingMetrics(tags: tagCount) }

    public func measure(_ predictions: [TagPrediction], _ batch: Batch, into metrics: inout TaggingMetrics) {
        let probabilities = predictions.flatMap(\.probabilities), targets = self.targets(of: batch)
        probabilities.withUnsafeBufferPointer { p in
            metrics.add(probabilities: p, targets: UnsafeBufferPointer(start: targets.pointer, count: targets.count))
        }
    }

    public func scoredPredictions(of metrics: TaggingMetrics) -> [ScoredPredictions]? {
        (0..<metrics.tags).map { tag in
            let truth = (0..<metrics.count).map { metrics.truth[$0 * metrics.tags + tag] == 1 }
            return ScoredPredictions(scores: (0..<metrics.count).map { metrics.scores[$0 * metrics.tags + tag] }, correct: truth,
                                     positives: truth.filter { $0 }.count)
        }
    }

    /// Each tag's threshold at its best F1 on the measured data.
    public func calibrated(from metrics: TaggingMetrics) -> Settings? { Settings(thresholds: metrics.tunedThresholds()) }

    public func evaluation(of metrics: TaggingMetrics, classes: [String]) -> Evaluation {
        let thresholds = thresholds
        let map = metrics.meanAveragePrecision, micro = metrics.microF1(thresholds: thresholds)
        var e = Evaluation(metricName: "mAP", value: map, summary: String(format: "mAP %.4f  micro-F1 %.4f", map, micro),
                           metrics: [.init("images", "images", .count(metrics.count)), .init("mAP", "mAP", .metric(map)),
                                     .init("micro_f1", "micro-F1", .metric(micro)),
                                     .init("macro_f1", "macro-F1", .metric(metrics.macroF1(thresholds: thresholds))),
                                     .init("example_f1", "example-F1", .metric(metrics.exampleF1(thresholds: thresholds)))])
        e.tableKey = "per_tag"; e.rowKey = "tag"
        e.columns = [.init("threshold", "threshold", width: 9, decimals: 3), .init("average_precision", "AP", width: 6),
                     .init("precision", "precision", width: 9), .init("recall", "recall", width: 6), .init("f1", "f1", width: 6),
                     .init("support", "support", width: 7)]
        let perTag = metrics.perTag(thresholds: thresholds)
        e.rows = classes.indices.map { t in
            (classes[t], [.metric(Double(thresholds[t])), .metric(metrics.averagePrecision(tag: t)), .metric(perTag[t].precision),
                          .metric(perTag[t].recall), .metric(perTag[t].f1), .count(perTag[t].support)])
        }
        return e
    }
}
