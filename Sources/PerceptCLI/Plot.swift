import ArgumentParser
import Foundation
import PerceptDatasets
import PerceptTasks

/// `percept plot`: redraws a run folder's plots from its results.csv and plots.json.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redraw the plots of a run folder (runs/TASK/NAME) or an `eval --plots` folder from its results.csv and plots.json.",
        discussion: "A multi-task run folder (runs/multi/NAME) has each head's plots.json in a folder of its own (classify/, tag/, detect/, segment/): those are redrawn too.")

    @Argument(help: "The run folder.") var folder: String

    func run() throws {
        let run = RunFolder(path: folder)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(folder, "no such folder")
        }
        func plotData(_ path: String) throws -> PlotData? {
            try FileManager.default.contents(atPath: path).map { contents in
                do { return try JSONDecoder().decode(PlotData.self, from: contents) } catch {
                    throw DatasetError(path, "is not the plot data Percept writes (\(error.localizedDescription))")
                }
            }
        }
        let results = FileManager.default.fileExists(atPath: run.resultsPath) ? try ResultsLog.read(path: run.resultsPath, through: .max) : nil
        let data = try plotData(run.plotDataPath)
        // A multi-task run's heads, each in its task's folder.
        let heads = try VisionTask.allCases.compactMap { task -> (String, PlotData)? in
            let directory = folder + "/" + task.runFolderName
            return try plotData(directory + "/plots.json").map { (directory, $0) }
        }
        guard results != nil || data != nil || !heads.isEmpty else { throw DatasetError(folder, "holds neither results.csv nor plots.json") }
        var written = try RunPlots.write(into: folder, results: results, data: data)
        for (directory, data) in heads { written += try RunPlots.write(into: directory, results: nil, data: data) }
        note("wrote " + written.map { $0.hasPrefix(folder + "/") ? String($0.dropFirst(folder.count + 1)) : $0 }.joined(separator: ", ") + " to \(folder)")
    }
}
