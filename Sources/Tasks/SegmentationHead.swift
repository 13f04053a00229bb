import Core
import Datasets
import Foundation

/// The losses a segmenter trains with.
public enum SegmentationLoss: String, Codable, Sendable, CaseIterable {
    /// Per-pixel softmax cross-entropy; mask pixels of 255 are ignored.
    case crossEntropy = "pixel_cross_entropy"
}

/// Context the deepest map's positions gather before they are scored.
public enum SegmentationContext: String, Codable, Sendable, CaseIterable {
    /// Position attention (the non-local block of Wang et al. 2018, DANet's position attention):
    /// each position adds a learned mix of all positions' features, weighted by the softmax of
    /// query . key, so the positions of one item can share what each of them sees.
    case attention
    /// Image pooling (ParseNet, DeepLabv3): each position adds a learned map of the mean of all
    /// positions' features.
    case global
}

/// One image's class map: a class index per pixel, at the size of the network's input.
public struct SegmentationPrediction: Sendable {
    public let width: Int, height: Int
    /// Row-major class indices (0 = background).
    public let mask: [UInt8]

    public init(width: Int, height: Int, mask: [UInt8]) {
        precondition(mask.count == width * height, "mask of \(mask.count) pixels for \(width)x\(height)")
        self.width = width; self.height = height; self.mask = mask
    }

    /// The class map as an 8-bit gray image (pixel value = class index), e.g. to write as PNG.
    public var image: Image { Image(width: width, height: height, channels: 1, pixels: mask) }
}

/// Semantic segmentation in the FCN tradition (Long, Shelhamer & Darrell 2015) with a light
/// U-Net-style decoder: the deepest backbone map is refined level by level with finer maps
/// (skips), then upsampled bilinearly to the input size; one softmax per pixel.
///
/// At each skip the running features are resized bilinearly to the skip's size, concatenated
/// with it and mixed by a 3x3 convolution + batch norm + ReLU (`decoderWidth` channels). With
/// `decoderWidth` 0 it is plain FCN score fusion instead: 1x1 class scores of every map,
/// summed after upsampling (FCN-16s/8s).
///
/// With FCN score fusion the deepest map may first gather context (`context`: position attention
/// or image pooling, added to it) and pass a 3x3 hidden layer (`hiddenWidth`) before its scores.
///
/// Optionally (`refineWidth` > 0) the upsampled class scores are refined at full resolution
/// from the input image itself: a 3x3 convolution of the image, concatenated with the scores,
/// two 1x1 convolutions, added to the scores. Item borders follow pixel brightness, which the
/// coarser maps only see blurred; the refinement costs a few hundred multiply-adds per pixel.
/// The same refinement can also run on the way up from finer backbone maps (`refineMaps`),
/// whose features tell which item a pixel belongs to where items overlap.
public final class SegmentationHead: Head {
    public struct Configuration: Codable, Equatable, Sendable {
        /// The deepest map read (the decoder's start).
        public var deepest: String
        /// Finer maps merged on the way up, deepest first (e.g. `["stage2", "stage1", "stem"]`).
        public var skips: [String]
        /// Channels of the decoder's 3x3 mixing layers; 0 for FCN score fusion.
        public var decoderWidth: Int
        /// Hidden channels of the full-resolution refinement from the input image; 0 for none.
        public var refineWidth: Int
        /// Side of the class-score convolution on the deepest map (or the decoder's last level):
        /// 1 scores each position from its own features; 3 also from its 8 neighbours', as a
        /// classifier's global pooling sees a whole item (nil: 1).
        public var classifierKernel: Int?
        /// Side of the FCN score convolutions of the skip maps (nil: 1).
        public var skipKernel: Int?
        /// Output classes, background (0) included.
        public var classes: Int
        public var loss: SegmentationLoss
        /// Optional weight per class in the loss (none: all 1).
        public var classWeights: [Float]?
        /// Weight of a Lovász-softmax term added to the cross-entropy (nil: none).
        public var lovaszWeight: Float?
        /// Predict from the mean of the scores of each image and its mirror image (nil: off).
        public var flipAverage: Bool?
        /// Context added to the deepest map before the class scores (nil: none); FCN score fusion only.
        public var context: SegmentationContext?
        /// Query and key channels of `.attention` context (nil: 32).
        public var contextKeys: Int?
        /// Channels of a 3x3 convolution + batch norm + ReLU on the deepest map (after its
        /// context) before the class scores, as torchvision's `FCNHead` (nil: none); FCN score
        /// fusion only.
        public var hiddenWidth: Int?
        /// Backbone maps the class scores are refined from on their way up to the input size,
        /// coarsest first (nil: none): at each, the scores are resized to the map and corrected
        /// from it as the full-resolution refinement corrects them from the image.
        public var refineMaps: [String]?
        /// Hidden channels of each `refineMaps` refinement (nil: 16).
        public var refineMapsWidth: Int?

        public init(deepest: String, skips: [String], decoderWidth: Int, refineWidth: Int = 0, classifierKernel: Int? = nil,
                    skipKernel: Int? = nil, classes: Int, loss: SegmentationLoss = .crossEntropy, classWeights: [Float]? = nil,
                    lovaszWeight: Float? = nil, flipAverage: Bool? = nil, context: SegmentationContext? = nil, contextKeys: Int? = nil,
                    hiddenWidth: Int? = nil, refineMaps: [String]? = nil, refineMapsWidth: Int? = nil) {
            self.deepest = deepest; self.skips = skips; self.decoderWidth = decoderWidth; self.refineWidth = refineWidth
            self.classifierKernel = classifierKernel; self.skipKernel = skipKernel
            self.classes = classes; self.loss = loss; self.classWeights = classWeights; self.flipAverage = flipAverage
            self.lovaszWeight = lovaszWeight
            self.context = context; self.contextKeys = contextKeys; self.hiddenWidth = hiddenWidth
            self.refineMaps = refineMaps; self.refineMapsWidth = refineMapsWidth
        }

        enum CodingKeys: String, CodingKey {
            case deepest = "segmentationInput", skips = "segmentationSkips", decoderWidth, refineWidth, classifierKernel, skipKernel,
                 classes = "outputs", loss, classWeights, lovaszWeight, flipAverage,
                 context, contextKeys, hiddenWidth, refineMaps, refineMapsWidth
        }
    }

    /// Per-pixel labels, [N * H * W] in (n, y, x) order; 255 is ignored.
    public typealias Targets = [Int32]
    public typealias Prediction = SegmentationPrediction
    public typealias Metrics = SegmentationMetrics

    public static let task = VisionTask.segmentation

    /// A 3x3 convolution + batch norm + ReLU: a decoder level (mixing the upsampled features
    /// with a skip map) or the hidden layer before FCN class scores.
    public final class DecoderLevel: Module {
        public let conv: Conv2D
        public let norm: BatchNorm2D
        init(_ inChannels: Int, _ outChannels: Int, using rng: inout SeededGenerator) {
            conv = Conv2D(inChannels, outChannels, kernel: 3, padding: 1, bias: false, using: &rng)
            norm = BatchNorm2D(outChannels)
        }
        func callAsFunction(_ x: Tensor) -> Tensor { norm(conv(x), relu: true) }
    }

    /// Refines class scores from a map of their resolution (the input image, or a backbone map):
    /// `scores + output(relu(mix([scores, relu(edges(map))])))`, edges 3x3, mix and output 1x1.
    public final class Refinement: Module {
        public let edges: Conv2D
        public let mix: Conv2D
        public let output: Conv2D
        init(mapChannels: Int, classes: Int, width: Int, using rng: inout SeededGenerator) {
            edges = Conv2D(mapChannels, width, kernel: 3, padding: 1, using: &rng)
            mix = Conv2D(classes + width, width, kernel: 1, using: &rng)
            output = Conv2D(width, classes, kernel: 1, using: &rng)
            // Zero output weights: training starts from the unrefined scores.
            output.weight.value = .zeros(output.weight.value.shape)
        }
        func callAsFunction(_ scores: Tensor, map: Tensor) -> Tensor {
            let h = mix(concatChannels([scores, edges(map).relu()])).relu()
            return scores + output(h)
        }
    }

    /// Context for the deepest map: `features + output(mix)`, where mix is attention of all
    /// positions' values (`.attention`) or the value map of the mean features (`.global`). The
    /// output convolution starts at zero, so training starts from the map without context.
    public final class Context: Module {
        public let query: Conv2D?
        public let key: Conv2D?
        public let value: Conv2D
        public let output: Conv2D
        init(_ kind: SegmentationContext, channels: Int, keys: Int, using rng: inout SeededGenerator) {
            query = kind == .attention ? Conv2D(channels, keys, kernel: 1, using: &rng) : nil
            key = kind == .attention ? Conv2D(channels, keys, kernel: 1, using: &rng) : nil
            value = Conv2D(channels, channels, kernel: 1, using: &rng)
            output = Conv2D(channels, channels, kernel: 1, using: &rng)
            output.weight.value = .zeros(output.weight.value.shape)
        }
        func callAsFunction(_ x: Tensor) -> Tensor {
            let mix: Tensor
            if let query, let key {
                mix = Tensor.attention(query: query(x), key: key(x), value: value(x))
            } else {
                let (n, c) = (x.shape[0], x.shape[1])
                mix = value(x.globalAveragePool().reshaped([n, c, 1, 1])).relu()
                    .resizedBilinear(height: x.shape[2], width: x.shape[3])
            }
            return x + output(mix)
        }
    }

    public let configuration: Configuration
    /// Context gathered on the deepest map before its class scores (FCN score fusion only).
    public let context: Context?
    /// The hidden layer between the deepest map (after its context) and the class scores.
    public let hidden: DecoderLevel?
    /// Class scores (1x1, or `classifierKernel` square, same padding) on the deepest map (FCN) or
    /// on the decoder's last level.
    public let classifier: Conv2D
    /// Decoder levels, one per skip (U-Net style), or score layers of the skips (FCN; 1x1 unless
    /// `skipKernel` says otherwise).
    public let levels: [DecoderLevel]
    public let skipScores: [Conv2D]
    public let refinement: Refinement?
    /// Refinements from backbone maps (`refineMaps`), coarsest first.
    public let mapRefinements: [Refinement]
    private let classWeights: Tensor?
    private let geometry: InputGeometry

    public init(_ configuration: Configuration, features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        func map(_ name: String) throws -> FeatureMapInfo {
            guard let info = features.first(where: { $0.name == name }) else {
                throw ModelError("segmentation head reads map '\(name)', the backbone has \(features.map(\.name))")
            }
            return info
        }
        let deepest = try map(configuration.deepest)
        let skips = try configuration.skips.map(map)
        guard configuration.classes >= 2 else { throw ModelError("segmentation needs at least 2 classes, got \(configuration.classes)") }
        guard configuration.decoderWidth >= 0, configuration.refineWidth >= 0 else {
            throw ModelError("decoder width \(configuration.decoderWidth) and refinement width \(configuration.refineWidth) must not be negative")
        }
        if let weights = configuration.classWeights {
            guard weights.count == configuration.classes, weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
                throw ModelError("\(weights.count) class weights for \(configuration.classes) classes (each must be finite and >= 0)")
            }
        }
        for (finer, coarser) in zip(skips, [deepest] + skips) where finer.stride > coarser.stride {
            throw ModelError("segmentation skip '\(finer.name)' (stride \(finer.stride)) is coarser than '\(coarser.name)' (stride \(coarser.stride))")
        }
        let kernel = configuration.classifierKernel ?? 1, skipKernel = configuration.skipKernel ?? 1
        for (name, side) in [("classifier", kernel), ("skip score", skipKernel)] where !(side >= 1 && side % 2 == 1 && side <= 7) {
            throw ModelError("segmentation \(name) kernel \(side) must be odd, 1 to 7")
        }
        let k = configuration.classes, width = configuration.decoderWidth
        if width > 0 {
            var channels = deepest.channels
            levels = skips.map { skip in
                defer { channels = width }
                return DecoderLevel(channels + skip.channels, width, using: &rng)
            }
            skipScores = []
            classifier = Conv2D(skips.isEmpty ? deepest.channels : width, k, kernel: kernel, padding: kernel / 2, using: &rng)
        } else {
            levels = []
            classifier = Conv2D(configuration.hiddenWidth ?? deepest.channels, k, kernel: kernel, padding: kernel / 2, using: &rng)
            skipScores = skips.map { Conv2D($0.channels, k, kernel: skipKernel, padding: skipKernel / 2, using: &rng) }
        }
        if let kind = configuration.context {
            let keys = configuration.contextKeys ?? 32
            guard width == 0, keys >= 1 && keys <= 4096 else {
                throw ModelError("segmentation context needs FCN score fusion (decoder width 0) and 1 to 4096 keys, got width \(width), \(keys) keys")
            }
            context = Context(kind, channels: deepest.channels, keys: keys, using: &rng)
        } else {
            context = nil
        }
        if let hiddenWidth = configuration.hiddenWidth {
            guard width == 0, hiddenWidth >= 1 && hiddenWidth <= 4096 else {
                throw ModelError("segmentation hidden layer needs FCN score fusion (decoder width 0) and 1 to 4096 channels, got width \(width), \(hiddenWidth) channels")
            }
            hidden = DecoderLevel(deepest.channels, hiddenWidth, using: &rng)
        } else {
            hidden = nil
        }
        refinement = configuration.refineWidth > 0
            ? Refinement(mapChannels: try map("input").channels, classes: k, width: configuration.refineWidth, using: &rng) : nil
        let refineMaps = try (configuration.refineMaps ?? []).map(map)
        let refineMapsWidth = configuration.refineMapsWidth ?? 16
        guard refineMaps.isEmpty || (refineMapsWidth >= 1 && refineMapsWidth <= 4096) else {
            throw ModelError("segmentation map refinement width \(refineMapsWidth) must be 1 to 4096")
        }
        let scoresStride = skips.last?.stride ?? deepest.stride
        for (finer, coarser) in zip(refineMaps.dropFirst(), refineMaps) where finer.stride > coarser.stride {
            throw ModelError("segmentation refinement map '\(finer.name)' (stride \(finer.stride)) is coarser than '\(coarser.name)' (stride \(coarser.stride))")
        }
        if let first = refineMaps.first, first.stride > scoresStride {
            throw ModelError("segmentation refinement map '\(first.name)' (stride \(first.stride)) is coarser than the class scores (stride \(scoresStride))")
        }
        mapRefinements = refineMaps.map { Refinement(mapChannels: $0.channels, classes: k, width: refineMapsWidth, using: &rng) }
        classWeights = configuration.classWeights.map { Tensor(shape: [k], scalars: $0) }
        self.configuration = configuration
        self.geometry = geometry
    }

    public var classCount: Int { configuration.classes }

    /// Starts the class scores from a classifier with a linear output on globally pooled
    /// features of the same map, as FCN turns a classifier's last layer into a convolution: a
    /// k x k score convolution becomes the classifier's output weights over k x k (the mean of
    /// the features there), item class c scoring as class c + 1 after background, whose row
    /// starts fresh. Applies only to FCN scores on the deepest map (no decoder) and a classifier
    /// whose classes are `classes` after the first, in order; returns whether it did.
    @discardableResult
    public func start(from pretrained: PretrainedBackbone, classes: [String]) -> Bool {
        let shape = classifier.weight.value.shape, k = configuration.classes
        guard configuration.decoderWidth == 0, pretrained.task == VisionTask.classification.rawValue,
              pretrained.headParameters["hiddenLayer.weight"] == nil, classes.count == k, Array(classes.dropFirst()) == pretrained.classes,
              let weight = pretrained.headParameters["output.weight"], weight.shape == [k - 1, shape[1]],
              let bias = pretrained.headParameters["output.bias"], bias.shape == [k - 1],
              let scoreBias = classifier.bias else { return false }
        let channels = shape[1], taps = shape[2] * shape[3]
        let weights = classifier.weight.value.copy(), biases = scoreBias.value.copy()
        for c in 0..<(k - 1) {
            for i in 0..<channels {
                let w = weight.pointer[c * channels + i] / Float(taps)
                for t in 0..<taps { weights.pointer[((c + 1) * channels + i) * taps + t] = w }
            }
            biases.pointer[c + 1] = bias.pointer[c]
        }
        classifier.weight.value = weights
        scoreBias.value = biases
        return true
    }

    public var inputs: [String] {
        [configuration.deepest] + configuration.skips + (configuration.refineMaps ?? []) + (refinement == nil ? [] : ["input"])
    }

    /// [N, classes, H, W] logits at the input size.
    public func callAsFunction(_ features: FeatureMaps) -> Tensor {
        var h = features[configuration.deepest]
        if configuration.decoderWidth > 0 {
            for (level, name) in zip(levels, configuration.skips) {
                let skip = features[name]
                h = level(concatChannels([resized(h, like: skip), skip]))
            }
            h = classifier(h)
        } else {
            if let context { h = context(h) }
            if let hidden { h = hidden(h) }
            h = classifier(h)
            for (score, name) in zip(skipScores, configuration.skips) {
                let skip = features[name]
                h = resized(h, like: skip) + score(skip)
            }
        }
        for (refinement, name) in zip(mapRefinements, configuration.refineMaps ?? []) {
            let map = features[name]
            h = refinement(resized(h, like: map), map: map)
        }
        if h.shape[2] != geometry.height || h.shape[3] != geometry.width {
            h = h.resizedBilinear(height: geometry.height, width: geometry.width)
        }
        if let refinement { h = refinement(h, map: features["input"]) }
        return h
    }

    private func resized(_ x: Tensor, like other: Tensor) -> Tensor {
        x.shape[2] == other.shape[2] && x.shape[3] == other.shape[3]
            ? x : x.resizedBilinear(height: other.shape[2], width: other.shape[3])
    }

    public func targets(of batch: Batch) -> [Int32] { batch.masks }

    public func loss(_ outputs: Tensor, _ masks: [Int32], geometry: InputGeometry) -> Tensor {
        let ignored = Int32(DatasetLayout.ignoreIndex)
        let crossEntropy = softmaxCrossEntropy(logits: outputs, labels: masks, ignoreIndex: ignored, classWeights: classWeights)
        guard let weight = configuration.lovaszWeight else { return crossEntropy }
        return crossEntropy + lovaszSoftmax(probabilities: outputs.softmax(axis: 1), labels: masks, ignoreIndex: ignored) * weight
    }

    /// [N, classes, H, W] logits -> N class maps (per-pixel argmax; ties keep the lower class).
    public func decode(_ outputs: Tensor, geometry: InputGeometry) -> [SegmentationPrediction] {
        let (n, k, h, w) = (outputs.shape[0], outputs.shape[1], outputs.shape[2], outputs.shape[3])
        let plane = h * w
        return (0..<n).map { i in
            var mask = [UInt8](repeating: 0, count: plane)
            let base = outputs.pointer + i * k * plane
            mask.withUnsafeMutableBufferPointer { mask in
                var best = [Float](UnsafeBufferPointer(start: base, count: plane))
                for c in 1..<k {
                    let scores = base + c * plane
                    for p in 0..<plane where scores[p] > best[p] {
                        best[p] = scores[p]
                        mask[p] = UInt8(c)
                    }
                }
            }
            return SegmentationPrediction(width: w, height: h, mask: mask)
        }
    }

    /// Class maps for normalised images: one pass, or with `flipAverage` the mean of the scores of
    /// each image and (mirrored back) of its mirror image, which evens out the left-right bias
    /// of any single pass.
    public func predict(_ images: Tensor, _ context: PredictionContext) -> [SegmentationPrediction] {
        let scores = context.run(images)
        guard configuration.flipAverage == true else { return decode(scores, geometry: context.geometry) }
        let mirrored = context.run(images.flippedHorizontally()).flippedHorizontally()
        let mean = Tensor.uninitialized(scores.shape)
        for i in 0..<scores.count { mean.pointer[i] = 0.5 * (scores.pointer[i] + mirrored.pointer[i]) }
        return decode(mean, geometry: context.geometry)
    }

    public func makeMetrics() -> SegmentationMetrics { SegmentationMetrics(classes: configuration.classes) }

    public func measure(_ predictions: [SegmentationPrediction], _ batch: Batch, into metrics: inout SegmentationMetrics) {
        guard let first = predictions.first else { return }
        let plane = first.width * first.height
        batch.masks.withUnsafeBufferPointer { truth in
            for (i, prediction) in predictions.enumerated() {
                metrics.add(prediction: prediction.mask, truth: UnsafeBufferPointer(rebasing: truth[i * plane..<(i + 1) * plane]))
            }
        }
    }

    public func evaluation(of metrics: SegmentationMetrics) -> Evaluation {
        let items = metrics.meanIoU(includingBackground: false), all = metrics.meanIoU(includingBackground: true)
        return Evaluation(metricName: "mIoU", value: items,
                          summary: String(format: "mIoU %.4f  (with background %.4f)  pixel accuracy %.4f", items, all, metrics.pixelAccuracy),
                          values: ["mean_iou": items, "mean_iou_with_background": all, "pixel_accuracy": metrics.pixelAccuracy])
    }
}

/// Segmentation metrics from a confusion matrix, as torchvision's reference `ConfusionMatrix`
/// computes them: pixel accuracy, per-class IoU = TP / (TP + FP + FN), and their means. Pixels
/// whose truth is outside `0..<classes` (the ignore label 255) are not counted.
public struct SegmentationMetrics: Sendable {
    public let classes: Int
    /// confusion[truth * classes + prediction], in pixels.
    public private(set) var confusion: [Int]

    public init(classes: Int) {
        self.classes = classes
        confusion = [Int](repeating: 0, count: classes * classes)
    }

    /// Adds one image: predicted and true class per pixel.
    public mutating func add(prediction: [UInt8], truth: UnsafeBufferPointer<Int32>) {
        precondition(prediction.count == truth.count, "\(prediction.count) predicted pixels for \(truth.count) labels")
        let k = classes
        confusion.withUnsafeMutableBufferPointer { matrix in
            for (p, t) in zip(prediction, truth) where t >= 0 && Int(t) < k {
                matrix[Int(t) * k + Int(p)] += 1
            }
        }
    }

    /// Counted pixels.
    public var pixels: Int { confusion.reduce(0, +) }

    /// Fraction of counted pixels labelled correctly.
    public var pixelAccuracy: Double {
        let total = pixels
        return total == 0 ? 0 : Double((0..<classes).reduce(0) { $0 + confusion[$1 * classes + $1] }) / Double(total)
    }

    /// IoU of each class; nil for a class that is neither present nor predicted (0 / 0).
    public var perClassIoU: [Double?] {
        (0..<classes).map { c in
            let tp = confusion[c * classes + c]
            let truth = (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] }
            let predicted = (0..<classes).reduce(0) { $0 + confusion[$1 * classes + c] }
            let union = truth + predicted - tp
            return union == 0 ? nil : Double(tp) / Double(union)
        }
    }

    /// Recall of each class (torchvision's per-class "acc"); nil for a class with no pixels.
    public var perClassAccuracy: [Double?] {
        (0..<classes).map { c in
            let truth = (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] }
            return truth == 0 ? nil : Double(confusion[c * classes + c]) / Double(truth)
        }
    }

    /// Mean IoU over the classes with a defined IoU, with or without class 0 (background).
    public func meanIoU(includingBackground: Bool) -> Double {
        let values = perClassIoU.enumerated().compactMap { includingBackground || $0.offset > 0 ? $0.element : nil }
        return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
    }
}
