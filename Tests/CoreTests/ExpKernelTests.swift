import CKernels
import Foundation
import XCTest
@testable import PerceptCore

/// `pc_exp`, the vector exp behind softmax, log-softmax and softmax cross-entropy: both builds
/// against Foundation's exp over the whole useful range, lengths that leave a vector tail, and
/// the edges (clamps, NaN).
final class ExpKernelTests: XCTestCase {
    override func tearDown() { pc_kernels_force_portable(0) }

    /// Largest error in ulps of the reference, over results that are normal floats.
    private func worstUlps(portable: Bool, _ inputs: [Float]) -> Float {
        pc_kernels_force_portable(portable ? 1 : 0)
        var values = inputs
        pc_exp(&values, values.count)
        var worst: Float = 0
        for (x, y) in zip(inputs, values) {
            let expected = Foundation.exp(Double(x))
            guard expected >= Double(Float.leastNormalMagnitude), expected <= Double(Float.greatestFiniteMagnitude) else { continue }
            let ulp = Float(expected).ulp
            worst = max(worst, Float(abs(Double(y) - expected)) / ulp)
        }
        return worst
    }

    func testMatchesExpWithinTwoUlpsInBothBuilds() {
        // Every 1/4096 from -87 to 88, plus values near multiples of ln 2 where the reduction switches.
        var inputs = stride(from: Float(-87), through: 88, by: 1.0 / 4096).map { $0 }
        for n in -120...120 { let x = Float(n) * 0.6931472; inputs += [x.nextDown, x, x.nextUp] }
        XCTAssertLessThanOrEqual(worstUlps(portable: false, inputs), 2)
        XCTAssertLessThanOrEqual(worstUlps(portable: true, inputs), 2)
    }

    func testTailsEdgesAndNaN() {
        for portable in [false, true] {
            pc_kernels_force_portable(portable ? 1 : 0)
            // Lengths 1 to 19 cover whole vectors and every tail; values past the end stay put.
            for count in 1..<20 {
                var values = (0..<count).map { Float($0) * 0.25 - 2 } + [42]
                pc_exp(&values, count)
                for i in 0..<count {
                    XCTAssertEqual(values[i], Foundation.exp(Float(i) * 0.25 - 2), accuracy: 1e-6 * values[i], "count \(count), item \(i)")
                }
                XCTAssertEqual(values[count], 42, "wrote past the end (count \(count))")
            }
            var edges: [Float] = [0, -1000, .nan, 1, -.infinity, 88.3, -87.3, 88.7, .infinity]
            pc_exp(&edges, edges.count)
            XCTAssertEqual(edges[0], 1)
            XCTAssertLessThan(edges[1], 1.2e-38, "exp(-1000) is (nearly) 0")
            XCTAssertGreaterThanOrEqual(edges[1], 0)
            XCTAssertTrue(edges[2].isNaN, "NaN must stay NaN (portable: \(portable))")
            XCTAssertEqual(edges[3], Float(M_E), accuracy: 1e-6)
            XCTAssertLessThan(edges[4], 1.2e-38)
            XCTAssertEqual(Double(edges[5]), Foundation.exp(Double(Float(88.3))), accuracy: 1e32)
            XCTAssertTrue(edges[5].isFinite)
            // The ends of the range are exact up to rounding, not clamped; beyond them, the
            // largest values (AVX2: about FLT_MAX; expf: inf).
            XCTAssertEqual(Double(edges[6]), Foundation.exp(Double(Float(-87.3))), accuracy: 1e-6 * Foundation.exp(-87.3))
            XCTAssertTrue(edges[6].isNormal)
            XCTAssertEqual(Double(edges[7]), Foundation.exp(Double(Float(88.7))), accuracy: 1e-6 * Foundation.exp(88.7))
            XCTAssertGreaterThanOrEqual(edges[8], 3.4e38)
        }
    }
}
