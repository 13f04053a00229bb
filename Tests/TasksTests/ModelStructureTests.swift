import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// Every layer of a model takes part in training and in its file: optional layers (the head's
/// hidden layer, ResNet projection shortcuts) included.
final class ModelStructureTests: XCTestCase {
    func configuration(residual: Bool) -> ModelConfiguration<ClassificationHead> {
        let backbone = residual
            ? BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])
            : BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [4, 8])
        let layers = VectorHeadConfiguration(pooling: residual ? .global : .flatten, inFeatures: residual ? 8 : 8 * 3 * 3,
                                             hidden: 6, outputs: 3)
        return ModelConfiguration(task: .classification, inputChannels: 1, inputHeight: 12, inputWidth: 12,
                                  classes: ["a", "b", "c"], backbone: backbone, head: .init(layers: layers), settings: .init(),
                                  mean: [0.5], std: [0.25])
    }

    func testOptionalLayersAreAmongTheParametersAndBuffers() throws {
        let plain = try Classifier(configuration(residual: false), seed: 3)
        let plainPaths = Set(plain.namedParameters.map(\.path))
        XCTAssertTrue(plainPaths.isSuperset(of: ["head.hiddenLayer.weight", "head.hiddenLayer.bias", "head.output.weight"]),
                      "parameters found: \(plainPaths.sorted())")
        // Counting by hand: conv 1->4 and 4->8 (3x3, bias), hidden 72->6, output 6->3.
        XCTAssertEqual(plain.parameterCount, (4 * 9 + 4) + (8 * 4 * 9 + 8) + (72 * 6 + 6) + (6 * 3 + 3))

        let residual = try Classifier(configuration(residual: true), seed: 3)
        let residualPaths = Set(residual.namedParameters.map(\.path))
        XCTAssertTrue(residualPaths.isSuperset(of: ["backbone.stages.1.blocks.0.projection.weight",
                                                    "backbone.stages.1.blocks.0.projectionNorm.weight"]),
                      "parameters found: \(residualPaths.sorted())")
        let bufferPaths = Set(residual.namedBuffers.map(\.path))
        XCTAssertTrue(bufferPaths.contains("backbone.stages.1.blocks.0.projectionNorm.runningMean"),
                      "buffers found: \(bufferPaths.sorted())")
    }

    func testSavedModelsReloadWithIdenticalOutputs() throws {
        let folder = TemporaryFolder()
        var generator = SeededGenerator(seed: 9)
        let images = Tensor.randomNormal([5, 1, 12, 12], using: &generator)
        for residual in [false, true] {
            // A seed other than the loader's 0, so nothing left out of the file can match by chance.
            let model = try Classifier(configuration(residual: residual), seed: 7)
            if residual {
                // Move the batch-norm running statistics away from their initial values.
                model.setMode(.training)
                _ = model(images)
            }
            let path = folder.file("model-\(residual).h5")
            try model.save(to: path, epoch: 2, step: 10, metadata: ["note": "test"])
            let (reloaded, checkpoint) = try Classifier.load(path: path)
            XCTAssertEqual([checkpoint.epoch, checkpoint.step], [2, 10])
            XCTAssertEqual(checkpoint.metadata["note"], "test")
            XCTAssertEqual(reloaded.configuration, model.configuration)
            XCTAssertEqual(reloaded.outputs(images).scalars, model.outputs(images).scalars,
                           residual ? "residual model" : "plain model with a hidden layer")
        }
    }

    /// The pooled stem downsamples like a stride-2 stem; configurations written before the
    /// option existed still decode (as no pooling).
    func testStemPoolHalvesTheStemAndOldConfigurationsDecode() throws {
        var pooled = BackboneConfiguration(kind: .resnet, inputChannels: 1, widths: [4, 8], blocks: [1, 1])
        pooled.stemPool = true
        var rng = SeededGenerator(seed: 5)
        let backbone = try pooled.make(using: &rng)
        let x = Tensor.randomNormal([2, 1, 12, 10], using: &rng)
        let features = backbone.features(x, through: nil)
        XCTAssertEqual(features.maps.map(\.shape), [[2, 1, 12, 10], [2, 4, 6, 5], [2, 4, 6, 5], [2, 8, 3, 3]])
        XCTAssertEqual(features.info, [FeatureMapInfo(name: "input", channels: 1, stride: 1),
                                       FeatureMapInfo(name: "stem", channels: 4, stride: 2),
                                       FeatureMapInfo(name: "stage1", channels: 4, stride: 2),
                                       FeatureMapInfo(name: "stage2", channels: 8, stride: 4)])

        // A head reading a shallow map stops the backbone there.
        XCTAssertEqual(backbone.features(x, through: "stem").info.map(\.name), ["input", "stem"])

        let json = try JSONEncoder().encode(pooled)
        XCTAssertEqual(try JSONDecoder().decode(BackboneConfiguration.self, from: json), pooled)
        let old = #"{"kind":"resnet","inputChannels":1,"widths":[4,8],"blocks":[1,1],"stemStride":2}"#
        let decoded = try JSONDecoder().decode(BackboneConfiguration.self, from: Data(old.utf8))
        XCTAssertFalse(decoded.poolsStem)
        XCTAssertEqual(decoded.stemStride, 2)
    }

    /// Score-max pooling scores every position with the head's linear layer and keeps each
    /// output's maximum: checked against the same sums written out.
    func testScoreMaxHeadTakesTheBestPositionPerOutput() throws {
        var rng = SeededGenerator(seed: 12)
        let map = FeatureMapInfo(name: "stage1", channels: 3, stride: 1)
        let head = try ClassificationHead(.init(layers: VectorHeadConfiguration(pooling: .scoreMax, inFeatures: 3, outputs: 2)),
                                          features: [map], geometry: InputGeometry(height: 2, width: 3), seed: 0, using: &rng)
        let x = Tensor.randomNormal([2, 3, 2, 3], using: &rng)
        let logits = head(FeatureMaps(info: [map], maps: [x]))
        XCTAssertEqual(logits.shape, [2, 2])
        let w = head.output.weight.tensor.scalars, b = head.output.bias!.tensor.scalars, xs = x.scalars
        for n in 0..<2 {
            for o in 0..<2 {
                var best = -Float.infinity
                for p in 0..<6 {
                    var s = b[o]
                    for c in 0..<3 { s += w[o * 3 + c] * xs[(n * 3 + c) * 6 + p] }
                    best = max(best, s)
                }
                XCTAssertEqual(logits.scalars[n * 2 + o], best, accuracy: 1e-5)
            }
        }
        let json = try JSONEncoder().encode(head.architecture)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains("score_max"))
    }

    /// A tagger initialised at the base rates predicts each tag's frequency for any image, so
    /// its first loss is the base rates' entropy (not the several nats of random logits).
    func testBaseRateInitialisationPredictsTheTagFrequencies() throws {
        let folder = TemporaryFolder()
        let positiveRate = try writeTaggingData(folder.file("tags.h5"), count: 64, seed: 5)
        let dataset = try TaggingDataset(path: folder.file("tags.h5"))
        let rates = try tagFrequencies(dataset)
        let tags = try dataset.readTags(0..<64)
        for k in 0..<generatedTagCount {
            let set = stride(from: k, to: tags.count, by: generatedTagCount).filter { tags[$0] == 1 }.count
            XCTAssertEqual(rates[k], Float(set) / 64, accuracy: 1e-6)
        }
        XCTAssertEqual(Double(rates.reduce(0, +)) / Double(generatedTagCount), positiveRate, accuracy: 1e-6)

        let configuration = try smallTaggerConfiguration(dataset: dataset, residual: true)
        let model = try Tagger(configuration, seed: 3)
        model.head.initializeAtBaseRates(rates, seed: 4)
        model.setMode(.inference)
        let probabilities = model.head.probabilities(model(try normalisedImages(dataset, for: model)))
        for n in 0..<64 {
            for k in 0..<generatedTagCount {
                XCTAssertEqual(probabilities.scalars[n * generatedTagCount + k], rates[k], accuracy: 0.05)
            }
        }
    }

    /// A model file is checked when loaded: a class list that disagrees with its head, or
    /// weights that are not finite, are one error naming the file.
    func testInconsistentOrNonFiniteModelFilesAreRefused() throws {
        let folder = TemporaryFolder()
        let model = try Classifier(configuration(residual: false), seed: 3)
        try model.save(to: folder.file("good.h5"))
        XCTAssertNoThrow(try Classifier.load(path: folder.file("good.h5")))

        var checkpoint = try ModelCheckpoint.read(path: folder.file("good.h5"))
        checkpoint.architecture = checkpoint.architecture.replacingOccurrences(of: #""classes":["a","b","c"]"#, with: #""classes":["a","b"]"#)
        checkpoint.classNames = ["a", "b"]
        try checkpoint.write(to: folder.file("classes.h5"))
        XCTAssertThrowsError(try Classifier.load(path: folder.file("classes.h5"))) { error in
            XCTAssertTrue("\(error)".contains("classes.h5") && "\(error)".contains("head of 3"), "\(error)")
        }

        model.head.output.weight.value.pointer[4] = .nan
        try model.save(to: folder.file("nan.h5"))
        XCTAssertThrowsError(try Classifier.load(path: folder.file("nan.h5"))) { error in
            XCTAssertTrue("\(error)".contains("nan.h5") && "\(error)".contains("head.output.weight") && "\(error)".contains("not finite"), "\(error)")
        }
    }
}
