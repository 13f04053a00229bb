import Core
import Datasets
import Foundation

/// Hyper-parameters of one training run. The defaults are the tuned recipe.
public struct TrainingOptions: Codable, Equatable, Sendable {
    public var epochs = 10
    public var batchSize = 128
    /// "sgd" (momentum, Nesterov), "adam" or "adamw".
    public var optimizer = "sgd"
    /// Peak learning rate; nil picks the optimizer's tuned default (SGD 0.1, Adam 0.002).
    public var learningRate: Float?
    public var momentum: Float = 0.9
    public var weightDecay: Float = 5e-4
    /// Epochs of linear warm-up before the cosine decay.
    public var warmupEpochs = 1
    public var augment = true
    public var seed: UInt64 = 0
    public init() {}

    /// These options as JSON (stored in checkpoints so a resumed run can be checked against them).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    public var peakLearningRate: Float { learningRate ?? (optimizer == "sgd" ? 0.1 : 0.002) }

    func makeOptimizer() throws -> any Optimizer {
        switch optimizer {
        case "sgd": return SGD(learningRate: peakLearningRate, momentum: momentum, nesterov: true, weightDecay: weightDecay)
        case "adam": return Adam(learningRate: peakLearningRate, weightDecay: weightDecay)
        case "adamw": return Adam.adamW(learningRate: peakLearningRate, weightDecay: weightDecay)
        default: throw ModelError("unknown optimizer '\(optimizer)' (known: sgd, adam, adamw)")
        }
    }
}

/// A validation result: the number that picks the best model, and a line for people.
public struct Evaluation: Sendable {
    public var metricName: String
    public var value: Double
    public var summary: String
    /// Every metric by name, for JSON output.
    public var values: [String: Double]
}

/// What a task contributes to training: its loss and its validation metric.
public protocol TrainingObjective {
    func loss(_ logits: Tensor, _ batch: Batch) -> Tensor
    func evaluate(_ model: Model, _ loader: DataLoader) throws -> Evaluation
}

/// Drives epochs of mini-batch training: learning-rate schedule, progress lines, validation,
/// best-model selection and resumable checkpoints. A plain loop, no callbacks.
public final class Trainer {
    public let model: Model
    public let objective: any TrainingObjective
    public let train: DataLoader
    public let validation: DataLoader?
    public let options: TrainingOptions
    /// Where the best (or, without validation, the final) model goes.
    public let outputPath: String
    /// The resumable checkpoint written after every epoch.
    public var checkpointPath: String {
        (outputPath.hasSuffix(".h5") ? String(outputPath.dropLast(3)) : outputPath) + ".last.h5"
    }
    /// Receives progress lines.
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    public init(model: Model, objective: any TrainingObjective, train: DataLoader, validation: DataLoader?,
                options: TrainingOptions, outputPath: String) {
        self.model = model; self.objective = objective; self.train = train
        self.validation = validation; self.options = options; self.outputPath = outputPath
    }

    /// Trains from scratch, or from `resume` (a `.last.h5` checkpoint) exactly where it stopped.
    @discardableResult
    public func run(resume: String? = nil) throws -> Evaluation? {
        let optimizer = try options.makeOptimizer()
        var startEpoch = 0
        var best = -Double.infinity
        if let resume {
            let checkpoint = try ModelCheckpoint.read(path: resume)
            guard checkpoint.architecture == model.configuration.json() else {
                throw DatasetError(resume, "checkpoint architecture differs from the model being trained")
            }
            try checkpoint.load(into: model, path: resume)
            guard let state = checkpoint.optimizer, state.name == optimizer.name else {
                throw DatasetError(resume, "checkpoint holds no \(optimizer.name) optimizer state")
            }
            do { try optimizer.loadState(state.tensors, step: checkpoint.step, of: model) } catch {
                throw DatasetError(resume, "\(error)")
            }
            if let stored = checkpoint.metadata["training_options"],
               let previous = try? JSONDecoder().decode(TrainingOptions.self, from: Data(stored.utf8)), previous != options {
                throw DatasetError(resume, "was trained with other settings (\(stored)); resume with the same options")
            }
            startEpoch = checkpoint.epoch
            best = Double(checkpoint.metadata["best_metric"] ?? "") ?? -Double.infinity
            log("resuming from \(resume) after epoch \(startEpoch), step \(checkpoint.step)")
        }
        let stepsPerEpoch = train.batchCount
        let totalSteps = stepsPerEpoch * options.epochs
        let schedule = LearningRateSchedule(base: options.peakLearningRate,
                                            shape: .cosine(totalSteps: totalSteps, minimum: 0),
                                            warmupSteps: min(options.warmupEpochs * stepsPerEpoch, totalSteps / 2))
        var last: Evaluation?
        let runStart = Date()
        var imagesDone = 0
        for epoch in startEpoch..<options.epochs {
            model.setMode(.training)
            let epochStart = Date()
            var lossSum = 0.0, seen = 0, lastReport = Date.distantPast
            let batches = train.batches(epoch: epoch)
            var step = 0
            while let batch = try batches.nextBatch() {
                optimizer.learningRate = schedule(optimizer.step)
                let loss = objective.loss(model(batch.images), batch)
                let value = loss.scalar
                guard value.isFinite else {
                    throw ModelError("loss became \(value) at epoch \(epoch + 1), step \(step + 1): lower --lr")
                }
                optimizer.update(model, along: loss.backward())
                lossSum += Double(value) * Double(batch.count)
                seen += batch.count
                imagesDone += batch.count
                step += 1
                if Date().timeIntervalSince(lastReport) >= 2 || step == stepsPerEpoch {
                    lastReport = Date()
                    let rate = Double(imagesDone) / Date().timeIntervalSince(runStart)
                    let remaining = Double((options.epochs - epoch) * stepsPerEpoch - step) * Double(train.batchSize) / max(rate, 1)
                    log(String(format: "epoch %d/%d  step %d/%d  loss %.4f  lr %.4g  %.0f img/s  ETA ",
                               epoch + 1, options.epochs, step, stepsPerEpoch, lossSum / Double(max(seen, 1)),
                               optimizer.learningRate, rate) + formatDuration(remaining))
                }
            }
            var line = String(format: "epoch %d/%d done in %.0fs  train loss %.4f", epoch + 1, options.epochs,
                              Date().timeIntervalSince(epochStart), lossSum / Double(max(seen, 1)))
            var improved = validation == nil
            if let validation {
                let evaluation = try objective.evaluate(model, validation)
                last = evaluation
                line += "  val " + evaluation.summary
                if evaluation.value > best { best = evaluation.value; improved = true; line += "  (best)" }
            }
            log(line)
            if improved { try model.save(to: outputPath, epoch: epoch + 1, step: optimizer.step) }
            try model.save(to: checkpointPath, optimizer: optimizer, epoch: epoch + 1, step: optimizer.step,
                           metadata: ["best_metric": best.isFinite ? String(best) : "", "training_options": options.json()])
        }
        let epochsRun = options.epochs - startEpoch
        var summary = "trained \(epochsRun) epoch\(epochsRun == 1 ? "" : "s") in " + formatDuration(Date().timeIntervalSince(runStart))
        if let last, best.isFinite { summary += String(format: "; best val %@ %.4f", last.metricName, best) }
        log(summary)
        return last
    }
}

/// "1h02m", "4m12s", "9s".
public func formatDuration(_ seconds: Double) -> String {
    let s = Int(max(seconds, 0).rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}

/// Softmax classification: cross-entropy (with label smoothing) or multi-class hinge; accuracy.
extension Model {
    /// Switches to inference and calls `body` with each batch of `loader` (epoch 0 order) and
    /// the model's logits for it. The model stays in inference mode; `Trainer` switches back to
    /// training at the start of every epoch.
    public func forEachInference(over loader: DataLoader, _ body: (Batch, Tensor) throws -> Void) throws {
        setMode(.inference)
        let batches = loader.batches(epoch: 0)
        while let batch = try batches.nextBatch() { try body(batch, self(batch.images)) }
    }
}

public struct ClassificationObjective: TrainingObjective {
    public let classes: Int
    public let hinge: Bool
    public let labelSmoothing: Float
    public init(classes: Int, hinge: Bool = false, labelSmoothing: Float = 0) {
        self.classes = classes; self.hinge = hinge; self.labelSmoothing = labelSmoothing
    }

    public func loss(_ logits: Tensor, _ batch: Batch) -> Tensor {
        hinge ? multiClassHingeLoss(logits: logits, labels: batch.labels)
            : softmaxCrossEntropy(logits: logits, labels: batch.labels, labelSmoothing: labelSmoothing)
    }

    public func evaluate(_ model: Model, _ loader: DataLoader) throws -> Evaluation {
        let metrics = try ClassificationMetrics.measure(model, loader)
        return Evaluation(metricName: "accuracy", value: metrics.accuracy,
                          summary: String(format: "accuracy %.4f  top-%d %.4f", metrics.accuracy, metrics.topK, metrics.topKAccuracy),
                          values: ["accuracy": metrics.accuracy, "top_k_accuracy": metrics.topKAccuracy, "macro_f1": metrics.macroF1])
    }
}

extension ClassificationMetrics {
    /// Runs `model` over every batch of `loader` in inference mode.
    public static func measure(_ model: Model, _ loader: DataLoader) throws -> ClassificationMetrics {
        var metrics = ClassificationMetrics(classes: model.configuration.head.outputs, topK: 5)
        try model.forEachInference(over: loader) { batch, logits in
            metrics.add(scores: UnsafeBufferPointer(start: logits.pointer, count: logits.count), labels: batch.labels)
        }
        return metrics
    }
}

/// Independent sigmoids: binary cross-entropy; mean average precision, micro-F1.
public struct TaggingObjective: TrainingObjective {
    public let tags: Int
    public init(tags: Int) { self.tags = tags }

    public func loss(_ logits: Tensor, _ batch: Batch) -> Tensor {
        binaryCrossEntropyWithLogits(logits: logits, targets: batch.tags!)
    }

    public func evaluate(_ model: Model, _ loader: DataLoader) throws -> Evaluation {
        let metrics = try TaggingMetrics.measure(model, loader)
        let thresholds = model.configuration.thresholds ?? Array(repeating: 0.5, count: tags)
        let map = metrics.meanAveragePrecision, micro = metrics.microF1(thresholds: thresholds)
        return Evaluation(metricName: "mAP", value: map,
                          summary: String(format: "mAP %.4f  micro-F1 %.4f", map, micro),
                          values: ["mAP": map, "micro_f1": micro, "macro_f1": metrics.macroF1(thresholds: thresholds),
                                   "example_f1": metrics.exampleF1(thresholds: thresholds)])
    }
}

extension TaggingMetrics {
    /// Runs `model` over every batch of `loader` in inference mode, collecting probabilities.
    public static func measure(_ model: Model, _ loader: DataLoader) throws -> TaggingMetrics {
        var metrics = TaggingMetrics(tags: model.configuration.head.outputs)
        try model.forEachInference(over: loader) { batch, logits in
            let probabilities = logits.sigmoid()
            let targets = batch.tags!
            metrics.add(probabilities: UnsafeBufferPointer(start: probabilities.pointer, count: probabilities.count),
                        targets: UnsafeBufferPointer(start: targets.pointer, count: targets.count))
        }
        return metrics
    }
}
