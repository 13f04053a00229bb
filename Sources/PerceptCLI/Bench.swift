import ArgumentParser
import Core
import Foundation
import Tasks

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference throughput (images/s) on the reference workloads.",
        discussion: """
        W1: Fashion-MNIST CNN (1x28x28), train batch 64, inference batch 256.
        W2: ResNet-8 on 3x32x32, train batch 128, inference batch 256.
        W3: FCN segmentation, the W2 trunk on 3x64x64, 1x1 conv to 11 classes, bilinear x4, per-pixel cross-entropy; train batch 16, inference batch 64.
        W4: sliding windows, the W1 network with unpadded convolutions as a 28x28 window classifier over a 1x256x256 image, windows every 4 pixels (3,364); modes dense (one fully convolutional pass) and naive (crop the windows, classify batches of 64), images/s.
        Run a release build (swift build -c release); PyTorch's side is shared/bench/torch_bench.py.
        """)

    @Option(name: .long, help: "Thread counts to measure, comma separated.")
    var threads: String = "1,2"

    @Option(name: .long, help: "Workloads to run, comma separated (W1, W2, W3, W4).")
    var workload: String = "W1,W2,W3,W4"

    @Option(name: .long, help: "Seconds each timed measurement runs.")
    var minTime: Double = 3

    @Option(name: .long, help: "What to time: train, inference (W4: dense and naive) or both.")
    var mode: String = "both"

    @Flag(name: .long, help: "Print one JSON object per line instead of a table.")
    var json = false

    func validate() throws {
        for t in threads.split(separator: ",") where Int(t).map({ $0 < 1 }) ?? true {
            throw ValidationError("--threads: '\(t)' is not a positive thread count")
        }
        for w in workload.split(separator: ",") where BenchmarkWorkload(rawValue: String(w).uppercased()) == nil {
            throw ValidationError("--workload: unknown workload '\(w)' (known: \(BenchmarkWorkload.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard ["train", "inference", "both"].contains(mode) else {
            throw ValidationError("--mode must be train, inference or both, got '\(mode)'")
        }
        guard minTime > 0 else { throw ValidationError("--min-time must be positive") }
    }

    func run() throws {
        let threadCounts = threads.split(separator: ",").compactMap { Int($0) }
        let workloads = workload.split(separator: ",").compactMap { BenchmarkWorkload(rawValue: String($0).uppercased()) }
        if !json { print("workload  mode       threads  batch  images/s   peak RSS MB") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for w in workloads {
            for t in threadCounts {
                for benchmarkMode in w.modes where mode == "both" || (mode == "train") == (benchmarkMode == .train) {
                    let r = runBenchmark(w, mode: benchmarkMode, threads: t, minTime: minTime)
                    if json {
                        print(String(decoding: try encoder.encode(r), as: UTF8.self))
                    } else {
                        print(r.workload.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                              + r.mode.padding(toLength: 10, withPad: " ", startingAt: 0)
                              + String(format: " %7d  %5d  %9.1f  %11.1f", r.threads, r.batch,
                                       r.images_per_second, r.peak_rss_mb))
                    }
                    fflush(stdout)
                }
            }
        }
    }
}
