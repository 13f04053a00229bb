import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// Data-parallel training's promise, end to end: K ranks (threads of a `LocalJob`, collective
/// for collective what `mpirun` ranks do) train the model one process trains with the same
/// global batch and seed, up to float summation order; only rank 0 writes.
final class DataParallelTests: XCTestCase {
    private var threads = 1

    override func setUp() { threads = Threads.count; Threads.set(1) }
    override func tearDown() { Threads.set(threads) }

    private func config(epochs: Int) -> ClassificationConfig {
        var config = ClassificationConfig()
        config.backbone = BackboneOptions(preset: .resnet8, widths: [8, 16, 16], stemStride: 1, weights: "none")
        config.train.epochs = epochs
        config.train.batchSize = 16
        config.train.learningRate = 0.05
        config.train.seed = 3
        return config
    }

    /// Every parameter and buffer of a model file, flattened in path order.
    private func state(_ path: String) throws -> (parameters: [Float], buffers: [Float]) {
        let (model, _) = try Model<ClassificationHead>.load(path: path)
        let parameters = model.namedParameters.sorted { $0.path < $1.path }.flatMap { $0.parameter.value.scalars }
        let buffers = model.namedBuffers.sorted { $0.path < $1.path }.flatMap { $0.buffer.value.scalars }
        return (parameters, buffers)
    }

    private func relativeDistance(_ a: [Float], _ b: [Float]) -> Double {
        let difference = zip(a, b).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        let norm = a.reduce(0.0) { $0 + Double($1 * $1) }
        return (difference / max(norm, 1e-30)).squareRoot()
    }

    func testRanksTrainTheModelOneProcessTrains() throws {
        let folder = TemporaryFolder()
        // 88 images in batches of 16: 5 steps an epoch, the last 8 images dropped.
        try writeClassificationData(folder.file("train.h5"), count: 88, seed: 40)
        try writeClassificationData(folder.file("val.h5"), count: 24, seed: 41)
        func train(output: String) throws {
            var run = TrainingRun(config(epochs: 2), data: folder.file("train.h5"), validation: folder.file("val.h5"),
                                  output: folder.file(output))
            run.log = { _ in }
            try run.run()
        }
        try train(output: "alone.h5")
        let alone = try state(folder.file("alone.h5"))
        for ranks in [2, 3] {
            let output = "ranks\(ranks).h5"
            let failures = LocalJob(size: ranks).run { _ -> String? in
                do { try train(output: output); return nil } catch { return "\(error)" }
            }
            XCTAssertEqual(failures.compactMap { $0 }, [])
            let parallel = try state(folder.file(output))
            XCTAssertLessThan(relativeDistance(alone.parameters, parallel.parameters), 1e-5, "\(ranks) ranks: parameters")
            XCTAssertLessThan(relativeDistance(alone.buffers, parallel.buffers), 1e-5, "\(ranks) ranks: batch-norm statistics")
        }
    }
}
