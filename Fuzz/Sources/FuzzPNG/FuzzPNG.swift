import PerceptDatasets
import FuzzSupport

/// PNG.read with each channel count.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPNG(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    for channels in 1...4 {
        expectDatasetErrorsOnly {
            let image = try PNG.read(bytes: bytes, path: "fuzz.png", channels: channels)
            precondition(image.pixels.count == image.width * image.height * channels)
        }
    }
    return 0
}
