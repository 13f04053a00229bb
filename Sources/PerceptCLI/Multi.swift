import ArgumentParser
import Foundation
import PerceptCore
import PerceptDatasets
import PerceptTasks

/// `percept multi`: models with one backbone and several heads.
struct Multi: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Multi-task models: one backbone, any of the four heads (docs/datasets.md, multi-task model files).",
        subcommands: [MultiEval.self])
}

struct MultiEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate each head of a multi-task model on its task's test set, as the single-task evals do.")

    @Option(help: "Model file (multi-task, or single-task as its one head).") var model: String
    @Option(help: "Classification test set (HDF5).") var classify: String?
    @Option(help: "Tagging test set.") var tag: String?
    @Option(help: "Detection test set.") var detect: String?
    @Option(help: "Segmentation test set.") var segment: String?
    @Flag(help: "Print one JSON object with each head's metrics under its task.") var json = false
    @Option(help: "Worker threads (default: all cores).") var threads: Int?

    func validate() throws {
        if [classify, tag, detect, segment].allSatisfy({ $0 == nil }) {
            throw ValidationError("name a test set for at least one head: --classify, --tag, --detect or --segment")
        }
    }

    func run() throws {
        try useThreads(threads)
        let (multi, _) = try MultiTaskModel.load(path: model)
        // Every head asked for, and every dataset's fit, before any evaluation starts.
        var jobs: [(task: VisionTask, run: () throws -> Evaluation)] = []
        func job<H: Head, D: ImageDataset>(_ path: String?, _ head: H.Type, _ open: (String) throws -> D) throws {
            guard let path else { return }
            guard let view = multi.model(H.self) else {
                throw DatasetError(model, "has no \(H.task.rawValue) head (it has \(multi.tasks.map(\.rawValue).joined(separator: ", ")))")
            }
            let dataset = try open(path)
            try check(dataset, fits: view, named: model)
            jobs.append((H.task, { try runEvaluation(view, on: dataset).0 }))
        }
        try job(classify, ClassificationHead.self, ClassificationDataset.init(path:))
        try job(tag, TaggingHead.self, TaggingDataset.init(path:))
        try job(detect, WindowHead.self, DetectionDataset.init(path:))
        try job(segment, SegmentationHead.self, SegmentationDataset.init(path:))
        var parts: [String] = []
        for (task, run) in jobs {
            let evaluation = try run()
            parts.append(json ? "\"\(task.rawValue)\": " + evaluation.json() : "\(task.rawValue):\n" + evaluation.table())
        }
        print(json ? "{" + parts.joined(separator: ", ") + "}" : parts.joined(separator: "\n\n"))
    }
}
