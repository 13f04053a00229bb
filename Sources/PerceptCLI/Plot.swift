import ArgumentParser
import Foundation
import PerceptDatasets
import PerceptTasks

/// `percept plot`: redraws a run folder's plots from its results.csv and plots.json.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redraw the plots of a run folder (runs/TASK/NAME) or an `eval --plots` folder from its results.csv and plots.json.")

    @Argument(help: "The run folder.") var folder: String

    func run() throws {
        let run = RunFolder(path: folder)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(folder, "no such folder")
        }
        let results = FileManager.default.fileExists(atPath: run.resultsPath) ? try ResultsLog.read(path: run.resultsPath, through: .max) : nil
        let data = try FileManager.default.contents(atPath: run.plotDataPath).map { contents in
            do { return try JSONDecoder().decode(PlotData.self, from: contents) } catch {
                throw DatasetError(run.plotDataPath, "is not the plot data Percept writes (\(error.localizedDescription))")
            }
        }
        guard results != nil || data != nil else { throw DatasetError(folder, "holds neither results.csv nor plots.json") }
        let written = try RunPlots.write(into: folder, results: results, data: data)
        note("wrote " + written.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ") + " to \(folder)")
    }
}
