import XCTest
@testable import PerceptCore

// Optimizer updates checked against hand-computed values of the published update rules
// (PyTorch SGD, Kingma & Ba Adam, Loshchilov & Hutter AdamW), optimizer state round trips,
// and learning-rate schedules.

/// A flat list of parameters: paths "list.0", "list.1", ...
private final class ParameterList: Module {
    let list: [Parameter]
    init(_ list: [Parameter]) { self.list = list }
}

/// A nested module for path-keyed state: "inner.weight", "inner.bias", "scale".
private final class Inner: Module {
    let weight: Parameter
    let bias: Parameter
    init(weight: [Float], bias: [Float]) {
        self.weight = Parameter(Tensor(shape: [2, 3], scalars: weight))
        self.bias = Parameter(Tensor(shape: [3], scalars: bias))
    }
}

private final class Outer: Module {
    let inner: Inner
    let scale: Parameter
    init() {
        inner = Inner(weight: [0.5, -1, 1.5, 2, -0.25, 0.75], bias: [0.1, -0.2, 0.3])
        scale = Parameter(Tensor(shape: [1, 3], scalars: [1, 2, -1]))
    }

    /// A loss whose gradients depend on the current parameters, so each step sees new gradients.
    func loss() -> Tensor {
        let w = inner.weight.tensor, b = inner.bias.tensor, s = scale.tensor
        let c = Tensor(shape: [2, 3], scalars: [1, -2, 0.5, 0.3, 1, -1])
        return (w * w * c).sum() + (b * b * b).sum() + (s * s * Tensor(shape: [1, 3], scalars: [0.2, -0.1, 0.4])).sum()
            + (w * c).sum() + (s * Tensor(shape: [1, 3], scalars: [1, 1, -3])).sum()
    }
}

/// Gradients equal to `constants[i]` for `parameters[i]`: the gradient of sum(p * c).
private func fixedGradients(_ pairs: [(Parameter, [Float])]) -> Gradients {
    var loss: Tensor?
    for (p, c) in pairs {
        let term = (p.tensor * Tensor(shape: p.shape, scalars: c)).sum()
        loss = loss.map { $0 + term } ?? term
    }
    return loss!.backward()
}

private let p0: [Float] = [1, -2, 0.5]
private let g0: [Float] = [0.5, -1, 2]

final class OptimizerTests: XCTestCase {
    // MARK: SGD

    /// Runs `steps` updates of a [1, 3] (or [3]) parameter starting at p0 with the fixed gradient g0,
    /// returning the parameter after each step.
    private func sgdTrajectory(_ sgd: SGD, steps: Int, shape: [Int] = [1, 3]) -> [[Float]] {
        let p = Parameter(Tensor(shape: shape, scalars: p0))
        let model = ParameterList([p])
        var out: [[Float]] = []
        for _ in 0..<steps {
            sgd.update(model, along: fixedGradients([(p, g0)]))
            out.append(p.value.scalars)
        }
        return out
    }

    func testSGDWithoutMomentum() {
        // p -= 0.1 * g with g = [0.5, -1, 2]: p moves by [-0.05, 0.1, -0.2] each step.
        let t = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0), steps: 3)
        assertClose(t[0], [0.95, -1.9, 0.3])
        assertClose(t[1], [0.9, -1.8, 0.1])
        assertClose(t[2], [0.85, -1.7, -0.1])
    }

    func testSGDWithMomentum() {
        // buf_1 = g, buf_2 = 1.9 g, buf_3 = 2.71 g; p_t = p_{t-1} - 0.1 buf_t.
        let t = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9), steps: 3)
        assertClose(t[0], [0.95, -1.9, 0.3])
        assertClose(t[1], [0.855, -1.71, -0.08])
        assertClose(t[2], [0.7195, -1.439, -0.622])
    }

    func testSGDNesterov() {
        // Step 1: buf = g, p -= 0.1 (g + 0.9 g) = 0.19 g.  Step 2: buf = 1.9 g, p -= 0.1 (g + 1.71 g) = 0.271 g.
        let t = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9, nesterov: true), steps: 2)
        assertClose(t[0], [0.905, -1.81, 0.12])
        assertClose(t[1], [0.7695, -1.539, -0.422])
    }

    func testSGDWeightDecay() {
        // No momentum: d = g + 0.1 p. Step 1: d = [0.6, -1.2, 2.05] -> p = [0.94, -1.88, 0.295];
        // step 2: d = [0.594, -1.188, 2.0295] -> p = [0.8806, -1.7612, 0.09205].
        let plain = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0, weightDecay: 0.1), steps: 2)
        assertClose(plain[0], [0.94, -1.88, 0.295])
        assertClose(plain[1], [0.8806, -1.7612, 0.09205])

        // Momentum 0.9: buf_1 = [0.6, -1.2, 2.05]; buf_2 = 0.9 buf_1 + [0.594, -1.188, 2.0295]
        // = [1.134, -2.268, 3.8745]; p_2 = p_1 - 0.1 buf_2.
        let momentum = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1), steps: 2)
        assertClose(momentum[0], [0.94, -1.88, 0.295])
        assertClose(momentum[1], [0.8266, -1.6532, -0.09245])

        // Nesterov: p_1 = p_0 - 0.1 (d_1 + 0.9 d_1) = [0.886, -1.772, 0.1105];
        // d_2 = g + 0.1 p_1 = [0.5886, -1.1772, 2.01105], buf_2 = [1.1286, -2.2572, 3.85605],
        // p_2 = p_1 - 0.1 (d_2 + 0.9 buf_2).
        let nesterov = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.1), steps: 2)
        assertClose(nesterov[0], [0.886, -1.772, 0.1105])
        assertClose(nesterov[1], [0.725566, -1.451132, -0.4376495])
    }

    func testSGDWeightDecaySkipsVectorsUnlessAsked() {
        // A rank-1 parameter is not decayed by default: same trajectory as without decay.
        let vector = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1), steps: 2, shape: [3])
        assertClose(vector[0], [0.95, -1.9, 0.3])
        assertClose(vector[1], [0.855, -1.71, -0.08])
        // With decaysVectors it is decayed like the matrix.
        let decayed = sgdTrajectory(SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1, decaysVectors: true),
                                    steps: 2, shape: [3])
        assertClose(decayed[0], [0.94, -1.88, 0.295])
        assertClose(decayed[1], [0.8266, -1.6532, -0.09245])
    }

    /// `rateScales` gives the parameters under a prefix their own learning rate: with "inner."
    /// at 0.5, inner.weight and inner.bias follow the trajectory of the whole model at half the
    /// learning rate and `scale` that at the full rate (Outer's loss is separable by parameter).
    func testRateScalesGiveAPrefixItsOwnLearningRate() {
        func run(_ make: (Float) -> SlotOptimizer & Optimizer, lr: Float, scales: [(String, Float)]) -> [String: [Float]] {
            let model = Outer(), optimizer = make(lr)
            optimizer.rateScales = scales.map { (prefix: $0.0, scale: $0.1) }
            for _ in 0..<3 { optimizer.update(model, along: model.loss().backward()) }
            return ["inner.weight": model.inner.weight.value.scalars, "inner.bias": model.inner.bias.value.scalars,
                    "scale": model.scale.value.scalars]
        }
        let makers: [(String, (Float) -> SlotOptimizer & Optimizer)] = [
            ("sgd", { SGD(learningRate: $0, momentum: 0.9, nesterov: true, weightDecay: 0.1) }),
            ("adamw", { Adam.adamW(learningRate: $0, weightDecay: 0.1) }),
        ]
        for (name, make) in makers {
            let scaled = run(make, lr: 0.1, scales: [("inner.", 0.5)])
            let half = run(make, lr: 0.05, scales: []), full = run(make, lr: 0.1, scales: [])
            XCTAssertNotEqual(half["inner.weight"]!, full["inner.weight"]!, name)
            assertClose(scaled["inner.weight"]!, half["inner.weight"]!, tolerance: 1e-6, "\(name) inner.weight")
            assertClose(scaled["inner.bias"]!, half["inner.bias"]!, tolerance: 1e-6, "\(name) inner.bias")
            assertClose(scaled["scale"]!, full["scale"]!, tolerance: 1e-6, "\(name) scale")
        }
    }

    // MARK: Adam

    /// Adam / AdamW written out in Double from the published algorithm (PyTorch placement of epsilon:
    /// p -= lr * m_hat / (sqrt(v_hat) + eps)); returns the parameter after every step.
    private func adamReference(start: [Double], gradients: [[Double]], lr: Double, beta1: Double, beta2: Double,
                               epsilon: Double, weightDecay: Double, decoupled: Bool) -> [[Double]] {
        var p = start, m = [Double](repeating: 0, count: start.count), v = m
        var out: [[Double]] = []
        for (t, g) in gradients.enumerated() {
            let step = Double(t + 1)
            for i in p.indices {
                let grad = g[i] + (decoupled ? 0 : weightDecay * p[i])
                m[i] = beta1 * m[i] + (1 - beta1) * grad
                v[i] = beta2 * v[i] + (1 - beta2) * grad * grad
                let mHat = m[i] / (1 - pow(beta1, step)), vHat = v[i] / (1 - pow(beta2, step))
                if decoupled { p[i] *= 1 - lr * weightDecay }
                p[i] -= lr * mHat / (vHat.squareRoot() + epsilon)
            }
            out.append(p)
        }
        return out
    }

    private let varyingGradients: [[Float]] = [[0.5, -1, 2], [0.1, -3, 1], [-0.4, 0.2, 0.05]]

    private func adamTrajectory(_ adam: Adam, gradients: [[Float]], shape: [Int] = [1, 3]) -> [[Float]] {
        let p = Parameter(Tensor(shape: shape, scalars: p0))
        let model = ParameterList([p])
        return gradients.map { g in
            adam.update(model, along: fixedGradients([(p, g)]))
            return p.value.scalars
        }
    }

    private func assertMatchesReference(_ actual: [[Float]], _ expected: [[Double]], tolerance: Float = 2e-5,
                                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, file: file, line: line)
        for (step, (a, e)) in zip(actual, expected).enumerated() {
            assertClose(a, e.map { Float($0) }, tolerance: tolerance, "step \(step + 1)", file: file, line: line)
        }
    }

    /// A parameter large enough that the update splits it between threads (100,000 elements):
    /// every element equals the update rule computed element by element, bit for bit.
    func testLargeParametersUpdateLikeTheElementwiseRule() {
        let n = 100_000
        var rng = SeededGenerator(seed: 5)
        let start = Tensor.randomNormal([n], using: &rng).scalars
        let gradient = Tensor.randomNormal([n], using: &rng).scalars
        for optimizer in [SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01, decaysVectors: true),
                          Adam(learningRate: 0.01, weightDecay: 0.01, decoupledWeightDecay: true, decaysVectors: true)] as [Optimizer] {
            let p = Parameter(Tensor(shape: [n], scalars: start))
            for _ in 0..<2 { optimizer.update(ParameterList([p]), along: fixedGradients([(p, gradient)])) }
            var w = start, a = [Float](repeating: 0, count: n), b = a
            for step in 1...2 {
                for i in 0..<n {
                    if let sgd = optimizer as? SGD {
                        let d = gradient[i] + 0.01 * w[i]
                        a[i] = sgd.momentum * a[i] + d
                        w[i] -= 0.1 * (d + sgd.momentum * a[i])
                    } else {
                        let (b1, b2): (Float, Float) = (0.9, 0.999)
                        let stepSize = 0.01 / (1 - pow(b1, Float(step))), correction2 = 1 - pow(b2, Float(step))
                        a[i] = b1 * a[i] + (1 - b1) * gradient[i]
                        b[i] = b2 * b[i] + (1 - b2) * gradient[i] * gradient[i]
                        w[i] = w[i] * (1 - 0.01 * 0.01) - stepSize * a[i] / ((b[i] / correction2).squareRoot() + 1e-8)
                    }
                }
            }
            XCTAssertEqual(p.value.scalars, w, optimizer.name)
        }
    }

    func testAdamFirstStepsByHand() {
        // Step 1 of bias-corrected Adam: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps).
        // With eps = 0.5, lr = 0.1: [0.05/1, -0.1/1.5, 0.2/2.5] -> p = [0.95, -1.9333333, 0.42].
        let withEpsilon = adamTrajectory(Adam(learningRate: 0.1, epsilon: 0.5), gradients: [g0])
        assertClose(withEpsilon[0], [0.95, -1.9333333, 0.42])
        // With a constant gradient m_hat = g and v_hat = g^2 at every step: p moves by lr * sign(g).
        let constant = adamTrajectory(Adam(learningRate: 0.1), gradients: [g0, g0, g0])
        assertClose(constant[0], [0.9, -1.9, 0.4])
        assertClose(constant[1], [0.8, -1.8, 0.3])
        assertClose(constant[2], [0.7, -1.7, 0.2])
    }

    func testAdamMatchesDoubleReference() {
        let actual = adamTrajectory(Adam(learningRate: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-3), gradients: varyingGradients)
        let expected = adamReference(start: p0.map(Double.init), gradients: varyingGradients.map { $0.map(Double.init) },
                                     lr: 0.05, beta1: 0.8, beta2: 0.95, epsilon: 1e-3, weightDecay: 0, decoupled: false)
        assertMatchesReference(actual, expected)
    }

    func testAdamCoupledWeightDecayMatchesDoubleReference() {
        // Plain Adam with weight decay adds wd * p to the gradient (L2), decaying through the moments.
        // Step 1 by hand: g + 0.1 p = [0.6, -1.2, 2.05], so p -= 0.1 * sign -> [0.9, -1.9, 0.4].
        let actual = adamTrajectory(Adam(learningRate: 0.1, weightDecay: 0.1), gradients: varyingGradients)
        assertClose(actual[0], [0.9, -1.9, 0.4])
        let expected = adamReference(start: p0.map(Double.init), gradients: varyingGradients.map { $0.map(Double.init) },
                                     lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1, decoupled: false)
        assertMatchesReference(actual, expected)
    }

    func testAdamWDecoupledWeightDecay() {
        // AdamW: p *= 1 - lr * wd, then the Adam step. Constant gradient, lr = 0.1, wd = 0.1:
        // p_1 = 0.99 p_0 - 0.1 sign(g) = [0.89, -1.88, 0.395]; p_2 = 0.99 p_1 - 0.1 sign(g) = [0.7811, -1.7612, 0.29105].
        let adamW = Adam.adamW(learningRate: 0.1, weightDecay: 0.1)
        XCTAssertEqual(adamW.name, "adamw")
        let constant = adamTrajectory(adamW, gradients: [g0, g0])
        assertClose(constant[0], [0.89, -1.88, 0.395])
        assertClose(constant[1], [0.7811, -1.7612, 0.29105])

        let actual = adamTrajectory(Adam.adamW(learningRate: 0.05, weightDecay: 0.2), gradients: varyingGradients)
        let expected = adamReference(start: p0.map(Double.init), gradients: varyingGradients.map { $0.map(Double.init) },
                                     lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.2, decoupled: true)
        assertMatchesReference(actual, expected)
    }

    func testAdamWeightDecaySkipsVectorsUnlessAsked() {
        let noDecay = adamReference(start: p0.map(Double.init), gradients: varyingGradients.map { $0.map(Double.init) },
                                    lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0, decoupled: true)
        let decay = adamReference(start: p0.map(Double.init), gradients: varyingGradients.map { $0.map(Double.init) },
                                  lr: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.2, decoupled: true)
        let vector = adamTrajectory(Adam.adamW(learningRate: 0.05, weightDecay: 0.2), gradients: varyingGradients, shape: [3])
        assertMatchesReference(vector, noDecay)
        let decayed = adamTrajectory(Adam(learningRate: 0.05, weightDecay: 0.2, decoupledWeightDecay: true, decaysVectors: true),
                                     gradients: varyingGradients, shape: [3])
        assertMatchesReference(decayed, decay)
    }

    // MARK: Parameters that must not move

    func testParametersWithoutGradientOrFrozenAreUntouched() {
        let optimizers: [(String, () -> Optimizer)] = [
            ("sgd", { SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1) }),
            ("adam", { Adam(learningRate: 0.1, weightDecay: 0.1) }),
            ("adamw", { Adam.adamW(learningRate: 0.1, weightDecay: 0.1) }),
        ]
        for (name, make) in optimizers {
            let used = Parameter(Tensor(shape: [1, 3], scalars: p0))
            let unused = Parameter(Tensor(shape: [1, 3], scalars: p0))
            let frozen = Parameter(Tensor(shape: [1, 3], scalars: p0))
            frozen.isTrainable = false
            let model = ParameterList([used, unused, frozen])
            let optimizer = make()
            // A frozen parameter's tensor is untracked, so it gets no gradient even though the loss uses it.
            XCTAssertNil(frozen.tensor.node, name)
            let gradients = fixedGradients([(used, g0), (frozen, g0)])
            XCTAssertNil(gradients[unused], name)
            XCTAssertNil(gradients[frozen], name)
            optimizer.update(model, along: gradients)
            optimizer.update(model, along: gradients)
            XCTAssertNotEqual(used.value.scalars, p0, name)
            XCTAssertEqual(unused.value.scalars, p0, name)
            XCTAssertEqual(frozen.value.scalars, p0, name)
            // No state is created for parameters that were never updated.
            let names = optimizer.stateTensors(of: model).map(\.name)
            XCTAssertFalse(names.contains { $0.hasSuffix("/list.1") || $0.hasSuffix("/list.2") }, "\(name): \(names)")
        }
    }

    func testFrozenAfterTheBackwardPassIsStillSkipped() {
        // The gradient exists (computed while trainable), but the optimizer must honour isTrainable.
        for optimizer: Optimizer in [SGD(learningRate: 0.1, momentum: 0.9), Adam(learningRate: 0.1)] {
            let p = Parameter(Tensor(shape: [1, 3], scalars: p0))
            let model = ParameterList([p])
            let gradients = fixedGradients([(p, g0)])
            XCTAssertNotNil(gradients[p])
            p.isTrainable = false
            optimizer.update(model, along: gradients)
            XCTAssertEqual(p.value.scalars, p0, optimizer.name)
        }
    }

    // MARK: State

    func testStateTensorNames() {
        let model = Outer()
        let sgd = SGD(learningRate: 0.01, momentum: 0.9)
        XCTAssertTrue(sgd.stateTensors(of: model).isEmpty, "no state before the first step")
        sgd.update(model, along: model.loss().backward())
        XCTAssertEqual(sgd.stateTensors(of: model).map(\.name),
                       ["momentum/inner.weight", "momentum/inner.bias", "momentum/scale"])
        for (name, value) in sgd.stateTensors(of: model) {
            let path = String(name.dropFirst("momentum/".count))
            XCTAssertEqual(value.shape, model.namedParameters.first { $0.path == path }!.parameter.shape, name)
        }
        // Without momentum SGD keeps no state.
        let plain = SGD(learningRate: 0.01, momentum: 0)
        plain.update(model, along: model.loss().backward())
        XCTAssertTrue(plain.stateTensors(of: model).isEmpty)

        let adam = Adam()
        adam.update(model, along: model.loss().backward())
        XCTAssertEqual(adam.stateTensors(of: model).map(\.name),
                       ["first_moment/inner.weight", "second_moment/inner.weight",
                        "first_moment/inner.bias", "second_moment/inner.bias",
                        "first_moment/scale", "second_moment/scale"])
    }

    func testFirstMomentAfterOneStepIsScaledGradient() {
        let p = Parameter(Tensor(shape: [1, 3], scalars: p0))
        let model = ParameterList([p])
        let adam = Adam(beta1: 0.9, beta2: 0.99)
        adam.update(model, along: fixedGradients([(p, g0)]))
        let state = Dictionary(adam.stateTensors(of: model).map { ($0.name, $0.value.scalars) }, uniquingKeysWith: { a, _ in a })
        assertClose(state["first_moment/list.0"] ?? [], [0.05, -0.1, 0.2])      // 0.1 g
        assertClose(state["second_moment/list.0"] ?? [], [0.0025, 0.01, 0.04])  // 0.01 g^2
        XCTAssertEqual(adam.step, 1)
    }

    /// Trains `reference` for 5 steps uninterrupted; trains a twin for 2 steps, saves the optimizer
    /// state (copied, as a checkpoint would), restores it into a fresh optimizer on a fresh copy of
    /// the model, and trains 3 more steps: the parameters must be bit-identical.
    private func checkResumption(_ make: () -> Optimizer, file: StaticString = #filePath, line: UInt = #line) {
        let reference = Outer(), referenceOptimizer = make()
        for _ in 0..<5 { referenceOptimizer.update(reference, along: reference.loss().backward()) }

        let first = Outer(), firstOptimizer = make()
        for _ in 0..<2 { firstOptimizer.update(first, along: first.loss().backward()) }
        let saved = Dictionary(firstOptimizer.stateTensors(of: first).map { ($0.name, $0.value.copy()) },
                               uniquingKeysWith: { a, _ in a })
        let savedParameters = first.namedParameters.map { $0.parameter.value.copy() }
        let savedStep = firstOptimizer.step
        XCTAssertEqual(savedStep, 2, file: file, line: line)

        func resumed(loading: Bool) -> Outer {
            let model = Outer()
            for (p, v) in zip(model.parameters, savedParameters) { p.value = v.copy() }
            let optimizer = make()
            if loading {
                XCTAssertNoThrow(try optimizer.loadState(saved, step: savedStep, of: model), file: file, line: line)
                XCTAssertEqual(optimizer.step, savedStep, file: file, line: line)
            }
            for _ in 0..<3 { optimizer.update(model, along: model.loss().backward()) }
            return model
        }
        let second = resumed(loading: true)
        for ((path, a), b) in zip(reference.namedParameters, second.parameters) {
            XCTAssertEqual(a.value.scalars, b.value.scalars, "\(make().name) \(path) after resuming", file: file, line: line)
        }
        // Control: without the state the continuation differs, so the comparison above means something.
        let cold = resumed(loading: false)
        XCTAssertNotEqual(reference.parameters.flatMap(\.value.scalars), cold.parameters.flatMap(\.value.scalars),
                          "\(make().name): resuming without state should differ", file: file, line: line)
    }

    func testLoadStateResumesBitIdentically() {
        checkResumption { SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 0.01) }
        checkResumption { SGD(learningRate: 0.05, momentum: 0.8, nesterov: true, weightDecay: 0.01, decaysVectors: true) }
        checkResumption { Adam(learningRate: 0.05, weightDecay: 0.01) }
        checkResumption { Adam.adamW(learningRate: 0.05, weightDecay: 0.1) }
    }

    func testLoadStateErrors() {
        let model = Outer()
        let sgd = SGD(learningRate: 0.1, momentum: 0.9)
        let adam = Adam()
        let good = Tensor.zeros([2, 3])
        func assertFails(_ optimizer: Optimizer, _ state: [String: Tensor], mentioning text: String,
                         line: UInt = #line) {
            XCTAssertThrowsError(try optimizer.loadState(state, step: 3, of: model), line: line) { error in
                XCTAssertTrue(error is OptimizerStateError, "\(type(of: error))", line: line)
                XCTAssertTrue("\(error)".contains(text), "'\(error)' should mention '\(text)'", line: line)
            }
        }
        assertFails(sgd, ["velocity/inner.weight": good], mentioning: "velocity")
        assertFails(sgd, ["first_moment/inner.weight": good], mentioning: "first_moment")
        assertFails(adam, ["momentum/inner.weight": good], mentioning: "momentum")
        assertFails(sgd, ["momentum/inner.nothing": good], mentioning: "inner.nothing")
        assertFails(adam, ["first_moment/weight": good], mentioning: "weight")
        assertFails(sgd, ["momentum/inner.weight": Tensor.zeros([3, 2])], mentioning: "[3, 2]")
        assertFails(adam, ["second_moment/inner.bias": Tensor.zeros([1, 3])], mentioning: "[1, 3]")
        assertFails(sgd, ["inner.weight": good], mentioning: "inner.weight")
        // SGD without momentum has no slots at all.
        assertFails(SGD(learningRate: 0.1, momentum: 0), ["momentum/inner.weight": good], mentioning: "momentum")
        // The valid form loads.
        XCTAssertNoThrow(try sgd.loadState(["momentum/inner.weight": good], step: 7, of: model))
        XCTAssertEqual(sgd.step, 7)
    }

    func testLoadStateCopiesTheTensors() throws {
        // The optimizer updates its slots in place; it must not write into the caller's tensors.
        let model = Outer()
        let adam = Adam(learningRate: 0.1)
        let m = Tensor(shape: [2, 3], repeating: 0.5)
        try adam.loadState(["first_moment/inner.weight": m], step: 1, of: model)
        adam.update(model, along: model.loss().backward())
        XCTAssertEqual(m.scalars, [Float](repeating: 0.5, count: 6))
    }

    // MARK: Learning-rate schedules

    func testConstantSchedule() {
        let s = LearningRateSchedule(base: 0.1)
        for step in [0, 1, 10, 1000] { XCTAssertEqual(s(step), 0.1, "step \(step)") }
    }

    func testStepDecaySchedule() {
        let s = LearningRateSchedule(base: 0.1, shape: .step(every: 10, factor: 0.5))
        XCTAssertEqual(s(0), 0.1, accuracy: 1e-7)
        XCTAssertEqual(s(9), 0.1, accuracy: 1e-7)
        XCTAssertEqual(s(10), 0.05, accuracy: 1e-7)
        XCTAssertEqual(s(19), 0.05, accuracy: 1e-7)
        XCTAssertEqual(s(20), 0.025, accuracy: 1e-7)
        XCTAssertEqual(s(35), 0.0125, accuracy: 1e-7)
    }

    func testCosineSchedule() {
        let s = LearningRateSchedule(base: 0.1, shape: .cosine(totalSteps: 100, minimum: 0.001))
        XCTAssertEqual(s(0), 0.1, accuracy: 1e-7)
        // Midpoint: min + (base - min) / 2.
        XCTAssertEqual(s(50), 0.0505, accuracy: 1e-6)
        // A quarter of the way: min + (base - min) (1 + cos(pi/4)) / 2.
        XCTAssertEqual(s(25), 0.001 + 0.099 * Float((1 + 0.5.squareRoot()) / 2), accuracy: 1e-6)
        XCTAssertEqual(s(100), 0.001, accuracy: 1e-7)
        XCTAssertEqual(s(250), 0.001, accuracy: 1e-7, "stays at the minimum past the end")
        // Monotone non-increasing.
        for step in 0..<100 { XCTAssertLessThanOrEqual(s(step + 1), s(step), "step \(step)") }
    }

    func testLinearWarmup() {
        let s = LearningRateSchedule(base: 0.2, warmupSteps: 4)
        // base * (step + 1) / warmup for steps 0..<4, then base.
        XCTAssertEqual(s(0), 0.05, accuracy: 1e-7)
        XCTAssertEqual(s(1), 0.1, accuracy: 1e-7)
        XCTAssertEqual(s(2), 0.15, accuracy: 1e-7)
        XCTAssertEqual(s(3), 0.2, accuracy: 1e-7)
        XCTAssertEqual(s(4), 0.2, accuracy: 1e-7)
        XCTAssertEqual(s(100), 0.2, accuracy: 1e-7)

        // Warm-up then cosine: the cosine starts at base when warm-up ends and reaches the minimum at totalSteps.
        let c = LearningRateSchedule(base: 0.1, shape: .cosine(totalSteps: 110, minimum: 0), warmupSteps: 10)
        XCTAssertEqual(c(0), 0.01, accuracy: 1e-7)
        XCTAssertEqual(c(9), 0.1, accuracy: 1e-7)
        XCTAssertEqual(c(10), 0.1, accuracy: 1e-7)
        XCTAssertEqual(c(60), 0.05, accuracy: 1e-6)
        XCTAssertEqual(c(110), 0, accuracy: 1e-7)
    }
}
