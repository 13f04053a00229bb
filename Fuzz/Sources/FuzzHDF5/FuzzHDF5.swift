import PerceptDatasets
import PerceptTasks
import FuzzSupport

/// Opening a fuzzed HDF5 file as a dataset (reading its first rows) and as a model file, and
/// describing it as percept inspect does.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHDF5(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = scratchFile("fuzz.h5", fuzzBytes(data, size))
    expectDatasetErrorsOnly {
        let dataset = try openDataset(path: path)
        _ = try dataset.read(rows: 0..<min(dataset.count, 2))
    }
    expectDatasetErrorsOnly { _ = try ModelCheckpoint.read(path: path) }
    expectDatasetErrorsOnly { _ = try Inspector.describe(path: path) }
    return 0
}
