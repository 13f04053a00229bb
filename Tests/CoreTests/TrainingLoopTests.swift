import XCTest
@testable import PerceptCore

// End-to-end training on tiny problems: a CNN overfits a handful of samples, runs are
// reproducible from a seed at a fixed thread count, and residual / shared-weight graphs train
// with gradients that match finite differences.

/// `count` 6x6 single-channel images of `classes` classes: class k is a bright bar (horizontal
/// for even k, vertical for odd k, at a class-specific position) on low noise.
private func barImages(count: Int, classes: Int, seed: UInt64) -> (images: Tensor, labels: [Int32]) {
    var rng = SeededGenerator(seed: seed)
    var values: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
        let label = i % classes
        let position = 1 + (label / 2) * 3  // 1 or 4
        for row in 0..<6 {
            for column in 0..<6 {
                let onBar = label % 2 == 0 ? row == position : column == position
                values.append((onBar ? 1 : 0) + 0.2 * (rng.nextUniform() - 0.5))
            }
        }
        labels.append(Int32(label))
    }
    return (Tensor(shape: [count, 1, 6, 6], scalars: values), labels)
}

/// Conv2D 1->4 k3 p1, ReLU, MaxPool2D 2, Flatten, Linear 36->classes.
private func smallCNN(classes: Int, seed: UInt64) -> Sequential {
    var rng = SeededGenerator(seed: seed)
    return Sequential {
        Conv2D(1, 4, kernel: 3, padding: 1, using: &rng)
        ReLU()
        MaxPool2D(kernel: 2)
        Flatten()
        Linear(4 * 3 * 3, classes, using: &rng)
    }
}

/// x + conv2(relu(conv1(x))), channels preserved.
private final class ResidualBlock: Layer {
    let conv1: Conv2D
    let conv2: Conv2D
    init(channels: Int, using rng: inout SeededGenerator) {
        conv1 = Conv2D(channels, channels, kernel: 3, padding: 1, using: &rng)
        conv2 = Conv2D(channels, channels, kernel: 3, padding: 1, using: &rng)
    }
    func callAsFunction(_ x: Tensor) -> Tensor { x + conv2(conv1(x).relu()) }
}

/// One convolution applied twice with residual joins: its parameters enter the graph twice.
private final class SharedConvTwice: Layer {
    let conv: Conv2D
    init(channels: Int, using rng: inout SeededGenerator) {
        conv = Conv2D(channels, channels, kernel: 3, padding: 1, initializer: .xavierUniform, using: &rng)
    }
    func callAsFunction(_ x: Tensor) -> Tensor {
        let y = x + conv(x.tanh())
        return y + conv(y.tanh())
    }
}

final class TrainingLoopTests: XCTestCase {
    /// Full-batch training until the loss drops below `target`; returns (steps taken, final loss).
    private func overfit(_ model: Sequential, _ optimizer: Optimizer, images: Tensor, labels: [Int32],
                         target: Float, maxSteps: Int) -> (steps: Int, loss: Float, initial: Float) {
        var initial: Float = .nan
        for step in 0..<maxSteps {
            let loss = softmaxCrossEntropy(logits: model(images), labels: labels)
            if step == 0 { initial = loss.scalar }
            XCTAssertTrue(loss.scalar.isFinite, "loss diverged at step \(step)")
            if loss.scalar < target { return (step, loss.scalar, initial) }
            optimizer.update(model, along: loss.backward())
        }
        let final = softmaxCrossEntropy(logits: model(images), labels: labels).scalar
        return (maxSteps, final, initial)
    }

    private func accuracy(_ model: Sequential, images: Tensor, labels: [Int32]) -> Float {
        model.setMode(.inference)
        defer { model.setMode(.training) }
        let logits = model(images)
        XCTAssertNil(logits.node)
        let classes = logits.shape[1]
        var correct = 0
        for (i, label) in labels.enumerated() {
            let row = Array(logits.scalars[(i * classes)..<((i + 1) * classes)])
            if row.firstIndex(of: row.max()!)! == Int(label) { correct += 1 }
        }
        return Float(correct) / Float(labels.count)
    }

    func testSmallCNNOverfitsWithAdam() {
        // Pure noise with arbitrary labels: only memorisation brings the loss down.
        let images = uniformTensor([8, 1, 6, 6], seed: 100)
        let labels: [Int32] = [0, 1, 2, 3, 3, 2, 1, 0]
        let model = smallCNN(classes: 4, seed: 101)
        let result = overfit(model, Adam(learningRate: 0.02), images: images, labels: labels, target: 0.05, maxSteps: 150)
        XCTAssertGreaterThan(result.initial, 0.5, "the task should not start solved")
        XCTAssertLessThan(result.loss, 0.05, "Adam: loss \(result.initial) -> \(result.loss) after \(result.steps) steps")
        XCTAssertEqual(accuracy(model, images: images, labels: labels), 1)
    }

    func testSmallCNNOverfitsWithSGD() {
        let (images, labels) = barImages(count: 8, classes: 4, seed: 102)
        let model = smallCNN(classes: 4, seed: 103)
        let result = overfit(model, SGD(learningRate: 0.02, momentum: 0.9), images: images, labels: labels,
                             target: 0.05, maxSteps: 150)
        XCTAssertGreaterThan(result.initial, 0.3, "the task should not start solved")
        XCTAssertLessThan(result.loss, 0.05, "SGD: loss \(result.initial) -> \(result.loss) after \(result.steps) steps")
        XCTAssertEqual(accuracy(model, images: images, labels: labels), 1)
    }

    // MARK: Determinism

    /// Six Adam steps on 16 samples from `seed`, returning every parameter's values.
    private func trainedParameters(seed: UInt64) -> [[Float]] {
        let (images, labels) = barImages(count: 16, classes: 4, seed: seed)
        let model = smallCNN(classes: 4, seed: seed &+ 1)
        let optimizer = Adam(learningRate: 0.01, weightDecay: 0.01)
        for _ in 0..<6 {
            let loss = softmaxCrossEntropy(logits: model(images), labels: labels, labelSmoothing: 0.1)
            optimizer.update(model, along: loss.backward())
        }
        return model.parameters.map(\.value.scalars)
    }

    func testSameSeedGivesBitIdenticalParameters() {
        let saved = Threads.count
        defer { Threads.set(saved) }
        for threads in [1, 2] {
            Threads.set(threads)
            let first = trainedParameters(seed: 500)
            let second = trainedParameters(seed: 500)
            XCTAssertEqual(first.count, 4)
            for (i, (a, b)) in zip(first, second).enumerated() {
                // Compare bit patterns so that -0 / +0 or NaN differences would also show.
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(threads) threads: parameter \(i) differs")
            }
            XCTAssertNotEqual(first, trainedParameters(seed: 501), "\(threads) threads: a different seed should differ")
        }
        XCTAssertEqual(Threads.count, 2)
        Threads.set(saved)
        XCTAssertEqual(Threads.count, saved)
    }

    // MARK: Residual and shared graphs

    func testResidualBlockTrains() {
        var rng = SeededGenerator(seed: 600)
        let block = ResidualBlock(channels: 2, using: &rng)
        let x = uniformTensor([2, 2, 4, 4], seed: 601)
        let target = uniformTensor([2, 2, 4, 4], seed: 602)
        let optimizer = SGD(learningRate: 0.05, momentum: 0.9)
        var losses: [Float] = []
        for _ in 0..<15 {
            let loss = meanSquaredError(block(x), target)
            losses.append(loss.scalar)
            let gradients = loss.backward()
            XCTAssertEqual(gradients.count, 4, "every conv weight and bias gets a gradient")
            optimizer.update(block, along: gradients)
        }
        XCTAssertTrue(losses.allSatisfy(\.isFinite))
        XCTAssertLessThan(losses.last!, 0.7 * losses.first!, "losses \(losses)")
    }

    func testResidualJoinGradientsMatchFiniteDifferences() {
        // x feeds both the identity branch and the convolution.
        let inputs = [uniformTensor([1, 2, 4, 4], seed: 610), uniformTensor([2, 2, 3, 3], seed: 611, low: -0.5, high: 0.5),
                      uniformTensor([2], seed: 612)]
        assertGradientsMatch(inputs) { t in
            (t[0] + t[0].conv2D(t[1], bias: t[2], padding: 1)).tanh()
        }
    }

    func testTensorUsedTwiceGradientsMatchFiniteDifferences() {
        // The same weight in two convolutions, and x * x + x (three uses of one tensor).
        let inputs = [uniformTensor([1, 2, 4, 4], seed: 620), uniformTensor([2, 2, 3, 3], seed: 621, low: -0.4, high: 0.4)]
        assertGradientsMatch(inputs) { t in
            t[0].conv2D(t[1], padding: 1).tanh().conv2D(t[1], padding: 1)
        }
        assertGradientsMatch([uniformTensor([2, 3], seed: 622)]) { t in t[0] * t[0] + t[0] }
    }

    func testSharedParameterGradientMatchesFiniteDifferences() {
        // Module level: Gradients[parameter] for a parameter used twice sums both uses.
        var rng = SeededGenerator(seed: 630)
        let model = SharedConvTwice(channels: 2, using: &rng)
        let x = uniformTensor([1, 2, 3, 3], seed: 631)
        let target = uniformTensor([1, 2, 3, 3], seed: 632)
        func loss() -> Tensor { meanSquaredError(model(x), target) }
        let gradients = loss().backward()

        let epsilon: Float = 1e-2
        for (path, p) in model.namedParameters {
            guard let analytic = gradients[p] else { XCTFail("no gradient for \(path)"); continue }
            XCTAssertEqual(analytic.shape, p.shape)
            XCTAssertTrue(analytic.scalars.contains { $0 != 0 }, path)
            let values = p.value.pointer
            for i in 0..<p.value.count {
                let original = values[i]
                values[i] = original + epsilon
                let plus = Double(loss().scalar)
                values[i] = original - epsilon
                let minus = Double(loss().scalar)
                values[i] = original
                let numeric = (plus - minus) / Double(2 * epsilon)
                let exact = Double(analytic.pointer[i])
                XCTAssertEqual(exact, numeric, accuracy: 2e-3 * max(0.1, abs(numeric)),
                               "\(path) element \(i)")
            }
        }

        // And it trains.
        let optimizer = Adam(learningRate: 0.02)
        let start = loss().scalar
        for _ in 0..<20 { optimizer.update(model, along: loss().backward()) }
        XCTAssertLessThan(loss().scalar, start)
    }
}
