import XCTest
@testable import PerceptDatasets

/// An 8 x 8 item of `class`: a bright square, a horizontal bar or a vertical bar, each with a
/// different brightness, on black. Class 3 (if asked for) is blank.
func composeItem(class label: Int, channels: Int) -> Image {
    var image = Image(width: 8, height: 8, channels: channels)
    for y in 0..<8 {
        for x in 0..<8 {
            let value: UInt8
            switch label {
            case 0: value = (2..<6).contains(x) && (2..<6).contains(y) ? 200 : 0
            case 1: value = (1..<7).contains(x) && (3..<5).contains(y) ? 150 : 0
            case 2: value = (3..<5).contains(x) && (1..<7).contains(y) ? 250 : 0
            default: value = 0
            }
            for channel in 0..<channels {
                // Colour items differ per channel so channel handling is checked, not assumed.
                image.pixels[(y * 8 + x) * channels + channel] = value == 0 ? 0 : value - UInt8(channel * 20)
            }
        }
    }
    return image
}

/// Writes a classification item set: `perClass` items of each of the three classes (and
/// optionally one blank item labelled 0).
@discardableResult
func writeComposeItems(_ path: String, channels: Int = 1, perClass: Int = 2, blank: Bool = false) throws -> String {
    let writer = try DatasetWriter(path: path, task: .classification, channels: channels, height: 8, width: 8, source: "test items")
    for _ in 0..<perClass {
        for label in 0..<3 { try writer.append(image: composeItem(class: label, channels: channels), label: label) }
    }
    if blank { try writer.append(image: composeItem(class: 3, channels: channels), label: 0) }
    try writer.finish(classNames: ["square", "bar", "pole"])
    return path
}

final class ComposeTests: XCTestCase {
    func options(count: Int = 24, noise: Float = 0, maxOverlap: Float = 0.3, seed: UInt64 = 3) -> CompositionOptions {
        var options = CompositionOptions()
        options.count = count
        options.size = ImageSize(width: 24, height: 20)
        options.noise = noise
        options.maxOverlap = maxOverlap
        options.seed = seed
        return options
    }

    func testTaggingFileHoldsTheCanvasesWithDistinctClassesAndIsDeterministic() throws {
        let directory = TemporaryDirectory()
        let items = try writeComposeItems(directory.file("items.h5"), blank: true)
        var progress: [Int] = []
        var settings = options(noise: 0.05, maxOverlap: 1)
        settings.progress = { done, _ in progress.append(done) }
        let composer = try Composer(items: ClassificationDataset(path: items), options: settings)
        XCTAssertEqual(composer.blankItems, 1)
        let summary = try composer.write(task: .tagging, to: directory.file("tags.h5"))
        XCTAssertEqual(progress, Array(1...24))

        let dataset = try TaggingDataset(path: directory.file("tags.h5"))
        XCTAssertEqual([dataset.count, dataset.channels, dataset.height, dataset.width], [24, 1, 20, 24])
        XCTAssertEqual(dataset.tagNames, ["square", "bar", "pole"])
        XCTAssertTrue(dataset.source.contains("items.h5"), dataset.source)
        XCTAssertTrue(dataset.source.contains("seed 3") && dataset.source.contains("1-3 items"), dataset.source)
        let images = try dataset.readImages(0..<24), tags = try dataset.readTags(0..<24)
        var perTag = [0, 0, 0], itemCounts = Set<Int>()
        for index in 0..<24 {
            let canvas = composer.canvas(index: index)
            XCTAssertEqual(Array(images[(index * 480)..<((index + 1) * 480)]), canvas.image.pixels, "canvas \(index)")
            let labels = canvas.items.map(\.label)
            XCTAssertEqual(Set(labels).count, labels.count, "classes on canvas \(index) repeat: \(labels)")
            // With any overlap allowed nothing is dropped, so the item count is always in range.
            XCTAssertEqual(canvas.droppedItems, 0)
            XCTAssertTrue((1...3).contains(labels.count))
            itemCounts.insert(labels.count)
            XCTAssertFalse(canvas.items.contains { $0.row == 6 }, "the blank item (row 6) was used")
            XCTAssertEqual(Array(tags[(index * 3)..<(index * 3 + 3)]), (0..<3).map { labels.contains($0) ? 1 : 0 })
            for label in labels { perTag[label] += 1 }
        }
        XCTAssertEqual(itemCounts, [1, 2, 3], "24 canvases should show every item count")
        XCTAssertEqual(summary.perClass, perTag)

        // Same seed: same bytes. Another seed: other canvases.
        _ = try Composer.compose(task: .tagging, items: items, output: directory.file("again.h5"), options: options(noise: 0.05, maxOverlap: 1))
        XCTAssertEqual(try TaggingDataset(path: directory.file("again.h5")).readImages(0..<24), images)
        _ = try Composer.compose(task: .tagging, items: items, output: directory.file("other.h5"),
                                 options: options(noise: 0.05, maxOverlap: 1, seed: 4))
        XCTAssertNotEqual(try TaggingDataset(path: directory.file("other.h5")).readImages(0..<24), images)
    }

    func testDetectionBoxesAreTightNonOverlappingAndNumbered() throws {
        let directory = TemporaryDirectory()
        let items = try writeComposeItems(directory.file("items.h5"))
        let output = directory.file("boxes.h5")
        let summary = try Composer.compose(task: .detection, items: items, output: output, options: options(count: 40))
        let dataset = try DetectionDataset(path: output)
        XCTAssertEqual(dataset.classNames, ["square", "bar", "pole"])
        XCTAssertEqual(dataset.categoryIDs, [1, 2, 3])
        XCTAssertEqual(try dataset.readImageIDs(0..<40), (1...40).map { Int64($0) })
        XCTAssertEqual(dataset.boxCount, summary.boxes)
        let images = try dataset.readImages(0..<40), allBoxes = try dataset.readBoxes(0..<40)
        let width = 24, height = 20
        for (index, boxes) in allBoxes.enumerated() {
            XCTAssertFalse(boxes.isEmpty)
            XCTAssertEqual(Set(boxes.map(\.label)).count, boxes.count)
            let image = Array(images[(index * width * height)..<((index + 1) * width * height)])
            func bright(_ x: Int, _ y: Int) -> Bool { image[y * width + x] > 10 }
            for box in boxes {
                XCTAssertTrue(box.x1 >= 0 && box.y1 >= 0 && box.x2 <= Float(width) && box.y2 <= Float(height), "\(box)")
                XCTAssertEqual(box.x1, box.x1.rounded())
                let x1 = Int(box.x1), y1 = Int(box.y1), x2 = Int(box.x2) - 1, y2 = Int(box.y2) - 1
                // Tight: every edge of the box touches a visible pixel.
                XCTAssertTrue((x1...x2).contains { bright($0, y1) } && (x1...x2).contains { bright($0, y2) }, "canvas \(index) \(box)")
                XCTAssertTrue((y1...y2).contains { bright(x1, $0) } && (y1...y2).contains { bright(x2, $0) }, "canvas \(index) \(box)")
                // The sizes of the items at scale 0.8-1.2: 4x4 square, 6x2 bar, 2x6 pole, within a pixel or two.
                let boxWidth = box.x2 - box.x1, boxHeight = box.y2 - box.y1
                switch box.label {
                case 0: XCTAssertTrue((3...6).contains(boxWidth) && (3...6).contains(boxHeight), "\(box)")
                case 1: XCTAssertTrue(boxWidth > boxHeight, "\(box)")
                default: XCTAssertTrue(boxHeight > boxWidth, "\(box)")
                }
            }
            for (first, a) in boxes.enumerated() {
                for b in boxes[(first + 1)...] { XCTAssertLessThanOrEqual(intersectionOverUnion(a, b), 0.3) }
            }
            // Without noise every visible pixel belongs to some box.
            for y in 0..<height {
                for x in 0..<width where bright(x, y) {
                    XCTAssertTrue(boxes.contains { Float(x) >= $0.x1 && Float(x) < $0.x2 && Float(y) >= $0.y1 && Float(y) < $0.y2 },
                                  "pixel (\(x), \(y)) of canvas \(index) is outside every box")
                }
            }
        }
    }

    func testSegmentationMasksMarkBrightItemPixelsWithTheirClass() throws {
        let directory = TemporaryDirectory()
        let items = try writeComposeItems(directory.file("items.h5"))
        let output = directory.file("masks.h5")
        var settings = options(maxOverlap: 1)
        settings.minItems = 2
        let composer = try Composer(items: ClassificationDataset(path: items), options: settings)
        let summary = try composer.write(task: .segmentation, to: output)
        let dataset = try SegmentationDataset(path: output)
        XCTAssertEqual(dataset.classNames, ["background", "square", "bar", "pole"])
        let images = try dataset.readImages(0..<24), masks = try dataset.readMasks(0..<24)
        var containing = [0, 0, 0, 0]
        for index in 0..<24 {
            let canvas = composer.canvas(index: index)
            let plane = 24 * 20
            let mask = Array(masks[(index * plane)..<((index + 1) * plane)])
            XCTAssertEqual(mask, canvas.mask.pixels)
            for value in Set(mask) { containing[Int(value)] += 1 }
            for pixel in 0..<plane {
                let value = images[index * plane + pixel], x = Float(pixel % 24), y = Float(pixel / 24)
                if mask[pixel] == 0 {
                    XCTAssertLessThanOrEqual(value, 25)
                } else {
                    XCTAssertGreaterThan(value, 25)
                    let owner = canvas.items.first { $0.label == Int(mask[pixel]) - 1 }
                    XCTAssertNotNil(owner, "mask value \(mask[pixel]) of a class not on canvas \(index)")
                    if let box = owner?.box { XCTAssertTrue(x >= box.x1 && x < box.x2 && y >= box.y1 && y < box.y2) }
                }
            }
            // Every pasted item shows in the mask unless a brighter item covers all of it.
            for item in canvas.items where item.label == 2 { XCTAssertTrue(mask.contains(3), "the brightest item is hidden") }
        }
        XCTAssertEqual(summary.perClass, containing)
    }

    func testOneItemAtScaleOneKeepsItsExactShape() throws {
        let item = composeItem(class: 0, channels: 1)
        var settings = options(count: 5)
        settings.minItems = 1; settings.maxItems = 1; settings.scaleMin = 1; settings.scaleMax = 1
        let composer = try Composer(planarImages: item.pixels, labels: [0], classNames: ["square"], channels: 1,
                                    height: 8, width: 8, options: settings)
        for index in 0..<5 {
            let canvas = composer.canvas(index: index)
            XCTAssertEqual(canvas.items.count, 1)
            let box = canvas.items[0].box
            XCTAssertEqual([box.x2 - box.x1, box.y2 - box.y1], [4, 4])
            XCTAssertEqual(canvas.mask.pixels.filter { $0 == 1 }.count, 16)
            XCTAssertEqual(canvas.image.pixels.filter { $0 == 200 }.count, 16)
            XCTAssertEqual(canvas.image.pixels.filter { $0 != 0 }.count, 16)
            for y in Int(box.y1)..<Int(box.y2) {
                for x in Int(box.x1)..<Int(box.x2) { XCTAssertEqual(canvas.image.pixels[y * 24 + x], 200) }
            }
        }
        XCTAssertNotEqual(composer.canvas(index: 0).items[0].box, composer.canvas(index: 1).items[0].box,
                          "positions should vary between canvases")
    }

    func testOverlapsShowTheBrighterItemAndBreakTiesForTheLaterOne() throws {
        // Two full 8 x 8 items on an 8 x 8 canvas: they always cover each other entirely.
        for (dimValue, brightValue) in [(UInt8(100), UInt8(200)), (200, 200)] {
            let pixels = [UInt8](repeating: dimValue, count: 64) + [UInt8](repeating: brightValue, count: 64)
            var settings = options(count: 6, maxOverlap: 1)
            settings.size = ImageSize(width: 8, height: 8)
            settings.minItems = 2; settings.maxItems = 2; settings.scaleMin = 1; settings.scaleMax = 1
            let composer = try Composer(planarImages: pixels, labels: [0, 1], classNames: ["dim", "bright"], channels: 1,
                                        height: 8, width: 8, options: settings)
            for index in 0..<6 {
                let canvas = composer.canvas(index: index)
                XCTAssertEqual(canvas.image.pixels, [UInt8](repeating: brightValue, count: 64))
                let expected = dimValue < brightValue ? 2 : UInt8(canvas.items[1].label + 1)
                XCTAssertEqual(canvas.mask.pixels, [UInt8](repeating: expected, count: 64), "values \(dimValue), \(brightValue)")
            }
        }
    }

    func testTheLaterRuleLetsTheLaterItemCoverTheEarlier() throws {
        // A bright full item and a dim one with a faint stripe: the later covers the earlier where
        // its pixels are above the box threshold; its stripe (5, below it) is blended by maximum.
        var dim = [UInt8](repeating: 100, count: 64)
        for index in 24..<32 { dim[index] = 5 }
        let pixels = [UInt8](repeating: 200, count: 64) + dim
        var settings = options(count: 8, maxOverlap: 1)
        settings.size = ImageSize(width: 8, height: 8)
        settings.minItems = 2; settings.maxItems = 2; settings.scaleMin = 1; settings.scaleMax = 1
        settings.overlapRule = .later
        let composer = try Composer(planarImages: pixels, labels: [0, 1], classNames: ["bright", "dim"], channels: 1,
                                    height: 8, width: 8, options: settings)
        var orders = Set<[Int]>()
        for index in 0..<8 {
            let canvas = composer.canvas(index: index)
            let labels = canvas.items.map(\.label)
            orders.insert(labels)
            let later = pixels[(labels[1] * 64)..<(labels[1] * 64 + 64)]
            let earlier = pixels[(labels[0] * 64)..<(labels[0] * 64 + 64)]
            for pixel in 0..<64 {
                let covered = later[later.startIndex + pixel] > 10
                XCTAssertEqual(canvas.image.pixels[pixel], covered ? later[later.startIndex + pixel]
                               : max(later[later.startIndex + pixel], earlier[earlier.startIndex + pixel]))
                XCTAssertEqual(canvas.mask.pixels[pixel], UInt8(covered ? labels[1] + 1 : labels[0] + 1), "pixel \(pixel), order \(labels)")
            }
        }
        XCTAssertEqual(orders.count, 2, "both paste orders occur")
    }

    func testUniformNoiseCoversItsWholeRange() throws {
        var settings = options(count: 4, noise: 20 / 255)
        settings.noiseDistribution = .uniform
        settings.minItems = 1; settings.maxItems = 1; settings.scaleMin = 1; settings.scaleMax = 1
        let composer = try Composer(planarImages: [UInt8](repeating: 0, count: 63) + [200], labels: [0], classNames: ["dot"],
                                    channels: 1, height: 8, width: 8, options: settings)
        var counts = [Int](repeating: 0, count: 256)
        for index in 0..<4 {
            for value in composer.canvas(index: index).image.pixels where value != 200 { counts[Int(value)] += 1 }
        }
        let total = counts.reduce(0, +)
        XCTAssertEqual(counts[21...].reduce(0, +), 0, "uniform noise 0...20 never exceeds 20")
        for value in 0...20 {
            // 1,916 draws over 21 values: about 91 each.
            XCTAssertEqual(Double(counts[value]) / Double(total), 1.0 / 21, accuracy: 0.025, "value \(value)")
        }
    }

    func testNoOverlapAllowedDropsItemsThatDoNotFit() throws {
        let item = composeItem(class: 0, channels: 1)
        var settings = options(count: 30, maxOverlap: 0)
        settings.size = ImageSize(width: 7, height: 7)
        settings.minItems = 3; settings.maxItems = 3; settings.scaleMin = 1; settings.scaleMax = 1
        // A 7 x 7 canvas has room for one 4x4 square: the other two can only overlap it.
        let composer = try Composer(planarImages: item.pixels + item.pixels + item.pixels, labels: [0, 1, 2],
                                    classNames: ["a", "b", "c"], channels: 1, height: 8, width: 8, options: settings)
        for index in 0..<30 {
            let canvas = composer.canvas(index: index)
            XCTAssertEqual(canvas.items.count, 1)
            XCTAssertEqual(canvas.droppedItems, 2)
        }
        // On 10 x 10 two squares sometimes leave room for a third: whatever is kept never overlaps.
        settings.size = ImageSize(width: 10, height: 10)
        let roomier = try Composer(planarImages: item.pixels + item.pixels + item.pixels, labels: [0, 1, 2],
                                   classNames: ["a", "b", "c"], channels: 1, height: 8, width: 8, options: settings)
        var kept = 0
        for index in 0..<30 {
            let canvas = roomier.canvas(index: index)
            XCTAssertEqual(canvas.items.count + canvas.droppedItems, 3)
            kept += canvas.items.count
            for (first, a) in canvas.items.enumerated() {
                for b in canvas.items[(first + 1)...] { XCTAssertEqual(intersectionOverUnion(a.box, b.box), 0) }
            }
        }
        XCTAssertGreaterThan(kept, 30, "some canvases hold more than one square")
    }

    func testThreeChannelItemsMakeColourCanvases() throws {
        let directory = TemporaryDirectory()
        let items = try writeComposeItems(directory.file("items.h5"), channels: 3)
        let output = directory.file("boxes.h5")
        let composer = try Composer(items: ClassificationDataset(path: items), options: options(count: 6, noise: 0.05))
        _ = try composer.write(task: .detection, to: output)
        let dataset = try DetectionDataset(path: output)
        XCTAssertEqual(dataset.channels, 3)
        let planar = try dataset.readImages(0..<6)
        for index in 0..<6 {
            let canvas = composer.canvas(index: index)
            XCTAssertEqual(canvas.image.channels, 3)
            let stored = planar.withUnsafeBufferPointer {
                Image(planar: $0.baseAddress! + index * 3 * 480, width: 24, height: 20, channels: 3)
            }
            XCTAssertEqual(stored, canvas.image)
            // Channel 0 of an item pixel is 20 brighter than channel 1 (see composeItem).
            let box = canvas.items[0].box
            let center = (Int((box.y1 + box.y2) / 2) * 24 + Int((box.x1 + box.x2) / 2)) * 3
            XCTAssertGreaterThan(canvas.image.pixels[center], canvas.image.pixels[center + 1])
        }
    }

    func testBackgroundNoiseHasTheRequestedLevel() throws {
        let item = composeItem(class: 0, channels: 1)
        var settings = options(count: 10, noise: 0.05)
        settings.minItems = 1; settings.maxItems = 1
        let composer = try Composer(planarImages: item.pixels, labels: [0], classNames: ["a"], channels: 1,
                                    height: 8, width: 8, options: settings)
        var sum = 0.0, squares = 0.0, count = 0.0
        for index in 0..<10 {
            let canvas = composer.canvas(index: index)
            for (pixel, value) in canvas.image.pixels.enumerated() where canvas.mask.pixels[pixel] == 0 {
                let box = canvas.items[0].box, x = Float(pixel % 24), y = Float(pixel / 24)
                if x >= box.x1 - 2 && x < box.x2 + 2 && y >= box.y1 - 2 && y < box.y2 + 2 { continue }
                sum += Double(value); squares += Double(value) * Double(value); count += 1
            }
        }
        // Half-normal with sigma = 0.05 * 255: mean sigma * sqrt(2 / pi) = 10.2, RMS sigma = 12.75.
        XCTAssertEqual(sum / count, 10.17, accuracy: 0.8)
        XCTAssertEqual((squares / count).squareRoot(), 12.75, accuracy: 0.8)
    }

    func testBadInputsFailWithOneLineNamingTheFile() throws {
        let directory = TemporaryDirectory()
        let items = try writeComposeItems(directory.file("items.h5"))
        var tooMany = options()
        tooMany.maxItems = 4
        assertDatasetError(["items.h5", "--max-items 4", "3 classes"]) {
            _ = try Composer.compose(task: .tagging, items: items, output: directory.file("out.h5"), options: tooMany)
        }
        assertDatasetError(["out.h5", "classification"]) {
            _ = try Composer.compose(task: .classification, items: items, output: directory.file("out.h5"), options: self.options())
        }
        assertDatasetError(["missing.h5"]) {
            _ = try Composer.compose(task: .tagging, items: directory.file("missing.h5"), output: directory.file("out.h5"), options: self.options())
        }
        _ = try Composer.compose(task: .tagging, items: items, output: directory.file("tags.h5"), options: options(count: 2))
        assertDatasetError(["tags.h5", "tagging dataset, not classification"]) {
            _ = try Composer.compose(task: .detection, items: directory.file("tags.h5"), output: directory.file("out.h5"), options: self.options())
        }
        assertDatasetError(["tags.h5", "exists"]) {
            _ = try Composer.compose(task: .tagging, items: items, output: directory.file("tags.h5"), options: self.options())
        }
        XCTAssertEqual(try TaggingDataset(path: directory.file("tags.h5")).count, 2, "the existing output was touched")
        XCTAssertEqual(directory.entries, ["items.h5", "tags.h5"])

        var invalid = options()
        invalid.minItems = 3; invalid.maxItems = 2
        XCTAssertThrowsError(try invalid.validate()) { XCTAssertTrue("\($0)".contains("--max-items")) }
        invalid = options(); invalid.scaleMin = 0
        XCTAssertThrowsError(try invalid.validate()) { XCTAssertTrue("\($0)".contains("--scale-min")) }
    }

    func testPreviewSheetHasOneTilePerCanvas() throws {
        let item = composeItem(class: 0, channels: 1)
        let composer = try Composer(planarImages: item.pixels, labels: [0], classNames: ["a"], channels: 1,
                                    height: 8, width: 8, options: {
                                        var settings = options(count: 5)
                                        settings.maxItems = 1
                                        return settings
                                    }())
        let sheet = composer.preview(task: .segmentation, count: 16, columns: 4, zoom: 1)
        // 5 canvases: 4 columns x 2 rows of (image | mask) tiles with 2-pixel gaps.
        XCTAssertEqual([sheet.width, sheet.height, sheet.channels], [4 * (48 + 2) + 2, 2 * (20 + 2) + 2, 3])
        let boxes = composer.preview(task: .detection, count: 1, columns: 1, zoom: 2)
        XCTAssertEqual([boxes.width, boxes.height], [(24 + 4) * 2, (20 + 4) * 2])
        // The box outline is drawn in the first class colour.
        XCTAssertTrue(stride(from: 0, to: boxes.pixels.count, by: 3).contains { boxes.pixels[$0] == 230 && boxes.pixels[$0 + 1] == 25 })
    }
}
