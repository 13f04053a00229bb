import XCTest
@testable import PerceptDatasets

final class PNGTests: XCTestCase {
    /// Writes bytes to a file in `directory`.
    func save(_ bytes: [UInt8], _ name: String, in directory: TemporaryDirectory) -> String {
        let path = directory.file(name)
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func testEightBitColourTypesConvertToRequestedChannels() throws {
        let directory = TemporaryDirectory()
        // One pixel per colour type: gray 100; gray+alpha 100 opaque; RGB (10, 20, 30); RGBA opaque.
        let gray = save(try PNG.encode(Image(width: 1, height: 1, channels: 1, pixels: [100])), "g.png", in: directory)
        let grayAlpha = save(try PNG.encode(Image(width: 1, height: 1, channels: 2, pixels: [100, 255])), "ga.png", in: directory)
        let rgb = save(try PNG.encode(Image(width: 1, height: 1, channels: 3, pixels: [10, 20, 30])), "rgb.png", in: directory)
        let rgba = save(try PNG.encode(Image(width: 1, height: 1, channels: 4, pixels: [10, 20, 30, 255])), "rgba.png", in: directory)
        for path in [gray, grayAlpha] {
            XCTAssertEqual(try PNG.read(path: path, channels: 1).pixels, [100])
            XCTAssertEqual(try PNG.read(path: path, channels: 3).pixels, [100, 100, 100])
            XCTAssertEqual(try PNG.read(path: path, channels: 4).pixels, [100, 100, 100, 255])
        }
        for path in [rgb, rgba] {
            XCTAssertEqual(try PNG.read(path: path, channels: 3).pixels, [10, 20, 30])
            XCTAssertEqual(try PNG.read(path: path, channels: 4).pixels, [10, 20, 30, 255])
            XCTAssertEqual(try PNG.read(path: path, channels: 1).pixels.count, 1)
        }
        XCTAssertEqual(try PNG.info(path: gray).channels, 1)
        XCTAssertEqual(try PNG.info(path: grayAlpha).channels, 2)
        XCTAssertEqual(try PNG.info(path: rgb).channels, 3)
        XCTAssertEqual(try PNG.info(path: rgba).channels, 4)
    }

    func testTransparentPixelsCompositeOntoBlack() throws {
        let directory = TemporaryDirectory()
        let path = save(try PNG.encode(Image(width: 2, height: 1, channels: 4, pixels: [200, 200, 200, 0, 200, 200, 200, 255])),
                        "alpha.png", in: directory)
        XCTAssertEqual(try PNG.read(path: path, channels: 3).pixels, [0, 0, 0, 200, 200, 200])
    }

    func testSixteenBitImagesScaleToEightBits() throws {
        let directory = TemporaryDirectory()
        let gray = save(try PNG.encode16(width: 2, height: 1, channels: 1, samples: [0, 65535]), "g16.png", in: directory)
        let grayAlpha = save(try PNG.encode16(width: 2, height: 1, channels: 2, samples: [0, 65535, 65535, 65535]), "ga16.png", in: directory)
        let rgb = save(try PNG.encode16(width: 1, height: 1, channels: 3, samples: [65535, 0, 65535]), "rgb16.png", in: directory)
        let rgba = save(try PNG.encode16(width: 1, height: 1, channels: 4, samples: [0, 65535, 0, 65535]), "rgba16.png", in: directory)
        XCTAssertTrue(try PNG.info(path: gray).is16Bit)
        XCTAssertEqual(try PNG.read(path: gray, channels: 1).pixels, [0, 255])
        XCTAssertEqual(try PNG.read(path: grayAlpha, channels: 1).pixels, [0, 255])
        XCTAssertEqual(try PNG.read(path: rgb, channels: 3).pixels, [255, 0, 255])
        XCTAssertEqual(try PNG.read(path: rgba, channels: 3).pixels, [0, 255, 0])
    }

    func testPaletteImagesReadAsColoursAndMasksKeepIndices() throws {
        let directory = TemporaryDirectory()
        let palette: [UInt8] = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]
        let indices: [UInt8] = [0, 1, 2, 3, 2, 1]
        let path = save(try PNG.encode(Image(width: 3, height: 2, channels: 1, pixels: indices), palette: palette + [9, 9, 9]),
                        "palette.png", in: directory)
        let info = try PNG.info(path: path)
        XCTAssertTrue(info.isPalette)
        XCTAssertEqual(try PNG.readIndexMask(path: path).pixels, indices)
        XCTAssertEqual(Array(try PNG.read(path: path, channels: 3).pixels.prefix(6)), [0, 0, 0, 255, 0, 0])

        let grayMask = save(try PNG.encode(Image(width: 3, height: 1, channels: 1, pixels: [0, 7, 255])), "mask.png", in: directory)
        XCTAssertEqual(try PNG.readIndexMask(path: grayMask).pixels, [0, 7, 255])
        let wideMask = save(try PNG.encode16(width: 2, height: 1, channels: 1, samples: [3, 255]), "mask16.png", in: directory)
        XCTAssertEqual(try PNG.readIndexMask(path: wideMask).pixels, [3, 255])
        let rgb = save(try PNG.encode(Image(width: 1, height: 1, channels: 3, pixels: [1, 2, 3])), "rgb.png", in: directory)
        assertDatasetError(["rgb.png", "palette or gray"]) { _ = try PNG.readIndexMask(path: rgb) }
    }

    func testWriteGrayAndRGBRoundTrip() throws {
        let directory = TemporaryDirectory()
        for channels in [1, 3] {
            let image = patternImage(width: 5, height: 3, channels: channels, seed: channels)
            let path = directory.file("out\(channels).png")
            try PNG.write(image, to: path)
            XCTAssertEqual(try PNG.read(path: path, channels: channels), image)
        }
        XCTAssertEqual(directory.entries, ["out1.png", "out3.png"])
    }

    func testCorruptAndTruncatedPNGsThrowNamingTheFile() throws {
        let directory = TemporaryDirectory()
        let good = try PNG.encode(patternImage(width: 8, height: 8, channels: 3, seed: 1))
        let truncated = save(Array(good.prefix(good.count - 30)), "truncated.png", in: directory)
        var flipped = good
        flipped[good.count / 2] ^= 0xFF
        let corrupt = save(flipped, "corrupt.png", in: directory)
        let garbage = save(Array("not a png at all".utf8), "garbage.png", in: directory)
        assertDatasetError(["truncated.png"]) { _ = try PNG.read(path: truncated, channels: 3) }
        assertDatasetError(["corrupt.png"]) { _ = try PNG.read(path: corrupt, channels: 3) }
        assertDatasetError(["garbage.png", "not a valid PNG"]) { _ = try PNG.read(path: garbage, channels: 3) }
        assertDatasetError(["missing.png", "no such file"]) { _ = try PNG.read(path: directory.file("missing.png"), channels: 3) }
    }

    func testResamplingFiltersInterpolateAsTheirLibrariesDo() {
        let ramp = Image(width: 2, height: 1, channels: 1, pixels: [0, 120])
        // PIL's bilinear maps pixel centres to pixel centres and holds the edge pixels.
        XCTAssertEqual(ramp.resized(width: 4, height: 1, filter: .bilinear).pixels, [0, 30, 90, 120])
        // Aligned corners put the first and last output pixels on the first and last input ones.
        XCTAssertEqual(ramp.resized(width: 4, height: 1, filter: .bilinearAlignedCorners).pixels, [0, 40, 80, 120])
        XCTAssertEqual(ramp.resized(width: 4, height: 1, filter: .nearest).pixels, [0, 0, 120, 120])
        // Keys' cubic overshoots beside a step, where bilinear stays within the input's range.
        let step = Image(width: 4, height: 1, channels: 1, pixels: [20, 20, 200, 200])
        let cubic = step.resized(width: 16, height: 1, filter: .bicubic).pixels
        let linear = step.resized(width: 16, height: 1, filter: .bilinear).pixels
        XCTAssertGreaterThan(cubic.max()!, 200)
        XCTAssertLessThan(cubic.min()!, 20)
        XCTAssertEqual([linear.min()!, linear.max()!], [20, 200])
        for filter in ResamplingFilter.allCases {
            let flat = Image(width: 5, height: 3, channels: 2, pixels: [UInt8](repeating: 91, count: 30))
            for (width, height) in [(11, 7), (2, 2), (1, 1)] {
                XCTAssertEqual(flat.resized(width: width, height: height, filter: filter).pixels,
                               [UInt8](repeating: 91, count: width * height * 2), "\(filter) to \(width)x\(height)")
            }
        }
    }

    func testResizeKeepsFlatColourAndAveragesWhenShrinking() {
        let flat = Image(width: 4, height: 4, channels: 3, pixels: [UInt8](repeating: 77, count: 48))
        XCTAssertEqual(flat.resized(width: 7, height: 3).pixels, [UInt8](repeating: 77, count: 63))
        // A 1-pixel checkerboard shrunk 4x averages to mid gray instead of aliasing.
        var checker = [UInt8](repeating: 0, count: 64)
        for y in 0..<8 { for x in 0..<8 where (x + y) % 2 == 0 { checker[y * 8 + x] = 255 } }
        let small = Image(width: 8, height: 8, channels: 1, pixels: checker).resized(width: 2, height: 2)
        for value in small.pixels { XCTAssertEqual(Double(value), 127.5, accuracy: 20) }
        let mask = Image(width: 2, height: 1, channels: 1, pixels: [3, 9]).resizedNearest(width: 4, height: 2)
        XCTAssertEqual(mask.pixels, [3, 3, 9, 9, 3, 3, 9, 9])
    }
}
