import PerceptCore
import PerceptDatasets
import Foundation
@testable import PerceptTasks
import XCTest

/// The ONNX writer's bytes, and the export's refusals. What the files compute is checked from
/// outside, by onnx's checker and onnxruntime (Tests/export/check_onnx.py in CI).
final class ONNXExportTests: XCTestCase {
    /// A backbone the exporter has never heard of: it computes what a plain CNN does, under
    /// another name, so an export that quietly wrote a plain CNN's graph would look right.
    final class RenamedCNN: Backbone {
        let inner: PlainCNN
        init() {
            var rng = SeededGenerator(seed: 1)
            inner = PlainCNN(BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [4]), using: &rng)
        }
        var featureInfo: [FeatureMapInfo] { inner.featureInfo }
        func features(_ x: Tensor, through deepest: String?) -> FeatureMaps { inner.features(x, through: deepest) }
        var configuration: BackboneConfiguration { inner.configuration }
    }

    func testAnUnknownBackboneFailsTheExportNamingIt() {
        var graph = ONNXGraph()
        XCTAssertThrowsError(try ONNXExport.backbone(RenamedCNN(), input: "images", into: &graph)) { error in
            XCTAssertTrue("\(error)".contains("RenamedCNN"), "\(error)")
        }
    }

    func testAMultiTaskGraphRefusesAHeadThatFlattens() throws {
        let backbone = BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [4])
        let flatten = ModelConfiguration<ClassificationHead>(
            task: .classification, inputChannels: 1, inputHeight: 8, inputWidth: 8, classes: ["a", "b"], backbone: backbone,
            head: .init(layers: VectorHeadConfiguration(pooling: .flatten, inFeatures: 4 * 4 * 4, outputs: 2)), settings: .init(),
            mean: [0.5], std: [0.25])
        let segment = ModelConfiguration<SegmentationHead>(
            task: .segmentation, inputChannels: 1, inputHeight: 8, inputWidth: 8, classes: ["background", "a"], backbone: backbone,
            head: SegmentationHead.Architecture(deepest: "stage1", classes: 2), settings: .init(), mean: [0.5], std: [0.25])
        let multi = try MultiTaskModel(MultiTaskConfiguration(classification: flatten, segmentation: segment), seed: 1)
        XCTAssertThrowsError(try ONNXExport.export(multi)) { error in
            XCTAssertTrue("\(error)".contains("classification head flattens"), "\(error)")
        }
        // Without it, the graph has the segmentation head's output under its task's name.
        let alone = try MultiTaskModel(MultiTaskConfiguration(segmentation: segment), seed: 1)
        let bytes = try ONNXExport.export(alone)
        XCTAssertNotNil(bytes.range(of: Data("segmentation_scores".utf8)))
    }

    func testVarintsAndFieldKeysAreProtobufWireFormat() {
        var writer = ProtoWriter()
        writer.int(1, 300)           // key 0x08, varint 300 = AC 02
        writer.int(2, -1)            // negative int64: ten bytes
        writer.string(8, "ab")       // key 0x42 (field 8, length-delimited)
        writer.int(20, 7)            // key 20 << 3 = 160: a two-byte key A0 01
        XCTAssertEqual(writer.bytes, [0x08, 0xAC, 0x02,
                                      0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
                                      0x42, 0x02, 0x61, 0x62,
                                      0xA0, 0x01, 0x07])
    }

    func testATensorFileIsATensorProtoOfLittleEndianFloats() {
        let tensor = Tensor(shape: [1, 2], scalars: [1, -2])
        let bytes = [UInt8](ONNXExport.tensorFile(name: "x", tensor))
        XCTAssertEqual(bytes, [0x08, 0x01, 0x08, 0x02,                 // dims 1, 2
                               0x10, 0x01,                             // data_type FLOAT
                               0x42, 0x01, 0x78,                       // name "x"
                               0x4A, 0x08, 0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0])  // raw_data 1.0, -2.0
    }

    func testAModelFileStartsWithIRVersion8AndImportsOpset17() throws {
        let layers = VectorHeadConfiguration(pooling: .global, inFeatures: 4, outputs: 3)
        let configuration = ModelConfiguration<ClassificationHead>(
            task: .classification, inputChannels: 1, inputHeight: 8, inputWidth: 8, classes: ["a", "b", "c"],
            backbone: BackboneConfiguration(kind: .plain, inputChannels: 1, widths: [4]), head: .init(layers: layers),
            settings: .init(), mean: [0.5], std: [0.25])
        let bytes = [UInt8](try ONNXExport.export(try Classifier(configuration, seed: 2)))
        XCTAssertEqual(Array(bytes.prefix(2)), [0x08, 0x08], "ir_version 8 first")
        // opset_import (field 8): an OperatorSetIdProto of the default domain "" and version 17.
        let opset: [UInt8] = [0x42, 0x04, 0x0A, 0x00, 0x10, 0x11]
        XCTAssertTrue(bytes.indices.contains { Array(bytes[$0..<min($0 + opset.count, bytes.count)]) == opset }, "no opset 17 import")
    }
}
