import ArgumentParser
import PerceptCore
import Foundation
import PerceptTasks

struct Bench: DataParallelCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference throughput (images/s) on the reference workloads.",
        discussion: """
        W1: Fashion-MNIST CNN (1x28x28), train batch 64, inference batch 256.
        W2: ResNet-8 on 3x32x32, train batch 128, inference batch 256.
        W3: FCN segmentation, the W2 trunk on 3x64x64, 1x1 conv to 11 classes, bilinear x4, per-pixel cross-entropy; train batch 16, inference batch 64.
        W4: sliding windows, the W1 network with unpadded convolutions as a 28x28 window classifier over a 1x256x256 image, windows every 4 pixels (3,364); modes dense (one fully convolutional pass) and naive (crop the windows, classify batches of 64), images/s.
        W5 (run on request, as torch_bench.py does): torchvision's ResNet-18 layout, 1000 classes; inference on 3x224x224 in batches of 8, training on 3x128x128 in batches of 16.
        --layers times each convolution of a training step (W2 unless --workload says otherwise) pass by pass: forward, input gradient, weight gradient (and the fused backward where the step uses it) in GFLOP/s, the forward against this machine's measured sgemm rate, and each shape's share of the step.
        Run a release build (swift build -c release); PyTorch's side is shared/bench/torch_bench.py.
        """)

    @Option(name: .long, help: "Thread counts to measure, comma separated.")
    var threads: String = "1,2"

    static let allWorkloads = "W1,W2,W3,W4"

    @Option(name: .long, help: "Workloads to run, comma separated (W1, W2, W3, W4, and W5 when named; with --layers: W2, or those with a training step).")
    var workload: String = Self.allWorkloads

    @Option(name: .long, help: "Seconds each timed measurement runs.")
    var minTime: Double = 3

    @Option(name: .long, help: "What to time: train, inference (W4: dense and naive) or both; dense or naive picks one of W4's.")
    var mode: String = "both"

    @Flag(name: .long, help: "Print one JSON object per line instead of a table.")
    var json = false

    @Flag(name: .long, help: "Instead of whole steps: each convolution of the training step (default workload W2) timed pass by pass, in GFLOP/s against the machine's sgemm rate, with its share of the step.")
    var layers = false

    @Flag(name: .customLong("no-winograd"), help: "Run 3x3 and 5x5 stride-1 convolutions as direct sums, not through Winograd's algorithm, to compare the two.")
    var noWinograd = false

    /// Whether `--mode` asks for this row: train, inference (W4's dense and naive), both, or
    /// one of W4's by name.
    private func selects(_ benchmarkMode: BenchmarkMode) -> Bool {
        switch mode {
        case "both": return true
        case "train": return benchmarkMode == .train
        case "inference": return benchmarkMode != .train
        default: return benchmarkMode.rawValue == mode
        }
    }

    func validate() throws {
        for t in threads.split(separator: ",") where Int(t).map({ $0 < 1 }) ?? true {
            throw ValidationError("--threads: '\(t)' is not a positive thread count")
        }
        for w in workload.split(separator: ",") where BenchmarkWorkload(rawValue: String(w).uppercased()) == nil {
            throw ValidationError("--workload: unknown workload '\(w)' (known: \(BenchmarkWorkload.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard ["train", "inference", "both", "dense", "naive"].contains(mode) else {
            throw ValidationError("--mode must be train, inference, both, dense or naive, got '\(mode)'")
        }
        guard minTime > 0 else { throw ValidationError("--min-time must be positive") }
        if layers && workload != Self.allWorkloads && !workload.split(separator: ",").contains(where: { $0.uppercased() != "W4" }) {
            throw ValidationError("--layers profiles training steps: W4 has none")
        }
    }

    func run() throws {
        if noWinograd { Tensor.winogradEnabled = false }
        let threadCounts = threads.split(separator: ",").compactMap { Int($0) }
        var workloads = workload.split(separator: ",").compactMap { BenchmarkWorkload(rawValue: String($0).uppercased()) }
        if Distributed.isParallel {
            // Ranks split a training step's batch; inference and layer timings are one process's.
            guard !layers else { throw ValidationError("--layers times one process's convolutions: run it without mpirun") }
            try benchDataParallel(workloads.filter { $0.modes.contains(.train) }, threadCounts)
            return
        }
        if layers {
            if workload == Self.allWorkloads { workloads = [.w2] }
            try runLayers(workloads.filter { $0.modes.contains(.train) }, threadCounts)
            return
        }
        if !json {
            print("kernels: Percept \(KernelBuilds.perceptKernels), OpenBLAS \(KernelBuilds.openBLASCore)")
            print("workload  mode       threads  batch  images/s   peak RSS MB")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for w in workloads {
            for t in threadCounts {
                for benchmarkMode in w.modes where selects(benchmarkMode) {
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

    /// Training rows data-parallel over the job's ranks: images/s of the global batch and the
    /// gradient allreduce's milliseconds per step, printed by rank 0.
    func benchDataParallel(_ workloads: [BenchmarkWorkload], _ threadCounts: [Int]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        if Distributed.isMain && !json {
            print("data-parallel training over \(Distributed.size) ranks (threads per rank; batch is the global batch)")
            print("workload  mode       threads  batch  images/s   peak RSS MB  allreduce ms/step")
        }
        for w in workloads {
            for t in threadCounts {
                let r = runBenchmark(w, mode: .train, threads: t, minTime: minTime)
                guard Distributed.isMain else { continue }
                if json {
                    print(String(decoding: try encoder.encode(r), as: UTF8.self))
                } else {
                    print(r.workload.padding(toLength: 9, withPad: " ", startingAt: 0) + " " + r.mode.padding(toLength: 10, withPad: " ", startingAt: 0)
                          + String(format: " %7d  %5d  %9.1f  %11.1f  %17.2f", r.threads, r.batch, r.images_per_second, r.peak_rss_mb, r.allreduce_ms ?? 0))
                }
                fflush(stdout)
            }
        }
    }

    /// The --layers table: per workload and thread count, the sgemm rate, then one row per convolution shape.
    func runLayers(_ workloads: [BenchmarkWorkload], _ threadCounts: [Int]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func rate(_ value: Double?) -> String { value.map { String(format: "%7.1f", $0) } ?? "      -" }
        for w in workloads {
            for t in threadCounts {
                let peak = measureGEMMPeak(threads: t, minTime: max(0.5, minTime / 3))
                let (rows, stepSeconds) = profileLayers(w, threads: t, minTime: minTime)
                if json {
                    for row in rows {
                        var object = try JSONSerialization.jsonObject(with: encoder.encode(row)) as! [String: Any]
                        object["workload"] = w.rawValue; object["threads"] = t; object["sgemm_gflops"] = peak
                        object["step_seconds"] = stepSeconds
                        print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                    }
                    continue
                }
                print(String(format: "%@ training step, %d thread%@: %.2f ms per batch of %d; sgemm %.1f GFLOP/s",
                             w.rawValue, t, t == 1 ? "" : "s", stepSeconds * 1000, w.trainBatch, peak))
                print("layer                        count  forward  (% sgemm)  input grad  weight grad  fused bwd  step share")
                for row in rows {
                    print(row.layer.padding(toLength: 28, withPad: " ", startingAt: 0)
                          + String(format: " %5d  ", row.count) + rate(row.forward_gflops)
                          + String(format: "  (%5.1f%%)   ", 100 * row.forward_gflops / peak) + rate(row.input_gradient_gflops)
                          + "      " + rate(row.weight_gradient_gflops) + "    " + rate(row.fused_backward_gflops)
                          + String(format: "      %5.1f%%", 100 * row.step_share))
                }
                let covered = rows.reduce(0) { $0 + $1.step_share }
                print(String(format: "convolutions: %.1f%% of the step; the rest (batch norm, ReLU, adds, loss, update): %.1f%%\n",
                             100 * covered, 100 * max(0, 1 - covered)))
                fflush(stdout)
            }
        }
    }
}
