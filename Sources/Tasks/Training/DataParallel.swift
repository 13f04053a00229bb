import PerceptCore
import PerceptDatasets
import Foundation

/// What the ranks of a data-parallel training job take from rank 0 before they start: its
/// configuration (each rank parsed its own command line; rank 0's is the job's), its run
/// folder and its resume checkpoint. Every rank reads the training data (and a pretrained
/// file) from the same path; only rank 0 reads validation data and writes.
public enum DataParallel {
    /// `make()` on rank 0, its YAML decoded over `blank` on every other rank; `make()` itself
    /// for one process. An error on rank 0 ends the job (the others wait in the broadcast).
    public static func rankZeros<C: Configurable>(_ make: () throws -> C, over blank: @autoclosure () -> C) throws -> C {
        guard Distributed.isParallel else { return try make() }
        if Distributed.isMain {
            let config = try make()
            _ = Distributed.shared(config.yaml())
            return config
        }
        return try blank().reading(yaml: Distributed.shared(""), source: "rank 0's configuration")
    }

    /// Rank 0's value of `make()` (a path) on every rank; rank 0 alone runs `make()`.
    public static func rankZeros(_ make: () throws -> String) throws -> String {
        guard Distributed.isParallel else { return try make() }
        return Distributed.shared(Distributed.isMain ? try make() : "")
    }

    /// The checkpoint every rank resumes from: rank 0's file as it is; on the other ranks a
    /// private copy of its bytes (their machines need not hold it), removed by `cleanUp`.
    public static func sharedResume(_ resume: String?) throws -> (path: String?, cleanUp: () -> Void) {
        guard Distributed.isParallel else { return (resume, {}) }
        let path = Distributed.shared(resume ?? "")
        guard !path.isEmpty else { return (nil, {}) }
        if Distributed.isMain {
            let bytes: Data
            do { bytes = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw DatasetError(path, "cannot be read: \(error.localizedDescription)")
            }
            _ = Distributed.shared(bytes)
            return (path, {})
        }
        let copy = NSTemporaryDirectory() + "percept-resume-\(ProcessInfo.processInfo.processIdentifier)-rank\(Distributed.rank).h5"
        try Distributed.shared(Data()).write(to: URL(fileURLWithPath: copy), options: .atomic)
        return (copy, { try? FileManager.default.removeItem(atPath: copy) })
    }

    /// Checks, on every rank at once, that each rank opened the training data rank 0 did (the
    /// same images, shapes, classes and task order): ranks with other data would step through
    /// other numbers of batches and wait for each other forever.
    public static func checkSameData(_ datasets: [ImageDataset]) throws {
        guard Distributed.isParallel else { return }
        func describe(_ set: ImageDataset) -> String {
            "\(set.count) images \(set.channels)x\(set.height)x\(set.width) of classes \(set.classNames)"
        }
        let mine = datasets.map(describe).joined(separator: "\n")
        let rankZeros = Distributed.shared(mine).components(separatedBy: "\n")
        for (index, set) in datasets.enumerated() where index >= rankZeros.count || rankZeros[index] != describe(set) {
            throw DatasetError(set.path, "holds \(describe(set)), rank 0's training data \(index < rankZeros.count ? rankZeros[index] : "nothing"): every rank needs the same data")
        }
    }
}
