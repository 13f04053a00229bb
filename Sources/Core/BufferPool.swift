import Foundation

/// Recycles tensor buffers by exact size.
///
/// A training step allocates the same activation and gradient sizes every time; handing those
/// buffers back to the next step avoids the page faults and zeroing that fresh multi-megabyte
/// allocations cost (measured: several percent of a ResNet step). The pool holds at most
/// `capacityBytes`; beyond that buffers go back to the system.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool(capacityBytes: 1 << 30)

    /// Buffers smaller than this are left to malloc, which already recycles them cheaply.
    private let minimumCount = 4096
    private let capacityBytes: Int
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var pooledBytes = 0
    private var lock = pthread_mutex_t()

    init(capacityBytes: Int) {
        self.capacityBytes = capacityBytes
        pthread_mutex_init(&lock, nil)
    }

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count >= minimumCount {
            pthread_mutex_lock(&lock)
            if let p = free[count]?.popLast() {
                pooledBytes -= count * 4
                pthread_mutex_unlock(&lock)
                return p
            }
            pthread_mutex_unlock(&lock)
        }
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    /// Frees every pooled buffer.
    func drain() {
        pthread_mutex_lock(&lock)
        let buffers = free
        free = [:]
        pooledBytes = 0
        pthread_mutex_unlock(&lock)
        for pointer in buffers.values.joined() { Foundation.free(pointer) }
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        if count >= minimumCount {
            pthread_mutex_lock(&lock)
            if pooledBytes + count * 4 <= capacityBytes {
                free[count, default: []].append(pointer)
                pooledBytes += count * 4
                pthread_mutex_unlock(&lock)
                return
            }
            pthread_mutex_unlock(&lock)
        }
        Foundation.free(pointer)
    }
}

extension Tensor {
    /// Returns the buffers kept for reuse to the system. Training reuses the same sizes every
    /// step; inference over images or pyramid levels of changing sizes would only pile up buffers
    /// that are never asked for again, so it calls this between them.
    public static func releasePooledBuffers() { BufferPool.shared.drain() }
}
