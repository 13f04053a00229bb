/// Batch normalisation over the channels of NCHW input, with running statistics for inference.
public final class BatchNorm2D: Layer, ModeDependent {
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Buffer
    public let runningVariance: Buffer
    /// Weight of each training batch's statistics in the running ones.
    public var momentum: Float
    public let epsilon: Float
    public var mode: Mode = .training
    /// Normalise with the running statistics in training too and leave them as they are
    /// (torchvision's `FrozenBatchNorm2d`, but the scale and shift still train): a backbone
    /// shared by tasks whose inputs differ normalises alike in training and in inference.
    public var freezesStatistics = false

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
                      training: mode == .training && !freezesStatistics, relu: relu)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, relu: false) }
}

extension Module {
    /// Every batch norm inside measures its running statistics afresh as the cumulative
    /// average of the batches `run` passes through in training mode (PyTorch's `momentum=None`,
    /// as precise BN computes them), then keeps its momentum.
    public func measureBatchNormStatistics(batches: Int, _ run: (Int) throws -> Void) rethrows {
        var norms: [BatchNorm2D] = []
        walk { _, object in if let norm = object as? BatchNorm2D { norms.append(norm) } }
        let momenta = norms.map(\.momentum)
        defer { for (norm, momentum) in zip(norms, momenta) { norm.momentum = momentum } }
        setMode(.training)
        for index in 0..<batches {
            for norm in norms { norm.momentum = 1 / Float(index + 1) }
            try run(index)
        }
    }

    /// Every batch norm inside normalises with its running statistics from now on, in training
    /// too, and keeps them (`BatchNorm2D.freezesStatistics`).
    public func freezeBatchNormStatistics() {
        walk { _, object in (object as? BatchNorm2D)?.freezesStatistics = true }
    }
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
