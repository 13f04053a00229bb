import ArgumentParser
import Foundation
import PerceptCore
import PerceptTasks

@main
struct Percept: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "percept",
        abstract: "Multi-task computer vision: classification, tagging, detection, segmentation.",
        discussion: "Commands are shaped `percept TASK MODE`, e.g. `percept classify train --data train.h5 -o model.h5`. Every setting without a flag of its own is a key of the task's configuration: `--show-config` prints them all, `--set KEY=VALUE` and `--config FILE` change them. Under `mpirun -np K` the train commands and bench run as K data-parallel ranks (--batch stays the global batch).",
        subcommands: [Classify.self, Tag.self, Detect.self, Segment.self, Convert.self, Compose.self, Inspect.self, Plot.self, Export.self, Multi.self, Bench.self])

    @Flag(help: "Print the version and exit.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(PerceptVersion.current)
    }

    /// The one error funnel of every command: a problem with the user's files, options or
    /// configuration is one `error: ...` line on stderr and exit code 1; what the argument
    /// parser reports (usage errors, --help, --version) it prints itself. Started by `mpirun`,
    /// a data-parallel command (train, bench) joins the job first; an error on any rank names
    /// the rank and ends every rank at once (`MPI_Abort`), never leaving the others waiting.
    static func main() {
        let command: ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            try joinJob(for: command)
            var command = command
            try command.run()
            Distributed.finish()
        } catch let interrupted as TrainingInterrupted {
            FileHandle.standardError.write(Data("\(interrupted)\n".utf8))
            Distributed.abortJob(code: 130)
        } catch where String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            // Help, usage errors and exit codes, which the parser prints and exits with itself.
            exit(withError: error)
        } catch {
            ProgressLine.endOpenLine()
            let rank = Distributed.isParallel ? "rank \(Distributed.rank): " : ""
            FileHandle.standardError.write(Data("error: \(rank)\(error)\n".utf8))
            Distributed.abortJob(code: 1)
        }
    }

    /// Joins the MPI job when `mpirun` started this process with other ranks: only commands
    /// that split their work over ranks (`DataParallelCommand`) may, the others would all do
    /// the same work and write the same files.
    static func joinJob(for command: ParsableCommand) throws {
        guard MPICommunicator.launchedByMPIRun else { return }
        let ranks = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "") ?? 1
        guard command is DataParallelCommand else {
            if ranks > 1 {
                throw ValidationError("only the train commands and bench run under mpirun (as data-parallel ranks); run `percept \(type(of: command).configuration.commandName ?? "")` as one process")
            }
            return
        }
        Distributed.use(try MPICommunicator.join())
    }
}

/// A command that runs data-parallel under `mpirun`: every rank runs it, on its shard of the work.
protocol DataParallelCommand: ParsableCommand {}
