import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// A fresh temporary directory removed when the test ends.
final class TemporaryFolder {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "percept-tasks-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Side of the generated gray images: small enough for debug builds, divisible by 4 for the
/// two-stage plain backbone.
let generatedSide = 12

/// Adds `value` to pixel (x, y) of a 12 x 12 gray image, saturating.
private func brighten(_ pixels: inout [UInt8], _ x: Int, _ y: Int, by value: Int) {
    guard x >= 0, x < generatedSide, y >= 0, y < generatedSide else { return }
    pixels[y * generatedSide + x] = UInt8(min(255, Int(pixels[y * generatedSide + x]) + value))
}

/// Uniform noise in 0..<60 on every pixel: the patterns have to be found, not read off.
private func noisyBackground(using generator: inout SeededGenerator) -> [UInt8] {
    (0..<(generatedSide * generatedSide)).map { _ in UInt8(generator.next() % 60) }
}

/// A classification image: class 0 horizontal stripes, 1 vertical stripes, 2 a square blob,
/// each with a random phase or position and brightness.
func classificationImage(label: Int, using generator: inout SeededGenerator) -> Image {
    var pixels = noisyBackground(using: &generator)
    let strength = 110 + Int(generator.next() % 60)
    let phase = Int(generator.next() % 4)
    switch label {
    case 0:
        for y in 0..<generatedSide where (y + phase) % 4 < 2 { for x in 0..<generatedSide { brighten(&pixels, x, y, by: strength) } }
    case 1:
        for x in 0..<generatedSide where (x + phase) % 4 < 2 { for y in 0..<generatedSide { brighten(&pixels, x, y, by: strength) } }
    default:
        let left = 2 + Int(generator.next() % 4), top = 2 + Int(generator.next() % 4)
        for y in top..<(top + 5) { for x in left..<(left + 5) { brighten(&pixels, x, y, by: strength) } }
    }
    return Image(width: generatedSide, height: generatedSide, channels: 1, pixels: pixels)
}

/// Writes `count` classification images of the three pattern classes (labels cycle) to `path`.
func writeClassificationData(_ path: String, count: Int, seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: generatedSide,
                                   width: generatedSide, source: "generated stripes and blobs")
    for index in 0..<count {
        try writer.append(image: classificationImage(label: index % 3, using: &generator), label: index % 3)
    }
    try writer.finish(classNames: ["horizontal", "vertical", "blob"])
}

/// Number of tags in the generated tagging data.
let generatedTagCount = 4

/// A tagging image: each tag present with probability 2/5 draws its pattern in its own quadrant
/// (0 horizontal stripes top-left, 1 vertical stripes top-right, 2 a blob bottom-left, 3 a
/// diagonal bottom-right).
func taggingImage(using generator: inout SeededGenerator) -> (image: Image, tags: [Int]) {
    var pixels = noisyBackground(using: &generator)
    var tags: [Int] = []
    let half = generatedSide / 2
    for tag in 0..<generatedTagCount where generator.next() % 5 < 2 {
        tags.append(tag)
        let strength = 120 + Int(generator.next() % 60)
        let left = (tag % 2) * half, top = (tag / 2) * half
        for y in 0..<half {
            for x in 0..<half {
                let on: Bool
                switch tag {
                case 0: on = y % 2 == 0
                case 1: on = x % 2 == 0
                case 2: on = (1..<5).contains(x) && (1..<5).contains(y)
                default: on = x == y || x == y + 1
                }
                if on { brighten(&pixels, left + x, top + y, by: strength) }
            }
        }
    }
    return (Image(width: generatedSide, height: generatedSide, channels: 1, pixels: pixels), tags)
}

/// Writes `count` tagging images to `path`; returns the fraction of (image, tag) pairs that are positive.
@discardableResult
func writeTaggingData(_ path: String, count: Int, seed: UInt64) throws -> Double {
    var generator = SeededGenerator(seed: seed)
    let writer = try DatasetWriter(path: path, task: .tagging, channels: 1, height: generatedSide, width: generatedSide,
                                   tagCount: generatedTagCount, source: "generated quadrant patterns")
    var positives = 0
    for _ in 0..<count {
        let (image, tags) = taggingImage(using: &generator)
        positives += tags.count
        try writer.append(image: image, tagIndices: tags)
    }
    try writer.finish(classNames: ["stripes", "bars", "blob", "diagonal"])
    return Double(positives) / Double(count * generatedTagCount)
}

/// A small configuration for `dataset`: two-stage plain CNN (widths 4 and 8) and a 16-unit
/// hidden layer, or a one-block-per-stage ResNet of widths 4 and 8.
func smallConfiguration<H: Head>(_ head: H.Type, dataset: ImageDataset, residual: Bool = false, dropout: Float = 0,
                                 _ makeHead: (VectorHeadConfiguration) -> H.Architecture) throws -> ModelConfiguration<H> {
    let statistics = try channelStatistics(dataset)
    let backbone = residual
        ? BackboneConfiguration(kind: .resnet, inputChannels: dataset.channels, widths: [4, 8], blocks: [1, 1])
        : BackboneConfiguration(kind: .plain, inputChannels: dataset.channels, widths: [4, 8])
    let layers = residual
        ? VectorHeadConfiguration(pooling: .global, inFeatures: 8, dropout: dropout, outputs: dataset.classNames.count)
        : VectorHeadConfiguration(pooling: .flatten, inFeatures: 8 * (dataset.height / 4) * (dataset.width / 4), hidden: 16,
                                  dropout: dropout, outputs: dataset.classNames.count)
    return ModelConfiguration(task: H.task, inputChannels: dataset.channels, inputHeight: dataset.height,
                              inputWidth: dataset.width, classes: dataset.classNames, backbone: backbone,
                              head: makeHead(layers), settings: H.Settings(), mean: statistics.mean, std: statistics.std)
}

/// A small classifier configuration (cross-entropy, no label smoothing).
func smallClassifierConfiguration(dataset: ImageDataset, residual: Bool = false, dropout: Float = 0) throws
    -> ModelConfiguration<ClassificationHead> {
    try smallConfiguration(ClassificationHead.self, dataset: dataset, residual: residual, dropout: dropout) { .init(layers: $0) }
}

/// A small tagger configuration.
func smallTaggerConfiguration(dataset: ImageDataset, residual: Bool = false) throws -> ModelConfiguration<TaggingHead> {
    try smallConfiguration(TaggingHead.self, dataset: dataset, residual: residual) { .init(layers: $0) }
}

/// Training options for the tiny tests: batch 16, SGD, no augmentation unless asked.
func smallOptions(epochs: Int, learningRate: Float = 0.05, augment: Bool = false, seed: UInt64 = 1) -> TrainingOptions {
    var options = TrainingOptions()
    options.epochs = epochs
    options.batchSize = 16
    options.learningRate = learningRate
    options.warmupEpochs = 1
    options.augment = augment
    options.seed = seed
    return options
}

/// The whole dataset, unshuffled and normalised for `model`, as one tensor.
func normalisedImages<H: Head>(_ dataset: ImageDataset, for model: Model<H>) throws -> Tensor {
    let c = model.configuration
    let loader = DataLoader(dataset, batchSize: dataset.count, shuffle: false, mean: c.mean, std: c.std, prefetch: false)
    return try XCTUnwrap(try loader.batches(epoch: 0).nextBatch()).images
}
