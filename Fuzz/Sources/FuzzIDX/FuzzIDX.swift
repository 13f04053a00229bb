@testable import PerceptDatasets
import FuzzSupport

/// IDXReader as convert idx drives it: header, then labels in one read or records one by one.
/// The input is written raw; inputs starting with gzip's magic bytes are read as gzip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = scratchFile("fuzz.idx", fuzzBytes(data, size))
    expectDatasetErrorsOnly {
        let reader = try IDXReader(path: path)
        if reader.dimensions.count == 1 {
            _ = try reader.read(count: reader.dimensions[0], record: "label")
        } else {
            var record = [UInt8](repeating: 0, count: reader.recordBytes)
            for index in 0..<reader.dimensions[0] { try reader.read(into: &record, record: "image \(index)") }
        }
        try reader.expectEnd()
    }
    return 0
}
