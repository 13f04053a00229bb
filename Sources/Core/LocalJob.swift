import Foundation

/// A job of `size` ranks run as threads of this process, sharing memory: every collective
/// waits for all ranks (a barrier) and sums in rank order, as an MPI job's ranks would. Tests
/// run data-parallel training with it on one machine without MPI.
public final class LocalJob: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var slots: [UnsafeRawPointer?]

    public init(size: Int) {
        self.size = size
        slots = Array(repeating: nil, count: size)
    }

    func barrier() {
        condition.lock(); defer { condition.unlock() }
        let current = generation
        arrived += 1
        if arrived == size {
            arrived = 0; generation += 1
            condition.broadcast()
        } else {
            while generation == current { condition.wait() }
        }
    }

    fileprivate func publish(_ rank: Int, _ pointer: UnsafeRawPointer) {
        condition.lock(); slots[rank] = pointer; condition.unlock()
    }

    fileprivate func slot(_ rank: Int) -> UnsafeRawPointer {
        condition.lock(); defer { condition.unlock() }
        return slots[rank]!
    }

    /// `body` on every rank at once, each on a thread of its own as `Distributed`'s rank; the
    /// results in rank order.
    public func run<T>(_ body: @escaping (Int) -> T) -> [T] {
        let results = Results<T>(count: size)
        let group = DispatchGroup()
        for rank in 0..<size {
            group.enter()
            let thread = Thread {
                let result = Distributed.asRank(LocalRank(job: self, rank: rank)) { body(rank) }
                results.set(rank, result)
                group.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        group.wait()
        return results.values
    }
}

/// One thread's rank of a `LocalJob`.
public final class LocalRank: Communicator {
    let job: LocalJob
    public let rank: Int
    public var size: Int { job.size }

    init(job: LocalJob, rank: Int) { self.job = job; self.rank = rank }

    private func sum<T: FloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int) {
        let mine = Array(UnsafeBufferPointer(start: buffer, count: count))
        mine.withUnsafeBufferPointer { mine in
            if let base = mine.baseAddress { job.publish(rank, UnsafeRawPointer(base)) }
            job.barrier()
            for i in 0..<count {
                var total: T = 0
                for r in 0..<size { total += job.slot(r).assumingMemoryBound(to: T.self)[i] }
                buffer[i] = total
            }
            job.barrier()
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { sum(buffer, count: count) }
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { sum(buffer, count: count) }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        if rank == root { job.publish(rank, UnsafeRawPointer(buffer)) }
        job.barrier()
        if rank != root { buffer.copyMemory(from: job.slot(root), byteCount: count) }
        job.barrier()
    }

    public func abort(code: Int32) -> Never { fatalError("rank \(rank) aborted with \(code)") }
    public func finalize() {}
}

/// The ranks' results of a `LocalJob`, written from their threads.
private final class Results<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.lock(); slots[index] = value; lock.unlock() }
    var values: [T] { lock.lock(); defer { lock.unlock() }; return slots.map { $0! } }
}
