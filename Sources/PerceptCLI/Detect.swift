import ArgumentParser
import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sliding-window object detection (window classifier with box regression, image pyramid, NMS).",
        subcommands: [DetectTrain.self, DetectEval.self, DetectPredict.self])
}

struct DetectTrain: DataParallelCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a sliding-window detector on a detection dataset (defaults: the tuned recipe; --show-config lists it).",
        discussion: "The best epoch is picked by COCO AP on --val. The pyramid, NMS and second looks (section settings) are stored in the model as its defaults; eval and predict take other values with --set.")

    @OptionGroup var arguments: TrainArguments

    func run() throws { try arguments.train(DetectionConfig.self) }
}

struct DetectEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "COCO AP (IoU 0.50:0.95), AP50, AP75 and per-class AP, as pycocotools computes them.")

    @OptionGroup var arguments: EvalArguments

    func run() throws { try arguments.evaluate(WindowHead.self, DetectionDataset.init(path:)) }
}

struct DetectPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Detect objects in PNG or JPEG images; writes COCO results JSON ([{image_id, category_id, bbox: [x, y, w, h], score, file_name}]).",
        discussion: "Images are scored at their own size, or scaled down to max_side (a setting) where larger, their boxes mapped back to the image's pixels and clipped to it. Without --annotations, image ids count from 1 in the order the images are listed and category ids are the training dataset's. With --annotations (a COCO file), each image's id is looked up by file name and categories by name, so the output feeds pycocotools directly.")

    @OptionGroup var arguments: PredictArguments

    @Option(name: .shortAndLong, help: "Detections JSON to write.")
    var output: String?

    @Option(help: "COCO annotations whose image and category ids the output uses.")
    var annotations: String?

    @Option(help: "Also write PNG copies with the boxes and class names drawn to this directory (NAME.png for each image NAME.*).")
    var draw: String?

    @Option(help: "Draw only detections scoring at least this (the JSON keeps all of them).")
    var drawThreshold: Float = 0.3

    @Option(help: ArgumentHelp("Also write YOLO label files to this directory (NAME.txt for each image NAME.*): a line 'class cx cy w h score' per detection, normalised to the image's size, as Ultralytics' save_txt with save_conf.", valueName: "DIR"))
    var saveTxt: String?

    func validate() throws {
        guard (0...1).contains(drawThreshold) else { throw ValidationError("--draw-threshold must be in [0, 1]") }
        if output == nil, !arguments.settings.showConfig { throw ValidationError("missing -o/--output (the detections JSON to write)") }
    }

    func run() throws {
        guard let (detector, paths) = try arguments.open(WindowHead.self) else { return }
        let output = output!, force = arguments.force
        try OutputPolicy.check(output, inputs: [arguments.model] + paths + (annotations.map { [$0] } ?? []), force: force)
        let c = detector.configuration
        let (categoryIDs, imageIDs) = try cocoIDs(paths: paths, classes: c.classes, categoryIDs: c.head.categoryIDs, annotations: annotations)
        let drawings = try draw.map { dir in Dictionary(uniqueKeysWithValues: zip(paths, try uniqueOutputNames(paths).map { (dir as NSString).appendingPathComponent($0) })) }
        if let draw { try FileManager.default.createDirectory(atPath: draw, withIntermediateDirectories: true) }
        if !force, let existing = drawings?.values.sorted().first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw DatasetError(existing, "exists; pass --force to replace it")
        }
        let labelFiles = try saveTxt.map { dir in
            Dictionary(uniqueKeysWithValues: zip(paths, try uniqueOutputNames(paths).map { name in
                (dir as NSString).appendingPathComponent((name as NSString).deletingPathExtension + ".txt")
            }))
        }
        if let saveTxt { try FileManager.default.createDirectory(atPath: saveTxt, withIntermediateDirectories: true) }
        if !force, let existing = labelFiles?.values.sorted().first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw DatasetError(existing, "exists; pass --force to replace it")
        }
        // Drawings and label files are staged and moved into place with the JSON, so a run that stops leaves none.
        let staged = OutputSet()
        var results: [(imageID: Int64, fileName: String?, detections: [Detection])] = []
        try arguments.forEachBatch(of: paths, batchSize: 1) { batch in
            for (path, stored) in batch {
                let image = stored.converted(toChannels: c.inputChannels)
                let detections = detector.predict(images: [image])[0]
                results.append((imageIDs[path]!, (path as NSString).lastPathComponent, detections))
                if let drawings {
                    let shown = detections.filter { $0.score >= drawThreshold }.map { ($0.box, $0.score) }
                    try staged.write(Drawing.boxes(image: image, shown, classNames: c.classes), to: drawings[path]!, overwrite: force)
                }
                if let labelFiles {
                    // Every detection, as in the JSON; an image with none gets an empty file.
                    let lines = detections.map { YOLOLabelFile.line($0.box, score: $0.score, imageWidth: image.width, imageHeight: image.height) + "\n" }
                    try staged.write(Data(lines.joined().utf8), to: labelFiles[path]!, overwrite: force)
                }
            }
        }
        let json = try JSONSerialization.data(withJSONObject: cocoResults(results, categoryIDs: categoryIDs), options: [.sortedKeys])
        try AtomicOutput.write(json, to: output, overwrite: force)
        try staged.commit()
        note("wrote \(results.reduce(0) { $0 + $1.detections.count }) detections in \(results.count) images to \(output)\(draw.map { " and drawings to \($0)" } ?? "")\(saveTxt.map { " and labels to \($0)" } ?? "")")
    }
}

/// The COCO ids detections are written with: without `annotations`, image ids counting from 1 in
/// the order of `paths` and the training data's category ids (or 1...n); with a COCO
/// annotations file, each image's id looked up by file name and each class's by name.
func cocoIDs(paths: [String], classes: [String], categoryIDs stored: [Int64]?, annotations: String?) throws
    -> (categoryIDs: [Int64], imageIDs: [String: Int64]) {
    var categoryIDs = stored ?? classes.indices.map { Int64($0 + 1) }
    var imageIDs = Dictionary(uniqueKeysWithValues: paths.enumerated().map { ($1, Int64($0 + 1)) })
    if let annotations {
        let coco = try COCOIndex(path: annotations)
        categoryIDs = try classes.map { name in
            guard let id = coco.categoryIDs[name] else { throw DatasetError(annotations, "has no category named '\(name)' (the model's classes: \(classes.joined(separator: ", ")))") }
            return id
        }
        imageIDs = Dictionary(uniqueKeysWithValues: try paths.map { path in
            guard let id = coco.imageIDs[(path as NSString).lastPathComponent] else { throw DatasetError(path, "is not among the images of \(annotations)") }
            return (path, id)
        })
    }
    return (categoryIDs, imageIDs)
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
