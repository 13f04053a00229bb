import ArgumentParser
import PerceptDatasets
import Foundation

extension VisionTask: ExpressibleByArgument {}
extension OverlapMeasure: ExpressibleByArgument {}
extension NoiseDistribution: ExpressibleByArgument {}
extension ResamplingFilter: ExpressibleByArgument {}
extension OverlapRule: ExpressibleByArgument {}

/// `percept compose`: pastes classification items onto canvases to make multi-object datasets.
struct Compose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Paste items of a classification dataset onto larger canvases to make a tagging, detection or segmentation dataset.",
        discussion: """
        Each canvas gets --min-items to --max-items items, each scaled by a factor in \
        [--scale-min, --scale-max] of its own size and placed at a random position (rejecting \
        positions where its box overlaps an earlier item's by more than --max-overlap IoU). Items \
        are pasted by per-pixel maximum, so they should be light on a dark background (like \
        Fashion-MNIST). Tagging: the tags are the pasted classes. Detection: one box per item, \
        the tight box of its pixels above 10. Segmentation: class 0 is background, an item's \
        pixels above 25 are 1 + its class (where items overlap, the brighter one's; ties go to \
        the later paste). --noise-distribution, --resample and --overlap-rule change details \
        that datasets made by other tools do differently. The defaults make each task's \
        standard scenes: tagging 64x64, 1-3 items of distinct classes at scale 0.8-1.2, visible \
        boxes overlapping by IoU 0.2 at most; detection 160x160, 1-4 items with \
        independently drawn classes at scale 1-2, placement squares overlapping by IoU 0.1 at \
        most; segmentation 64x64, 1-3 items with independently drawn classes at their own size, \
        visible boxes overlapping by IoU 0.2 at most. The same seed gives the same file. The \
        whole item set is read into memory (Fashion-MNIST's training set is 47 MB); canvases \
        are streamed.
        """)

    @Argument(help: "Dataset to write: tagging, detection or segmentation.")
    var task: VisionTask

    @Option(help: "Classification dataset whose images are the items.")
    var from: String

    @Option(name: .shortAndLong, help: "Output HDF5 file.")
    var output: String

    @Option(help: "Number of canvases.")
    var count = 1000

    @Option(help: ArgumentHelp("Canvas size (default: 160x160 for detection, 64x64 otherwise).", valueName: "WxH"),
            transform: { text in
                guard let size = ImageSize(parsing: text) else { throw ValidationError("--size must look like 64x64, got '\(text)'") }
                return size
            })
    var size: ImageSize?

    @Option(help: "Fewest items per canvas (default: 1).")
    var minItems: Int?

    @Option(help: "Most items per canvas (default: 4 for detection, 3 otherwise; at most the number of classes when classes are distinct).")
    var maxItems: Int?

    @Option(help: "Smallest item scale, relative to the item's own size (default: 0.8 tagging, 1 detection and segmentation).")
    var scaleMin: Float?

    @Option(help: "Largest item scale, relative to the item's own size (default: 1.2 tagging, 2 detection, 1 segmentation).")
    var scaleMax: Float?

    @Flag(inversion: .prefixedNo, help: "Give the items of a canvas distinct classes (default: on for tagging; detection and segmentation draw each item's class independently).")
    var distinctClasses: Bool?

    @Option(help: "Boxes --max-overlap compares: visible (tight boxes of the items' pixels) or placement (the scaled items' squares) (default: placement for detection, visible otherwise).")
    var overlapOf: OverlapMeasure?

    // These four take their defaults from `CompositionOptions`, the one place they are set.
    @Option(help: "Background noise level as a fraction of 255 (0 for black): the standard deviation of half-normal noise, the top of uniform noise (default: \(CompositionOptions().noise)).")
    var noise: Float?

    @Option(help: "Background noise: half-normal or uniform (integers 0 to --noise x 255) (default: \(CompositionOptions().noiseDistribution.rawValue)).")
    var noiseDistribution: NoiseDistribution?

    @Option(help: "Filter scaling the items: bilinear (PIL's), bicubic, bilinear-corners (aligned corners) or nearest (default: \(CompositionOptions().resampling.rawValue)).")
    var resample: ResamplingFilter?

    @Option(help: "Where items overlap: brighter (the brighter pixel shows and owns the mask) or later (the later item covers the earlier) (default: \(CompositionOptions().overlapRule.rawValue)).")
    var overlapRule: OverlapRule?

    @Option(help: "Largest IoU allowed between an item's box and an earlier item's box (default: 0.1 for detection, 0.2 otherwise).")
    var maxOverlap: Float?

    @Option(help: "Random seed: the same seed and options give the same file.")
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Also write a PNG contact sheet of the first 16 canvases.", valueName: "png"))
    var preview: String?

    @Flag(help: "Overwrite the output file if it exists.")
    var force = false

    @Flag(help: "Do not print progress.")
    var quiet = false

    /// The library options from the command line (progress attached by `run`).
    var options: CompositionOptions {
        var options = CompositionOptions(task: task)
        options.count = count
        if let size { options.size = size }
        if let minItems { options.minItems = minItems }
        if let maxItems { options.maxItems = maxItems }
        if let scaleMin { options.scaleMin = scaleMin }
        if let scaleMax { options.scaleMax = scaleMax }
        if let distinctClasses { options.distinctClasses = distinctClasses }
        if let overlapOf { options.overlapMeasure = overlapOf }
        if let noise { options.noise = noise }
        if let noiseDistribution { options.noiseDistribution = noiseDistribution }
        if let resample { options.resampling = resample }
        if let overlapRule { options.overlapRule = overlapRule }
        if let maxOverlap { options.maxOverlap = maxOverlap }
        options.seed = seed
        options.overwrite = force
        return options
    }

    func validate() throws {
        guard task != .classification else {
            throw ValidationError("compose makes tagging, detection or segmentation datasets; classification items are its input (--from)")
        }
        do { try options.validate() } catch let error as CompositionOptionError { throw ValidationError(error.description) }
        if let preview, !preview.lowercased().hasSuffix(".png") {
            throw ValidationError("--preview should name a .png file, got '\(preview)'")
        }
    }

    func run() throws {
        try runConversion { progress in
            var options = self.options
            if !quiet { options.progress = progress.report }
            let composer = try Composer(items: ClassificationDataset(path: from), options: options)
            var summary = try composer.write(task: task, to: output)
            if let preview {
                try PNG.write(composer.preview(task: task), to: preview)
                summary.notes.append("wrote a contact sheet of the first canvases to \(preview)")
            }
            return summary
        }
    }
}
