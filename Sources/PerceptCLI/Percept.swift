import ArgumentParser
import Core

@main
struct Percept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "percept",
        abstract: "Multi-task computer vision: classification, tagging, detection, segmentation.",
        discussion: "Commands are shaped `percept TASK MODE`, e.g. `percept classify train --data train.h5 -o model.h5`.",
        subcommands: [Classify.self, Tag.self, Detect.self, Segment.self, Convert.self, Inspect.self, Bench.self, Compose.self])
}
