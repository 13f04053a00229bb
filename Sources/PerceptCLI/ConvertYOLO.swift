import ArgumentParser
import PerceptDatasets

extension YOLOSplit: ExpressibleByArgument {}

/// `percept convert yolo`: an Ultralytics YOLO dataset (data.yaml, images/ and labels/ folders).
struct ConvertYOLO: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "yolo",
        abstract: "Convert one split of an Ultralytics YOLO dataset (data.yaml, images/ and labels/) to a detection file.",
        discussion: "data.yaml names the dataset root (path, relative to the YAML's folder; default that folder), each split's image folder or list of image paths (train, val, test) and the classes (names, a list or a map from index to name). The labels of .../images/SPLIT/NAME.png are .../labels/SPLIT/NAME.txt, one 'class cx cy w h' line per box, normalised to 0-1; an image without one is background. Class k gets category id k + 1.")

    @Option(help: "Ultralytics dataset YAML (path, train, val, names).") var data: String
    @Option(help: "Split to convert: train, val or test.") var split: YOLOSplit = .train
    @OptionGroup var common: ConversionOptionGroup

    func run() throws {
        try runConversion { progress in
            try Converter.yolo(data: data, split: split, output: common.output, options: common.options(progress))
        }
    }
}
