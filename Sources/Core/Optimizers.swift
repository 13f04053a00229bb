import Foundation

/// Updates a module's parameters from their gradients.
///
/// State (momentum buffers, Adam moments, step count) is kept per parameter and can be read
/// and restored by parameter path, so a checkpoint resumes training exactly.
public protocol Optimizer: AnyObject {
    var learningRate: Float { get set }
    /// Number of `update` calls so far.
    var step: Int { get }
    /// Applies one step to every trainable parameter of `model` that has a gradient.
    func update(_ model: Module, along gradients: Gradients)
    /// Named state tensors ("<slot>/<parameter path>") and scalars, for checkpoints.
    func stateTensors(of model: Module) -> [(name: String, value: Tensor)]
    /// Restores what `stateTensors` returned; names that match no parameter are an error.
    func loadState(_ tensors: [String: Tensor], step: Int, of model: Module) throws
    /// Name and hyper-parameters, for checkpoints and logs.
    var configuration: [String: Double] { get }
    var name: String { get }
}

public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Shared bookkeeping: per-parameter slot tensors keyed by parameter identity.
public class SlotOptimizer {
    public var learningRate: Float
    public var weightDecay: Float
    /// When false (the default), biases and normalisation scales (rank-1 parameters) are not decayed.
    public var decaysVectors: Bool
    /// Learning-rate multipliers for the parameters whose path starts with a prefix (the first
    /// match counts; others get 1), e.g. `[("backbone.", 0.5)]` to fine-tune a pretrained
    /// backbone more gently than a fresh head, as PyTorch's parameter groups do.
    public var rateScales: [(prefix: String, scale: Float)] = []
    public internal(set) var step = 0
    var slots: [String: [ObjectIdentifier: Tensor]] = [:]
    let slotNames: [String]
    /// The module last updated and its parameters: the reflection walk is made once, not per step.
    private weak var indexedModule: AnyObject?
    private var indexedParameters: [(path: String, parameter: Parameter)] = []

    init(learningRate: Float, weightDecay: Float, decaysVectors: Bool, slotNames: [String]) {
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.decaysVectors = decaysVectors
        self.slotNames = slotNames
        for name in slotNames { slots[name] = [:] }
    }

    func slot(_ name: String, for parameter: Parameter) -> Tensor {
        let id = ObjectIdentifier(parameter)
        if let t = slots[name]![id] { return t }
        let t = Tensor.zeros(parameter.shape)
        slots[name]![id] = t
        return t
    }

    /// `model`'s parameters by path, walked once per module.
    func parameters(of model: Module) -> [(path: String, parameter: Parameter)] {
        if indexedModule !== model {
            indexedParameters = model.namedParameters
            indexedModule = model
        }
        return indexedParameters
    }

    /// The learning-rate multiplier of the parameter at `path`.
    func rateScale(for path: String) -> Float {
        rateScales.first { path.hasPrefix($0.prefix) }?.scale ?? 1
    }

    func decay(for parameter: Parameter) -> Float {
        decaysVectors || parameter.shape.count > 1 ? weightDecay : 0
    }

    public func stateTensors(of model: Module) -> [(name: String, value: Tensor)] {
        var out: [(String, Tensor)] = []
        for (path, p) in parameters(of: model) {
            for name in slotNames {
                if let t = slots[name]![ObjectIdentifier(p)] { out.append(("\(name)/\(path)", t)) }
            }
        }
        return out
    }

    public func loadState(_ tensors: [String: Tensor], step: Int, of model: Module) throws {
        let byPath = Dictionary(parameters(of: model).map { ($0.path, $0.parameter) }, uniquingKeysWith: { a, _ in a })
        // Check every key before touching the current state, so a bad file changes nothing.
        var loaded: [String: [ObjectIdentifier: Tensor]] = [:]
        for name in slotNames { loaded[name] = [:] }
        for (key, value) in tensors {
            guard let slash = key.firstIndex(of: "/") else {
                throw OptimizerStateError(description: "optimizer state '\(key)' has no slot name")
            }
            let slot = String(key[..<slash]), path = String(key[key.index(after: slash)...])
            guard slotNames.contains(slot) else {
                throw OptimizerStateError(description: "optimizer state '\(key)': unknown slot '\(slot)'")
            }
            guard let p = byPath[path] else {
                throw OptimizerStateError(description: "optimizer state '\(key)': no parameter '\(path)'")
            }
            guard p.shape == value.shape else {
                throw OptimizerStateError(description: "optimizer state '\(key)': shape \(value.shape), parameter has \(p.shape)")
            }
            loaded[slot]![ObjectIdentifier(p)] = value.copy()
        }
        slots = loaded
        self.step = step
    }
}

/// Elements of one parameter per chunk of an update's parallel loop: the update streams its
/// weights, gradients and slots through memory once (ResNet-18: 11.7 million parameters, about
/// 230 MB per SGD step), so large tensors are split between the threads; each element's
/// arithmetic is the same whatever the split.
private let updateGrain = 1 << 15

/// Stochastic gradient descent with momentum, optional Nesterov, and L2 weight decay
/// (PyTorch semantics: buf = momentum * buf + g + wd * p; p -= lr * buf).
public final class SGD: SlotOptimizer, Optimizer {
    public var momentum: Float
    public var nesterov: Bool

    public init(learningRate: Float = 0.01, momentum: Float = 0.9, nesterov: Bool = false,
                weightDecay: Float = 0, decaysVectors: Bool = false) {
        self.momentum = momentum
        self.nesterov = nesterov
        super.init(learningRate: learningRate, weightDecay: weightDecay, decaysVectors: decaysVectors,
                   slotNames: momentum == 0 ? [] : ["momentum"])
    }

    public var name: String { "sgd" }
    public var configuration: [String: Double] {
        ["learning_rate": Double(learningRate), "momentum": Double(momentum),
         "nesterov": nesterov ? 1 : 0, "weight_decay": Double(weightDecay)]
    }

    public func update(_ model: Module, along gradients: Gradients) {
        step += 1
        for (path, p) in parameters(of: model) where p.isTrainable {
            guard let g = gradients[p] else { continue }
            let w = p.value.pointer, gp = g.pointer, n = p.value.count
            let lr = learningRate * rateScale(for: path), wd = decay(for: p), mu = momentum
            if mu == 0 {
                parallelFor(n, grain: updateGrain) { r in for i in r { w[i] -= lr * (gp[i] + wd * w[i]) } }
                continue
            }
            let buf = slot("momentum", for: p).pointer
            if nesterov {
                parallelFor(n, grain: updateGrain) { r in
                    for i in r {
                        let d = gp[i] + wd * w[i]
                        buf[i] = mu * buf[i] + d
                        w[i] -= lr * (d + mu * buf[i])
                    }
                }
            } else {
                parallelFor(n, grain: updateGrain) { r in
                    for i in r {
                        buf[i] = mu * buf[i] + gp[i] + wd * w[i]
                        w[i] -= lr * buf[i]
                    }
                }
            }
        }
    }
}

/// Adam, or AdamW when `decoupledWeightDecay` (Loshchilov & Hutter: decay applied to the
/// weights directly rather than through the gradient).
public final class Adam: SlotOptimizer, Optimizer {
    public var beta1: Float, beta2: Float, epsilon: Float
    public let decoupledWeightDecay: Bool

    public init(learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, decoupledWeightDecay: Bool = false, decaysVectors: Bool = false) {
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.decoupledWeightDecay = decoupledWeightDecay
        super.init(learningRate: learningRate, weightDecay: weightDecay, decaysVectors: decaysVectors,
                   slotNames: ["first_moment", "second_moment"])
    }

    /// AdamW with the usual default decay of 0.01.
    public static func adamW(learningRate: Float = 0.001, weightDecay: Float = 0.01) -> Adam {
        Adam(learningRate: learningRate, weightDecay: weightDecay, decoupledWeightDecay: true)
    }

    public var name: String { decoupledWeightDecay ? "adamw" : "adam" }
    public var configuration: [String: Double] {
        ["learning_rate": Double(learningRate), "beta1": Double(beta1), "beta2": Double(beta2),
         "epsilon": Double(epsilon), "weight_decay": Double(weightDecay)]
    }

    public func update(_ model: Module, along gradients: Gradients) {
        step += 1
        let correction1 = 1 - pow(beta1, Float(step)), correction2 = 1 - pow(beta2, Float(step))
        for (path, p) in parameters(of: model) where p.isTrainable {
            guard let g = gradients[p] else { continue }
            let w = p.value.pointer, gp = g.pointer, n = p.value.count
            let m = slot("first_moment", for: p).pointer, v = slot("second_moment", for: p).pointer
            let lr = learningRate * rateScale(for: path), stepSize = lr / correction1
            let wd = decay(for: p), b1 = beta1, b2 = beta2, eps = epsilon
            let coupled = decoupledWeightDecay ? 0 : wd
            let shrink = decoupledWeightDecay ? 1 - lr * wd : 1
            parallelFor(n, grain: updateGrain) { r in
                for i in r {
                    let grad = gp[i] + coupled * w[i]
                    m[i] = b1 * m[i] + (1 - b1) * grad
                    v[i] = b2 * v[i] + (1 - b2) * grad * grad
                    w[i] = w[i] * shrink - stepSize * m[i] / ((v[i] / correction2).squareRoot() + eps)
                }
            }
        }
    }
}

/// Learning rate as a function of the optimizer step (0-based), with an optional linear warm-up.
public struct LearningRateSchedule: Sendable {
    public enum Shape: Sendable {
        case constant
        /// Multiply by `factor` every `every` steps.
        case step(every: Int, factor: Float)
        /// Cosine from the base rate down to `minimum` at `totalSteps`.
        case cosine(totalSteps: Int, minimum: Float)
    }
    public var base: Float
    public var shape: Shape
    /// Steps of linear ramp from base / warmupSteps up to base.
    public var warmupSteps: Int

    public init(base: Float, shape: Shape = .constant, warmupSteps: Int = 0) {
        self.base = base; self.shape = shape; self.warmupSteps = warmupSteps
    }

    public func callAsFunction(_ step: Int) -> Float {
        if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
        switch shape {
        case .constant: return base
        case let .step(every, factor): return base * pow(factor, Float(step / max(every, 1)))
        case let .cosine(totalSteps, minimum):
            let span = max(totalSteps - warmupSteps, 1)
            let t = min(Float(step - warmupSteps) / Float(span), 1)
            return minimum + (base - minimum) * 0.5 * (1 + cos(Float.pi * t))
        }
    }
}
