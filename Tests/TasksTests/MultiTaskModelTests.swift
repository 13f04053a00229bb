import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// One backbone, several heads, one file: the multi-task model's parts (issue 31).
final class MultiTaskModelTests: XCTestCase {
    let backbone = BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])
    let mean: [Float] = [0.3], std: [Float] = [0.4]

    func heads(backbone other: BackboneConfiguration? = nil) throws -> MultiTaskConfiguration {
        let backbone = other ?? self.backbone
        let classify = ModelConfiguration<ClassificationHead>(
            task: .classification, inputChannels: 1, inputHeight: 12, inputWidth: 12, classes: ["a", "b", "c"], backbone: backbone,
            head: .init(layers: VectorHeadConfiguration(pooling: .global, inFeatures: 8, outputs: 3)), settings: .init(), mean: mean, std: std)
        let tag = ModelConfiguration<TaggingHead>(
            task: .tagging, inputChannels: 1, inputHeight: 16, inputWidth: 16, classes: ["x", "y"], backbone: backbone,
            head: .init(layers: VectorHeadConfiguration(pooling: .global, inFeatures: 8, outputs: 2)), settings: .init(), mean: mean, std: std)
        var windows = WindowHead.Settings()
        windows.scales = [1, 0.75]
        let detect = ModelConfiguration<WindowHead>(
            task: .detection, inputChannels: 1, inputHeight: 16, inputWidth: 16, classes: ["a", "b"], backbone: backbone,
            head: WindowHead.Architecture(input: "stage2", window: 8, featureSide: 4, hidden: 6, classes: 2), settings: windows,
            mean: mean, std: std)
        let segment = ModelConfiguration<SegmentationHead>(
            task: .segmentation, inputChannels: 1, inputHeight: 16, inputWidth: 16, classes: ["background", "a", "b"], backbone: backbone,
            head: SegmentationHead.Architecture(deepest: "stage2", classes: 3), settings: .init(), mean: mean, std: std)
        return try MultiTaskConfiguration(classification: classify, tagging: tag, detection: detect, segmentation: segment)
    }

    func images(_ n: Int, _ side: Int, seed: UInt64 = 9) -> Tensor {
        var generator = SeededGenerator(seed: seed)
        return Tensor.randomNormal([n, 1, side, side], using: &generator)
    }

    /// Every parameter and buffer drawn at random, so that a head reading the wrong tensor shows.
    func randomise(_ model: some Module) {
        var generator = SeededGenerator(seed: 17)
        for (_, parameter) in model.index.parameters { parameter.value = Tensor.randomNormal(parameter.value.shape, using: &generator) }
        for (_, buffer) in model.index.buffers {
            buffer.value = Tensor(shape: buffer.value.shape, scalars: Tensor.randomNormal(buffer.value.shape, using: &generator).scalars.map { abs($0) + 0.5 })
        }
    }

    func testOneBackbonePassGivesEachHeadWhatItsSingleTaskViewGives() throws {
        let multi = try MultiTaskModel(heads(), seed: 3)
        randomise(multi)
        multi.setMode(.inference)
        XCTAssertEqual(multi.tasks, [.classification, .tagging, .detection, .segmentation])
        let x = images(2, 16)
        let outputs = multi(x)
        XCTAssertEqual(Set(outputs.keys), Set(VisionTask.allCases))
        let views: [(VisionTask, Tensor)] = [(.classification, try XCTUnwrap(multi.model(ClassificationHead.self))(x)),
                                             (.tagging, try XCTUnwrap(multi.model(TaggingHead.self))(x)),
                                             (.detection, try XCTUnwrap(multi.model(WindowHead.self))(x)),
                                             (.segmentation, try XCTUnwrap(multi.model(SegmentationHead.self))(x))]
        for (task, single) in views {
            let joint = try XCTUnwrap(outputs[task])
            XCTAssertEqual(joint.shape, single.shape, task.rawValue)
            XCTAssertEqual(joint.scalars, single.scalars, task.rawValue)
        }
        // The views share the weights: a change to the multi-task model's head shows in its view.
        let view = try XCTUnwrap(multi.model(TaggingHead.self))
        XCTAssertTrue(view.head === multi.tagging && view.backbone === multi.backbone)
        // Asking for some heads computes only theirs.
        XCTAssertEqual(Set(multi(x, tasks: [.segmentation]).keys), [.segmentation])
    }

    func testAMultiTaskFileRoundTripsAndEveryLoaderReadsIt() throws {
        let folder = TemporaryFolder()
        let multi = try MultiTaskModel(heads(), seed: 3)
        randomise(multi)
        multi.setMode(.inference)
        let path = folder.file("multi.h5")
        try multi.save(to: path)
        let (loaded, checkpoint) = try MultiTaskModel.load(path: path)
        XCTAssertEqual(checkpoint.task, "multi")
        XCTAssertEqual(loaded.configuration, multi.configuration)
        XCTAssertTrue(checkpoint.parameters.keys.contains("detection.output.weight"), "\(checkpoint.parameters.keys.sorted())")
        let x = images(1, 20)
        let before = multi(x), after = loaded(x)
        for task in VisionTask.allCases { XCTAssertEqual(before[task]!.scalars, after[task]!.scalars, task.rawValue) }
        // A single-task loader takes its head of the file.
        let (segmenter, _) = try Model<SegmentationHead>.load(path: path)
        XCTAssertEqual(segmenter(x).scalars, before[.segmentation]!.scalars)
        XCTAssertEqual(segmenter.configuration.classes, ["background", "a", "b"])
        // Its backbone starts other models, as a single-task file's does.
        let pretrained = try PretrainedBackbone(path: path)
        XCTAssertEqual(pretrained.configuration, backbone)
        for (key, parameter) in multi.backbone.index.parameters {
            XCTAssertEqual(pretrained.parameters[key]?.scalars, parameter.value.scalars, key)
        }
        // `percept inspect` names it.
        XCTAssertTrue(try Inspector.describe(path: path).contains("task multi"))

        // A file without the asked-for head says which heads it has.
        let partial = try MultiTaskModel(MultiTaskConfiguration(tagging: heads().tagging), seed: 1)
        try partial.save(to: folder.file("tagger-only.h5"))
        XCTAssertThrowsError(try Model<WindowHead>.load(path: folder.file("tagger-only.h5"))) { error in
            XCTAssertTrue("\(error)".contains("tagger-only.h5") && "\(error)".contains("tagging"), "\(error)")
        }
    }

    func testASingleTaskFileIsTheOneHeadCase() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("models/fashion-detector.h5").path
        let (multi, _) = try MultiTaskModel.load(path: path)
        let (detector, _) = try Model<WindowHead>.load(path: path)
        XCTAssertEqual(multi.tasks, [.detection])
        XCTAssertEqual(multi.configuration.detection, detector.configuration)
        let x = images(1, 40)
        XCTAssertEqual(multi(x)[.detection]!.scalars, detector(x).scalars)
    }

    func testAOneHeadModelOfASeedIsTheSingleTaskModelOfThatSeed() throws {
        let configuration = try heads().segmentation!
        let multi = try MultiTaskModel(MultiTaskConfiguration(segmentation: configuration), seed: 5)
        let single = try Model<SegmentationHead>(configuration, seed: 5)
        let multiParameters = Dictionary(uniqueKeysWithValues: multi.index.parameters.map { ($0.path, $0.parameter.value.scalars) })
        let singleParameters = single.index.parameters
        XCTAssertEqual(multiParameters.count, singleParameters.count)
        for (path, parameter) in singleParameters {
            let renamed = path.hasPrefix("head.") ? "segmentation." + path.dropFirst(5) : path
            XCTAssertEqual(multiParameters[renamed], parameter.value.scalars, path)
        }
    }

    /// A file whose architecture JSON lies is one error naming the file and the problem.
    func testLyingMultiTaskFilesAreRefusedNamingTheProblem() throws {
        let folder = TemporaryFolder()
        try MultiTaskModel(heads(), seed: 3).save(to: folder.file("multi.h5"))
        let stored = try ModelCheckpoint.read(path: folder.file("multi.h5"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stored.architecture.utf8)) as? [String: Any])
        let heads = try XCTUnwrap(object["heads"] as? [String: [String: Any]])
        func edited(_ name: String, _ change: (inout [String: Any], inout [String: [String: Any]]) -> Void) throws -> String {
            var top = object, parts = heads
            change(&top, &parts)
            if !parts.isEmpty || top["heads"] != nil { top["heads"] = parts }
            var checkpoint = stored
            checkpoint.architecture = String(decoding: try JSONSerialization.data(withJSONObject: top), as: UTF8.self)
            try checkpoint.write(to: folder.file(name))
            return folder.file(name)
        }
        let cases: [(String, String, (inout [String: Any], inout [String: [String: Any]]) -> Void)] = [
            ("no-heads.h5", "missing key 'heads'", { top, parts in top["heads"] = nil; parts = [:] }),
            ("empty-heads.h5", "at least one head", { top, parts in parts = [:]; top["heads"] = [String: Any]() }),
            ("other-backbone.h5", "tagging head's backbone or normalisation differs", { _, parts in
                parts["tagging"]?["std"] = [0.9] }),
            ("class-count.h5", "segmentation head scores 3 classes, its configuration names 1", { _, parts in
                parts["segmentation"]?["classes"] = ["x"] }),
            ("head-task.h5", "the tagging head is described as a detection model", { _, parts in parts["tagging"]?["task"] = "detection" }),
        ]
        for (name, problem, change) in cases {
            let path = try edited(name, change)
            XCTAssertThrowsError(try MultiTaskModel.load(path: path), name) { error in
                XCTAssertTrue("\(error)".contains(name) && "\(error)".contains(problem), "\(name): \(error)")
            }
        }
    }

    func testHeadsOnDifferentBackbonesAreRefused() throws {
        var configuration = try heads()
        configuration.tagging = try heads(backbone: BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 16], blocks: [1, 1])).tagging
        XCTAssertThrowsError(try MultiTaskModel(configuration, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("tagging"), "\(error)")
        }
        XCTAssertThrowsError(try MultiTaskConfiguration()) { error in XCTAssertTrue("\(error)".contains("at least one head"), "\(error)") }
    }
}
