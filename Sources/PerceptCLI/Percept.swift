import ArgumentParser
import Foundation
import PerceptTasks

@main
struct Percept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "percept",
        abstract: "Multi-task computer vision: classification, tagging, detection, segmentation.",
        discussion: "Commands are shaped `percept TASK MODE`, e.g. `percept classify train --data train.h5 -o model.h5`. Every setting without a flag of its own is a key of the task's configuration: `--show-config` prints them all, `--set KEY=VALUE` and `--config FILE` change them.",
        subcommands: [Classify.self, Tag.self, Detect.self, Segment.self, Convert.self, Compose.self, Inspect.self, Plot.self, Export.self, Multi.self, Bench.self])

    @Flag(help: "Print the version and exit.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(PerceptVersion.current)
    }

    /// The one error funnel of every command: a problem with the user's files, options or
    /// configuration is one `error: ...` line on stderr and exit code 1; what the argument
    /// parser reports (usage errors, --help, --version) it prints itself.
    static func main() {
        let command: ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            var command = command
            try command.run()
        } catch let interrupted as TrainingInterrupted {
            FileHandle.standardError.write(Data("\(interrupted)\n".utf8))
            Foundation.exit(130)
        } catch where String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            // Help, usage errors and exit codes, which the parser prints and exits with itself.
            exit(withError: error)
        } catch {
            ProgressLine.endOpenLine()
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Foundation.exit(1)
        }
    }
}
