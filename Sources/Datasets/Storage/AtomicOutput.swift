import Foundation

/// A file written under a temporary name in its final directory and renamed into place
/// only when complete, so a crash or error never leaves a truncated file at `path`.
///
/// The temporary name is `.NAME.tmp-PID-RANDOM`, hidden so that folder listings skip it. A
/// process that dies mid-write (a crash, `kill -9`) leaves that file behind; starting a new
/// write of the same output removes the temporary files of processes that no longer exist on
/// this machine, and leaves alone those of live processes and of this one.
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
        AtomicOutput.removeStaleTemporaries(of: url)
        var generator = SystemRandomNumberGenerator()
        let suffix = String(generator.next() & 0xFFFF_FFFF, radix: 16)
        temporaryPath = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(suffix)").path
    }

    /// Removes `.NAME.tmp-PID-*` next to `output` when process PID is gone (kill(PID, 0) fails
    /// with ESRCH). Best effort: a file that cannot be listed or removed stays.
    static func removeStaleTemporaries(of output: URL) {
        let directory = output.deletingLastPathComponent().path
        let prefix = ".\(output.lastPathComponent).tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count).prefix { $0 != "-" }), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + entry) }
        }
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

/// Files written as one set: each goes to a temporary name beside its final path, and `commit()`
/// moves them all into place. A set that is not committed (an error in a later input, a kill)
/// leaves no file under a final name, so a command that stops half-way leaves no partial output.
public final class OutputSet {
    private var pending: [AtomicOutput] = []

    public init() {}

    /// Writes `data` for `path` (checked to be new unless `overwrite`), to be moved there on commit.
    public func write(_ data: Data, to path: String, overwrite: Bool) throws {
        let output = try AtomicOutput(path: path, overwrite: overwrite)
        guard FileManager.default.createFile(atPath: output.temporaryPath, contents: data) else {
            throw DatasetError(path, "cannot write file")
        }
        pending.append(output)
    }

    /// Writes `image` as a PNG for `path`.
    public func write(_ image: Image, to path: String, overwrite: Bool) throws {
        try write(Data(PNG.encode(image, path: path)), to: path, overwrite: overwrite)
    }

    /// Moves every file into place.
    public func commit() throws {
        defer { pending.removeAll() }
        for output in pending { try output.commit() }
    }

    /// How many files are waiting.
    public var count: Int { pending.count }
}

/// The output policy of every command, checked before any work: an output is never one of the
/// command's inputs, replaces an existing file only with `force`, and goes into a folder that exists.
public enum OutputPolicy {
    public static func check(_ output: String, inputs: [String], force: Bool) throws {
        let target = URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath().path
        for input in inputs where URL(fileURLWithPath: input).standardizedFileURL.resolvingSymlinksInPath().path == target {
            throw DatasetError(output, "is also an input of this command; choose another output")
        }
        var isDirectory: ObjCBool = false
        let folder = (target as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: folder.isEmpty ? "." : folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(output, "folder \(folder) does not exist")
        }
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
            guard !isDirectory.boolValue else { throw DatasetError(output, "is a directory") }
            guard force else { throw DatasetError(output, "exists; pass --force to replace it") }
        }
    }
}
