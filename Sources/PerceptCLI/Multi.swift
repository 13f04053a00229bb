import ArgumentParser
import Foundation
import PerceptCore
import PerceptDatasets
import PerceptTasks

/// `percept multi`: models with one backbone and several heads.
struct Multi: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Multi-task models: one backbone, any of the four heads (docs/datasets.md, multi-task model files).",
        subcommands: [MultiTrain.self, MultiEval.self, MultiPredict.self])
}

struct MultiTrain: DataParallelCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train one backbone and a head per task given data (any subset of the four), jointly (defaults: the tuned recipe; --show-config lists it).",
        discussion: "Each step draws batches from the tasks' datasets (key sampling) and minimises the sum of their weighted losses (keys classify.weight, tag.weight, ...). The best epoch is picked by the mean of the validated heads' metrics (accuracy, mAP, AP, mIoU). With --from, training starts from that model file: heads it lacks are added, heads given data are retrained; with --freeze-backbone only those heads train, and every other head predicts exactly as before.")

    @Option(help: "Classification training set (HDF5).") var classify: String?
    @Option(help: "Tagging training set.") var tag: String?
    @Option(help: "Detection training set.") var detect: String?
    @Option(help: "Segmentation training set.") var segment: String?
    @Option(help: "Classification validation set.") var valClassify: String?
    @Option(help: "Tagging validation set (also tunes the tag thresholds).") var valTag: String?
    @Option(help: "Detection validation set.") var valDetect: String?
    @Option(help: "Segmentation validation set.") var valSegment: String?
    @Option(help: ArgumentHelp("Start from this model file (multi-task or single-task): heads it lacks are added, heads given data retrain.", valueName: "MODEL.h5"))
    var from: String?
    @Flag(help: "With --from: train only the heads given data; the backbone and every other head stay bit for bit.")
    var freezeBackbone = false
    @OptionGroup var arguments: RunArguments

    var data: [VisionTask: String] {
        var data: [VisionTask: String] = [:]
        data[.classification] = classify; data[.tagging] = tag; data[.detection] = detect; data[.segmentation] = segment
        return data
    }

    var validation: [VisionTask: String] {
        var data: [VisionTask: String] = [:]
        data[.classification] = valClassify; data[.tagging] = valTag; data[.detection] = valDetect; data[.segmentation] = valSegment
        return data
    }

    func validate() throws {
        guard !arguments.settings.showConfig else { return }
        guard !data.isEmpty else { throw ValidationError("name the training data of at least one task: --classify, --tag, --detect or --segment") }
        for (task, _) in validation where data[task] == nil {
            throw ValidationError("--val-\(task.runFolderName) needs --\(task.runFolderName) (its training data) too")
        }
        if freezeBackbone, from == nil, arguments.resume == nil { throw ValidationError("--freeze-backbone needs --from (the model whose backbone stays)") }
        if from != nil, arguments.resume != nil { throw ValidationError("--from starts a run, --resume continues one: give one of them") }
    }

    func run() throws {
        // A resumed run continues with its stored configuration; options that change it are refused by the run.
        let config = try DataParallel.rankZeros({
            let base = try arguments.resume.map(MultiTaskTrainingRun.storedConfig(in:)) ?? MultiTaskConfig()
            return try base.applying(arguments.overrides)
        }, over: MultiTaskConfig())
        if arguments.settings.showConfig { if Distributed.isMain { print(config.yaml(), terminator: "") }; return }
        if Distributed.isMain { try arguments.checkResumable(epochs: config.train.epochs) }
        try arguments.train(in: "multi") { folder, stop in
            var training = MultiTaskTrainingRun(config, data: data, validation: validation, output: arguments.output, runFolder: folder)
            training.force = arguments.force
            training.from = from
            training.freezeBackbone = freezeBackbone
            training.shouldStop = stop
            try training.run(resume: arguments.resume)
        }
    }
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
    @OptionGroup var settings: ConfigArguments

    func validate() throws {
        if !settings.showConfig, [classify, tag, detect, segment].allSatisfy({ $0 == nil }) {
            throw ValidationError("name a test set for at least one head: --classify, --tag, --detect or --segment")
        }
    }

    func run() throws {
        try useThreads(threads)
        guard let multi = try loadMultiTaskModel(model, settings) else { return }
        // Every head asked for, and every dataset's fit, before any evaluation starts.
        var jobs: [(task: VisionTask, run: () throws -> Evaluation)] = []
        func job<H: Head, D: ImageDataset>(_ path: String?, _ head: H.Type, _ open: (String) throws -> D) throws {
            guard let path else { return }
            guard let view = multi.model(H.self) else {
                throw DatasetError(model, "has no \(H.task.rawValue) head (it has \(multi.tasks.map(\.rawValue).joined(separator: ", ")))")
            }
            let dataset = try open(path)
            try check(dataset, fits: view, named: model)
            jobs.append((H.task, { try view.evaluation(on: dataset).0 }))
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

/// Loads a multi-task model (or a single-task one as its one head) with its stored settings and
/// the command line's overrides (`MultiTaskSettings`); nil after printing them for `--show-config`.
func loadMultiTaskModel(_ path: String, _ arguments: ConfigArguments) throws -> MultiTaskModel? {
    let (model, _) = try MultiTaskModel.load(path: path)
    let settings = try MultiTaskSettings(model).applying(arguments.overrides())
    try settings.apply(to: model)
    if arguments.showConfig { print(settings.yaml(), terminator: ""); return nil }
    return model
}

struct MultiPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Run the heads of a multi-task model over PNG or JPEG images: one backbone pass per image feeds them all (the detector adds its pyramid levels).",
        discussion: """
        Writes into OUT_DIR, for the heads asked for: classes.csv (image,label,score: the whole image's class), \
        tags.csv (image,tags,then a score per tag, as `tag predict --scores`), detections.json (COCO results, as \
        `detect predict`) and masks/NAME.png (index masks, as `segment predict`). --draw writes one picture per image \
        with the mask tinted in, the boxes, and the class and tags above.
        """)

    @OptionGroup var arguments: PredictArguments
    @Option(name: .shortAndLong, help: "Directory for the outputs (created if missing).") var output: String?
    @Option(help: ArgumentHelp("Heads to run, comma-separated (default: every head the model has).", valueName: "classify,tag,detect,segment"))
    var heads: String?
    @Option(help: "COCO annotations whose image and category ids detections.json uses.") var annotations: String?
    @Option(help: "Also write one picture per image (NAME.png) with everything predicted to this directory.") var draw: String?
    @Option(help: "Draw only detections scoring at least this (the JSON keeps all of them).") var drawThreshold: Float = 0.3

    func validate() throws {
        guard (0...1).contains(drawThreshold) else { throw ValidationError("--draw-threshold must be in [0, 1]") }
        if output == nil, !arguments.settings.showConfig { throw ValidationError("missing -o/--output (the directory for the outputs)") }
        _ = try requestedTasks()
    }

    /// The tasks of `--heads` (nil: every head).
    func requestedTasks() throws -> Set<VisionTask>? {
        guard let names = commaList(heads) else { return nil }
        return Set(try names.map { name in
            guard let task = VisionTask.allCases.first(where: { $0.runFolderName == name }) else {
                throw ValidationError("--heads: unknown head '\(name)' (classify, tag, detect, segment)")
            }
            return task
        })
    }

    func run() throws {
        try useThreads(arguments.threads)
        guard let model = try loadMultiTaskModel(arguments.model, arguments.settings) else { return }
        let tasks = try requestedTasks() ?? Set(model.tasks)
        if let missing = VisionTask.allCases.first(where: { tasks.contains($0) && model.head($0) == nil }) {
            throw DatasetError(arguments.model, "has no \(missing.runFolderName) head (it has \(model.tasks.map(\.runFolderName).joined(separator: ", ")))")
        }
        let (paths, skippedFiles) = try collectImageFiles(arguments.images)
        for (directory, count) in skippedFiles { note("note: \(directory): skipped \(count) file\(count == 1 ? "" : "s") that are not PNG or JPEG images") }
        let output = output!, force = arguments.force
        let names = try uniqueOutputNames(paths)
        let c = model.configuration
        // Every output path, checked before any work.
        var planned: [String] = []
        let classesPath = output + "/classes.csv", tagsPath = output + "/tags.csv", detectionsPath = output + "/detections.json"
        if tasks.contains(.classification) { planned.append(classesPath) }
        if tasks.contains(.tagging) { planned.append(tagsPath) }
        if tasks.contains(.detection) { planned.append(detectionsPath) }
        let maskPaths = names.map { output + "/masks/" + $0 }
        if tasks.contains(.segmentation) { planned += maskPaths }
        let drawings = draw.map { dir in names.map { (dir as NSString).appendingPathComponent($0) } }
        planned += drawings ?? []
        let detectionIDs = try c.detection.map { try cocoIDs(paths: paths, classes: $0.classes, categoryIDs: $0.head.categoryIDs, annotations: annotations) }
        for directory in [output] + (tasks.contains(.segmentation) ? [output + "/masks"] : []) + (draw.map { [$0] } ?? []) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let inputs = [arguments.model] + paths + (annotations.map { [$0] } ?? [])
        for path in planned { try OutputPolicy.check(path, inputs: inputs, force: force) }
        let classNames = c.classification?.classes ?? [], tagNames = c.tagging?.classes ?? []
        let boxNames = c.detection?.classes ?? [], maskNames = c.segmentation?.classes ?? []
        var classes = "image,label,score\n"
        var tags = "image,tags," + tagNames.map(csvField).joined(separator: ",") + "\n"
        var detections: [(imageID: Int64, fileName: String?, detections: [Detection])] = []
        // Everything is staged and moved into place together, so a run that stops leaves no output.
        let staged = OutputSet()
        let index = Dictionary(uniqueKeysWithValues: paths.enumerated().map { ($1, $0) })
        try arguments.forEachBatch(of: paths, batchSize: 1) { batch in
            for (path, image) in batch {
                let i = index[path]!
                let prediction = model.predict(image: image, tasks: tasks)
                var caption: [String] = []
                if let p = prediction.classification {
                    classes += "\(csvField(path)),\(csvField(classNames[p.label])),\(String(format: "%.6f", p.score))\n"
                    caption.append(String(format: "class: %@ %.2f", classNames[p.label], p.score))
                }
                if let p = prediction.tagging {
                    let named = p.tags.map { tagNames[$0] }
                    tags += "\(csvField(path)),\(csvField(TagsCSV.field(named))),"
                        + p.probabilities.map { String(format: "%.6f", $0) }.joined(separator: ",") + "\n"
                    caption.append("tags: " + (named.isEmpty ? "none" : named.joined(separator: ", ")))
                }
                if let found = prediction.detection {
                    detections.append((detectionIDs!.imageIDs[path]!, (path as NSString).lastPathComponent, found))
                }
                if let mask = prediction.segmentation { try staged.write(mask.image, to: maskPaths[i], overwrite: force) }
                if let drawings {
                    let shown = (prediction.detection ?? []).filter { $0.score >= drawThreshold }.map { ($0.box, $0.score) }
                    let picture = Drawing.summary(image: image, mask: prediction.segmentation?.image, maskNames: maskNames,
                                                  boxes: shown, boxNames: boxNames, caption: caption)
                    try staged.write(picture, to: drawings[i], overwrite: force)
                }
            }
        }
        if tasks.contains(.classification) { try staged.write(Data(classes.utf8), to: classesPath, overwrite: force) }
        if tasks.contains(.tagging) { try staged.write(Data(tags.utf8), to: tagsPath, overwrite: force) }
        if let ids = detectionIDs, tasks.contains(.detection) {
            let json = try JSONSerialization.data(withJSONObject: cocoResults(detections, categoryIDs: ids.categoryIDs), options: [.sortedKeys])
            try staged.write(json, to: detectionsPath, overwrite: force)
        }
        try staged.commit()
        let written = [tasks.contains(.classification) ? "classes.csv" : nil, tasks.contains(.tagging) ? "tags.csv" : nil,
                       tasks.contains(.detection) ? "detections.json" : nil, tasks.contains(.segmentation) ? "masks/" : nil].compactMap { $0 }
        note("wrote \(written.joined(separator: ", ")) for \(paths.count) image\(paths.count == 1 ? "" : "s") to \(output)" + (draw.map { " and pictures to \($0)" } ?? ""))
    }
}
