import PerceptCore
import Foundation
import PerceptTasks
import XCTest

/// torchvision's ResNet-18 layout as `--backbone resnet18`: its parameter count, its taps, and
/// a forward pass against the same network written out as plain loops.
final class ResNet18Tests: XCTestCase {
    private func classifier(_ preset: BackbonePreset, side: Int, classes: Int) throws -> Classifier {
        let backbone = preset.configuration(inputChannels: 3, stemStride: preset.stemStride)
        let layers = VectorHeadConfiguration(pooling: .global, inFeatures: 512, outputs: classes)
        return try Classifier(ModelConfiguration(task: .classification, inputChannels: 3, inputHeight: side, inputWidth: side,
                                                 classes: (0..<classes).map(String.init), backbone: backbone,
                                                 head: .init(layers: layers), settings: .init(),
                                                 mean: [0, 0, 0], std: [1, 1, 1]), seed: 1)
    }

    func testParameterCountsAreTorchvisions() throws {
        XCTAssertEqual(try classifier(.resnet18, side: 32, classes: 1000).parameterCount, 11_689_512)
        XCTAssertEqual(try classifier(.resnet34, side: 32, classes: 1000).parameterCount, 21_797_672)
    }

    func testTapsAreNamedWithTheirStrides() throws {
        let backbone = BackbonePreset.resnet18.configuration(inputChannels: 3, stemStride: 2)
        XCTAssertEqual(backbone.featureInfo.map(\.name), ["input", "stem", "stage1", "stage2", "stage3", "stage4"])
        XCTAssertEqual(backbone.featureInfo.map(\.stride), [1, 4, 4, 8, 16, 32])
        XCTAssertEqual(backbone.featureInfo.map(\.channels), [3, 64, 64, 128, 256, 512])
        var rng = SeededGenerator(seed: 2)
        let maps = try backbone.make(using: &rng).features(Tensor.randomNormal([1, 3, 64, 48], using: &rng), through: nil)
        XCTAssertEqual(maps.maps.map(\.shape), [[1, 3, 64, 48], [1, 64, 16, 12], [1, 64, 16, 12], [1, 128, 8, 6], [1, 256, 4, 3], [1, 512, 2, 2]])
    }

    // MARK: the reference: NCHW arrays, one loop per output value

    private struct Map { var c: Int, h: Int, w: Int, v: [Float] }

    private func conv(_ x: Map, _ weight: Tensor, stride: Int, padding: Int) -> Map {
        let (out, k) = (weight.shape[0], weight.shape[2])
        let oh = (x.h + 2 * padding - k) / stride + 1, ow = (x.w + 2 * padding - k) / stride + 1
        let w = weight.scalars
        var y = [Float](repeating: 0, count: out * oh * ow)
        for o in 0..<out { for i in 0..<oh { for j in 0..<ow {
            var sum: Double = 0
            for c in 0..<x.c { for a in 0..<k { for b in 0..<k {
                let r = i * stride - padding + a, s = j * stride - padding + b
                guard r >= 0, r < x.h, s >= 0, s < x.w else { continue }
                sum += Double(x.v[(c * x.h + r) * x.w + s]) * Double(w[((o * x.c + c) * k + a) * k + b])
            } } }
            y[(o * oh + i) * ow + j] = Float(sum)
        } } }
        return Map(c: out, h: oh, w: ow, v: y)
    }

    /// Batch norm with running statistics (inference), optionally followed by ReLU.
    private func norm(_ x: Map, _ state: [String: Tensor], _ path: String, relu: Bool) -> Map {
        let gamma = state[path + ".weight"]!.scalars, beta = state[path + ".bias"]!.scalars
        let mean = state[path + ".runningMean"]!.scalars, variance = state[path + ".runningVariance"]!.scalars
        var y = x
        for c in 0..<x.c {
            let scale = gamma[c] / (variance[c] + 1e-5).squareRoot()
            for i in 0..<(x.h * x.w) {
                let value = (x.v[c * x.h * x.w + i] - mean[c]) * scale + beta[c]
                y.v[c * x.h * x.w + i] = relu ? max(value, 0) : value
            }
        }
        return y
    }

    private func maxPool3x3(_ x: Map) -> Map {
        let oh = (x.h + 2 - 3) / 2 + 1, ow = (x.w + 2 - 3) / 2 + 1
        var y = [Float](repeating: 0, count: x.c * oh * ow)
        for c in 0..<x.c { for i in 0..<oh { for j in 0..<ow {
            var best = -Float.infinity
            for a in 0..<3 { for b in 0..<3 {
                let r = i * 2 - 1 + a, s = j * 2 - 1 + b
                if r >= 0, r < x.h, s >= 0, s < x.w { best = max(best, x.v[(c * x.h + r) * x.w + s]) }
            } }
            y[(c * oh + i) * ow + j] = best
        } } }
        return Map(c: x.c, h: oh, w: ow, v: y)
    }

    func testForwardMatchesLoopsWrittenOut() throws {
        let side = 40
        let model = try classifier(.resnet18, side: side, classes: 7)
        // Batch-norm statistics and affine terms away from their starting values, so a wrong
        // or missing normalisation shows.
        var rng = SeededGenerator(seed: 3)
        for (path, buffer) in model.namedBuffers where path.hasSuffix("runningMean") || path.hasSuffix("runningVariance") {
            let values = Tensor.randomUniform(buffer.value.shape, low: path.hasSuffix("Mean") ? -0.2 : 0.5, high: path.hasSuffix("Mean") ? 0.2 : 1.5, using: &rng)
            buffer.value.pointer.update(from: values.pointer, count: values.count)
        }
        for (path, parameter) in model.namedParameters where path.contains("bn") || path.contains("Norm") {
            let values = Tensor.randomUniform(parameter.value.shape, low: path.hasSuffix("weight") ? 0.5 : -0.2, high: path.hasSuffix("weight") ? 1.5 : 0.2, using: &rng)
            parameter.value.pointer.update(from: values.pointer, count: values.count)
        }
        model.setMode(.inference)
        let image = Tensor.randomNormal([1, 3, side, side], using: &rng)
        let logits = model(image).scalars

        var state: [String: Tensor] = [:]
        for (path, parameter) in model.namedParameters { state[path] = parameter.value }
        for (path, buffer) in model.namedBuffers { state[path] = buffer.value }
        var x = Map(c: 3, h: side, w: side, v: image.scalars)
        x = maxPool3x3(norm(conv(x, state["backbone.stem.weight"]!, stride: 2, padding: 3), state, "backbone.stemNorm", relu: true))
        for stage in 0..<4 {
            for block in 0..<2 {
                let path = "backbone.stages.\(stage).blocks.\(block)"
                let stride = stage > 0 && block == 0 ? 2 : 1
                let h = norm(conv(x, state[path + ".conv1.weight"]!, stride: stride, padding: 1), state, path + ".bn1", relu: true)
                let y = norm(conv(h, state[path + ".conv2.weight"]!, stride: 1, padding: 1), state, path + ".bn2", relu: false)
                let shortcut = state[path + ".projection.weight"].map {
                    norm(conv(x, $0, stride: stride, padding: 0), state, path + ".projectionNorm", relu: false)
                } ?? x
                x = Map(c: y.c, h: y.h, w: y.w, v: zip(y.v, shortcut.v).map { max($0 + $1, 0) })
            }
        }
        let pooled = (0..<x.c).map { c in x.v[(c * x.h * x.w)..<((c + 1) * x.h * x.w)].reduce(0, +) / Float(x.h * x.w) }
        let weight = state["head.output.weight"]!.scalars, bias = state["head.output.bias"]!.scalars
        let expected = (0..<7).map { o in bias[o] + (0..<512).reduce(Float(0)) { $0 + weight[o * 512 + $1] * pooled[$1] } }
        let scale = expected.map(abs).max()!
        for (got, want) in zip(logits, expected) { XCTAssertEqual(got, want, accuracy: 1e-4 * scale) }
    }
}
