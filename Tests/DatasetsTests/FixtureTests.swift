import PerceptCore
import Foundation
import XCTest
@testable import PerceptDatasets
@testable import PerceptTasks

/// Writes the model file that Tests/h5py/check.py reads, and checks it from the Swift side.
///
/// The file goes to PERCEPT_FIXTURE_DIR when set (Tests/h5py/run.sh sets it and fails when the
/// file is missing afterwards), otherwise to a temporary directory: under plain `swift test`
/// the test still writes and reads the file rather than passing without doing anything.
final class FixtureTests: XCTestCase {
    func testWriteModelFixture() throws {
        let temporary = TemporaryDirectory()
        let directory = ProcessInfo.processInfo.environment["PERCEPT_FIXTURE_DIR"] ?? temporary.path
        let path = directory + "/model.h5"
        let optimizer = OptimizerState(name: "sgd", hyperparameters: ["learningRate": 0.1],
                                       tensors: ["velocity/stem.weight": Tensor.zeros([2, 3])])
        try ModelFile.save(module: TinyModel(), to: path, architecture: #"{"backbone": "tiny"}"#,
                           task: "classification", classNames: ["a", "b"], optimizer: optimizer, epoch: 3, step: 99)

        // What check.py checks from Python, checked here from Swift.
        let checkpoint = try ModelCheckpoint.read(path: path)
        XCTAssertEqual(checkpoint.architecture, #"{"backbone": "tiny"}"#)
        XCTAssertEqual([checkpoint.epoch, checkpoint.step], [3, 99])
        XCTAssertEqual(checkpoint.parameters["stem.weight"]?.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(checkpoint.buffers["runningMean"]?.scalars, [0.5, 0.25, 0.125])
        XCTAssertEqual(checkpoint.optimizer?.name, "sgd")
        XCTAssertEqual(checkpoint.optimizer?.hyperparameters["learningRate"], 0.1)
        XCTAssertEqual(checkpoint.optimizer?.tensors["velocity/stem.weight"]?.shape, [2, 3])
    }
}
