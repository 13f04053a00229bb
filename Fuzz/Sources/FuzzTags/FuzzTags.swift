import Foundation
import PerceptDatasets
import FuzzSupport

/// The whole of convert tags on a fuzzed CSV, with images p0, p1 and p2 in place; a CSV that
/// converts writes a small HDF5 file, removed again.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTags(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let csv = scratchFile("tags.csv", fuzzBytes(data, size))
    let output = scratch + "/tags.h5"
    expectDatasetErrorsOnly {
        // Declared tags from the input's first byte, so both separator rules are exercised.
        let declared: [String]? = size > 0 && data[0] & 1 == 1 ? ["Ankle boot", "Bag", "haze", "primary"] : nil
        _ = try Converter.tags(images: images, csv: csv, declaredTags: declared, output: output,
                               options: ConversionOptions(overwrite: true))
    }
    unlink(output)
    return 0
}

let images: String = {
    let folder = scratch + "/images"
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    for name in ["p0", "p1", "p2"] {
        let image = Image(width: 2, height: 2, channels: 3, pixels: [UInt8](repeating: UInt8(name.count), count: 12))
        try! PNG.write(image, to: folder + "/\(name).png")
    }
    return folder
}()
