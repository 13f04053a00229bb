import Foundation
import PerceptDatasets

/// The folder a training run leaves for people and tools to open, as Ultralytics' runs/:
/// `args.yaml` (the resolved configuration, which `--config` reads back), `results.csv` (a row
/// per epoch), `weights/best.h5` and `weights/last.h5` (the resumable checkpoint), a TensorBoard
/// event file of the same scalars, and the plots.
public struct RunFolder: Sendable {
    public let path: String

    public var argsPath: String { path + "/args.yaml" }
    public var resultsPath: String { path + "/results.csv" }
    public var weightsPath: String { path + "/weights" }
    public var bestPath: String { weightsPath + "/best.h5" }
    public var lastPath: String { weightsPath + "/last.h5" }
    /// What `percept plot` redraws the validation plots from (confusion matrix, curves).
    public var plotDataPath: String { path + "/plots.json" }

    public init(path: String) { self.path = path }

    /// A new folder `project/task/name` (default name `train`), or `name2`, `name3`, ... where
    /// that exists, as Ultralytics increments its run names.
    public static func create(project: String, task: VisionTask, name: String?) throws -> RunFolder {
        try create(project: project, folder: task.runFolderName, name: name)
    }

    /// A new folder `project/folder/name` (`folder`: `multi` for multi-task runs).
    public static func create(project: String, folder: String, name: String?) throws -> RunFolder {
        let base = project + "/" + folder
        let stem = name ?? "train"
        guard !stem.isEmpty, !stem.contains("/") else { throw DatasetError(stem, "a run name is one folder name") }
        var candidate = base + "/" + stem, index = 2
        while FileManager.default.fileExists(atPath: candidate) {
            candidate = base + "/" + stem + String(index)
            index += 1
        }
        do {
            try FileManager.default.createDirectory(atPath: candidate + "/weights", withIntermediateDirectories: true)
        } catch {
            throw DatasetError(candidate, "cannot create the run folder (\(error.localizedDescription))")
        }
        return RunFolder(path: candidate)
    }

    /// The event files in the folder.
    public var eventFiles: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }
            .sorted().map { path + "/" + $0 }
    }
}

extension VisionTask {
    /// The folder under the project that this task's runs go to (Ultralytics: runs/detect/...).
    public var runFolderName: String {
        switch self {
        case .classification: "classify"
        case .tagging: "tag"
        case .detection: "detect"
        case .segmentation: "segment"
        }
    }
}

/// `results.csv`: a header and a row per epoch, rewritten atomically as each epoch ends; the
/// columns are `epoch`, `time` (training seconds so far), `lr`, `train/loss` and each validation
/// metric of the task (`val/<key>`).
public struct ResultsLog {
    public private(set) var columns: [String] = []
    public private(set) var rows: [[Double]] = []
    public let path: String

    public init(path: String) { self.path = path }

    /// Reads an existing log, keeping the rows of epochs up to `epoch` (a resumed run drops the
    /// ones its checkpoint does not cover, so its log equals an uninterrupted run's).
    public static func read(path: String, through epoch: Int) throws -> ResultsLog {
        var log = ResultsLog(path: path)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return log }
        let lines = text.split(separator: "\n").map(String.init)
        guard let header = lines.first else { return log }
        log.columns = header.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for (index, line) in lines.dropFirst().enumerated() {
            let values = line.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
            guard values.count == log.columns.count else { throw DatasetError(path, "line \(index + 2): \(values.count) values for \(log.columns.count) columns") }
            if Int(values[0]) <= epoch { log.rows.append(values) }
        }
        return log
    }

    /// Appends `row` (column name -> value) and rewrites the file.
    public mutating func append(_ row: [(column: String, value: Double)]) throws {
        if columns.isEmpty { columns = row.map(\.column) }
        let byName = Dictionary(row.map { ($0.column, $0.value) }, uniquingKeysWith: { a, _ in a })
        rows.append(columns.map { byName[$0] ?? .nan })
        try write()
    }

    public func write() throws {
        var text = columns.joined(separator: ",") + "\n"
        for row in rows {
            text += zip(columns, row).map { column, value in
                if !value.isFinite { return "" }
                return column == "epoch" ? String(Int(value)) : String(format: "%.6g", value)
            }.joined(separator: ",") + "\n"
        }
        try AtomicOutput.write(Data(text.utf8), to: path)
    }

    /// The values of `column`, one per epoch.
    public func values(_ column: String) -> [Double] {
        guard let index = columns.firstIndex(of: column) else { return [] }
        return rows.map { $0[index] }
    }
}

/// Keeps a run folder as epochs end: args.yaml once, then per epoch a row of results.csv, the
/// same scalars as a TensorBoard event, and results.svg redrawn.
final class RunRecorder {
    let folder: RunFolder
    private var results: ResultsLog
    private let events: TensorBoardWriter

    /// Starts recording into `folder`; a run resumed after epoch `resumedAfter` keeps the rows
    /// up to it and writes them again as a fresh event file, so that both equal an
    /// uninterrupted run's.
    init(folder: RunFolder, config: String, resumedAfter: Int?) throws {
        self.folder = folder
        try AtomicOutput.write(Data(config.utf8), to: folder.argsPath)
        results = try resumedAfter.map { try ResultsLog.read(path: folder.resultsPath, through: $0) } ?? ResultsLog(path: folder.resultsPath)
        if resumedAfter != nil, !results.rows.isEmpty { try results.write() }
        for stale in folder.eventFiles { try? FileManager.default.removeItem(atPath: stale) }
        events = try TensorBoardWriter(folder: folder.path)
        for row in results.rows { try events.add(Self.scalars(results.columns, row), step: Int(row[0])) }
    }

    func record(_ epoch: Trainer.EpochResult) throws {
        let row = epoch.row
        try results.append(row)
        try events.add(Self.scalars(row.map(\.column), row.map(\.value)), step: epoch.epoch)
        try RunPlots.write(into: folder.path, results: results, data: nil)
    }

    /// Every column but `epoch` (the step) as a TensorBoard scalar.
    static func scalars(_ columns: [String], _ values: [Double]) -> [(tag: String, value: Double)] {
        zip(columns, values).filter { $0.0 != "epoch" && $0.1.isFinite }.map { (tag: $0.0, value: $0.1) }
    }
}
