/// Inverted dropout; identity in inference.
///
/// Each training call draws its mask from a generator seeded by (seed, call count), and the
/// call count is a buffer, so a resumed checkpoint continues with exactly the masks the
/// uninterrupted run would have drawn.
public final class Dropout: Layer, ModeDependent {
    public let probability: Float
    public var mode: Mode = .training
    public let seed: UInt64
    /// Training calls so far (a float scalar, exact up to 2^24 calls), saved with the model.
    public let calls: Buffer

    public init(probability: Float, seed: UInt64 = 0) {
        precondition((0..<1).contains(probability), "dropout probability \(probability) not in [0, 1)")
        self.probability = probability
        self.seed = seed
        self.calls = Buffer(Tensor(shape: [], scalars: [0]))
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        guard mode == .training else { return x }
        let call = UInt64(calls.value.scalar)
        calls.value = Tensor(shape: [], scalars: [calls.value.scalar + 1])
        var generator = SeededGenerator(seed: seed &+ call &* 0x9E37_79B9_7F4A_7C15)
        return x.dropout(probability: probability, training: true, using: &generator)
    }
}
