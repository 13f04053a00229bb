import Foundation

/// An ONNX graph under construction, serialised by our own writer of the protocol buffer wire
/// format (as dlib writes its models): the handful of messages an inference graph needs, with
/// the field numbers of onnx.proto (IR version 8, opset 17). onnx.proto is proto2, so repeated
/// scalars are written one key per value (unpacked), which every parser reads.
struct ONNXGraph {
    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)
        case string(String, String)
    }

    private(set) var nodes: [[UInt8]] = []
    private(set) var initializers: [[UInt8]] = []
    private var used: Set<String> = []

    /// A fresh tensor name starting with `stem`.
    mutating func name(_ stem: String) -> String {
        var candidate = stem, index = 1
        while used.contains(candidate) { index += 1; candidate = "\(stem)_\(index)" }
        used.insert(candidate)
        return candidate
    }

    /// A float32 initializer.
    mutating func constant(_ stem: String, _ values: [Float], dims: [Int]) -> String {
        precondition(values.count == dims.reduce(1, *), "\(stem): \(values.count) values for dims \(dims)")
        let name = self.name(stem)
        initializers.append(Self.tensor(name: name, dims: dims, dataType: 1, raw: values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }))
        return name
    }

    /// An int64 initializer.
    mutating func int64s(_ stem: String, _ values: [Int]) -> String {
        let name = self.name(stem)
        initializers.append(Self.tensor(name: name, dims: [values.count], dataType: 7,
                                        raw: values.flatMap { withUnsafeBytes(of: Int64($0).littleEndian) { Array($0) } }))
        return name
    }

    /// Adds a node of `op` and returns its output's name.
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], output stem: String? = nil) -> String {
        let output = name(stem ?? op.lowercased())
        var proto = ProtoWriter()
        for input in inputs { proto.string(1, input) }
        proto.string(2, output)
        proto.string(3, name(op + "_node"))
        proto.string(4, op)
        for attribute in attributes { proto.message(5, Self.attribute(attribute)) }
        nodes.append(proto.bytes)
        return output
    }

    /// The model file: `graph` with its inputs and outputs (name, dims: a number or a symbol).
    func model(inputs: [(name: String, dims: [Dimension])], outputs: [(name: String, dims: [Dimension])],
               metadata: [(String, String)], producerVersion: String) -> Data {
        var graph = ProtoWriter()
        for node in nodes { graph.message(1, node) }
        graph.string(2, "percept")
        for initializer in initializers { graph.message(5, initializer) }
        for input in inputs { graph.message(11, Self.valueInfo(input.name, input.dims)) }
        for output in outputs { graph.message(12, Self.valueInfo(output.name, output.dims)) }
        var model = ProtoWriter()
        model.int(1, 8)                              // ir_version
        model.string(2, "percept")                   // producer_name
        model.string(3, producerVersion)             // producer_version
        model.message(7, graph.bytes)                // graph
        var opset = ProtoWriter()
        opset.string(1, "")
        opset.int(2, 17)
        model.message(8, opset.bytes)                // opset_import
        for (key, value) in metadata {
            var entry = ProtoWriter()
            entry.string(1, key)
            entry.string(2, value)
            model.message(14, entry.bytes)           // metadata_props
        }
        return Data(model.bytes)
    }

    enum Dimension { case value(Int), symbol(String) }

    static func tensor(name: String, dims: [Int], dataType: Int, raw: [UInt8]) -> [UInt8] {
        var proto = ProtoWriter()
        for dim in dims { proto.int(1, Int64(dim)) }
        proto.int(2, Int64(dataType))
        proto.string(8, name)
        proto.message(9, raw)
        return proto.bytes
    }

    static func valueInfo(_ name: String, _ dims: [Dimension]) -> [UInt8] {
        var shape = ProtoWriter()
        for dim in dims {
            var dimension = ProtoWriter()
            switch dim {
            case .value(let v): dimension.int(1, Int64(v))
            case .symbol(let s): dimension.string(2, s)
            }
            shape.message(1, dimension.bytes)
        }
        var tensorType = ProtoWriter()
        tensorType.int(1, 1)                          // elem_type FLOAT
        tensorType.message(2, shape.bytes)
        var type = ProtoWriter()
        type.message(1, tensorType.bytes)
        var info = ProtoWriter()
        info.string(1, name)
        info.message(2, type.bytes)
        return info.bytes
    }

    static func attribute(_ attribute: Attribute) -> [UInt8] {
        var proto = ProtoWriter()
        switch attribute {
        case .int(let name, let value):
            proto.string(1, name); proto.int(3, Int64(value)); proto.int(20, 2)
        case .ints(let name, let values):
            proto.string(1, name); for v in values { proto.int(8, Int64(v)) }; proto.int(20, 7)
        case .float(let name, let value):
            proto.string(1, name); proto.float(2, value); proto.int(20, 1)
        case .string(let name, let value):
            proto.string(1, name); proto.message(4, Array(value.utf8)); proto.int(20, 3)
        }
        return proto.bytes
    }

    /// A serialised TensorProto of float32 values (for test data sets: input_0.pb, output_0.pb).
    static func tensorFile(name: String, dims: [Int], values: UnsafeBufferPointer<Float>) -> Data {
        Data(tensor(name: name, dims: dims, dataType: 1, raw: values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }))
    }
}
