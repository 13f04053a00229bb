/// A trainable tensor owned by a layer. Its identity keys its gradient and optimizer state; its
/// property path keys it in checkpoints.
public final class Parameter {
    /// Current values, never tracked. Optimizers update them in place.
    public var value: Tensor {
        didSet { checkShape(value.shape == oldValue.shape, "parameter reassigned from \(oldValue.shape) to \(value.shape)") }
    }
    /// Identity of this parameter in every graph it enters.
    public let leaf: GraphNode
    /// Frozen parameters take part in forward passes but receive no gradient.
    public var isTrainable = true
    /// Set by `Module.setMode`: inference reads the value without building a graph.
    public internal(set) var recordsGradient = true

    public init(_ value: Tensor) {
        self.value = value.detached
        self.leaf = GraphNode(leafOf: value.shape)
    }

    public var shape: [Int] { value.shape }

    /// The value as forward passes read it: tracked in training, plain in inference.
    @inlinable public var tensor: Tensor {
        recordsGradient && isTrainable
            ? Tensor(shape: value.shape, storage: value.storage, node: leaf) : value
    }
}

/// Non-trained state saved with a model (batch-norm running statistics).
public final class Buffer {
    public var value: Tensor {
        didSet { checkShape(value.shape == oldValue.shape, "buffer reassigned from \(oldValue.shape) to \(value.shape)") }
    }
    public init(_ value: Tensor) { self.value = value.detached }
}

/// A module's parameters and buffers by dotted path: the result of one reflection walk.
///
/// Module trees are built once and never restructured (layers hold their sub-modules in `let`
/// properties), so an index stays valid for its module's lifetime and callers that visit the
/// parameters repeatedly (optimizers, every step) keep one instead of walking again.
public struct ModuleIndex {
    public let parameters: [(path: String, parameter: Parameter)]
    public let buffers: [(path: String, buffer: Buffer)]
}

/// Training or inference: decides batch-norm statistics, dropout, and whether a graph is built.
public enum Mode: Sendable { case training, inference }

/// Anything holding parameters, buffers or sub-modules in stored properties.
///
/// Parameters are discovered by reflection; their dotted property path
/// (`backbone.stages.1.conv1.weight`) is stable and is their checkpoint key.
public protocol Module: AnyObject {}

/// A module whose behaviour depends on the mode (batch norm, dropout).
public protocol ModeDependent: Module {
    var mode: Mode { get set }
}

/// A module mapping one tensor to one tensor.
public protocol Layer: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
}

extension Module {
    /// Calls `visit` for every module, parameter and buffer reachable from this one, depth first,
    /// with its dotted path; each object is visited once even when it is shared.
    public func walk(_ visit: (String, AnyObject) -> Void) {
        var seen = Set<ObjectIdentifier>()
        func descend(_ value: Any, _ path: String) {
            if let object = value as AnyObject?, object is Parameter || object is Buffer || object is Module {
                guard seen.insert(ObjectIdentifier(object)).inserted else { return }
                visit(path, object)
                // Descend from the object, not from `value`: an Optional wrapper would lead back to
                // the object just marked as seen and skip everything inside it.
                if object is Module { children(of: object, path) }
                return
            }
            children(of: value, path)
        }
        func children(of value: Any, _ path: String) {
            var mirror: Mirror? = Mirror(reflecting: value)
            switch mirror?.displayStyle {
            case .class?, .struct?, .collection?, .optional?, .tuple?: break
            default: return
            }
            while let m = mirror {
                for (index, child) in m.children.enumerated() {
                    let name: String
                    switch m.displayStyle {
                    case .optional?: name = path
                    case .collection?: name = path.isEmpty ? "\(index)" : "\(path).\(index)"
                    default:
                        let label = child.label ?? "\(index)"
                        name = path.isEmpty ? label : "\(path).\(label)"
                    }
                    descend(child.value, name)
                }
                mirror = m.superclassMirror
            }
        }
        seen.insert(ObjectIdentifier(self))
        visit("", self)
        children(of: self, "")
    }

    /// Every parameter and buffer with its dotted path, from one walk.
    public var index: ModuleIndex {
        var parameters: [(String, Parameter)] = [], buffers: [(String, Buffer)] = []
        walk { path, object in
            if let p = object as? Parameter { parameters.append((path, p)) }
            if let b = object as? Buffer { buffers.append((path, b)) }
        }
        return ModuleIndex(parameters: parameters, buffers: buffers)
    }

    /// Every parameter with its dotted path, in declaration order.
    public var namedParameters: [(path: String, parameter: Parameter)] { index.parameters }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// Every buffer with its dotted path.
    public var namedBuffers: [(path: String, buffer: Buffer)] { index.buffers }

    /// Parameters and buffers by path: what a checkpoint stores.
    public var state: [(path: String, value: Tensor)] {
        var out: [(String, Tensor)] = []
        walk { path, object in
            if let p = object as? Parameter { out.append((path, p.value)) }
            if let b = object as? Buffer { out.append((path, b.value)) }
        }
        return out
    }

    /// Number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Switches this module and everything inside it to `mode`.
    public func setMode(_ mode: Mode) {
        walk { _, object in
            if let p = object as? Parameter { p.recordsGradient = mode == .training }
            if let m = object as? ModeDependent { m.mode = mode }
        }
    }
}
