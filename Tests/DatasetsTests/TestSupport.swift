import Foundation
import XCTest
@testable import PerceptDatasets

/// A fresh temporary directory removed when the test ends.
final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "percept-datasets-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    /// Names of the entries left in the directory (to check no output or temp file remains).
    var entries: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A small deterministic test image.
func patternImage(width: Int, height: Int, channels: Int, seed: Int) -> Image {
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    for index in pixels.indices { pixels[index] = UInt8((index * 37 + seed * 11) % 256) }
    return Image(width: width, height: height, channels: channels, pixels: pixels)
}

/// Asserts `body` throws a DatasetError whose text contains every fragment.
func assertDatasetError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error containing \(fragments)", file: file, line: line)
    } catch let error as DatasetError {
        let text = error.description
        XCTAssertFalse(text.contains("\n"), "error is not one line: \(text)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(text.contains(fragment), "'\(text)' does not mention '\(fragment)'", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}
