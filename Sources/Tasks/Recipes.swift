import Core
import Datasets
import Foundation

/// The tuned defaults of each task: what a user who passes no flags trains.
public struct Recipe: Sendable {
    public var backbone: String
    public var stemStride: Int
    /// Max-pool the stem's output 2x2 (see `BackboneConfiguration.stemPool`).
    public var stemPool = false
    /// Channels per stage, overriding the backbone preset's.
    public var widths: [Int]? = nil
    /// How ResNet heads pool the last feature map (average or max).
    public var pooling: Pooling = .global
    public var options: TrainingOptions
    public var labelSmoothing: Float

    public init(backbone: String, stemStride: Int, options: TrainingOptions, labelSmoothing: Float) {
        self.backbone = backbone; self.stemStride = stemStride
        self.options = options; self.labelSmoothing = labelSmoothing
    }

    /// Fashion-MNIST-sized classification (see models/README.md for the measured result): a
    /// ResNet-8 twice as wide as the CIFAR one, with a stride-2 stem so it costs no more per
    /// image than the narrow one at full resolution and fits 14 epochs in under 13 minutes on
    /// two cores (measured: 93.1% Fashion-MNIST test accuracy).
    public static var classification: Recipe {
        var o = TrainingOptions()
        o.epochs = 14; o.batchSize = 128; o.optimizer = "sgd"; o.weightDecay = 5e-4; o.warmupEpochs = 1
        var r = Recipe(backbone: "resnet8", stemStride: 2, options: o, labelSmoothing: 0.1)
        r.widths = [32, 64, 128]
        return r
    }

    /// Multi-item canvases: a stride-2 stem halves the cost of every layer, buying epochs, and
    /// global max pooling asks "is this item anywhere" (measured: mAP 0.78 against 0.62 for
    /// average pooling after 4 epochs). A high peak learning rate trains much faster here
    /// (validation mAP after 10 epochs: 0.865 at 0.1, 0.887 at 0.2, 0.911 at 0.4, 0.915 at 0.8).
    /// Batch 64 learns a little more per epoch (0.918 at 0.25) but runs about 20% slower.
    /// (Those runs were on canvases whose items overlap. On non-overlapping canvases, 40 epochs
    /// take about 13 minutes; over seeds 0 and 1, test mAP 0.954 and micro-F1 0.905 with the
    /// output layer started at the tags' base rates, 0.952 and 0.902 with it Xavier-initialised.)
    public static var tagging: Recipe {
        var o = TrainingOptions()
        o.epochs = 40; o.batchSize = 128; o.optimizer = "sgd"; o.learningRate = 0.5
        o.weightDecay = 5e-4; o.warmupEpochs = 1
        var r = Recipe(backbone: "resnet8", stemStride: 2, options: o, labelSmoothing: 0)
        r.pooling = .globalMax
        return r
    }
}

/// Per-channel mean and standard deviation of value / 255 over up to `limit` images.
public func channelStatistics(_ dataset: ImageDataset, limit: Int = 10_000) throws -> (mean: [Float], std: [Float]) {
    let n = min(dataset.count, limit)
    let bytes = try dataset.readImages(0..<n)
    let c = dataset.channels, plane = dataset.height * dataset.width
    var sum = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
    bytes.withUnsafeBufferPointer { p in
        for i in 0..<n {
            for ch in 0..<c {
                let base = (i * c + ch) * plane
                var s = 0.0, q = 0.0
                for j in 0..<plane { let v = Double(p[base + j]) / 255; s += v; q += v * v }
                sum[ch] += s; squares[ch] += q
            }
        }
    }
    let count = Double(n * plane)
    let mean = sum.map { $0 / count }
    let std = zip(squares, mean).map { max(($0 / count - $1 * $1).squareRoot(), 1e-3) }
    return (mean.map(Float.init), std.map(Float.init))
}

/// The fraction of images carrying each tag, over up to `limit` rows of `dataset`.
public func tagFrequencies(_ dataset: TaggingDataset, limit: Int = 100_000) throws -> [Float] {
    let rows = min(dataset.count, limit), k = dataset.tagCount
    var counts = [Int](repeating: 0, count: k)
    let step = 8192
    for start in stride(from: 0, to: rows, by: step) {
        let tags = try dataset.readTags(start..<min(start + step, rows))
        for (index, tag) in tags.enumerated() where tag != 0 { counts[index % k] += 1 }
    }
    return counts.map { Float($0) / Float(max(rows, 1)) }
}

/// A model configuration for `dataset` with the named backbone preset.
public func makeConfiguration(task: TaskKind, dataset: ImageDataset, backbone name: String, stemStride: Int,
                              stemPool: Bool = false, widths: [Int]? = nil, pooling: Pooling = .global, outputs: Int, loss: String, labelSmoothing: Float,
                              mean: [Float], std: [Float]) throws -> ModelConfiguration {
    guard var backbone = BackboneConfiguration.preset(name, inputChannels: dataset.channels, stemStride: stemStride) else {
        throw ModelError("unknown backbone '\(name)' (known: \(BackboneConfiguration.presetNames.joined(separator: ", ")))")
    }
    if stemPool { backbone.stemPool = true }
    if let widths {
        guard widths.count == backbone.widths.count, widths.allSatisfy({ $0 > 0 }) else {
            throw ModelError("--widths needs \(backbone.widths.count) positive channel counts for \(name), got \(widths)")
        }
        backbone.widths = widths
    }
    let head: HeadConfiguration
    if backbone.kind == "plain" {
        let stride = 1 << backbone.widths.count
        guard dataset.height % stride == 0, dataset.width % stride == 0 else {
            throw ModelError("the plain backbone needs image sides divisible by \(stride), the dataset has \(dataset.height)x\(dataset.width)")
        }
        head = HeadConfiguration(pooling: .flatten, inFeatures: backbone.widths.last! * (dataset.height / stride) * (dataset.width / stride),
                                 hidden: 128, outputs: outputs)
    } else {
        head = HeadConfiguration(pooling: pooling == .flatten ? .global : pooling, inFeatures: backbone.widths.last!, outputs: outputs)
    }
    return ModelConfiguration(task: task, inputChannels: dataset.channels, inputHeight: dataset.height,
                              inputWidth: dataset.width, classes: dataset.classNames, backbone: backbone, head: head,
                              loss: loss, labelSmoothing: labelSmoothing, mean: mean, std: std)
}
