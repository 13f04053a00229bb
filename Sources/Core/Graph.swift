/// A node of the computation graph: the inputs an op read and the pullback that maps the
/// gradient of its output to gradients of those inputs.
///
/// Forward and backward are written together inside each op (micrograd style); the graph is
/// built only when some input is tracked, so inference allocates no nodes at all.
public final class GraphNode {
    public let inputs: [GraphNode]
    /// Maps d(loss)/d(output) to d(loss)/d(input) for each entry of `inputs`, in order.
    let pullback: ((Tensor) -> [Tensor?])?
    public let shape: [Int]

    /// A leaf: a parameter or an input whose gradient the caller asks for.
    public init(leafOf shape: [Int]) {
        self.inputs = []
        self.pullback = nil
        self.shape = shape
    }

    init(shape: [Int], inputs: [GraphNode], pullback: @escaping (Tensor) -> [Tensor?]) {
        self.inputs = inputs
        self.pullback = pullback
        self.shape = shape
    }

    public var isLeaf: Bool { pullback == nil }
}

extension Tensor {
    /// Attaches `pullback` to `output` when any of `inputs` is tracked.
    ///
    /// `pullback` returns one gradient per input (nil where an input is untracked or has no
    /// gradient). Untracked inputs are dropped here, so pullbacks never see them.
    @inlinable
    public static func record(_ output: Tensor, inputs: [Tensor],
                              pullback: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        var tracked = false
        for input in inputs where input.node != nil { tracked = true; break }
        guard tracked else { return output }
        return recordTracked(output, inputs: inputs, pullback: pullback)
    }

    @usableFromInline
    static func recordTracked(_ output: Tensor, inputs: [Tensor],
                              pullback: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        var nodes: [GraphNode] = []
        var positions: [Int] = []
        for (i, input) in inputs.enumerated() {
            if let node = input.node { nodes.append(node); positions.append(i) }
        }
        let all = positions.count == inputs.count
        let node = GraphNode(shape: output.shape, inputs: nodes) { gradient in
            let grads = pullback(gradient)
            return all ? grads : positions.map { grads[$0] }
        }
        return Tensor(shape: output.shape, storage: output.storage, node: node)
    }

    /// Reverse-mode sweep from this scalar: returns the gradient of every leaf reached.
    public func backward() -> Gradients {
        precondition(count == 1, "backward() needs a scalar loss, got shape \(shape); use backward(seed:)")
        return backward(seed: Tensor(shape: shape, repeating: 1))
    }

    /// Reverse-mode sweep seeded with d(loss)/d(self) = `seed`.
    public func backward(seed: Tensor) -> Gradients {
        checkShape(seed.shape == shape, "backward seed \(seed.shape) vs output \(shape)")
        guard let root = node else { return Gradients([:]) }
        let order = GraphNode.topologicalOrder(from: root)
        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seed.detached]
        var leaves: [ObjectIdentifier: (node: GraphNode, gradient: Tensor)] = [:]
        for node in order.reversed() {
            let id = ObjectIdentifier(node)
            guard let gradient = pending.removeValue(forKey: id) else { continue }
            guard let pullback = node.pullback else {
                leaves[id] = (node, gradient)
                continue
            }
            let inputGradients = pullback(gradient)
            for (input, g) in zip(node.inputs, inputGradients) {
                guard let g else { continue }
                checkShape(g.shape == input.shape || g.count == input.shape.reduce(1, *),
                           "gradient \(g.shape) for input of shape \(input.shape)")
                let key = ObjectIdentifier(input)
                if let existing = pending[key] {
                    // A node used twice (shared sub-graph, residual join): sum the contributions.
                    pending[key] = Tensor(shape: input.shape, storage: existing.storage).summed(with: g)
                } else {
                    pending[key] = g.shape == input.shape ? g.detached
                        : Tensor(shape: input.shape, storage: g.storage)
                }
            }
        }
        return Gradients(leaves)
    }
}

extension GraphNode {
    /// Nodes reachable from `root`, each after all of its inputs (iterative DFS).
    static func topologicalOrder(from root: GraphNode) -> [GraphNode] {
        var order: [GraphNode] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GraphNode, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (node, next) = stack.last {
            if next < node.inputs.count {
                stack[stack.count - 1].1 = next + 1
                let child = node.inputs[next]
                if visited.insert(ObjectIdentifier(child)).inserted { stack.append((child, 0)) }
            } else {
                order.append(node)
                stack.removeLast()
            }
        }
        return order
    }
}

/// Gradients of a loss with respect to the leaves of its graph, keyed by leaf identity.
///
/// Gradients are read-only results: two of them may share storage (the two inputs of an
/// addition receive the same upstream gradient), so copy one before changing it in place.
public struct Gradients {
    /// Each entry keeps its leaf alive, so a freed leaf's address can never be reused by an
    /// unrelated tensor and then match its gradient.
    var values: [ObjectIdentifier: (node: GraphNode, gradient: Tensor)]
    init(_ values: [ObjectIdentifier: (node: GraphNode, gradient: Tensor)]) { self.values = values }

    /// The gradient for a tracked leaf tensor (see `Tensor.trackingGradient()`).
    public subscript(_ tensor: Tensor) -> Tensor? {
        guard let node = tensor.node, let entry = values[ObjectIdentifier(node)], entry.node === node else { return nil }
        return entry.gradient
    }

    /// The gradient for a parameter, nil when the loss does not depend on it.
    public subscript(_ parameter: Parameter) -> Tensor? {
        guard let entry = values[ObjectIdentifier(parameter.leaf)], entry.node === parameter.leaf else { return nil }
        return entry.gradient
    }

    public var count: Int { values.count }
}
