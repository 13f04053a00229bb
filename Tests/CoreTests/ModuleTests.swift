import XCTest
@testable import PerceptCore

// Parameter discovery by reflection, mode switching, initialiser statistics and the seeded
// generator.

/// A small nested model: a convolution, an array of layers (one of them a Sequential holding a
/// batch norm), an optional head, an absent optional, a batch norm, and a second reference to the
/// stem (shared, must be visited once).
private final class NestedNet: Layer {
    let stem: Conv2D
    let blocks: [Layer]
    let head: Linear?
    let missing: Conv2D?
    let norm: BatchNorm2D
    let alias: Conv2D
    let dropout: Dropout

    init(seed: UInt64 = 7) {
        var rng = SeededGenerator(seed: seed)
        stem = Conv2D(1, 2, kernel: 3, padding: 1, using: &rng)          // 18 + 2
        blocks = [
            Conv2D(2, 2, kernel: 1, bias: false, using: &rng),            // 4
            ReLU(),
            Dropout(probability: 0.5, seed: 3),
            Sequential([BatchNorm2D(2)]),                                 // 2 + 2
        ]
        head = Linear(2, 3, using: &rng)                                  // 6 + 3
        missing = nil
        norm = BatchNorm2D(2)                                             // 2 + 2
        alias = stem
        dropout = Dropout(probability: 0.25, seed: 11)
    }

    /// [N, 1, H, W] -> [N, 3].
    func callAsFunction(_ x: Tensor) -> Tensor {
        let features = norm(blocks.reduce(stem(x)) { $1($0) })
        return head!(dropout(features).globalAveragePool())
    }
}

final class ModuleTests: XCTestCase {
    func testParameterPathsInDeclarationOrder() {
        let net = NestedNet()
        XCTAssertEqual(net.namedParameters.map(\.path), [
            "stem.weight", "stem.bias",
            "blocks.0.weight",
            "blocks.3.layers.0.weight", "blocks.3.layers.0.bias",
            "head.weight", "head.bias",
            "norm.weight", "norm.bias",
        ])
        XCTAssertEqual(net.namedBuffers.map(\.path), [
            "blocks.2.calls",
            "blocks.3.layers.0.runningMean", "blocks.3.layers.0.runningVariance",
            "norm.runningMean", "norm.runningVariance",
            "dropout.calls",
        ])
        // The paths point at the objects they name.
        let byPath = Dictionary(uniqueKeysWithValues: net.namedParameters.map { ($0.path, $0.parameter) })
        XCTAssertTrue(byPath["stem.weight"] === net.stem.weight)
        XCTAssertTrue(byPath["head.bias"] === net.head!.bias)
        XCTAssertTrue(byPath["blocks.3.layers.0.weight"] === ((net.blocks[3] as! Sequential).layers[0] as! BatchNorm2D).weight)
        XCTAssertEqual(byPath["stem.weight"]?.shape, [2, 1, 3, 3])
        XCTAssertEqual(byPath["blocks.0.weight"]?.shape, [2, 2, 1, 1])
        // 20 (stem) + 4 (1x1 conv, no bias) + 4 (inner batch norm) + 9 (head) + 4 (norm).
        XCTAssertEqual(net.parameterCount, 41)
        // state = parameters and buffers, interleaved in walk order.
        XCTAssertEqual(net.state.count, 9 + 6)
        XCTAssertEqual(net.state.first?.path, "stem.weight")
    }

    func testSharedModuleIsVisitedOnce() {
        let net = NestedNet()
        var visits: [ObjectIdentifier: Int] = [:]
        var paths: [String] = []
        net.walk { path, object in
            visits[ObjectIdentifier(object), default: 0] += 1
            paths.append(path)
        }
        XCTAssertTrue(visits.values.allSatisfy { $0 == 1 }, "some object was visited twice")
        XCTAssertFalse(paths.contains { $0.hasPrefix("alias") }, "shared stem visited again as alias: \(paths)")
        XCTAssertFalse(paths.contains { $0.hasPrefix("missing") })
        XCTAssertEqual(paths.first, "")
        XCTAssertTrue(paths.contains("blocks.1"), "parameterless layers are still visited as modules")
        // Parameters are distinct objects.
        XCTAssertEqual(Set(net.parameters.map(ObjectIdentifier.init)).count, net.parameters.count)
    }

    func testSameStructureGivesSamePaths() {
        // Paths are stable across instances (they key checkpoints).
        XCTAssertEqual(NestedNet(seed: 1).namedParameters.map(\.path), NestedNet(seed: 2).namedParameters.map(\.path))
        // Same seed: same initial values.
        XCTAssertEqual(NestedNet(seed: 5).state.flatMap(\.value.scalars), NestedNet(seed: 5).state.flatMap(\.value.scalars))
    }

    func testSetModeReachesNestedLayersAndStopsRecording() {
        let net = NestedNet()
        let innerNorm = (net.blocks[3] as! Sequential).layers[0] as! BatchNorm2D
        let innerDropout = net.blocks[2] as! Dropout
        let x = uniformTensor([2, 1, 4, 4], seed: 31)

        // Training: every parameter's tensor is the tracked leaf, and a forward builds a graph.
        for p in net.parameters { XCTAssertTrue(p.tensor.node === p.leaf) }
        let trained = net(x)
        XCTAssertNotNil(trained.node)
        XCTAssertEqual(innerDropout.calls.value.scalar, 1)
        XCTAssertEqual(net.dropout.calls.value.scalar, 1)
        // The inner norm sees non-negative (relu) features, so a training forward moves its running mean.
        XCTAssertTrue(innerNorm.runningMean.value.scalars.allSatisfy { $0 > 0 }, "training forward updates running statistics")

        net.setMode(.inference)
        XCTAssertEqual(innerNorm.mode, .inference)
        XCTAssertEqual(net.norm.mode, .inference)
        XCTAssertEqual(innerDropout.mode, .inference)
        XCTAssertEqual(net.dropout.mode, .inference)
        for (path, p) in net.namedParameters { XCTAssertNil(p.tensor.node, "\(path) still tracked in inference") }
        let meanBefore = net.norm.runningMean.value.scalars, innerMeanBefore = innerNorm.runningMean.value.scalars
        let first = net(x), second = net(x)
        XCTAssertNil(first.node, "an inference forward built a graph")
        XCTAssertEqual(first.scalars, second.scalars, "inference is deterministic (no dropout)")
        XCTAssertEqual(innerDropout.calls.value.scalar, 1, "dropout did not run in inference")
        XCTAssertEqual(net.norm.runningMean.value.scalars, meanBefore, "running statistics frozen in inference")
        XCTAssertEqual(innerNorm.runningMean.value.scalars, innerMeanBefore)
        XCTAssertEqual(first.sum().backward().count, 0, "nothing to differentiate")

        net.setMode(.training)
        XCTAssertEqual(innerNorm.mode, .training)
        XCTAssertEqual(net.dropout.mode, .training)
        for p in net.parameters { XCTAssertTrue(p.tensor.node === p.leaf) }
        let again = net(x)
        XCTAssertNotNil(again.node)
        let gradients = again.sum().backward()
        // The head's parameters always receive a gradient; the stem's do too (through both norms).
        XCTAssertNotNil(gradients[net.head!.weight])
        XCTAssertNotNil(gradients[net.stem.weight])
    }

    func testFrozenParameterIsUntrackedInTraining() {
        let net = NestedNet()
        net.stem.weight.isTrainable = false
        XCTAssertNil(net.stem.weight.tensor.node)
        let gradients = net(uniformTensor([2, 1, 4, 4], seed: 32)).sum().backward()
        XCTAssertNil(gradients[net.stem.weight])
        XCTAssertNotNil(gradients[net.head!.weight])
        // Frozen parameters still count as parameters (they are saved and listed).
        XCTAssertEqual(net.parameterCount, 41)
    }

    // MARK: Initialisers

    private func statistics(_ t: Tensor) -> (mean: Double, std: Double, min: Float, max: Float) {
        let v = t.scalars
        let mean = v.reduce(0) { $0 + Double($1) } / Double(v.count)
        let variance = v.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(v.count)
        return (mean, variance.squareRoot(), v.min()!, v.max()!)
    }

    func testKaimingNormalStatistics() {
        var rng = SeededGenerator(seed: 41)
        // 64 x 16 x 3 x 3 = 9216 values, fanIn 144: std sqrt(2 / 144) = 0.11785.
        let w = Initializer.kaimingNormal.make([64, 16, 3, 3], fanIn: 144, fanOut: 576, using: &rng)
        let s = statistics(w)
        let expected = (2.0 / 144).squareRoot()
        // Standard error of the sample std is about std / sqrt(2n) = 0.7%; allow 4%.
        XCTAssertEqual(s.std, expected, accuracy: 0.04 * expected)
        XCTAssertEqual(s.mean, 0, accuracy: 4 * expected / Double(w.count).squareRoot())
        // A normal sample this large reaches past 3 std on both sides.
        XCTAssertGreaterThan(Double(s.max), 3 * expected)
        XCTAssertLessThan(Double(s.min), -3 * expected)

        let xavierNormal = statistics(Initializer.xavierNormal.make([64, 144], fanIn: 144, fanOut: 64, using: &rng))
        XCTAssertEqual(xavierNormal.std, (2.0 / 208).squareRoot(), accuracy: 0.04 * (2.0 / 208).squareRoot())
    }

    func testUniformInitialiserBounds() {
        var rng = SeededGenerator(seed: 42)
        // Xavier: bound sqrt(6 / (fanIn + fanOut)) = sqrt(6 / 150) = 0.2.
        let w = Initializer.xavierUniform.make([50, 100], fanIn: 100, fanOut: 50, using: &rng)
        let s = statistics(w)
        XCTAssertGreaterThanOrEqual(s.min, -0.2)
        XCTAssertLessThanOrEqual(s.max, 0.2)
        XCTAssertLessThan(s.min, -0.19, "the sample should nearly reach the lower bound")
        XCTAssertGreaterThan(s.max, 0.19, "the sample should nearly reach the upper bound")
        // Uniform(-b, b) has std b / sqrt(3).
        XCTAssertEqual(s.std, 0.2 / 3.0.squareRoot(), accuracy: 0.04 * 0.2 / 3.0.squareRoot())
        XCTAssertEqual(s.mean, 0, accuracy: 0.01)

        // Kaiming uniform: bound sqrt(6 / fanIn) = sqrt(6 / 24) = 0.5.
        let k = statistics(Initializer.kaimingUniform.make([200, 24], fanIn: 24, fanOut: 200, using: &rng))
        XCTAssertGreaterThanOrEqual(k.min, -0.5)
        XCTAssertLessThanOrEqual(k.max, 0.5)
        XCTAssertLessThan(k.min, -0.48)
        XCTAssertGreaterThan(k.max, 0.48)

        XCTAssertEqual(Initializer.zeros.make([3, 4], fanIn: 4, fanOut: 3, using: &rng).scalars, [Float](repeating: 0, count: 12))
    }

    func testLayersUseTheirInitialiser() {
        var rng = SeededGenerator(seed: 43)
        // Conv2D default: kaiming normal with fanIn = in * k * k = 8 * 9 = 72.
        let conv = Conv2D(8, 64, kernel: 3, using: &rng)
        XCTAssertEqual(statistics(conv.weight.value).std, (2.0 / 72).squareRoot(), accuracy: 0.05 * (2.0 / 72).squareRoot())
        XCTAssertEqual(conv.bias?.value.scalars, [Float](repeating: 0, count: 64))
        // Linear default: kaiming uniform, bound sqrt(6 / 32).
        let linear = Linear(32, 128, using: &rng)
        let bound = Float((6.0 / 32).squareRoot())
        XCTAssertTrue(linear.weight.value.scalars.allSatisfy { abs($0) <= bound })
    }

    // MARK: Seeded generator

    func testSeededGeneratorDeterminism() {
        var a = SeededGenerator(seed: 2024), b = SeededGenerator(seed: 2024), c = SeededGenerator(seed: 2025)
        let streamA = (0..<100).map { _ in a.next() }
        let streamB = (0..<100).map { _ in b.next() }
        let streamC = (0..<100).map { _ in c.next() }
        XCTAssertEqual(streamA, streamB)
        XCTAssertNotEqual(streamA, streamC)
        // Neighbouring seeds give unrelated streams, not shifted copies of each other.
        XCTAssertTrue(Set(streamA).isDisjoint(with: streamC))
        XCTAssertEqual(Set(streamA).count, 100, "no repeats in a short stream")
        // Seed 0 is usable (splitmix avoids the all-zero xoshiro state).
        var zero = SeededGenerator(seed: 0)
        XCTAssertNotEqual((0..<4).map { _ in zero.next() }, [0, 0, 0, 0])
        // Copies continue identically (value semantics).
        var copy = a
        XCTAssertEqual(copy.next(), a.next())
    }

    func testUniformAndNormalSamples() {
        var rng = SeededGenerator(seed: 77)
        let n = 20_000
        var sum = 0.0, sumSquares = 0.0
        for _ in 0..<n {
            let u = rng.nextUniform()
            XCTAssertTrue(u >= 0 && u < 1)
            sum += Double(u); sumSquares += Double(u) * Double(u)
        }
        // U(0, 1): mean 1/2, variance 1/12.
        XCTAssertEqual(sum / Double(n), 0.5, accuracy: 0.01)
        XCTAssertEqual(sumSquares / Double(n) - pow(sum / Double(n), 2), 1.0 / 12, accuracy: 0.003)

        sum = 0; sumSquares = 0
        var beyondTwo = 0
        for _ in 0..<n {
            let z = Double(rng.nextNormal())
            XCTAssertTrue(z.isFinite)
            sum += z; sumSquares += z * z
            if abs(z) > 2 { beyondTwo += 1 }
        }
        let mean = sum / Double(n), variance = sumSquares / Double(n) - mean * mean
        // Standard errors: 0.007 for the mean, 0.01 for the variance.
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        // P(|z| > 2) = 4.55%.
        XCTAssertEqual(Double(beyondTwo) / Double(n), 0.0455, accuracy: 0.006)

        var same1 = SeededGenerator(seed: 9), same2 = SeededGenerator(seed: 9)
        XCTAssertEqual(Tensor.randomNormal([16], using: &same1).scalars, Tensor.randomNormal([16], using: &same2).scalars)
    }
}
