import Core
import Foundation

/// How a head turns the last feature map into one vector per image.
public enum Pooling: String, Codable, Sendable {
    /// Global average pool: any input size, few parameters (ResNets).
    case global
    /// Flatten C x H x W: fixed input size, a fully connected layer sees positions (the W1 shape).
    case flatten
    /// Global max pool: "is it anywhere in the image", for tags of small objects.
    case globalMax = "global_max"
    /// The head's layers applied at every position (as 1x1 convolutions), then each output's
    /// maximum over positions: a window classifier run fully convolutionally, scoring "this
    /// item is somewhere" from the features of one place rather than from per-channel maxima
    /// that several items may have contributed to.
    case scoreMax = "score_max"
}

/// Everything needed to rebuild a head: saved as JSON inside model files.
public struct HeadConfiguration: Codable, Equatable, Sendable {
    public var pooling: Pooling
    /// Input features after pooling (C, or C * H * W for flatten).
    public var inFeatures: Int
    /// Width of the hidden fully connected layer; 0 for a single linear layer.
    public var hidden: Int
    public var dropout: Float
    public var outputs: Int

    public init(pooling: Pooling, inFeatures: Int, hidden: Int = 0, dropout: Float = 0, outputs: Int) {
        self.pooling = pooling; self.inFeatures = inFeatures; self.hidden = hidden
        self.dropout = dropout; self.outputs = outputs
    }
}

/// Pooling + (hidden FC + ReLU) + dropout + linear: [N, C, H, W] -> [N, outputs] logits.
/// Shared by the classification and multi-label heads, which differ only in loss and decoding.
public final class VectorHead: Layer {
    public let hiddenLayer: Linear?
    public let dropout: Dropout?
    public let output: Linear
    public let configuration: HeadConfiguration

    public init(_ configuration: HeadConfiguration, seed: UInt64, using rng: inout some RandomNumberGenerator) {
        var features = configuration.inFeatures
        if configuration.hidden > 0 {
            hiddenLayer = Linear(features, configuration.hidden, using: &rng)
            features = configuration.hidden
        } else {
            hiddenLayer = nil
        }
        dropout = configuration.dropout > 0 ? Dropout(probability: configuration.dropout, seed: seed) : nil
        output = Linear(features, configuration.outputs, initializer: .xavierUniform, using: &rng)
        self.configuration = configuration
    }

    /// Starts the output layer at the targets' base rates, as RetinaNet does for its sigmoid
    /// classifier (Lin et al. 2017): weights N(0, 0.01^2), so the first logits barely depend on
    /// the image, and each bias at the log-odds of its output's frequency, so training starts at
    /// the loss of predicting the base rate rather than at large random logits. (With score-max
    /// pooling the maximum over positions starts each output a little above its base rate.)
    public func initializeAtBaseRates(_ frequencies: [Float], seed: UInt64) {
        checkShape(frequencies.count == configuration.outputs,
                   "\(frequencies.count) base rates for a head with \(configuration.outputs) outputs")
        guard let bias = output.bias else { preconditionFailure("the base-rate start sets the output layer's bias, which this head lacks") }
        var rng = SeededGenerator(seed: seed)
        output.weight.value = .randomNormal(output.weight.value.shape, std: 0.01, using: &rng)
        let logOdds = frequencies.map { rate -> Float in
            let p = Swift.min(Swift.max(rate, 1e-3), 1 - 1e-3)
            return Foundation.log(p / (1 - p))
        }
        bias.value = Tensor(shape: [configuration.outputs], scalars: logOdds)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h: Tensor
        switch configuration.pooling {
        case .global: h = x.globalAveragePool()
        case .globalMax: h = x.globalMaxPool()
        case .flatten: h = x.flattened()
        case .scoreMax: return positionScores(x).globalMaxPool()
        }
        checkShape(h.shape[1] == configuration.inFeatures,
                   "head expects \(configuration.inFeatures) features, got \(h.shape) from \(x.shape)")
        if let hiddenLayer { h = hiddenLayer(h).relu() }
        if let dropout { h = dropout(h) }
        return output(h)
    }

    /// The head's layers at every position of [N, C, H, W]: [N, outputs, H, W].
    public func positionScores(_ x: Tensor) -> Tensor {
        checkShape(x.rank == 4 && x.shape[1] == configuration.inFeatures,
                   "head expects \(configuration.inFeatures) channels, got \(x.shape)")
        var h = x
        if let hiddenLayer { h = pointwise(hiddenLayer, h).relu() }
        if let dropout { h = dropout(h) }
        return pointwise(output, h)
    }

    /// A linear layer as a 1x1 convolution (the same weights).
    private func pointwise(_ layer: Linear, _ x: Tensor) -> Tensor {
        let w = layer.weight.tensor
        return x.conv2D(w.reshaped([w.shape[0], w.shape[1], 1, 1]), bias: layer.bias?.tensor)
    }
}
