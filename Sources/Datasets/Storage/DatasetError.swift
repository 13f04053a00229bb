import Foundation

/// A failure reading or writing a dataset, model or image file; the message names the file,
/// the object or record inside it, and the problem, on one line.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    /// The file the problem is in (or about).
    public let file: String
    /// What went wrong, including the object, line or record where that helps.
    public let problem: String

    public init(_ file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}

/// The file name without its directory, for messages about files inside a known folder.
func lastComponent(_ path: String) -> String { (path as NSString).lastPathComponent }

/// The size in bytes of the file at `path`, following symbolic links (FileManager's attributes
/// describe a link itself, whose size is its target's name), or nil when it cannot be read.
func fileSize(atPath path: String) -> Int? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return Int(info.st_size)
}

/// The contents of the file at `path`, or an error naming it.
func readData(_ path: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw DatasetError(path, FileManager.default.fileExists(atPath: path) ? "cannot read file" : "no such file")
    }
    return data
}
