import ArgumentParser
import PerceptDatasets
import Foundation

/// Options every `percept convert` subcommand takes.
struct ConversionOptionGroup: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output HDF5 file.")
    var output: String

    @Option(help: ArgumentHelp("Resize images (and masks and boxes) to WxH.", valueName: "WxH"),
            transform: { text in
                guard let size = ImageSize(parsing: text) else { throw ValidationError("--size must look like 32x32, got '\(text)'") }
                return size
            })
    var size: ImageSize?

    @Option(help: "Channels to store: 1 (gray) or 3 (RGB).")
    var channels: Int?

    @Flag(help: "With --size: keep each image's aspect, centred on a black canvas (boxes follow; masks padded with 255), instead of stretching.")
    var letterbox = false

    @Flag(help: "Overwrite the output file if it exists.")
    var force = false

    @Flag(help: "Do not print progress.")
    var quiet = false

    func validate() throws {
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 1 or 3, got \(channels)") }
        if letterbox && size == nil { throw ValidationError("--letterbox fits images to --size: give --size WxH too") }
    }

    /// The library options, with progress on stderr about once a second.
    func options(_ progress: ProgressLine) -> ConversionOptions {
        var options = ConversionOptions(size: size, channels: channels, overwrite: force, progress: quiet ? nil : progress.report)
        options.letterbox = letterbox
        return options
    }
}

/// A progress counter on stderr, rewritten in place about once a second.
final class ProgressLine {
    private var lastReport = Date()
    /// Whether a progress line is on screen without its newline (stderr is one per process).
    nonisolated(unsafe) private static var isOpen = false

    func report(done: Int, total: Int) {
        let now = Date()
        guard now.timeIntervalSince(lastReport) >= 1 || done == total else { return }
        lastReport = now
        Self.isOpen = done != total
        FileHandle.standardError.write("\rconverted \(done)/\(total)\(done == total ? "\n" : "")".data(using: .utf8)!)
    }

    /// Ends a progress line left open, so that an error starts on a line of its own.
    static func endOpenLine() {
        if isOpen { FileHandle.standardError.write(Data("\n".utf8)); isOpen = false }
    }
}

/// Runs a conversion and prints its summary (errors go to the one error funnel, `Percept.main`).
func runConversion(_ body: (ProgressLine) throws -> ConversionSummary) throws {
    let start = Date()
    let summary = try body(ProgressLine())
    print(summary)
    print(String(format: "took %.1f s", Date().timeIntervalSince(start)))
}

/// `percept convert`: turns common dataset formats into Percept HDF5 files.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a dataset to a Percept HDF5 file.",
        subcommands: [ConvertIDX.self, ConvertFolder.self, ConvertTags.self, ConvertCOCO.self, ConvertYOLO.self, ConvertVOC.self, ConvertMasks.self])
}

/// `percept convert idx`: MNIST-style IDX files.
struct ConvertIDX: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "idx",
        abstract: "Convert IDX images and labels (gzipped or raw, e.g. Fashion-MNIST) to a classification file.")

    @Option(help: "IDX image file (idx3-ubyte, optionally .gz).") var images: String
    @Option(help: "IDX label file (idx1-ubyte, optionally .gz).") var labels: String
    @Option(help: "Comma-separated class names, in label order.") var classes: String?
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.idx(images: images, labels: labels, classes: commaList(classes), output: common.output,
                              options: common.options(progress))
        }
    }
}

/// `percept convert folder`: ImageFolder layout.
struct ConvertFolder: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "folder",
        abstract: "Convert a folder with one sub-folder of PNG or JPEG images per class (nested folders included) to a classification file.")

    @Argument(help: "Folder holding one sub-folder per class.") var directory: String
    @Option(help: "Class names in order, e.g. the training set's for a validation folder (default: the sub-folders, sorted).") var classes: String?
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.folder(directory, classes: commaList(classes), output: common.output, options: common.options(progress))
        }
    }
}

/// `percept convert tags`: images plus an `image,tags` CSV.
struct ConvertTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tags",
        abstract: "Convert PNG or JPEG images and a CSV of their tags (a tags column, or one-hot 0/1 columns) to a tagging file.")

    @Option(help: "Folder of PNG or JPEG images.") var images: String
    @Option(help: "CSV file with a header line.") var csv: String
    @Option(help: "Comma-separated tag names; other tags are an error (default: every tag used).") var tags: String?
    @Option(help: "The image column (default: image, image_name, filename, file_name or path, else the first).") var imageColumn: String?
    @Option(help: "The tags column (default: 'tags'; without one, every other column is a one-hot tag).") var tagsColumn: String?
    @Option(help: ArgumentHelp("What separates tags: ';', '|', ',' or 'space' (default: detected, and said).", valueName: "CHAR"),
            transform: { text in
                guard let separator = TagsCSV.Separator(rawValue: text == "space" ? " " : text) else {
                    throw ValidationError("--separator must be ';', '|', ',' or 'space', got '\(text)'")
                }
                return separator
            })
    var separator: TagsCSV.Separator?
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.tags(images: images, csv: csv, declaredTags: commaList(tags), imageColumn: imageColumn, tagsColumn: tagsColumn,
                               separator: separator, output: common.output, options: common.options(progress))
        }
    }
}

/// `percept convert coco`: COCO detection JSON.
struct ConvertCOCO: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "coco",
        abstract: "Convert PNG or JPEG images and COCO detection JSON to a detection file (ids kept, crowds as ignore regions).")

    @Option(help: "Folder of PNG or JPEG images named as in the JSON's file_name.") var images: String
    @Option(help: "COCO instances JSON file.") var annotations: String
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.coco(images: images, annotations: annotations, output: common.output, options: common.options(progress))
        }
    }
}

/// `percept convert masks`: images plus index-mask PNGs.
struct ConvertMasks: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "masks",
        abstract: "Convert PNG or JPEG images and index-mask PNGs of the same names to a segmentation file.")

    @Option(help: "Folder of PNG or JPEG images.") var images: String
    @Option(help: "Folder of index-mask PNGs (palette masks by index, or gray), same file names or stems.") var masks: String
    @Option(help: "Comma-separated class names, in index order (255 = ignore).") var classes: String?
    @Option(help: ArgumentHelp("Map mask ids to train ids (Cityscapes style): JSON {\"7\": 0} or lines 'id train_id'; other ids become 255.", valueName: "FILE"))
    var labelMap: String?
    @Flag(help: "ADE20K style: 0 becomes 255 (ignore), every other value v becomes v - 1.") var reduceZeroLabel = false
    @Flag(help: "Foreground masks: 0 stays background, any other value (255 too) becomes class 1.") var binary = false
    @OptionGroup var common: ConversionOptionGroup

    func validate() throws {
        if [labelMap != nil, reduceZeroLabel, binary].filter({ $0 }).count > 1 {
            throw ValidationError("give one of --label-map, --reduce-zero-label and --binary")
        }
    }

    func run() throws {
        let mapping: MaskMapping = try labelMap.map { try MaskMapping.labelMap(path: $0) }
            ?? (reduceZeroLabel ? .reduceZeroLabel : binary ? .binary : .identity)
        try runConversion { progress in
            try Converter.masks(images: images, masks: masks, classes: commaList(classes), mapping: mapping, output: common.output,
                                options: common.options(progress))
        }
    }
}
