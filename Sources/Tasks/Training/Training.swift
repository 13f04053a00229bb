import PerceptCore
import PerceptDatasets
import Foundation

/// Drives epochs of mini-batch training: learning-rate schedule, progress lines, validation,
/// best-model selection and resumable checkpoints. A plain loop, no callbacks.
public final class Trainer {
    public let model: any TrainableModel
    public let train: any BatchSource
    public let validation: DataLoader?
    public let options: TrainingOptions
    /// Where the best (or, without validation, the final) model goes.
    public let outputPath: String
    /// The resumable checkpoint written after every epoch.
    public var checkpointPath: String { Trainer.checkpointPath(for: outputPath) }

    /// MODEL.last.h5 beside MODEL.h5.
    public static func checkpointPath(for output: String) -> String {
        (output.hasSuffix(".h5") ? String(output.dropLast(3)) : output) + ".last.h5"
    }
    /// Written into every model file and checkpoint of the run (the resolved configuration).
    public var fileMetadata: [String: String] = [:]
    /// Receives progress lines.
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    public init(model: any TrainableModel, train: any BatchSource, validation: DataLoader?,
                options: TrainingOptions, outputPath: String) {
        self.model = model; self.train = train
        self.validation = validation; self.options = options; self.outputPath = outputPath
    }

    /// Trains from scratch, or from `resume` (a `.last.h5` checkpoint) exactly where it stopped.
    @discardableResult
    public func run(resume: String? = nil) throws -> Evaluation? {
        let optimizer = options.makeOptimizer()
        var startEpoch = 0
        var best = -Double.infinity
        if let resume {
            let checkpoint = try ModelCheckpoint.read(path: resume)
            guard model.matchesArchitecture(of: checkpoint) else {
                throw DatasetError(resume, "checkpoint architecture differs from the model being trained")
            }
            try checkpoint.load(into: model.module, path: resume)
            guard let state = checkpoint.optimizer, state.name == optimizer.name else {
                throw DatasetError(resume, "checkpoint holds no \(optimizer.name) optimizer state")
            }
            do { try optimizer.loadState(state.tensors, step: checkpoint.step, of: model.module) } catch {
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
        let schedule = LearningRateSchedule(base: options.learningRate,
                                            shape: .cosine(totalSteps: totalSteps, minimum: 0),
                                            warmupSteps: min(options.warmupEpochs * stepsPerEpoch, totalSteps / 2))
        var last: Evaluation?
        let runStart = Date()
        var imagesDone = 0
        for epoch in startEpoch..<options.epochs {
            model.module.setMode(.training)
            let epochStart = Date()
            var lossSum = 0.0, seen = 0, lastReport = Date.distantPast
            let batches = train.stream(epoch: epoch)
            var step = 0
            while let batch = try batches.nextBatch() {
                optimizer.learningRate = schedule(optimizer.step)
                let loss = model.loss(batch)
                let value = loss.scalar
                guard value.isFinite else {
                    throw ModelError("loss became \(value) at epoch \(epoch + 1), step \(step + 1): lower --lr")
                }
                optimizer.update(model.module, along: loss.backward())
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
                let evaluation = try model.evaluate(validation)
                last = evaluation
                line += "  val " + evaluation.summary
                if evaluation.value > best { best = evaluation.value; improved = true; line += "  (best)" }
            }
            log(line)
            if improved { try model.save(to: outputPath, optimizer: nil, epoch: epoch + 1, step: optimizer.step, metadata: fileMetadata) }
            try model.save(to: checkpointPath, optimizer: optimizer, epoch: epoch + 1, step: optimizer.step,
                           metadata: fileMetadata.merging(["best_metric": best.isFinite ? String(best) : "", "training_options": options.json()]) { $1 })
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
