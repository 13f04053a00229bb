import ArgumentParser
import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-pixel semantic segmentation (fully convolutional, upsampled to the input size).",
        subcommands: [SegmentTrain.self, SegmentEval.self, SegmentPredict.self])
}

struct SegmentTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a segmenter on a segmentation dataset (defaults: the tuned recipe; --show-config lists it).")

    @OptionGroup var arguments: TrainArguments

    func run() throws { try arguments.train(SegmentationConfig.self) }
}

struct SegmentEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Pixel accuracy, per-class IoU and mean IoU with and without the background class.")

    @OptionGroup var arguments: EvalArguments

    func run() throws { try arguments.evaluate(SegmentationHead.self, SegmentationDataset.init(path:)) }
}

struct SegmentPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Segment PNG or JPEG images; writes one 8-bit index-mask PNG per image (pixel value = class index, 0 = background), NAME.png for each image NAME.*.",
        discussion: "Images of another size than the model's input are resized for the model (bilinear) and their masks resized back to the image's size (nearest neighbour).")

    @OptionGroup var arguments: PredictArguments

    @Option(name: .shortAndLong, help: "Directory for the masks (created if missing).")
    var output: String?

    @Option(help: "Also write colour overlays with a legend of class names to this directory.")
    var overlay: String?

    func validate() throws {
        if output == nil, !arguments.settings.showConfig { throw ValidationError("missing -o/--output (the directory for the masks)") }
    }

    func run() throws {
        guard let (model, paths) = try arguments.open(SegmentationHead.self) else { return }
        let output = output!, force = arguments.force
        let names = try uniqueOutputNames(paths)
        for directory in [output] + (overlay.map { [$0] } ?? []) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let targets = names.map { (output as NSString).appendingPathComponent($0) }
        let overlays = overlay.map { dir in names.map { (dir as NSString).appendingPathComponent($0) } }
        if !force, let existing = (targets + (overlays ?? [])).first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw DatasetError(existing, "exists; pass --force to replace it")
        }
        let classNames = model.configuration.classes
        // In batches, so memory stays bounded for long lists of images.
        for start in stride(from: 0, to: paths.count, by: 64) {
            let batch = Array(paths[start..<min(start + 64, paths.count)])
            let originals = try batch.map { try ImageFile.read(path: $0, channels: 3) }
            let predictions = model.predict(try loadImages(batch, for: model.configuration))
            for (offset, (original, prediction)) in zip(originals, predictions).enumerated() {
                let i = start + offset
                var mask = prediction.image
                if mask.width != original.width || mask.height != original.height {
                    mask = mask.resizedNearest(width: original.width, height: original.height)
                }
                try PNG.write(mask, to: targets[i])
                if let overlays {
                    try PNG.write(Drawing.segmentationOverlay(image: original, mask: mask, classNames: classNames), to: overlays[i])
                }
            }
        }
        note("wrote \(paths.count) masks to \(output)\(overlay.map { " and overlays to \($0)" } ?? "")")
    }
}


