import PerceptCore
import PerceptDatasets
import Foundation

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

/// Semantic segmentation in the FCN tradition (Long, Shelhamer & Darrell 2015): class scores on
/// the deepest backbone map, fused with score layers of finer maps (`skips`, FCN-16s/8s),
/// upsampled bilinearly to the input size; one softmax per pixel.
///
/// Optionally (`refineWidth` > 0) the upsampled class scores are refined at full resolution
/// from the input image itself: a 3x3 convolution of the image, concatenated with the scores,
/// two 1x1 convolutions, added to the scores. Item borders follow pixel brightness, which the
/// coarser maps only see blurred; the refinement costs a few hundred multiply-adds per pixel.
public final class SegmentationHead: Head {
    /// The score layers' shape.
    public struct Architecture: Codable, Equatable, Sendable {
        /// The deepest map read.
        public var deepest: String
        /// Finer maps whose scores are fused on the way up, deepest first (e.g. `["stage2", "stage1"]`).
        public var skips: [String]
        /// Hidden channels of the full-resolution refinement from the input image; 0 for none.
        public var refineWidth: Int
        /// Side of the class-score convolution on the deepest map: 1 scores each position from
        /// its own features; 3 also from its 8 neighbours', as a classifier's global pooling sees
        /// a whole item.
        public var classifierKernel: Int
        /// Side of the score convolutions of the skip maps.
        public var skipKernel: Int
        /// Output classes, background (0) included.
        public var classes: Int
        /// Optional weight per class in the loss (none: all 1).
        public var classWeights: [Float]?

        public init(deepest: String, skips: [String] = [], refineWidth: Int = 0, classifierKernel: Int = 1, skipKernel: Int = 1,
                    classes: Int, classWeights: [Float]? = nil) {
            self.deepest = deepest; self.skips = skips; self.refineWidth = refineWidth
            self.classifierKernel = classifierKernel; self.skipKernel = skipKernel
            self.classes = classes; self.classWeights = classWeights
        }

        enum CodingKeys: String, CodingKey {
            case deepest = "segmentationInput", skips = "segmentationSkips", refineWidth, classifierKernel, skipKernel,
                 classes = "outputs", classWeights
            // Options of earlier Percepts that measured no gain (models/README.md): files that
            // used them are refused by name.
            case loss, decoderWidth, lovaszWeight, context, contextKeys, hiddenWidth, refineMaps, refineMapsWidth
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            deepest = try c.decode(String.self, forKey: .deepest)
            skips = try c.decode([String].self, forKey: .skips)
            refineWidth = try c.decode(Int.self, forKey: .refineWidth)
            classifierKernel = try c.decodeIfPresent(Int.self, forKey: .classifierKernel) ?? 1
            skipKernel = try c.decodeIfPresent(Int.self, forKey: .skipKernel) ?? 1
            classes = try c.decode(Int.self, forKey: .classes)
            classWeights = try c.decodeIfPresent([Float].self, forKey: .classWeights)
            try Retired.refuse(c, .loss, unless: "pixel_cross_entropy", option: "segmentation loss")
            try Retired.refuse(c, .decoderWidth, unless: 0, option: "U-Net decoder (decoder width)")
            for (key, option) in [(CodingKeys.lovaszWeight, "Lovász-softmax term"), (.context, "context (attention or image pooling)"),
                                  (.contextKeys, "attention context keys"), (.hiddenWidth, "hidden layer before the scores"),
                                  (.refineMaps, "refinement from backbone maps"), (.refineMapsWidth, "refinement from backbone maps")] {
                try Retired.refuseAny(c, key, option: option)
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(deepest, forKey: .deepest)
            try c.encode(skips, forKey: .skips)
            try c.encode(refineWidth, forKey: .refineWidth)
            try c.encode(classifierKernel, forKey: .classifierKernel)
            try c.encode(skipKernel, forKey: .skipKernel)
            try c.encode(classes, forKey: .classes)
            try c.encodeIfPresent(classWeights, forKey: .classWeights)
        }
    }

    /// How scores become class maps.
    public struct Settings: HeadSettings {
        /// Predict from the mean of the scores of each image and its mirror image.
        public var flipAverage = true
        /// Images with a longer side are scaled down to it before they are segmented, and their
        /// masks scaled back up (nearest neighbour) to the image's pixels.
        public var maxSide = 640

        public init() {}
        public init(flipAverage: Bool) { self.flipAverage = flipAverage }

        /// Files written before the setting existed decode with it off.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            flipAverage = try c.decodeIfPresent(Bool.self, forKey: .flipAverage) ?? false
            maxSide = try c.decodeIfPresent(Int.self, forKey: .maxSide) ?? 640
        }

        public func validate() throws {
            try Check.that(maxSide >= 16 && maxSide <= 16384, "max_side", "must be 16 to 16384 pixels, got \(maxSide)")
        }
    }

    /// Per-pixel labels, [N * H * W] in (n, y, x) order; 255 is ignored.
    public typealias Targets = [Int32]
    public typealias Prediction = SegmentationPrediction
    public typealias Metrics = SegmentationMetrics

    public static let task = VisionTask.segmentation

    /// Refines class scores from a map of their resolution (the input image):
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

    public let architecture: Architecture
    public var settings: Settings
    /// Class scores (`classifierKernel` square, same padding) on the deepest map.
    public let classifier: Conv2D
    /// Score layers of the skips.
    public let skipScores: [Conv2D]
    public let refinement: Refinement?
    private let classWeights: Tensor?

    public init(_ architecture: Architecture, settings: Settings = Settings(), features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        func map(_ name: String) throws -> FeatureMapInfo {
            guard let info = features.first(where: { $0.name == name }) else {
                throw ModelError("segmentation head reads map '\(name)', the backbone has \(features.map(\.name))")
            }
            return info
        }
        let a = architecture
        let deepest = try map(a.deepest)
        let skips = try a.skips.map(map)
        guard a.classes >= 2 else { throw ModelError("segmentation needs at least 2 classes, got \(a.classes)") }
        guard a.refineWidth >= 0 else { throw ModelError("refinement width \(a.refineWidth) must not be negative") }
        if let weights = a.classWeights {
            guard weights.count == a.classes, weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
                throw ModelError("\(weights.count) class weights for \(a.classes) classes (each must be finite and >= 0)")
            }
        }
        for (finer, coarser) in zip(skips, [deepest] + skips) where finer.stride > coarser.stride {
            throw ModelError("segmentation skip '\(finer.name)' (stride \(finer.stride)) is coarser than '\(coarser.name)' (stride \(coarser.stride))")
        }
        for (name, side) in [("classifier", a.classifierKernel), ("skip score", a.skipKernel)] where !(side >= 1 && side % 2 == 1 && side <= 7) {
            throw ModelError("segmentation \(name) kernel \(side) must be odd, 1 to 7")
        }
        let k = a.classes
        classifier = Conv2D(deepest.channels, k, kernel: a.classifierKernel, padding: a.classifierKernel / 2, using: &rng)
        skipScores = skips.map { Conv2D($0.channels, k, kernel: a.skipKernel, padding: a.skipKernel / 2, using: &rng) }
        refinement = a.refineWidth > 0
            ? Refinement(mapChannels: try map("input").channels, classes: k, width: a.refineWidth, using: &rng) : nil
        classWeights = a.classWeights.map { Tensor(shape: [k], scalars: $0) }
        self.architecture = architecture
        self.settings = settings
    }

    public var classCount: Int { architecture.classes }

    public var inputs: [String] { [architecture.deepest] + architecture.skips + (refinement == nil ? [] : ["input"]) }

    /// [N, classes, H, W] logits at the input size.
    public func callAsFunction(_ features: FeatureMaps) -> Tensor {
        var h = classifier(features[architecture.deepest])
        for (score, name) in zip(skipScores, architecture.skips) {
            let skip = features[name]
            h = resized(h, like: skip) + score(skip)
        }
        // At the input's own size: the model's for training, any size for prediction.
        let input = features["input"]
        if h.shape[2] != input.shape[2] || h.shape[3] != input.shape[3] {
            h = h.resizedBilinear(height: input.shape[2], width: input.shape[3])
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
        return softmaxCrossEntropy(logits: outputs, labels: masks, ignoreIndex: ignored, classWeights: classWeights)
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
        guard settings.flipAverage else { return decode(scores, geometry: context.geometry) }
        let mirrored = context.run(images.flippedHorizontally()).flippedHorizontally()
        let mean = Tensor.uninitialized(scores.shape)
        for i in 0..<scores.count { mean.pointer[i] = 0.5 * (scores.pointer[i] + mirrored.pointer[i]) }
        return decode(mean, geometry: context.geometry)
    }

    public func makeMetrics() -> SegmentationMetrics { SegmentationMetrics(classes: architecture.classes) }

    public func measure(_ predictions: [SegmentationPrediction], _ batch: Batch, into metrics: inout SegmentationMetrics) {
        guard let first = predictions.first else { return }
        let plane = first.width * first.height
        batch.masks.withUnsafeBufferPointer { truth in
            for (i, prediction) in predictions.enumerated() {
                metrics.add(prediction: prediction.mask, truth: UnsafeBufferPointer(rebasing: truth[i * plane..<(i + 1) * plane]))
            }
        }
    }

    public func evaluation(of metrics: SegmentationMetrics, classes: [String]) -> Evaluation {
        let items = metrics.meanIoU(includingBackground: false), all = metrics.meanIoU(includingBackground: true)
        var e = Evaluation(metricName: "mIoU", value: items,
                           summary: String(format: "mIoU %.4f  (with background %.4f)  pixel accuracy %.4f", items, all, metrics.pixelAccuracy),
                           metrics: [.init("pixels", "pixels", .count(metrics.pixels)),
                                     .init("pixel_accuracy", "pixel accuracy", .metric(metrics.pixelAccuracy)),
                                     .init("mean_iou", "mIoU (classes 1-\(classes.count - 1))", .metric(items)),
                                     .init("mean_iou_with_background", "mIoU with background", .metric(all))])
        e.columns = [.init("iou", "IoU", width: 6), .init("accuracy", "accuracy", width: 8)]
        let iou = metrics.perClassIoU, recall = metrics.perClassAccuracy
        e.rows = classes.indices.map { c in (classes[c], [iou[c].map(ReportValue.metric) ?? .undefined,
                                                         recall[c].map(ReportValue.metric) ?? .undefined]) }
        // confusion[truth][prediction] in pixels, as torchvision's ConfusionMatrix.mat.
        e.matrixKey = "confusion"
        e.matrix = classes.indices.map { t in Array(metrics.confusion[t * classes.count..<(t + 1) * classes.count]) }
        e.printsMatrix = false
        return e
    }
}

