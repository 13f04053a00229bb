import XCTest
import Core
import Datasets
@testable import Tasks

/// The models in models/ load, describe themselves, and get the sample images right.
/// They are never retrained here: models/README.md says how they were made.
final class ShippedModelTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    func testFashionClassifierGetsTheSamplesRight() throws {
        let (model, checkpoint) = try Model.load(path: path("models/fashion-classifier.h5"), expecting: .classification)
        XCTAssertEqual(checkpoint.classNames.count, 10)
        XCTAssertEqual([model.configuration.inputChannels, model.configuration.inputHeight, model.configuration.inputWidth], [1, 28, 28])
        let images = try collectImagePaths([path("samples/fashion")])
        XCTAssertEqual(images.count, 20)
        let logits = model.predict(try loadImages(images, for: model.configuration))
        var correct = 0
        for (i, image) in images.enumerated() {
            let row = Array(UnsafeBufferPointer(start: logits.pointer + i * 10, count: 10))
            let predicted = row.indices.max { row[$0] < row[$1] }!
            // Sample files are named NNNN-<class>.png after their true class.
            let truth = URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent.split(separator: "-", maxSplits: 1)[1]
            let name = model.configuration.classes[predicted].lowercased().replacingOccurrences(of: "/", with: "-")
                .replacingOccurrences(of: " ", with: "-")
            if name == truth { correct += 1 }
        }
        // The model's test accuracy is about 93%: 20 samples leave room for one or two misses.
        XCTAssertGreaterThanOrEqual(correct, 18, "\(correct) of 20 samples classified correctly")
    }

    func testFashionTaggerFindsTheItemsOnTheSampleCanvases() throws {
        let (model, _) = try Model.load(path: path("models/fashion-tagger.h5"), expecting: .tagging)
        let names = model.configuration.classes.map { $0.lowercased().replacingOccurrences(of: "/", with: "-").replacingOccurrences(of: " ", with: "-") }
        let thresholds = try XCTUnwrap(model.configuration.thresholds, "the shipped tagger stores tuned thresholds")
        let images = try collectImagePaths([path("samples/canvases")])
        XCTAssertEqual(images.count, 8)
        let probabilities = model.predict(try loadImages(images, for: model.configuration)).sigmoid()
        var exact = 0, truePositives = 0, falsePositives = 0, falseNegatives = 0
        for (i, image) in images.enumerated() {
            // Canvas files are named NN-<tag>+<tag>.png after the items pasted on them.
            let truth = Set(URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent
                .split(separator: "-", maxSplits: 1)[1].split(separator: "+").map(String.init))
            let predicted = Set(names.indices.filter { probabilities.pointer[i * names.count + $0] >= thresholds[$0] }.map { names[$0] })
            if predicted == truth { exact += 1 }
            truePositives += predicted.intersection(truth).count
            falsePositives += predicted.subtracting(truth).count
            falseNegatives += truth.subtracting(predicted).count
        }
        // The model's micro-F1 on 2,000 test canvases is 0.905 (models/README.md); a tagger at
        // chance level would score about 0.3 here.
        let microF1 = PrecisionRecall(truePositives: truePositives, falsePositives: falsePositives,
                                      falseNegatives: falseNegatives).f1
        XCTAssertGreaterThanOrEqual(microF1, 0.7, "micro-F1 \(microF1) on the sample canvases")
        XCTAssertGreaterThanOrEqual(exact, 4, "\(exact) of 8 canvases tagged exactly")
    }
}
