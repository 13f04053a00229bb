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
