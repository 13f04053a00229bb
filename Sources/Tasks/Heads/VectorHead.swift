import PerceptCore
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

/// The layers of a head that gives one vector per image, saved as JSON inside model files
/// (under the key `head`).
public struct VectorHeadConfiguration: Codable, Equatable, Sendable {
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

    /// The layout for a backbone whose deepest map is `map`, on inputs of `geometry`: a plain
    /// CNN flattens into a 128-unit hidden layer (the W1 shape); a ResNet pools with `pooling`.
    public static func standard(for map: FeatureMapInfo, kind: BackboneKind, geometry: InputGeometry,
                                pooling: Pooling, outputs: Int) throws -> VectorHeadConfiguration {
        switch kind {
        case .plain:
            let size = try flattenedSize(of: map, geometry)
            return .init(pooling: .flatten, inFeatures: map.channels * size.height * size.width, hidden: 128, outputs: outputs)
        case .resnet:
            return .init(pooling: pooling == .flatten ? .global : pooling, inFeatures: map.channels, outputs: outputs)
        }
    }
}

extension VectorHeadConfiguration {
    /// The size of `map` that a flattening head reads on inputs of `geometry`.
    static func flattenedSize(of map: FeatureMapInfo, _ geometry: InputGeometry) throws -> (height: Int, width: Int) {
        let size = map.size(for: geometry)
        if map.trim == nil, geometry.height % map.stride != 0 || geometry.width % map.stride != 0 {
            throw ModelError("input \(geometry.height)x\(geometry.width) is not divisible by the backbone stride \(map.stride)")
        }
        guard size.height >= 1, size.width >= 1 else {
            throw ModelError("input \(geometry.height)x\(geometry.width) leaves no feature map for the head")
        }
        return size
    }
}

/// Pooling + (hidden FC + ReLU) + dropout + linear: [N, C, H, W] -> [N, outputs] logits, on the
/// backbone's deepest map. The classification and tagging heads are this with their own loss
/// and decoding; the layers keep their checkpoint paths (`head.hiddenLayer.weight`,
/// `head.output.bias`, ...) in both.
public class VectorHeadLayers: Module {
    public let hiddenLayer: Linear?
    public let dropout: Dropout?
    public let output: Linear
    /// The map the head reads: the backbone's deepest.
    public let inputMap: FeatureMapInfo
    public let layout: VectorHeadConfiguration

    /// Checks `layout` against the backbone's deepest map and builds the layers.
    init(_ layout: VectorHeadConfiguration, features: [FeatureMapInfo], geometry: InputGeometry,
         seed: UInt64, using rng: inout SeededGenerator) throws {
        guard let map = features.last else { throw ModelError("the backbone returns no feature maps") }
        let available: Int
        if layout.pooling == .flatten {
            let size = try VectorHeadConfiguration.flattenedSize(of: map, geometry)
            available = map.channels * size.height * size.width
        } else {
            available = map.channels
        }
        guard available == layout.inFeatures else {
            throw ModelError("head expects \(layout.inFeatures) features, backbone gives \(available)")
        }
        guard layout.outputs > 0 else { throw ModelError("head needs at least one output, got \(layout.outputs)") }
        var features = layout.inFeatures
        if layout.hidden > 0 {
            hiddenLayer = Linear(features, layout.hidden, using: &rng)
            features = layout.hidden
        } else {
            hiddenLayer = nil
        }
        dropout = layout.dropout > 0 ? Dropout(probability: layout.dropout, seed: seed) : nil
        output = Linear(features, layout.outputs, initializer: .xavierUniform, using: &rng)
        inputMap = map
        self.layout = layout
    }

    public var inputs: [String] { [inputMap.name] }

    /// [N, outputs] logits from the deepest map.
    public func callAsFunction(_ features: FeatureMaps) -> Tensor { logits(features[inputMap.name]) }

    /// [N, C, H, W] -> [N, outputs] logits.
    public func logits(_ x: Tensor) -> Tensor {
        var h: Tensor
        switch layout.pooling {
        case .global: h = x.globalAveragePool()
        case .globalMax: h = x.globalMaxPool()
        case .flatten: h = x.flattened()
        case .scoreMax: return positionScores(x).globalMaxPool()
        }
        checkShape(h.shape[1] == layout.inFeatures,
                   "head expects \(layout.inFeatures) features, got \(h.shape) from \(x.shape)")
        if let hiddenLayer { h = hiddenLayer(h).relu() }
        if let dropout { h = dropout(h) }
        return output(h)
    }

    /// The head's layers at every position of [N, C, H, W]: [N, outputs, H, W].
    public func positionScores(_ x: Tensor) -> Tensor {
        checkShape(x.rank == 4 && x.shape[1] == layout.inFeatures,
                   "head expects \(layout.inFeatures) channels, got \(x.shape)")
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
