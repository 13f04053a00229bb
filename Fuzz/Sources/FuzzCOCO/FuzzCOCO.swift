import Foundation
@testable import PerceptDatasets
import FuzzSupport

/// The COCO JSON reader of convert coco.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCOCO(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    expectDatasetErrorsOnly {
        let coco = try COCOFile(data: bytes, path: "fuzz.json")
        precondition(coco.annotationCount >= coco.crowdCount)
    }
    return 0
}
