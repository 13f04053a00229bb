import PerceptCore
import XCTest
@testable import PerceptDatasets

/// Data-parallel loading: K ranks' parts of each batch, put together in rank order, are the
/// batch one process reads, with every augmentation on (its draws are keyed by seed, epoch and
/// row), whatever K.
final class ShardTests: XCTestCase {
    /// A one-channel classification file of `side` x `side` images, image i filled with `value(i)`, labelled i % 3.
    func classificationFile(_ directory: TemporaryDirectory, count: Int, side: Int, value: (Int) -> Int) throws -> String {
        let path = directory.file("shard.h5")
        let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: side, width: side, source: "test")
        for index in 0..<count {
            try writer.append(image: Image(width: side, height: side, channels: 1,
                                           pixels: [UInt8](repeating: UInt8(value(index)), count: side * side)), label: index % 3)
        }
        try writer.finish(classNames: ["a", "b", "c"])
        return path
    }

    func testSlotsSplitEveryBatchInRankOrder() {
        XCTAssertEqual((0..<3).map { Shard(rank: $0, count: 3).slots(ofBatch: 10) }, [0..<3, 3..<6, 6..<10])
        XCTAssertEqual((0..<2).map { Shard(rank: $0, count: 2).slots(ofBatch: 5) }, [0..<2, 2..<5])
        // Position 12 of batches of 5 (the third batch, of 3 of 13): slot 2 of 3 goes to rank 1 of 2.
        XCTAssertTrue(Shard(rank: 1, count: 2).takes(position: 12, batchSize: 5, total: 13))
        XCTAssertFalse(Shard(rank: 0, count: 2).takes(position: 12, batchSize: 5, total: 13))
    }

    /// Compares every batch of `whole` with the ranks' parts of it, and returns how many batches there were.
    @discardableResult
    func assertPartsMakeWhole(_ make: (Shard) -> DataLoader, ranks: Int, epochs: Int = 2,
                              file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let whole = make(.whole)
        let parts = (0..<ranks).map { make(Shard(rank: $0, count: ranks)) }
        var batches = 0
        for epoch in 0..<epochs {
            let expected = Array(whole.batches(epoch: epoch))
            let got = parts.map { Array($0.batches(epoch: epoch)) }
            XCTAssertTrue(got.allSatisfy { $0.count == parts[0].batchCount }, file: file, line: line)
            for (b, batch) in got[0].indices.map({ b in (b, got.map { $0[b] }) }) {
                let reference = expected[b]
                XCTAssertTrue(batch.allSatisfy { $0.count >= 1 }, "a rank without images in batch \(b)", file: file, line: line)
                XCTAssertEqual(batch.flatMap(\.indices), reference.indices, "rows of batch \(b)", file: file, line: line)
                XCTAssertEqual(batch.flatMap(\.images.scalars), reference.images.scalars, "pixels of batch \(b)", file: file, line: line)
                XCTAssertEqual(batch.flatMap(\.labels), reference.labels, file: file, line: line)
                XCTAssertEqual(batch.flatMap(\.masks), reference.masks, file: file, line: line)
                batches += 1
            }
        }
        return batches
    }

    func testClassificationPartsMakeTheBatchWithAugmentation() throws {
        let directory = TemporaryDirectory()
        let path = try classificationFile(directory, count: 23, side: 6) { ($0 * 37) % 251 }
        let dataset = try ClassificationDataset(path: path)
        let augmentation = Augmentation(cropPadding: 1, horizontalFlip: true, erasing: 0.5, pasting: 0.5, noise: 0.1)
        func loader(_ shard: Shard) -> DataLoader {
            DataLoader(dataset, batchSize: 5, augmentation: augmentation, seed: 11, windowRows: 7, shard: shard)
        }
        // 23 images: four batches of 5 and one of 3, which 2 and 3 ranks share and 4 cannot.
        XCTAssertEqual(try assertPartsMakeWhole(loader, ranks: 2), 10)
        XCTAssertEqual(try assertPartsMakeWhole(loader, ranks: 3), 10)
        XCTAssertEqual(try assertPartsMakeWhole(loader, ranks: 4), 8)
        XCTAssertEqual(loader(Shard(rank: 0, count: 4)).batchCount, 4)
        // The draws are really there: augmented batches differ from plain ones.
        let plain = Array(DataLoader(dataset, batchSize: 5, seed: 11, windowRows: 7).batches(epoch: 0))
        XCTAssertNotEqual(plain[0].images.scalars, Array(loader(.whole).batches(epoch: 0))[0].images.scalars)
    }

    func testSegmentationPartsMakeTheBatchWithPasting() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("masks.h5")
        let side = 12
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: side, width: side, source: "test")
        for i in 0..<18 {
            var image = [UInt8](repeating: 3, count: side * side), mask = [UInt8](repeating: 0, count: side * side)
            for y in (i % 5)..<(i % 5 + 4) {
                for x in (i % 6)..<(i % 6 + 4) { image[y * side + x] = UInt8(10 * i + 30); mask[y * side + x] = UInt8(i % 2 + 1) }
            }
            try writer.append(image: Image(width: side, height: side, channels: 1, pixels: image),
                              mask: Image(width: side, height: side, channels: 1, pixels: mask))
        }
        try writer.finish(classNames: ["background", "a", "b"])
        let dataset = try SegmentationDataset(path: path)
        let augmentation = Augmentation(cropPadding: 1, horizontalFlip: true, erasing: 0.3, pasting: 0.7)
        func loader(_ shard: Shard) -> DataLoader {
            DataLoader(dataset, batchSize: 6, augmentation: augmentation, seed: 5, windowRows: 5, shard: shard)
        }
        XCTAssertEqual(try assertPartsMakeWhole(loader, ranks: 2, epochs: 3), 9)
        XCTAssertEqual(try assertPartsMakeWhole(loader, ranks: 3, epochs: 1), 3)
    }

    /// A rank reads only its rows: union hyperslabs of scattered runs give the rows asked for.
    func testReadingRunsGivesThoseRowsInOrder() throws {
        let directory = TemporaryDirectory()
        let dataset = try ClassificationDataset(path: classificationFile(directory, count: 23, side: 2) { $0 })
        let rows = try dataset.read(runs: [1..<3, 7..<8, 20..<23])
        XCTAssertEqual(rows.labels, [1, 2, 7, 20, 21, 22].map { Int32($0 % 3) })
        XCTAssertEqual(stride(from: 0, to: rows.images.count, by: 4).map { Int(rows.images[$0]) }, [1, 2, 7, 20, 21, 22])
    }
}
