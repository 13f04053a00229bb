import ArgumentParser
import Foundation
import PerceptCore
import PerceptDatasets
import PerceptTasks

/// `percept export`: a model as ONNX.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a model to ONNX (opset 17): input `images` [N, C, H, W] of pixels / 255, the normalisation inside.",
        discussion: "Outputs: classify `probabilities`, tag `scores` (sigmoid), segment `scores` [N, classes, H, W] (softmax), detect the dense window scorer of one pyramid level: `scores` (softmax over background and classes) and `deltas`. docs/export.md shows the pyramid, decoding and NMS in Python.")

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
        let task = try ModelCheckpoint.read(path: model).task
        switch VisionTask(rawValue: task) {
        case .classification?: try export(ClassificationHead.self)
        case .tagging?: try export(TaggingHead.self)
        case .detection?: try export(WindowHead.self)
        case .segmentation?: try export(SegmentationHead.self)
        case nil where task == MultiTaskConfiguration.task:
            throw DatasetError(model, "is a multi-task model; ONNX export takes single-task models for now")
        case nil: throw DatasetError(model, "is a model of task '\(task)', which Percept does not know")
        }
    }

    func export<H: Head>(_ head: H.Type) throws {
        let (loaded, _) = try Model<H>.load(path: model)
        let paths = try collectImagePaths(testData)
        let data = try ONNXExport.export(loaded)
        var written = [output]
        let staged = OutputSet()
        try staged.write(data, to: output, overwrite: force)
        if !paths.isEmpty {
            let folder = (output as NSString).deletingPathExtension + ".test_data"
            for (index, path) in paths.enumerated() {
                let pixels = try input(loaded, path: path)
                let set = folder + "/test_data_set_\(index)"
                try FileManager.default.createDirectory(atPath: set, withIntermediateDirectories: true)
                try staged.write(tensorFile("images", pixels), to: set + "/input_0.pb", overwrite: force)
                for (k, out) in ONNXExport.outputs(loaded, pixels: pixels).enumerated() {
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
        } else if let side = (model.head as? WindowHead)?.settings.maxSide ?? (model.head as? SegmentationHead)?.settings.maxSide,
                  max(image.width, image.height) > side {
            let size = predictionSize(width: image.width, height: image.height, maxSide: side)
            image = image.resized(width: size.width, height: size.height)
        }
        return normalisedTensor(image, mean: Array(repeating: 0, count: c.inputChannels), std: Array(repeating: 1, count: c.inputChannels))
    }

    func tensorFile(_ name: String, _ tensor: Tensor) -> Data {
        ONNXExport.tensorFile(name: name, tensor)
    }
}
