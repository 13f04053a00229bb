import PerceptCore
import XCTest
@testable import PerceptDatasets
@testable import PerceptTasks

final class TinyBlock: Module {
    let weight: Parameter
    let bias: Parameter
    init(_ start: Float) {
        weight = Parameter(Tensor(shape: [2, 3], scalars: (0..<6).map { start + Float($0) }))
        bias = Parameter(Tensor(shape: [2], scalars: [start, -start]))
    }
}

final class TinyModel: Module {
    let stem = TinyBlock(1)
    let stages = [TinyBlock(10), TinyBlock(20)]
    let runningMean = Buffer(Tensor(shape: [3], scalars: [0.5, 0.25, 0.125]))
}

final class ModelFileTests: XCTestCase {
    let architecture = #"{"backbone": "tiny", "widths": [2, 3]}"#

    func testSaveAndLoadRestoresEverything() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("model.h5")
        let model = TinyModel()
        let optimizer = OptimizerState(name: "sgd", hyperparameters: ["learningRate": 0.1, "momentum": 0.9],
                                       tensors: ["velocity/stem.weight": Tensor(shape: [2, 3], repeating: 0.5),
                                                 "count": Tensor(3)])
        try ModelFile.save(module: model, to: path, architecture: architecture, task: "classification",
                           classNames: ["cat", "dog"], optimizer: optimizer, epoch: 4, step: 1234)
        XCTAssertEqual(directory.entries, ["model.h5"])

        let fresh = TinyModel()
        for (_, parameter) in fresh.namedParameters { parameter.value = Tensor(shape: parameter.shape, repeating: -1) }
        fresh.runningMean.value = Tensor.zeros([3])
        let checkpoint = try ModelFile.load(into: fresh, from: path)
        for ((path, original), (_, loaded)) in zip(model.state, fresh.state) {
            XCTAssertEqual(original.scalars, loaded.scalars, path)
        }
        XCTAssertEqual(Set(checkpoint.parameters.keys), ["stem.weight", "stem.bias", "stages.0.weight", "stages.0.bias",
                                                          "stages.1.weight", "stages.1.bias"])
        XCTAssertEqual(Array(checkpoint.buffers.keys), ["runningMean"])
        XCTAssertEqual(checkpoint.architecture, architecture)
        XCTAssertEqual(checkpoint.task, "classification")
        XCTAssertEqual(checkpoint.classNames, ["cat", "dog"])
        XCTAssertEqual(checkpoint.epoch, 4)
        XCTAssertEqual(checkpoint.step, 1234)
        XCTAssertEqual(checkpoint.optimizer?.name, "sgd")
        XCTAssertEqual(checkpoint.optimizer?.hyperparameters, ["learningRate": 0.1, "momentum": 0.9])
        XCTAssertEqual(checkpoint.optimizer?.tensors["velocity/stem.weight"]?.scalars, [Float](repeating: 0.5, count: 6))
        XCTAssertEqual(checkpoint.optimizer?.tensors["count"]?.shape, [])
        XCTAssertEqual(checkpoint.optimizer?.tensors["count"]?.scalar, 3)
    }

    func testMismatchedModelsReportKeysAndChangeNothing() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("model.h5")
        var parameters: [String: Tensor] = [:]
        for (key, parameter) in TinyModel().namedParameters { parameters[key] = parameter.value }
        parameters["stem.weight"] = Tensor.zeros([3, 2])
        parameters.removeValue(forKey: "stages.1.bias")
        parameters["head.weight"] = Tensor.zeros([1])
        try ModelCheckpoint(architecture: "{}", task: "tagging", parameters: parameters).write(to: path)
        let model = TinyModel()
        assertDatasetError(["model.h5", "parameters/stem.weight has shape [3, 2]", "missing keys: buffers/runningMean, parameters/stages.1.bias",
                            "unexpected keys: parameters/head.weight"]) {
            try ModelFile.load(into: model, from: path)
        }
        XCTAssertEqual(model.stem.weight.value.scalars, [1, 2, 3, 4, 5, 6])
    }

    func testFailedWriteKeepsThePreviousCheckpoint() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("model.h5")
        try ModelFile.save(module: TinyModel(), to: path, architecture: architecture, task: "classification", epoch: 1)
        assertDatasetError(["model.h5", "not valid JSON"]) {
            try ModelFile.save(module: TinyModel(), to: path, architecture: "{broken", task: "classification", epoch: 2)
        }
        assertDatasetError(["model.h5", "cannot be stored"]) {
            try ModelCheckpoint(architecture: "{}", task: "x", parameters: ["a/b": Tensor(1)], epoch: 3).write(to: path)
        }
        XCTAssertEqual(try ModelCheckpoint.read(path: path).epoch, 1)
        XCTAssertEqual(directory.entries, ["model.h5"])
        XCTAssertTrue(try Inspector.describe(path: path).contains("Percept model file, task classification, epoch 1"))
    }

    func testDatasetIsNotAModel() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("data.h5")
        let writer = try DatasetWriter(path: path, task: .tagging, channels: 1, height: 1, width: 1, tagCount: 1, source: "t")
        try writer.append(image: Image(width: 1, height: 1, channels: 1), tagIndices: [0])
        try writer.finish(classNames: ["t"])
        assertDatasetError(["data.h5", "is a Percept dataset, not a model file"]) { _ = try ModelCheckpoint.read(path: path) }
    }
}
