import PerceptCore

/// One feature map a backbone returns: its name (what a head asks for), channels and stride
/// (input pixels per map pixel).
public struct FeatureMapInfo: Codable, Equatable, Sendable {
    public var name: String
    public var channels: Int
    public var stride: Int
    /// Pixels that each stage's unpadded convolution trims from every side before its 2x2 pool
    /// (a plain backbone with padding 0: 1; nil: none), so the map is smaller than input / stride.
    public var trim: Int?

    public init(name: String, channels: Int, stride: Int, trim: Int? = nil) {
        self.name = name; self.channels = channels; self.stride = stride; self.trim = trim
    }

    /// The map's height and width for inputs of `geometry`.
    public func size(for geometry: InputGeometry) -> (height: Int, width: Int) {
        guard let trim, trim > 0 else { return (geometry.height / stride, geometry.width / stride) }
        var height = geometry.height, width = geometry.width
        for _ in 0..<stride.trailingZeroBitCount { height = (height - 2 * trim) / 2; width = (width - 2 * trim) / 2 }
        return (height, width)
    }
}

/// The maps a backbone computed for one batch, shallow to deep, by name (torchvision's
/// `IntermediateLayerGetter` output).
public struct FeatureMaps {
    public let info: [FeatureMapInfo]
    public let maps: [Tensor]

    public init(info: [FeatureMapInfo], maps: [Tensor]) {
        precondition(maps.count <= info.count, "\(maps.count) maps for \(info.count) descriptions")
        self.info = Array(info.prefix(maps.count)); self.maps = maps
    }

    /// The deepest map computed.
    public var last: Tensor { maps.last! }

    /// The map called `name`; heads only ask for maps their configuration was checked against.
    public subscript(name: String) -> Tensor {
        guard let index = info.firstIndex(where: { $0.name == name }) else {
            preconditionFailure("no feature map '\(name)' (computed: \(info.map(\.name)))")
        }
        return maps[index]
    }
}

/// A feature extractor shared by every task head. It knows nothing about tasks.
public protocol Backbone: Layer {
    /// Every map `features` returns, shallow to deep: the input itself first (`input`, stride 1),
    /// then the stem's where there is one, then each stage's.
    var featureInfo: [FeatureMapInfo] { get }
    /// The feature maps of `x` ([N, C, H, W]), shallow to deep, stopping after the one called
    /// `deepest` (nil: all of them), so a head reading a shallow map does not pay for deeper ones.
    func features(_ x: Tensor, through deepest: String?) -> FeatureMaps
    /// The description this backbone was built from (saved inside model files).
    var configuration: BackboneConfiguration { get }
}

extension Backbone {
    /// The deepest map.
    public func callAsFunction(_ x: Tensor) -> Tensor { features(x, through: nil).last }

    /// The description of the map called `name`, if the backbone has one.
    public func featureInfo(named name: String) -> FeatureMapInfo? { featureInfo.first { $0.name == name } }

    /// The input, then `stages` run in order, each output collected, until the map called `deepest`.
    func collect(_ x: Tensor, through deepest: String?, _ stages: [(Tensor) -> Tensor]) -> FeatureMaps {
        // info[0] describes the input, info[i + 1] the output of stages[i].
        let info = featureInfo
        var maps = [x]
        for (index, stage) in stages.enumerated() {
            if info[index].name == deepest { break }
            maps.append(stage(maps[index]))
        }
        return FeatureMaps(info: info, maps: maps)
    }
}

/// The backbone families.
public enum BackboneKind: String, Codable, Sendable, CaseIterable {
    /// conv3x3 + ReLU + maxpool2 per width (the W1 shape).
    case plain
    /// Basic residual blocks after a 3x3 stem.
    case resnet
}

/// How a ResNet's stem meets the image.
public enum ResNetStem: String, Codable, Sendable {
    /// A 3x3 convolution (stride `stemStride`), batch norm and ReLU: small images (CIFAR's ResNets).
    case small
    /// torchvision's ImageNet stem: a 7x7 convolution (stride `stemStride`, padding 3), batch
    /// norm, ReLU and a 3x3 max pool of stride 2 and padding 1: photos.
    case imagenet
}

/// Named backbone sizes: what the key `backbone.preset` (and `--backbone`) takes.
public enum BackbonePreset: String, Codable, Sendable, CaseIterable {
    case plain, resnet8, resnet10, resnet14, resnet20, resnet18, resnet34

    /// The stride of the preset's own stem convolution (`--backbone` sets it): torchvision's 2
    /// for ResNet-18 and -34, 1 for the small-image ResNets.
    public var stemStride: Int { self == .resnet18 || self == .resnet34 ? 2 : 1 }

    /// The preset's configuration: plain (32, 64), ResNets of widths 16, 32, 64 with 1, 2 or 3
    /// blocks per stage, or ResNet-10 with a fourth stage of 128 (one block each): a stage at
    /// 1/16 of the stem's resolution is cheap and widens every position's view of the image;
    /// ResNet-18 and -34 in torchvision's layout (ImageNet stem, widths 64, 128, 256, 512 with
    /// 2-2-2-2 or 3-4-6-3 blocks).
    public func configuration(inputChannels: Int, stemStride: Int = 1) -> BackboneConfiguration {
        switch self {
        case .resnet18, .resnet34:
            var backbone = BackboneConfiguration(kind: .resnet, inputChannels: inputChannels, widths: [64, 128, 256, 512],
                                                 blocks: self == .resnet18 ? [2, 2, 2, 2] : [3, 4, 6, 3], stemStride: stemStride)
            backbone.stem = .imagenet
            return backbone
        case .resnet10: return .init(kind: .resnet, inputChannels: inputChannels, widths: [16, 32, 64, 128], blocks: [1, 1, 1, 1], stemStride: stemStride)
        case .plain: return .init(kind: .plain, inputChannels: inputChannels, widths: [32, 64])
        case .resnet8: return .init(kind: .resnet, inputChannels: inputChannels, widths: [16, 32, 64], blocks: [1, 1, 1], stemStride: stemStride)
        case .resnet14: return .init(kind: .resnet, inputChannels: inputChannels, widths: [16, 32, 64], blocks: [2, 2, 2], stemStride: stemStride)
        case .resnet20: return .init(kind: .resnet, inputChannels: inputChannels, widths: [16, 32, 64], blocks: [3, 3, 3], stemStride: stemStride)
        }
    }
}

/// Everything needed to rebuild a backbone: saved as JSON inside model files.
public struct BackboneConfiguration: Codable, Equatable, Sendable {
    public var kind: BackboneKind
    public var inputChannels: Int
    /// Channels per stage.
    public var widths: [Int]
    /// ResNet basic blocks per stage (ignored by plain).
    public var blocks: [Int]
    /// Stride of the ResNet stem convolution (2 halves the cost of every later layer).
    public var stemStride: Int
    /// A 2x2 max pool between the ResNet stem convolution and its batch norm: downsamples as a
    /// stride-2 stem does, but from features computed at every input pixel (nil: none).
    public var stemPool: Bool?
    /// The ResNet stem's layout (nil: `.small`).
    public var stem: ResNetStem?

    /// Zero padding of the plain CNN's 3x3 convolutions (nil: 1, "same"). A window classifier
    /// uses 0, so that evaluating it densely over an image gives exactly the scores of its
    /// windows cropped one by one (no window sees padding that its crop would not).
    public var padding: Int?

    /// Whether the ResNet stem max-pools 2x2.
    public var poolsStem: Bool { stemPool ?? false }
    /// The ResNet stem's layout.
    public var stemLayout: ResNetStem { stem ?? .small }

    /// Whether this ResNet is `base` with more stages after its last: the same stem and the same
    /// first stages, so `base`'s weights can start those and the new stages start fresh.
    public func extends(_ base: BackboneConfiguration) -> Bool {
        kind == .resnet && base.kind == .resnet && inputChannels == base.inputChannels && stemStride == base.stemStride
            && poolsStem == base.poolsStem && stemLayout == base.stemLayout && widths.count > base.widths.count
            && Array(widths.prefix(base.widths.count)) == base.widths && Array(blocks.prefix(base.blocks.count)) == base.blocks
    }
    /// Padding of the plain CNN's convolutions.
    public var plainPadding: Int { padding ?? 1 }

    public init(kind: BackboneKind, inputChannels: Int, widths: [Int], blocks: [Int] = [], stemStride: Int = 1) {
        self.kind = kind; self.inputChannels = inputChannels; self.widths = widths
        self.blocks = blocks; self.stemStride = stemStride
    }

    /// The maps a backbone of this configuration returns (see `Backbone.featureInfo`).
    public var featureInfo: [FeatureMapInfo] {
        let input = FeatureMapInfo(name: "input", channels: inputChannels, stride: 1)
        switch kind {
        case .plain:
            let trim = plainPadding < 1 ? 1 - plainPadding : nil
            return [input] + widths.enumerated().map { FeatureMapInfo(name: "stage\($0 + 1)", channels: $1, stride: 2 << $0, trim: trim) }
        case .resnet:
            let stem = stemStride * (poolsStem ? 2 : 1) * (stemLayout == .imagenet ? 2 : 1)
            return [input, FeatureMapInfo(name: "stem", channels: widths[0], stride: stem)]
                + widths.enumerated().map { FeatureMapInfo(name: "stage\($0 + 1)", channels: $1, stride: stem << $0) }
        }
    }

    /// Builds the backbone with freshly initialised weights.
    public func make(using rng: inout some RandomNumberGenerator) throws -> any Backbone {
        guard !widths.isEmpty, widths.allSatisfy({ $0 > 0 }), inputChannels > 0 else {
            throw ModelError("backbone needs positive input channels and widths, got \(self)")
        }
        guard (0...1).contains(plainPadding) else { throw ModelError("plain backbone padding must be 0 or 1, got \(plainPadding)") }
        switch kind {
        case .plain: return PlainCNN(self, using: &rng)
        case .resnet:
            guard blocks.count == widths.count, blocks.allSatisfy({ $0 > 0 }), stemStride >= 1 else {
                throw ModelError("resnet backbone needs one positive block count per width, got \(blocks) for \(widths)")
            }
            guard !(poolsStem && stemLayout == .imagenet) else {
                throw ModelError("an ImageNet stem max-pools 3x3 already: it takes no 2x2 stem pool")
            }
            return ResNet(self, using: &rng)
        }
    }
}

/// conv3x3 + ReLU + maxpool2 per stage: the classic small CNN (W1 with widths [32, 64]).
public final class PlainCNN: Backbone {
    public let convs: [Conv2D]
    public let configuration: BackboneConfiguration

    public init(_ configuration: BackboneConfiguration, using rng: inout some RandomNumberGenerator) {
        var channels = configuration.inputChannels
        var convs: [Conv2D] = []
        for width in configuration.widths {
            convs.append(Conv2D(channels, width, kernel: 3, padding: configuration.plainPadding, using: &rng))
            channels = width
        }
        self.convs = convs
        self.configuration = configuration
    }

    public var featureInfo: [FeatureMapInfo] { configuration.featureInfo }

    public func features(_ x: Tensor, through deepest: String?) -> FeatureMaps {
        // maxpool(relu(x)) == relu(maxpool(x)): pooling first runs ReLU on a quarter of the values.
        collect(x, through: deepest, convs.map { conv in { conv($0).maxPool2D(kernel: 2, stride: 2, padding: 0).relu() } })
    }
}

/// ResNet basic block: two 3x3 conv + BN, identity or 1x1 projection shortcut, ReLU after the sum.
public final class BasicBlock: Layer {
    public let conv1: Conv2D, bn1: BatchNorm2D
    public let conv2: Conv2D, bn2: BatchNorm2D
    public let projection: Conv2D?, projectionNorm: BatchNorm2D?

    public init(_ inChannels: Int, _ outChannels: Int, stride: Int, using rng: inout some RandomNumberGenerator) {
        conv1 = Conv2D(inChannels, outChannels, kernel: 3, stride: stride, padding: 1, bias: false, using: &rng)
        bn1 = BatchNorm2D(outChannels)
        conv2 = Conv2D(outChannels, outChannels, kernel: 3, padding: 1, bias: false, using: &rng)
        bn2 = BatchNorm2D(outChannels)
        if stride != 1 || inChannels != outChannels {
            projection = Conv2D(inChannels, outChannels, kernel: 1, stride: stride, bias: false, using: &rng)
            projectionNorm = BatchNorm2D(outChannels)
        } else {
            projection = nil
            projectionNorm = nil
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = bn2(conv2(bn1(conv1(x), relu: true)))
        let shortcut = projection.map { projectionNorm!($0(x)) } ?? x
        return (y + shortcut).relu()
    }
}

/// A stage of basic blocks; the first may downsample.
public final class ResNetStage: Layer {
    public let blocks: [BasicBlock]
    init(_ blocks: [BasicBlock]) { self.blocks = blocks }
    public func callAsFunction(_ x: Tensor) -> Tensor { blocks.reduce(x) { $1($0) } }
}

/// ResNet (He et al. 2016) of basic blocks: a stem, then stages of basic blocks, every stage
/// after the first halving the resolution. The small-image stem (CIFAR variant) is conv3x3
/// (optionally strided or followed by a 2x2 max pool) + BN + ReLU; the ImageNet stem
/// (torchvision's ResNet-18 and -34) conv7x7/2 + BN + ReLU + 3x3/2 max pool with padding 1.
public final class ResNet: Backbone {
    public let stem: Conv2D, stemNorm: BatchNorm2D
    public let stages: [ResNetStage]
    public let configuration: BackboneConfiguration

    public init(_ configuration: BackboneConfiguration, using rng: inout some RandomNumberGenerator) {
        let widths = configuration.widths
        let kernel = configuration.stemLayout == .imagenet ? 7 : 3
        stem = Conv2D(configuration.inputChannels, widths[0], kernel: kernel, stride: configuration.stemStride,
                      padding: kernel / 2, bias: false, using: &rng)
        stemNorm = BatchNorm2D(widths[0])
        var stages: [ResNetStage] = []
        var channels = widths[0]
        for (i, width) in widths.enumerated() {
            var blocks: [BasicBlock] = []
            for b in 0..<configuration.blocks[i] {
                blocks.append(BasicBlock(channels, width, stride: i > 0 && b == 0 ? 2 : 1, using: &rng))
                channels = width
            }
            stages.append(ResNetStage(blocks))
        }
        self.stages = stages
        self.configuration = configuration
    }

    public var featureInfo: [FeatureMapInfo] { configuration.featureInfo }

    public func features(_ x: Tensor, through deepest: String?) -> FeatureMaps {
        let stemLayer: (Tensor) -> Tensor = { [self] x in
            var h = stem(x)
            if configuration.poolsStem { h = h.maxPool2D(kernel: 2, stride: 2, padding: 0) }
            h = stemNorm(h, relu: true)
            return configuration.stemLayout == .imagenet ? h.maxPool2D(kernel: 3, stride: 2, padding: 1) : h
        }
        return collect(x, through: deepest, [stemLayer] + stages.map { stage in { stage($0) } })
    }
}

/// A model description or weight file that does not fit.
public struct ModelError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
