import PerceptCore
import PerceptDatasets
import Foundation

/// The reference workloads of `percept bench` (the same networks as shared/bench/torch_bench.py).
public enum BenchmarkWorkload: String, CaseIterable, Sendable {
    /// Fashion-MNIST CNN: 1x28x28, conv32-pool-conv64-pool-fc128-fc10; train b64, inference b256.
    case w1 = "W1"
    /// ResNet-8 (16/32/64) on 3x32x32; train b128, inference b256.
    case w2 = "W2"
    /// FCN segmentation: the W2 trunk on 3x64x64 (-> 64x16x16), 1x1 conv to 11 classes,
    /// bilinear x4, per-pixel cross-entropy; train b16, inference b64.
    case w3 = "W3"
    /// Sliding windows: the W1 network with unpadded convolutions as a 28x28 window classifier
    /// over a 1x256x256 image, windows every 4 pixels (58 x 58 = 3,364); `dense` scores them all
    /// in one fully convolutional pass, `naive` crops them and classifies batches of 64.
    case w4 = "W4"
    /// torchvision's ResNet-18 (ImageNet stem, 64-128-256-512, 1000 classes): inference on
    /// 3x224x224 in batches of 8, training on 3x128x128 in batches of 16.
    case w5 = "W5"

    /// What each workload times.
    public var modes: [BenchmarkMode] { self == .w4 ? [.dense, .naive] : [.train, .inference] }

    public var trainBatch: Int {
        switch self { case .w1: return 64; case .w2: return 128; case .w3, .w5: return 16; case .w4: return 1 }
    }
    public var inferenceBatch: Int {
        switch self { case .w3: return 64; case .w4: return 1; case .w5: return 8; default: return 256 }
    }
    /// One image's shape in `mode`.
    func input(_ mode: BenchmarkMode) -> [Int] {
        switch self {
        case .w1: return [1, 28, 28]
        case .w2: return [3, 32, 32]
        case .w3: return [3, 64, 64]
        case .w4: return [1, 256, 256]
        case .w5: return mode == .train ? [3, 128, 128] : [3, 224, 224]
        }
    }

    /// The workload's network with fresh weights as a training-or-inference step on `batch`
    /// random images (and random labels). Data-parallel (under `mpirun`), a training step takes
    /// this rank's shard of the global batch and sums the gradients over the ranks with
    /// `reducer`, which times the allreduce.
    func makeStep(mode: BenchmarkMode, seed: UInt64 = 0) -> (run: () -> Void, reducer: GradientReducer?) {
        let training = mode == .train
        let batch = training ? trainBatch : inferenceBatch
        var rng = SeededGenerator(seed: 42)
        let input = self.input(mode)
        var images = Tensor.randomNormal([batch] + input, using: &rng)
        let slots = training ? Shard.current.slots(ofBatch: batch) : 0..<batch
        /// This rank's part of a global batch's targets (`perImage` each).
        func shard(_ targets: [Int32]) -> [Int32] {
            let perImage = targets.count / batch
            return Array(targets[(slots.lowerBound * perImage)..<(slots.upperBound * perImage)])
        }
        if slots.count != batch {
            let size = images.count / batch
            let part = Tensor.uninitialized([slots.count] + input)
            part.pointer.update(from: images.pointer + slots.lowerBound * size, count: slots.count * size)
            images = part
        }
        let (channels, height, width) = (input[0], input[1], input[2])
        let classes = self == .w5 ? 1000 : 10
        func configuration<H: Head>(_ backbone: BackboneConfiguration, _ head: H.Architecture, _ settings: H.Settings,
                                    for: H.Type) -> ModelConfiguration<H> {
            ModelConfiguration(task: H.task, inputChannels: channels, inputHeight: height, inputWidth: width,
                               classes: (0..<(H.task == .segmentation ? 11 : classes)).map(String.init), backbone: backbone,
                               head: head, settings: settings, mean: Array(repeating: 0, count: channels),
                               std: Array(repeating: 1, count: channels))
        }
        // The configurations are fixed and valid: building them cannot fail.
        switch self {
        case .w1, .w2, .w5:
            let backbone: BackboneConfiguration
            let layers: VectorHeadConfiguration
            switch self {
            case .w1:
                backbone = .init(kind: .plain, inputChannels: 1, widths: [32, 64])
                layers = .init(pooling: .flatten, inFeatures: 64 * 7 * 7, hidden: 128, outputs: 10)
            case .w2:
                backbone = BackbonePreset.resnet8.configuration(inputChannels: 3)
                layers = .init(pooling: .global, inFeatures: 64, outputs: 10)
            default:
                backbone = BackbonePreset.resnet18.configuration(inputChannels: 3, stemStride: 2)
                layers = .init(pooling: .global, inFeatures: 512, outputs: classes)
            }
            let model = try! Classifier(configuration(backbone, .init(layers: layers), .init(), for: ClassificationHead.self), seed: seed)
            let labels = (0..<batch).map { _ in Int32(rng.next() % UInt64(classes)) }
            return step(model, training: training, images: images, targets: shard(labels))
        case .w3:
            let head = SegmentationHead.Architecture(deepest: "stage3", classes: 11)
            let model = try! Model<SegmentationHead>(configuration(BackbonePreset.resnet8.configuration(inputChannels: 3), head,
                                                                   SegmentationHead.Settings(flipAverage: false), for: SegmentationHead.self),
                                                     seed: seed)
            let labels = (0..<(batch * height * width)).map { _ in Int32(rng.next() % 11) }
            return step(model, training: training, images: images, targets: shard(labels))
        case .w4:
            let window = 28, step = 4
            var backbone = BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [32, 64])
            backbone.padding = 0
            let head = WindowHead.Architecture(input: "stage2", window: window, featureSide: 5, hidden: 128, classes: 10)
            var settings = WindowHead.Settings()
            settings.scales = [1]
            let model = try! Model<WindowHead>(configuration(backbone, head, settings, for: WindowHead.self), seed: seed)
            model.setMode(.inference)
            if mode == .dense { return ({ _ = model(images) }, nil) }
            let positions = (height - window) / step + 1
            let windows = positions * positions, chunk = 64
            let crops = Tensor.uninitialized([windows, 1, window, window])
            return ({
                // Cropping is part of the naive method's cost.
                for index in 0..<windows {
                    let top = (index / positions) * step, left = (index % positions) * step
                    for y in 0..<window {
                        (crops.pointer + (index * window + y) * window).update(from: images.pointer + (top + y) * width + left, count: window)
                    }
                }
                for start in stride(from: 0, to: windows, by: chunk) {
                    let count = min(chunk, windows - start)
                    let batch = Tensor.uninitialized([count, 1, window, window])
                    batch.pointer.update(from: crops.pointer + start * window * window, count: count * window * window)
                    _ = model(batch)
                }
            }, nil)
        }
    }

    /// One forward pass, and in training the loss, backward pass, gradient allreduce (several
    /// ranks) and SGD momentum update.
    private func step<H: Head>(_ model: Model<H>, training: Bool, images: Tensor, targets: H.Targets)
        -> (run: () -> Void, reducer: GradientReducer?) {
        model.setMode(training ? .training : .inference)
        guard training else { return ({ _ = model(images) }, nil) }
        let optimizer = SGD(learningRate: 0.01, momentum: 0.9)
        let reducer = GradientReducer(model)
        return ({
            let gradients = Distributed.synchronisedStep { model.head.loss(model(images), targets, geometry: model.geometry).backward() }
            optimizer.update(model, along: reducer.reduce(gradients, scalars: []).0)
        }, reducer)
    }
}

/// What a benchmark row times.
public enum BenchmarkMode: String, Codable, Sendable {
    /// Forward, backward and SGD momentum update of a training batch.
    case train
    /// A forward pass of an inference batch.
    case inference
    /// Every window of an image scored in one fully convolutional pass.
    case dense
    /// The same windows cropped and classified in batches of 64.
    case naive
}

/// One measured row of `percept bench`.
public struct BenchmarkResult: Codable, Sendable {
    public var workload: String
    public var mode: String
    public var threads: Int
    public var batch: Int
    public var images_per_second: Double
    public var peak_rss_mb: Double
    /// Data-parallel rows: the ranks (images/s counts the global batch) and the gradient
    /// allreduce's milliseconds per step.
    public var ranks: Int?
    public var allreduce_ms: Double?
}

/// Times training steps (forward, backward, SGD momentum update) or inference batches on random
/// data until `minTime` seconds have passed, after a warm-up of at least 3 steps / 1 second.
/// Under `mpirun` a training row runs data-parallel: each rank steps on its shard of the global
/// batch, and rank 0's clock decides (broadcast each step) when all stop.
public func runBenchmark(_ workload: BenchmarkWorkload, mode: BenchmarkMode, threads: Int,
                         minTime: Double = 3) -> BenchmarkResult {
    Threads.set(threads)
    MemoryStatistics.resetPeak()
    let batch = mode == .train ? workload.trainBatch : workload.inferenceBatch
    let (step, reducer) = workload.makeStep(mode: mode)
    func seconds(since start: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
    var steps = 0
    let warmStart = DispatchTime.now().uptimeNanoseconds
    while Distributed.shared(steps < 3 || seconds(since: warmStart) < 1) {
        step(); steps += 1
    }
    steps = 0
    reducer?.resetTiming()
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        step(); steps += 1
        elapsed = seconds(since: start)
    } while Distributed.shared(elapsed < minTime)
    var result = BenchmarkResult(workload: workload.rawValue, mode: mode.rawValue,
                                 threads: threads, batch: batch,
                                 images_per_second: Double(steps * batch) / elapsed,
                                 peak_rss_mb: MemoryStatistics.peakResidentMegabytes())
    if let reducer, Distributed.isParallel {
        result.ranks = Distributed.size
        result.allreduce_ms = reducer.millisecondsPerStep
    }
    return result
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

/// One convolution of a workload's training step, measured on its own (`percept bench --layers`).
public struct LayerProfileRow: Codable, Sendable {
    /// Shape, e.g. "3x3/1 16->16 at 32x32".
    public var layer: String
    /// How many of the step's convolutions have this shape.
    public var count: Int
    public var forward_gflops: Double
    /// nil for the first layer, whose input gradient a step does not compute.
    public var input_gradient_gflops: Double?
    public var weight_gradient_gflops: Double
    /// Input and weight gradient fused in one pass, where the step runs them so (nil otherwise).
    public var fused_backward_gflops: Double?
    /// Forward and backward passes of all `count` layers, as a share of the measured step.
    public var step_share: Double
}

/// The convolutions of `workload`'s training step at `threads` threads: each distinct shape
/// timed pass by pass, in GFLOP/s (2 flops per multiply-add), with its share of the step.
public func profileLayers(_ workload: BenchmarkWorkload, threads: Int, minTime: Double)
    -> (rows: [LayerProfileRow], stepSeconds: Double) {
    let step = workload.makeStep(mode: .train).run
    Threads.set(threads)
    let (_, layers) = ConvolutionRecorder.record { step() }
    let stepSeconds = Double(workload.trainBatch) / runBenchmark(workload, mode: .train, threads: threads, minTime: minTime).images_per_second
    var distinct: [ConvolutionLayer] = [], counts: [ConvolutionLayer: Int] = [:]
    for layer in layers {
        if counts[layer] == nil { distinct.append(layer) }
        counts[layer, default: 0] += 1
    }
    let rows = distinct.map { layer -> LayerProfileRow in
        let timing = timeConvolution(layer, minTime: max(0.2, minTime / 10))
        let flops = 2 * Double(layer.multiplyAdds) / 1e9
        let count = counts[layer]!
        let seconds = timing.forward + timing.backward(needsInputGradient: layer.needsInputGradient)
        return LayerProfileRow(layer: layer.description, count: count, forward_gflops: flops / timing.forward,
                               input_gradient_gflops: layer.needsInputGradient ? flops / timing.inputGradient : nil,
                               weight_gradient_gflops: flops / timing.weightGradient,
                               fused_backward_gflops: timing.fusedBackward.map { 2 * flops / $0 },
                               step_share: Double(count) * seconds / stepSeconds)
    }
    return (rows, stepSeconds)
}
