import Foundation
import XCTest
@testable import PerceptDatasets

/// Pascal VOC: the same boxes converted from VOC and from COCO give the same detection file
/// (VOC's 1-based corners read as Detectron2 reads them, difficult objects as crowds).
final class VOCTests: XCTestCase {
    let jpeg = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Inputs/jpeg/rgb-420.jpg").path

    /// A VOC folder of two 37x23 JPEGs: `a` with a dog and a difficult cat, `b` with nothing.
    func makeVOC(_ directory: TemporaryDirectory, objects: String? = nil) throws -> String {
        let root = directory.file("VOC2012")
        for folder in ["Annotations", "JPEGImages", "ImageSets/Main"] {
            try FileManager.default.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        for name in ["a", "b"] { try FileManager.default.copyItem(atPath: jpeg, toPath: root + "/JPEGImages/\(name).jpg") }
        writeText("""
        <?xml version="1.0"?>
        <!-- written as VOC's tools write them -->
        <annotation>
          <folder>VOC2012</folder><filename>a.jpg</filename>
          <size><width>37</width><height>23</height><depth>3</depth></size>
          \(objects ?? """
          <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
            <bndbox><xmin>3</xmin><ymin>2</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object>
          <object><name>cat</name><difficult>1</difficult>
            <bndbox><xmin>21</xmin><ymin>5</ymin><xmax>37</xmax><ymax>23</ymax></bndbox></object>
          """)
        </annotation>
        """, root + "/Annotations/a.xml")
        writeText("<annotation><filename>b.jpg</filename><size><width>37</width><height>23</height></size></annotation>",
                  root + "/Annotations/b.xml")
        writeText("a\nb\n", root + "/ImageSets/Main/train.txt")
        writeText("b\n", root + "/ImageSets/Main/val.txt")
        return root
    }

    func testVOCEqualsItsCOCOTwin() throws {
        let directory = TemporaryDirectory()
        let root = try makeVOC(directory)
        let summary = try Converter.voc(root: root, output: directory.file("voc.h5"))
        XCTAssertEqual(summary.classNames, ["cat", "dog"])
        XCTAssertEqual(summary.notes, ["kept 1 difficult object as ignore regions"])
        writeText("""
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 37, "height": 23}, {"id": 2, "file_name": "b.jpg", "width": 37, "height": 23}],
         "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
         "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [2, 1, 18, 14], "iscrowd": 0},
                         {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 4, 17, 19], "iscrowd": 1}]}
        """, directory.file("twin.json"))
        _ = try Converter.coco(images: root + "/JPEGImages", annotations: directory.file("twin.json"), output: directory.file("coco.h5"))
        let voc = try DetectionDataset(path: directory.file("voc.h5")), coco = try DetectionDataset(path: directory.file("coco.h5"))
        XCTAssertEqual(try voc.readBoxes(0..<2), try coco.readBoxes(0..<2))
        XCTAssertEqual(try voc.readBoxes(0..<1), [[DetectionBox(x1: 2, y1: 1, x2: 20, y2: 15, label: 1),
                                                    DetectionBox(x1: 20, y1: 4, x2: 37, y2: 23, label: 0, ignore: true)]])
        XCTAssertEqual(try voc.readImages(0..<2), try coco.readImages(0..<2))
        XCTAssertEqual(voc.categoryIDs, [1, 2])
        // Another split, and classes given in another order.
        let val = try Converter.voc(root: root, split: "val", classes: ["dog", "cat", "bird"], output: directory.file("val.h5"))
        XCTAssertEqual(val.count, 1)
        XCTAssertEqual(val.classNames, ["dog", "cat", "bird"])
        // With --size the boxes follow the image.
        _ = try Converter.voc(root: root, output: directory.file("half.h5"), options: ConversionOptions(size: ImageSize(width: 74, height: 46)))
        XCTAssertEqual(try DetectionDataset(path: directory.file("half.h5")).readBoxes(0..<1)[0][0], DetectionBox(x1: 4, y1: 2, x2: 40, y2: 30, label: 1))
    }

    func testBadVOCInputs() throws {
        let directory = TemporaryDirectory()
        var root = try makeVOC(directory)
        assertDatasetError(["ImageSets/Main/test.txt", "no such image set"]) { _ = try Converter.voc(root: root, split: "test", output: directory.file("x.h5")) }
        assertDatasetError(["a.xml", "'dog'", "--classes"]) { _ = try Converter.voc(root: root, classes: ["cat"], output: directory.file("x.h5")) }
        for (objects, fragment) in [("<object><name>dog</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>", "<xmin> must be a number"),
                                    ("<object><name>dog</name></object>", "no <bndbox>"),
                                    ("<object><name>dog</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>", "below"),
                                    ("<object><name>dog</name>", "malformed XML"),
                                    ("</size>", "malformed XML")] {
            let sub = TemporaryDirectory()
            root = try makeVOC(sub, objects: objects)
            assertDatasetError(["a.xml", fragment]) { _ = try Converter.voc(root: root, output: sub.file("x.h5")) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: sub.file("x.h5")))
        }
    }

    func testTheXMLReaderRefusesHostileInput() {
        for text in ["", "<a>", "<a></b>", "<a/><b/>", "text", "<!-- never closed", String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)] {
            XCTAssertThrowsError(try XMLTree.parse(Data(text.utf8), path: "x.xml"), text) { XCTAssertTrue($0 is DatasetError, "\($0)") }
        }
        XCTAssertEqual(try XMLTree.parse(Data("<a x=\"1\"><b>&lt;1&amp;2&gt;</b><c/></a>".utf8), path: "x").child("b")?.text, "<1&2>")
    }
}
