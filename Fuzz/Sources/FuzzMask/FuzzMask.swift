import PerceptDatasets
import FuzzSupport

/// PNG.readIndexMask, as convert masks uses it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMask(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = fuzzBytes(data, size)
    expectDatasetErrorsOnly {
        let mask = try PNG.readIndexMask(bytes: bytes, path: "fuzz.png")
        precondition(mask.channels == 1 && mask.pixels.count == mask.width * mask.height)
    }
    return 0
}
