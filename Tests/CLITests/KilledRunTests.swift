import PerceptCore
import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

/// `percept classify train` killed with SIGKILL at random moments (during steps, during
/// checkpoint writes) and resumed each time ends with exactly the weights of a run that was
/// never interrupted, and no checkpoint on disk is ever unreadable.
final class KilledRunTests: XCTestCase {
    /// 96 gray 12 x 12 images of three classes (bright rows, bright columns, a bright square).
    func writeData(_ path: String) throws {
        var rng = SeededGenerator(seed: 77)
        let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 12, width: 12, source: "test")
        for index in 0..<96 {
            var pixels = (0..<144).map { _ in UInt8(rng.next() % 50) }
            for p in 0..<144 {
                let (y, x) = (p / 12, p % 12)
                let on = index % 3 == 0 ? y % 3 == 0 : index % 3 == 1 ? x % 3 == 0 : (3..<9).contains(x) && (3..<9).contains(y)
                if on { pixels[p] = 200 }
            }
            try writer.append(image: Image(width: 12, height: 12, channels: 1, pixels: pixels), label: index % 3)
        }
        try writer.finish(classNames: ["rows", "columns", "square"])
    }

    func parameters(_ path: String) throws -> [String: [Float]] {
        try ModelCheckpoint.read(path: path).parameters.mapValues(\.scalars)
    }

    func testTrainingKilledAndResumedEndsWithTheUninterruptedWeights() throws {
        let scratch = Scratch()
        try writeData(scratch.file("data.h5"))
        let flags = ["classify", "train", "--data", scratch.file("data.h5"), "--set", "preset=plain", "--set", "widths=[]",
                     "--epochs", "8", "--batch", "8", "--seed", "3", "--threads", "1", "--project", scratch.file("runs")]
        let started = Date()
        let straight = try percept(flags + ["-o", scratch.file("straight.h5")])
        let duration = Date().timeIntervalSince(started)
        XCTAssertEqual(straight.status, 0, straight.standardError)
        let expected = try parameters(scratch.file("straight.last.h5"))

        let output = scratch.file("killed.h5"), checkpoint = scratch.file("killed.last.h5")
        var rng = SeededGenerator(seed: 5)
        var kills = 0, resumes = 0
        for _ in 0..<40 {
            let process = Process()
            process.executableURL = try perceptExecutable()
            let resuming = FileManager.default.fileExists(atPath: checkpoint)
            // A resumed run takes its configuration from the checkpoint; the same command line repeats it.
            process.arguments = flags + ["-o", output] + (resuming ? ["--resume", checkpoint] : [])
            process.standardOutput = FileHandle.nullDevice
            let log = scratch.file("run.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            try process.run()
            if resuming { resumes += 1 }
            // Somewhere in the run (start-up included): during a step or during a checkpoint write;
            // early enough that a resumed run, which has less left to do, is still killed again.
            usleep(UInt32(duration * (0.15 + 0.3 * Double(rng.nextUniform())) * 1e6))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                kills += 1
            }
            process.waitUntilExit()
            if FileManager.default.fileExists(atPath: checkpoint) {
                XCTAssertNoThrow(try ModelCheckpoint.read(path: checkpoint), "a killed run left an unreadable checkpoint")
                // Killed after its last checkpoint (while writing plots, say): the training is
                // done, and resuming it again is refused as having nothing to train.
                if process.terminationReason == .uncaughtSignal, try ModelCheckpoint.read(path: checkpoint).epoch == 8 { break }
            }
            if process.terminationReason == .exit {
                guard process.terminationStatus == 0 else {
                    return XCTFail("a \(resuming ? "resumed" : "fresh") run failed: \(try String(contentsOfFile: log, encoding: .utf8).suffix(400))")
                }
                break
            }
        }
        XCTAssertGreaterThanOrEqual(kills, 2, "the run finished before it could be killed twice")
        XCTAssertGreaterThanOrEqual(resumes, 1)
        let final = try ModelCheckpoint.read(path: checkpoint)
        XCTAssertEqual(final.epoch, 8, "the killed run never finished")
        XCTAssertTrue(try parameters(checkpoint) == expected, "resumed weights differ from the uninterrupted run's")
        XCTAssertTrue(try parameters(output) == parameters(scratch.file("straight.h5")), "the final model differs")
        // Temporary files of the killed writes are gone or ignored: no stray output names.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path).filter { !$0.hasPrefix(".") && $0.contains("tmp") }
        XCTAssertEqual(leftovers, [])
    }
}
