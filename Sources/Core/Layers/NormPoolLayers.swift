/// Batch normalisation over the channels of NCHW input, with running statistics for inference.
public final class BatchNorm2D: Layer, ModeDependent {
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Buffer
    public let runningVariance: Buffer
    public let momentum: Float
    public let epsilon: Float
    public var mode: Mode = .training

    public init(_ channels: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        weight = Parameter(Tensor(shape: [channels], repeating: 1))
        bias = Parameter(.zeros([channels]))
        runningMean = Buffer(.zeros([channels]))
        runningVariance = Buffer(Tensor(shape: [channels], repeating: 1))
        self.momentum = momentum
        self.epsilon = epsilon
    }

    /// [N, C, H, W] -> [N, C, H, W]; `relu: true` fuses a following ReLU.
    public func callAsFunction(_ x: Tensor, relu: Bool = false) -> Tensor {
        x.batchNorm2D(gamma: weight.tensor, beta: bias.tensor, runningMean: runningMean,
                      runningVar: runningVariance, momentum: momentum, epsilon: epsilon,
                      training: mode == .training, relu: relu)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, relu: false) }
}

/// Max pooling over NCHW input.
public final class MaxPool2D: Layer {
    public let kernel: Int, stride: Int, padding: Int
    public init(kernel: Int = 2, stride: Int? = nil, padding: Int = 0) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.maxPool2D(kernel: kernel, stride: stride, padding: padding)
    }
}

/// Average pooling over NCHW input (padding counts as zeros).
public final class AvgPool2D: Layer {
    public let kernel: Int, stride: Int, padding: Int
    public init(kernel: Int = 2, stride: Int? = nil, padding: Int = 0) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding
    }
    public func callAsFunction(_ x: Tensor) -> Tensor {
        x.avgPool2D(kernel: kernel, stride: stride, padding: padding)
    }
}

/// [N, C, H, W] -> [N, C].
public final class GlobalAvgPool2D: Layer {
    public init() {}
    public func callAsFunction(_ x: Tensor) -> Tensor { x.globalAveragePool() }
}

/// Inverted dropout; identity in inference.
///
/// Each training call draws its mask from a generator seeded by (seed, call count), and the
/// call count is a buffer, so a resumed checkpoint continues with exactly the masks the
/// uninterrupted run would have drawn.
public final class Dropout: Layer, ModeDependent {
    public let probability: Float
    public var mode: Mode = .training
    public let seed: UInt64
    /// Training calls so far (a float scalar, exact up to 2^24 calls), saved with the model.
    public let calls: Buffer

    public init(probability: Float, seed: UInt64 = 0) {
        precondition((0..<1).contains(probability), "dropout probability \(probability) not in [0, 1)")
        self.probability = probability
        self.seed = seed
        self.calls = Buffer(Tensor(shape: [], scalars: [0]))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard mode == .training else { return x }
        let call = UInt64(calls.value.scalar)
        calls.value = Tensor(shape: [], scalars: [calls.value.scalar + 1])
        var generator = SeededGenerator(seed: seed &+ call &* 0x9E37_79B9_7F4A_7C15)
        return x.dropout(probability: probability, training: true, using: &generator)
    }
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
