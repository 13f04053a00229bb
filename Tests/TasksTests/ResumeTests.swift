import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// A classifier that stops the run (as a crash would) when asked to evaluate for the
/// `stopAt`-th time: after that epoch's training but before its checkpoint is written.
final class InterruptingModel: TrainableModel {
    let model: Classifier
    let stopAt: Int
    private(set) var evaluations = 0

    var module: Module { model }

    init(_ model: Classifier, stopAt: Int) {
        self.model = model
        self.stopAt = stopAt
    }

    func loss(_ batch: Batch) -> Tensor { model.loss(batch) }

    func evaluate(_ loader: DataLoader) throws -> Evaluation {
        evaluations += 1
        if evaluations == stopAt { throw ModelError("interrupted at evaluation \(evaluations)") }
        return try model.evaluate(loader)
    }

    func save(to path: String, optimizer: (any Optimizer)?, epoch: Int, step: Int, metadata: [String: String]) throws {
        try model.save(to: path, optimizer: optimizer, epoch: epoch, step: step, metadata: metadata)
    }

    func matchesArchitecture(of checkpoint: ModelCheckpoint) -> Bool { model.matchesArchitecture(of: checkpoint) }
}

/// Resuming from a `.last.h5` checkpoint continues exactly where the run stopped.
final class ResumeTests: XCTestCase {
    /// Trains for `epochs` (stopping early if `stopAt` is given) or resumes from `resume`.
    func train(_ folder: TemporaryFolder, output: String, configuration: ModelConfiguration<ClassificationHead>,
               epochs: Int, stopAt: Int = .max, resume: String? = nil) throws -> (Classifier, Trainer) {
        let train = try ClassificationDataset(path: folder.file("train.h5"))
        let validation = try ClassificationDataset(path: folder.file("val.h5"))
        let options = smallOptions(epochs: epochs, augment: true, seed: 5)
        let model = try Classifier(configuration, seed: options.seed)
        let trainer = Trainer(
            model: InterruptingModel(model, stopAt: stopAt),
            train: DataLoader(train, batchSize: options.batchSize, shuffle: true,
                              augmentation: Augmentation(cropPadding: 2, horizontalFlip: true),
                              mean: configuration.mean, std: configuration.std, seed: options.seed),
            validation: DataLoader(validation, batchSize: 64, shuffle: false, mean: configuration.mean, std: configuration.std),
            options: options, outputPath: folder.file(output))
        trainer.log = { _ in }
        try trainer.run(resume: resume)
        return (model, trainer)
    }

    func assertResumesExactly(residual: Bool, dropout: Float = 0, file: StaticString = #filePath, line: UInt = #line) throws {
        let folder = TemporaryFolder()
        try writeClassificationData(folder.file("train.h5"), count: 48, seed: 30)
        try writeClassificationData(folder.file("val.h5"), count: 12, seed: 31)
        let configuration = try smallClassifierConfiguration(dataset: ClassificationDataset(path: folder.file("train.h5")),
                                                             residual: residual, dropout: dropout)
        let (straight, _) = try train(folder, output: "straight.h5", configuration: configuration, epochs: 2)

        // Stop during the second epoch's validation: the checkpoint on disk is epoch 1's.
        XCTAssertThrowsError(try train(folder, output: "stopped.h5", configuration: configuration, epochs: 2, stopAt: 2))
        let checkpoint = try ModelCheckpoint.read(path: folder.file("stopped.last.h5"))
        XCTAssertEqual(checkpoint.epoch, 1, file: file, line: line)
        XCTAssertEqual(checkpoint.step, 3, file: file, line: line)
        let (resumed, _) = try train(folder, output: "stopped.h5", configuration: configuration, epochs: 2,
                                     resume: folder.file("stopped.last.h5"))

        let straightState = Dictionary(uniqueKeysWithValues: straight.state.map { ($0.path, $0.value.scalars) })
        let resumedState = Dictionary(uniqueKeysWithValues: resumed.state.map { ($0.path, $0.value.scalars) })
        XCTAssertEqual(Set(straightState.keys), Set(resumedState.keys), file: file, line: line)
        for (path, values) in straightState.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(values, resumedState[path], "\(path) differs after resuming", file: file, line: line)
        }
        // Everything that shapes the output, saved or not, must match: compare predictions too.
        let images = try normalisedImages(ClassificationDataset(path: folder.file("val.h5")), for: straight)
        XCTAssertEqual(straight.outputs(images).scalars, resumed.outputs(images).scalars,
                       "predictions differ after resuming", file: file, line: line)
        // And the checkpoints written at the end agree with the models in memory.
        let (straightFile, _) = try Classifier.load(path: folder.file("straight.last.h5"))
        XCTAssertEqual(straightFile.outputs(images).scalars, straight.outputs(images).scalars,
                       "the final checkpoint does not reproduce the trained model", file: file, line: line)
    }

    func testPlainModelResumesBitIdentically() throws {
        try assertResumesExactly(residual: false)
    }

    func testResidualModelWithBatchNormResumesBitIdentically() throws {
        try assertResumesExactly(residual: true)
    }

    func testModelWithHeadDropoutResumesBitIdentically() throws {
        try assertResumesExactly(residual: false, dropout: 0.2)
    }
}
