import PerceptDatasets
import PerceptCore
import Foundation

/// Optimizer state stored with a checkpoint so training resumes exactly.
public struct OptimizerState {
    /// Optimizer name ("sgd", "adam", ...).
    public var name: String
    /// Scalar settings (learning rate, momentum, ...).
    public var hyperparameters: [String: Double]
    /// Named state tensors (momentum buffers, moments); a "/" in a key makes a sub-group.
    public var tensors: [String: Tensor]

    public init(name: String, hyperparameters: [String: Double] = [:], tensors: [String: Tensor] = [:]) {
        self.name = name
        self.hyperparameters = hyperparameters
        self.tensors = tensors
    }

    /// The state of `optimizer` for the parameters of `module`.
    public init(of optimizer: any Optimizer, for module: Module) {
        self.init(name: optimizer.name, hyperparameters: optimizer.configuration,
                  tensors: Dictionary(optimizer.stateTensors(of: module).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a }))
    }
}

/// Everything a Percept model file holds: weights under dotted paths, the architecture as
/// JSON (enough to rebuild the model), the task and class names, and training progress.
public struct ModelCheckpoint {
    /// JSON describing the architecture, written by the model code and parsed by it.
    public var architecture: String
    public var task: String
    public var classNames: [String]
    /// Trainable tensors by dotted property path.
    public var parameters: [String: Tensor]
    /// Non-trained state (batch-norm statistics) by dotted property path.
    public var buffers: [String: Tensor]
    public var optimizer: OptimizerState?
    /// Completed epochs and optimizer steps.
    public var epoch: Int
    public var step: Int
    /// Extra string attributes on the root group (e.g. training data path).
    public var metadata: [String: String]

    /// A checkpoint from explicit tensors.
    public init(architecture: String, task: String, classNames: [String] = [],
                parameters: [String: Tensor], buffers: [String: Tensor] = [:],
                optimizer: OptimizerState? = nil, epoch: Int = 0, step: Int = 0, metadata: [String: String] = [:]) {
        self.architecture = architecture
        self.task = task
        self.classNames = classNames
        self.parameters = parameters
        self.buffers = buffers
        self.optimizer = optimizer
        self.epoch = epoch
        self.step = step
        self.metadata = metadata
    }

    /// A checkpoint of `module`'s current parameters and buffers (values are shared, not copied).
    public init(module: some Module, architecture: String, task: String, classNames: [String] = [],
                optimizer: OptimizerState? = nil, epoch: Int = 0, step: Int = 0, metadata: [String: String] = [:]) {
        let index = module.index
        var parameters: [String: Tensor] = [:]
        for (path, parameter) in index.parameters { parameters[path] = parameter.value }
        var buffers: [String: Tensor] = [:]
        for (path, buffer) in index.buffers { buffers[path] = buffer.value }
        self.init(architecture: architecture, task: task, classNames: classNames, parameters: parameters,
                  buffers: buffers, optimizer: optimizer, epoch: epoch, step: step, metadata: metadata)
    }

    /// Writes the checkpoint to `path` atomically: a crash mid-write leaves any previous file intact.
    public func write(to path: String) throws {
        guard let data = architecture.data(using: .utf8),
              (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
            throw DatasetError(path, "architecture is not valid JSON")
        }
        let output = try AtomicOutput(path: path, overwrite: true)
        do {
            try writeContents(to: output.temporaryPath, reportedAs: path)
            try output.commit()
        } catch let error as DatasetError {
            output.abandon()
            // Errors name the final path, not the temporary one.
            throw DatasetError(path, error.problem)
        }
    }

    private func writeContents(to temporary: String, reportedAs path: String) throws {
        let file = try HDF5File(creatingPath: temporary)
        try file.setAttribute("format", DatasetLayout.modelFormat)
        try file.setAttribute("format_version", DatasetLayout.formatVersion)
        try file.setAttribute("task", task)
        try file.setAttribute("architecture", architecture)
        try file.setAttribute("class_names", strings: classNames)
        try file.setAttribute("epoch", epoch)
        try file.setAttribute("step", step)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard !Self.reservedAttributes.contains(key) else { throw DatasetError(path, "metadata key '\(key)' is reserved") }
            try file.setAttribute(key, value)
        }
        try Self.writeTensors(parameters, into: file.createGroup("parameters"), path: path, dotted: true)
        try Self.writeTensors(buffers, into: file.createGroup("buffers"), path: path, dotted: true)
        if let optimizer {
            let group = try file.createGroup("optimizer")
            try group.setAttribute("name", optimizer.name)
            for (key, value) in optimizer.hyperparameters.sorted(by: { $0.key < $1.key }) {
                guard key != "name" else { throw DatasetError(path, "optimizer hyper-parameter may not be called 'name'") }
                try group.setAttribute(key, value)
            }
            try Self.writeTensors(optimizer.tensors, into: group, path: path, dotted: false)
        }
        try file.flush()
    }

    static let reservedAttributes: Set<String> = ["format", "format_version", "task", "architecture", "class_names", "epoch", "step"]

    private static func writeTensors(_ tensors: [String: Tensor], into group: HDF5Group, path: String, dotted: Bool) throws {
        for (key, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            guard !key.isEmpty, !(dotted && key.contains("/")), !key.hasPrefix("/"), !key.hasSuffix("/") else {
                throw DatasetError(path, "tensor key '\(key)' cannot be stored in '\(group.name)'")
            }
            let dataset = try group.createDataset(key, type: .float32, shape: tensor.shape)
            try dataset.writeAll(as: .float32, from: tensor.pointer)
        }
    }

    private static func readTensors(_ group: HDF5Group, prefix: String = "", into tensors: inout [String: Tensor]) throws {
        for member in try group.memberNames() {
            let key = prefix.isEmpty ? member : prefix + "/" + member
            if group.isGroup(member) {
                try readTensors(group.group(member), prefix: key, into: &tensors)
                continue
            }
            let dataset = try group.dataset(member)
            guard try dataset.checkedElementCount() > 0 else { tensors[key] = Tensor.uninitialized(dataset.shape); continue }
            let tensor = Tensor.uninitialized(dataset.shape)
            try dataset.readAll(as: .float32, into: tensor.pointer)
            tensors[key] = tensor
        }
    }

    /// Reads a model file written by `write(to:)`.
    public static func read(path: String) throws -> ModelCheckpoint {
        let file = try HDF5File(openingPath: path)
        guard file.hasAttribute("format") else { throw DatasetError(path, "not a Percept model file (no 'format' attribute)") }
        let format = try file.stringAttribute("format")
        guard format == DatasetLayout.modelFormat else {
            throw DatasetError(path, format == DatasetLayout.datasetFormat ? "is a Percept dataset, not a model file"
                                                                          : "not a Percept model file (format '\(format)')")
        }
        let version = try file.integerAttribute("format_version")
        guard version >= 1 && version <= DatasetLayout.formatVersion else {
            throw DatasetError(path, "format version \(version) is newer than this Percept reads (\(DatasetLayout.formatVersion))")
        }
        var parameters: [String: Tensor] = [:], buffers: [String: Tensor] = [:]
        try readTensors(file.group("parameters"), into: &parameters)
        if file.contains("buffers") { try readTensors(file.group("buffers"), into: &buffers) }
        var optimizer: OptimizerState?
        if file.contains("optimizer") {
            let group = try file.group("optimizer")
            var state = OptimizerState(name: try group.stringAttribute("name"))
            for attribute in try group.attributeNames() where attribute != "name" {
                state.hyperparameters[attribute] = try group.numberAttribute(attribute)
            }
            try readTensors(group, into: &state.tensors)
            optimizer = state
        }
        var metadata: [String: String] = [:]
        for attribute in try file.attributeNames() where !reservedAttributes.contains(attribute) {
            if case .strings(let values) = try file.attribute(attribute), values.count == 1 { metadata[attribute] = values[0] }
        }
        return ModelCheckpoint(architecture: try file.stringAttribute("architecture"), task: try file.stringAttribute("task"),
                               classNames: file.hasAttribute("class_names") ? try file.stringsAttribute("class_names") : [],
                               parameters: parameters, buffers: buffers, optimizer: optimizer,
                               epoch: file.hasAttribute("epoch") ? try file.integerAttribute("epoch") : 0,
                               step: file.hasAttribute("step") ? try file.integerAttribute("step") : 0,
                               metadata: metadata)
    }

    /// Throws naming `path` and the first tensor (by key) that holds NaN or infinity, among
    /// the parameters and buffers whose key `include` accepts.
    public func checkFinite(path: String, include: (String) -> Bool = { _ in true }) throws {
        for (key, tensor) in parameters.merging(buffers, uniquingKeysWith: { a, _ in a }).sorted(by: { $0.key < $1.key })
            where include(key) && !tensor.scalars.allSatisfy(\.isFinite) {
            throw DatasetError(path, "\(key) holds values that are not finite (NaN or infinity)")
        }
    }

    /// Copies the stored parameters and buffers into `module`, matching dotted paths. Missing
    /// or unexpected keys and shape mismatches throw one error (naming `path` and the keys)
    /// before anything is changed.
    public func load(into module: any Module, path: String = "checkpoint") throws {
        let index = module.index
        let targets = index.parameters.map { ($0.path, "parameters", $0.parameter.value.shape) }
            + index.buffers.map { ($0.path, "buffers", $0.buffer.value.shape) }
        var problems: [String] = []
        var missing: [String] = []
        for (key, kind, shape) in targets {
            guard let tensor = (kind == "parameters" ? parameters : buffers)[key] else { missing.append("\(kind)/\(key)"); continue }
            if tensor.shape != shape { problems.append("\(kind)/\(key) has shape \(tensor.shape), the model expects \(shape)") }
        }
        let expectedParameters = Set(index.parameters.map(\.path))
        let expectedBuffers = Set(index.buffers.map(\.path))
        let unexpected = parameters.keys.filter { !expectedParameters.contains($0) }.map { "parameters/\($0)" }
            + buffers.keys.filter { !expectedBuffers.contains($0) }.map { "buffers/\($0)" }
        if !missing.isEmpty { problems.append("missing keys: " + missing.sorted().joined(separator: ", ")) }
        if !unexpected.isEmpty { problems.append("unexpected keys: " + unexpected.sorted().joined(separator: ", ")) }
        guard problems.isEmpty else { throw DatasetError(path, problems.joined(separator: "; ")) }
        for (key, parameter) in index.parameters { parameter.value = parameters[key]!.copy() }
        for (key, buffer) in index.buffers { buffer.value = buffers[key]!.copy() }
    }
}

/// Saving and loading models in one call.
public enum ModelFile {
    /// Saves `module` with its description and training progress to `path` atomically.
    public static func save(module: some Module, to path: String, architecture: String, task: String,
                            classNames: [String] = [], optimizer: OptimizerState? = nil,
                            epoch: Int = 0, step: Int = 0) throws {
        try ModelCheckpoint(module: module, architecture: architecture, task: task, classNames: classNames,
                            optimizer: optimizer, epoch: epoch, step: step).write(to: path)
    }

    /// Loads the weights at `path` into `module` and returns the whole checkpoint.
    @discardableResult
    public static func load(into module: some Module, from path: String) throws -> ModelCheckpoint {
        let checkpoint = try ModelCheckpoint.read(path: path)
        try checkpoint.load(into: module, path: path)
        return checkpoint
    }
}
