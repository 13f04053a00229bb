import PerceptCore
import PerceptDatasets
import Foundation

/// The losses a classifier trains with.
public enum ClassificationLoss: String, Codable, Sendable, CaseIterable {
    /// Softmax log-likelihood, optionally with label smoothing.
    case crossEntropy = "cross_entropy"
    /// Multi-class margin (Crammer-Singer / Weston-Watkins sum form).
    case hinge
}

/// One image's classes, ranked: what a classifier predicts.
public struct ClassPrediction: Sendable {
    /// Softmax probability of each class.
    public let probabilities: [Float]
    /// Raw scores, which decide the ranking (probabilities can tie where logits do not).
    public let logits: [Float]
    /// Class indices from most to least likely; equal scores keep the lower index first.
    public let ranking: [Int]

    public init(logits: [Float], probabilities: [Float]) {
        self.logits = logits
        self.probabilities = probabilities
        ranking = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    }

    /// The most likely class.
    public var label: Int { ranking[0] }
    /// Probability of the most likely class.
    public var score: Float { probabilities[label] }

    /// The `k` most likely classes with their probabilities.
    public func top(_ k: Int) -> [(label: Int, score: Float)] {
        ranking.prefix(k).map { ($0, probabilities[$0]) }
    }

    /// How many classes score strictly higher than `label` (0: it is the prediction, or tied with it).
    public func rank(of label: Int) -> Int {
        let score = logits[label]
        return logits.reduce(0) { $0 + ($1 > score ? 1 : 0) }
    }
}

/// Single-label classification on the deepest map: a vector head trained with cross-entropy
/// (label smoothing) or hinge; decodes ranked classes with softmax scores; accuracy, top-5,
/// macro-F1.
public final class ClassificationHead: VectorHeadLayers, Head {
    public struct Architecture: Codable, Equatable, Sendable {
        public var layers: VectorHeadConfiguration
        public var loss: ClassificationLoss
        /// Label smoothing of the cross-entropy target (0 for hinge).
        public var labelSmoothing: Float

        public init(layers: VectorHeadConfiguration, loss: ClassificationLoss = .crossEntropy, labelSmoothing: Float = 0) {
            self.layers = layers; self.loss = loss; self.labelSmoothing = labelSmoothing
        }

        // `head` is the key model files have always used for the layers.
        enum CodingKeys: String, CodingKey { case layers = "head", loss, labelSmoothing }
    }

    /// Decoding is the argmax: nothing to set.
    public typealias Settings = NoSettings
    public typealias Targets = [Int32]
    public typealias Prediction = ClassPrediction
    public typealias Metrics = ClassificationMetrics

    public static let task = VisionTask.classification

    public let architecture: Architecture
    public var settings = NoSettings()

    public init(_ architecture: Architecture, settings: NoSettings = NoSettings(), features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        self.architecture = architecture
        try super.init(architecture.layers, features: features, geometry: geometry, seed: seed, using: &rng)
    }

    public var classes: Int { layout.outputs }
    public var classCount: Int { layout.outputs }

    public func targets(of batch: Batch) -> [Int32] { batch.labels }

    public func loss(_ outputs: Tensor, _ labels: [Int32], geometry: InputGeometry) -> Tensor {
        switch architecture.loss {
        case .crossEntropy: return softmaxCrossEntropy(logits: outputs, labels: labels, labelSmoothing: architecture.labelSmoothing)
        case .hinge: return multiClassHingeLoss(logits: outputs, labels: labels)
        }
    }

    /// [N, classes] logits -> N ranked predictions.
    public func decode(_ outputs: Tensor, geometry: InputGeometry) -> [ClassPrediction] {
        let probabilities = outputs.softmax(axis: 1)
        let n = outputs.shape[0], k = outputs.shape[1]
        return (0..<n).map { i in
            ClassPrediction(logits: Array(UnsafeBufferPointer(start: outputs.pointer + i * k, count: k)),
                            probabilities: Array(UnsafeBufferPointer(start: probabilities.pointer + i * k, count: k)))
        }
    }

    public func makeMetrics() -> ClassificationMetrics { ClassificationMetrics(classes: classes, topK: 5) }

    public func measure(_ predictions: [ClassPrediction], _ batch: Batch, into metrics: inout ClassificationMetrics) {
        metrics.add(predictions, labels: batch.labels)
    }

    public func evaluation(of metrics: ClassificationMetrics, classes: [String]) -> Evaluation {
        var e = Evaluation(metricName: "accuracy", value: metrics.accuracy,
                           summary: String(format: "accuracy %.4f  top-%d %.4f", metrics.accuracy, metrics.topK, metrics.topKAccuracy),
                           metrics: [.init("images", "images", .count(metrics.count)), .init("accuracy", "accuracy", .metric(metrics.accuracy)),
                                     .init("top_k", nil, .count(metrics.topK)),
                                     .init("top_k_accuracy", "top-\(metrics.topK) accuracy", .metric(metrics.topKAccuracy)),
                                     .init("macro_f1", "macro-F1", .metric(metrics.macroF1))])
        e.columns = [.init("precision", "precision", width: 9), .init("recall", "recall", width: 6), .init("f1", "f1", width: 6),
                     .init("support", "support", width: 7)]
        e.rows = zip(classes, metrics.perClass).map { name, p in
            (name, [.metric(p.precision), .metric(p.recall), .metric(p.f1), .count(p.support)])
        }
        e.matrix = metrics.confusion
        return e
    }
}
