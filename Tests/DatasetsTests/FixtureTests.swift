import Core
import Foundation
import XCTest
@testable import Datasets

/// Writes files for Tests/h5py/check.py when PERCEPT_FIXTURE_DIR is set; does nothing otherwise.
final class FixtureTests: XCTestCase {
    func testWriteModelFixture() throws {
        guard let directory = ProcessInfo.processInfo.environment["PERCEPT_FIXTURE_DIR"] else { return }
        let model = TinyModel()
        let optimizer = OptimizerState(name: "sgd", hyperparameters: ["learningRate": 0.1],
                                       tensors: ["velocity/stem.weight": Tensor.zeros([2, 3])])
        try ModelFile.save(module: model, to: directory + "/model.h5", architecture: #"{"backbone": "tiny"}"#,
                           task: "classification", classNames: ["a", "b"], optimizer: optimizer, epoch: 3, step: 99)
    }
}
