import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// The detector and the segmenter take images of any size: larger than `max_side`, they are
/// scaled down first and their boxes and masks mapped back to the image's own pixels.
final class AnySizeTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testSegmenterMasksAreAtTheImagesOwnSize() throws {
        let (model, _) = try Model<SegmentationHead>.load(path: root.appendingPathComponent("models/fashion-segmenter.h5").path)
        let canvas = try ImageFile.read(path: root.appendingPathComponent("samples/segmentation/00-trouser+coat.png").path)
        // Its own size (64 x 64) is under max_side: predicted as it is, as the model's own input.
        let own = model.predict(images: [canvas])[0]
        XCTAssertEqual(own.mask, model.predict(try loadImages([root.appendingPathComponent("samples/segmentation/00-trouser+coat.png").path],
                                                          for: model.configuration))[0].mask)
        // A wider image at its own size: a mask of its size, not the model's 64 x 64.
        let wide = Image(width: 96, height: 64, channels: 1, pixels: (0..<(96 * 64)).map { canvas.pixels[($0 / 96) * 64 + min($0 % 96, 63)] })
        XCTAssertEqual([model.predict(images: [wide])[0].width, model.predict(images: [wide])[0].height], [96, 64])
        // Over max_side: segmented at the scaled-down size, the mask scaled back up.
        var settings = model.head.settings
        settings.maxSide = 48
        try model.use(settings)
        XCTAssertTrue(model.predictionSize(width: 96, height: 64) == (48, 32))
        let scaled = model.predict(images: [wide])[0]
        XCTAssertEqual([scaled.width, scaled.height], [96, 64])
        let direct = model.predict(images: [wide.resized(width: 48, height: 32)])[0]
        XCTAssertEqual(scaled.mask, direct.image.resizedNearest(width: 96, height: 64).pixels)
    }

    func testDetectorBoxesAreMappedBackFromTheScaledImage() throws {
        let (model, _) = try Model<WindowHead>.load(path: root.appendingPathComponent("models/fashion-detector.h5").path)
        var settings = model.head.settings
        settings.refinements = 0
        settings.maxSide = 160
        try model.use(settings)
        let scene = try ImageFile.read(path: root.appendingPathComponent("samples/scenes/01.png").path)
        let large = scene.resized(width: 320, height: 240)
        XCTAssertTrue(model.predictionSize(width: 320, height: 240) == (160, 120))
        let mapped = model.predict(images: [large])[0]
        let direct = model.predict(images: [large.resized(width: 160, height: 120)])[0]
        XCTAssertFalse(mapped.isEmpty)
        XCTAssertEqual(mapped.count, direct.count)
        for (a, b) in zip(mapped, direct) {
            XCTAssertEqual([a.box.x1, a.box.y1, a.box.x2, a.box.y2], [b.box.x1 * 2, b.box.y1 * 2, b.box.x2 * 2, b.box.y2 * 2])
            XCTAssertEqual(a.score, b.score)
            XCTAssertTrue(a.box.x1 >= 0 && a.box.y1 >= 0 && a.box.x2 <= 320 && a.box.y2 <= 240)
        }
    }
}
