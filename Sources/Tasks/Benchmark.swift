import Core
import Datasets
import Foundation

/// The reference workloads of `percept bench` (the same networks as shared/bench/torch_bench.py).
public enum BenchmarkWorkload: String, CaseIterable, Sendable {
    /// Fashion-MNIST CNN: 1x28x28, conv32-pool-conv64-pool-fc128-fc10; train b64, inference b256.
    case w1 = "W1"
    /// ResNet-8 (16/32/64) on 3x32x32; train b128, inference b256.
    case w2 = "W2"

    public var trainBatch: Int { self == .w1 ? 64 : 128 }
    public var inferenceBatch: Int { 256 }
    var input: [Int] { self == .w1 ? [1, 28, 28] : [3, 32, 32] }

    /// The workload's network as a classifier with fresh weights, and its input shape [C, H, W].
    public func makeModel(seed: UInt64 = 0) -> (Classifier, [Int]) {
        let backbone: BackboneConfiguration, layers: VectorHeadConfiguration
        switch self {
        case .w1:
            backbone = .init(kind: .plain, inputChannels: 1, widths: [32, 64])
            layers = .init(pooling: .flatten, inFeatures: 64 * 7 * 7, hidden: 128, outputs: 10)
        case .w2:
            backbone = BackbonePreset.resnet8.configuration(inputChannels: 3)
            layers = .init(pooling: .global, inFeatures: 64, outputs: 10)
        }
        let configuration = ModelConfiguration(
            task: .classification, inputChannels: input[0], inputHeight: input[1], inputWidth: input[2],
            classes: (0..<10).map(String.init), backbone: backbone, head: ClassificationHead.Configuration(layers: layers),
            mean: Array(repeating: 0, count: input[0]), std: Array(repeating: 1, count: input[0]))
        // The configuration is fixed and valid: building it cannot fail.
        return (try! Classifier(configuration, seed: seed), input)
    }
}

/// One measured row of `percept bench`.
public struct BenchmarkResult: Codable, Sendable {
    public var workload: String
    public var mode: String
    public var threads: Int
    public var batch: Int
    public var images_per_second: Double
    public var peak_rss_mb: Double
}

/// Times training steps (forward, backward, SGD momentum update) or inference batches on random
/// data until `minTime` seconds have passed, after a warm-up of at least 3 steps / 1 second.
public func runBenchmark(_ workload: BenchmarkWorkload, training: Bool, threads: Int,
                         minTime: Double = 3) -> BenchmarkResult {
    Threads.set(threads)
    MemoryStatistics.resetPeak()
    let (model, input) = workload.makeModel()
    let batch = training ? workload.trainBatch : workload.inferenceBatch
    var rng = SeededGenerator(seed: 42)
    let images = Tensor.randomNormal([batch] + input, using: &rng)
    let labels = (0..<batch).map { _ in Int32(rng.next() % 10) }
    let optimizer = SGD(learningRate: 0.01, momentum: 0.9)
    model.setMode(training ? .training : .inference)

    func step() {
        let logits = model(images)
        if training {
            let loss = model.head.loss(logits, labels, geometry: model.geometry)
            optimizer.update(model, along: loss.backward())
        }
    }
    var steps = 0
    let warmStart = DispatchTime.now().uptimeNanoseconds
    while steps < 3 || Double(DispatchTime.now().uptimeNanoseconds - warmStart) < 1e9 {
        step(); steps += 1
    }
    steps = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        step(); steps += 1
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < minTime
    return BenchmarkResult(workload: workload.rawValue, mode: training ? "train" : "inference",
                           threads: threads, batch: batch,
                           images_per_second: Double(steps * batch) / elapsed,
                           peak_rss_mb: MemoryStatistics.peakResidentMegabytes())
}

/// Resident memory of this process, from /proc (Linux).
public enum MemoryStatistics {
    /// Peak resident set size in MiB (VmHWM).
    public static func peakResidentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
            return kb / 1024
        }
        return 0
    }

    /// Starts a new peak measurement (writes 5 to /proc/self/clear_refs).
    public static func resetPeak() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }
}
