import XCTest
@testable import PerceptCore

final class GradientCheckNormalizationTests: XCTestCase {
    private func freshStatistics(_ channels: Int) -> (Buffer, Buffer) {
        (Buffer(Tensor(shape: [channels], repeating: 0)), Buffer(Tensor(shape: [channels], repeating: 1)))
    }

    func testBatchNormTrainingGradients() {
        // Batch 3 with 5x4 planes; gamma away from 1 and beta away from 0 so that their roles show.
        let x = uniformTensor([3, 2, 5, 4], seed: 200, low: -1, high: 2)
        let gamma = uniformTensor([2], seed: 201, low: 0.5, high: 1.5)
        let beta = uniformTensor([2], seed: 202)
        assertGradientsMatch([x, gamma, beta]) { t in
            let (mean, variance) = self.freshStatistics(2)
            return t[0].batchNorm2D(gamma: t[1], beta: t[2], runningMean: mean, runningVar: variance, training: true)
        }
    }

    /// The fused ReLU: the same values as batch norm then `.relu()`, and gradients that pass
    /// the finite-difference check (inputs kept away from the kink by the check's seeds).
    func testBatchNormWithFusedReLU() {
        let x = uniformTensor([3, 2, 5, 4], seed: 230, low: -1, high: 2)
        let gamma = uniformTensor([2], seed: 231, low: 0.5, high: 1.5)
        let beta = uniformTensor([2], seed: 232)
        for training in [true, false] {
            let (m1, v1) = freshStatistics(2), (m2, v2) = freshStatistics(2)
            let fused = x.batchNorm2D(gamma: gamma, beta: beta, runningMean: m1, runningVar: v1, training: training, relu: true)
            let separate = x.batchNorm2D(gamma: gamma, beta: beta, runningMean: m2, runningVar: v2, training: training).relu()
            XCTAssertEqual(fused.scalars, separate.scalars)
            XCTAssertTrue(fused.scalars.contains(0) && fused.scalars.contains { $0 > 0 }, "the ReLU clips some values")
            assertGradientsMatch([x, gamma, beta]) { t in
                let (mean, variance) = self.freshStatistics(2)
                return t[0].batchNorm2D(gamma: t[1], beta: t[2], runningMean: mean, runningVar: variance,
                                        training: training, relu: true)
            }
        }
    }

    func testBatchNormInferenceGradients() {
        let x = uniformTensor([2, 3, 2, 3], seed: 203)
        let gamma = uniformTensor([3], seed: 204, low: 0.5, high: 1.5)
        let beta = uniformTensor([3], seed: 205)
        let mean = Buffer(uniformTensor([3], seed: 206))
        let variance = Buffer(uniformTensor([3], seed: 207, low: 0.5, high: 2))
        assertGradientsMatch([x, gamma, beta]) { t in
            t[0].batchNorm2D(gamma: t[1], beta: t[2], runningMean: mean, runningVar: variance, training: false)
        }
    }

    func testBatchNorm1DGradients() {
        let x = uniformTensor([6, 4], seed: 208)
        let gamma = uniformTensor([4], seed: 209, low: 0.5, high: 1.5)
        let beta = uniformTensor([4], seed: 210)
        assertGradientsMatch([x, gamma, beta]) { t in
            let (mean, variance) = self.freshStatistics(4)
            return t[0].batchNorm2D(gamma: t[1], beta: t[2], runningMean: mean, runningVar: variance, training: true)
        }
    }

    func testBatchNormOnlyAffineTracked() {
        // A frozen backbone: the input is a constant, gamma and beta still learn.
        let x = uniformTensor([3, 2, 2, 2], seed: 211)
        let gamma = uniformTensor([2], seed: 212, low: 0.5, high: 1.5), beta = uniformTensor([2], seed: 213)
        assertGradientsMatch([x, gamma, beta], checked: [1, 2]) { t in
            let (mean, variance) = self.freshStatistics(2)
            return t[0].batchNorm2D(gamma: t[1], beta: t[2], runningMean: mean, runningVar: variance, training: true)
        }
    }

    func testTrainingNormalisesPerChannelAndUpdatesRunningStatistics() {
        let (n, c, h, w) = (3, 2, 5, 4)
        // Channel 1 sits far from zero with a large spread, channel 0 is small.
        var values: [Float] = []
        var rng = SeededGenerator(seed: 214)
        for _ in 0..<n { for channel in 0..<c { for _ in 0..<(h * w) {
            values.append(channel == 0 ? rng.nextUniform() : 100 + 10 * rng.nextNormal())
        } } }
        let x = Tensor(shape: [n, c, h, w], scalars: values)
        let runningMean = Buffer(Tensor(shape: [c], scalars: [0.5, -1]))
        let runningVar = Buffer(Tensor(shape: [c], scalars: [1, 2]))
        let before = runningMean.value
        let y = x.batchNorm2D(gamma: Tensor(shape: [c], repeating: 1), beta: Tensor(shape: [c], repeating: 0),
                              runningMean: runningMean, runningVar: runningVar, training: true)
        let count = n * h * w
        for channel in 0..<c {
            var xs: [Double] = [], ys: [Double] = []
            for b in 0..<n {
                for i in 0..<(h * w) {
                    let index = (b * c + channel) * h * w + i
                    xs.append(Double(values[index])); ys.append(Double(y.scalars[index]))
                }
            }
            let outMean = ys.reduce(0, +) / Double(count)
            let outVar = ys.map { ($0 - outMean) * ($0 - outMean) }.reduce(0, +) / Double(count)
            XCTAssertEqual(outMean, 0, accuracy: 1e-5, "channel \(channel) output mean")
            // 1e-5 epsilon in the denominator shrinks the variance a little for the small channel.
            XCTAssertEqual(outVar, 1, accuracy: 2e-3, "channel \(channel) output variance")

            let batchMean = xs.reduce(0, +) / Double(count)
            let unbiased = xs.map { ($0 - batchMean) * ($0 - batchMean) }.reduce(0, +) / Double(count - 1)
            let oldMean: [Double] = [0.5, -1], oldVar: [Double] = [1, 2]
            XCTAssertEqual(Double(runningMean.value.scalars[channel]), 0.9 * oldMean[channel] + 0.1 * batchMean,
                           accuracy: 1e-4 * Swift.max(1, abs(batchMean)), "channel \(channel) running mean")
            XCTAssertEqual(Double(runningVar.value.scalars[channel]), 0.9 * oldVar[channel] + 0.1 * unbiased,
                           accuracy: 1e-4 * Swift.max(1, unbiased), "channel \(channel) running variance (unbiased)")
        }
        // Tensors read from the buffer before the update keep their values.
        XCTAssertEqual(before.scalars, [0.5, -1])
    }

    func testInferenceUsesRunningStatisticsAndLeavesThemAlone() {
        let x = Tensor(shape: [1, 2, 1, 2], scalars: [1, 3, 10, 20])
        let runningMean = Buffer(Tensor(shape: [2], scalars: [1, 10]))
        let runningVar = Buffer(Tensor(shape: [2], scalars: [4, 100]))
        let y = x.batchNorm2D(gamma: Tensor(shape: [2], scalars: [2, 1]), beta: Tensor(shape: [2], scalars: [0, 5]),
                              runningMean: runningMean, runningVar: runningVar, epsilon: 0, training: false)
        // (x - mean) / sqrt(var) * gamma + beta.
        assertClose(y.scalars, [0, 2, 5, 6])
        XCTAssertEqual(runningMean.value.scalars, [1, 10])
        XCTAssertEqual(runningVar.value.scalars, [4, 100])
        XCTAssertNil(y.node)
    }

    func testGammaAndBetaScaleAndShift() {
        let x = uniformTensor([4, 1, 3, 3], seed: 215)
        let (mean, variance) = freshStatistics(1)
        let y = x.batchNorm2D(gamma: Tensor(shape: [1], scalars: [3]), beta: Tensor(shape: [1], scalars: [-2]),
                              runningMean: mean, runningVar: variance, training: true)
        let ys = y.scalars.map(Double.init)
        let m = ys.reduce(0, +) / Double(ys.count)
        let v = ys.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(ys.count)
        XCTAssertEqual(m, -2, accuracy: 1e-5)
        XCTAssertEqual(v, 9, accuracy: 1e-2)
    }
}
