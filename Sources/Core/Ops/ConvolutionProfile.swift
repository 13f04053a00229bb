import Foundation

/// One convolution as a network's step runs it: what `percept bench --layers` measures.
public struct ConvolutionLayer: Hashable, Sendable, CustomStringConvertible {
    public var batch: Int, inChannels: Int, outChannels: Int, height: Int, width: Int
    public var kernel: Int, stride: Int, padding: Int
    /// Whether the step computes the input gradient (not for a network's first layer).
    public var needsInputGradient: Bool

    public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }

    /// Multiply-adds of the forward pass; the input and the weight gradient take as many each.
    public var multiplyAdds: Int { batch * outChannels * outHeight * outWidth * inChannels * kernel * kernel }

    public var description: String {
        "\(kernel)x\(kernel)/\(stride) \(inChannels)->\(outChannels) at \(height)x\(width)"
    }
}

/// Records the convolutions that `conv2D` runs while `record` runs its body (on the calling
/// thread; networks call `conv2D` from one thread).
public enum ConvolutionRecorder {
    nonisolated(unsafe) static var layers: [ConvolutionLayer]?

    /// The body's result and the convolutions it ran, in order.
    public static func record<T>(_ body: () throws -> T) rethrows -> (T, [ConvolutionLayer]) {
        layers = []
        defer { layers = nil }
        let result = try body()
        return (result, layers ?? [])
    }

    @inline(__always)
    static func note(_ layer: @autoclosure () -> ConvolutionLayer) {
        if layers != nil { layers!.append(layer()) }
    }
}

/// Seconds per call of one convolution's three passes, each on the path `conv2D` takes for it.
public struct ConvolutionTiming: Sendable {
    public var forward: Double
    public var inputGradient: Double
    public var weightGradient: Double
    /// Input and weight gradient in one pass, when the layer's backward fuses them (stride-1
    /// "same" grid convolutions); a training step then runs this instead of the two.
    public var fusedBackward: Double?

    /// What a training step spends in this layer's backward pass.
    public func backward(needsInputGradient: Bool) -> Double {
        if needsInputGradient, let fusedBackward { return fusedBackward }
        return (needsInputGradient ? inputGradient : 0) + weightGradient
    }
}

/// Times each pass of `layer` on random data (`secondsPerCall`).
public func timeConvolution(_ layer: ConvolutionLayer, minTime: Double) -> ConvolutionTiming {
    var rng = SeededGenerator(seed: 7)
    let x = Tensor.randomNormal([layer.batch, layer.inChannels, layer.height, layer.width], using: &rng)
    let weight = Tensor.randomNormal([layer.outChannels, layer.inChannels, layer.kernel, layer.kernel], using: &rng)
    let g = Tensor.randomNormal([layer.batch, layer.outChannels, layer.outHeight, layer.outWidth], using: &rng)
    let y = Tensor.uninitialized(g.shape), dx = Tensor.uninitialized(x.shape), dw = Tensor.uninitialized(weight.shape)
    func seconds(_ body: () -> Void) -> Double { secondsPerCall(minTime: minTime, body) }
    return withExtendedLifetime((x, weight, g, y, dx, dw)) {
        let n = layer.batch
        if let passes = GridConvPasses(batch: n, inChannels: layer.inChannels, outChannels: layer.outChannels, height: layer.height,
                                       width: layer.width, kernelH: layer.kernel, kernelW: layer.kernel,
                                       stride: layer.stride, padding: layer.padding, groups: 1) {
            // A training step transforms its weights afresh each call.
            let forward = seconds {
                passes.forward(x.pointer, batch: n, weight: weight.pointer, bias: nil, output: y.pointer, cachingWeights: false)
            }
            let input = seconds { passes.inputGradient(g.pointer, weight: weight.pointer, batch: n, into: dx.pointer) }
            let weights = seconds { passes.weightGradient(input: x.pointer, outputGradient: g.pointer, batch: n, into: dw.pointer) }
            let fuses = passes.fusedBackward(input: x.pointer, outputGradient: g.pointer, weight: weight.pointer, batch: n,
                                             inputGradient: dx.pointer, weightGradient: dw.pointer)
            let fused = fuses ? seconds {
                _ = passes.fusedBackward(input: x.pointer, outputGradient: g.pointer, weight: weight.pointer, batch: n,
                                         inputGradient: dx.pointer, weightGradient: dw.pointer)
            } : nil
            return ConvolutionTiming(forward: forward, inputGradient: input, weightGradient: weights, fusedBackward: fused)
        }
        let geometry = ConvGeometry(channels: layer.inChannels, height: layer.height, width: layer.width, kernelH: layer.kernel,
                                    kernelW: layer.kernel, stride: layer.stride, padding: layer.padding)
        let plan = ConvPlan(batch: n, groups: 1, outChannels: layer.outChannels, geometry: geometry)
        let forward = seconds { plan.forward(input: x.pointer, weight: weight.pointer, bias: nil, output: y.pointer) }
        let input = seconds {
            dx.pointer.update(repeating: 0, count: dx.count)  // conv2D's backward accumulates into zeros
            plan.backward(input: x.pointer, weight: weight.pointer, outputGradient: g.pointer, inputGradient: dx.pointer, weightGradient: nil)
        }
        let weights = seconds {
            plan.backward(input: x.pointer, weight: weight.pointer, outputGradient: g.pointer, inputGradient: nil, weightGradient: dw.pointer)
        }
        return ConvolutionTiming(forward: forward, inputGradient: input, weightGradient: weights, fusedBackward: nil)
    }
}

/// The machine's single-precision matrix-multiply rate in GFLOP/s on `threads` threads: each
/// thread multiplies its own 512 x 512 matrices with OpenBLAS, as the convolutions' GEMMs do.
public func measureGEMMPeak(threads: Int, minTime: Double) -> Double {
    let side = 512
    var rng = SeededGenerator(seed: 3)
    let a = (0..<threads).map { _ in Tensor.randomNormal([side, side], using: &rng) }
    let b = (0..<threads).map { _ in Tensor.randomNormal([side, side], using: &rng) }
    let c = (0..<threads).map { _ in Tensor.uninitialized([side, side]) }
    let saved = Threads.count
    Threads.set(threads)
    defer { Threads.set(saved) }
    return withExtendedLifetime((a, b, c)) {
        func round() {
            parallelFor(threads, grain: 1) { range in
                for t in range {
                    gemm(m: side, n: side, k: side, a[t].pointer, lda: side, b[t].pointer, ldb: side, c[t].pointer, ldc: side)
                }
            }
        }
        return 2 * Double(side * side * side) * Double(threads) / secondsPerCall(minTime: minTime, round) / 1e9
    }
}

/// Mean seconds per call of `body`, called once to warm up, then until `minTime` seconds have passed.
func secondsPerCall(minTime: Double, _ body: () -> Void) -> Double {
    body()
    var calls = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        body()
        calls += 1
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < minTime
    return elapsed / Double(calls)
}
