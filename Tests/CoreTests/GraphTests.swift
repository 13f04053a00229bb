import XCTest
@testable import PerceptCore

final class GraphTests: XCTestCase {
    func testSharedSubgraphGradientsAdd() {
        let x = Tensor(shape: [3], scalars: [1, -2, 3]).trackingGradient()
        let y = x * x + x          // dy/dx = 2x + 1
        let grads = y.sum().backward()
        XCTAssertEqual(grads[x]?.scalars, [3, -3, 7])
    }
}
