import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sliding-window object detection (window classifier with box regression, image pyramid, NMS).",
        subcommands: [DetectTrain.self, DetectEval.self, DetectPredict.self])
}

/// Inference settings shared by `detect eval` and `detect predict`; unset ones keep the model's.
struct DetectionSettings: ParsableArguments {
    @Option(help: "Drop detections scoring below this (default: the model's, 0.05).")
    var scoreThreshold: Float?

    @Option(help: "Per-class NMS IoU: a box overlapping a higher-scoring one of its class by more is dropped (default: the model's, 0.4).")
    var nmsIou: Float?

    @Option(help: ArgumentHelp("Pyramid scales, e.g. 1,0.84,0.71,0.59,0.5 (default: the model's).", valueName: "S1,S2,..."))
    var scales: String?

    @Option(help: "Smallest object side to look for, in pixels (with --max-size: a pyramid instead of --scales).")
    var minSize: Float?

    @Option(help: "Largest object side to look for, in pixels.")
    var maxSize: Float?

    @Option(help: "Detections kept per image (default: the model's, 100).")
    var maxDetections: Int?

    @Option(help: "Second looks: re-crop each detection's window centred on its box, rescore and regress again, this many times (default: the model's).")
    var refinements: Int?

    @Flag(inversion: .prefixedNo, help: "Second looks average each window with its mirror image (default: the model's).")
    var flipAverage: Bool?

    @Flag(inversion: .prefixedNo, help: "Second looks also look from the window moved half a stride each way, and average (default: the model's).")
    var shiftAverage: Bool?

    @Flag(inversion: .prefixedNo, help: "Box voting: average each kept box with the boxes it suppressed (default: the model's).")
    var boxVoting: Bool?

    func validate() throws {
        if let scoreThreshold, !(0...1).contains(scoreThreshold) { throw ValidationError("--score-threshold must be in [0, 1]") }
        if let nmsIou, !(0...1).contains(nmsIou) { throw ValidationError("--nms-iou must be in [0, 1]") }
        if let maxDetections, maxDetections < 1 { throw ValidationError("--max-detections must be at least 1") }
        if let refinements, refinements < 0 { throw ValidationError("--refinements must be 0 or more") }
        if scales != nil && (minSize != nil || maxSize != nil) { throw ValidationError("give --scales or --min-size/--max-size, not both") }
        if (minSize == nil) != (maxSize == nil) { throw ValidationError("--min-size and --max-size go together") }
        if let minSize, let maxSize, !(minSize > 0 && maxSize >= minSize) { throw ValidationError("--min-size must be positive and at most --max-size") }
        if let scales, parsedScales(scales) == nil { throw ValidationError("--scales must be positive numbers separated by commas, got '\(scales)'") }
    }

    func parsedScales(_ text: String) -> [Float]? {
        let values = commaList(text)!.map { Float($0) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil && $0! > 0 && $0!.isFinite }) else { return nil }
        return values.map { $0! }
    }

    /// `configuration` with these settings applied.
    func apply(to configuration: WindowHead.Configuration) -> WindowHead.Configuration {
        var c = configuration
        if let scoreThreshold { c.scoreThreshold = scoreThreshold }
        if let nmsIou { c.nmsIoU = nmsIou }
        if let maxDetections { c.maxDetections = maxDetections }
        if let boxVoting { c.boxVoting = boxVoting }
        if let refinements { c.refinements = refinements }
        if let flipAverage { c.flipAverage = flipAverage }
        if let shiftAverage { c.shiftAverage = shiftAverage }
        if let scales, let values = parsedScales(scales) { c.scales = values }
        if let minSize, let maxSize {
            c.scales = WindowHead.Configuration.pyramid(window: c.window, minSize: minSize, maxSize: maxSize, levels: c.scales.count)
        }
        return c
    }
}

/// Loads a detector with the command line's inference settings.
func loadDetector(_ path: String, _ settings: DetectionSettings) throws -> Model<WindowHead> {
    let (model, _) = try Model<WindowHead>.load(path: path)
    let head = settings.apply(to: model.configuration.head)
    return head == model.configuration.head ? model : try model.reconfigured { $0.head = head }
}

struct DetectTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a sliding-window detector on a detection dataset.",
        discussion: "With no options this trains the tuned recipe: the W1 network with unpadded convolutions as a 28x28 window classifier (11 outputs: background and 10 classes) with a 4-number box regression (R-CNN deltas of the tight box against the window's square), started from the shipped W1 Fashion-MNIST classifier (models/fashion-window-classifier.h5: its convolutions, and its fully connected layers as the window convolutions, OverFeat-style; --backbone-weights none trains from scratch), trained on window crops: every object twice per epoch at the pyramid level that fits it (each view jittered on its own), one random background window per object, and from the second epoch one hard negative per object mined with the current model (the highest-scoring background windows on 128 scenes). Inference scores every window of a 9-level pyramid densely, then per-class NMS at IoU 0.4, then ten second looks: each kept detection's window is cropped again centred on its box at the level that fits it (also mirrored, and moved half a stride each way), rescored and its box regressed again, averaged over those views, with NMS after each look. The best epoch is picked by COCO AP on --val.")

    @OptionGroup var arguments: TrainArguments

    @Option(help: "Smallest object side in pixels the pyramid is built for (default: 26).")
    var minSize: Float = 26

    @Option(help: "Largest object side in pixels (default: 56).")
    var maxSize: Float = 56

    @Option(help: "Pyramid levels between them (default: 9).")
    var levels: Int = 9

    @Option(help: "Windows of each object per epoch, each jittered on its own (default: 2).")
    var views: Int = 2

    @Option(help: "Random background windows per object window (default: 0.5).")
    var negatives: Float = 0.5

    @Option(help: "Hard negatives per object window, mined each epoch from the second on (default: 0.5; 0 turns mining off).")
    var hardNegatives: Float = 0.5

    func validate() throws {
        guard minSize > 0, maxSize >= minSize else { throw ValidationError("--min-size must be positive and at most --max-size") }
        guard levels >= 1 else { throw ValidationError("--levels must be at least 1") }
        guard views >= 1 else { throw ValidationError("--views must be at least 1") }
        guard negatives >= 0, hardNegatives >= 0 else { throw ValidationError("--negatives and --hard-negatives must not be negative") }
        // Window crops are sampled, jittered and flipped by the sampler, which has no erasing.
        if arguments.erase != nil { throw ValidationError("--erase is not available for detection (its windows are sampled, not loaded)") }
        try arguments.refusePasting(task: "detection")
    }

    func run() throws {
        try failingCleanly {
            let dataset = try DetectionDataset(path: arguments.data)
            let validation = try arguments.val.map { try DetectionDataset(path: $0) }
            let classes = dataset.classNames.count
            var sampling = WindowSampling()
            sampling.viewsPerObject = views
            sampling.negativesPerPositive = negatives
            sampling.hardNegativesPerPositive = hardNegatives
            sampling.flip = arguments.augment ?? true
            let window = 28
            try runTraining(WindowHead.self, arguments, base: .detection, dataset: dataset, validation: validation, configure: { recipe, _, _, _ in
                // The window's patch on the deepest map: the backbone run once on one window.
                var rng = SeededGenerator(seed: 0)
                let backbone = try recipe.backboneConfiguration(inputChannels: dataset.channels)
                let probe = try backbone.make(using: &rng).features(.zeros([1, dataset.channels, window, window]), through: nil)
                let map = probe.info[probe.maps.count - 1], side = probe.last.shape[2]
                guard side >= 1 else { throw ModelError("a \(window)x\(window) window leaves no map for the head") }
                return WindowHead.Configuration(input: map.name, window: window, featureSide: side, hidden: 128, classes: classes,
                                                scales: WindowHead.Configuration.pyramid(window: window, minSize: minSize, maxSize: maxSize, levels: levels),
                                                boxVoting: false, categoryIDs: dataset.categoryIDs, refinements: 10, flipAverage: true,
                                                shiftAverage: true)
            }, prepare: { model, _, pretrained in
                if let pretrained, model.head.start(from: pretrained, classes: dataset.classNames) {
                    FileHandle.standardError.write(Data("window classifier's fully connected layers from \(pretrained.path)\n".utf8))
                }
            }, source: { model, recipe in
                try WindowSampler(dataset: dataset, model: model, sampling: sampling, batchSize: recipe.options.batchSize, seed: recipe.options.seed)
            })
        }
    }
}

struct DetectEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "COCO AP (IoU 0.50:0.95), AP50, AP75 and per-class AP, as pycocotools computes them.")

    @OptionGroup var arguments: EvalArguments
    @OptionGroup var settings: DetectionSettings

    func run() throws {
        try failingCleanly {
            if let threads = arguments.threads { Threads.set(threads) }
            let model = try loadDetector(arguments.model, settings)
            let dataset = try DetectionDataset(path: arguments.data)
            let c = model.configuration
            guard dataset.channels == c.inputChannels, dataset.classNames.count == c.classes.count else {
                throw DatasetError(dataset.path, "has \(dataset.channels)-channel images of \(dataset.classNames.count) classes, model \(arguments.model) takes \(c.inputChannels) channels and \(c.classes.count) classes")
            }
            let loader = DataLoader(dataset, batchSize: 16, shuffle: false, mean: c.mean, std: c.std)
            let summary = try model.measure(loader).summarize()
            if arguments.json {
                let object: [String: Any] = [
                    "images": dataset.count, "ap": summary.ap, "ap50": summary.ap50, "ap75": summary.ap75,
                    "ap_small": summary.apSmall, "ap_medium": summary.apMedium, "ap_large": summary.apLarge, "ar100": summary.ar100,
                    "per_class": c.classes.indices.map { k in
                        ["class": c.classes[k], "ap": summary.perClassAP[k] as Any? ?? NSNull(),
                         "ap50": summary.perClassAP50[k] as Any? ?? NSNull()] as [String: Any]
                    },
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print(String(format: "images %d  AP %.4f  AP50 %.4f  AP75 %.4f  AR100 %.4f", dataset.count, summary.ap, summary.ap50, summary.ap75, summary.ar100))
            let width = max(12, c.classes.map(\.count).max() ?? 0)
            print("class".padding(toLength: width, withPad: " ", startingAt: 0) + "      AP    AP50")
            for k in c.classes.indices {
                func cell(_ value: Double?) -> String { value.map { String(format: "%6.4f", $0) } ?? "     -" }
                print(c.classes[k].padding(toLength: width, withPad: " ", startingAt: 0) + "  " + cell(summary.perClassAP[k]) + "  " + cell(summary.perClassAP50[k]))
            }
        }
    }
}

struct DetectPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Detect objects in PNG images; writes COCO results JSON ([{image_id, category_id, bbox: [x, y, w, h], score, file_name}]).",
        discussion: "Images are scored at their own size. Without --annotations, image ids count from 1 in the order the images are listed and category ids are the training dataset's. With --annotations (a COCO file), each image's id is looked up by file name and categories by name, so the output feeds pycocotools directly.")

    @Option(help: "Model file.")
    var model: String

    @Argument(help: "PNG images or directories of them.")
    var images: [String]

    @Option(help: "COCO annotations whose image and category ids the output uses.")
    var annotations: String?

    @Option(help: "Also write PNG copies with the boxes and class names drawn to this directory.")
    var draw: String?

    @Option(help: "Draw only detections scoring at least this (the JSON keeps all of them).")
    var drawThreshold: Float = 0.3

    @Option(name: .shortAndLong, help: "Detections JSON to write.")
    var output: String

    @Flag(help: "Replace outputs that already exist.")
    var force = false

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @OptionGroup var settings: DetectionSettings

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard (0...1).contains(drawThreshold) else { throw ValidationError("--draw-threshold must be in [0, 1]") }
    }

    func run() throws {
        try failingCleanly {
            if let threads { Threads.set(threads) }
            let detector = try loadDetector(model, settings)
            let paths = try collectImagePaths(images)
            let names = try uniqueOutputNames(paths)
            let c = detector.configuration
            var categoryIDs = c.head.categoryIDs ?? c.classes.indices.map { Int64($0 + 1) }
            var imageIDs = paths.indices.map { Int64($0 + 1) }
            if let annotations {
                let coco = try COCOIndex(path: annotations)
                categoryIDs = try c.classes.map { name in
                    guard let id = coco.categoryIDs[name] else { throw DatasetError(annotations, "has no category named '\(name)' (the model's classes: \(c.classes.joined(separator: ", ")))") }
                    return id
                }
                imageIDs = try zip(paths, names).map { path, name in
                    guard let id = coco.imageIDs[name] else { throw DatasetError(path, "is not among the images of \(annotations)") }
                    return id
                }
            }
            if !force && FileManager.default.fileExists(atPath: output) { throw DatasetError(output, "exists; pass --force to replace it") }
            let drawings = draw.map { dir in names.map { (dir as NSString).appendingPathComponent($0) } }
            if let draw { try FileManager.default.createDirectory(atPath: draw, withIntermediateDirectories: true) }
            if !force, let existing = drawings?.first(where: { FileManager.default.fileExists(atPath: $0) }) {
                throw DatasetError(existing, "exists; pass --force to replace it")
            }
            var results: [(imageID: Int64, fileName: String?, detections: [Detection])] = []
            for (i, path) in paths.enumerated() {
                let image = try PNG.read(path: path, channels: c.inputChannels)
                let detections = detector.predict(normalisedTensor(image, mean: c.mean, std: c.std),
                                                  geometry: InputGeometry(height: image.height, width: image.width))[0]
                results.append((imageIDs[i], names[i], detections))
                if let drawings {
                    let shown = detections.filter { $0.score >= drawThreshold }.map { ($0.box, $0.score) }
                    try PNG.write(Drawing.boxes(image: image, shown, classNames: c.classes), to: drawings[i])
                }
            }
            let json = try JSONSerialization.data(withJSONObject: cocoResults(results, categoryIDs: categoryIDs), options: [.sortedKeys])
            try AtomicOutput.write(json, to: output, overwrite: force)
            FileHandle.standardError.write(Data("wrote \(results.reduce(0) { $0 + $1.detections.count }) detections in \(paths.count) images to \(output)\(draw.map { " and drawings to \($0)" } ?? "")\n".utf8))
        }
    }
}

/// Image ids by file name and category ids by name, from a COCO annotations file.
struct COCOIndex {
    var imageIDs: [String: Int64] = [:]
    var categoryIDs: [String: Int64] = [:]

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DatasetError(path, "cannot read file") }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw DatasetError(path, "is not a COCO JSON object")
        }
        for image in root["images"] as? [[String: Any]] ?? [] {
            guard let name = image["file_name"] as? String, let id = (image["id"] as? NSNumber)?.int64Value else {
                throw DatasetError(path, "has an image without file_name or integer id")
            }
            imageIDs[(name as NSString).lastPathComponent] = id
        }
        for category in root["categories"] as? [[String: Any]] ?? [] {
            guard let name = category["name"] as? String, let id = (category["id"] as? NSNumber)?.int64Value else {
                throw DatasetError(path, "has a category without name or integer id")
            }
            categoryIDs[name] = id
        }
    }
}
