import Foundation

/// Weight initialisation schemes; `fanIn`/`fanOut` count inputs/outputs per unit.
public enum Initializer {
    /// He et al.: N(0, 2 / fanIn), for layers followed by ReLU.
    case kaimingNormal
    /// He et al. uniform: U(-sqrt(6 / fanIn), sqrt(6 / fanIn)).
    case kaimingUniform
    /// Glorot: U(-sqrt(6 / (fanIn + fanOut)), +sqrt(...)), for sigmoid/tanh/linear outputs.
    case xavierUniform
    /// Glorot normal: N(0, 2 / (fanIn + fanOut)).
    case xavierNormal
    case zeros

    /// A tensor of `shape` whose first axis is outputs and the rest inputs (times kernel area).
    public func make(_ shape: [Int], fanIn: Int, fanOut: Int,
                     using rng: inout some RandomNumberGenerator) -> Tensor {
        let fi = Float(max(fanIn, 1)), fo = Float(max(fanOut, 1))
        switch self {
        case .kaimingNormal: return .randomNormal(shape, std: (2 / fi).squareRoot(), using: &rng)
        case .kaimingUniform:
            let bound = (6 / fi).squareRoot()
            return .randomUniform(shape, low: -bound, high: bound, using: &rng)
        case .xavierUniform:
            let bound = (6 / (fi + fo)).squareRoot()
            return .randomUniform(shape, low: -bound, high: bound, using: &rng)
        case .xavierNormal: return .randomNormal(shape, std: (2 / (fi + fo)).squareRoot(), using: &rng)
        case .zeros: return .zeros(shape)
        }
    }
}
