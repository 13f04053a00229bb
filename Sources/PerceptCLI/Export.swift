import ArgumentParser
import Foundation
import PerceptCore
import PerceptDatasets
import PerceptTasks

/// `percept export`: a model as ONNX.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a model to ONNX (opset 17): input `images` [N, C, H, W] of pixels / 255, the normalisation inside.",
        discussion: "Outputs: classify `probabilities`, tag `scores` (sigmoid), segment `scores` [N, classes, H, W] (softmax), detect the dense window scorer of one pyramid level: `scores` (softmax over background and classes) and `deltas`. A multi-task model exports as one graph with an output per head (classification_probabilities, tagging_scores, detection_scores, detection_deltas, segmentation_scores) and any image size. docs/export.md shows the pyramid, decoding and NMS in Python.")

    @Option(help: "Model file.") var model: String
    @Option(name: .shortAndLong, help: "ONNX file to write.") var output: String
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Also write ONNX test data sets of these images (STEM.test_data/test_data_set_N/input_0.pb and output_K.pb, Percept's outputs), as the ONNX model zoo lays them out.", valueName: "IMAGES"))
    var testData: [String] = []
    @Flag(help: "Replace existing outputs.") var force = false

    func validate() throws {
        guard output.hasSuffix(".onnx") else { throw ValidationError("-o/--output should name an .onnx file, got '\(output)'") }
    }

    func run() throws {
        try OutputPolicy.check(output, inputs: [model] + testData, force: force)
        // Read once: the task picks the head, the same checkpoint gives the weights.
        let checkpoint = try ModelCheckpoint.read(path: model)
        let task = checkpoint.task
        switch VisionTask(rawValue: task) {
        case .classification?: try export(ClassificationHead.self, checkpoint)
        case .tagging?: try export(TaggingHead.self, checkpoint)
        case .detection?: try export(WindowHead.self, checkpoint)
        case .segmentation?: try export(SegmentationHead.self, checkpoint)
        case nil where task == MultiTaskConfiguration.task:
            let multi = try MultiTaskModel.load(checkpoint, path: model)
            let side = multi.detection?.settings.maxSide ?? multi.segmentation?.settings.maxSide
            try write(ONNXExport.export(multi), pixels: { path in
                try pixels(ImageFile.read(path: path, channels: multi.configuration.inputChannels), maxSide: side)
            }, outputs: { ONNXExport.outputs(multi, pixels: $0) })
        case nil: throw DatasetError(model, "is a model of task '\(task)', which Percept does not know")
        }
    }

    func export<H: Head>(_ head: H.Type, _ checkpoint: ModelCheckpoint) throws {
        let loaded = try Model<H>.load(checkpoint, path: model)
        try write(ONNXExport.export(loaded), pixels: { try input(loaded, path: $0) }, outputs: { ONNXExport.outputs(loaded, pixels: $0) })
    }

    /// Writes the ONNX file `data` and, for each `--test-data` image, a test data set: its
    /// `pixels` and Percept's `outputs` for them; all staged, so a bad image leaves nothing.
    func write(_ data: Data, pixels: (String) throws -> Tensor, outputs: (Tensor) -> [(name: String, tensor: Tensor)]) throws {
        let paths = try collectImagePaths(testData)
        var written = [output]
        let staged = OutputSet()
        try staged.write(data, to: output, overwrite: force)
        if !paths.isEmpty {
            let folder = (output as NSString).deletingPathExtension + ".test_data"
            for (index, path) in paths.enumerated() {
                let input = try pixels(path)
                let set = folder + "/test_data_set_\(index)"
                try FileManager.default.createDirectory(atPath: set, withIntermediateDirectories: true)
                try staged.write(tensorFile("images", input), to: set + "/input_0.pb", overwrite: force)
                for (k, out) in outputs(input).enumerated() {
                    try staged.write(tensorFile(out.name, out.tensor), to: set + "/output_\(k).pb", overwrite: force)
                }
            }
            written.append(folder)
        }
        try staged.commit()
        note("wrote " + written.joined(separator: " and ") + " (\(data.count) bytes of ONNX)")
    }

    /// The image as the graph takes it: pixels / 255, at the model's input size for fixed-size
    /// models and at its own (up to max_side) for the fully convolutional ones, as predict does.
    func input<H: Head>(_ model: Model<H>, path: String) throws -> Tensor {
        let c = model.configuration
        var image = try ImageFile.read(path: path, channels: c.inputChannels)
        if H.task == .classification || H.task == .tagging {
            if image.width != c.inputWidth || image.height != c.inputHeight { image = image.resized(width: c.inputWidth, height: c.inputHeight) }
        }
        return pixels(image, maxSide: (model.head as? WindowHead)?.settings.maxSide ?? (model.head as? SegmentationHead)?.settings.maxSide)
    }

    /// `image`'s pixels / 255 as [1, C, H, W], scaled down first where its longer side exceeds `maxSide`.
    func pixels(_ image: Image, maxSide: Int?) -> Tensor {
        var image = image
        if let side = maxSide, max(image.width, image.height) > side {
            let size = predictionSize(width: image.width, height: image.height, maxSide: side)
            image = image.resized(width: size.width, height: size.height)
        }
        return normalisedTensor(image, mean: Array(repeating: 0, count: image.channels), std: Array(repeating: 1, count: image.channels))
    }

    func tensorFile(_ name: String, _ tensor: Tensor) -> Data {
        ONNXExport.tensorFile(name: name, tensor)
    }
}
