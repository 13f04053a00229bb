import PerceptCore
import PerceptDatasets
import Foundation

/// The optimizers training can use.
public enum OptimizerKind: String, Codable, Sendable, CaseIterable {
    /// SGD with Nesterov momentum.
    case sgd
    /// Adam with L2 weight decay added to the gradient.
    case adam
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    case adamw
}

/// Hyper-parameters of one training run (the `train` section of a task's configuration). Each
/// task's configuration sets the values of its tuned recipe; these are the values every task
/// shares.
public struct TrainingOptions: Configurable {
    public var epochs = 10
    public var batchSize = 128
    public var optimizer = OptimizerKind.sgd
    /// Peak learning rate of the cosine schedule (reached after the warm-up). Tuned per task
    /// for SGD; Adam and AdamW want about 0.002.
    public var learningRate: Float = 0.1
    public var momentum: Float = 0.9
    /// L2 weight decay (not applied to biases and batch-norm scales).
    public var weightDecay: Float = 5e-4
    /// Epochs of linear warm-up before the cosine decay.
    public var warmupEpochs = 1
    /// Random crop and horizontal flip.
    public var augment = true
    /// Probability of random erasing on top of the crop and flip; see `Augmentation.erasing`.
    public var erasing: Float = 0
    /// Probability of pasting another item onto each image (classification and segmentation);
    /// see `Augmentation.pasting`.
    public var pasting: Float = 0
    /// Largest level (a fraction of 255) of the background noise raised under each training
    /// image, so a model holds up on noisier backgrounds than its data's; see `NoiseFloor`.
    public var noise: Float = 0
    /// Largest relative change of each training image's size, about its centre; see
    /// `Augmentation.scale`. Detection jitters its windows' scale itself.
    public var scale: Float = 0
    /// Fraction of resampled training images (rescaled ones, detection's window crops) sampled
    /// nearest-neighbour instead of bilinearly: items as a sharper filter scales them.
    public var nearest: Float = 0
    /// Probability of sharpening each training image (detection: window crop); see `Sharpening`.
    public var sharpen: Float = 0
    /// The same seed and thread count give the same model.
    public var seed: UInt64 = 0
    /// The backbone's learning rate as a fraction of the head's.
    public var backboneLearningRateScale: Float = 1
    /// Stop after this many epochs without a better validation metric (0: never).
    public var patience = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case epochs, batchSize = "batch", optimizer, learningRate = "lr", momentum, weightDecay, warmupEpochs, augment,
             erasing = "erase", pasting = "paste", noise, scale, nearest, sharpen, seed, backboneLearningRateScale = "backboneLrScale", patience
    }

    public func validate() throws {
        try Check.that(epochs >= 1 && epochs <= 100_000, "epochs", "must be 1 to 100000, got \(epochs)")
        try Check.that(batchSize >= 1 && batchSize <= 65_536, "batch", "must be 1 to 65536, got \(batchSize)")
        try Check.that(learningRate > 0 && learningRate.isFinite && learningRate <= 100, "lr", "must be positive (at most 100), got \(learningRate)")
        try Check.that(momentum >= 0 && momentum < 1, "momentum", "must be in [0, 1), got \(momentum)")
        try Check.that(weightDecay >= 0 && weightDecay <= 1, "weight_decay", "must be in [0, 1], got \(weightDecay)")
        try Check.that(warmupEpochs >= 0, "warmup_epochs", "must not be negative, got \(warmupEpochs)")
        for (key, probability) in [("erase", erasing), ("paste", pasting), ("sharpen", sharpen)] {
            try Check.that(probability >= 0 && probability <= 1, key, "must be a probability in [0, 1], got \(probability)")
        }
        try Check.that(noise >= 0 && noise <= 1, "noise", "must be a level in [0, 1] (a fraction of 255), got \(noise)")
        try Check.that(scale >= 0 && scale < 1, "scale", "must be in [0, 1) (a relative change of size), got \(scale)")
        try Check.that(nearest >= 0 && nearest <= 1, "nearest", "must be a fraction in [0, 1], got \(nearest)")
        for (key, value) in [("erase", erasing), ("paste", pasting), ("noise", noise), ("scale", scale), ("nearest", nearest), ("sharpen", sharpen)] {
            try Check.that(augment || value == 0, key, "is part of the augmentation, which augment=false turns off; set \(key)=0 too")
        }
        try Check.that(backboneLearningRateScale >= 0 && backboneLearningRateScale <= 10, "backbone_lr_scale", "must be 0 to 10, got \(backboneLearningRateScale)")
        try Check.that(patience >= 0, "patience", "must be 0 (never stop early) or more epochs, got \(patience)")
    }

    /// The data augmentation these options ask for on images `height` pixels high (crop padding
    /// 1/16 of it, at least 2), with the erasing and pasting probabilities given (a multi-task
    /// run sets them per task): `.none` without `augment`.
    func augmentation(height: Int, erasing: Float, pasting: Float) -> Augmentation {
        guard augment else { return .none }
        return Augmentation(cropPadding: max(2, height / 16), horizontalFlip: true, erasing: erasing, pasting: pasting,
                            noise: noise, scale: scale, nearest: nearest, sharpen: sharpen)
    }

    /// These options as JSON (stored in checkpoints so a resumed run can be checked against them).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    func makeOptimizer() -> any Optimizer {
        let made: SlotOptimizer & Optimizer
        switch optimizer {
        case .sgd: made = SGD(learningRate: learningRate, momentum: momentum, nesterov: true, weightDecay: weightDecay)
        case .adam: made = Adam(learningRate: learningRate, weightDecay: weightDecay)
        case .adamw: made = Adam.adamW(learningRate: learningRate, weightDecay: weightDecay)
        }
        if backboneLearningRateScale != 1 { made.rateScales = [(ModelPath.backbone, backboneLearningRateScale)] }
        return made
    }
}
