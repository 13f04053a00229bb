import PerceptCore
import PerceptDatasets
import Foundation

/// How joint training draws its batches from the tasks' datasets.
public enum JointSampling: String, Codable, Sendable, CaseIterable {
    /// Every step takes one batch of every task and sums their weighted losses; an epoch ends
    /// when the task with the most batches has shown each of them once, the others starting over
    /// as they run out (PyTorch Lightning's `max_size_cycle`).
    case all
    /// Every step takes one task's batch, the tasks in turn; an epoch is as many steps as the
    /// tasks have batches together, a task that runs out starting over.
    case roundRobin = "round_robin"
}

/// One task of a multi-task training run: its head, how it decodes, its share of each step.
public struct JointTask<HeadOptions: Configurable, Settings: HeadSettings>: Configurable {
    /// The head's loss is multiplied by this in the sum every step minimises.
    public var weight: Float = 1
    /// Images (windows, for detection) per batch of this task; 0: `train.batch`.
    public var batch = 0
    /// Probability of random erasing on this task's images (classification and segmentation).
    public var erase: Float = 0
    /// Probability of pasting another item onto this task's images (classification and segmentation).
    public var paste: Float = 0
    public var head: HeadOptions
    public var settings: Settings

    public init(head: HeadOptions, settings: Settings, weight: Float = 1, batch: Int = 0, erase: Float = 0, paste: Float = 0) {
        self.head = head; self.settings = settings; self.weight = weight; self.batch = batch; self.erase = erase; self.paste = paste
    }

    public func validate() throws {
        try Check.that(weight >= 0 && weight.isFinite && weight <= 1000, "weight", "must be 0 to 1000, got \(weight)")
        try Check.that(batch >= 0 && batch <= 65_536, "batch", "must be 0 (train.batch) to 65536, got \(batch)")
        for (key, probability) in [("erase", erase), ("paste", paste)] {
            try Check.that(probability >= 0 && probability <= 1, key, "must be a probability in [0, 1], got \(probability)")
        }
        try head.validate()
        try settings.validate()
    }
}

/// Everything a multi-task training run reads (`percept multi train`), in typed sections whose
/// defaults are the tuned recipe: the shared backbone and where it starts, the optimisation, how
/// steps draw batches, and per task its head, settings, loss weight and batch. A task's section
/// counts only when the run is given that task's data.
public struct MultiTaskConfig: Configurable {
    public var backbone = BackboneOptions(preset: .resnet8, widths: [32, 64, 128], stemStride: 2, weights: "fashion-classifier-long.h5")
    /// Optimisation: epochs, learning rate and schedule, seed. `batch` is every task's batch
    /// unless the task sets its own; erasing and pasting are per task.
    public var train = MultiTaskConfig.recipeTraining
    public var sampling = JointSampling.all
    /// The backbone's batch norm normalises with its running statistics in training too (the
    /// pretrained backbone's, kept): the tasks' images differ (single items, canvases, window
    /// crops), and batch statistics of one task's batch would not be what inference, over any
    /// image, normalises with.
    public var frozenBatchNorm = true
    public var classify = JointTask(head: ClassificationConfig().head, settings: NoSettings(), batch: 64, erase: 0.5)
    public var tag = JointTask(head: TaggingConfig().head, settings: TaggingHead.Settings(), batch: 64)
    public var detect = JointDetection()
    public var segment = JointTask(head: SegmentationConfig().head, settings: SegmentationHead.Settings(), weight: 2, batch: 32, paste: 0.5)

    /// The detection task: its loss weight, batch of windows, window classifier, sampler and decoding.
    public struct JointDetection: Configurable {
        public var weight: Float = 1
        public var batch = 128
        public var head = MultiTaskConfig.windowHead
        public var sampling = WindowSampling()
        public var settings = MultiTaskConfig.windowSettings

        public init() {}

        public func validate() throws {
            try Check.that(weight >= 0 && weight.isFinite && weight <= 1000, "detect.weight", "must be 0 to 1000, got \(weight)")
            try Check.that(batch >= 0 && batch <= 65_536, "detect.batch", "must be 0 (train.batch) to 65536, got \(batch)")
            var config = DetectionConfig()
            config.head = head; config.sampling = sampling; config.settings = settings
            try config.validateTask()
            try settings.validate()
        }
    }

    /// The window classifier on the shared ResNet: it reads stage 2 (stride 4, as the W1
    /// detector's map) and its training crops carry 8 px of surroundings, as the dense pass sees
    /// them. Its 7x7 patch of 64 channels feeds a hidden layer of 64 (the single-task detector's
    /// 128 over a 5x5 patch): the dense pyramid costs half what 128 would (models/README.md).
    static var windowHead: DetectionConfig.HeadOptions {
        var head = DetectionConfig.HeadOptions()
        head.input = "stage2"
        head.context = 8
        head.hidden = 64
        return head
    }

    /// The detector's decoding: second looks from the pyramid's maps (no backbone pass per look,
    /// so no mirrored views), otherwise the single-task detector's settings.
    static var windowSettings: WindowHead.Settings {
        var settings = WindowHead.Settings()
        settings.looksFromFeatures = true
        settings.flipAverage = false
        return settings
    }

    static var recipeTraining: TrainingOptions {
        var o = TrainingOptions()
        o.epochs = 5; o.batchSize = 64; o.learningRate = 0.05; o.backboneLearningRateScale = 0.2
        return o
    }

    public init() {}

    enum CodingKeys: String, CodingKey { case backbone, train, sampling, frozenBatchNorm = "frozenBn", classify, tag, detect, segment }

    public func validate() throws {
        try backbone.validate()
        try train.validate()
        try Check.that(train.erasing == 0 && train.pasting == 0, "train.erase",
                       "is per task in a multi-task run: set classify.erase, segment.paste and so on")
        try classify.validate()
        try tag.validate()
        // Each head's own checks, as its single-task configuration makes them.
        var classification = ClassificationConfig(); classification.head = classify.head
        try classification.validateTask()
        var segmentation = SegmentationConfig(); segmentation.head = segment.head
        try segmentation.validateTask()
        try detect.validate()
        try segment.validate()
    }

    /// The batch of a task whose section says `batch`.
    func batchSize(_ batch: Int) -> Int { batch > 0 ? batch : train.batchSize }
}
