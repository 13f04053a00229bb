import Foundation

/// A file written under a temporary name in its final directory and renamed into place
/// only when complete, so a crash or error never leaves a truncated file at `path`.
public final class AtomicOutput {
    /// Where the finished file goes.
    public let path: String
    /// Where it is written meanwhile.
    public let temporaryPath: String
    private var finished = false

    /// Reserves a temporary name next to `path`; fails if `path` exists and `overwrite` is false.
    public init(path: String, overwrite: Bool) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(path, "output directory \(directory) does not exist")
        }
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw DatasetError(path, "output exists (use --force to overwrite)")
        }
        var generator = SystemRandomNumberGenerator()
        let suffix = String(generator.next() & 0xFFFF_FFFF, radix: 16)
        temporaryPath = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(suffix)").path
    }

    /// Moves the finished temporary file to `path` (atomically replacing an old one).
    public func commit() throws {
        guard !finished else { return }
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            abandon()
            throw DatasetError(path, "cannot move the finished file into place: \(reason)")
        }
        finished = true
    }

    /// Removes the temporary file, leaving no output.
    public func abandon() {
        guard !finished else { return }
        finished = true
        unlink(temporaryPath)
    }

    deinit { abandon() }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String, overwrite: Bool = true) throws {
        let output = try AtomicOutput(path: path, overwrite: overwrite)
        guard FileManager.default.createFile(atPath: output.temporaryPath, contents: data) else {
            throw DatasetError(path, "cannot write file")
        }
        try output.commit()
    }
}
