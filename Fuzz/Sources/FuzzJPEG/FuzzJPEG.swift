import PerceptDatasets
import FuzzSupport

/// ImageFile's JPEG path (markers, EXIF, TurboJPEG, CMYK and orientation) with both channel counts.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    for channels in [1, 3] {
        expectDatasetErrorsOnly {
            let image = try ImageFile.read(bytes: bytes, path: "fuzz.jpg", channels: channels, maximumPixels: 1 << 22)
            precondition(image.pixels.count == image.width * image.height * channels)
        }
    }
    return 0
}
