import XCTest
import PerceptCore
import PerceptDatasets
@testable import PerceptTasks

/// The models in models/ load, describe themselves, and get the sample images right.
/// They are never retrained here: models/README.md says how they were made.
final class ShippedModelTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    /// The classifier, and the two that the detector's and the segmenter's recipes start from.
    func testFashionClassifiersGetTheSamplesRight() throws {
        for (file, widths) in [("fashion-classifier.h5", [32, 64, 128]), ("fashion-classifier-long.h5", [32, 64, 128]),
                               ("fashion-window-classifier.h5", [32, 64]), ("fashion-multi.h5", [32, 64, 128])] {
            let (model, _) = try Classifier.load(path: path("models/" + file))
            XCTAssertEqual(model.configuration.classes.count, 10, file)
            XCTAssertEqual([model.configuration.inputChannels, model.configuration.inputHeight, model.configuration.inputWidth], [1, 28, 28], file)
            XCTAssertEqual(model.configuration.backbone.widths, widths, file)
            let images = try collectImagePaths([path("samples/fashion")])
            XCTAssertEqual(images.count, 20)
            let predictions = model.predict(try loadImages(images, for: model.configuration))
            var correct = 0
            for (image, prediction) in zip(images, predictions) {
                // Sample files are named NNNN-<class>.png after their true class.
                let truth = URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent.split(separator: "-", maxSplits: 1)[1]
                let name = model.configuration.classes[prediction.label].lowercased().replacingOccurrences(of: "/", with: "-")
                    .replacingOccurrences(of: " ", with: "-")
                if name == truth { correct += 1 }
            }
            // Test accuracies are 92-94%: 20 samples leave room for one or two misses.
            XCTAssertGreaterThanOrEqual(correct, 18, "\(file): \(correct) of 20 samples classified correctly")
        }
        // The window classifier's convolutions are unpadded, as the detector's.
        XCTAssertEqual(try Classifier.load(path: path("models/fashion-window-classifier.h5")).0.configuration.backbone.padding, 0)
    }

    /// A recipe whose backbone starts from a shipped classifier finds it in models/ and it fits the
    /// recipe's backbone: otherwise a default run would fall back to training from scratch.
    func testRecipesBackboneWeightsAreShippedAndFit() throws {
        for (task, backbone) in [("detection", DetectionConfig().backbone), ("tagging", TaggingConfig().backbone), ("segmentation", SegmentationConfig().backbone),
                                 ("multi-task", MultiTaskConfig().backbone)] {
            let name = backbone.weights
            let pretrained = try PretrainedBackbone(path: path("models/" + name))
            XCTAssertEqual(pretrained.configuration, backbone.configuration(inputChannels: 1), "\(task): \(name)")
            XCTAssertEqual(pretrained.classes.count, 10, "\(task): \(name)")
        }
    }

    func testFashionTaggersFindTheItemsOnTheSampleCanvases() throws {
        for file in ["fashion-tagger.h5", "fashion-multi.h5"] { try checkTagger(file) }
    }

    func checkTagger(_ file: String) throws {
        let (model, _) = try Tagger.load(path: path("models/" + file))
        let names = model.configuration.classes.map { $0.lowercased().replacingOccurrences(of: "/", with: "-").replacingOccurrences(of: " ", with: "-") }
        XCTAssertEqual(model.configuration.settings.thresholds.count, 10, "the shipped tagger stores tuned thresholds")
        let images = try collectImagePaths([path("samples/canvases")])
        XCTAssertEqual(images.count, 8)
        let predictions = model.predict(try loadImages(images, for: model.configuration))
        var exact = 0, truePositives = 0, falsePositives = 0, falseNegatives = 0
        for (image, prediction) in zip(images, predictions) {
            // Canvas files are named NN-<tag>+<tag>.png after the items pasted on them.
            let truth = Set(URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent
                .split(separator: "-", maxSplits: 1)[1].split(separator: "+").map(String.init))
            let predicted = Set(prediction.tags.map { names[$0] })
            if predicted == truth { exact += 1 }
            truePositives += predicted.intersection(truth).count
            falsePositives += predicted.subtracting(truth).count
            falseNegatives += truth.subtracting(predicted).count
        }
        // The model's micro-F1 on 2,000 test canvases is 0.905 (models/README.md); a tagger at
        // chance level would score about 0.3 here.
        let microF1 = PrecisionRecall(truePositives: truePositives, falsePositives: falsePositives,
                                      falseNegatives: falseNegatives).f1
        XCTAssertGreaterThanOrEqual(microF1, 0.7, "\(file): micro-F1 \(microF1) on the sample canvases")
        XCTAssertGreaterThanOrEqual(exact, 4, "\(file): \(exact) of 8 canvases tagged exactly")
    }

    /// The shipped models' logits on the sample images (Fixtures/shipped-logits.json), written
    /// by the debug builds that shipped them on an AVX-512 CPU (the classifier's by session 22,
    /// the tagger's by session 19). Another kernel path sums in another order (the AVX2 or
    /// portable build, other BLAS kernels, the direct convolutions instead of Winograd's): the
    /// logits must agree to float rounding on each.
    func testShippedModelsGiveThePinnedLogits() throws {
        defer { Tensor.winogradEnabled = true }
        for winograd in [false, true] {
            Tensor.winogradEnabled = winograd
            try checkPinnedLogits()
        }
    }

    private func checkPinnedLogits() throws {
        let fixture = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: root.appendingPathComponent("Tests/TasksTests/Fixtures/shipped-logits.json"))) as? [String: [String: [String]]])
        func check(_ name: String, _ outputs: Tensor, _ images: [String]) throws {
            let pinned = try XCTUnwrap(fixture[name], "fixture lacks \(name)")
            XCTAssertEqual(pinned.count, images.count)
            let k = outputs.shape[1]
            for (i, image) in images.enumerated() {
                let file = URL(fileURLWithPath: image).lastPathComponent
                let expected = try XCTUnwrap(pinned[file], "fixture lacks \(name)/\(file)").map { Float(bitPattern: UInt32($0, radix: 16)!) }
                let got = Array(UnsafeBufferPointer(start: outputs.pointer + i * k, count: k))
                for (g, e) in zip(got, expected) {
                    XCTAssertEqual(g, e, accuracy: 1e-4 * max(1, abs(e)), "\(name) logits of \(file) (Winograd: \(Tensor.winogradEnabled))")
                }
            }
        }
        let (classifier, _) = try Classifier.load(path: path("models/fashion-classifier.h5"))
        let fashion = try collectImagePaths([path("samples/fashion")])
        try check("fashion-classifier", classifier.outputs(try loadImages(fashion, for: classifier.configuration)), fashion)
        let (tagger, _) = try Tagger.load(path: path("models/fashion-tagger.h5"))
        let canvases = try collectImagePaths([path("samples/canvases")])
        try check("fashion-tagger", tagger.outputs(try loadImages(canvases, for: tagger.configuration)), canvases)
    }

    /// The shipped files' architecture JSON decodes into the typed configurations and says what
    /// the models are.
    func testShippedArchitecturesDecode() throws {
        let (classifier, _) = try Classifier.load(path: path("models/fashion-classifier.h5"))
        let c = classifier.configuration
        XCTAssertEqual(c.backbone.kind, .resnet)
        XCTAssertEqual(c.backbone.widths, [32, 64, 128])
        XCTAssertEqual(c.head.loss, .crossEntropy)
        XCTAssertEqual(c.head.labelSmoothing, 0.1)
        XCTAssertEqual(c.head.layers.pooling, .global)
        let (tagger, _) = try Tagger.load(path: path("models/fashion-tagger.h5"))
        XCTAssertEqual(tagger.configuration.head.layers.pooling, .globalMax)
        XCTAssertEqual(tagger.configuration.settings.thresholds.count, 10)
        // Each file is refused as the other task, naming the file.
        XCTAssertThrowsError(try Tagger.load(path: path("models/fashion-classifier.h5"))) { error in
            XCTAssertTrue("\(error)".contains("fashion-classifier.h5: is a classification model, not tagging"), "\(error)")
        }
    }

    /// The shipped detector, as shipped (second looks included), finds the items of the first
    /// three sample scenes (test scenes, their boxes in samples/scenes/annotations.json): its
    /// test AP50 is 0.94 (models/README.md). Three, because a debug build takes about 20 s a scene.
    func testFashionDetectorsFindTheItemsOfTheSampleScenes() throws {
        for file in ["fashion-detector.h5", "fashion-multi.h5"] { try checkDetector(file) }
    }

    func checkDetector(_ file: String) throws {
        let (model, _) = try Model<WindowHead>.load(path: path("models/" + file))
        let c = model.configuration
        let data = try Data(contentsOf: root.appendingPathComponent("samples/scenes/annotations.json"))
        let coco = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let images = try XCTUnwrap(coco["images"] as? [[String: Any]])
        let annotations = try XCTUnwrap(coco["annotations"] as? [[String: Any]])
        let categories = try XCTUnwrap(c.head.categoryIDs)
        var evaluator = COCOEvaluator(categories: Array(0..<c.classes.count))
        for image in images.prefix(3) {
            let id = try XCTUnwrap((image["id"] as? NSNumber)?.intValue), name = try XCTUnwrap(image["file_name"] as? String)
            let truth = try annotations.filter { ($0["image_id"] as? NSNumber)?.intValue == id }.map { annotation -> DetectionBox in
                let b = try XCTUnwrap(annotation["bbox"] as? [Double]), category = try XCTUnwrap((annotation["category_id"] as? NSNumber)?.int64Value)
                let label = try XCTUnwrap(categories.firstIndex(of: category))
                return DetectionBox(x1: Float(b[0]), y1: Float(b[1]), x2: Float(b[0] + b[2]), y2: Float(b[1] + b[3]), label: Int32(label))
            }
            let png = try PNG.read(path: path("samples/scenes/" + name), channels: 1)
            let detections = model.predict(normalisedTensor(png, mean: c.mean, std: c.std),
                                           geometry: InputGeometry(height: png.height, width: png.width))[0]
            evaluator.add(imageID: id, groundTruth: truth, detections: detections)
            guard file == "fashion-detector.h5" else { continue }
            // As before the configuration redesign (`detect predict` of that code): the same
            // detections in the same order, boxes and scores within 1e-4.
            let before = try pinnedPredictions().detector.filter { $0["file_name"] as? String == name }
            XCTAssertEqual(detections.count, before.count, name)
            for (detection, old) in zip(detections, before) {
                let bbox = try XCTUnwrap(old["bbox"] as? [Double]), score = try XCTUnwrap(old["score"] as? Double)
                XCTAssertEqual(categories[Int(detection.box.label)], (old["category_id"] as? NSNumber)?.int64Value, name)
                let box = detection.box
                for (got, want) in zip([box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1], bbox) {
                    XCTAssertEqual(Double(got), want, accuracy: 1e-4 * max(1, abs(want)), name)
                }
                XCTAssertEqual(Double(detection.score), score, accuracy: 1e-4, name)
            }
        }
        let summary = evaluator.summarize()
        // A detector guessing boxes would score near 0; 3 scenes leave room below the test figure.
        XCTAssertGreaterThanOrEqual(summary.ap50, 0.6, "\(file): AP50 \(summary.ap50) on the sample scenes")
        XCTAssertGreaterThanOrEqual(summary.ap, 0.35, "\(file): AP \(summary.ap) on the sample scenes")
    }

    /// What the shipped models predicted on the samples (Fixtures/shipped-predictions.json and
    /// shipped-masks/): the detector's as written by the code before the configuration redesign
    /// (its release `predict` command on a CPU with AVX-512), the segmenter's as written when
    /// session 18 shipped it (release `segment predict`), the tagger's when session 19 did and
    /// the classifier's when session 22 did (their probabilities from the library, rounded to
    /// six places), all on AVX-512.
    func pinnedPredictions() throws -> (classifier: [String: [String: Any]], tagger: [String: [String: Any]], detector: [[String: Any]]) {
        let data = try Data(contentsOf: root.appendingPathComponent("Tests/TasksTests/Fixtures/shipped-predictions.json"))
        let fixture = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (try XCTUnwrap(fixture["classifier"] as? [String: [String: Any]]), try XCTUnwrap(fixture["tagger"] as? [String: [String: Any]]),
                try XCTUnwrap(fixture["detector"] as? [[String: Any]]))
    }

    /// The shipped classifier, tagger and segmenter predict on the samples as pinned: the same
    /// labels, tags and masks, probabilities within 1e-5.
    func testShippedModelsPredictAsPinned() throws {
        let pinned = try pinnedPredictions()
        let (classifier, _) = try Classifier.load(path: path("models/fashion-classifier.h5"))
        let fashion = try collectImagePaths([path("samples/fashion")])
        for (image, prediction) in zip(fashion, classifier.predict(try loadImages(fashion, for: classifier.configuration))) {
            let name = URL(fileURLWithPath: image).lastPathComponent, old = try XCTUnwrap(pinned.classifier[name], name)
            XCTAssertEqual(classifier.configuration.classes[prediction.label], old["label"] as? String, name)
            let probabilities = try XCTUnwrap(old["probabilities"] as? [Double])
            for (got, want) in zip(prediction.probabilities, probabilities) { XCTAssertEqual(Double(got), want, accuracy: 1e-5, name) }
        }
        let (tagger, _) = try Tagger.load(path: path("models/fashion-tagger.h5"))
        let canvases = try collectImagePaths([path("samples/canvases")])
        for (image, prediction) in zip(canvases, tagger.predict(try loadImages(canvases, for: tagger.configuration))) {
            let name = URL(fileURLWithPath: image).lastPathComponent, old = try XCTUnwrap(pinned.tagger[name], name)
            XCTAssertEqual(prediction.tags.map { tagger.configuration.classes[$0] }, old["tags"] as? [String], name)
            let probabilities = try XCTUnwrap(old["probabilities"] as? [Double])
            for (got, want) in zip(prediction.probabilities, probabilities) { XCTAssertEqual(Double(got), want, accuracy: 1e-5, name) }
        }
        let (segmenter, _) = try Model<SegmentationHead>.load(path: path("models/fashion-segmenter.h5"))
        let scenes = try collectImagePaths([path("samples/segmentation")])
        for (image, prediction) in zip(scenes, segmenter.predict(try loadImages(scenes, for: segmenter.configuration))) {
            let name = URL(fileURLWithPath: image).lastPathComponent
            let old = try PNG.readIndexMask(path: path("Tests/TasksTests/Fixtures/shipped-masks/" + name))
            XCTAssertEqual(prediction.mask, old.pixels, name)
        }
    }

    /// The shipped segmenter labels the items of the sample canvases (first 8 test canvases,
    /// named NN-<class>+<class>.png after their items) with their classes: on each canvas the
    /// classes covering most item pixels are the canvas's own. Its test mIoU is 0.80.
    func testFashionSegmentersLabelTheSampleCanvases() throws {
        for file in ["fashion-segmenter.h5", "fashion-multi.h5"] { try checkSegmenter(file) }
    }

    func checkSegmenter(_ file: String) throws {
        let (model, _) = try Model<SegmentationHead>.load(path: path("models/" + file))
        let names = model.configuration.classes.map { $0.lowercased().replacingOccurrences(of: "/", with: "-").replacingOccurrences(of: " ", with: "-") }
        let images = try collectImagePaths([path("samples/segmentation")])
        XCTAssertEqual(images.count, 8)
        let predictions = model.predict(try loadImages(images, for: model.configuration))
        var right = 0, total = 0
        for (image, prediction) in zip(images, predictions) {
            let truth = Set(URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent
                .split(separator: "-", maxSplits: 1)[1].split(separator: "+").map(String.init))
            var pixels = [Int](repeating: 0, count: names.count)
            for label in prediction.mask { pixels[Int(label)] += 1 }
            let itemPixels = pixels.dropFirst().reduce(0, +)
            let correct = names.indices.dropFirst().filter { truth.contains(names[$0]) }.reduce(0) { $0 + pixels[$1] }
            right += correct
            total += itemPixels
        }
        XCTAssertGreaterThan(total, 0)
        // Chance among 10 classes would put about 10% of item pixels in the right classes.
        XCTAssertGreaterThanOrEqual(Double(right) / Double(total), 0.75, "\(file): \(right) of \(total) item pixels in the canvases' own classes")
    }

    /// The shipped multi-task model: four heads on one backbone, and one pass over an image
    /// gives each head what its single-task view predicts on that image.
    func testFashionMultiTaskModelPredictsAsItsHeadsDo() throws {
        let (model, _) = try MultiTaskModel.load(path: path("models/fashion-multi.h5"))
        XCTAssertEqual(model.tasks, [.classification, .tagging, .detection, .segmentation])
        let image = try PNG.read(path: path("samples/scenes/00.png"), channels: 1)
        let joint = model.predict(image: image, tasks: Set(VisionTask.allCases))
        let c = model.configuration
        let input = normalisedTensor(image, mean: c.mean, std: c.std), geometry = InputGeometry(height: image.height, width: image.width)
        let classifier = try XCTUnwrap(model.model(ClassificationHead.self)), tagger = try XCTUnwrap(model.model(TaggingHead.self))
        let segmenter = try XCTUnwrap(model.model(SegmentationHead.self)), detector = try XCTUnwrap(model.model(WindowHead.self))
        XCTAssertEqual(joint.classification?.logits, classifier.predict(input, geometry: geometry)[0].logits)
        XCTAssertEqual(joint.tagging?.probabilities, tagger.predict(input, geometry: geometry)[0].probabilities)
        XCTAssertEqual(joint.segmentation?.mask, segmenter.predict(images: [image])[0].mask)
        let boxes = try XCTUnwrap(joint.detection)
        XCTAssertFalse(boxes.isEmpty)
        XCTAssertEqual(boxes.map(\.score), detector.predict(images: [image])[0].map(\.score))
    }
}

