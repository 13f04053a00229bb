import PerceptCore
import PerceptDatasets
import Foundation

/// Everything one task's training run reads, in typed sections whose Swift defaults are the
/// tuned recipe: the library, the command line (`--config`, `--set`, `--show-config`) and the
/// model file (which stores the resolved configuration) all read these structs, so a default
/// lives in exactly one place. models/README.md has the measurements behind each default.
public protocol TaskConfig: Configurable {
    associatedtype TaskHead: Head
    /// The task's tuned recipe.
    init()
    /// The backbone and where its weights start.
    var backbone: BackboneOptions { get set }
    /// Optimisation and augmentation.
    var train: TrainingOptions { get set }
    /// How the trained model decodes: saved in the model file as its default settings.
    var settings: TaskHead.Settings { get set }
    /// The head's architecture for a backbone whose deepest map is `deepest` and for `dataset`.
    func headArchitecture(deepest: FeatureMapInfo, backbone: BackboneConfiguration, dataset: ImageDataset) throws -> TaskHead.Architecture
    /// Checks the task-specific sections (the shared ones are checked by `validate()`).
    func validateTask() throws
}

extension TaskConfig {
    public func validate() throws {
        try backbone.validate()
        try train.validate()
        try settings.validate()
        try validateTask()
    }

    public func validateTask() throws {}
}

/// The backbone a run builds (the `backbone` section), and the model file its weights start from.
public struct BackboneOptions: Configurable {
    public var preset: BackbonePreset
    /// Channels per stage; empty: the preset's.
    public var widths: [Int] = []
    /// Stride of the ResNet stem convolution, 1 or 2 (torchvision's ResNet-18 and -34: 2).
    public var stemStride = 1
    /// Max-pool the ResNet stem's output 2x2 (small-image ResNets; ResNet-18 and -34 pool 3x3).
    public var stemPool = false
    /// Zero padding of the plain backbone's 3x3 convolutions: 1 keeps each map's size, 0 makes a
    /// window classifier whose dense scores equal its crops'.
    public var padding = 1
    /// The model file whose backbone (architecture, weights and input normalisation) training
    /// starts from: a file name in the shipped models (`ShippedModels`), a path, or `none`.
    public var weights = "none"

    public init(preset: BackbonePreset, widths: [Int] = [], stemStride: Int = 1, padding: Int = 1, weights: String = "none") {
        self.preset = preset; self.widths = widths; self.stemStride = stemStride; self.padding = padding; self.weights = weights
    }

    public func validate() throws {
        // A plain CNN takes any number of stages; a ResNet preset has its own.
        let stages = preset.configuration(inputChannels: 1).widths.count
        try Check.that(widths.allSatisfy { $0 > 0 && $0 <= 4096 } && widths.count <= 8, "backbone.widths",
                       "must be up to 8 channel counts of 1 to 4096, got \(widths)")
        try Check.that(widths.isEmpty || preset == .plain || widths.count == stages, "backbone.widths",
                       "must be \(stages) channel counts for \(preset.rawValue) (or [] for its own), got \(widths)")
        try Check.that(stemStride == 1 || stemStride == 2, "backbone.stem_stride", "must be 1 or 2, got \(stemStride)")
        try Check.that(padding == 0 || padding == 1, "backbone.padding", "must be 0 or 1, got \(padding)")
        try Check.that(preset == .plain || padding == 1, "backbone.padding", "applies to the plain backbone; ResNets pad by 1")
        try Check.that(!stemPool || preset.configuration(inputChannels: 1).stemLayout == .small, "backbone.stem_pool",
                       "applies to the small-image ResNets; \(preset.rawValue) max-pools 3x3 after its stem already")
        try Check.that(!weights.isEmpty, "backbone.weights", "must name a model file or be none")
    }

    /// The backbone these options build for images of `inputChannels` channels.
    public func configuration(inputChannels: Int) -> BackboneConfiguration {
        var backbone = preset.configuration(inputChannels: inputChannels, stemStride: stemStride)
        if stemPool { backbone.stemPool = true }
        if padding != 1 { backbone.padding = padding }
        if !widths.isEmpty { backbone.widths = widths }
        return backbone
    }

    /// The options that build `backbone` (nil when no preset has its layout).
    public init?(describing backbone: BackboneConfiguration, weights: String) {
        let preset: BackbonePreset? = backbone.kind == .plain ? .plain
            : BackbonePreset.allCases.first { $0 != .plain && $0.configuration(inputChannels: 1).blocks == backbone.blocks }
        guard let preset else { return nil }
        self.init(preset: preset, widths: backbone.widths, stemStride: backbone.stemStride, padding: backbone.plainPadding, weights: weights)
        stemPool = backbone.poolsStem
        guard configuration(inputChannels: backbone.inputChannels) == backbone else { return nil }
    }

    /// Whether training starts from a model file's backbone.
    public var startsFromWeights: Bool { weights != "none" }

    /// The backbone a new run on `channels`-channel images (of the file `data`) starts from:
    /// none for `weights: none`; else the named file (a path, or a shipped model's name), checked
    /// to fit. Where these options keep the recipe's backbone, the file's backbone is adopted and
    /// written into them, so the stored configuration says what was built; where they name
    /// another, the file must hold it (or a backbone it extends). The recipe's own default file,
    /// missing or not fitting, is noted through `log` and training starts from scratch; a file
    /// the user named must fit.
    public mutating func pretrained(recipe: BackboneOptions, channels: Int, data: String, log: (String) -> Void) throws -> PretrainedBackbone? {
        let name = weights
        guard startsFromWeights else { return nil }
        let isRecipeDefault = name == recipe.weights
        func refuse(_ problem: String) throws -> PretrainedBackbone? {
            guard isRecipeDefault else { throw ConfigError("backbone.weights: \(problem)") }
            log("note: the recipe's backbone weights (\(name)) are not used: \(problem); training from scratch")
            return nil
        }
        let path = FileManager.default.fileExists(atPath: name) ? name : ShippedModels.locate(name)
        guard let path else {
            return try refuse("\(name) is neither a file nor found in $PERCEPT_MODELS, ./models or the package's models folder")
        }
        let pretrained = try PretrainedBackbone(path: path)
        guard pretrained.configuration.inputChannels == channels else {
            return try refuse("\(path) is for \(pretrained.configuration.inputChannels)-channel images, \(data) holds \(channels)-channel images")
        }
        var requested = self
        requested.weights = recipe.weights
        if requested == recipe, let adopted = BackboneOptions(describing: pretrained.configuration, weights: name) {
            self = adopted
            return pretrained
        }
        let chosen = configuration(inputChannels: channels)
        guard chosen == pretrained.configuration || chosen.extends(pretrained.configuration) else {
            return try refuse("\(path) holds the backbone \(BackboneOptions(describing: pretrained.configuration, weights: name).map { "preset \($0.preset.rawValue), widths \($0.widths), stem_stride \($0.stemStride)" } ?? "\(pretrained.configuration)"), which the backbone section neither equals nor extends; set its keys to match or leave them at the recipe's")
        }
        return pretrained
    }
}

/// Single-label classification: a ResNet-8 twice as wide as the CIFAR one, with a stride-2 stem
/// so it costs no more per image than the narrow one at full resolution, 28 epochs with random
/// erasing (P 0.5), label smoothing 0.1 (chosen on a held-out split of the training images
/// within a 15-minute budget: models/README.md, fashion-classifier.h5).
public struct ClassificationConfig: TaskConfig {
    public typealias TaskHead = ClassificationHead

    /// The classifier's head (the `head` section).
    public struct HeadOptions: Configurable {
        /// How a ResNet pools its last map: `global` (average), `global_max`, or `score_max`
        /// (score every position, keep each class's maximum); a plain backbone flattens.
        public var pooling = Pooling.global
        public var loss = ClassificationLoss.crossEntropy
        /// Label smoothing of the cross-entropy target (must be 0 with the hinge loss).
        public var labelSmoothing: Float = 0.1
        public init() {}
    }

    public var backbone = BackboneOptions(preset: .resnet8, widths: [32, 64, 128], stemStride: 2)
    public var head = HeadOptions()
    public var train = TrainingOptions.recipe(epochs: 28, learningRate: 0.1, erasing: 0.5)
    public var settings = NoSettings()

    public init() {}

    public func validateTask() throws {
        try Check.that((0..<1).contains(head.labelSmoothing), "label_smoothing", "must be in [0, 1), got \(head.labelSmoothing)")
        try Check.that(head.loss == .crossEntropy || head.labelSmoothing == 0, "label_smoothing",
                       "applies to the cross-entropy loss; set label_smoothing=0 with loss=hinge")
    }

    public func headArchitecture(deepest: FeatureMapInfo, backbone: BackboneConfiguration,
                                 dataset: ImageDataset) throws -> ClassificationHead.Architecture {
        let geometry = InputGeometry(height: dataset.height, width: dataset.width)
        return .init(layers: try .standard(for: deepest, kind: backbone.kind, geometry: geometry, pooling: head.pooling,
                                           outputs: dataset.classNames.count),
                     loss: head.loss, labelSmoothing: head.labelSmoothing)
    }
}

/// Multi-label tagging of multi-item canvases: ResNet-8 of widths 32/64/128 with a stride-2 stem,
/// started from the shipped Fashion-MNIST classifier of that shape, global max pooling ("is this
/// item anywhere"), 20 epochs at peak learning rate 0.2 with a noise floor of up to 0.15, scale
/// jitter of 10% (half the rescaled canvases sampled nearest-neighbour) and half the canvases
/// sharpened, the output layer started at the tags' base rates, per-tag thresholds tuned on the
/// validation set.
public struct TaggingConfig: TaskConfig {
    public typealias TaskHead = TaggingHead

    /// The tagger's head (the `head` section).
    public struct HeadOptions: Configurable {
        /// How a ResNet pools its last map (see `ClassificationConfig.HeadOptions.pooling`).
        public var pooling = Pooling.globalMax
        /// Tune each tag's decision threshold for F1 on the validation set (with `--val`).
        public var tuneThresholds = true
        public init() {}
    }

    public var backbone = BackboneOptions(preset: .resnet8, widths: [32, 64, 128], stemStride: 2, weights: "fashion-classifier-long.h5")
    public var head = HeadOptions()
    public var train = TrainingOptions.recipe(epochs: 20, learningRate: 0.2, noise: 0.15, scale: 0.1, nearest: 0.5, sharpen: 0.5)
    public var settings = TaggingHead.Settings()

    public init() {}

    public func headArchitecture(deepest: FeatureMapInfo, backbone: BackboneConfiguration,
                                 dataset: ImageDataset) throws -> TaggingHead.Architecture {
        let geometry = InputGeometry(height: dataset.height, width: dataset.width)
        return .init(layers: try .standard(for: deepest, kind: backbone.kind, geometry: geometry, pooling: head.pooling,
                                           outputs: dataset.classNames.count))
    }

    public func validateTask() throws {
        try Check.that(train.pasting == 0, "paste", "is for classification and segmentation (a pasted item would have no tag)")
    }
}

/// Sliding-window detection on 160x160 scenes of 28-56 px items: the W1 network with unpadded
/// convolutions as a 28x28 window classifier (so dense scoring equals cropping), started from the
/// shipped W1 Fashion-MNIST classifier (OverFeat: its fully connected layers become the window
/// convolutions), trained on sampled windows, scored on a 9-level pyramid, per-class NMS at IoU
/// 0.4 and ten second looks.
public struct DetectionConfig: TaskConfig {
    public typealias TaskHead = WindowHead

    /// The window classifier (the `head` section).
    public struct HeadOptions: Configurable {
        /// Side of the square window in input pixels.
        public var window = 28
        /// Width of the hidden fully connected layer.
        public var hidden = 128
        /// The backbone map the window classifier reads (empty: the deepest).
        public var input = ""
        /// Pixels of surroundings each training crop carries on every side (a multiple of the
        /// map's stride): 0 for an unpadded backbone, whose dense scores equal bare crops'.
        public var context = 0
        public init() {}

        enum CodingKeys: String, CodingKey { case window, hidden, input, context }

        /// Configurations written before `input` and `context` existed read as the deepest map, no context.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            window = try c.decode(Int.self, forKey: .window)
            hidden = try c.decode(Int.self, forKey: .hidden)
            input = try c.decodeIfPresent(String.self, forKey: .input) ?? ""
            context = try c.decodeIfPresent(Int.self, forKey: .context) ?? 0
        }

        /// The window classifier for `backbone` (built once on one window, to see its map's side).
        func architecture(backbone: BackboneConfiguration, channels: Int, classes: Int, categoryIDs: [Int64]?) throws -> WindowHead.Architecture {
            var rng = SeededGenerator(seed: 0)
            let probe = try backbone.make(using: &rng).features(.zeros([1, channels, window, window]), through: nil)
            let names = probe.info.map(\.name)
            guard let index = input.isEmpty ? names.count - 1 : names.firstIndex(of: input) else {
                throw ConfigError("detection.head.input: the backbone has no map '\(input)' (it has \(names.joined(separator: ", ")))")
            }
            let side = probe.maps[index].shape[2]
            guard side >= 1 else { throw ModelError("a \(window)x\(window) window leaves no map for the head") }
            return .init(input: names[index], window: window, featureSide: side, hidden: hidden, classes: classes,
                         categoryIDs: categoryIDs, context: context)
        }
    }

    public var backbone = BackboneOptions(preset: .plain, widths: [32, 64], padding: 0, weights: "fashion-window-classifier.h5")
    public var head = HeadOptions()
    public var sampling = WindowSampling()
    public var train = TrainingOptions.recipe(epochs: 16, learningRate: 0.05)
    public var settings = WindowHead.Settings()

    public init() {}

    public func validateTask() throws {
        try Check.that(head.window >= 4 && head.window <= 1024, "window", "must be 4 to 1024 pixels, got \(head.window)")
        try Check.that(head.hidden >= 1 && head.hidden <= 65_536, "hidden", "must be 1 to 65536, got \(head.hidden)")
        try Check.that(head.context >= 0 && head.context <= 1024, "context", "must be 0 to 1024 pixels, got \(head.context)")
        try sampling.validate()
        try Check.that(train.scale == 0, "scale", "is not available for detection (the sampler jitters each window's scale itself)")
        // Window crops are sampled, jittered and flipped by the sampler, which neither erases nor pastes.
        try Check.that(train.erasing == 0, "erase", "is not available for detection (its windows are sampled, not loaded)")
        try Check.that(train.pasting == 0, "paste", "is for classification and segmentation (a pasted item would have no box)")
    }

    /// The window's patch on the map the head reads: the backbone run once on one window.
    public func headArchitecture(deepest: FeatureMapInfo, backbone: BackboneConfiguration,
                                 dataset: ImageDataset) throws -> WindowHead.Architecture {
        try head.architecture(backbone: backbone, channels: dataset.channels, classes: dataset.classNames.count,
                              categoryIDs: (dataset as? DetectionDataset)?.categoryIDs)
    }
}

/// Per-pixel classes of 64x64 canvases: a ResNet-8 of widths 32/64/128 with a stride-2 stem,
/// started from the shipped Fashion-MNIST classifier of that shape trained long with random
/// erasing (as FCN starts from a classifier), 3x3 class scores on its deepest map (each position
/// also reads its neighbours, as a classifier's pooling sees a whole item) upsampled to the input
/// and refined there from the image itself (borders follow brightness), the item classes' scores
/// started from the classifier's output layer, 28 epochs at peak learning rate 0.2 with half the
/// canvases getting an item of another pasted on and a noise floor of up to 0.15; predictions
/// average each image's scores with its mirror image's.
public struct SegmentationConfig: TaskConfig {
    public typealias TaskHead = SegmentationHead

    /// The score layers (the `head` section).
    public struct HeadOptions: Configurable {
        /// Finer backbone maps whose scores are fused on the way up (FCN-16s/8s), deepest first.
        public var skips: [String] = []
        /// Hidden channels of the full-resolution refinement from the image (0: none).
        public var refineWidth = 8
        /// Side of the class-score convolution on the deepest map: 1, 3, 5 or 7.
        public var classifierKernel = 3
        /// Side of the skip maps' score convolutions: 1, 3, 5 or 7.
        public var skipKernel = 1
        /// Loss weight per class, background first (empty: all 1).
        public var classWeights: [Float] = []
        /// With a classifier's backbone, start the item classes' scores from its output layer.
        public var startScores = true
        public init() {}
    }

    public var backbone = BackboneOptions(preset: .resnet8, widths: [32, 64, 128], stemStride: 2, weights: "fashion-classifier-long.h5")
    public var head = HeadOptions()
    public var train = TrainingOptions.recipe(epochs: 28, batchSize: 64, learningRate: 0.2, pasting: 0.5, noise: 0.15)
    public var settings = SegmentationHead.Settings()

    public init() {}

    public func validateTask() throws {
        for (key, side) in [("classifier_kernel", head.classifierKernel), ("skip_kernel", head.skipKernel)] {
            try Check.that([1, 3, 5, 7].contains(side), key, "must be 1, 3, 5 or 7, got \(side)")
        }
        try Check.that(head.refineWidth >= 0 && head.refineWidth <= 4096, "refine_width", "must be 0 to 4096, got \(head.refineWidth)")
        try Check.that(head.classWeights.allSatisfy { $0 >= 0 && $0.isFinite }, "class_weights", "must be non-negative numbers")
    }

    public func headArchitecture(deepest: FeatureMapInfo, backbone: BackboneConfiguration,
                                 dataset: ImageDataset) throws -> SegmentationHead.Architecture {
        let classes = dataset.classNames.count
        guard head.classWeights.isEmpty || head.classWeights.count == classes else {
            throw DatasetError(dataset.path, "has \(classes) classes, class_weights gives \(head.classWeights.count) weights")
        }
        return .init(deepest: deepest.name, skips: head.skips, refineWidth: head.refineWidth, classifierKernel: head.classifierKernel,
                     skipKernel: head.skipKernel, classes: classes, classWeights: head.classWeights.isEmpty ? nil : head.classWeights)
    }
}

extension TrainingOptions {
    /// SGD with Nesterov momentum, weight decay 5e-4, one warm-up epoch: the optimiser every
    /// task's recipe uses, with its own length and peak learning rate.
    static func recipe(epochs: Int, batchSize: Int = 128, learningRate: Float, erasing: Float = 0, pasting: Float = 0,
                       noise: Float = 0, scale: Float = 0, nearest: Float = 0, sharpen: Float = 0) -> TrainingOptions {
        var o = TrainingOptions()
        o.epochs = epochs; o.batchSize = batchSize; o.learningRate = learningRate
        o.erasing = erasing; o.pasting = pasting; o.noise = noise; o.scale = scale; o.nearest = nearest; o.sharpen = sharpen
        return o
    }
}
