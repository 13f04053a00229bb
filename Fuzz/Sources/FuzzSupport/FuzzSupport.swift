import PerceptDatasets
import Foundation

/// The fuzzer's input as bytes.
public func fuzzBytes(_ data: UnsafePointer<UInt8>, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}

/// A scratch folder for this process (under $TMPDIR), created once; fuzz targets that need
/// files write their input there.
public let scratch: String = {
    let path = NSTemporaryDirectory() + "percept-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

/// Writes `bytes` to `name` in the scratch folder and returns its path.
public func scratchFile(_ name: String, _ bytes: [UInt8]) -> String {
    let path = scratch + "/" + name
    precondition(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "cannot write \(path)")
    return path
}

/// Runs a reader on hostile input. Rejecting the input with a one-line DatasetError is the
/// expected outcome; any other error, or a message on several lines, stops the fuzzer as a
/// crash, as do traps (overflow, bounds) and aborts inside the reader.
public func expectDatasetErrorsOnly(_ body: () throws -> Void) {
    do {
        try body()
    } catch let error as DatasetError {
        precondition(!error.description.contains("\n"), "error on several lines: \(error)")
    } catch {
        preconditionFailure("a reader threw something other than DatasetError: \(error)")
    }
}
