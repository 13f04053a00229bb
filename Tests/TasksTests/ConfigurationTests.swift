import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// Two sections that share a key name, for the ambiguity rule.
private struct TwoSections: Configurable {
    struct Section: Configurable { var rate: Float = 0.5; var name = "a" }
    var first = Section()
    var second = Section()
    var count = 3
    func validate() throws { try Check.that(count >= 0, "count", "must not be negative, got \(count)") }
}

/// The typed configurations: YAML out and back, `--set` of every kind of value and its
/// errors, and settings changed at load without rebuilding a model.
final class ConfigurationTests: XCTestCase {
    /// What `--show-config` prints reads back (`--config`) as the identical configuration, for
    /// every task's recipe and for a configuration with many values changed.
    func testShowConfigReadsBackAsTheSameConfiguration() throws {
        func roundTrip<C: TaskConfig>(_ config: C, file: StaticString = #filePath, line: UInt = #line) throws {
            let yaml = config.yaml()
            XCTAssertEqual(try C().reading(yaml: yaml, source: "test"), config, yaml, file: file, line: line)
            // And through a file, as `--config` reads it.
            let path = NSTemporaryDirectory() + "percept-config-\(UUID().uuidString).yaml"
            defer { try? FileManager.default.removeItem(atPath: path) }
            try yaml.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertEqual(try C().applying(ConfigOverrides(file: path)), config, file: file, line: line)
        }
        try roundTrip(ClassificationConfig())
        try roundTrip(TaggingConfig())
        try roundTrip(DetectionConfig())
        try roundTrip(SegmentationConfig())
        var detection = DetectionConfig()
        detection.settings.scales = [1.3, 0.7000001, 0.1]
        detection.settings.nmsIoU = 0.55
        detection.sampling.negativesPerPositive = 1.25
        detection.train.seed = 12_345_678_901
        detection.train.optimizer = .adamw
        detection.backbone.weights = "my models/w1 #2.h5"
        try roundTrip(detection)
        var segmentation = SegmentationConfig()
        segmentation.head.classWeights = [0.5, 1, 2]
        segmentation.head.skips = ["stage2", "stage1"]
        segmentation.settings.flipAverage = false
        try roundTrip(segmentation)
        var tagging = TaggingConfig()
        tagging.settings.thresholds = [0.25, 0.5, 0.125]
        tagging.head.pooling = .scoreMax
        try roundTrip(tagging)
        // JSON is YAML too.
        XCTAssertEqual(try ClassificationConfig().reading(yaml: #"{"train": {"epochs": 3}, "lr": 0.25}"#, source: "json").train.epochs, 3)
    }

    /// `--set` takes every kind of value, by full key or by a unique last part, and refuses
    /// wrong types, ranges, unknown and ambiguous keys with one message naming the key.
    func testSetOfEachKindAndItsErrors() throws {
        func set(_ assignments: String...) throws -> DetectionConfig {
            try DetectionConfig().applying(ConfigOverrides(assignments: assignments))
        }
        let config = try set("epochs=3", "settings.nms_iou=0.5", "box_voting=true", "optimizer=adam", "scales=[1, 0.5]",
                             "backbone.weights=none", "negatives=2", "lr=1")
        XCTAssertEqual(config.train.epochs, 3)
        XCTAssertEqual(config.settings.nmsIoU, 0.5)
        XCTAssertTrue(config.settings.boxVoting)
        XCTAssertEqual(config.train.optimizer, .adam)
        XCTAssertEqual(config.settings.scales, [1, 0.5])
        XCTAssertEqual(config.backbone.weights, "none")
        XCTAssertEqual(config.sampling.negativesPerPositive, 2)
        XCTAssertEqual(config.train.learningRate, 1)
        // A lone value where a list goes is a list of one.
        XCTAssertEqual(try set("scales=0.8").settings.scales, [0.8])

        func refused(_ assignment: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try set(assignment), assignment, file: file, line: line) { error in
                XCTAssertTrue(error is ConfigError, "\(error)", file: file, line: line)
                XCTAssertTrue("\(error)".contains(fragment), "\(assignment): \(error)", file: file, line: line)
            }
        }
        refused("epochs=abc", "train.epochs takes an integer, got abc")
        refused("epochs=2.5", "train.epochs takes an integer, got 2.5")
        refused("box_voting=3", "settings.box_voting takes true or false")
        refused("scales=[1, x]", "settings.scales takes a list")
        refused("optimizer=rmsprop", "train.optimizer: 'rmsprop' is not a valid value")
        refused("nms_iou=1.5", "nms_iou must be in [0, 1], got 1.5")
        refused("epochs=0", "epochs must be 1 to 100000")
        refused("nms_io=0.5", "unknown key 'nms_io'; did you mean settings.nms_iou?")
        refused("settings.nms=0.5", "unknown key 'settings.nms'")
        refused("epochs", "--set takes KEY=VALUE")
        refused("erase=0.5", "erase is not available for detection")
        refused("train.scale=0.2", "scale is not available for detection")
        refused("nearest=1.5", "nearest must be a fraction in [0, 1], got 1.5")
        XCTAssertEqual(try set("nearest=0.5").train.nearest, 0.5)
        XCTAssertThrowsError(try set("augment=false", "nearest=0.5")) { XCTAssertTrue("\($0)".contains("nearest is part of the augmentation"), "\($0)") }
        XCTAssertThrowsError(try TaggingConfig().applying(ConfigOverrides(assignments: ["scale=1"]))) {
            XCTAssertTrue("\($0)".contains("scale must be in [0, 1)"), "\($0)")
        }
        XCTAssertEqual(try TaggingConfig().applying(ConfigOverrides(assignments: ["scale=0.2"])).train.scale, 0.2)

        // The same leaf name in two sections needs its section.
        XCTAssertThrowsError(try TwoSections().applying(ConfigOverrides(assignments: ["rate=0.1"]))) { error in
            XCTAssertTrue("\(error)".contains("'rate' is ambiguous: first.rate, second.rate"), "\(error)")
        }
        let two = try TwoSections().applying(ConfigOverrides(assignments: ["second.rate=0.1", "first.name=b b", "count=0"]))
        XCTAssertEqual([two.first.rate, two.second.rate], [0.5, 0.1])
        XCTAssertEqual(two.first.name, "b b")
        XCTAssertThrowsError(try TwoSections().applying(ConfigOverrides(assignments: ["count=-1"]))) { error in
            XCTAssertEqual("\(error)", "count must not be negative, got -1")
        }
        // A flag and a --set of one key must agree; a configuration file comes first and both override it.
        XCTAssertThrowsError(try DetectionConfig().applying(ConfigOverrides(assignments: ["epochs=4"], flags: [("train.epochs", "--epochs", .integer(5))])))
        XCTAssertEqual(try DetectionConfig().applying(ConfigOverrides(assignments: ["epochs=5"], flags: [("train.epochs", "--epochs", .integer(5))])).train.epochs, 5)
        let path = NSTemporaryDirectory() + "percept-config-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "train:\n  epochs: 7\n  batch: 32\nnms_iou: 0.3\n".write(toFile: path, atomically: true, encoding: .utf8)
        let filed = try DetectionConfig().applying(ConfigOverrides(file: path, flags: [("train.epochs", "--epochs", .integer(2))]))
        XCTAssertEqual([filed.train.epochs, filed.train.batchSize], [2, 32])
        XCTAssertEqual(filed.settings.nmsIoU, 0.3)
        try "train:\n  epoch: 7\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DetectionConfig().applying(ConfigOverrides(file: path))) { error in
            XCTAssertTrue("\(error)".hasPrefix(path + ": unknown key 'train.epoch'; did you mean train.epochs"), "\(error)")
        }
        try "train: [\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DetectionConfig().applying(ConfigOverrides(file: path))) { XCTAssertTrue("\($0)".contains("not valid YAML"), "\($0)") }
        XCTAssertThrowsError(try DetectionConfig().applying(ConfigOverrides(file: path + ".missing"))) {
            XCTAssertTrue("\($0)".contains("cannot read the configuration file"), "\($0)")
        }
    }

    /// The recipe a configuration's defaults hold is the one models/README.md documents (and
    /// the one the command line trained before the configurations existed).
    func testRecipesAreTheTunedOnes() {
        let classify = ClassificationConfig()
        XCTAssertEqual([classify.train.epochs, classify.train.batchSize], [28, 128])
        XCTAssertEqual(classify.train.erasing, 0.5)
        XCTAssertEqual([classify.train.learningRate, classify.head.labelSmoothing, classify.train.weightDecay], [0.1, 0.1, 5e-4])
        XCTAssertEqual(classify.backbone.configuration(inputChannels: 1),
                       { var b = BackbonePreset.resnet8.configuration(inputChannels: 1, stemStride: 2); b.widths = [32, 64, 128]; return b }())
        let tag = TaggingConfig()
        XCTAssertEqual([tag.train.epochs, tag.train.batchSize], [20, 128])
        XCTAssertEqual([tag.train.learningRate, tag.train.noise, tag.train.scale, tag.train.nearest, tag.train.sharpen], [0.2, 0.15, 0.1, 0.5, 0.5])
        XCTAssertEqual(tag.backbone.weights, "fashion-classifier-long.h5")
        XCTAssertEqual(tag.backbone.widths, [32, 64, 128])
        XCTAssertEqual(tag.head.pooling, .globalMax)
        let detect = DetectionConfig()
        XCTAssertEqual([detect.train.epochs, detect.head.window, detect.head.hidden, detect.sampling.viewsPerObject], [16, 28, 128, 2])
        XCTAssertEqual([detect.train.learningRate, detect.sampling.negativesPerPositive, detect.sampling.hardNegativesPerPositive], [0.05, 0.5, 0.5])
        XCTAssertEqual(detect.settings.scales, WindowHead.pyramid(window: 28, minSize: 26, maxSize: 56, levels: 9))
        XCTAssertEqual([detect.settings.nmsIoU, detect.settings.scoreThreshold], [0.4, 0.05])
        XCTAssertEqual([detect.settings.refinements, detect.settings.maxDetections], [10, 100])
        XCTAssertEqual([detect.settings.boxVoting, detect.settings.flipAverage, detect.settings.shiftAverage], [false, true, true])
        XCTAssertEqual(detect.backbone.weights, "fashion-window-classifier.h5")
        let segment = SegmentationConfig()
        XCTAssertEqual([segment.train.epochs, segment.train.batchSize, segment.head.refineWidth, segment.head.classifierKernel], [28, 64, 8, 3])
        XCTAssertEqual([segment.train.learningRate, segment.train.pasting, segment.train.noise], [0.2, 0.5, 0.15])
        XCTAssertTrue(segment.head.startScores && segment.settings.flipAverage)
        XCTAssertEqual(segment.backbone.weights, "fashion-classifier-long.h5")
        // A library user's detector head gets the command line's settings: one default each.
        XCTAssertEqual(WindowHead.Settings(), detect.settings)
    }

    /// An inference setting changed at load changes predictions; the model is not rebuilt and
    /// no weight is copied (every parameter keeps its storage object).
    func testSettingsChangeAtLoadWithoutRebuildingTheModel() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let (model, _) = try Model<WindowHead>.load(path: root.appendingPathComponent("models/fashion-detector.h5").path)
        let storages = model.index.parameters.map { ($0.path, ObjectIdentifier($0.parameter.value.storage)) }
        let head = ObjectIdentifier(model.head)
        let png = try PNG.read(path: root.appendingPathComponent("samples/scenes/00.png").path, channels: 1)
        let c = model.configuration
        let image = normalisedTensor(png, mean: c.mean, std: c.std), geometry = InputGeometry(height: png.height, width: png.width)
        // One dense look keeps this quick in a debug build.
        var settings = try model.head.settings.applying(ConfigOverrides(assignments: ["refinements=0"]))
        try model.use(settings)
        let before = model.predict(image, geometry: geometry)[0]
        settings = try settings.applying(ConfigOverrides(assignments: ["score_threshold=0.9", "max_detections=2"]))
        try model.use(settings)
        let after = model.predict(image, geometry: geometry)[0]
        XCTAssertGreaterThan(before.count, 2)
        XCTAssertLessThanOrEqual(after.count, 2)
        XCTAssertTrue(after.allSatisfy { $0.score >= 0.9 })
        XCTAssertEqual(model.configuration.settings.maxDetections, 2, "the model file would store the new settings")
        XCTAssertEqual(ObjectIdentifier(model.head), head)
        XCTAssertEqual(model.index.parameters.map { ($0.path, ObjectIdentifier($0.parameter.value.storage)) }.map(\.0), storages.map(\.0))
        for ((path, storage), now) in zip(storages, model.index.parameters) {
            XCTAssertEqual(ObjectIdentifier(now.parameter.value.storage), storage, path)
        }
        // Settings that cannot decode this head are refused and leave the model as it was.
        var wrong = settings
        wrong.nmsIoU = 2
        XCTAssertThrowsError(try model.use(wrong))
        XCTAssertEqual(model.head.settings, settings)
    }

    /// Every stored property of every configuration is a key: a property left out of a
    /// hand-written `CodingKeys` would otherwise be silently missing from --show-config, --set
    /// and the stored configuration.
    func testEveryPropertyIsAKey() throws {
        func leaves(_ value: Any) -> Int {
            guard value is any Configurable else { return 1 }
            return Mirror(reflecting: value).children.reduce(0) { $0 + leaves($1.value) }
        }
        func check<C: TaskConfig>(_ config: C) throws {
            XCTAssertEqual(try ConfigValue(encoding: config).leafPaths.count, leaves(config), "\(C.self): \(config.keys)")
        }
        try check(ClassificationConfig())
        try check(TaggingConfig())
        try check(DetectionConfig())
        try check(SegmentationConfig())
        XCTAssertGreaterThan(leaves(DetectionConfig()), 30)
    }
}
