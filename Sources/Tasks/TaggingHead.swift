import Core
import Datasets
import Foundation

/// The losses a tagger trains with.
public enum TaggingLoss: String, Codable, Sendable, CaseIterable {
    /// Independent sigmoids with binary cross-entropy.
    case binaryCrossEntropy = "binary_cross_entropy"
}

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
    public struct Configuration: Codable, Equatable, Sendable {
        public var layers: VectorHeadConfiguration
        public var loss: TaggingLoss
        /// Per-tag decision thresholds (0.5 each when absent), tuned on validation data.
        public var thresholds: [Float]?

        public init(layers: VectorHeadConfiguration, loss: TaggingLoss = .binaryCrossEntropy, thresholds: [Float]? = nil) {
            self.layers = layers; self.loss = loss; self.thresholds = thresholds
        }

        // `head` is the key model files have always used for the layers.
        enum CodingKeys: String, CodingKey { case layers = "head", loss, thresholds }
    }

    /// Multi-hot [N, tags] targets.
    public typealias Targets = Tensor
    public typealias Prediction = TagPrediction
    public typealias Metrics = TaggingMetrics

    public static let task = VisionTask.tagging

    /// Thresholds may be tuned after training (`setThresholds`), so the configuration can change.
    public private(set) var configuration: Configuration

    public init(_ configuration: Configuration, features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        if let thresholds = configuration.thresholds, thresholds.count != configuration.layers.outputs {
            throw ModelError("\(thresholds.count) tag thresholds for a head with \(configuration.layers.outputs) outputs")
        }
        self.configuration = configuration
        try super.init(configuration.layers, features: features, geometry: geometry, seed: seed, using: &rng)
    }

    public var tagCount: Int { layout.outputs }
    public var classCount: Int { layout.outputs }
    public var thresholds: [Float] { configuration.thresholds ?? Array(repeating: 0.5, count: tagCount) }

    /// Stores per-tag decision thresholds (saved with the model).
    public func setThresholds(_ thresholds: [Float]) {
        precondition(thresholds.count == tagCount, "\(thresholds.count) thresholds for \(tagCount) tags")
        configuration.thresholds = thresholds
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

    public func evaluation(of metrics: TaggingMetrics) -> Evaluation {
        let thresholds = thresholds
        let map = metrics.meanAveragePrecision, micro = metrics.microF1(thresholds: thresholds)
        return Evaluation(metricName: "mAP", value: map,
                          summary: String(format: "mAP %.4f  micro-F1 %.4f", map, micro),
                          values: ["mAP": map, "micro_f1": micro, "macro_f1": metrics.macroF1(thresholds: thresholds),
                                   "example_f1": metrics.exampleF1(thresholds: thresholds)])
    }
}
