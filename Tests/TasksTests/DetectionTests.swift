import Core
import Datasets
import Foundation
import Tasks
import XCTest

/// Side of the generated detection scenes and of the small detector's window.
let sceneSide = 40
let smallWindow = 16

/// A scene of 1 or 2 objects on noise: class 0 a filled square, class 1 a hollow square, of side
/// 8-15 px, apart from each other. Boxes are the objects' tight boxes.
func detectionScene(using generator: inout SeededGenerator) -> (image: Image, boxes: [DetectionBox]) {
    var pixels = (0..<(sceneSide * sceneSide)).map { _ in UInt8(generator.next() % 30) }
    var boxes: [DetectionBox] = []
    let count = 1 + Int(generator.next() % 2)
    for index in 0..<count {
        let label = Int(generator.next() % 2)
        let side = 8 + Int(generator.next() % 8)
        // Objects in the left and right halves never overlap.
        let left = index * 20 + Int(generator.next() % UInt64(20 - side + 1))
        let top = Int(generator.next() % UInt64(sceneSide - side + 1))
        for y in top..<(top + side) {
            for x in left..<(left + side) {
                let edge = y < top + 2 || y >= top + side - 2 || x < left + 2 || x >= left + side - 2
                if label == 0 || edge { pixels[y * sceneSide + x] = 210 }
            }
        }
        boxes.append(DetectionBox(x1: Float(left), y1: Float(top), x2: Float(left + side), y2: Float(top + side), label: Int32(label)))
    }
    return (Image(width: sceneSide, height: sceneSide, channels: 1, pixels: pixels), boxes)
}

func writeDetectionData(_ path: String, count: Int, seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    let writer = try DatasetWriter(path: path, task: .detection, channels: 1, height: sceneSide, width: sceneSide,
                                   source: "generated squares")
    for index in 0..<count {
        let (image, boxes) = detectionScene(using: &generator)
        try writer.append(image: image, boxes: boxes, imageID: Int64(index + 1), originalWidth: sceneSide, originalHeight: sceneSide)
    }
    try writer.finish(classNames: ["filled", "hollow"], categoryIDs: [1, 2])
}

/// A small window detector: unpadded plain CNN of widths 4 and 8 on 16x16 windows (a 2x2
/// patch on its stride-4 map), pyramid for objects of 8-16 px.
func smallDetectorConfiguration(classes: Int = 2, mean: Float = 0.1, std: Float = 0.25, widths: [Int] = [4, 8], hidden: Int = 12)
    -> ModelConfiguration<WindowHead.Configuration> {
    var backbone = BackboneConfiguration(kind: .plain, inputChannels: 1, widths: widths)
    backbone.padding = 0
    let head = WindowHead.Configuration(input: "stage2", window: smallWindow, featureSide: 2, hidden: hidden, classes: classes,
                                        scales: WindowHead.Configuration.pyramid(window: smallWindow, minSize: 8, maxSize: 16, levels: 3))
    return ModelConfiguration(task: .detection, inputChannels: 1, inputHeight: sceneSide, inputWidth: sceneSide,
                              classes: (0..<classes).map { "class \($0)" }, backbone: backbone, head: head, mean: [mean], std: [std])
}

final class DetectionTests: XCTestCase {
    /// Scoring an image densely gives each window exactly the scores of classifying its crop:
    /// with unpadded convolutions and windows on the map's stride, no window sees padding or
    /// pixels its crop lacks.
    func testDenseScoresEqualCroppedWindows() throws {
        let model = try Model<WindowHead>(smallDetectorConfiguration(classes: 3), seed: 4)
        model.setMode(.inference)
        var generator = SeededGenerator(seed: 9)
        let (height, width) = (36, 44)
        let image = Tensor.randomNormal([1, 1, height, width], using: &generator)
        let dense = model(image)
        let positionsDown = (height - smallWindow) / 4 + 1, positionsAcross = (width - smallWindow) / 4 + 1
        XCTAssertEqual(dense.shape, [1, 8, positionsDown, positionsAcross])
        var crops: [Tensor] = []
        for y in 0..<positionsDown {
            for x in 0..<positionsAcross {
                let crop = Tensor.uninitialized([1, 1, smallWindow, smallWindow])
                for row in 0..<smallWindow {
                    (crop.pointer + row * smallWindow).update(from: image.pointer + (4 * y + row) * width + 4 * x, count: smallWindow)
                }
                crops.append(crop)
            }
        }
        let plane = positionsDown * positionsAcross
        var worst: Float = 0
        for (index, crop) in crops.enumerated() {
            let single = model(crop)
            XCTAssertEqual(single.shape, [1, 8, 1, 1])
            for channel in 0..<8 {
                worst = max(worst, abs(single.pointer[channel] - dense.pointer[channel * plane + index]))
            }
        }
        XCTAssertEqual(worst, 0, "dense and cropped scores differ by up to \(worst)")
    }

    /// The window at map position (x, y) of a level scaled by s and padded by p covers
    /// original pixels [(4x - p) / s, (4x - p + window) / s); zero deltas decode to that square.
    func testDecodingMapsWindowsBackToTheImage() throws {
        let model = try Model<WindowHead>(smallDetectorConfiguration(classes: 2), seed: 1)
        let head = model.head
        // One level output of 1 x 3 positions: background wins except at x = 2, where class 1 does.
        let plane = 3
        var values = [Float](repeating: 0, count: 7 * plane)
        for p in 0..<plane { values[p] = 5 }       // background logit
        values[0 * plane + 2] = 0
        values[2 * plane + 2] = 6                  // class 1 logit at x = 2
        let outputs = Tensor(shape: [1, 7, 1, 3], scalars: values)
        let detections = head.decodeLevel(outputs, scale: 0.5, padding: 8, threshold: 0.5)
        XCTAssertEqual(detections.count, 1)
        let found = try XCTUnwrap(detections[0].first)
        XCTAssertEqual(detections[0].count, 1)
        XCTAssertEqual(found.box.label, 1)
        XCTAssertEqual(found.score, exp(6) / (exp(6) + 1 + 1), accuracy: 1e-6)
        // x = 2: level pixels [8 - 8, 8 - 8 + 16) = [0, 16) -> original [0, 32).
        XCTAssertEqual([found.box.x1, found.box.y1, found.box.x2, found.box.y2], [0, -16, 32, 16])
    }

    func testDetectorTrainsWellAboveChanceAndReloads() throws {
        let folder = TemporaryFolder()
        try writeDetectionData(folder.file("train.h5"), count: 96, seed: 50)
        try writeDetectionData(folder.file("val.h5"), count: 24, seed: 51)
        let train = try DetectionDataset(path: folder.file("train.h5"))
        let validation = try DetectionDataset(path: folder.file("val.h5"))
        let statistics = try channelStatistics(train)
        let configuration = smallDetectorConfiguration(mean: statistics.mean[0], std: statistics.std[0], widths: [8, 16], hidden: 32)
        let model = try Model<WindowHead>(configuration, seed: 2)
        var options = smallOptions(epochs: 24, learningRate: 0.05)
        options.batchSize = 32
        var sampling = WindowSampling()
        sampling.minedScenes = 16
        let sampler = try WindowSampler(dataset: train, model: model, sampling: sampling, batchSize: 32, seed: 3)
        // Validation scores a pyramid over every scene: once at the end keeps the test quick.
        let trainer = Trainer(model: model, train: sampler, validation: nil, options: options, outputPath: folder.file("detector.h5"))
        var lines: [String] = []
        trainer.log = { lines.append($0) }
        try trainer.run()
        let (best, _) = try Model<WindowHead>.load(path: folder.file("detector.h5"))
        let evaluation = try best.evaluate(DataLoader(validation, batchSize: 8, shuffle: false, mean: configuration.mean, std: configuration.std))
        XCTAssertEqual(evaluation.metricName, "AP")
        // Random boxes score an AP50 near 0; the detector must find and place most objects.
        XCTAssertGreaterThanOrEqual(evaluation.values["ap50"] ?? 0, 0.6, "\(evaluation.summary); log:\n" + lines.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(evaluation.value, 0.3, evaluation.summary)
        // Predictions on one scene at its own size are boxes inside it, at most maxDetections.
        let scene = try validation.readImages(0..<1)
        let image = Image(planar: scene, width: sceneSide, height: sceneSide, channels: 1)
        let detections = best.predict(normalisedTensor(image, mean: configuration.mean, std: configuration.std),
                                      geometry: InputGeometry(height: sceneSide, width: sceneSide))[0]
        XCTAssertFalse(detections.isEmpty)
        XCTAssertLessThanOrEqual(detections.count, configuration.head.maxDetections)
        XCTAssertTrue(zip(detections, detections.dropFirst()).allSatisfy { $0.score >= $1.score }, "detections come best first")
    }
}
