import XCTest
@testable import PerceptCore

// Finite-difference gradient checking.
//
// For a function f of some input tensors and each of a few random projections R (entries of
// random sign and magnitude in [0.5, 1.5), so a scalar loss is never projected onto a tiny
// number), the check takes the vector-Jacobian product R^T J from backward(seed: R) and compares
// every element with a central difference of sum(f(inputs) * R). The perturbed outputs are
// accumulated in Double and divided by the step Float actually took; one pair of perturbed
// evaluations per element serves every projection. Elements pass when
// |analytic - numeric| <= absoluteTolerance + relativeTolerance * max(|analytic|, |numeric|):
// with no floor of 1 on the scale, a gradient that is small because it is averaged over many
// elements is still compared to within a few percent. Evaluating on untracked inputs also
// checks that the inference path (no graph) computes the same values as the training path.

/// Outcome of a gradient check: failure messages (empty when it passes) and the worst element.
struct GradientCheckResult {
    var failures: [String] = []
    /// Largest |analytic - numeric| / (absoluteTolerance + relativeTolerance * max(|analytic|, |numeric|))
    /// over every checked element and projection; above 1 is a mismatch.
    var worstRatio: Double = 0
    /// Where `worstRatio` was found, with both values.
    var worst = "no element checked"
    var passed: Bool { failures.isEmpty }
}

/// Seeds of the default random projections.
let gradientCheckSeeds: [UInt64] = [20_240_917, 7, 1_234_567]

/// Compares analytic gradients of `function` with central differences for every element of
/// every input; failures name the input, the element and both values.
///
/// - `epsilon`: finite-difference step relative to max(1, |x|); keep inputs farther than that
///   from kinks (ties in max, zeros of relu, hinge margins).
/// - `relativeTolerance`, `absoluteTolerance`: see `GradientCheckResult.worstRatio`.
/// - `checked`: indices of the inputs to check (default all); the others stay untracked.
/// - `expectNonzero`: also fail when an input's whole gradient is zero, which would make the
///   comparison vacuous.
func assertGradientsMatch(_ inputs: [Tensor], checked: [Int]? = nil, epsilon: Float = 1e-2,
                          relativeTolerance: Double = 1e-3, absoluteTolerance: Double = 1e-4,
                          seeds: [UInt64] = gradientCheckSeeds, expectNonzero: Bool = true,
                          file: StaticString = #filePath, line: UInt = #line,
                          _ function: ([Tensor]) -> Tensor) {
    let result = checkGradients(inputs, checked: checked, epsilon: epsilon, relativeTolerance: relativeTolerance,
                                absoluteTolerance: absoluteTolerance, seeds: seeds, expectNonzero: expectNonzero, function)
    for failure in result.failures { XCTFail(failure, file: file, line: line) }
}

/// The check behind `assertGradientsMatch`, returning its result so that a test can also show
/// the checker rejects a wrong gradient.
func checkGradients(_ inputs: [Tensor], checked: [Int]? = nil, epsilon: Float = 1e-2,
                    relativeTolerance: Double = 1e-3, absoluteTolerance: Double = 1e-4,
                    seeds: [UInt64] = gradientCheckSeeds, expectNonzero: Bool = true,
                    _ function: ([Tensor]) -> Tensor) -> GradientCheckResult {
    var result = GradientCheckResult()
    let checkedInputs = checked ?? Array(inputs.indices)
    // Separate storage for the analytic pass and for the perturbed numeric passes.
    let tracked = inputs.enumerated().map { i, t in checkedInputs.contains(i) ? t.copy().trackingGradient() : t.copy() }
    let probes = inputs.map { $0.copy() }

    let output = function(tracked)
    if output.node == nil { result.failures.append("tracked inputs produced an output without a graph node") }
    let projections = seeds.map { seed in
        var rng = SeededGenerator(seed: seed)
        return (0..<output.count).map { _ in
            let magnitude = 0.5 + Double(rng.nextUniform())
            return rng.nextUniform() < 0.5 ? -magnitude : magnitude
        }
    }
    // A fresh graph per projection, so that no pullback is ever run twice.
    let gradients = projections.map { projection in
        function(tracked).backward(seed: Tensor(shape: output.shape, scalars: projection.map(Float.init)))
    }

    let untrackedOutput = function(probes)
    if untrackedOutput.node != nil { result.failures.append("untracked inputs built a graph node") }
    if untrackedOutput.shape != output.shape {
        result.failures.append("tracked output \(output.shape) and untracked output \(untrackedOutput.shape) differ in shape")
        return result
    }
    if untrackedOutput.scalars != output.scalars { result.failures.append("tracked and untracked forward values differ") }

    for index in checkedInputs {
        var analytic: [[Float]] = []
        for g in gradients {
            guard let gradient = g[tracked[index]] else { break }
            guard gradient.shape == inputs[index].shape else {
                result.failures.append("gradient shape \(gradient.shape) for input \(index) of shape \(inputs[index].shape)")
                break
            }
            analytic.append(gradient.scalars)
        }
        guard analytic.count == gradients.count else {
            if analytic.isEmpty { result.failures.append("no gradient for input \(index) of shape \(inputs[index].shape)") }
            continue
        }
        if expectNonzero && !analytic[0].contains(where: { $0 != 0 }) {
            result.failures.append("gradient of input \(index) is all zero: the check would be vacuous")
        }
        let values = probes[index].pointer
        var mismatches = 0
        for element in 0..<inputs[index].count {
            let original = values[element]
            let step = epsilon * Swift.max(1, abs(original))
            let up = original + step, down = original - step
            values[element] = up
            let plus = function(probes).scalars
            values[element] = down
            let minus = function(probes).scalars
            values[element] = original
            let width = Double(up - down)
            for (k, projection) in projections.enumerated() {
                var numeric: Double = 0
                for i in 0..<plus.count { numeric += (Double(plus[i]) - Double(minus[i])) * projection[i] }
                numeric /= width
                let exact = Double(analytic[k][element])
                let ratio = abs(exact - numeric) / (absoluteTolerance + relativeTolerance * Swift.max(abs(exact), abs(numeric)))
                let place = "input \(index) \(inputs[index].shape) element \(element) projection \(k)"
                if !(ratio <= result.worstRatio) {
                    result.worstRatio = ratio.isNaN ? .infinity : ratio
                    result.worst = "\(place): analytic \(exact), numeric \(numeric)"
                }
                if !(ratio <= 1) {
                    mismatches += 1
                    if mismatches <= 5 { result.failures.append("\(place): analytic \(exact), numeric \(numeric)") }
                }
            }
        }
        if mismatches > 5 {
            result.failures.append("input \(index): \(mismatches) of \(analytic[0].count * projections.count) comparisons mismatch in total")
        }
    }
    return result
}

/// Uniform values in [low, high), reproducible from `seed`.
func uniformTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    return Tensor.randomUniform(shape, low: low, high: high, using: &rng)
}

/// Distinct values spaced `spacing` apart in shuffled order, centred on zero: no ties for max
/// pooling and no two values within a finite-difference step of each other.
func distinctTensor(_ shape: [Int], seed: UInt64, spacing: Float = 0.05) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    let count = shape.reduce(1, *)
    let order = Array(0..<count).shuffled(using: &rng)
    return Tensor(shape: shape, scalars: order.map { (Float($0) - Float(count) / 2) * spacing })
}

/// Values with magnitude in [0.1, 1) and random sign: clear of the kink of relu-like functions.
func awayFromZeroTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = SeededGenerator(seed: seed)
    let count = shape.reduce(1, *)
    var values: [Float] = []
    for _ in 0..<count {
        let magnitude = 0.1 + 0.9 * rng.nextUniform()
        values.append(rng.nextUniform() < 0.5 ? -magnitude : magnitude)
    }
    return Tensor(shape: shape, scalars: values)
}

/// Element-wise closeness with a relative and absolute tolerance.
func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Float = 1e-5,
                 _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "count \(message)", file: file, line: line)
    var reported = 0
    for (i, (a, e)) in zip(actual, expected).enumerated() where !(abs(a - e) <= tolerance * Swift.max(1, abs(e))) {
        reported += 1
        if reported <= 5 { XCTFail("element \(i): \(a) vs expected \(e) \(message)", file: file, line: line) }
    }
}
