import CBLAS
import CKernels
import Foundation

/// How many threads Percept's kernels use. OpenBLAS itself always runs single-threaded inside
/// them: the engine splits work over batch items and channels, which keeps every core busy on
/// small matrices and never oversubscribes cores when both would spin up threads.
public enum Threads {
    nonisolated(unsafe) private static var _count = max(1, ProcessInfo.processInfo.activeProcessorCount)
    nonisolated(unsafe) private static var blasConfigured = false

    /// Threads used by parallel kernels (default: active processors).
    public static var count: Int {
        if !blasConfigured { configureBLAS() }
        return _count
    }

    /// Sets the number of worker threads (at least 1).
    public static func set(_ n: Int) {
        precondition(n >= 1, "thread count must be >= 1, got \(n)")
        configureBLAS()
        _count = n
    }

    private static func configureBLAS() {
        openblas_set_num_threads(1)
        blasConfigured = true
    }
}

/// Which kernel builds run, for speed reports (`percept bench` prints them).
public enum KernelBuilds {
    /// The builds of Percept's own kernels that run: "AVX-512", "AVX2" or "portable C".
    public static var perceptKernels: String { ["portable C", "AVX2", "AVX-512"][Int(pc_kernels_level())] }

    /// The kernel set OpenBLAS runs, e.g. "Haswell", "Zen" or "SkylakeX": its choice for the CPU,
    /// or the OPENBLAS_CORETYPE the environment names.
    public static var openBLASCore: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }
}

/// One parallel loop as the pool's C tasks see it.
private struct PoolLoop {
    let body: (Range<Int>) -> Void
    let count: Int, chunkSize: Int
}

/// Runs `body` over `0..<count` split into contiguous ranges of at least `grain` items, on up
/// to `Threads.count` threads (`pc_pool_run`'s persistent workers). Chunks are handed out
/// dynamically, so a core that is busy with another process slows the loop down instead of
/// stalling it at a barrier.
public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let threads = min(Threads.count, (count + grain - 1) / grain)
    if threads <= 1 { body(0..<count); return }
    let chunks = min((count + grain - 1) / grain, threads * 4)
    let chunkSize = (count + chunks - 1) / chunks
    withoutActuallyEscaping(body) { body in
        var loop = PoolLoop(body: body, count: count, chunkSize: chunkSize)
        withUnsafeMutablePointer(to: &loop) { pointer in
            pc_pool_run(Int32(threads), (count + chunkSize - 1) / chunkSize, { context, chunk in
                let loop = context!.assumingMemoryBound(to: PoolLoop.self)
                let start = chunk * loop.pointee.chunkSize
                loop.pointee.body(start..<min(start + loop.pointee.chunkSize, loop.pointee.count))
            }, pointer)
        }
    }
}

/// Sets `count` floats to zero, split across threads in runs of a megabyte or more. Training
/// zeroes whole input gradients before kernels add into them; on one thread, the other waited
/// (perf, W5 training at two threads: the main thread's memsets were 1.5% of all samples more
/// than the worker's). Inside another loop's task it runs serially, as `parallelFor` does.
public func parallelZero(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
    parallelFor(count, grain: 1 << 18) { range in (pointer + range.lowerBound).update(repeating: 0, count: range.count) }
}
