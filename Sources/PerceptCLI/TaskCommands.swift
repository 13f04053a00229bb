import ArgumentParser
import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks

/// `--config`, `--set` and `--show-config`, on every train, eval and predict command: the way to
/// every setting that has no flag of its own.
struct ConfigArguments: ParsableArguments {
    @Option(help: ArgumentHelp("YAML (or JSON) configuration: keys as --show-config prints them.", valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Set one key, e.g. --set nms_iou=0.5 (repeatable; the last part of a key is enough where it is unique).", valueName: "KEY=VALUE"))
    var assignments: [String] = []

    @Flag(help: "Print the resolved configuration as YAML and exit.")
    var showConfig = false

    /// These overrides, after `flags` (first-class options given as keys).
    func overrides(flags: [(key: String, flag: String, value: ConfigValue)] = []) -> ConfigOverrides {
        ConfigOverrides(file: config, assignments: assignments, flags: flags)
    }
}

extension BackbonePreset: ExpressibleByArgument {}

/// `--threads`, the one resource setting every command shares.
func useThreads(_ threads: Int?) throws {
    guard let threads else { return }
    guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be 1 to 1024, got \(threads)") }
    Threads.set(threads)
}

// MARK: train

/// The options of every `train` command but its data: the output, the run folder, the settings
/// users type daily, resuming; everything else is a key of the configuration (`--show-config`
/// lists them).
struct RunArguments: ParsableArguments {
    @Option(name: .shortAndLong, help: "Also write the best model here (MODEL.last.h5 beside it holds a resumable checkpoint).")
    var output: String?

    @Option(help: ArgumentHelp("Folder of run folders: PROJECT/TASK/NAME holds args.yaml, results.csv, weights/, events and plots.", valueName: "DIR"))
    var project = "runs"

    @Option(help: "Run folder name (default: train, train2, ...).")
    var name: String?

    @Option(help: ArgumentHelp("Backbone as its preset defines it: \(BackbonePreset.allCases.map(\.rawValue).joined(separator: ", ")) (keys backbone.preset, widths, stem_stride, stem_pool).", valueName: "NAME"))
    var backbone: BackbonePreset?

    @Option(help: "Epochs (key train.epochs).")
    var epochs: Int?

    @Option(help: "Mini-batch size (key train.batch; in `multi train`, of each task that sets none of its own).")
    var batch: Int?

    @Option(help: "Peak learning rate (key train.lr).")
    var lr: Float?

    @Option(help: "Random seed: the same seed and thread count give the same model (key train.seed).")
    var seed: UInt64?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(help: ArgumentHelp("Continue the run of this checkpoint with the configuration it stores.", valueName: "MODEL.last.h5"))
    var resume: String?

    @Flag(help: "Replace an existing output model (a resumed run replaces its own outputs).")
    var force = false

    @OptionGroup var settings: ConfigArguments

    func validate() throws {
        if let output, !output.hasSuffix(".h5") { throw ValidationError("-o/--output should name an .h5 file, got '\(output)'") }
    }

    /// The command line's overrides: `--config`, `--set` and the first-class flags as keys.
    var overrides: ConfigOverrides {
        var flags: [(key: String, flag: String, value: ConfigValue)] = []
        if let backbone {
            // The preset as it is, not the recipe's widths or stem on another preset's stages.
            flags += [("backbone.preset", "--backbone", .string(backbone.rawValue)), ("backbone.widths", "--backbone", .list([])),
                      ("backbone.stem_stride", "--backbone", .integer(backbone.stemStride)), ("backbone.stem_pool", "--backbone", .bool(false))]
        }
        if let epochs { flags.append(("train.epochs", "--epochs", .integer(epochs))) }
        if let batch { flags.append(("train.batch", "--batch", .integer(batch))) }
        if let lr { flags.append(("train.lr", "--lr", .number(Double(lr)))) }
        if let seed { flags.append(("train.seed", "--seed", .integer(Int(clamping: seed)))) }
        return settings.overrides(flags: flags)
    }

    /// Refuses, before any folder or file is made, to resume a checkpoint that has finished `epochs`.
    func checkResumable(epochs: Int) throws {
        guard let resume else { return }
        let done = try ModelCheckpoint.read(path: resume).epoch
        guard done < epochs else {
            throw DatasetError(resume, "finished its \(done) epochs: nothing to train; give more epochs (--epochs \(done + 10), say) to extend it")
        }
    }

    /// The run folder: a resumed run's own (the folder its checkpoint is in or names), else a
    /// new PROJECT/FOLDER/NAME.
    func runFolder(_ folder: String) throws -> RunFolder {
        if let resume {
            let weights = (resume as NSString).deletingLastPathComponent
            if (weights as NSString).lastPathComponent == "weights", (resume as NSString).lastPathComponent == "last.h5" {
                return RunFolder(path: (weights as NSString).deletingLastPathComponent)
            }
            if let stored = try ModelCheckpoint.read(path: resume).metadata["run_folder"], FileManager.default.fileExists(atPath: stored) {
                return RunFolder(path: stored)
            }
        }
        return try RunFolder.create(project: project, folder: folder, name: name)
    }

    /// Runs a training run in a run folder under `folder` (`runFolderName` of the task, or
    /// `multi`): `run` gets the folder and the Ctrl-C flag to stop between steps.
    /// Under `mpirun`, rank 0 makes the folder and the other ranks take its path.
    func train(in folder: String, _ run: (RunFolder, @escaping () -> Bool) throws -> Void) throws {
        try useThreads(threads)
        let runFolder = RunFolder(path: try DataParallel.rankZeros { try self.runFolder(folder).path })
        note("run folder: \(runFolder.path)")
        let interruption = Interruption()
        try run(runFolder) { interruption.requested }
        note("wrote \(runFolder.path) (weights/best.h5, weights/last.h5, results.csv, args.yaml, plots)"
             + (output.map { " and \($0) (resumable checkpoint: \(Trainer.checkpointPath(for: $0)))" } ?? ""))
    }
}

/// The options of a single task's `train` command: its data and `RunArguments`.
struct TrainArguments: ParsableArguments {
    @Option(help: "Training dataset (HDF5, from `percept convert` or `percept compose`).")
    var data: String?

    @Option(help: "Validation dataset; picks the best epoch's model.")
    var val: String?

    @OptionGroup var run: RunArguments

    func validate() throws {
        guard !run.settings.showConfig else { return }
        guard data != nil else { throw ValidationError("missing --data (the training dataset)") }
    }

    /// The run's configuration: the task's recipe with this command line's overrides, or for
    /// `--resume` the checkpoint's own with them (which must leave it as it is).
    func resolve<C: TaskTraining>(_ type: C.Type) throws -> C {
        let overrides = run.overrides
        // A resumed run continues with its stored configuration; options that repeat it are
        // fine, options that change it are refused (by `TrainingRun`, naming the keys).
        guard let resume = run.resume else { return try C().applying(overrides) }
        let stored = try TrainingRun<C>.storedConfig(in: resume)
        let resolved = try stored.applying(overrides)
        var comparable = resolved
        comparable.train.epochs = stored.train.epochs   // more epochs extend a run
        guard comparable == stored else {
            throw DatasetError(resume, "was started with another configuration (\(stored.differences(to: comparable))); resume with the one it stores (`percept inspect \(resume)`)")
        }
        return resolved
    }

    /// Trains task `C` as this command line says; Ctrl-C stops it between steps.
    func train<C: TaskTraining>(_ type: C.Type) throws {
        // Under mpirun rank 0 resolves (reading the checkpoint to resume) and the others take its configuration.
        let config = try DataParallel.rankZeros({ try resolve(C.self) }, over: C())
        if run.settings.showConfig { if Distributed.isMain { print(config.yaml(), terminator: "") }; return }
        if Distributed.isMain { try run.checkResumable(epochs: config.train.epochs) }
        try run.train(in: C.TaskHead.task.runFolderName) { folder, stop in
            var training = TrainingRun(config, data: data!, validation: val, output: run.output, runFolder: folder)
            training.force = run.force
            training.shouldStop = stop
            try training.run(resume: run.resume)
        }
    }
}

// MARK: eval and predict

/// Loads a model of head `H` with its stored settings and the command line's overrides applied
/// (no tensor is copied); nil after printing them for `--show-config`.
func loadModel<H: Head>(_ path: String, _ head: H.Type, _ settings: ConfigArguments) throws -> Model<H>? {
    let (model, _) = try Model<H>.load(path: path)
    let resolved = try ModelSettings(model.head.settings).applying(settings.overrides())
    try model.use(resolved.settings)
    if settings.showConfig { print(resolved.yaml(), terminator: ""); return nil }
    return model
}

/// Options shared by the `eval` subcommands.
struct EvalArguments: ParsableArguments {
    @Option(help: "Model file.")
    var model: String
    @Option(help: "Dataset to evaluate on (HDF5).")
    var data: String?
    @Flag(help: "Print metrics as one JSON object.")
    var json = false
    @Option(help: ArgumentHelp("Also write the plots of this evaluation to DIR (confusion matrices, PR and F1 curves, predictions beside ground truth), as a run folder holds them.", valueName: "DIR"))
    var plots: String?
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
    @OptionGroup var settings: ConfigArguments

    func validate() throws {
        if data == nil, !settings.showConfig { throw ValidationError("missing --data (the dataset to evaluate on)") }
    }

    /// Evaluates a model of head `H` on the dataset that `open` reads and prints the report.
    func evaluate<H: Head, D: ImageDataset>(_ head: H.Type, _ open: (String) throws -> D) throws {
        try useThreads(threads)
        guard let model = try loadModel(self.model, H.self, settings) else { return }
        let dataset = try open(data!)
        try check(dataset, fits: model, named: self.model)
        let (evaluation, metrics) = try model.evaluation(on: dataset)
        print(json ? evaluation.json() : evaluation.table())
        if let plots {
            let written = try model.writePlots(of: metrics, evaluation: evaluation, on: dataset, into: plots)
            note("wrote plots to \(plots): " + written.map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))
        }
    }
}

/// Throws unless `dataset`'s images and classes fit `model` (read from `path`): detection
/// scores whole scenes at any size, the other heads need the model's input size.
func check<H: Head>(_ dataset: some ImageDataset, fits model: Model<H>, named path: String) throws {
    let c = model.configuration
    let sizes = H.task == .detection || (dataset.height == c.inputHeight && dataset.width == c.inputWidth)
    guard dataset.channels == c.inputChannels, sizes else {
        throw DatasetError(dataset.path, "images are \(dataset.channels)x\(dataset.height)x\(dataset.width), model \(path) expects \(c.inputChannels)x\(c.inputHeight)x\(c.inputWidth)")
    }
    guard dataset.classNames.count == c.classes.count else {
        throw DatasetError(dataset.path, "has \(dataset.classNames.count) classes, model \(path) has \(c.classes.count)")
    }
}

/// Options shared by the `predict` subcommands.
struct PredictArguments: ParsableArguments {
    @Option(help: "Model file.")
    var model: String
    @Argument(help: "PNG or JPEG images, or directories of them.")
    var images: [String] = []
    @Flag(help: "Replace outputs that already exist.")
    var force = false
    @Flag(help: "Skip images that cannot be read, with a warning each, instead of stopping with no output.")
    var skipBad = false
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?
    @OptionGroup var settings: ConfigArguments

    func validate() throws {
        if images.isEmpty, !settings.showConfig { throw ValidationError("missing images (PNG or JPEG files or directories of them)") }
    }

    /// The model with its settings, and the image files named (directories expanded, their other
    /// files counted in a note), checked before any work; nil for `--show-config`.
    func open<H: Head>(_ head: H.Type) throws -> (model: Model<H>, paths: [String])? {
        try useThreads(threads)
        guard let model = try loadModel(self.model, H.self, settings) else { return nil }
        let (paths, skipped) = try collectImageFiles(images)
        for (directory, count) in skipped { note("note: \(directory): skipped \(count) file\(count == 1 ? "" : "s") that are not PNG or JPEG images") }
        return (model, paths)
    }

    /// Reads `paths` in batches of up to `batchSize` and hands each batch's images (as stored)
    /// to `body`, in order, with a progress line. A file that cannot be read stops the run with
    /// its error, before the command has written anything; with `--skip-bad` it is left out with
    /// one warning line, and the skipped files are counted at the end. Returns the images read.
    @discardableResult
    func forEachBatch(of paths: [String], batchSize: Int, _ body: ([(path: String, image: Image)]) throws -> Void) throws -> Int {
        let progress = ProgressReport(total: paths.count, unit: "images")
        var skipped = 0, done = 0
        for start in stride(from: 0, to: paths.count, by: batchSize) {
            var batch: [(path: String, image: Image)] = []
            for path in paths[start..<min(start + batchSize, paths.count)] {
                do {
                    batch.append((path, try ImageFile.read(path: path)))
                } catch let error as DatasetError where skipBad {
                    note("warning: \(error) (skipped)")
                    skipped += 1
                }
            }
            if !batch.isEmpty { try body(batch) }
            done += batch.count
            progress.update(min(start + batchSize, paths.count))
        }
        progress.finish()
        if skipped > 0 { note("warning: skipped \(skipped) of \(paths.count) images that could not be read") }
        return done
    }
}

/// Progress of a long run on stderr, once it has taken 2 s (`PERCEPT_PROGRESS_SECONDS`
/// overrides): items done of total, items/s and ETA; one redrawn line on a terminal, a plain
/// line every 5 s otherwise (and the last one).
final class ProgressReport {
    let total: Int, unit: String
    private let start = Date()
    private let after = ProcessInfo.processInfo.environment["PERCEPT_PROGRESS_SECONDS"].flatMap(Double.init) ?? 2
    private var lastReport = Date.distantPast
    private var drawn = false
    private let terminal = isatty(2) != 0

    init(total: Int, unit: String) { self.total = total; self.unit = unit }

    func update(_ done: Int) {
        let now = Date(), elapsed = now.timeIntervalSince(start)
        guard elapsed >= after, now.timeIntervalSince(lastReport) >= (terminal ? 0.5 : 5) || done == total else { return }
        lastReport = now
        let rate = Double(done) / elapsed
        let line = String(format: "%d/%d %@  %.1f %@/s  ETA ", done, total, unit, rate, unit)
            + formatDuration(Double(total - done) / max(rate, 1e-9))
        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
        drawn = terminal
    }

    /// Ends a redrawn line.
    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)); drawn = false }
    }
}

/// A CSV output: `-o FILE`, or standard output.
struct CSVOutput: ParsableArguments {
    @Option(name: .shortAndLong, help: "CSV file to write (default: standard output).")
    var output: String?

    /// Checks the output before any work: never an input, an existing file only with `force`.
    func check(inputs: [String], force: Bool) throws {
        if let output { try OutputPolicy.check(output, inputs: inputs, force: force) }
    }

    /// Writes `text` atomically to the file, naming it on stderr, or to standard output.
    func write(_ text: String, force: Bool, what: String) throws {
        guard let output else { print(text, terminator: ""); return }
        try AtomicOutput.write(Data(text.utf8), to: output, overwrite: force)
        note("wrote \(what) to \(output)")
    }
}

// MARK: shared

/// A line for people on stderr (progress, what was written), leaving stdout to results.
func note(_ line: String) {
    progressLog(line)
}

/// Quotes a CSV field when it needs it.
func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

/// The PNG output file name of each input (its own name, as `.png`); two inputs of the same
/// name are an error, since one output would replace the other.
func uniqueOutputNames(_ paths: [String]) throws -> [String] {
    var seen: [String: String] = [:]
    return try paths.map { path in
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension + ".png"
        if let other = seen[name] { throw DatasetError(path, "has the same file name as \(other); outputs are named after their inputs") }
        seen[name] = path
        return name
    }
}

/// Splits a comma-separated list option.
func commaList(_ text: String?) -> [String]? {
    text.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
}

/// Ctrl-C (SIGINT) asks a training run to stop between steps, leaving its last checkpoint;
/// a second Ctrl-C ends the process at once.
final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private let source: DispatchSourceSignal

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: DispatchQueue.global())
        source.setEventHandler { [unowned self] in
            self.lock.lock(); defer { self.lock.unlock() }
            if self.flag { exit(130) }
            self.flag = true
        }
        source.resume()
    }

    deinit {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }

    var requested: Bool {
        lock.lock(); defer { lock.unlock() }
        return flag
    }
}
