import XCTest
@testable import Core

// Finite-difference gradient checking.
//
// For a function f of some input tensors, the check builds loss = sum(f(inputs) * R) with a
// fixed random R, takes analytic gradients from backward(), and compares every element with a
// central difference of the same loss evaluated on untracked inputs (accumulated in Double, and
// divided by the step Float actually took). Evaluating on untracked inputs also checks that the
// inference path (no graph) computes the same values as the training path.

/// Compares analytic gradients of `function` with central differences for every element of
/// every input; failures name the input, the element and both values.
///
/// - `epsilon`: finite-difference step; keep inputs farther than that from kinks (ties in max,
///   zeros of relu, hinge margins).
/// - `tolerance`: |analytic - numeric| <= tolerance * max(1, |analytic|, |numeric|).
/// - `checked`: indices of the inputs to check (default all); the others stay untracked.
/// - `expectNonzero`: also fail when an input's whole gradient is zero, which would make the
///   comparison vacuous.
func assertGradientsMatch(_ inputs: [Tensor], checked: [Int]? = nil, epsilon: Float = 1e-2,
                          tolerance: Double = 1e-2, seed: UInt64 = 20_240_917, expectNonzero: Bool = true,
                          file: StaticString = #filePath, line: UInt = #line,
                          _ function: ([Tensor]) -> Tensor) {
    let failures = gradientCheckFailures(inputs, checked: checked, epsilon: epsilon, tolerance: tolerance,
                                         seed: seed, expectNonzero: expectNonzero, function)
    for failure in failures { XCTFail(failure, file: file, line: line) }
}

/// The check behind `assertGradientsMatch`, returning its failure messages (empty when it passes),
/// so that a test can also show the checker rejects a wrong gradient.
func gradientCheckFailures(_ inputs: [Tensor], checked: [Int]? = nil, epsilon: Float = 1e-2,
                           tolerance: Double = 1e-2, seed: UInt64 = 20_240_917, expectNonzero: Bool = true,
                           _ function: ([Tensor]) -> Tensor) -> [String] {
    var failures: [String] = []
    let checkedInputs = checked ?? Array(inputs.indices)
    // Separate storage for the analytic pass and for the perturbed numeric passes.
    let tracked = inputs.enumerated().map { i, t in checkedInputs.contains(i) ? t.copy().trackingGradient() : t.copy() }
    let probes = inputs.map { $0.copy() }

    let output = function(tracked)
    if output.node == nil { failures.append("tracked inputs produced an output without a graph node") }
    var rng = SeededGenerator(seed: seed)
    let projection = Tensor.randomNormal(output.shape, using: &rng)
    let gradients = (output * projection).sum().backward()

    let untrackedOutput = function(probes)
    if untrackedOutput.node != nil { failures.append("untracked inputs built a graph node") }
    if untrackedOutput.shape != output.shape {
        failures.append("tracked output \(output.shape) and untracked output \(untrackedOutput.shape) differ in shape")
        return failures
    }
    if untrackedOutput.scalars != output.scalars { failures.append("tracked and untracked forward values differ") }

    func objective() -> Double {
        let out = function(probes)
        var total: Double = 0
        for i in 0..<out.count { total += Double(out.pointer[i]) * Double(projection.pointer[i]) }
        return total
    }

    for index in checkedInputs {
        guard let analytic = gradients[tracked[index]] else {
            failures.append("no gradient for input \(index) of shape \(inputs[index].shape)")
            continue
        }
        guard analytic.shape == inputs[index].shape else {
            failures.append("gradient shape \(analytic.shape) for input \(index) of shape \(inputs[index].shape)")
            continue
        }
        if expectNonzero && !analytic.scalars.contains(where: { $0 != 0 }) {
            failures.append("gradient of input \(index) is all zero: the check would be vacuous")
        }
        let values = probes[index].pointer
        var mismatches = 0
        for element in 0..<analytic.count {
            let original = values[element]
            let up = original + epsilon, down = original - epsilon
            values[element] = up
            let plus = objective()
            values[element] = down
            let minus = objective()
            values[element] = original
            let numeric = (plus - minus) / Double(up - down)
            let exact = Double(analytic.pointer[element])
            let bound = tolerance * Swift.max(1, abs(exact), abs(numeric))
            if !(abs(exact - numeric) <= bound) {
                mismatches += 1
                if mismatches <= 5 {
                    failures.append("input \(index) \(inputs[index].shape) element \(element): analytic \(exact), numeric \(numeric)")
                }
            }
        }
        if mismatches > 5 { failures.append("input \(index): \(mismatches) of \(analytic.count) elements mismatch in total") }
    }
    return failures
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
