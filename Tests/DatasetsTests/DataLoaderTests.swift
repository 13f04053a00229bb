import PerceptCore
import XCTest
@testable import PerceptDatasets

final class DataLoaderTests: XCTestCase {
    /// A classification file whose image i is filled with value `value(i)` (default i) and labelled i % 3.
    func makeClassification(_ directory: TemporaryDirectory, count: Int = 23, width: Int = 3, height: Int = 2, channels: Int = 2,
                            value: (Int) -> Int = { $0 }) throws -> String {
        let path = directory.file("loader.h5")
        let writer = try DatasetWriter(path: path, task: .classification, channels: channels, height: height, width: width, source: "test")
        for index in 0..<count {
            try writer.append(image: Image(width: width, height: height, channels: channels,
                                           pixels: [UInt8](repeating: UInt8(value(index)), count: channels * height * width)), label: index % 3)
        }
        try writer.finish(classNames: ["a", "b", "c"])
        return path
    }

    func testShuffledEpochVisitsEveryRowOnceWithMatchingLabels() throws {
        let directory = TemporaryDirectory()
        let dataset = try ClassificationDataset(path: makeClassification(directory))
        // Small window and chunked reads: several windows per epoch.
        let loader = DataLoader(dataset, batchSize: 5, shuffle: true, seed: 7, windowRows: 4)
        var seen: [Int] = []
        for batch in loader.batches(epoch: 0) {
            XCTAssertEqual(batch.images.shape, [batch.count, 2, 2, 3])
            for (slot, index) in batch.indices.enumerated() {
                XCTAssertEqual(batch.labels[slot], Int32(index % 3))
                XCTAssertEqual(batch.images.pointer[slot * 12], Float(index) / 255, accuracy: 1e-6)
            }
            seen += batch.indices
        }
        XCTAssertEqual(seen.count, 23)
        XCTAssertEqual(seen.sorted(), Array(0..<23))
        XCTAssertNotEqual(seen, Array(0..<23), "shuffle left the order unchanged")
        XCTAssertEqual(loader.batchCount, 5)
    }

    func testSameSeedAndEpochGiveSameBatchesWithOrWithoutPrefetch() throws {
        let directory = TemporaryDirectory()
        let dataset = try ClassificationDataset(path: makeClassification(directory))
        let augmentation = Augmentation(cropPadding: 1, horizontalFlip: true)
        let first = DataLoader(dataset, batchSize: 4, augmentation: augmentation, seed: 3, prefetch: true)
        let second = DataLoader(dataset, batchSize: 4, augmentation: augmentation, seed: 3, prefetch: false)
        let a = Array(first.batches(epoch: 2)), b = Array(second.batches(epoch: 2))
        XCTAssertEqual(a.map(\.indices), b.map(\.indices))
        XCTAssertEqual(a.map(\.images.scalars), b.map(\.images.scalars))
        XCTAssertNotEqual(Array(first.batches(epoch: 3)).map(\.indices), a.map(\.indices))
    }

    func testUnshuffledDropLastAndNormalisation() throws {
        let directory = TemporaryDirectory()
        let dataset = try ClassificationDataset(path: makeClassification(directory))
        let loader = DataLoader(dataset, batchSize: 5, shuffle: false, dropLast: true, mean: [0.5, 0], std: [0.25, 1])
        let batches = Array(loader)
        XCTAssertEqual(batches.count, 4)
        XCTAssertEqual(batches.flatMap(\.indices), Array(0..<20))
        let value = Float(7) / 255
        XCTAssertEqual(batches[1].images.pointer[2 * 12], (value - 0.5) / 0.25, accuracy: 1e-5)
        XCTAssertEqual(batches[1].images.pointer[2 * 12 + 6], value, accuracy: 1e-6)
    }

    func testFlipAndCropMoveMasksWithImages() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("seg.h5")
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: 3, width: 4, source: "test")
        // The mask equals the image, so any augmentation must keep them equal (padding aside).
        let pixels: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        for _ in 0..<6 {
            try writer.append(image: Image(width: 4, height: 3, channels: 1, pixels: pixels),
                              mask: Image(width: 4, height: 3, channels: 1, pixels: pixels))
        }
        try writer.finish(classNames: (0..<12).map { "c\($0)" })
        let dataset = try SegmentationDataset(path: path)
        let loader = DataLoader(dataset, batchSize: 6, augmentation: Augmentation(cropPadding: 2, horizontalFlip: true), seed: 1)
        var flipped = 0, padded = 0
        for epoch in 0..<4 {
            let batch = try XCTUnwrap(Array(loader.batches(epoch: epoch)).first)
            for index in 0..<(6 * 12) {
                let mask = batch.masks[index], image = batch.images.pointer[index] * 255
                if mask == 255 { XCTAssertEqual(image, 0); padded += 1 } else { XCTAssertEqual(image, Float(mask), accuracy: 1e-3) }
            }
            // A flipped sample shows a decreasing pair of neighbouring (non-padding) pixels in some row.
            for slot in 0..<6 {
                let rows = (0..<3).map { row in (0..<4).map { batch.masks[slot * 12 + row * 4 + $0] } }
                if rows.contains(where: { row in zip(row, row.dropFirst()).contains { $0 != 255 && $1 != 255 && $0 > $1 } }) { flipped += 1 }
            }
        }
        XCTAssertGreaterThan(padded, 0)
        XCTAssertGreaterThan(flipped, 0)
    }

    func testRandomErasingFillsOneRectangleWithNoiseAndIgnoresItsMask() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("erase.h5")
        let side = 20, count = 40
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: side, width: side, source: "test")
        for _ in 0..<count {
            try writer.append(image: Image(width: side, height: side, channels: 1, pixels: [UInt8](repeating: 200, count: side * side)),
                              mask: Image(width: side, height: side, channels: 1, pixels: [UInt8](repeating: 1, count: side * side)))
        }
        try writer.finish(classNames: ["background", "thing"])
        let dataset = try SegmentationDataset(path: path)
        func erasedCounts(probability: Float) throws -> [Int] {
            let loader = DataLoader(dataset, batchSize: count, augmentation: Augmentation(erasing: probability), seed: 4)
            let batch = try XCTUnwrap(Array(loader).first)
            return try (0..<count).map { slot in
                let plane = slot * side * side
                var rows: Set<Int> = [], columns: Set<Int> = [], erased = 0, distinct: Set<Float> = []
                for y in 0..<side {
                    for x in 0..<side {
                        let mask = batch.masks[plane + y * side + x], value = batch.images.pointer[plane + y * side + x] * 255
                        if mask == 255 {
                            erased += 1; rows.insert(y); columns.insert(x); distinct.insert(value)
                            XCTAssert(value >= 0 && value <= 255)
                        } else {
                            XCTAssertEqual(mask, 1)
                            XCTAssertEqual(value, 200, accuracy: 1e-3)
                        }
                    }
                }
                guard erased > 0 else { return 0 }
                // One axis-aligned rectangle of 2-40% of the image (with rounding), filled with noise.
                XCTAssertEqual(erased, rows.count * columns.count)
                XCTAssertEqual(rows.count, try XCTUnwrap(rows.max()) - rows.min()! + 1)
                XCTAssertEqual(columns.count, try XCTUnwrap(columns.max()) - columns.min()! + 1)
                XCTAssert(erased >= 4 && erased <= 180, "erased \(erased) pixels")
                XCTAssertGreaterThan(distinct.count, erased / 2, "the rectangle is not noise")
                return erased
            }
        }
        XCTAssertEqual(try erasedCounts(probability: 0), [Int](repeating: 0, count: count))
        let always = try erasedCounts(probability: 1)
        XCTAssertEqual(always.filter { $0 == 0 }.count, 0)
        XCTAssertGreaterThan(Set(always).count, 10, "rectangles of one size")
        let half = try erasedCounts(probability: 0.5).filter { $0 > 0 }.count
        XCTAssert(half > 8 && half < 32, "\(half) of \(count) images erased at probability 0.5")
    }

    /// Pasting puts another item over an edge of the image by per-pixel maximum: one rectangle
    /// touching the border, of at most a third of the image (the squares' IoU is 0.2 at most),
    /// holding another image's value; the label stays the image's. Probability 0 pastes nothing.
    func testNoiseFloorRaisesDarkPixelsAndLeavesBrightOnes() throws {
        let directory = TemporaryDirectory()
        // Even images black, odd ones white; 16 x 16 so each image has 512 draws over two channels.
        let path = try makeClassification(directory, count: 40, width: 16, height: 16, value: { $0 % 2 == 0 ? 0 : 255 })
        let dataset = try ClassificationDataset(path: path)
        let plain = try XCTUnwrap(Array(DataLoader(dataset, batchSize: 40, seed: 6)).first)
        XCTAssertEqual(Set(plain.images.scalars.map { ($0 * 255).rounded() }), [0, 255])
        let loader = DataLoader(dataset, batchSize: 40, augmentation: Augmentation(noise: 0.2), seed: 6)
        let batch = try XCTUnwrap(Array(loader).first)
        var levels: [Float] = [], halfNormal = 0, uniform = 0
        for (slot, row) in batch.indices.enumerated() {
            let values = (0..<512).map { (batch.images.pointer[slot * 512 + $0] * 255).rounded() }
            if row % 2 == 1 { XCTAssertEqual(Set(values), [255], "white stays white"); continue }
            XCTAssertTrue(values.allSatisfy { $0 >= 0 && $0 <= 255 && $0 == $0.rounded() })
            let mean = values.reduce(0, +) / Float(values.count), top = values.max()!
            levels.append(mean)
            // Uniform noise up to L has mean L / 2 and no tail; half-normal with sigma L has mean 0.8 L
            // and values beyond 2.5 sigma: the largest value tells the two apart.
            if top > 2 * mean + 3 { halfNormal += 1 } else { uniform += 1 }
            XCTAssertLessThanOrEqual(top, 255)
        }
        // Levels spread over [0, 0.2 x 255]: the mean is at most 0.8 x 51 = 41 and varies between images.
        XCTAssertLessThanOrEqual(levels.max()!, 42)
        XCTAssertGreaterThan(levels.max()! - levels.min()!, 10)
        XCTAssertGreaterThan(halfNormal, 2)
        XCTAssertGreaterThan(uniform, 2)
        // Keyed by seed, epoch and row: the same draws again.
        XCTAssertEqual(try XCTUnwrap(Array(DataLoader(dataset, batchSize: 40, augmentation: Augmentation(noise: 0.2), seed: 6)).first).images.scalars,
                       batch.images.scalars)
    }

    func testPastingCoversAnEdgeWithAnotherItemAndKeepsTheLabel() throws {
        let directory = TemporaryDirectory(), tinyDirectory = TemporaryDirectory()
        let side = 12, count = 30
        // Image i is flat at 5 i + 10, labelled i % 3: a pasted image shows as a brighter rectangle.
        let dataset = try ClassificationDataset(path: makeClassification(directory, count: count, width: side, height: side,
                                                                         channels: 1, value: { 5 * $0 + 10 }))
        func pastedAreas(probability: Float) throws -> [Int] {
            let loader = DataLoader(dataset, batchSize: count, augmentation: Augmentation(pasting: probability), seed: 5)
            let batch = try XCTUnwrap(Array(loader).first)
            return try batch.indices.enumerated().map { slot, index in
                XCTAssertEqual(batch.labels[slot], Int32(index % 3))
                let own = Float(5 * index + 10)
                var rows: Set<Int> = [], columns: Set<Int> = [], values: Set<Float> = []
                for y in 0..<side {
                    for x in 0..<side {
                        let value = (batch.images.pointer[slot * side * side + y * side + x] * 255).rounded()
                        guard value != own else { continue }
                        XCTAssertGreaterThan(value, own, "pasting darkened a pixel")
                        rows.insert(y); columns.insert(x); values.insert(value)
                    }
                }
                guard !values.isEmpty else { return 0 }
                let area = rows.count * columns.count
                XCTAssertEqual(values.count, 1, "one pasted item")
                XCTAssertEqual(rows.count, try XCTUnwrap(rows.max()) - rows.min()! + 1)
                XCTAssertEqual(columns.count, try XCTUnwrap(columns.max()) - columns.min()! + 1)
                XCTAssertTrue(rows.contains(0) || rows.contains(side - 1), "rows \(rows.sorted()) miss the border")
                XCTAssertTrue(columns.contains(0) || columns.contains(side - 1), "columns \(columns.sorted()) miss the border")
                XCTAssertLessThanOrEqual(6 * area, 2 * side * side, "overlap of \(area) pixels: IoU above 0.2")
                XCTAssertEqual(Int(try XCTUnwrap(values.first)) % 5, 0)
                return area
            }
        }
        XCTAssertEqual(try pastedAreas(probability: 0), [Int](repeating: 0, count: count))
        let always = try pastedAreas(probability: 1)
        // Only an image pasted onto a brighter one (or itself) leaves no trace.
        XCTAssertGreaterThan(always.filter { $0 > 0 }.count, count / 4)
        XCTAssertGreaterThan(Set(always).count, 4, "overlaps of one size")
        // A 1x1 image has no offset that overlaps it by IoU 0.2 or less: nothing is pasted, and the loader does not hang.
        let tinyPath = try makeClassification(tinyDirectory, count: 4, width: 1, height: 1, channels: 1)
        let tinyBatch = try XCTUnwrap(Array(DataLoader(try ClassificationDataset(path: tinyPath), batchSize: 4,
                                                       augmentation: Augmentation(pasting: 1), seed: 1)).first)
        XCTAssertEqual(tinyBatch.indices.map(Float.init), tinyBatch.images.scalars.map { ($0 * 255).rounded() })
    }

    /// A pasted item's pixel (x, y) lands on (x + dx, y + dy) by maximum, clipped to the image;
    /// probability 0 draws nothing from the generator.
    func testPastedItemLandsAtItsOffsetByMaximum() {
        let width = 5, height = 4
        var image = [UInt8](repeating: 0, count: width * height)
        image[1 * width + 4] = 250  // inside the pasted part, brighter than the item there
        let item = (0..<(width * height)).map { UInt8($0 + 1) }
        let pasted = PastedItem(dx: 3, dy: -2, source: 0)
        image.withUnsafeMutableBufferPointer { target in
            item.withUnsafeBufferPointer { pasted.apply(to: target.baseAddress!, item: $0.baseAddress!, width: width, height: height) }
        }
        for y in 0..<height {
            for x in 0..<width {
                let sx = x - 3, sy = y + 2
                let expected: UInt8 = x == 4 && y == 1 ? 250 : (0..<width).contains(sx) && (0..<height).contains(sy) ? item[sy * width + sx] : 0
                XCTAssertEqual(image[y * width + x], expected, "(\(x), \(y))")
            }
        }
        var generator = SeededGenerator(seed: 3)
        var copy = generator
        XCTAssertNil(Pasting.donor(probability: 0, candidates: 1, using: &generator))
        XCTAssertEqual(generator.next(), copy.next())
    }

    /// Regions are the 8-connected pixels of one class: diagonal neighbours join, another class
    /// or background splits, ignored pixels (255) are no region.
    func testMaskRegionsAreConnectedPixelsOfOneClass() {
        let mask: [UInt8] = [1, 0, 0, 2, 2,
                             0, 1, 0, 0, 2,
                             0, 0, 3, 1, 255,
                             1, 0, 0, 0, 255]
        let regions = MaskRegions(mask: mask, width: 5, height: 4).regions
        XCTAssertEqual(regions.map(\.label), [1, 2, 3, 1, 1])
        XCTAssertEqual(regions.map { $0.pixels.sorted() }, [[0, 6], [3, 4, 9], [12], [13], [15]])
        XCTAssertEqual(regions.map { [$0.x0, $0.y0, $0.x1, $0.y1] }, [[0, 0, 2, 2], [3, 0, 5, 2], [2, 2, 3, 3], [3, 2, 4, 3], [0, 3, 1, 4]])
        XCTAssertEqual(regions[0].box(dx: 1, dy: 0), DetectionBox(x1: 1, y1: 0, x2: 3, y2: 2, label: 1))
        XCTAssertEqual(intersectionOverUnion(regions[0].box(dx: 1, dy: 0), regions[0].box()), 2.0 / 6.0, accuracy: 1e-6)
        XCTAssertEqual(intersectionOverUnion(regions[0].box(), regions[1].box()), 0)
    }

    /// A pasted region's pixels land at its offset where they are at least as bright and take
    /// its label there; its rim goes only over background; nothing else changes.
    func testPastedRegionTakesThePixelsItIsBrighterAt() {
        let width = 6, height = 3, plane = width * height
        // The source's region: class 4 at (1, 1) and (2, 1), with a faint rim pixel at (3, 1).
        var sourceImage = [UInt8](repeating: 0, count: plane), sourceMask = [UInt8](repeating: 0, count: plane)
        sourceImage[7] = 100; sourceImage[8] = 100; sourceImage[9] = 20
        sourceMask[7] = 4; sourceMask[8] = 4
        let region = MaskRegions(mask: sourceMask, width: width, height: height).regions[0]
        // The target has an item of class 2 at (3, 1) (brighter than the paste) and (4, 1) (darker).
        var image = [UInt8](repeating: 5, count: plane), mask = [UInt8](repeating: 0, count: plane)
        image[9] = 150; mask[9] = 2; image[10] = 60; mask[10] = 2
        let pasted = PastedRegion(dx: 2, dy: 0, source: 0, region: region)
        image.withUnsafeMutableBufferPointer { image in
            mask.withUnsafeMutableBufferPointer { mask in
                pasted.apply(image: image.baseAddress!, mask: mask.baseAddress!, sourceImage: sourceImage, sourceMask: sourceMask,
                             width: width, height: height, channels: 1)
            }
        }
        var expectedImage = [UInt8](repeating: 5, count: plane), expectedMask = [UInt8](repeating: 0, count: plane)
        expectedImage[9] = 150; expectedMask[9] = 2      // the target item is brighter: it keeps the pixel
        expectedImage[10] = 100; expectedMask[10] = 4    // the paste is brighter: its pixel and label
        // The rim at (5, 1) lands on background and is brighter; the source's background next to
        // the region (value 0) is darker than the target's 5 and changes nothing.
        expectedImage[11] = 20
        XCTAssertEqual(image, expectedImage)
        XCTAssertEqual(mask, expectedMask)
    }

    /// Segmentation pasting, through the loader: each pasted canvas gains one region of another
    /// canvas, with its label and pixels, inside the canvas and overlapping the canvas's own item
    /// box by IoU 0.2 at most; probability 0 leaves every canvas as it was.
    func testSegmentationPastingAddsAnotherCanvasItemWithItsLabel() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("paste.h5")
        let side = 16, count = 24
        // Canvas i: a 5x5 item of value 10 i + 20 and class i % 3 + 1 at (i % 8, i % 7), on background 0.
        func canvas(_ i: Int) -> (image: [UInt8], mask: [UInt8]) {
            var image = [UInt8](repeating: 0, count: side * side), mask = image
            for y in (i % 7)..<(i % 7 + 5) {
                for x in (i % 8)..<(i % 8 + 5) { image[y * side + x] = UInt8(10 * i + 20); mask[y * side + x] = UInt8(i % 3 + 1) }
            }
            return (image, mask)
        }
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: side, width: side, source: "test")
        for i in 0..<count {
            let (image, mask) = canvas(i)
            try writer.append(image: Image(width: side, height: side, channels: 1, pixels: image),
                              mask: Image(width: side, height: side, channels: 1, pixels: mask))
        }
        try writer.finish(classNames: ["background", "a", "b", "c"])
        let dataset = try SegmentationDataset(path: path)
        func batch(_ probability: Float) throws -> Batch {
            try XCTUnwrap(Array(DataLoader(dataset, batchSize: count, augmentation: Augmentation(pasting: probability), seed: 2)).first)
        }
        let plain = try batch(0), pasted = try batch(1)
        var pastedCanvases = 0, wholeItems = 0
        for slot in 0..<count {
            let index = pasted.indices[slot]
            XCTAssertEqual(plain.indices[slot], index)
            let (ownImage, ownMask) = canvas(index)
            let image = (0..<(side * side)).map { UInt8((pasted.images.pointer[slot * side * side + $0] * 255).rounded()) }
            let mask = (0..<(side * side)).map { UInt8(pasted.masks[slot * side * side + $0]) }
            // Pixels not the canvas's own all come from one other canvas j, labelled as j's item.
            var others: Set<Int> = []
            var box = (x0: side, y0: side, x1: 0, y1: 0)
            for p in 0..<(side * side) {
                guard image[p] != ownImage[p] else { XCTAssertEqual(mask[p], ownMask[p]); continue }
                XCTAssertGreaterThan(image[p], ownImage[p], "pasting darkened pixel \(p)")
                let j = (Int(image[p]) - 20) / 10
                XCTAssertEqual(Int(image[p]), 10 * j + 20)
                XCTAssertEqual(Int(mask[p]), j % 3 + 1, "pixel \(p) of canvas \(index) from canvas \(j)")
                others.insert(j)
                box = (min(box.x0, p % side), min(box.y0, p / side), max(box.x1, p % side + 1), max(box.y1, p / side + 1))
            }
            XCTAssertLessThanOrEqual(others.count, 1)
            guard others.count == 1 else { continue }
            pastedCanvases += 1
            XCTAssertLessThanOrEqual(box.x1 - box.x0, 5); XCTAssertLessThanOrEqual(box.y1 - box.y0, 5)
            // A pasted item that won all its pixels shows its whole box: it overlaps the canvas's own by IoU 0.2 at most.
            guard box.x1 - box.x0 == 5, box.y1 - box.y0 == 5 else { continue }
            wholeItems += 1
            let ownX = index % 8, ownY = index % 7
            let w = max(0, min(ownX + 5, box.x1) - max(ownX, box.x0)), h = max(0, min(ownY + 5, box.y1) - max(ownY, box.y0))
            XCTAssertLessThanOrEqual(Double(w * h) / Double(50 - w * h), 0.2, "canvas \(index): pasted box \(box)")
        }
        XCTAssertGreaterThan(wholeItems, 0)
        XCTAssertGreaterThan(pastedCanvases, count / 2)
        for i in 0..<(count * side * side) {
            let index = plain.indices[i / (side * side)], p = i % (side * side)
            XCTAssertEqual(plain.masks[i], Int32(canvas(index).mask[p]))
        }
    }

    func testFlipMovesBoxes() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("det.h5")
        let writer = try DatasetWriter(path: path, task: .detection, channels: 1, height: 4, width: 10, source: "test")
        try writer.append(image: Image(width: 10, height: 4, channels: 1), boxes: [DetectionBox(x1: 1, y1: 0, x2: 3, y2: 2, label: 0)],
                          imageID: 5, originalWidth: 10, originalHeight: 4)
        try writer.finish(classNames: ["thing"], categoryIDs: [9])
        let dataset = try DetectionDataset(path: path)
        var sawFlip = false, sawPlain = false
        for epoch in 0..<12 {
            let loader = DataLoader(dataset, batchSize: 1, augmentation: Augmentation(horizontalFlip: true), seed: 11)
            let box = try XCTUnwrap(Array(loader.batches(epoch: epoch)).first?.boxes.first?.first)
            if box == DetectionBox(x1: 7, y1: 0, x2: 9, y2: 2, label: 0) { sawFlip = true }
            else if box == DetectionBox(x1: 1, y1: 0, x2: 3, y2: 2, label: 0) { sawPlain = true }
            else { XCTFail("unexpected box \(box)") }
        }
        XCTAssertTrue(sawFlip && sawPlain)
    }

    /// A 32x32 segmentation file: a bright square (class 1, value 200) on a 50-grey background
    /// (class 0), 40 times.
    func makeSquares(_ directory: TemporaryDirectory, side: Int = 32, square: Range<Int> = 8..<24) throws -> SegmentationDataset {
        let path = directory.file("squares.h5")
        let writer = try DatasetWriter(path: path, task: .segmentation, channels: 1, height: side, width: side, source: "test")
        var image = [UInt8](repeating: 50, count: side * side), mask = [UInt8](repeating: 0, count: side * side)
        for y in square { for x in square { image[y * side + x] = 200; mask[y * side + x] = 1 } }
        for _ in 0..<40 {
            try writer.append(image: Image(width: side, height: side, channels: 1, pixels: image),
                              mask: Image(width: side, height: side, channels: 1, pixels: mask))
        }
        try writer.finish(classNames: ["ground", "square"])
        return try SegmentationDataset(path: path)
    }

    /// Rescaling moves masks with images: sampled nearest-neighbour, every image pixel is the
    /// value of its mask's class (or black padding where the mask is ignored), and the square's
    /// side varies over the scale range.
    func testScaleJitterResizesImagesAndMasksAlike() throws {
        let directory = TemporaryDirectory()
        let dataset = try makeSquares(directory)
        let loader = DataLoader(dataset, batchSize: 40, augmentation: Augmentation(scale: 0.3, nearest: 1), seed: 3)
        let batch = try XCTUnwrap(Array(loader.batches(epoch: 0)).first)
        var sides: [Int] = []
        for slot in 0..<40 {
            var squareRows = Set<Int>()
            for index in 0..<(32 * 32) {
                let mask = batch.masks[slot * 1024 + index], value = batch.images.pointer[slot * 1024 + index] * 255
                let expected: Float = mask == 255 ? 0 : mask == 1 ? 200 : 50
                XCTAssertEqual(value, expected, accuracy: 1e-3, "pixel \(index) of image \(slot), mask \(mask)")
                if mask == 1 { squareRows.insert(index / 32) }
            }
            sides.append(squareRows.count)
        }
        // 16 pixels scaled by 0.7-1.3: 11-21 rows.
        XCTAssertTrue(sides.allSatisfy { (11...21).contains($0) }, "\(sides)")
        XCTAssertLessThanOrEqual(sides.min()!, 13)
        XCTAssertGreaterThanOrEqual(sides.max()!, 19)
        XCTAssertTrue(batch.masks.contains(255), "shrunk images are padded, their masks ignored there")
    }

    /// Bilinear rescaling (`nearest` 0) blends the square's edge into its surroundings; masks stay
    /// hard classes; `nearest` 0.5 samples some images each way.
    func testBilinearScaleJitterBlendsEdgesAndNearestIsAFraction() throws {
        let directory = TemporaryDirectory()
        let dataset = try makeSquares(directory)
        func blendedImages(nearest: Float) throws -> Int {
            let loader = DataLoader(dataset, batchSize: 40, augmentation: Augmentation(scale: 0.3, nearest: nearest), seed: 3)
            let batch = try XCTUnwrap(Array(loader.batches(epoch: 0)).first)
            XCTAssertTrue(batch.masks.allSatisfy { [0, 1, 255].contains($0) })
            return (0..<40).filter { slot in
                (0..<1024).contains { index in
                    let value = batch.images.pointer[slot * 1024 + index] * 255
                    return ![0, 50, 200].contains { abs($0 - value) < 1e-3 }
                }
            }.count
        }
        XCTAssertEqual(try blendedImages(nearest: 1), 0)
        let bilinear = try blendedImages(nearest: 0)
        XCTAssertGreaterThanOrEqual(bilinear, 36, "a scale that hits pixel centres exactly is rare")
        let half = try blendedImages(nearest: 0.5)
        XCTAssertTrue((8...32).contains(half), "\(half) of 40 bilinear at nearest=0.5")
    }

    /// A box rescaled with its image still bounds the item's pixels (to a pixel).
    func testScaleJitterMovesBoxesWithTheImage() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("det.h5")
        let side = 32
        let writer = try DatasetWriter(path: path, task: .detection, channels: 1, height: side, width: side, source: "test")
        var image = Image(width: side, height: side, channels: 1)
        for y in 6..<14 { for x in 18..<28 { image.pixels[y * side + x] = 255 } }
        for index in 0..<20 {
            try writer.append(image: image, boxes: [DetectionBox(x1: 18, y1: 6, x2: 28, y2: 14, label: 0)], imageID: Int64(index),
                              originalWidth: side, originalHeight: side)
        }
        try writer.finish(classNames: ["thing"])
        let dataset = try DetectionDataset(path: path)
        let augmentation = Augmentation(cropPadding: 2, horizontalFlip: true, scale: 0.4, nearest: 1)
        let batch = try XCTUnwrap(Array(DataLoader(dataset, batchSize: 20, augmentation: augmentation, seed: 5).batches(epoch: 0)).first)
        var widths = Set<Int>()
        for slot in 0..<20 {
            let box = try XCTUnwrap(batch.boxes[slot].first)
            let bright = (0..<(side * side)).filter { batch.images.pointer[slot * side * side + $0] > 0.5 }
            let xs = bright.map { $0 % side }, ys = bright.map { $0 / side }
            XCTAssertEqual(Float(xs.min()!), box.x1, accuracy: 1, "image \(slot)")
            XCTAssertEqual(Float(xs.max()! + 1), box.x2, accuracy: 1, "image \(slot)")
            XCTAssertEqual(Float(ys.min()!), box.y1, accuracy: 1, "image \(slot)")
            XCTAssertEqual(Float(ys.max()! + 1), box.y2, accuracy: 1, "image \(slot)")
            widths.insert(Int(box.x2 - box.x1))
        }
        XCTAssertGreaterThan(widths.count, 3, "the scale varies")
    }

    /// torchvision's `adjust_sharpness` on a bright dot: the dot moves away from its 3x3
    /// smoothing (5/13 of it) by the factor, its neighbours (1/13 of it) below 0 are clamped,
    /// border pixels and flat regions keep their values.
    func testSharpeningPushesPixelsAwayFromTheirSmoothing() {
        var plane = [Float](repeating: 0, count: 25)
        plane[12] = 100
        plane[0] = 30   // a border pixel
        Sharpening(factor: 2).apply(to: &plane, width: 5, height: 5, scale: 1, shift: 0)
        let smooth: Float = 500 / 13
        XCTAssertEqual(plane[12], smooth + 2 * (100 - smooth), accuracy: 1e-3)
        XCTAssertEqual(plane[7], 0, "clamped at black")
        XCTAssertEqual(plane[0], 30, "borders stay")
        // Pixel 6 reads the border pixel 0 as it was: smooth (30 + 100) / 13, pushed below black.
        XCTAssertEqual(plane[6], 0)
        var bright = [Float](repeating: 250, count: 25)
        bright[12] = 100
        Sharpening(factor: 2).apply(to: &bright, width: 5, height: 5, scale: 1, shift: 0)
        XCTAssertEqual(bright[7], 255, "clamped at white")
        var flat = [Float](repeating: 0.3, count: 16)
        Sharpening(factor: 1.7).apply(to: &flat, width: 4, height: 4, scale: 1 / 255, shift: -0.1)
        XCTAssertTrue(flat.allSatisfy { abs($0 - 0.3) < 1e-6 }, "a flat plane stays flat")
        var generator = SeededGenerator(seed: 1)
        XCTAssertNil(Sharpening(probability: 0, using: &generator))
        let factors = (0..<200).compactMap { _ in Sharpening(probability: 0.5, using: &generator)?.factor }
        XCTAssertTrue((70...130).contains(factors.count), "\(factors.count) of 200 at probability 0.5")
        XCTAssertTrue(factors.allSatisfy { (1...2).contains($0) })
        XCTAssertLessThan(factors.min()!, 1.1)
        XCTAssertGreaterThan(factors.max()!, 1.9)
    }

    /// The loader sharpens with probability `sharpen`: the square's inner rim gets brighter than
    /// the square, its outer rim darker than the background; the other images are untouched.
    func testTheLoaderSharpensAFractionOfImages() throws {
        let directory = TemporaryDirectory()
        let dataset = try makeSquares(directory)
        func batch(_ sharpen: Float) throws -> Batch {
            try XCTUnwrap(Array(DataLoader(dataset, batchSize: 40, shuffle: false, augmentation: Augmentation(sharpen: sharpen), seed: 2)).first)
        }
        let plain = try batch(0), sharpened = try batch(0.5)
        var changed = 0
        for slot in 0..<40 {
            let pixel = { (batch: Batch, x: Int, y: Int) in batch.images.pointer[slot * 1024 + y * 32 + x] * 255 }
            XCTAssertEqual(pixel(plain, 8, 16), 200, accuracy: 1e-3)
            if pixel(sharpened, 8, 16) == pixel(plain, 8, 16) {
                XCTAssertEqual(Array(sharpened.images.scalars[(slot * 1024)..<((slot + 1) * 1024)]),
                               Array(plain.images.scalars[(slot * 1024)..<((slot + 1) * 1024)]))
                continue
            }
            changed += 1
            XCTAssertGreaterThan(pixel(sharpened, 8, 16), 200, "inner rim")
            XCTAssertLessThan(pixel(sharpened, 7, 16), 50, "outer rim")
            XCTAssertEqual(pixel(sharpened, 16, 16), 200, accuracy: 1e-3, "the flat inside")
        }
        XCTAssertTrue((10...30).contains(changed), "\(changed) of 40 sharpened at probability 0.5")
    }

    func testTaggingBatchesCarryMultiHotTensors() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("tags.h5")
        let writer = try DatasetWriter(path: path, task: .tagging, channels: 1, height: 1, width: 1, tagCount: 3, source: "test")
        try writer.append(image: Image(width: 1, height: 1, channels: 1), tagIndices: [0, 2])
        try writer.append(image: Image(width: 1, height: 1, channels: 1), tagIndices: [1])
        try writer.finish(classNames: ["x", "y", "z"])
        let batch = try XCTUnwrap(Array(DataLoader(try TaggingDataset(path: path), batchSize: 2, shuffle: false)).first)
        XCTAssertEqual(batch.tags?.shape, [2, 3])
        XCTAssertEqual(batch.tags?.scalars, [1, 0, 1, 0, 1, 0])
    }
}
