import Foundation
import XCTest
@testable import PerceptDatasets

/// JPEG decoding against PIL's decode of the same files (Tests/Inputs/jpeg, written by its
/// make_fixtures.py): pixel equality for gray, RGB at three chroma subsamplings, progressive,
/// CMYK, YCCK and all eight EXIF orientations; clean errors for broken and unsupported files.
final class JPEGTests: XCTestCase {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Inputs/jpeg").path

    func fixture(_ name: String) -> String { folder + "/" + name }

    /// Our decode of `name.jpg` with `channels` equals PIL's decode (`pil`, a PNG).
    func assertDecodesAsPIL(_ name: String, channels: Int, pil: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ours = try ImageFile.read(path: fixture(name + ".jpg"), channels: channels)
        let theirs = try PNG.read(path: fixture(pil), channels: channels)
        XCTAssertEqual([ours.width, ours.height, ours.channels], [theirs.width, theirs.height, theirs.channels], name, file: file, line: line)
        let differing = zip(ours.pixels, theirs.pixels).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "\(name) (\(channels) channels): \(differing) of \(ours.pixels.count) values differ from PIL's", file: file, line: line)
    }

    func testColourFilesDecodeAsPILDoes() throws {
        for name in ["rgb-420", "rgb-422", "rgb-444", "progressive", "cmyk"] {
            try assertDecodesAsPIL(name, channels: 3, pil: name + ".pil.png")
            // Gray by the colour rule: PIL's convert("L") of PIL's decode.
            try assertDecodesAsPIL(name, channels: 1, pil: name + ".pil-gray.png")
        }
        try assertDecodesAsPIL("ycck", channels: 3, pil: "ycck.pil.png")
        let native = try ImageFile.decode(bytes: [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture("rgb-420.jpg")))), path: "x")
        XCTAssertEqual(native.channels, 3)
    }

    func testGrayFilesDecodeAsPILDoesAndReplicateToRGB() throws {
        try assertDecodesAsPIL("gray", channels: 1, pil: "gray.pil.png")
        try assertDecodesAsPIL("gray", channels: 3, pil: "gray.pil-rgb.png")
        XCTAssertEqual(try ImageFile.decode(bytes: [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture("gray.jpg")))), path: "x").channels, 1)
    }

    /// All eight orientations come out upright, as `ImageOps.exif_transpose` turns them.
    func testEXIFOrientationsAreApplied() throws {
        for orientation in 1...8 {
            try assertDecodesAsPIL("orientation-\(orientation)", channels: 3, pil: "orientation-\(orientation).pil.png")
            let size = try ImageFile.size(path: fixture("orientation-\(orientation).jpg"))
            XCTAssertEqual([size.width, size.height], orientation >= 5 ? [7, 13] : [13, 7], "orientation \(orientation)")
        }
    }

    func testBrokenAndUnsupportedFilesAreOneClearError() {
        for (name, fragment) in [("truncated.jpg", "corrupt or truncated JPEG"), ("corrupt.jpg", "JPEG"),
                                 ("12bit.jpg", "12-bit JPEG is not supported"), ("lossless.jpg", "lossless JPEG is not supported")] {
            XCTAssertThrowsError(try ImageFile.read(path: fixture(name), channels: 3), name) { error in
                guard let error = error as? DatasetError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(error.file, fixture(name))
                XCTAssertTrue(error.problem.contains(fragment), "\(name): \(error.problem)")
            }
        }
        // Every prefix of a good file fails cleanly (or, cut only inside its last bytes, decodes).
        let bytes = [UInt8](try! Data(contentsOf: URL(fileURLWithPath: fixture("progressive.jpg"))))
        for length in stride(from: 0, to: bytes.count - 2, by: 7) {
            XCTAssertThrowsError(try ImageFile.decode(bytes: Array(bytes.prefix(length)), path: "cut.jpg"), "\(length) bytes") {
                XCTAssertTrue($0 is DatasetError, "\($0)")
            }
        }
        XCTAssertThrowsError(try ImageFile.decode(bytes: [0x47, 0x49, 0x46, 0x38], path: "x.gif")) {
            XCTAssertEqual(($0 as? DatasetError)?.problem, "not a PNG or JPEG image")
        }
    }

    func testEXIFParserReadsBothByteOrdersAndRefusesNonsense() {
        // "MM", 42, IFD at 8: one entry, orientation SHORT 1 value 6.
        let bigEndian: [UInt8] = [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(EXIF.orientation(tiff: bigEndian[...]), 6)
        let littleEndian: [UInt8] = [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(EXIF.orientation(tiff: littleEndian[...]), 3)
        var outOfRange = littleEndian; outOfRange[18] = 9
        XCTAssertNil(EXIF.orientation(tiff: outOfRange[...]))
        var wrongType = littleEndian; wrongType[12] = 4
        XCTAssertNil(EXIF.orientation(tiff: wrongType[...]))
        var farOffset = littleEndian; farOffset[4] = 0xF0; farOffset[7] = 0x7F
        XCTAssertNil(EXIF.orientation(tiff: farOffset[...]))
        XCTAssertNil(EXIF.orientation(tiff: Array(littleEndian.prefix(15))[...]))
        XCTAssertNil(EXIF.orientation(tiff: [][...]))
        // More entries declared than the bytes hold, the orientation not among those that are there.
        var manyEntries = littleEndian; manyEntries[8] = 0xFF; manyEntries[9] = 0xFF; manyEntries[10] = 0x13
        XCTAssertNil(EXIF.orientation(tiff: manyEntries[...]))
    }
}
