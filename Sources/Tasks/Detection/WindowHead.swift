import PerceptCore
import PerceptDatasets
import Foundation

/// A batch of training windows' ground truth: a class per window (0 background, c + 1 for
/// object class c) and, for object windows, the box deltas of the object's tight box.
public struct WindowTargets {
    public var labels: [Int32]
    /// [N, 4] R-CNN deltas (zero for background windows).
    public var deltas: Tensor
    /// [N, 4]: 1 where a window's deltas count in the loss, 0 for background windows.
    public var weights: Tensor
}

/// A sliding-window object detector's head (OverFeat, dlib's MMOD): a window classifier with
/// a background class and a box regressor, whose fully connected layers are convolutions, so
/// that run over a whole image it scores every window at once and overlapping windows share
/// their work.
///
/// On a `window` x `window` crop the map it reads is `featureSide` x `featureSide` and the
/// head gives one output vector; over an image it gives one per window position, `stride`
/// input pixels apart (the map's stride). Channels 0...classes are the class logits (0 is
/// background); the last four are the deltas of the object's tight box relative to the
/// window's square. `predict` runs an image pyramid: each level is scored densely, decoded to
/// boxes in the original image, and the levels are merged by per-class non-maximum
/// suppression (and optionally box voting).
public final class WindowHead: Head {
    /// The window classifier's shape (and the training data's category ids).
    public struct Architecture: Codable, Equatable, Sendable {
        /// The backbone map read.
        public var input: String
        /// Side of the square window in input pixels.
        public var window: Int
        /// Side of a window's patch on the map: the kernel of the first (fully connected) layer.
        public var featureSide: Int
        /// Width of the hidden fully connected layer.
        public var hidden: Int
        /// Object classes (the background class comes on top).
        public var classes: Int
        /// The training data's category id of each class (COCO `category_id`), for results files.
        public var categoryIDs: [Int64]?
        /// Pixels of surroundings each training crop carries on every side (a multiple of the
        /// map's stride); the head reads the window's patch from the middle of the crop's map.
        /// A backbone whose convolutions pad (a ResNet) sees past a window's edge, so its
        /// windows are trained as the dense pass over a whole image sees them: with what is
        /// around them rather than padding. 0 for unpadded backbones, whose dense scores equal
        /// bare crops'.
        public var context: Int

        public init(input: String, window: Int, featureSide: Int, hidden: Int, classes: Int, categoryIDs: [Int64]? = nil, context: Int = 0) {
            self.input = input; self.window = window; self.featureSide = featureSide; self.hidden = hidden
            self.classes = classes; self.categoryIDs = categoryIDs; self.context = context
        }

        enum CodingKeys: String, CodingKey {
            case input = "windowInput", window, featureSide = "windowFeatureSide", hidden = "windowHidden",
                 classes = "objectClasses", categoryIDs, context = "windowContext"
        }

        /// Files written before training crops carried context decode with none.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            input = try c.decode(String.self, forKey: .input)
            window = try c.decode(Int.self, forKey: .window)
            featureSide = try c.decode(Int.self, forKey: .featureSide)
            hidden = try c.decode(Int.self, forKey: .hidden)
            classes = try c.decode(Int.self, forKey: .classes)
            categoryIDs = try c.decodeIfPresent([Int64].self, forKey: .categoryIDs)
            context = try c.decodeIfPresent(Int.self, forKey: .context) ?? 0
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(input, forKey: .input)
            try c.encode(window, forKey: .window)
            try c.encode(featureSide, forKey: .featureSide)
            try c.encode(hidden, forKey: .hidden)
            try c.encode(classes, forKey: .classes)
            try c.encodeIfPresent(categoryIDs, forKey: .categoryIDs)
            if context != 0 { try c.encode(context, forKey: .context) }
        }
    }

    /// How window scores become detections: the pyramid, NMS and second looks. The defaults are
    /// the tuned recipe (models/README.md); `predict` reads them afresh on every call.
    public struct Settings: HeadSettings {
        /// Pyramid: the factors the image is scaled by, one level each (default: 9 levels for
        /// objects of 26-56 px, `pyramid(window: 28, minSize: 26, maxSize: 56, levels: 9)`).
        public var scales: [Float] = WindowHead.pyramid(window: 28, minSize: 26, maxSize: 56, levels: 9)
        /// Detections scoring below this are dropped.
        public var scoreThreshold: Float = 0.05
        /// Per-class NMS: a box overlapping a higher-scoring one of its class by more is suppressed.
        public var nmsIoU: Float = 0.4
        /// Replace each kept box by the score-weighted mean of the suppressed boxes it overlaps.
        public var boxVoting = false
        /// At most this many detections per image (the highest scoring).
        public var maxDetections = 100
        /// Second looks: this many times, each kept detection's window is cropped again centred
        /// on its box at the level that fits it, and rescored and regressed from there (0: off).
        public var refinements = 10
        /// Second looks average the window's outputs with those of its mirror image.
        public var flipAverage = true
        /// Second looks also look from the window moved half a stride left, right, up and down,
        /// and average the probabilities and boxes.
        public var shiftAverage = true
        /// The highest-scoring windows each pyramid level passes to NMS (torchvision's
        /// `topk_candidates`): bounds the work on images where everything scores a little.
        public var candidatesPerLevel = 1000
        /// Images with a longer side are scaled down to it before the pyramid (Ultralytics'
        /// `imgsz`), and their boxes mapped back to the image's pixels.
        public var maxSide = 640
        /// Second looks read the window's patch from the pyramid level nearest its fitting scale,
        /// sampled bilinearly from the map the dense pass computed (as Fast R-CNN's RoIAlign),
        /// instead of running the backbone on a new crop; mirrored views (`flip_average`) need
        /// crops and are not taken.
        public var looksFromFeatures = false

        public init() {}

        enum CodingKeys: String, CodingKey {
            case scales, scoreThreshold, nmsIoU, boxVoting, maxDetections, refinements, flipAverage, shiftAverage,
                 candidatesPerLevel, maxSide, looksFromFeatures
        }

        /// Files store every setting; those written before second looks existed decode with them off.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            scales = try c.decode([Float].self, forKey: .scales)
            scoreThreshold = try c.decode(Float.self, forKey: .scoreThreshold)
            nmsIoU = try c.decode(Float.self, forKey: .nmsIoU)
            boxVoting = try c.decode(Bool.self, forKey: .boxVoting)
            maxDetections = try c.decode(Int.self, forKey: .maxDetections)
            refinements = try c.decodeIfPresent(Int.self, forKey: .refinements) ?? 0
            flipAverage = try c.decodeIfPresent(Bool.self, forKey: .flipAverage) ?? false
            shiftAverage = try c.decodeIfPresent(Bool.self, forKey: .shiftAverage) ?? false
            // Files made before these bounds existed take them: they change nothing on the images
            // those models were made for (at most 640 pixels, far fewer candidates).
            candidatesPerLevel = try c.decodeIfPresent(Int.self, forKey: .candidatesPerLevel) ?? 1000
            maxSide = try c.decodeIfPresent(Int.self, forKey: .maxSide) ?? 640
            looksFromFeatures = try c.decodeIfPresent(Bool.self, forKey: .looksFromFeatures) ?? false
        }

        public func validate() throws {
            try Check.that(!scales.isEmpty && scales.allSatisfy { $0 > 0 && $0.isFinite }, "scales", "must be positive numbers, got \(scales)")
            try Check.that((0...1).contains(scoreThreshold), "score_threshold", "must be in [0, 1], got \(scoreThreshold)")
            try Check.that((0...1).contains(nmsIoU), "nms_iou", "must be in [0, 1], got \(nmsIoU)")
            try Check.that(maxDetections >= 1, "max_detections", "must be at least 1, got \(maxDetections)")
            try Check.that(refinements >= 0 && refinements <= 100, "refinements", "must be 0 to 100, got \(refinements)")
            try Check.that(candidatesPerLevel >= 1, "candidates_per_level", "must be at least 1, got \(candidatesPerLevel)")
            try Check.that(maxSide >= 16 && maxSide <= 16384, "max_side", "must be 16 to 16384 pixels, got \(maxSide)")
        }
    }

    public typealias Targets = WindowTargets
    /// One image's detections, in the coordinates of the image given to `predict`.
    public typealias Prediction = [Detection]
    public typealias Metrics = COCOEvaluator

    public static let task = VisionTask.detection
    /// R-CNN delta weights (torchvision's for Fast R-CNN heads).
    public static let coder = BoxCoder(weights: (10, 10, 5, 5))

    public let architecture: Architecture
    public var settings: Settings
    /// The first fully connected layer as a `featureSide` x `featureSide` convolution.
    public let hiddenLayer: Conv2D
    /// Class logits and box deltas as a 1x1 convolution.
    public let output: Conv2D
    /// Input pixels between neighbouring windows.
    public let stride: Int
    /// Threshold of `scales`: the decoding geometry is that of each level.
    let channels: Int

    public init(_ architecture: Architecture, settings: Settings = Settings(), features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        guard let map = features.first(where: { $0.name == architecture.input }) else {
            throw ModelError("window head reads map '\(architecture.input)', the backbone has \(features.map(\.name))")
        }
        guard architecture.classes >= 1, architecture.window >= 1, architecture.featureSide >= 1, architecture.hidden >= 1 else {
            throw ModelError("window head needs positive classes, window, feature side and hidden width: \(architecture)")
        }
        guard architecture.context >= 0, architecture.context % map.stride == 0 else {
            throw ModelError("window head's context (\(architecture.context) px) must be a multiple of its map's stride, \(map.stride)")
        }
        hiddenLayer = Conv2D(map.channels, architecture.hidden, kernel: architecture.featureSide, using: &rng)
        output = Conv2D(architecture.hidden, architecture.classes + 5, kernel: 1, using: &rng)
        stride = map.stride
        channels = architecture.classes + 5
        self.architecture = architecture
        self.settings = settings
        try check(settings)
    }

    public func check(_ settings: Settings) throws {
        do { try settings.validate() } catch let error as ConfigError { throw ModelError("window head settings: \(error)") }
    }

    public var inputs: [String] { [architecture.input] }

    public var classCount: Int { architecture.classes }

    /// [N, classes + 5, positions down, positions across]: class logits then box deltas. The
    /// output layer sums in a fixed order (`pointwiseConv2D`), so dense scores equal crops' exactly.
    public func callAsFunction(_ features: FeatureMaps) -> Tensor {
        hiddenLayer(features[architecture.input]).relu().pointwiseConv2D(output.weight.tensor, bias: output.bias?.tensor)
    }

    /// Training crops carry `context` pixels around the window: the head reads the window's
    /// patch from the middle of their map, one output per crop.
    public func trainingOutputs(_ features: FeatureMaps) -> Tensor {
        guard architecture.context > 0 else { return self(features) }
        let map = features[architecture.input], margin = architecture.context / stride, side = architecture.featureSide
        checkShape(map.shape[2] == side + 2 * margin && map.shape[3] == side + 2 * margin,
                   "window head trains on crops of \(architecture.window + 2 * architecture.context) px: map \(map.shape)")
        let patch = map.cropped(top: margin, left: margin, height: side, width: side)
        return hiddenLayer(patch).relu().pointwiseConv2D(output.weight.tensor, bias: output.bias?.tensor)
    }

    /// Window batches carry one class per window (0 background) and, for object windows, the
    /// object's tight box in window pixels.
    public func targets(of batch: Batch) -> WindowTargets {
        guard let labels = batch.windows else { preconditionFailure("a window head trains on window batches (`WindowSampler`)") }
        let n = batch.count, window = Float(architecture.window)
        let deltas = Tensor.zeros([n, 4]), weights = Tensor.zeros([n, 4])
        let square = DetectionBox(x1: 0, y1: 0, x2: window, y2: window, label: 0)
        for i in 0..<n where labels.classes[i] > 0 {
            guard let box = labels.boxes[i] else { continue }
            let d = Self.coder.encode(target: box, reference: square)
            for (k, v) in [d.0, d.1, d.2, d.3].enumerated() {
                deltas.pointer[4 * i + k] = v
                weights.pointer[4 * i + k] = 1
            }
        }
        return WindowTargets(labels: labels.classes, deltas: deltas, weights: weights)
    }

    /// Cross-entropy over background + classes, plus smooth L1 on the object windows' deltas
    /// (Fast R-CNN's multi-task loss); `outputs` are one vector per window, [N, classes + 5, 1, 1].
    public func loss(_ outputs: Tensor, _ targets: WindowTargets, geometry: InputGeometry) -> Tensor {
        checkShape(outputs.rank == 4 && outputs.shape[1] == channels && outputs.shape[2] == 1 && outputs.shape[3] == 1,
                   "window head trains on window crops: outputs \(outputs.shape)")
        let flat = outputs.reshaped([outputs.shape[0], channels])
        let k = architecture.classes + 1
        let classification = softmaxCrossEntropy(logits: flat.channels(0..<k), labels: targets.labels)
        let regression = smoothL1Loss(flat.channels(k..<channels), targets.deltas, weights: targets.weights, beta: 1.0 / 9)
        return classification + regression
    }

    /// The best object class at position `p` of one image's outputs (`base`, planes of `plane`
    /// floats) and its softmax probability over background + classes.
    @inline(__always)
    func bestObject(_ base: UnsafePointer<Float>, _ p: Int, plane: Int) -> (label: Int, score: Float) {
        let k = architecture.classes + 1
        var best = 1
        if k > 2 { for j in 2..<k where base[j * plane + p] > base[best * plane + p] { best = j } }
        return (best - 1, probability(of: best, base, p, plane: plane))
    }

    /// The softmax probability over background + classes of output channel `j` (0 background,
    /// c + 1 class c) at position `p` of outputs `base` whose channel planes hold `plane` floats.
    @inline(__always)
    func probability(of j: Int, _ base: UnsafePointer<Float>, _ p: Int, plane: Int) -> Float {
        let k = architecture.classes + 1
        var peak = base[p]
        for i in 1..<k { peak = Swift.max(peak, base[i * plane + p]) }
        var total: Float = 0
        for i in 0..<k { total += Foundation.exp(base[i * plane + p] - peak) }
        return Foundation.exp(base[j * plane + p] - peak) / total
    }

    /// The square in original-image pixels of the window at map position (x, y) of a level
    /// made by scaling the image by `scale` and padding it by `padding` pixels.
    public func windowSquare(x: Int, y: Int, scale: Float, padding: Int, label: Int = 0) -> DetectionBox {
        windowSquare(left: x * stride - padding, top: y * stride - padding, scale: scale, label: label)
    }

    /// The square in original-image pixels of the window with its top-left corner at (`left`,
    /// `top`) of a level made by scaling the image by `scale`.
    public func windowSquare(left: Int, top: Int, scale: Float, label: Int = 0) -> DetectionBox {
        let window = Float(architecture.window), left = Float(left), top = Float(top)
        return DetectionBox(x1: left / scale, y1: top / scale, x2: (left + window) / scale, y2: (top + window) / scale,
                            label: Int32(label))
    }

    /// One level's outputs ([N, classes + 5, H, W]) -> per image, every window whose best object
    /// class scores at least `threshold` (the settings' by default), its box decoded and
    /// mapped to the original image; the level was made by scaling the image by `scale` and
    /// padding it by `padding` pixels.
    public func decodeLevel(_ outputs: Tensor, scale: Float, padding: Int, threshold: Float? = nil) -> [[Detection]] {
        let (n, c, h, w) = (outputs.shape[0], outputs.shape[1], outputs.shape[2], outputs.shape[3])
        precondition(c == channels, "window head outputs \(c) channels, expected \(channels)")
        let k = architecture.classes + 1, plane = h * w
        let threshold = threshold ?? settings.scoreThreshold
        return (0..<n).map { image in
            var found: [Detection] = []
            let base = UnsafePointer(outputs.pointer + image * c * plane)
            for p in 0..<plane {
                let (label, score) = bestObject(base, p, plane: plane)
                guard score >= threshold else { continue }
                let square = windowSquare(x: p % w, y: p / w, scale: scale, padding: padding, label: label)
                let box = Self.coder.decode(deltas: (base[k * plane + p], base[(k + 1) * plane + p],
                                                     base[(k + 2) * plane + p], base[(k + 3) * plane + p]), reference: square)
                found.append(Detection(box: box, score: score))
            }
            return found
        }
    }

    /// Windows of one image's level outputs ([1, classes + 5, H, W]) whose best object class
    /// scores at least `threshold`: their map positions and scores (for hard-negative mining).
    public func scoredWindows(_ outputs: Tensor, threshold: Float) -> [(x: Int, y: Int, score: Float)] {
        let (h, w) = (outputs.shape[2], outputs.shape[3]), plane = h * w
        let base = UnsafePointer(outputs.pointer)
        return (0..<plane).compactMap { p in
            let score = bestObject(base, p, plane: plane).score
            return score >= threshold ? (p % w, p / w, score) : nil
        }
    }

    /// Detections of outputs computed on images at their own size (a one-level pyramid).
    public func decode(_ outputs: Tensor, geometry: InputGeometry) -> [[Detection]] {
        decodeLevel(outputs, scale: geometry.scale, padding: 0).map(merge)
    }

    /// One image's detections from all pyramid levels: per-class NMS, box voting, the cap.
    public func merge(_ candidates: [Detection]) -> [Detection] {
        var kept = nonMaximumSuppression(candidates, iouThreshold: settings.nmsIoU)
        if settings.boxVoting {
            kept = boxVoting(kept: kept, candidates: candidates, iouThreshold: settings.nmsIoU)
        }
        return Array(kept.prefix(settings.maxDetections))
    }

    /// Detections for each normalised image of `images` ([N, C, H, W]): every pyramid level
    /// (the image scaled by each of `scales`, padded by `levelPadding` with the value of black)
    /// is scored densely by `run`, decoded into the image's coordinates and merged.
    public func predict(_ images: Tensor, _ context: PredictionContext) -> [[Detection]] {
        let (n, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        var candidates = [[Detection]](repeating: [], count: n)
        let keepsMaps = settings.refinements > 0 && settings.looksFromFeatures && context.features != nil
        var levelMaps: [(scale: Float, map: Tensor)] = []
        for level in levels(height: h, width: w) {
            let resized = level.height == h && level.width == w ? images : images.resizedBilinear(height: level.height, width: level.width)
            let padded = resized.padded(by: levelPadding, values: context.background)
            guard padded.shape[2] >= architecture.window, padded.shape[3] >= architecture.window else { continue }
            let outputs: Tensor
            if keepsMaps, let features = context.features {
                let maps = features(padded)
                outputs = self(maps)
                levelMaps.append((level.scale, maps[architecture.input]))
            } else {
                outputs = context.run(padded)
            }
            for (image, found) in decodeLevel(outputs, scale: level.scale, padding: levelPadding).enumerated() {
                candidates[image] += found.count <= settings.candidatesPerLevel
                    ? found : Array(found.sorted { $0.score > $1.score }.prefix(settings.candidatesPerLevel))
            }
            // Levels differ in size: what one level's pass pooled, the next cannot reuse
            // (maps kept for second looks stay alive).
            if !keepsMaps { Tensor.releasePooledBuffers() }
        }
        return candidates.enumerated().map { image, found in
            var detections = merge(found)
            if settings.refinements > 0, !detections.isEmpty {
                if keepsMaps {
                    for _ in 0..<settings.refinements {
                        detections = merge(refine(detections, image: image, of: levelMaps, height: h, width: w))
                    }
                } else {
                    let single = Tensor.uninitialized([1, images.shape[1], h, w])
                    single.pointer.update(from: images.pointer + image * single.count, count: single.count)
                    for _ in 0..<settings.refinements {
                        detections = merge(refine(detections, in: single, context))
                        // Each look's batch has another size (NMS keeps another count).
                        Tensor.releasePooledBuffers()
                    }
                }
            }
            return clipped(detections, width: Float(w), height: Float(h))
        }
    }

    /// Boxes clipped to the image, as every COCO tool does (torchvision's `clip_boxes_to_image`);
    /// a box left without area is dropped.
    func clipped(_ detections: [Detection], width: Float, height: Float) -> [Detection] {
        detections.compactMap { detection in
            var box = detection.box
            box.x1 = Swift.min(Swift.max(box.x1, 0), width); box.x2 = Swift.min(Swift.max(box.x2, 0), width)
            box.y1 = Swift.min(Swift.max(box.y1, 0), height); box.y2 = Swift.min(Swift.max(box.y2, 0), height)
            return box.x2 > box.x1 && box.y2 > box.y1 ? Detection(box: box, score: detection.score) : nil
        }
    }

    public func scoredPredictions(of metrics: COCOEvaluator) -> [ScoredPredictions]? {
        (0..<architecture.classes).map { metrics.scoredDetections(category: $0) }
    }

    public func makeMetrics() -> COCOEvaluator { COCOEvaluator(categories: Array(0..<architecture.classes)) }

    public func measure(_ predictions: [[Detection]], _ batch: Batch, into metrics: inout COCOEvaluator) {
        for (i, detections) in predictions.enumerated() {
            metrics.add(imageID: batch.indices[i], groundTruth: batch.boxes[i], detections: detections)
        }
    }

    public func evaluation(of metrics: COCOEvaluator, classes: [String]) -> Evaluation {
        let s = metrics.summarize()
        var e = Evaluation(metricName: "AP", value: s.ap, summary: String(format: "AP %.4f  AP50 %.4f  AP75 %.4f", s.ap, s.ap50, s.ap75),
                           metrics: [.init("images", "images", .count(metrics.imageCount)), .init("ap", "AP", .metric(s.ap)),
                                     .init("ap50", "AP50", .metric(s.ap50)), .init("ap75", "AP75", .metric(s.ap75)),
                                     .init("ap_small", nil, .metric(s.apSmall)), .init("ap_medium", nil, .metric(s.apMedium)),
                                     .init("ap_large", nil, .metric(s.apLarge)), .init("ar100", "AR100", .metric(s.ar100))])
        e.columns = [.init("ap", "AP", width: 6), .init("ap50", "AP50", width: 6)]
        e.rows = classes.indices.map { k in (classes[k], [s.perClassAP[k].map(ReportValue.metric) ?? .undefined,
                                                          s.perClassAP50[k].map(ReportValue.metric) ?? .undefined]) }
        return e
    }
}
