/// Seeded xoshiro256** generator: the same seed gives the same stream on every machine.
///
/// Pass it `inout` to whatever needs randomness (initialisers, dropout, shuffling); Percept has
/// no global generator.
public struct SeededGenerator: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// A generator of its own for one combination of keys (a run's seed, an epoch, a file row):
    /// draws keyed this way do not depend on what else was drawn before, or by which process.
    public init(keys: UInt64...) {
        var mixed: UInt64 = 0x243F_6A88_85A3_08D3
        for key in keys {
            mixed = (mixed ^ key) &* 0xBF58_476D_1CE4_E5B9
            mixed ^= mixed >> 31
        }
        self.init(seed: mixed)
    }

    @inlinable
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = SeededGenerator.rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = SeededGenerator.rotl(s.3, 45)
        return result
    }
}

extension RandomNumberGenerator {
    /// Uniform in [0, 1) with 24 bits of precision.
    @inlinable public mutating func nextUniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Standard normal sample (Box-Muller).
    @inlinable public mutating func nextNormal() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }
}

@usableFromInline func _log(_ x: Double) -> Double { Foundation.log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { Foundation.cos(x) }

import Foundation

extension Tensor {
    /// Samples from N(0, std^2).
    public static func randomNormal(_ shape: [Int], std: Float = 1,
                                    using rng: inout some RandomNumberGenerator) -> Tensor {
        let t = Tensor.uninitialized(shape)
        for i in 0..<t.count { t.pointer[i] = rng.nextNormal() * std }
        return t
    }

    /// Samples from U(low, high).
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     using rng: inout some RandomNumberGenerator) -> Tensor {
        let t = Tensor.uninitialized(shape)
        for i in 0..<t.count { t.pointer[i] = low + (high - low) * rng.nextUniform() }
        return t
    }
}
