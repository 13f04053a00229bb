import PerceptCore
import PerceptDatasets
import Foundation

/// What a multi-task model's heads say about one image, in the image's own pixels.
public struct MultiTaskPrediction {
    /// The whole image's class.
    public var classification: ClassPrediction?
    public var tagging: TagPrediction?
    public var detection: [Detection]?
    public var segmentation: SegmentationPrediction?
}

extension MultiTaskModel {
    /// Predictions of the heads of `tasks` for an image as read (any size, any channels): one
    /// backbone pass over the image (scaled down where its longer side exceeds the
    /// any-size heads' `max_side`) feeds the classifier, the tagger and the segmenter (and,
    /// with the segmenter's `flip_average`, one more over its mirror image for the segmenter),
    /// then the detector scores its own pyramid levels. The classifier and the tagger pool
    /// their maps over the whole image, whatever its size.
    public func predict(image: Image, tasks: Set<VisionTask>) -> MultiTaskPrediction {
        setMode(.inference)
        var result = MultiTaskPrediction()
        let c = configuration
        let shared = [VisionTask.classification, .tagging, .segmentation].filter { tasks.contains($0) && head($0) != nil }
        if !shared.isEmpty {
            let side = segmentation.map { $0.settings.maxSide } ?? detection?.settings.maxSide ?? 640
            let size = predictionSize(width: image.width, height: image.height, maxSide: side)
            var scaled = image.converted(toChannels: c.inputChannels)
            if (scaled.width, scaled.height) != size { scaled = scaled.resized(width: size.width, height: size.height) }
            let input = normalisedTensor(scaled, mean: c.mean, std: c.std)
            let geometry = InputGeometry(height: size.height, width: size.width)
            let outputs = self(input, tasks: shared)
            if let head = classification, let scores = outputs[.classification] {
                result.classification = head.decode(scores, geometry: geometry).first
            }
            if let head = tagging, let scores = outputs[.tagging] {
                result.tagging = head.decode(scores, geometry: geometry).first
            }
            if let head = segmentation, var scores = outputs[.segmentation] {
                if head.settings.flipAverage {
                    let mirrored = self(input.flippedHorizontally(), tasks: [.segmentation])[.segmentation]!.flippedHorizontally()
                    let mean = Tensor.uninitialized(scores.shape)
                    for i in 0..<scores.count { mean.pointer[i] = 0.5 * (scores.pointer[i] + mirrored.pointer[i]) }
                    scores = mean
                }
                result.segmentation = head.decode(scores, geometry: geometry).first.map {
                    head.mapped($0, from: size, to: (image.width, image.height))
                }
            }
            Tensor.releasePooledBuffers()
        }
        if tasks.contains(.detection), let detector = model(WindowHead.self) {
            result.detection = detector.predict(images: [image])[0]
        }
        return result
    }
}

/// A multi-task model's decoding settings, a section per head (`tag.thresholds`,
/// `detect.nms_iou`, `segment.flip_average`, ...): what `percept multi eval` and `multi predict`
/// read with `--config`, `--set` and print with `--show-config`. A head the model lacks keeps
/// its section at the defaults; setting one of its keys is an error.
public struct MultiTaskSettings: Configurable {
    public var tag = TaggingHead.Settings()
    public var detect = WindowHead.Settings()
    public var segment = SegmentationHead.Settings()

    public init() {}

    /// The settings `model`'s heads decode with.
    public init(_ model: MultiTaskModel) {
        if let head = model.tagging { tag = head.settings }
        if let head = model.detection { detect = head.settings }
        if let head = model.segmentation { segment = head.settings }
    }

    public func validate() throws {
        try tag.validate(); try detect.validate(); try segment.validate()
    }

    /// Makes `model` decode with these settings (checked to fit each head); a changed section of
    /// a head the model lacks is an error.
    public func apply(to model: MultiTaskModel) throws {
        let defaults = MultiTaskSettings()
        func use<H: Head>(_ head: H?, _ settings: H.Settings, _ fallback: H.Settings, _ key: String) throws {
            guard let head else {
                guard settings == fallback else { throw ConfigError("\(key): the model has no \(H.task.rawValue) head") }
                return
            }
            try settings.validate()
            try head.check(settings)
            head.settings = settings
        }
        try use(model.tagging, tag, defaults.tag, "tag")
        try use(model.detection, detect, defaults.detect, "detect")
        try use(model.segmentation, segment, defaults.segment, "segment")
    }
}
