import ArgumentParser
import Core

@main
struct Percept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "percept",
        abstract: "Multi-task computer vision: classification, tagging, detection, segmentation.",
        subcommands: [Convert.self, Inspect.self])
}
