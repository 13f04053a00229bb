import Foundation
import XCTest
@testable import PerceptCore

/// `parallelFor` on the persistent worker pool: every index exactly once, at any thread count
/// and grain; loops started inside a loop's body, and loops started by two threads at once
/// (one of them runs serially), still cover everything; loops after an idle spell (workers
/// asleep) still finish.
final class ParallelTests: XCTestCase {
    private var savedThreads = 1
    override func setUp() { savedThreads = Threads.count }
    override func tearDown() { Threads.set(savedThreads) }

    /// How many times each index of 0..<count was visited by one parallelFor.
    private func visits(_ count: Int, grain: Int = 1) -> [Int] {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: count)
        counts.initialize(repeating: 0, count: count)
        defer { counts.deallocate() }
        parallelFor(count, grain: grain) { range in
            for i in range { counts[i] += 1 }  // ranges never overlap, so no two threads share an index
        }
        return Array(UnsafeBufferPointer(start: counts, count: count))
    }

    func testEveryIndexOnceAtEveryThreadCount() {
        for threads in [1, 2, 3, 5] {
            Threads.set(threads)
            for (count, grain) in [(1, 1), (2, 1), (7, 1), (64, 1), (1000, 8), (1001, 300), (5, 10)] {
                XCTAssertEqual(visits(count, grain: grain), [Int](repeating: 1, count: count),
                               "threads \(threads), count \(count), grain \(grain)")
            }
        }
    }

    /// At two threads a loop's chunks run on two threads at a time, never more, even with more
    /// workers started by an earlier loop at five threads.
    func testWorkSpreadsOverThreadsWithinTheirCount() {
        Threads.set(5)
        XCTAssertEqual(visits(40), [Int](repeating: 1, count: 40))
        Threads.set(2)
        let lock = NSLock()
        var inside = 0, most = 0, sawBoth = false
        for _ in 0..<20 {
            parallelFor(8) { _ in
                lock.lock(); inside += 1; most = max(most, inside); if inside == 2 { sawBoth = true }; lock.unlock()
                let start = Date()
                while Date().timeIntervalSince(start) < 0.002 {}  // long enough for the worker to arrive
                lock.lock(); inside -= 1; lock.unlock()
            }
        }
        XCTAssertEqual(most, 2, "at most two threads at once")
        XCTAssertTrue(sawBoth, "the loops never ran on two threads at once")
    }

    func testNestedLoopsCoverEverything() {
        Threads.set(2)
        let total = UnsafeMutablePointer<Int>.allocate(capacity: 16 * 10)
        total.initialize(repeating: 0, count: 16 * 10)
        defer { total.deallocate() }
        parallelFor(16) { outer in
            for i in outer {
                parallelFor(10) { inner in for j in inner { total[i * 10 + j] += 1 } }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: total, count: 160)), [Int](repeating: 1, count: 160))
    }

    func testLoopsFromTwoThreadsAtOnce() {
        Threads.set(2)
        let group = DispatchGroup()
        var results: [[Int]] = [[], []]
        let lock = NSLock()
        for t in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                var ok: [Int] = []
                for round in 0..<200 { if self.visits(97 + round % 5) == [Int](repeating: 1, count: 97 + round % 5) { ok.append(round) } }
                lock.lock(); results[t] = ok; lock.unlock()
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success, "loops from two threads did not finish")
        XCTAssertEqual(results[0].count, 200)
        XCTAssertEqual(results[1].count, 200)
    }

    func testLoopAfterTheWorkersFellAsleep() {
        Threads.set(2)
        XCTAssertEqual(visits(50), [Int](repeating: 1, count: 50))
        Thread.sleep(forTimeInterval: 0.05)  // far past the workers' spin
        XCTAssertEqual(visits(50), [Int](repeating: 1, count: 50))
    }
}
