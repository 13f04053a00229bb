import Core
import Datasets
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
    public struct Configuration: Codable, Equatable, Sendable {
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
        /// Pyramid: the factors the image is scaled by, one level each.
        public var scales: [Float]
        /// Detections scoring below this are dropped.
        public var scoreThreshold: Float
        /// Per-class NMS: a box overlapping a higher-scoring one of its class by more is suppressed.
        public var nmsIoU: Float
        /// Replace each kept box by the score-weighted mean of the suppressed boxes it overlaps.
        public var boxVoting: Bool
        /// At most this many detections per image (the highest scoring).
        public var maxDetections: Int
        /// The training data's category id of each class (COCO `category_id`), for results files.
        public var categoryIDs: [Int64]?
        /// Second looks: this many times, each kept detection's window is cropped again centred
        /// on its box at the level that fits it, and rescored and regressed from there (0: off).
        public var refinements: Int
        /// Second looks average the window's outputs with those of its mirror image.
        public var flipAverage: Bool
        /// Second looks also look from the window moved half a stride left, right, up and down,
        /// and average the probabilities and boxes.
        public var shiftAverage: Bool

        public init(input: String, window: Int, featureSide: Int, hidden: Int, classes: Int, scales: [Float],
                    scoreThreshold: Float = 0.05, nmsIoU: Float = 0.4, boxVoting: Bool = true, maxDetections: Int = 100,
                    categoryIDs: [Int64]? = nil, refinements: Int = 0, flipAverage: Bool = false,
                    shiftAverage: Bool = false) {
            self.input = input; self.window = window; self.featureSide = featureSide; self.hidden = hidden
            self.classes = classes; self.scales = scales; self.scoreThreshold = scoreThreshold; self.nmsIoU = nmsIoU
            self.boxVoting = boxVoting; self.maxDetections = maxDetections; self.categoryIDs = categoryIDs
            self.refinements = refinements; self.flipAverage = flipAverage; self.shiftAverage = shiftAverage
        }

        /// Files written before second looks existed decode with them off.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            input = try c.decode(String.self, forKey: .input)
            window = try c.decode(Int.self, forKey: .window)
            featureSide = try c.decode(Int.self, forKey: .featureSide)
            hidden = try c.decode(Int.self, forKey: .hidden)
            classes = try c.decode(Int.self, forKey: .classes)
            scales = try c.decode([Float].self, forKey: .scales)
            scoreThreshold = try c.decode(Float.self, forKey: .scoreThreshold)
            nmsIoU = try c.decode(Float.self, forKey: .nmsIoU)
            boxVoting = try c.decode(Bool.self, forKey: .boxVoting)
            maxDetections = try c.decode(Int.self, forKey: .maxDetections)
            categoryIDs = try c.decodeIfPresent([Int64].self, forKey: .categoryIDs)
            refinements = try c.decodeIfPresent(Int.self, forKey: .refinements) ?? 0
            flipAverage = try c.decodeIfPresent(Bool.self, forKey: .flipAverage) ?? false
            shiftAverage = try c.decodeIfPresent(Bool.self, forKey: .shiftAverage) ?? false
        }

        /// `levels` scales from 1 down to `window / maxSize` for objects of `minSize` to
        /// `maxSize` pixels (their squares), evenly spaced in log scale.
        public static func pyramid(window: Int, minSize: Float, maxSize: Float, levels: Int) -> [Float] {
            let top = Float(window) / minSize, bottom = Float(window) / maxSize
            guard levels > 1 else { return [top] }
            return (0..<levels).map { top * Foundation.pow(bottom / top, Float($0) / Float(levels - 1)) }
        }

        enum CodingKeys: String, CodingKey {
            case input = "windowInput", window, featureSide = "windowFeatureSide", hidden = "windowHidden",
                 classes = "objectClasses", scales, scoreThreshold, nmsIoU, boxVoting, maxDetections, categoryIDs, refinements, flipAverage, shiftAverage
        }
    }

    public typealias Targets = WindowTargets
    /// One image's detections, in the coordinates of the image given to `predict`.
    public typealias Prediction = [Detection]
    public typealias Metrics = COCOEvaluator

    public static let task = VisionTask.detection
    /// R-CNN delta weights (torchvision's for Fast R-CNN heads).
    public static let coder = BoxCoder(weights: (10, 10, 5, 5))

    public let configuration: Configuration
    /// The first fully connected layer as a `featureSide` x `featureSide` convolution.
    public let hiddenLayer: Conv2D
    /// Class logits and box deltas as a 1x1 convolution.
    public let output: Conv2D
    /// Input pixels between neighbouring windows.
    public let stride: Int
    /// Threshold of `scales`: the decoding geometry is that of each level.
    private let channels: Int

    public init(_ configuration: Configuration, features: [FeatureMapInfo], geometry: InputGeometry,
                seed: UInt64, using rng: inout SeededGenerator) throws {
        guard let map = features.first(where: { $0.name == configuration.input }) else {
            throw ModelError("window head reads map '\(configuration.input)', the backbone has \(features.map(\.name))")
        }
        guard configuration.classes >= 1, configuration.window >= 1, configuration.featureSide >= 1, configuration.hidden >= 1 else {
            throw ModelError("window head needs positive classes, window, feature side and hidden width: \(configuration)")
        }
        guard !configuration.scales.isEmpty, configuration.scales.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ModelError("window head needs positive pyramid scales, got \(configuration.scales)")
        }
        guard (0...1).contains(configuration.nmsIoU), configuration.maxDetections >= 1, configuration.refinements >= 0 else {
            throw ModelError("window head needs an NMS IoU in [0, 1], at least one detection per image and refinements >= 0")
        }
        hiddenLayer = Conv2D(map.channels, configuration.hidden, kernel: configuration.featureSide, using: &rng)
        output = Conv2D(configuration.hidden, configuration.classes + 5, kernel: 1, using: &rng)
        stride = map.stride
        channels = configuration.classes + 5
        self.configuration = configuration
    }

    public var inputs: [String] { [configuration.input] }

    public var classCount: Int { configuration.classes }

    /// Starts the window classifier from a classifier of single windows with the W1 head
    /// (flatten, hidden layer, output), as OverFeat turns a classifier into a dense detector:
    /// the hidden layer's weights over the flattened C x side x side map are this head's side x
    /// side convolution, and the classifier's output rows are the class logits after background
    /// (the background row and the box deltas start fresh). Applies only to a classifier of the
    /// same classes, in the same order, whose layers have exactly these shapes; returns whether
    /// it did.
    @discardableResult
    public func start(from pretrained: PretrainedBackbone, classes: [String]) -> Bool {
        let hidden = hiddenLayer.weight.value.shape, k = configuration.classes
        guard pretrained.task == VisionTask.classification.rawValue, pretrained.classes == classes, classes.count == k,
              let hiddenWeight = pretrained.headParameters["hiddenLayer.weight"], hiddenWeight.shape == [hidden[0], hidden[1] * hidden[2] * hidden[3]],
              let hiddenBias = pretrained.headParameters["hiddenLayer.bias"], hiddenBias.shape == [hidden[0]],
              let outputWeight = pretrained.headParameters["output.weight"], outputWeight.shape == [k, hidden[0]],
              let outputBias = pretrained.headParameters["output.bias"], outputBias.shape == [k],
              let bias = output.bias else { return false }
        // [out, C * side * side] is [out, C, side, side] in row-major order: the same floats.
        hiddenLayer.weight.value = Tensor(shape: hidden, scalars: hiddenWeight.scalars)
        hiddenLayer.bias?.value = hiddenBias.copy()
        let weights = output.weight.value.copy(), biases = bias.value.copy()
        let width = hidden[0]
        (weights.pointer + width).update(from: outputWeight.pointer, count: k * width)
        (biases.pointer + 1).update(from: outputBias.pointer, count: k)
        output.weight.value = weights
        bias.value = biases
        return true
    }

    /// [N, classes + 5, positions down, positions across]: class logits then box deltas. The
    /// output layer sums in a fixed order (`pointwiseConv2D`), so dense scores equal crops' exactly.
    public func callAsFunction(_ features: FeatureMaps) -> Tensor {
        hiddenLayer(features[configuration.input]).relu().pointwiseConv2D(output.weight.tensor, bias: output.bias?.tensor)
    }

    /// Crop batches carry one class per window in `labels` (0 background) and, for object
    /// windows, the object's tight box in window pixels as their only box.
    public func targets(of batch: Batch) -> WindowTargets {
        let n = batch.count, window = Float(configuration.window)
        let deltas = Tensor.zeros([n, 4]), weights = Tensor.zeros([n, 4])
        let square = DetectionBox(x1: 0, y1: 0, x2: window, y2: window, label: 0)
        for i in 0..<n where batch.labels[i] > 0 {
            guard let box = batch.boxes[i].first else { continue }
            let d = Self.coder.encode(target: box, reference: square)
            for (k, v) in [d.0, d.1, d.2, d.3].enumerated() {
                deltas.pointer[4 * i + k] = v
                weights.pointer[4 * i + k] = 1
            }
        }
        return WindowTargets(labels: batch.labels, deltas: deltas, weights: weights)
    }

    /// Cross-entropy over background + classes, plus smooth L1 on the object windows' deltas
    /// (Fast R-CNN's multi-task loss); `outputs` are one vector per window, [N, classes + 5, 1, 1].
    public func loss(_ outputs: Tensor, _ targets: WindowTargets, geometry: InputGeometry) -> Tensor {
        checkShape(outputs.rank == 4 && outputs.shape[1] == channels && outputs.shape[2] == 1 && outputs.shape[3] == 1,
                   "window head trains on window crops: outputs \(outputs.shape)")
        let flat = outputs.reshaped([outputs.shape[0], channels])
        let k = configuration.classes + 1
        let classification = softmaxCrossEntropy(logits: flat.channels(0..<k), labels: targets.labels)
        let regression = smoothL1Loss(flat.channels(k..<channels), targets.deltas, weights: targets.weights, beta: 1.0 / 9)
        return classification + regression
    }

    /// The best object class at position `p` of one image's outputs (`base`, planes of `plane`
    /// floats) and its softmax probability over background + classes.
    @inline(__always)
    func bestObject(_ base: UnsafePointer<Float>, _ p: Int, plane: Int) -> (label: Int, score: Float) {
        let k = configuration.classes + 1
        var best = 1
        if k > 2 { for j in 2..<k where base[j * plane + p] > base[best * plane + p] { best = j } }
        return (best - 1, probability(of: best, base, p, plane: plane))
    }

    /// The softmax probability over background + classes of output channel `j` (0 background,
    /// c + 1 class c) at position `p` of outputs `base` whose channel planes hold `plane` floats.
    @inline(__always)
    func probability(of j: Int, _ base: UnsafePointer<Float>, _ p: Int, plane: Int) -> Float {
        let k = configuration.classes + 1
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
        let window = Float(configuration.window), left = Float(left), top = Float(top)
        return DetectionBox(x1: left / scale, y1: top / scale, x2: (left + window) / scale, y2: (top + window) / scale,
                            label: Int32(label))
    }

    /// One level's outputs ([N, classes + 5, H, W]) -> per image, every window whose best object
    /// class scores at least `threshold` (the configuration's by default), its box decoded and
    /// mapped to the original image; the level was made by scaling the image by `scale` and
    /// padding it by `padding` pixels.
    public func decodeLevel(_ outputs: Tensor, scale: Float, padding: Int, threshold: Float? = nil) -> [[Detection]] {
        let (n, c, h, w) = (outputs.shape[0], outputs.shape[1], outputs.shape[2], outputs.shape[3])
        precondition(c == channels, "window head outputs \(c) channels, expected \(channels)")
        let k = configuration.classes + 1, plane = h * w
        let threshold = threshold ?? configuration.scoreThreshold
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

    /// The pyramid levels of an image of `height` x `width`: each level's size (the image
    /// scaled by one of `scales`, rounded) and its effective scale (boxes map back exactly for
    /// square images, to within half a pixel otherwise).
    public func levels(height: Int, width: Int) -> [(height: Int, width: Int, scale: Float)] {
        configuration.scales.map { Self.level(height: height, width: width, scale: $0) }
    }

    /// One level: the image of `height` x `width` scaled by `scale`, its size rounded, and the
    /// effective scale of that rounded size.
    public static func level(height: Int, width: Int, scale: Float) -> (height: Int, width: Int, scale: Float) {
        let levelHeight = Swift.max(1, Int((Float(height) * scale).rounded()))
        let levelWidth = Swift.max(1, Int((Float(width) * scale).rounded()))
        return (levelHeight, levelWidth, (Float(levelWidth) / Float(width) + Float(levelHeight) / Float(height)) / 2)
    }

    /// Detections of outputs computed on images at their own size (a one-level pyramid).
    public func decode(_ outputs: Tensor, geometry: InputGeometry) -> [[Detection]] {
        decodeLevel(outputs, scale: geometry.scale, padding: 0).map(merge)
    }

    /// One image's detections from all pyramid levels: per-class NMS, box voting, the cap.
    public func merge(_ candidates: [Detection]) -> [Detection] {
        var kept = nonMaximumSuppression(candidates, iouThreshold: configuration.nmsIoU)
        if configuration.boxVoting {
            kept = boxVoting(kept: kept, candidates: candidates, iouThreshold: configuration.nmsIoU)
        }
        return Array(kept.prefix(configuration.maxDetections))
    }

    /// Padding of each pyramid level, so that objects at the image border still fill a window.
    public var levelPadding: Int { configuration.window / 2 }

    /// Detections for each normalised image of `images` ([N, C, H, W]): every pyramid level
    /// (the image scaled by each of `scales`, padded by `levelPadding` with the value of black)
    /// is scored densely by `run`, decoded into the image's coordinates and merged.
    public func predict(_ images: Tensor, _ context: PredictionContext) -> [[Detection]] {
        let (n, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        var candidates = [[Detection]](repeating: [], count: n)
        for level in levels(height: h, width: w) {
            let resized = level.height == h && level.width == w ? images : images.resizedBilinear(height: level.height, width: level.width)
            let padded = resized.padded(by: levelPadding, values: context.background)
            guard padded.shape[2] >= configuration.window, padded.shape[3] >= configuration.window else { continue }
            for (image, found) in decodeLevel(context.run(padded), scale: level.scale, padding: levelPadding).enumerated() {
                candidates[image] += found
            }
        }
        return candidates.enumerated().map { image, found in
            var detections = merge(found)
            guard configuration.refinements > 0, !detections.isEmpty else { return detections }
            let single = Tensor.uninitialized([1, images.shape[1], h, w])
            single.pointer.update(from: images.pointer + image * single.count, count: single.count)
            for _ in 0..<configuration.refinements { detections = merge(refine(detections, in: single, context)) }
            return detections
        }
    }

    /// The window that fits `box` best, as training presents objects: centred on the box, at the
    /// level of an image of `height` x `width` (scale clamped to the pyramid's range) where
    /// the box's square is a window wide. `scaleFactor` and `shift` (level pixels) jitter it.
    public func fittingWindow(_ box: DetectionBox, height: Int, width: Int, scaleFactor: Float = 1,
                       shift: (x: Float, y: Float) = (0, 0)) -> (height: Int, width: Int, scale: Float, left: Int, top: Int) {
        let scales = configuration.scales
        let square = objectSquare(box)
        let side = Swift.max(square.x2 - square.x1, 1)
        let scale = Swift.min(Swift.max(Float(configuration.window) / side * scaleFactor, scales.min()!), scales.max()!)
        let level = Self.level(height: height, width: width, scale: scale)
        let half = Float(configuration.window) / 2
        let left = Int(((box.x1 + box.x2) / 2 * level.scale - half + shift.x).rounded())
        let top = Int(((box.y1 + box.y2) / 2 * level.scale - half + shift.y).rounded())
        return (level.height, level.width, level.scale, left, top)
    }

    /// A second look at `detections` of one normalised image ([1, C, H, W]), as in iterative
    /// localisation (Gidaris & Komodakis, 2015): each detection's fitting window is cropped
    /// (with `flipAverage`, also mirrored) and classified; the detection keeps its class, takes
    /// the box regressed from that window, and as its score the geometric mean of its score and
    /// that class's probability there. Measured on validation scenes, repeated looks sharpen
    /// boxes and scores alike (models/README.md).
    public func refine(_ detections: [Detection], in image: Tensor, _ context: PredictionContext) -> [Detection] {
        let (c, h, w) = (image.shape[1], image.shape[2], image.shape[3])
        let size = configuration.window, plane = size * size
        // Each detection's views: its fitting window and, with `shiftAverage`, that window moved
        // by half a stride in each direction.
        let d = Float(stride) / 2, zero: Float = 0
        var shifts: [(x: Float, y: Float)] = [(zero, zero)]
        if configuration.shiftAverage { shifts += [(d, zero), (-d, zero), (zero, d), (zero, -d)] }
        let views = shifts.count, m = detections.count * views
        let crops = Tensor.uninitialized([m, c, size, size])
        var windows: [(height: Int, width: Int, scale: Float, left: Int, top: Int)] = []
        for (index, detection) in detections.enumerated() {
            for (view, shift) in shifts.enumerated() {
                let fit = fittingWindow(detection.box, height: h, width: w, shift: shift)
                let crop = image.resizedBilinearWindow(height: fit.height, width: fit.width, left: fit.left, top: fit.top,
                                                       size: size, background: context.background)
                let slot = index * views + view
                withExtendedLifetime(crop) { (crops.pointer + slot * c * plane).update(from: crop.pointer, count: c * plane) }
                windows.append(fit)
            }
        }
        var batch = crops
        if configuration.flipAverage {
            batch = Tensor.uninitialized([2 * m, c, size, size])
            batch.pointer.update(from: crops.pointer, count: crops.count)
            let mirrored = crops.flippedHorizontally()
            withExtendedLifetime(mirrored) { (batch.pointer + crops.count).update(from: mirrored.pointer, count: crops.count) }
        }
        let outputs = context.run(batch)
        return detections.enumerated().map { index, detection in
            let label = Int(detection.box.label)
            var probability: Float = 0, corners = (x1: Float(0), y1: Float(0), x2: Float(0), y2: Float(0))
            for view in 0..<views {
                let slot = index * views + view, fit = windows[slot]
                var (p, deltas) = secondLook(outputs.pointer + slot * channels, label: label)
                if configuration.flipAverage {
                    let (mirrorP, mirrorDeltas) = secondLook(outputs.pointer + (m + slot) * channels, label: label)
                    p = (p + mirrorP) / 2
                    deltas = ((deltas.0 - mirrorDeltas.0) / 2, (deltas.1 + mirrorDeltas.1) / 2,
                              (deltas.2 + mirrorDeltas.2) / 2, (deltas.3 + mirrorDeltas.3) / 2)
                }
                let square = windowSquare(left: fit.left, top: fit.top, scale: fit.scale, label: label)
                let box = Self.coder.decode(deltas: deltas, reference: square)
                probability += p
                corners = (corners.x1 + box.x1, corners.y1 + box.y1, corners.x2 + box.x2, corners.y2 + box.y2)
            }
            let n = Float(views)
            let box = DetectionBox(x1: corners.x1 / n, y1: corners.y1 / n, x2: corners.x2 / n, y2: corners.y2 / n, label: detection.box.label)
            // The geometric mean with the score so far: repeated looks weigh the latest most.
            let score = (probability / n * detection.score).squareRoot()
            return Detection(box: box, score: score)
        }
    }

    /// One window's output vector (`base`, `classes + 5` floats): the softmax probability of
    /// object class `label` and the box deltas.
    func secondLook(_ base: UnsafePointer<Float>, label: Int) -> (Float, (Float, Float, Float, Float)) {
        let k = configuration.classes + 1
        return (probability(of: label + 1, base, 0, plane: 1), (base[k], base[k + 1], base[k + 2], base[k + 3]))
    }

    public func makeMetrics() -> COCOEvaluator { COCOEvaluator(categories: Array(0..<configuration.classes)) }

    public func measure(_ predictions: [[Detection]], _ batch: Batch, into metrics: inout COCOEvaluator) {
        for (i, detections) in predictions.enumerated() {
            metrics.add(imageID: batch.indices[i], groundTruth: batch.boxes[i], detections: detections)
        }
    }

    public func evaluation(of metrics: COCOEvaluator) -> Evaluation {
        let s = metrics.summarize()
        return Evaluation(metricName: "AP", value: s.ap, summary: String(format: "AP %.4f  AP50 %.4f  AP75 %.4f", s.ap, s.ap50, s.ap75),
                          values: ["ap": s.ap, "ap50": s.ap50, "ap75": s.ap75])
    }
}
