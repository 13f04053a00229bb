import PerceptDatasets
import Foundation
import PerceptTasks
import XCTest

final class COCOEvaluationTests: XCTestCase {
    /// Tests/TasksTests/Fixtures/coco-eval-fixture.json, written by Tests/detection/make_coco_fixture.py.
    struct Fixture: Decodable {
        struct Image: Decodable {
            var id: Int
            /// [x1, y1, x2, y2, slot] and, for detections, a score.
            var groundTruth: [[Double]], detections: [[Double]]
            enum CodingKeys: String, CodingKey { case id, groundTruth = "ground_truth", detections }
        }
        struct Numbers: Decodable {
            var stats: [Double], perClassAP: [Double?], perClassAP50: [Double?]
            var iouThresholds: [Double], recallThresholds: [Double]
            enum CodingKeys: String, CodingKey {
                case stats, perClassAP = "per_class_ap", perClassAP50 = "per_class_ap50"
                case iouThresholds = "iou_thresholds", recallThresholds = "recall_thresholds"
            }
        }
        var categories: [Int]
        var images: [Image]
        var pycocotools: Numbers
    }

    func loadFixture() throws -> Fixture {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: root.appendingPathComponent("Fixtures/coco-eval-fixture.json")))
    }

    func box(_ values: [Double]) -> DetectionBox {
        DetectionBox(x1: Float(values[0]), y1: Float(values[1]), x2: Float(values[2]), y2: Float(values[3]), label: Int32(values[4]),
                     ignore: values.count == 6 && values[5] == 1)
    }

    func evaluator(_ fixture: Fixture, images: [Fixture.Image]) -> COCOEvaluator {
        var evaluator = COCOEvaluator(categories: fixture.categories)
        for image in images {
            evaluator.add(imageID: image.id, groundTruth: image.groundTruth.map(box),
                          detections: image.detections.map { Detection(box: box(Array($0.prefix(5))), score: Float($0[5])) })
        }
        return evaluator
    }

    func testThresholdsAreNumpysBitForBit() throws {
        let numbers = try loadFixture().pycocotools
        XCTAssertEqual(COCOEvaluator.iouThresholds, numbers.iouThresholds)
        XCTAssertEqual(COCOEvaluator.recallThresholds, numbers.recallThresholds)
    }

    /// pycocotools' own numbers on 14 images: neighbours, duplicates, IoU exactly 0.5 and 0.75,
    /// an equal-IoU tie, near misses, score ties across images, > 100 detections, ground truth
    /// outside an area range listed first, an image without detections, one without ground
    /// truth, and a category without ground truth.
    func testMatchesPycocotoolsOnFixture() throws {
        let fixture = try loadFixture()
        let expected = fixture.pycocotools
        // Added in file order, which is not image-id order: the evaluator must sort by id.
        let summary = evaluator(fixture, images: fixture.images).summarize()
        // Means are summed in another order than numpy's pairwise sum: equal up to rounding.
        let tolerance = 1e-12
        XCTAssertEqual(summary.stats.count, expected.stats.count)
        for (index, (got, want)) in zip(summary.stats, expected.stats).enumerated() {
            XCTAssertEqual(got, want, accuracy: tolerance, "stats[\(index)]")
        }
        for (got, want, name) in [(summary.perClassAP, expected.perClassAP, "AP"), (summary.perClassAP50, expected.perClassAP50, "AP50")] {
            XCTAssertEqual(got.count, want.count)
            for (slot, (got, want)) in zip(got, want).enumerated() {
                XCTAssertEqual(got == nil, want == nil, "\(name) of slot \(slot)")
                if let got, let want { XCTAssertEqual(got, want, accuracy: tolerance, "\(name) of slot \(slot)") }
            }
        }
        XCTAssertNil(summary.perClassAP[3], "category 9 has no ground truth")
        // The order images are added in does not matter.
        XCTAssertEqual(evaluator(fixture, images: fixture.images.reversed()).summarize(), summary)
    }

    /// A detection with IoU 2/3 to two ground-truth boxes takes the later one (pycocotools'
    /// tie rule); the next detection overlaps only that one well (IoU 9/11), so it cannot match.
    func testEqualIoUGoesToTheLaterGroundTruth() {
        var evaluator = COCOEvaluator(categories: [1])
        evaluator.add(imageID: 1,
                      groundTruth: [DetectionBox(x1: 0, y1: 0, x2: 10, y2: 10, label: 0),
                                    DetectionBox(x1: 4, y1: 0, x2: 14, y2: 10, label: 0)],
                      detections: [Detection(box: DetectionBox(x1: 2, y1: 0, x2: 12, y2: 10, label: 0), score: 0.9),
                                   Detection(box: DetectionBox(x1: 5, y1: 0, x2: 15, y2: 10, label: 0), score: 0.8)])
        let summary = evaluator.summarize()
        // IoU 0.50-0.65: true then false positive, precision 1 up to recall 0.5 (51 of 101 points).
        XCTAssertEqual(summary.ap50, 51.0 / 101, accuracy: 1e-12)
        // IoU 0.70-0.80: false then true positive, precision 0.5 up to recall 0.5; none above.
        XCTAssertEqual(summary.ap75, 25.5 / 101, accuracy: 1e-12)
        XCTAssertEqual(summary.ap, (4 * 51 + 3 * 25.5) / 1010, accuracy: 1e-12)
        XCTAssertEqual(summary.ar100, (4 * 0.5 + 3 * 0.5) / 10, accuracy: 1e-12)
    }

    func testNoGroundTruthGivesMinusOne() {
        var evaluator = COCOEvaluator(categories: [1, 2])
        evaluator.add(imageID: 1, groundTruth: [],
                      detections: [Detection(box: DetectionBox(x1: 0, y1: 0, x2: 5, y2: 5, label: 1), score: 0.5)])
        let summary = evaluator.summarize()
        XCTAssertEqual(summary.stats, [Double](repeating: -1, count: 12))
        XCTAssertEqual(summary.perClassAP, [nil, nil])
    }

    func testCOCOResults() throws {
        let detections = [Detection(box: DetectionBox(x1: 1.5, y1: 2, x2: 11, y2: 22.25, label: 1), score: 0.75)]
        let results = cocoResults([(imageID: 9, fileName: "a.png", detections: detections),
                                   (imageID: 4, fileName: nil, detections: detections)], categoryIDs: [5, 8])
        XCTAssertEqual(results.count, 2)
        XCTAssertEqual(results[0]["image_id"] as? Int64, 9)
        XCTAssertEqual(results[0]["category_id"] as? Int64, 8)
        XCTAssertEqual(results[0]["bbox"] as? [Double], [1.5, 2, 9.5, 20.25])
        XCTAssertEqual(results[0]["score"] as? Double, 0.75)
        XCTAssertEqual(results[0]["file_name"] as? String, "a.png")
        XCTAssertEqual(results[1]["image_id"] as? Int64, 4)
        XCTAssertNil(results[1]["file_name"])
        XCTAssertNoThrow(try JSONSerialization.data(withJSONObject: results))
    }
}
