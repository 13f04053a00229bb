import Core
import XCTest
@testable import Datasets

final class LayoutTests: XCTestCase {
    func testClassificationRoundTrip() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("classes.h5")
        let writer = try DatasetWriter(path: path, task: .classification, channels: 3, height: 4, width: 5, source: "test")
        var images: [Image] = []
        for index in 0..<7 {
            let image = patternImage(width: 5, height: 4, channels: 3, seed: index)
            images.append(image)
            try writer.append(image: image, label: index % 3)
        }
        try writer.finish(classNames: ["cat", "dog", "émeu"])
        XCTAssertEqual(directory.entries, ["classes.h5"])

        let dataset = try ClassificationDataset(path: path)
        XCTAssertEqual(dataset.count, 7)
        XCTAssertEqual([dataset.channels, dataset.height, dataset.width], [3, 4, 5])
        XCTAssertEqual(dataset.classNames, ["cat", "dog", "émeu"])
        XCTAssertEqual(dataset.source, "test")
        let rows = try dataset.read(rows: 2..<5)
        XCTAssertEqual(rows.labels, [2, 0, 1])
        let plane = 3 * 4 * 5
        for (offset, index) in (2..<5).enumerated() {
            let planar = Array(rows.images[(offset * plane)..<((offset + 1) * plane)])
            let back = planar.withUnsafeBufferPointer { Image(planar: $0.baseAddress!, width: 5, height: 4, channels: 3) }
            XCTAssertEqual(back, images[index])
        }
    }
}
