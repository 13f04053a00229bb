import Foundation
import XCTest
@testable import PerceptCore

/// Conv, batch norm with ReLU, conv, batch norm, global average pool, linear.
private final class NormNet: Layer {
    let conv1: Conv2D, norm1: BatchNorm2D, conv2: Conv2D, norm2: BatchNorm2D, head: Linear

    init() {
        var rng = SeededGenerator(seed: 5)
        conv1 = Conv2D(3, 8, kernel: 3, padding: 1, bias: false, using: &rng)
        norm1 = BatchNorm2D(8)
        conv2 = Conv2D(8, 8, kernel: 3, stride: 2, padding: 1, bias: false, using: &rng)
        norm2 = BatchNorm2D(8)
        head = Linear(8, 5, using: &rng)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        head(norm2(conv2(norm1(conv1(x), relu: true))).globalAveragePool())
    }
}

/// Data-parallel training's promise: K ranks, each stepping on its shard of a batch, compute
/// the gradients, loss and batch-norm statistics one process computes on the whole batch.
final class DistributedTests: XCTestCase {
    private var threads = 1

    override func setUp() { threads = Threads.count; Threads.set(1) }
    override func tearDown() { Threads.set(threads) }

    private struct Step { var gradients: [[Float]], buffers: [[Float]], loss: Double, count: Double }

    /// One step of `NormNet` on `rows` of a fixed batch of 8 (`loss` of the logits and rows),
    /// its gradients summed over the ranks, as this thread's rank (or alone).
    private func step(rows: Range<Int>, loss: (Tensor, Range<Int>) -> Tensor) -> Step {
        let net = NormNet()
        var rng = SeededGenerator(seed: 9)
        let batch = Tensor.randomNormal([8, 3, 8, 8], using: &rng)
        let plane = 3 * 8 * 8
        let x = Tensor.uninitialized([rows.count, 3, 8, 8])
        x.pointer.update(from: batch.pointer + rows.lowerBound * plane, count: rows.count * plane)
        let (share, local) = Distributed.synchronisedStep { () -> (Float, Gradients) in
            let value = loss(net(x), rows)
            return (value.scalar, value.backward())
        }
        let (gradients, sums) = GradientReducer(net).reduce(local, scalars: [Double(share), Double(rows.count)])
        return Step(gradients: net.parameters.map { Array(UnsafeBufferPointer(start: gradients[$0]!.pointer, count: $0.value.count)) },
                    buffers: net.namedBuffers.map { Array(UnsafeBufferPointer(start: $0.buffer.value.pointer, count: $0.buffer.value.count)) },
                    loss: sums[0], count: sums[1])
    }

    private func assertClose(_ a: [[Float]], _ b: [[Float]], tolerance: Float, _ what: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (index, (u, v)) in zip(a, b).enumerated() {
            let scale = max(u.map(abs).max() ?? 0, 1e-12)
            let difference = zip(u, v).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(difference / scale, tolerance, "\(what) \(index): \(u.prefix(4)) vs \(v.prefix(4))", file: file, line: line)
        }
    }

    /// The whole batch in one process against `ranks` ranks with uneven shards.
    private func assertRanksMatchOneProcess(ranks: Int, loss: @escaping (Tensor, Range<Int>) -> Tensor,
                                            file: StaticString = #filePath, line: UInt = #line) {
        let alone = step(rows: 0..<8, loss: loss)
        let shard = { (rank: Int) in Shard(rank: rank, count: ranks).slots(ofBatch: 8) }
        let parts = LocalJob(size: ranks).run { rank in self.step(rows: shard(rank), loss: loss) }
        for (rank, part) in parts.enumerated() {
            assertClose(alone.gradients, part.gradients, tolerance: 1e-5, "rank \(rank) gradient", file: file, line: line)
            assertClose(alone.buffers, part.buffers, tolerance: 1e-5, "rank \(rank) running statistic", file: file, line: line)
            XCTAssertEqual(alone.loss, part.loss, accuracy: 1e-5 * abs(alone.loss), "rank \(rank) loss", file: file, line: line)
            XCTAssertEqual(part.count, 8, file: file, line: line)
            // Every rank applies the same update: their reduced gradients agree bit for bit.
            XCTAssertEqual(part.gradients, parts[0].gradients, file: file, line: line)
        }
    }

    func testRanksComputeTheWholeBatchsCrossEntropyStep() {
        var rng = SeededGenerator(seed: 3)
        let labels = (0..<8).map { _ in Int32(rng.next() % 5) }
        for ranks in [2, 3] {
            assertRanksMatchOneProcess(ranks: ranks) { logits, rows in
                softmaxCrossEntropy(logits: logits, labels: Array(labels[rows]), labelSmoothing: 0.1)
            }
        }
    }

    func testRanksComputeTheWholeBatchsOtherLosses() {
        var rng = SeededGenerator(seed: 4)
        let targets = Tensor.randomUniform([8, 5], using: &rng)
        func rows(_ t: Tensor, _ range: Range<Int>) -> Tensor {
            let part = Tensor.uninitialized([range.count, 5])
            part.pointer.update(from: t.pointer + range.lowerBound * 5, count: range.count * 5)
            return part
        }
        let labels = (0..<8).map { _ in Int32(rng.next() % 5) }
        assertRanksMatchOneProcess(ranks: 2) { binaryCrossEntropyWithLogits(logits: $0, targets: rows(targets, $1)) }
        assertRanksMatchOneProcess(ranks: 2) { meanSquaredError($0, rows(targets, $1)) }
        assertRanksMatchOneProcess(ranks: 2) { multiClassHingeLoss(logits: $0, labels: Array(labels[$1])) }
        assertRanksMatchOneProcess(ranks: 3) { smoothL1Loss($0, rows(targets, $1), weights: rows(targets, $1)) }
    }

    func testRankZerosValuesReachEveryRank() {
        let job = LocalJob(size: 3)
        let seen = job.run { rank -> (String, Bool, [Float]) in
            let net = NormNet()
            if rank == 0 { net.head.weight.value.pointer[0] = 42 }
            Distributed.shareState(of: net)
            return (Distributed.shared(rank == 0 ? "rank zero's" : "other"), Distributed.shared(rank == 0), [net.head.weight.value.pointer[0]])
        }
        for value in seen {
            XCTAssertEqual(value.0, "rank zero's")
            XCTAssertTrue(value.1)
            XCTAssertEqual(value.2, [42])
        }
    }
}
