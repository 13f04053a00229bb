import Foundation

/// The processes of a data-parallel job and the collective operations they call together.
///
/// Every rank must make the same collective calls in the same order with the same sizes; a
/// rank that does not (or dies) would leave the others waiting, so Percept makes each one on
/// every rank in code that all ranks run alike.
public protocol Communicator: AnyObject {
    /// This process's number, 0..<size; rank 0 is the one that prints and writes.
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `buffer[0..<count]` on every rank by its sum over the ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// Copies `count` bytes at `buffer` on rank `root` into `buffer` on every other rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int)
    /// Ends every rank of the job at once (a rank that failed alone must not leave the others
    /// waiting in a collective).
    func abort(code: Int32) -> Never
    /// Leaves the job in order (every rank, at the end).
    func finalize()
}

/// Data-parallel training across processes: which rank this is, and the collectives Percept's
/// training makes. Without a communicator (one process, the default) every operation here is
/// the identity, so single-process code paths run unchanged.
///
/// What must agree across ranks for K ranks to train the model that one process trains with the
/// same global batch: the gradients (summed by `GradientReducer`), batch-norm statistics
/// (`Tensor.batchNorm2D` sums its moments over the ranks inside `synchronisedStep`), and every
/// loss's denominator (losses divide by their weight summed over the ranks, `globalSum`).
public enum Distributed {
    /// A rank's view of its job: the communicator, and whether a synchronised step is running.
    private final class Membership {
        var communicator: (any Communicator)?
        var inStep = false
        init(_ communicator: (any Communicator)?) { self.communicator = communicator }
    }
    /// The process's membership (`use`).
    nonisolated(unsafe) private static let process = Membership(nil)
    /// A thread's own membership (`asRank`), where it has one.
    private static let threadKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static var membership: Membership {
        guard let own = pthread_getspecific(threadKey) else { return process }
        return Unmanaged<Membership>.fromOpaque(own).takeUnretainedValue()
    }

    /// The job's communicator; nil for one process.
    public static var communicator: (any Communicator)? { membership.communicator }
    /// True while a training step runs on every rank at once: collectives inside ops are on.
    private static var inStep: Bool {
        get { membership.inStep }
        set { membership.inStep = newValue }
    }

    /// Joins a job (`MPICommunicator.join()`): from now on this process is one of `size` ranks.
    public static func use(_ communicator: (any Communicator)?) { process.communicator = communicator }

    /// Runs `body` on this thread as a rank of `communicator`'s job, whatever the process is:
    /// several ranks as threads of one process (tests of the data-parallel paths).
    public static func asRank<T>(_ communicator: any Communicator, _ body: () throws -> T) rethrows -> T {
        let own = Unmanaged.passRetained(Membership(communicator))
        pthread_setspecific(threadKey, own.toOpaque())
        defer {
            pthread_setspecific(threadKey, nil)
            own.release()
        }
        return try body()
    }

    public static var rank: Int { communicator?.rank ?? 0 }
    public static var size: Int { communicator?.size ?? 1 }
    /// Whether this process prints progress and writes files (rank 0, or the only process).
    public static var isMain: Bool { rank == 0 }
    /// Whether several processes share the work.
    public static var isParallel: Bool { size > 1 }

    /// Runs one training step's forward and backward pass with the step's collectives on (batch
    /// norm over the global batch, global loss denominators). Every rank must call it together.
    public static func synchronisedStep<T>(_ body: () throws -> T) rethrows -> T {
        guard isParallel else { return try body() }
        inStep = true
        defer { inStep = false }
        return try body()
    }

    /// Whether ops should combine their batch statistics across ranks now.
    public static var synchronises: Bool { inStep && communicator != nil }

    /// `value` summed over the ranks inside a synchronised step (a loss's weight, counted on each
    /// rank's part of the batch); `value` itself otherwise.
    public static func globalSum(_ value: Double) -> Double {
        guard synchronises, let communicator else { return value }
        var total = value
        communicator.allreduceSum(&total, count: 1)
        return total
    }

    /// Sums `values` over the ranks in place inside a synchronised step; unchanged otherwise.
    public static func sumInStep(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard synchronises, let communicator else { return }
        communicator.allreduceSum(values, count: count)
    }

    /// Rank 0's bytes on every rank (every rank calls it; what the others pass is ignored).
    public static func shared(_ data: Data) -> Data {
        guard let communicator, isParallel else { return data }
        var length = Int64(data.count)
        withUnsafeMutableBytes(of: &length) { communicator.broadcast($0.baseAddress!, count: 8, root: 0) }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        if isMain { bytes = [UInt8](data) }
        if length > 0 {
            bytes.withUnsafeMutableBytes { communicator.broadcast($0.baseAddress!, count: $0.count, root: 0) }
        }
        return Data(bytes)
    }

    /// Rank 0's string on every rank.
    public static func shared(_ string: String) -> String {
        String(decoding: shared(Data(string.utf8)), as: UTF8.self)
    }

    /// Rank 0's flag on every rank: decisions only rank 0 can make (early stopping after its
    /// validation) taken by all.
    public static func shared(_ flag: Bool) -> Bool {
        guard let communicator, isParallel else { return flag }
        var byte: UInt8 = flag ? 1 : 0
        communicator.broadcast(&byte, count: 1, root: 0)
        return byte != 0
    }

    /// Rank 0's values of every parameter and buffer of `module` on every rank.
    public static func shareState(of module: Module) {
        guard let communicator, isParallel else { return }
        let tensors = module.namedParameters.map(\.parameter.value) + module.namedBuffers.map(\.buffer.value)
        for tensor in tensors {
            communicator.broadcast(UnsafeMutableRawPointer(tensor.pointer), count: tensor.count * MemoryLayout<Float>.stride, root: 0)
        }
    }

    /// Ends the whole job after this rank's error: every rank stops at once, none waits.
    public static func abortJob(code: Int32) -> Never {
        if let communicator, isParallel { communicator.abort(code: code) }
        exit(code)
    }

    /// Leaves the job at the end of a command (a no-op for one process).
    public static func finish() {
        communicator?.finalize()
        process.communicator = nil
    }
}

/// Sums each step's gradients over the ranks with one fused in-place allreduce: every
/// trainable parameter's gradient packed into one flat buffer (those a step did not reach as
/// zeros), followed by the step's scalars (loss, images, stop flag), then unpacked. With one
/// process it returns the gradients as they are.
public final class GradientReducer {
    private let parameters: [Parameter]
    private var buffer: [Float]
    /// Seconds spent in the allreduce and the number of calls: the communication cost per step.
    public private(set) var reduceSeconds = 0.0, reductions = 0

    public init(_ module: Module) {
        parameters = module.parameters.filter(\.isTrainable)
        buffer = []
    }

    /// Elements summed per step (gradients and `scalars` of the last call).
    public var elementCount: Int { buffer.count }

    /// Milliseconds per allreduce since the start (or `resetTiming`).
    public var millisecondsPerStep: Double { reduceSeconds * 1000 / Double(Swift.max(reductions, 1)) }

    /// Starts the timing over (after a warm-up).
    public func resetTiming() { reduceSeconds = 0; reductions = 0 }

    /// The gradients summed over the ranks, and `scalars` summed over the ranks.
    public func reduce(_ gradients: Gradients, scalars: [Double]) -> (Gradients, [Double]) {
        guard let communicator = Distributed.communicator, Distributed.isParallel else { return (gradients, scalars) }
        let total = parameters.reduce(0) { $0 + $1.value.count }
        if buffer.count != total + scalars.count { buffer = [Float](repeating: 0, count: total + scalars.count) }
        var reached: [Bool] = []
        buffer.withUnsafeMutableBufferPointer { flat in
            var offset = 0
            for parameter in parameters {
                let n = parameter.value.count
                if let g = gradients[parameter] {
                    (flat.baseAddress! + offset).update(from: g.pointer, count: n)
                    reached.append(true)
                } else {
                    (flat.baseAddress! + offset).update(repeating: 0, count: n)
                    reached.append(false)
                }
                offset += n
            }
            for (i, value) in scalars.enumerated() { flat[total + i] = Float(value) }
            let start = DispatchTime.now().uptimeNanoseconds
            communicator.allreduceSum(flat.baseAddress!, count: flat.count)
            reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            reductions += 1
        }
        var values: [ObjectIdentifier: (node: GraphNode, gradient: Tensor)] = [:]
        var offset = 0
        for (parameter, wasReached) in zip(parameters, reached) {
            let n = parameter.value.count
            // A parameter no rank reached stays without a gradient, as it would in one process.
            if wasReached || buffer[offset..<(offset + n)].contains(where: { $0 != 0 }) {
                let g = Tensor.uninitialized(parameter.shape)
                buffer.withUnsafeBufferPointer { g.pointer.update(from: $0.baseAddress! + offset, count: n) }
                values[ObjectIdentifier(parameter.leaf)] = (parameter.leaf, g)
            }
            offset += n
        }
        return (Gradients(values), (0..<scalars.count).map { Double(buffer[total + $0]) })
    }
}

/// A rank's part of every global batch: rank `rank` of `count` takes the slots
/// `size * rank / count ..< size * (rank + 1) / count` of a batch of `size` images, so the
/// ranks' parts put together, in rank order, are the batch one process would take.
public struct Shard: Sendable, Equatable {
    public let rank: Int, count: Int

    public init(rank: Int, count: Int) {
        precondition(count >= 1 && (0..<count).contains(rank), "rank \(rank) of \(count)")
        self.rank = rank; self.count = count
    }

    /// The whole batch: one process.
    public static let whole = Shard(rank: 0, count: 1)

    /// This process's part in the current job.
    public static var current: Shard { Shard(rank: Distributed.rank, count: Distributed.size) }

    /// The slots of a batch of `size` that this rank takes.
    public func slots(ofBatch size: Int) -> Range<Int> { (size * rank / count)..<(size * (rank + 1) / count) }

    /// How many of `total` items in batches of `batchSize` an epoch uses: all, or without a
    /// partial last batch when `dropLast` or when it is too small to give every rank an item.
    public func usedPositions(_ total: Int, batchSize: Int, dropLast: Bool = false) -> Int {
        let partial = total % batchSize
        return dropLast || (partial > 0 && partial < count) ? total - partial : total
    }

    /// The positions of a stream cut into batches of `batchSize` that this rank takes, among
    /// the first `total`.
    public func takes(position: Int, batchSize: Int, total: Int) -> Bool {
        let start = position / batchSize * batchSize
        return slots(ofBatch: Swift.min(batchSize, total - start)).contains(position - start)
    }
}
