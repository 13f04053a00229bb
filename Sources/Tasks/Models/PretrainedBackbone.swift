import PerceptCore
import PerceptDatasets
import Foundation

/// The backbone of a trained model file, to start another task's model from (transfer learning,
/// as FCN starts from a classifier and torchvision's `weights_backbone` does): its description,
/// the input normalisation it was trained with, and its weights and batch-norm statistics, with
/// the file's task, classes and head parameters for heads that can start from them.
public struct PretrainedBackbone {
    public let path: String
    public let configuration: BackboneConfiguration
    /// The normalisation the backbone's features were learned on; a model started from it
    /// normalises its images the same way.
    public let mean: [Float], std: [Float]
    /// Backbone tensors by their path under the backbone (`stages.0.blocks.0.conv1.weight`).
    let parameters: [String: Tensor], buffers: [String: Tensor]
    /// The file's task, class names and head parameters by their path under the head
    /// (`hiddenLayer.weight`): a head that can start from them may (`WindowHead.start(from:)`).
    public let task: String, classes: [String]
    public let headParameters: [String: Tensor]

    /// The part of any task's architecture JSON that a backbone needs.
    private struct Description: Decodable {
        var backbone: BackboneConfiguration
        var mean: [Float], std: [Float]
        /// Absent from multi-task files, whose classes are each head's.
        var classes: [String]?
    }

    /// Reads the backbone of the model file at `path` (of any task).
    public init(path: String) throws {
        let checkpoint = try ModelCheckpoint.read(path: path)
        let description: Description
        do {
            description = try JSONDecoder().decode(Description.self, from: Data(checkpoint.architecture.utf8))
        } catch let error as DecodingError {
            throw DatasetError(path, "architecture JSON does not describe a Percept backbone: \(describe(error))")
        }
        let channels = description.backbone.inputChannels
        guard description.mean.count == channels, description.std.count == channels,
              description.std.allSatisfy({ $0 > 0 && $0.isFinite }), description.mean.allSatisfy(\.isFinite) else {
            throw DatasetError(path, "normalisation (mean \(description.mean), std \(description.std)) does not fit \(channels) input channels")
        }
        func tensors(_ all: [String: Tensor], under prefix: String) -> [String: Tensor] {
            Dictionary(uniqueKeysWithValues: all.compactMap { key, value in
                key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), value) : nil
            })
        }
        self.path = path
        configuration = description.backbone
        mean = description.mean; std = description.std
        task = checkpoint.task; classes = description.classes ?? []
        parameters = tensors(checkpoint.parameters, under: ModelPath.backbone)
        buffers = tensors(checkpoint.buffers, under: ModelPath.backbone)
        headParameters = tensors(checkpoint.parameters, under: ModelPath.head)
        try checkpoint.checkFinite(path: path) { $0.hasPrefix(ModelPath.backbone) || $0.hasPrefix(ModelPath.head) }
    }

    /// Copies the weights into `backbone`, which must be built from `configuration`: every tensor
    /// is checked (names and shapes) before any is changed.
    /// A backbone that extends this one (`BackboneConfiguration.extends`) gets its first stages
    /// and stem from here and keeps its fresh later stages.
    public func load(into backbone: any Backbone) throws {
        if backbone.configuration == configuration {
            try ModelCheckpoint(architecture: "{}", task: "", parameters: parameters, buffers: buffers).load(into: backbone, path: path)
            return
        }
        guard backbone.configuration.extends(configuration) else {
            throw DatasetError(path, "holds a backbone \(configuration), not \(backbone.configuration)")
        }
        let index = backbone.index
        let targets = Dictionary(uniqueKeysWithValues: index.parameters.map { ($0.path, $0.parameter.value) }
            + index.buffers.map { ("buffer " + $0.path, $0.buffer.value) })
        for (key, tensor) in parameters.map({ ($0.key, $0.value) }) + buffers.map({ ("buffer " + $0.key, $0.value) }) {
            guard let target = targets[key], target.shape == tensor.shape else {
                throw DatasetError(path, "backbone tensor \(key) (shape \(tensor.shape)) has no place of that shape in \(backbone.configuration)")
            }
        }
        for (key, parameter) in index.parameters { if let value = parameters[key] { parameter.value = value.copy() } }
        for (key, buffer) in index.buffers { if let value = buffers[key] { buffer.value = value.copy() } }
    }
}

extension Model {
    /// A model whose backbone starts from `pretrained` (the configuration's backbone and
    /// normalisation must be the pretrained one's) and whose head is fresh, drawn from `seed`.
    public convenience init(_ configuration: ModelConfiguration<H>, startingFrom pretrained: PretrainedBackbone,
                            seed: UInt64) throws {
        guard configuration.mean == pretrained.mean, configuration.std == pretrained.std else {
            throw DatasetError(pretrained.path, "normalises images with mean \(pretrained.mean), std \(pretrained.std); the model being built uses \(configuration.mean), \(configuration.std)")
        }
        try self.init(configuration, seed: seed)
        try pretrained.load(into: backbone)
    }
}

/// Where the models shipped in the package's `models/` folder are found: `$PERCEPT_MODELS`,
/// then `models/` in the current directory, then a `models/` folder beside or above the
/// running executable (the package checkout, for a binary under `.build/`).
public enum ShippedModels {
    public static func locate(_ name: String) -> String? {
        var folders: [URL] = []
        if let folder = ProcessInfo.processInfo.environment["PERCEPT_MODELS"], !folder.isEmpty {
            folders.append(URL(fileURLWithPath: folder))
        }
        folders.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("models"))
        let executable = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        var directory = executable.resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            folders.append(directory.appendingPathComponent("models"))
            directory.deleteLastPathComponent()
        }
        return folders.map { $0.appendingPathComponent(name).path }.first { FileManager.default.fileExists(atPath: $0) }
    }
}
