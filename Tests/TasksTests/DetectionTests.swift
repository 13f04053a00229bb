import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
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
    -> ModelConfiguration<WindowHead> {
    var backbone = BackboneConfiguration(kind: .plain, inputChannels: 1, widths: widths)
    backbone.padding = 0
    let head = WindowHead.Architecture(input: "stage2", window: smallWindow, featureSide: 2, hidden: hidden, classes: classes)
    // One dense look with box voting: what these tests were written for (the recipe adds second looks).
    var settings = WindowHead.Settings()
    settings.scales = WindowHead.pyramid(window: smallWindow, minSize: 8, maxSize: 16, levels: 3)
    settings.boxVoting = true
    settings.refinements = 0
    settings.flipAverage = false
    settings.shiftAverage = false
    return ModelConfiguration(task: .detection, inputChannels: 1, inputHeight: sceneSide, inputWidth: sceneSide,
                              classes: (0..<classes).map { "class \($0)" }, backbone: backbone, head: head, settings: settings,
                              mean: [mean], std: [std])
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
        XCTAssertGreaterThanOrEqual(evaluation["ap50"] ?? 0, 0.6, "\(evaluation.summary); log:\n" + lines.joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(evaluation.value, 0.3, evaluation.summary)
        // Predictions on one scene at its own size are boxes inside it, at most maxDetections.
        let scene = try validation.readImages(0..<1)
        let image = Image(planar: scene, width: sceneSide, height: sceneSide, channels: 1)
        let detections = best.predict(normalisedTensor(image, mean: configuration.mean, std: configuration.std),
                                      geometry: InputGeometry(height: sceneSide, width: sceneSide))[0]
        XCTAssertFalse(detections.isEmpty)
        XCTAssertLessThanOrEqual(detections.count, configuration.settings.maxDetections)
        XCTAssertTrue(zip(detections, detections.dropFirst()).allSatisfy { $0.score >= $1.score }, "detections come best first")
    }
}

/// Ignore regions (COCO crowds, VOC difficult objects) are neither objects nor background for
/// the window sampler.
final class IgnoreRegionTests: XCTestCase {
    func testTheSamplerTakesNoWindowOfAnIgnoreRegion() throws {
        let folder = TemporaryFolder()
        let writer = try DatasetWriter(path: folder.file("scenes.h5"), task: .detection, channels: 1, height: sceneSide, width: sceneSide,
                                       source: "test")
        let object = DetectionBox(x1: 2, y1: 4, x2: 14, y2: 16, label: 0)
        let crowd = DetectionBox(x1: 20, y1: 20, x2: 36, y2: 36, label: 1, ignore: true)
        for index in 0..<4 {
            try writer.append(image: Image(width: sceneSide, height: sceneSide, channels: 1), boxes: [object, crowd], imageID: Int64(index),
                              originalWidth: sceneSide, originalHeight: sceneSide)
        }
        try writer.finish(classNames: ["filled", "hollow"])
        let dataset = try DetectionDataset(path: folder.file("scenes.h5"))
        XCTAssertEqual(try dataset.readBoxes(0..<1), [[object, crowd]])
        let model = try Model<WindowHead>(smallDetectorConfiguration(classes: 2), seed: 1)
        var sampling = WindowSampling()
        sampling.viewsPerObject = 3
        sampling.negativesPerPositive = 4
        sampling.hardNegativesPerPositive = 0
        let sampler = try WindowSampler(dataset: dataset, model: model, sampling: sampling, batchSize: 1000, seed: 2)
        let stream = try XCTUnwrap(sampler.stream(epoch: 0) as? WindowStream)
        let positives = stream.windows.filter { $0.label > 0 }
        XCTAssertEqual(positives.count, 4 * 3, "three views of each object, none of the ignore region")
        XCTAssertTrue(positives.allSatisfy { $0.label == 1 })
        let negatives = stream.windows.filter { $0.label == 0 }
        XCTAssertEqual(negatives.count, 4 * 3 * 4)
        for window in negatives {
            let square = model.head.windowSquare(left: window.left, top: window.top, scale: Float(window.levelWidth) / Float(sceneSide))
            XCTAssertLessThan(intersectionOverUnion(square, objectSquare(crowd)), sampling.negativeIoU, "a background window on the crowd")
        }
    }

    /// Three black scenes, each with one object box (2, 4)-(14, 16) whose pixel in column x is `pixel(x)`.
    func threeScenes(in folder: TemporaryFolder, pixel: (Int) -> UInt8) throws -> DetectionDataset {
        let writer = try DatasetWriter(path: folder.file("scenes.h5"), task: .detection, channels: 1, height: sceneSide, width: sceneSide,
                                       source: "test")
        for index in 0..<3 {
            var image = Image(width: sceneSide, height: sceneSide, channels: 1)
            for y in 4..<16 { for x in 2..<14 { image.pixels[y * sceneSide + x] = pixel(x) } }
            try writer.append(image: image, boxes: [DetectionBox(x1: 2, y1: 4, x2: 14, y2: 16, label: 0)], imageID: Int64(index),
                              originalWidth: sceneSide, originalHeight: sceneSide)
        }
        try writer.finish(classNames: ["filled", "hollow"])
        return try DetectionDataset(path: folder.file("scenes.h5"))
    }

    func testANoiseFloorRaisesTheWindowCropsOnly() throws {
        let folder = TemporaryFolder()
        let dataset = try threeScenes(in: folder) { _ in 255 }
        let model = try Model<WindowHead>(smallDetectorConfiguration(classes: 2), seed: 1)
        var sampling = WindowSampling()
        sampling.hardNegativesPerPositive = 0
        func batch(noise: Float) throws -> Batch {
            let sampler = try WindowSampler(dataset: dataset, model: model, sampling: sampling, noise: noise, batchSize: 1000, seed: 2)
            return try XCTUnwrap(sampler.stream(epoch: 1).nextBatch())
        }
        let plain = try batch(noise: 0), noisy = try batch(noise: 0.3), again = try batch(noise: 0.3)
        XCTAssertEqual(noisy.windows?.classes, plain.windows?.classes, "the same windows")
        XCTAssertEqual(noisy.images.scalars, again.images.scalars, "keyed draws repeat")
        let pairs = zip(plain.images.scalars, noisy.images.scalars)
        XCTAssertTrue(pairs.allSatisfy { $1 >= $0 - 1e-6 }, "noise only raises pixels (by maximum)")
        let raised = pairs.filter { $1 > $0 + 1e-6 }.count
        XCTAssertGreaterThan(raised, plain.images.count / 4, "most dark pixels get noise")
    }

    /// `nearest` 1 crops every window nearest-neighbour: on a scene of a few distinct values
    /// (including the padding background) its windows show only those values, while bilinear
    /// crops of the same windows blend them at the object's edges.
    func testNearestWindowsShowOnlyTheScenesOwnValues() throws {
        let folder = TemporaryFolder()
        let dataset = try threeScenes(in: folder) { x in UInt8(100 + 50 * (x % 2)) }
        let model = try Model<WindowHead>(smallDetectorConfiguration(classes: 2), seed: 1)
        let configuration = model.configuration
        var sampling = WindowSampling()
        sampling.hardNegativesPerPositive = 0
        func batch(nearest: Float) throws -> Batch {
            let sampler = try WindowSampler(dataset: dataset, model: model, sampling: sampling, nearest: nearest, batchSize: 1000, seed: 2)
            return try XCTUnwrap(sampler.stream(epoch: 1).nextBatch())
        }
        let normalised = { (pixel: Float) in (pixel / 255 - configuration.mean[0]) / configuration.std[0] }
        let values = [normalised(0), normalised(100), normalised(150), model.context().background[0]]
        let isSceneValue = { (x: Float) in values.contains { abs($0 - x) < 1e-4 } }
        let bilinear = try batch(nearest: 0), nearest = try batch(nearest: 1)
        XCTAssertEqual(nearest.windows?.classes, bilinear.windows?.classes, "the same windows")
        XCTAssertTrue(nearest.images.scalars.allSatisfy(isSceneValue), "nearest crops invent no values")
        XCTAssertGreaterThan(bilinear.images.scalars.filter { !isSceneValue($0) }.count, 100, "bilinear crops blend neighbours")
        let half = try batch(nearest: 0.5)
        let windowSize = half.images.count / half.images.shape[0]
        let blended = (0..<half.images.shape[0]).filter { window in
            half.images.scalars[(window * windowSize)..<((window + 1) * windowSize)].contains { !isSceneValue($0) }
        }.count
        XCTAssertGreaterThan(blended, 0, "nearest=0.5 leaves some windows bilinear")
        XCTAssertLessThan(blended, half.images.shape[0], "and crops others nearest")
    }

    /// Nearest-neighbour window crops take, for each output pixel, the input pixel whose span holds
    /// its centre: an 8-pixel row resized to 5 reads pixels 0, 2, 4, 5, 7.
    func testANearestWindowCropReadsThePixelUnderEachCentre() {
        let image = Tensor(shape: [1, 1, 8, 8], scalars: (0..<64).map(Float.init))
        let crop = image.resizedBilinearWindow(height: 5, width: 5, left: -1, top: 0, size: 6, background: [-1], nearest: true)
        let columns = [0, 2, 4, 5, 7]
        for (oy, y) in columns.enumerated() {
            XCTAssertEqual(Array(crop.scalars[(oy * 6)..<(oy * 6 + 6)]), [-1] + columns.map { Float(y * 8 + $0) })
        }
        XCTAssertEqual(Array(crop.scalars[30..<36]), Array(repeating: -1, count: 6), "rows below the level are background")
    }
}

final class SecondLookTests: XCTestCase {
    /// Small detector (window 16, scales 2 to 1) on a 40x40 image.
    func head(flipAverage: Bool = false, shiftAverage: Bool = false) throws -> WindowHead {
        var configuration = smallDetectorConfiguration(classes: 2)
        configuration.settings.flipAverage = flipAverage
        configuration.settings.shiftAverage = shiftAverage
        return try Model<WindowHead>(configuration, seed: 1).head
    }

    func testTheFittingWindowCentresTheBoxAtTheLevelItFills() throws {
        let head = try head()
        // A 6 x 10 box: its square (side 10) fills the 16-pixel window at scale 1.6, a level of 64 x 64.
        let fit = head.fittingWindow(DetectionBox(x1: 12, y1: 20, x2: 18, y2: 30, label: 0), height: 40, width: 40)
        XCTAssertEqual([fit.height, fit.width], [64, 64])
        XCTAssertEqual(fit.scale, 1.6, accuracy: 1e-6)
        XCTAssertEqual([fit.left, fit.top], [16, 32])   // centre (15, 25) * 1.6 - 8
        // Boxes larger or smaller than the pyramid covers take its end levels.
        XCTAssertEqual(head.fittingWindow(DetectionBox(x1: 0, y1: 0, x2: 30, y2: 30, label: 0), height: 40, width: 40).scale, 1)
        XCTAssertEqual(head.fittingWindow(DetectionBox(x1: 0, y1: 0, x2: 2, y2: 2, label: 0), height: 40, width: 40).scale, 2)
    }

    /// `refine` crops each detection's fitting window, and from the window's outputs takes the
    /// box regressed there and the geometric mean of the old score and the class probability.
    func testASecondLookRescoresAndRegressesFromTheFittingWindow() throws {
        let head = try head()
        var generator = SeededGenerator(seed: 4)
        let image = Tensor(shape: [1, 1, 40, 40], scalars: (0..<1600).map { _ in generator.nextUniform() })
        let detections = [Detection(box: DetectionBox(x1: 12, y1: 20, x2: 18, y2: 30, label: 1), score: 0.64),
                          Detection(box: DetectionBox(x1: 0, y1: 0, x2: 30, y2: 30, label: 0), score: 0.25)]
        // Logits (background, class 0, class 1) and deltas for each window.
        let outputs: [[Float]] = [[0, 0, log(2), 1, -2, 0.5, 0], [log(3), 0, 0, 0, 0, 0, -1]]
        var seen: Tensor?
        let context = PredictionContext(geometry: InputGeometry(height: 40, width: 40), background: [-1]) { crops in
            seen = crops
            return Tensor(shape: [crops.shape[0], 7, 1, 1], scalars: outputs.flatMap { $0 })
        }
        let refined = head.refine(detections, in: image, context)
        // The crops are the fitting windows of the pyramid level.
        let crops = try XCTUnwrap(seen)
        XCTAssertEqual(crops.shape, [2, 1, 16, 16])
        let first = image.resizedBilinearWindow(height: 64, width: 64, left: 16, top: 32, size: 16, background: [-1])
        XCTAssertEqual(Array(crops.scalars[0..<256]), first.scalars)
        let second = image.resizedBilinearWindow(height: 40, width: 40, left: 7, top: 7, size: 16, background: [-1])
        XCTAssertEqual(Array(crops.scalars[256..<512]), second.scalars)
        // Scores: sqrt(0.64 * p(class 1) = 2/4) and sqrt(0.25 * p(class 0) = 1/5).
        XCTAssertEqual(refined[0].score, (0.64 * 0.5).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(refined[1].score, (0.25 * 0.2).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(refined.map(\.box.label), [1, 0])
        // Boxes: the deltas decoded against each window's square in image pixels.
        let square = DetectionBox(x1: 10, y1: 20, x2: 20, y2: 30, label: 1)
        XCTAssertEqual(refined[0].box, WindowHead.coder.decode(deltas: (1, -2, 0.5, 0), reference: square))
        XCTAssertEqual(refined[1].box, WindowHead.coder.decode(deltas: (0, 0, 0, -1), reference: DetectionBox(x1: 7, y1: 7, x2: 23, y2: 23, label: 0)))
    }

    /// With `flipAverage` the mirrored crops follow the crops; probabilities and deltas are
    /// averaged, the mirror's x offset negated.
    func testAMirroredSecondLookAveragesWithTheMirrorImage() throws {
        let head = try head(flipAverage: true)
        var generator = SeededGenerator(seed: 5)
        let image = Tensor(shape: [1, 1, 40, 40], scalars: (0..<1600).map { _ in generator.nextUniform() })
        let detection = Detection(box: DetectionBox(x1: 12, y1: 20, x2: 18, y2: 30, label: 1), score: 0.5)
        var seen: Tensor?
        let context = PredictionContext(geometry: InputGeometry(height: 40, width: 40), background: [-1]) { crops in
            seen = crops
            // The window: p(class 1) = 1/2, dx 1; its mirror: p(class 1) = 1/4, dx 0.6 (that is -0.6 unmirrored).
            return Tensor(shape: [2, 7, 1, 1], scalars: [0, 0, log(2), 1, 0.2, 0, 0, log(2), 0, 0, 0.6, 0.4, 0, 0])
        }
        let refined = head.refine([detection], in: image, context)
        let crops = try XCTUnwrap(seen)
        XCTAssertEqual(crops.shape, [2, 1, 16, 16])
        for y in 0..<16 {
            for x in 0..<16 { XCTAssertEqual(crops.scalars[256 + y * 16 + x], crops.scalars[y * 16 + 15 - x]) }
        }
        XCTAssertEqual(refined[0].score, (0.5 * (0.5 + 0.25) / 2).squareRoot(), accuracy: 1e-6)
        let square = DetectionBox(x1: 10, y1: 20, x2: 20, y2: 30, label: 1)
        let expected = WindowHead.coder.decode(deltas: ((1 - 0.6) / 2, (0.2 + 0.4) / 2, 0, 0), reference: square)
        XCTAssertEqual(refined[0].box.x1, expected.x1, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.y1, expected.y1, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.x2, expected.x2, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.y2, expected.y2, accuracy: 1e-5)
    }

    /// With `shiftAverage` each detection is looked at from five windows, its fitting window
    /// and that window moved half a stride (2 level pixels) each way; the probabilities and the
    /// decoded boxes are averaged.
    func testAShiftedSecondLookAveragesFiveWindows() throws {
        let head = try head(shiftAverage: true)
        var generator = SeededGenerator(seed: 6)
        let image = Tensor(shape: [1, 1, 40, 40], scalars: (0..<1600).map { _ in generator.nextUniform() })
        let detection = Detection(box: DetectionBox(x1: 12, y1: 20, x2: 18, y2: 30, label: 0), score: 0.5)
        // Logits (background 0, class 0 at 0, class 1 at log r): p(class 0) = 1 / (2 + r); for the
        // second view the other two logits are off, p = 1. So p is 1/3, 1, 1/4, 1/5, 1/6.
        let ratios: [Float] = [1, 0, 2, 3, 4]
        var seen: Tensor?
        let context = PredictionContext(geometry: InputGeometry(height: 40, width: 40), background: [-1]) { crops in
            seen = crops
            return Tensor(shape: [5, 7, 1, 1], scalars: ratios.flatMap { r -> [Float] in
                r == 0 ? [-100, 0, -100, 0, 0, 0, 0] : [0, 0, log(r), 0, 0, 0, 0]
            })
        }
        let refined = head.refine([detection], in: image, context)
        let crops = try XCTUnwrap(seen)
        XCTAssertEqual(crops.shape, [5, 1, 16, 16])
        // The fitting window is at (16, 32) of the 64 x 64 level; the others 2 pixels off it.
        for (view, (left, top)) in [(16, 32), (18, 32), (14, 32), (16, 34), (16, 30)].enumerated() {
            let expected = image.resizedBilinearWindow(height: 64, width: 64, left: left, top: top, size: 16, background: [-1])
            XCTAssertEqual(Array(crops.scalars[(view * 256)..<((view + 1) * 256)]), expected.scalars, "view \(view)")
        }
        let probabilities: [Float] = [1.0 / 3, 1, 1.0 / 4, 1.0 / 5, 1.0 / 6]
        let mean = probabilities.reduce(0, +) / 5
        XCTAssertEqual(refined[0].score, (0.5 * mean).squareRoot(), accuracy: 1e-5)
        // Zero deltas: each view's box is its square; their mean is the fitting square.
        XCTAssertEqual(refined[0].box.x1, 10, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.y1, 20, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.x2, 20, accuracy: 1e-5)
        XCTAssertEqual(refined[0].box.y2, 30, accuracy: 1e-5)
    }
}
