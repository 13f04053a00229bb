import PerceptDatasets
import FuzzSupport

/// The EXIF orientation parser on any TIFF bytes: a value in 1...8 or nil, never a trap; and
/// turning a small image by it keeps every pixel.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEXIF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    let orientation = EXIF.orientation(tiff: bytes[...])
    precondition(orientation.map { (1...8).contains($0) } ?? true, "orientation \(orientation!)")
    let image = Image(width: 3, height: 2, channels: 1, pixels: [1, 2, 3, 4, 5, 6])
    precondition(image.oriented(orientation).pixels.sorted() == image.pixels)
    return 0
}
