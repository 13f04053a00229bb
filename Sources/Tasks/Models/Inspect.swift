import PerceptCore
import PerceptDatasets
import Foundation

/// Human-readable descriptions of Percept files (what `percept inspect` prints).
public enum Inspector {
    /// Describes a dataset or model file: its kind, attributes, and every dataset with shape,
    /// type and storage; dataset files are also validated against their task's layout.
    public static func describe(path: String) throws -> String {
        let file = try HDF5File(openingPath: path)
        var lines: [String] = []
        let format = file.hasAttribute("format") ? try file.stringAttribute("format") : nil
        switch format {
        case DatasetLayout.datasetFormat?:
            let dataset = try openDataset(path: path)
            lines.append("\(path): Percept \(dataset.task.rawValue) dataset, format version \(dataset.formatVersion)")
            lines.append("  \(dataset.count) images of \(dataset.channels)x\(dataset.height)x\(dataset.width), \(dataset.classNames.count) \(dataset.task == .tagging ? "tags" : "classes")")
            if let detection = dataset as? DetectionDataset { lines.append("  \(detection.boxCount) boxes") }
        case DatasetLayout.modelFormat?:
            let checkpoint = try ModelCheckpoint.read(path: path)
            let scalars = checkpoint.parameters.values.reduce(0) { $0 + $1.count }
            lines.append("\(path): Percept model file, task \(checkpoint.task), epoch \(checkpoint.epoch), step \(checkpoint.step)")
            lines.append("  \(checkpoint.parameters.count) parameters (\(scalars) scalars), \(checkpoint.buffers.count) buffers"
                         + (checkpoint.optimizer.map { ", optimizer \($0.name) with \($0.tensors.count) tensors" } ?? ""))
            lines.append("  model (architecture and settings, as stored):")
            if let tree = try? JSONDecoder().decode(ConfigValue.self, from: Data(checkpoint.architecture.utf8)) {
                lines += tree.snakeCased().yaml().split(separator: "\n").map { "    " + $0 }
            }
            if let config = checkpoint.metadata["config"] {
                lines.append("  training configuration (`--config` with it repeats the run):")
                lines += config.split(separator: "\n").map { "    " + $0 }
            }
        default:
            lines.append("\(path): HDF5 file, not written by Percept (no Percept 'format' attribute)")
        }
        try describeGroup(file, depth: 0, into: &lines)
        return lines.joined(separator: "\n")
    }

    static func describeAttributes(names: [String], read: (String) throws -> HDF5AttributeValue,
                                   indent: String, into lines: inout [String]) throws {
        for name in names {
            var text = try read(name).description
            if text.count > 200 { text = String(text.prefix(200)) + "..." }
            lines.append("\(indent)@\(name) = \(text)")
        }
    }

    static func describeGroup(_ group: HDF5Group, depth: Int, into lines: inout [String]) throws {
        let indent = String(repeating: "  ", count: depth + 1)
        try describeAttributes(names: group.attributeNames(), read: group.attribute, indent: indent, into: &lines)
        for member in try group.memberNames() {
            if group.isGroup(member) {
                lines.append("\(indent)\(member)/")
                try describeGroup(group.group(member), depth: depth + 1, into: &lines)
            } else {
                let dataset = try group.dataset(member)
                let layout = try dataset.layout()
                var storage = layout.chunk.map { "chunks \($0)" } ?? "contiguous"
                if layout.shuffle { storage += ", shuffle" }
                if layout.gzipLevel > 0 { storage += ", gzip \(layout.gzipLevel)" }
                lines.append("\(indent)\(member): \(dataset.storedType) \(dataset.shape) (\(storage))")
                try describeAttributes(names: dataset.attributeNames(), read: dataset.attribute, indent: indent + "  ", into: &lines)
            }
        }
    }
}
