/// 2-D convolution over NCHW input; weight is [out, in / groups, k, k].
public final class Conv2D: Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int, padding: Int, groups: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                groups: Int = 1, bias: Bool = true, initializer: Initializer = .kaimingNormal,
                using rng: inout some RandomNumberGenerator) {
        precondition(inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2D: channels \(inChannels)->\(outChannels) not divisible by \(groups) groups")
        let fanIn = inChannels / groups * kernel * kernel
        weight = Parameter(initializer.make([outChannels, inChannels / groups, kernel, kernel],
                                            fanIn: fanIn, fanOut: outChannels / groups * kernel * kernel, using: &rng))
        self.bias = bias ? Parameter(.zeros([outChannels])) : nil
        self.stride = stride; self.padding = padding; self.groups = groups
    }

    public var inChannels: Int { weight.shape[1] * groups }
    public var outChannels: Int { weight.shape[0] }
    public var kernel: Int { weight.shape[2] }

    /// [N, in, H, W] -> [N, out, H', W'].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2D(weight.tensor, bias: bias?.tensor, stride: stride, padding: padding, groups: groups)
    }
}

/// Fully connected layer; weight is [out, in].
public final class Linear: Layer {
    public let weight: Parameter
    public let bias: Parameter?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true,
                initializer: Initializer = .kaimingUniform, using rng: inout some RandomNumberGenerator) {
        weight = Parameter(initializer.make([outFeatures, inFeatures], fanIn: inFeatures, fanOut: outFeatures, using: &rng))
        self.bias = bias ? Parameter(.zeros([outFeatures])) : nil
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// [N, in] -> [N, out].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.linear(weight.tensor, bias: bias?.tensor)
    }
}

/// Layers applied one after another.
public final class Sequential: Layer {
    public let layers: [Layer]
    public init(_ layers: [Layer]) { self.layers = layers }
    public init(@SequentialBuilder _ build: () -> [Layer]) { self.layers = build() }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        layers.reduce(x) { $1($0) }
    }
}

@resultBuilder
public enum SequentialBuilder {
    public static func buildBlock(_ layers: Layer...) -> [Layer] { layers }
}

/// max(x, 0).
public final class ReLU: Layer {
    public init() {}
    public func callAsFunction(_ x: Tensor) -> Tensor { x.relu() }
}

/// [N, ...] -> [N, product of the rest].
public final class Flatten: Layer {
    public init() {}
    public func callAsFunction(_ x: Tensor) -> Tensor { x.flattened() }
}

/// Learned 2x (or more) upsampling; weight is [in, out, k, k] as in PyTorch.
public final class ConvTranspose2D: Layer {
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int, padding: Int, outputPadding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                outputPadding: Int = 0, bias: Bool = true, using rng: inout some RandomNumberGenerator) {
        weight = Parameter(Initializer.kaimingNormal.make([inChannels, outChannels, kernel, kernel],
                                                          fanIn: inChannels * kernel * kernel,
                                                          fanOut: outChannels * kernel * kernel, using: &rng))
        self.bias = bias ? Parameter(.zeros([outChannels])) : nil
        self.stride = stride; self.padding = padding; self.outputPadding = outputPadding
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.convTranspose2D(weight.tensor, bias: bias?.tensor, stride: stride, padding: padding,
                          outputPadding: outputPadding)
    }
}
