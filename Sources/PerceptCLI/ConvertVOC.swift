import ArgumentParser
import PerceptDatasets

/// `percept convert voc`: a Pascal VOC detection dataset.
struct ConvertVOC: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "voc",
        abstract: "Convert a Pascal VOC dataset (Annotations, JPEGImages, ImageSets/Main) to a detection file; difficult objects become ignore regions.")

    @Option(help: ArgumentHelp("The VOC folder, e.g. VOCdevkit/VOC2012.", valueName: "DIR")) var root: String
    @Option(help: "The image set in ImageSets/Main (train, val, trainval, test).") var split = "train"
    @Option(help: "Class names in order (default: the sorted names found in the annotations).") var classes: String?
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.voc(root: root, split: split, classes: commaList(classes), output: common.output, options: common.options(progress))
        }
    }
}
