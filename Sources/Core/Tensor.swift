import Foundation

/// Reference-counted, 64-byte aligned float32 buffer behind one or more tensors.
///
/// Tensors share storage freely (reshape is free); the engine never mutates a storage that an
/// op handed out, except where the owner says so (optimizers updating their own parameters).
public final class TensorStorage {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Uninitialised storage for `count` floats.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "negative storage size \(count)")
        self.count = count
        pointer = BufferPool.shared.take(count)
    }

    /// Zero-filled storage for `count` floats.
    public convenience init(zeros count: Int) {
        self.init(uninitializedCount: count)
        parallelZero(pointer, count: count)
    }

    deinit { BufferPool.shared.give(pointer, count: count) }

    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }
}

/// A dense float32 tensor in row-major (NCHW for images) order.
///
/// A tensor is a shape, a storage and, when it takes part in a recorded computation, the graph
/// node that knows how to send gradients back to its inputs.
public struct Tensor {
    public let shape: [Int]
    public let storage: TensorStorage
    /// The graph node recording how this tensor was computed; nil for constants and in inference.
    public let node: GraphNode?

    public init(shape: [Int], storage: TensorStorage, node: GraphNode? = nil) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == storage.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) elements, storage has \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.node = node
    }

    /// A tensor of `shape` filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        let storage = TensorStorage(uninitializedCount: shape.reduce(1, *))
        storage.pointer.initialize(repeating: value, count: storage.count)
        self.init(shape: shape, storage: storage)
    }

    /// A tensor of `shape` holding `scalars` in row-major order.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        let storage = TensorStorage(uninitializedCount: scalars.count)
        scalars.withUnsafeBufferPointer { storage.pointer.initialize(from: $0.baseAddress!, count: $0.count) }
        self.init(shape: shape, storage: storage)
    }

    /// A scalar (rank-0) tensor.
    public init(_ value: Float) { self.init(shape: [], scalars: [value]) }

    /// Uninitialised tensor: every element must be written before it is read.
    public static func uninitialized(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(uninitializedCount: shape.reduce(1, *)))
    }

    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(zeros: shape.reduce(1, *)))
    }

    @inlinable public var count: Int { storage.count }
    @inlinable public var rank: Int { shape.count }
    @inlinable public var pointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// Elements copied out in row-major order.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    /// The single element of a one-element tensor.
    public var scalar: Float {
        precondition(count == 1, "scalar of a tensor of shape \(shape)")
        return storage.pointer[0]
    }

    /// Whether gradients flow back through this tensor.
    @inlinable public var isTracked: Bool { node != nil }

    /// The same values, cut off from the graph.
    public var detached: Tensor { Tensor(shape: shape, storage: storage) }

    /// A leaf tensor whose gradient `backward()` returns (for checks and input gradients).
    public func trackingGradient() -> Tensor {
        Tensor(shape: shape, storage: storage, node: GraphNode(leafOf: shape))
    }

    /// A deep copy with its own storage, untracked.
    public func copy() -> Tensor {
        let out = Tensor.uninitialized(shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(shown)\(count > 8 ? ", ..." : "")]"
    }
}

/// Fails with a message that prints the offending shapes.
@inlinable
public func checkShape(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                       file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("shape error: \(message())", file: file, line: line) }
}
