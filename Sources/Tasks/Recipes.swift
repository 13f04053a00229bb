import Core
import Datasets
import Foundation

/// The tuned defaults of each task: what a user who passes no flags trains. models/README.md
/// has the measurements behind each choice.
public struct Recipe: Sendable {
    public var backbone: BackbonePreset
    public var stemStride: Int
    /// Max-pool the stem's output 2x2 (see `BackboneConfiguration.stemPool`).
    public var stemPool = false
    /// Channels per stage, overriding the backbone preset's.
    public var widths: [Int]? = nil
    /// How ResNet heads pool the last feature map (average or max).
    public var pooling: Pooling = .global
    public var options: TrainingOptions
    public var labelSmoothing: Float
    /// Segmentation: the finer backbone maps the decoder merges, deepest first.
    public var skips: [String] = []
    /// Segmentation: channels of the decoder's mixing convolutions (0: FCN score fusion).
    public var decoderWidth = 0
    /// Segmentation: hidden channels of the full-resolution refinement (0: none).
    public var refineWidth = 0
    /// Segmentation: side of the class-score convolution on the deepest map.
    public var classifierKernel = 1
    /// Segmentation: side of the FCN score convolutions of the skip maps.
    public var skipKernel = 1
    /// Segmentation: weight of the Lovász-softmax term beside the cross-entropy (0: none).
    public var lovaszWeight: Float = 0
    /// Segmentation: context gathered on the deepest map before the class scores (nil: none).
    public var context: SegmentationContext? = nil
    /// Segmentation: query and key channels of attention context.
    public var contextKeys = 32
    /// Segmentation: channels of a 3x3 hidden layer before the class scores (0: none).
    public var hiddenWidth = 0
    /// Segmentation: backbone maps the class scores are refined from on their way up, coarsest first.
    public var refineMaps: [String] = []
    /// Segmentation: hidden channels of each backbone-map refinement.
    public var refineMapsWidth = 16
    /// Segmentation: predict from the mean scores of each image and its mirror image.
    public var flipAverage = false
    /// Segmentation: start the item classes' scores from the output layer of the classifier the
    /// backbone comes from, spread over the score kernel (FCN's convolutionalised classifier).
    public var startScores = false
    /// A shipped model (in `models/`, see `ShippedModels`) whose backbone training starts from
    /// (nil: from scratch).
    public var backboneWeights: String? = nil
    /// Padding of a plain backbone's convolutions (nil: 1).
    public var padding: Int? = nil

    public init(backbone: BackbonePreset, stemStride: Int, options: TrainingOptions, labelSmoothing: Float) {
        self.backbone = backbone; self.stemStride = stemStride
        self.options = options; self.labelSmoothing = labelSmoothing
    }

    /// Fashion-MNIST-sized classification: a ResNet-8 twice as wide as the CIFAR one, with a
    /// stride-2 stem so it costs no more per image than the narrow one at full resolution, 14
    /// epochs, label smoothing 0.1.
    public static var classification: Recipe {
        var o = TrainingOptions()
        o.epochs = 14; o.batchSize = 128; o.optimizer = .sgd; o.weightDecay = 5e-4; o.warmupEpochs = 1
        var r = Recipe(backbone: .resnet8, stemStride: 2, options: o, labelSmoothing: 0.1)
        r.widths = [32, 64, 128]
        return r
    }

    /// Multi-item canvases: ResNet-8 with a stride-2 stem, global max pooling ("is this item
    /// anywhere"), 40 epochs at a high peak learning rate (0.5).
    public static var tagging: Recipe {
        var o = TrainingOptions()
        o.epochs = 40; o.batchSize = 128; o.optimizer = .sgd; o.learningRate = 0.5
        o.weightDecay = 5e-4; o.warmupEpochs = 1
        var r = Recipe(backbone: .resnet8, stemStride: 2, options: o, labelSmoothing: 0)
        r.pooling = .globalMax
        return r
    }

    /// Per-pixel classes of 64x64 canvases: a ResNet-8 of widths 32/64/128 with a stride-2 stem,
    /// started from the shipped Fashion-MNIST classifier of that shape trained long with random
    /// erasing (as FCN starts from a classifier), 3x3 class scores on its deepest map (each
    /// position also reads its neighbours, as a classifier's pooling sees a whole item) upsampled
    /// to the input and refined there from the image itself (borders follow brightness), the item
    /// classes' scores started from the classifier's output layer, 16 epochs at peak learning rate
    /// 0.2 with half the canvases getting an item of another pasted on (so items overlap anew each
    /// epoch); predictions average each image's scores with its mirror image's.
    /// models/README.md has the runs behind each choice.
    public static var segmentation: Recipe {
        var o = TrainingOptions()
        o.epochs = 16; o.batchSize = 64; o.optimizer = .sgd; o.learningRate = 0.2
        o.weightDecay = 5e-4; o.warmupEpochs = 1; o.pasting = 0.5
        var r = Recipe(backbone: .resnet8, stemStride: 2, options: o, labelSmoothing: 0)
        r.widths = [32, 64, 128]
        r.backboneWeights = "fashion-classifier-long.h5"
        r.skips = []
        r.decoderWidth = 0
        r.refineWidth = 8
        r.classifierKernel = 3
        r.flipAverage = true
        r.startScores = true
        return r
    }

    /// Sliding-window detection on 160x160 scenes of 28-56 px items: the W1 network with
    /// unpadded convolutions as a 28x28 window classifier (so dense scoring equals cropping),
    /// started from the shipped W1 Fashion-MNIST classifier (OverFeat: its fully connected
    /// layers become the window convolutions), windows every 4 pixels on a 9-level pyramid for
    /// objects of 26-56 px.
    public static var detection: Recipe {
        var o = TrainingOptions()
        o.epochs = 16; o.batchSize = 128; o.optimizer = .sgd; o.learningRate = 0.05
        o.weightDecay = 5e-4; o.warmupEpochs = 1
        var r = Recipe(backbone: .plain, stemStride: 1, options: o, labelSmoothing: 0)
        r.widths = [32, 64]
        r.padding = 0
        r.backboneWeights = "fashion-window-classifier.h5"
        return r
    }

    /// The backbone this recipe builds for images of `inputChannels` channels.
    public func backboneConfiguration(inputChannels: Int) throws -> BackboneConfiguration {
        var backbone = self.backbone.configuration(inputChannels: inputChannels, stemStride: stemStride)
        if stemPool { backbone.stemPool = true }
        if let padding { backbone.padding = padding }
        if let widths {
            guard widths.count == backbone.widths.count, widths.allSatisfy({ $0 > 0 }) else {
                throw ModelError("--widths needs \(backbone.widths.count) positive channel counts for \(self.backbone.rawValue), got \(widths)")
            }
            backbone.widths = widths
        }
        return backbone
    }

    /// A model configuration for `dataset` with this recipe's backbone and the head that
    /// `head` makes from the backbone's deepest map and the dataset's input size.
    /// `backbone` replaces the recipe's (a pretrained one's, say).
    public func configuration<C>(for dataset: ImageDataset, task: VisionTask, mean: [Float], std: [Float],
                                 backbone given: BackboneConfiguration? = nil,
                                 head: (_ deepest: FeatureMapInfo, _ kind: BackboneKind, _ geometry: InputGeometry) throws -> C)
        throws -> ModelConfiguration<C> {
        let backbone = try given ?? backboneConfiguration(inputChannels: dataset.channels)
        let geometry = InputGeometry(height: dataset.height, width: dataset.width)
        return ModelConfiguration(task: task, inputChannels: dataset.channels, inputHeight: dataset.height,
                                  inputWidth: dataset.width, classes: dataset.classNames, backbone: backbone,
                                  head: try head(backbone.featureInfo.last!, backbone.kind, geometry), mean: mean, std: std)
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
