import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

final class BoxesTests: XCTestCase {
    func detection(_ x1: Float, _ y1: Float, _ x2: Float, _ y2: Float, label: Int32 = 0, score: Float) -> Detection {
        Detection(box: DetectionBox(x1: x1, y1: y1, x2: x2, y2: y2, label: label), score: score)
    }

    func testArea() {
        XCTAssertEqual(boxArea(DetectionBox(x1: 1, y1: 2, x2: 4, y2: 7, label: 0)), 15)
        XCTAssertEqual(boxArea(DetectionBox(x1: 4, y1: 2, x2: 1, y2: 7, label: 0)), 0)
    }

    /// Seven detections: IoU(a, b) = 90/110, IoU(a, e) = 50/150, IoU(f, g) = 100/110.
    lazy var scene: [Detection] = [
        detection(0, 0, 10, 10, score: 0.9),             // a
        detection(1, 0, 11, 10, score: 0.8),             // b: under a
        detection(0, 0, 10, 10, label: 1, score: 0.85),  // c: a's box, other class
        detection(20, 20, 30, 30, score: 0.8),           // d: ties with b, alone
        detection(5, 0, 15, 10, score: 0.7),             // e: a third of a; overlaps only suppressed b more
        detection(40, 40, 50, 50, score: 0.6),           // f
        detection(40, 40, 50, 51, score: 0.6),           // g: ties with f, comes later, so f wins
    ]

    func testNonMaximumSuppressionPerClass() {
        let kept = nonMaximumSuppression(scene, iouThreshold: 0.5)
        XCTAssertEqual(kept, [scene[0], scene[2], scene[3], scene[4], scene[5]])
    }

    func testNonMaximumSuppressionAcrossClasses() {
        let kept = nonMaximumSuppression(scene, iouThreshold: 0.5, perClass: false)
        XCTAssertEqual(kept, [scene[0], scene[3], scene[4], scene[5]])
    }

    func testNonMaximumSuppressionKeepsOverlapEqualToThreshold() {
        // IoU(a, e) is exactly 1/3 in Float: suppression needs IoU > threshold.
        let pair = [scene[0], scene[4]]
        XCTAssertEqual(nonMaximumSuppression(pair, iouThreshold: Float(50) / 150), pair)
        XCTAssertEqual(nonMaximumSuppression(pair, iouThreshold: 0.3), [scene[0]])
        XCTAssertEqual(nonMaximumSuppression([], iouThreshold: 0.5), [])
    }

    func testBoxVoting() {
        let kept = [detection(0, 0, 10, 10, score: 0.75), detection(100, 100, 110, 110, score: 0.3)]
        let candidates = [
            detection(0, 0, 10, 10, score: 0.75),
            detection(2, 0, 12, 10, score: 0.25),           // IoU 80/120 with the first: votes
            detection(0, 0, 10, 10, label: 1, score: 1),    // other class: no vote
            detection(6, 0, 16, 10, score: 0.5),            // IoU 40/160: no vote
        ]
        let voted = boxVoting(kept: kept, candidates: candidates, iouThreshold: 0.5)
        // x1 = 0.75 * 0 + 0.25 * 2 = 0.5, x2 = 0.75 * 10 + 0.25 * 12 = 10.5 (weights sum to 1).
        XCTAssertEqual(voted[0], detection(0.5, 0, 10.5, 10, score: 0.75))
        // Nothing overlaps the second kept box: unchanged.
        XCTAssertEqual(voted[1], kept[1])
    }

    /// Reference: centre (20, 40), size 20 x 40. Target: centre (35, 50), size 40 x 80.
    let reference = DetectionBox(x1: 10, y1: 20, x2: 30, y2: 60, label: 2)
    let target = DetectionBox(x1: 15, y1: 10, x2: 55, y2: 90, label: 2)

    func testBoxCoderDeltasByHand() {
        let raw = BoxCoder().encode(target: target, reference: reference)
        XCTAssertEqual(raw.0, 0.75, accuracy: 1e-6)   // (35 - 20) / 20
        XCTAssertEqual(raw.1, 0.25, accuracy: 1e-6)   // (50 - 40) / 40
        XCTAssertEqual(raw.2, log(2), accuracy: 1e-6)
        XCTAssertEqual(raw.3, log(2), accuracy: 1e-6)
        let weighted = BoxCoder(weights: (10, 10, 5, 5)).encode(target: target, reference: reference)
        XCTAssertEqual(weighted.0, 7.5, accuracy: 1e-5)
        XCTAssertEqual(weighted.1, 2.5, accuracy: 1e-5)
        XCTAssertEqual(weighted.2, 5 * log(2), accuracy: 1e-5)
        XCTAssertEqual(weighted.3, 5 * log(2), accuracy: 1e-5)
    }

    func testBoxCoderRoundTrip() {
        for coder in [BoxCoder(), BoxCoder(weights: (10, 10, 5, 5))] {
            let decoded = coder.decode(deltas: coder.encode(target: target, reference: reference), reference: reference)
            XCTAssertEqual(decoded.x1, target.x1, accuracy: 1e-4)
            XCTAssertEqual(decoded.y1, target.y1, accuracy: 1e-4)
            XCTAssertEqual(decoded.x2, target.x2, accuracy: 1e-4)
            XCTAssertEqual(decoded.y2, target.y2, accuracy: 1e-4)
            XCTAssertEqual(decoded.label, reference.label)
        }
    }

    func testBoxCoderClampsScale() {
        // dw = dh = 10 would scale by e^10; the clamp caps it at 1000 / 16 = 62.5.
        let decoded = BoxCoder().decode(deltas: (0, 0, 10, 10), reference: reference)
        XCTAssertEqual(decoded.x2 - decoded.x1, 62.5 * 20, accuracy: 1e-2)
        XCTAssertEqual(decoded.y2 - decoded.y1, 62.5 * 40, accuracy: 1e-2)
        XCTAssertEqual((decoded.x1 + decoded.x2) / 2, 20, accuracy: 1e-3)
    }
}
