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

struct SegmentTrain: DataParallelCommand {
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
        discussion: "Images are segmented at their own size (the head is fully convolutional), or scaled down to max_side (a setting) where larger, their masks scaled back up (nearest neighbour): masks are always at the image's size.")

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
        // Masks and overlays are staged and moved into place together at the end, so a run that
        // stops on a bad file leaves none of them.
        let staged = OutputSet()
        let index = Dictionary(uniqueKeysWithValues: paths.enumerated().map { ($1, $0) })
        let count = try arguments.forEachBatch(of: paths, batchSize: 64) { batch in
            let predictions = model.predict(images: batch.map(\.image))
            for ((path, stored), prediction) in zip(batch, predictions) {
                let i = index[path]!
                let mask = prediction.image
                try staged.write(mask, to: targets[i], overwrite: force)
                if let overlays {
                    try staged.write(Drawing.segmentationOverlay(image: stored.converted(toChannels: 3), mask: mask, classNames: classNames),
                                     to: overlays[i], overwrite: force)
                }
            }
        }
        try staged.commit()
        note("wrote \(count) masks to \(output)\(overlay.map { " and overlays to \($0)" } ?? "")")
    }
}


