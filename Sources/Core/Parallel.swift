import CBLAS
import CKernels
import Dispatch
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

/// A lock-protected counter handing out chunks to worker threads.
final class ChunkCounter: @unchecked Sendable {
    private var next = 0
    private let total: Int
    private var lock = pthread_mutex_t()
    init(total: Int) { self.total = total; pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }
    func take() -> Int? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard next < total else { return nil }
        next += 1
        return next - 1
    }
}

/// Runs `body` over `0..<count` split into contiguous ranges of at least `grain` items, on up
/// to `Threads.count` threads. Chunks are handed out dynamically, so a core that is busy with
/// another process slows the loop down instead of stalling it at a barrier.
public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let threads = min(Threads.count, (count + grain - 1) / grain)
    if threads <= 1 { body(0..<count); return }
    let chunks = min((count + grain - 1) / grain, threads * 4)
    let chunkSize = (count + chunks - 1) / chunks
    let counter = ChunkCounter(total: (count + chunkSize - 1) / chunkSize)
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while let chunk = counter.take() {
                let start = chunk * chunkSize
                body(start..<min(start + chunkSize, count))
            }
        }
    }
}
