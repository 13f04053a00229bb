import PerceptCore
import PerceptDatasets
import Foundation

/// Drives epochs of mini-batch training: learning-rate schedule, progress lines, validation,
/// best-model selection, early stopping and resumable checkpoints, and (with `report`) a row of
/// results per epoch. A plain loop, no callbacks.
///
/// Data-parallel (under `mpirun`, `Distributed`): every rank runs this loop on its shard of
/// each global batch; a step's forward and backward pass run synchronised (batch norm and loss
/// denominators over the global batch), then one fused allreduce sums the gradients with the
/// step's loss, image count and stop flag, so every rank applies the same update. Rank 0 alone
/// logs, validates and writes files; its decisions (early stopping) are broadcast.
public final class Trainer {
    public let model: any TrainableModel
    public let train: any BatchSource
    public let validation: DataLoader?
    /// Validates after each epoch instead of `model.evaluate(validation)` (a multi-task model's
    /// heads, each on its own data).
    public var validator: (() throws -> Evaluation)?
    public let options: TrainingOptions
    /// Where the best (or, without validation, the final) model goes.
    public let outputPath: String
    /// The resumable checkpoint written after every epoch (MODEL.last.h5 beside the output).
    public var checkpointPath: String
    /// More places for the best model and the checkpoint (a run folder's weights/best.h5 and
    /// weights/last.h5).
    public var bestCopies: [String] = [], checkpointCopies: [String] = []

    /// MODEL.last.h5 beside MODEL.h5.
    public static func checkpointPath(for output: String) -> String {
        (output.hasSuffix(".h5") ? String(output.dropLast(3)) : output) + ".last.h5"
    }
    /// Written into every model file and checkpoint of the run (the resolved configuration).
    public var fileMetadata: [String: String] = [:]
    /// Receives progress lines.
    public var log: (String) -> Void = progressLog
    /// Stop after this many epochs without a better validation metric (nil or 0: never).
    public var patience: Int?
    /// Asked between steps; true ends the run at once (`TrainingInterrupted`), the last
    /// checkpoint as it was.
    public var shouldStop: () -> Bool = { false }
    /// Receives each finished epoch's results (the run folder's CSV, events and plots).
    public var report: ((EpochResult) throws -> Void)?

    /// One finished epoch, as `results.csv` records it.
    public struct EpochResult {
        public var epoch: Int
        /// Training seconds so far (across resumed runs).
        public var time: Double
        public var learningRate: Double
        public var loss: Double
        public var evaluation: Evaluation?

        /// The row: epoch, time, lr, train/loss, then val/KEY for each validation metric.
        public var row: [(column: String, value: Double)] {
            var row: [(column: String, value: Double)] = [("epoch", Double(epoch)), ("time", time), ("lr", learningRate), ("train/loss", loss)]
            for metric in evaluation?.metrics ?? [] {
                if case .metric(let value) = metric.value { row.append(("val/" + metric.key, value)) }
            }
            return row
        }
    }

    public init(model: any TrainableModel, train: any BatchSource, validation: DataLoader?,
                options: TrainingOptions, outputPath: String) {
        self.model = model; self.train = train
        self.validation = validation; self.options = options; self.outputPath = outputPath
        checkpointPath = Trainer.checkpointPath(for: outputPath)
    }

    /// Trains from scratch, or from `resume` (a checkpoint) exactly where it stopped; a resumed
    /// run may have more `epochs` than the checkpoint's run (it is extended).
    @discardableResult
    public func run(resume: String? = nil) throws -> Evaluation? {
        let optimizer = options.makeOptimizer()
        var startEpoch = 0, bestEpoch = 0
        var best = -Double.infinity
        var elapsed = 0.0
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
               var previous = try? JSONDecoder().decode(TrainingOptions.self, from: Data(stored.utf8)) {
                previous.epochs = options.epochs   // more epochs extend the run
                if previous != options {
                    throw DatasetError(resume, "was trained with other settings (\(stored)); resume with the same options")
                }
            }
            startEpoch = checkpoint.epoch
            guard startEpoch < options.epochs else {
                throw DatasetError(resume, "finished its \(startEpoch) epochs: nothing to train; give more epochs (--epochs \(startEpoch + 10), say) to extend it")
            }
            best = Double(checkpoint.metadata["best_metric"] ?? "") ?? -Double.infinity
            bestEpoch = Int(checkpoint.metadata["best_epoch"] ?? "") ?? startEpoch
            elapsed = Double(checkpoint.metadata["training_seconds"] ?? "") ?? 0
            log("resuming from \(resume) after epoch \(startEpoch), step \(checkpoint.step)")
        }
        // Every rank starts from rank 0's weights and statistics (the same seed makes the same
        // ones; a resumed run's ranks read the same checkpoint bytes).
        Distributed.shareState(of: model.module)
        let reducer = GradientReducer(model.module)
        let stepsPerEpoch = train.batchCount
        let totalSteps = stepsPerEpoch * options.epochs
        let schedule = LearningRateSchedule(base: options.learningRate,
                                            shape: .cosine(totalSteps: totalSteps, minimum: 0),
                                            warmupSteps: min(options.warmupEpochs * stepsPerEpoch, totalSteps / 2))
        var last: Evaluation?
        let runStart = Date()
        var imagesDone = 0, epochsRun = 0
        for epoch in startEpoch..<options.epochs {
            model.module.setMode(.training)
            let epochStart = Date()
            var lossSum = 0.0, seen = 0, lastReport = Date.distantPast
            let batches = train.stream(epoch: epoch)
            var step = 0
            while let batch = try batches.nextBatch() {
                let stop = shouldStop()
                if stop && !Distributed.isParallel { throw interruption(epoch: epoch, startEpoch: startEpoch, resume: resume) }
                optimizer.learningRate = schedule(optimizer.step)
                // A rank's loss is its share of the global batch's mean loss (losses divide by
                // the global count): the shares and their gradients sum to the global ones.
                let (share, localGradients) = Distributed.synchronisedStep { () -> (Float, Gradients) in
                    let loss = model.loss(batch)
                    return (loss.scalar, loss.backward())
                }
                let (gradients, sums) = reducer.reduce(localGradients, scalars: [Double(share), Double(batch.count), stop ? 1 : 0])
                let value = sums[0], count = Int(sums[1].rounded())
                if sums[2] > 0 { throw interruption(epoch: epoch, startEpoch: startEpoch, resume: resume) }
                guard value.isFinite else {
                    throw ModelError("loss became \(value) at epoch \(epoch + 1), step \(step + 1): lower --lr")
                }
                optimizer.update(model.module, along: gradients)
                lossSum += value * Double(count)
                seen += count
                imagesDone += count
                step += 1
                if Date().timeIntervalSince(lastReport) >= 2 || step == stepsPerEpoch {
                    lastReport = Date()
                    let rate = Double(imagesDone) / Date().timeIntervalSince(runStart)
                    let remaining = Double((options.epochs - epoch) * stepsPerEpoch - step) * Double(train.batchSize) / max(rate, 1)
                    log(String(format: "epoch %d/%d  step %d/%d  loss %.4f%@  lr %.4g  %.0f img/s  ETA ",
                               epoch + 1, options.epochs, step, stepsPerEpoch, lossSum / Double(max(seen, 1)),
                               model.takeProgressNote(), optimizer.learningRate, rate) + formatDuration(remaining)
                        + (Distributed.isParallel ? String(format: "  allreduce %.1f ms/step", reducer.millisecondsPerStep) : ""))
                }
            }
            let trainLoss = lossSum / Double(max(seen, 1))
            var line = String(format: "epoch %d/%d done in %.0fs  train loss %.4f", epoch + 1, options.epochs,
                              Date().timeIntervalSince(epochStart), trainLoss)
            // Only rank 0 validates, saves and records; the others wait at the next collective.
            let validate = Distributed.isMain ? validator ?? validation.map { loader in { try self.model.evaluate(loader) } } : nil
            var improved = validate == nil
            var evaluation: Evaluation?
            if let validate {
                evaluation = try validate()
                last = evaluation
                line += "  val " + evaluation!.summary
                if evaluation!.value > best { best = evaluation!.value; bestEpoch = epoch + 1; improved = true; line += "  (best)" }
            }
            log(line)
            elapsed += Date().timeIntervalSince(epochStart)
            epochsRun += 1
            if improved && Distributed.isMain {
                for path in [outputPath] + bestCopies {
                    try model.save(to: path, optimizer: nil, epoch: epoch + 1, step: optimizer.step, metadata: fileMetadata)
                }
            }
            // The epoch's results before its checkpoint: a run killed between the two leaves a row
            // past its checkpoint, which the resumed run drops, never a checkpoint without its row.
            if Distributed.isMain { try report?(EpochResult(epoch: epoch + 1, time: elapsed, learningRate: Double(optimizer.learningRate), loss: trainLoss,
                                    evaluation: evaluation)) }
            for path in [checkpointPath] + checkpointCopies where Distributed.isMain {
                try model.save(to: path, optimizer: optimizer, epoch: epoch + 1, step: optimizer.step,
                               metadata: fileMetadata.merging(["best_metric": best.isFinite ? String(best) : "", "best_epoch": String(bestEpoch),
                                                               "training_seconds": String(elapsed), "training_options": options.json()]) { $1 })
            }
            let patience = self.patience ?? 0
            if Distributed.shared(patience > 0 && validate != nil && epoch + 1 - bestEpoch >= patience && epoch + 1 < options.epochs) {
                log("early stop: no better val \(evaluation?.metricName ?? "metric") for \(patience) epochs (the best was epoch \(bestEpoch))")
                break
            }
        }
        var summary = "trained \(epochsRun) epoch\(epochsRun == 1 ? "" : "s") in " + formatDuration(Date().timeIntervalSince(runStart))
        if Distributed.isParallel {
            summary += String(format: " on %d ranks (allreduce of %d floats: %.1f ms/step)", Distributed.size, reducer.elementCount,
                              reducer.millisecondsPerStep)
        }
        if let last, best.isFinite { summary += String(format: "; best val %@ %.4f at epoch %d", last.metricName, best, bestEpoch) }
        log(summary)
        return last
    }

    /// The interruption of epoch `epoch` (0-based): its checkpoint is the last finished epoch's.
    private func interruption(epoch: Int, startEpoch: Int, resume: String?) -> TrainingInterrupted {
        TrainingInterrupted(epoch: epoch + 1, checkpoint: epoch > startEpoch || resume != nil ? checkpointPath : nil, completedEpochs: epoch)
    }
}

/// Writes a progress line to stderr on rank 0 (or the only process); other ranks stay quiet.
public func progressLog(_ line: String) {
    guard Distributed.isMain else { return }
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

extension Trainer {
    /// Runs as a `percept ... train` command does: every file written stores `config` (the
    /// resolved configuration, YAML, metadata `config`) and the version; with a run folder, the
    /// best model and the checkpoint are copied there (when `outputPath` is not the folder's
    /// own) and each epoch's results are recorded; an interruption names the checkpoint that
    /// holds the last finished epoch (this run's, or before it wrote any, the one it resumed).
    public func run(storing config: String, runFolder: RunFolder?, resume: String?) throws {
        fileMetadata[TrainingRunMetadata.config] = config
        fileMetadata["percept_version"] = PerceptVersion.current
        let resumedEpoch = try resume.map { try ModelCheckpoint.read(path: $0).epoch }
        if let runFolder, Distributed.isMain {
            fileMetadata["run_folder"] = runFolder.path
            if outputPath != runFolder.bestPath { bestCopies = [runFolder.bestPath]; checkpointCopies = [runFolder.lastPath] }
            let recorder = try RunRecorder(folder: runFolder, config: config, resumedAfter: resumedEpoch)
            report = { try recorder.record($0) }
        }
        do {
            try run(resume: resume)
        } catch var interrupted as TrainingInterrupted {
            interrupted.checkpoint = interrupted.completedEpochs > (resumedEpoch ?? 0) ? checkpointPath : resume
            throw interrupted
        }
    }
}

/// Model file metadata keys of training runs.
public enum TrainingRunMetadata {
    /// The resolved configuration, YAML.
    public static let config = "config"
}

/// A run stopped by the user (SIGINT) between steps: where its last checkpoint is.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    /// The epoch that was running (1-based).
    public var epoch: Int
    /// The checkpoint of the last finished epoch, if any epoch finished.
    public var checkpoint: String?
    public var completedEpochs: Int

    public var description: String {
        guard let checkpoint else { return "interrupted in epoch \(epoch), before any epoch finished: no checkpoint was written" }
        return "interrupted in epoch \(epoch); the last checkpoint is \(checkpoint) (after epoch \(completedEpochs)): --resume \(checkpoint) continues"
    }
}

/// "1h02m", "4m12s", "9s".
public func formatDuration(_ seconds: Double) -> String {
    let s = Int(max(seconds, 0).rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
