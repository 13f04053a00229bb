import PerceptCore
import PerceptDatasets
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import PerceptTasks
import XCTest

/// `train`'s run folder from the command line: printed at the start and the end, SVGs that are
/// well-formed XML with a point per epoch, `eval --plots` and `percept plot`, and Ctrl-C.
final class RunFolderCLITests: XCTestCase {
    /// 48 gray 12 x 12 images of three classes (bright rows, bright columns, a bright square).
    func writeData(_ path: String) throws {
        var rng = SeededGenerator(seed: 5)
        let writer = try DatasetWriter(path: path, task: .classification, channels: 1, height: 12, width: 12, source: "test")
        for index in 0..<48 {
            let pixels = (0..<144).map { p -> UInt8 in
                let (y, x) = (p / 12, p % 12)
                let on = index % 3 == 0 ? y % 3 == 0 : index % 3 == 1 ? x % 3 == 0 : (3..<9).contains(x) && (3..<9).contains(y)
                return on ? 200 : UInt8(rng.next() % 50)
            }
            try writer.append(image: Image(width: 12, height: 12, channels: 1, pixels: pixels), label: index % 3)
        }
        try writer.finish(classNames: ["rows", "columns", "square"])
    }

    /// The elements of an SVG file, parsed as XML (it must be well-formed).
    func elements(_ path: String) throws -> [(name: String, attributes: [String: String])] {
        final class Collector: NSObject, XMLParserDelegate {
            var found: [(name: String, attributes: [String: String])] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) { found.append((name, attributes)) }
        }
        let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: path)))
        let collector = Collector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "\(path) is not well-formed XML: \(String(describing: parser.parserError))")
        XCTAssertEqual(collector.found.first?.name, "svg", path)
        return collector.found
    }

    func testTrainLeavesARunFolderOfWellFormedPlots() throws {
        let scratch = Scratch()
        try writeData(scratch.file("data.h5"))
        let train = ["classify", "train", "--data", scratch.file("data.h5"), "--val", scratch.file("data.h5"), "--set", "preset=plain",
                     "--set", "widths=[4,8]", "--epochs", "3", "--batch", "16", "--project", scratch.file("runs")]
        let result = try percept(train)
        XCTAssertEqual(result.status, 0, result.standardError)
        let folder = scratch.file("runs/classify/train")
        let lines = result.standardError.split(separator: "\n")
        XCTAssertEqual(lines.first.map(String.init), "run folder: \(folder)")
        XCTAssertEqual(lines.last.map(String.init), "wrote \(folder) (weights/best.h5, weights/last.h5, results.csv, args.yaml, plots)")
        // results.svg: a panel per column, each series a point per epoch.
        let series = try elements(folder + "/results.svg").filter { $0.name == "polyline" && $0.attributes["data-series"] == "results" }
        XCTAssertEqual(series.count, 6, "time, lr, train/loss and three validation metrics")
        for polyline in series { XCTAssertEqual(polyline.attributes["points"]?.split(separator: " ").count, 3) }
        // The confusion matrix's cells are `eval --json`'s.
        let evaluated = try percept(["classify", "eval", "--model", folder + "/weights/best.h5", "--data", scratch.file("data.h5"), "--json",
                                     "--plots", scratch.file("eval-plots")])
        XCTAssertEqual(evaluated.status, 0, evaluated.standardError)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(evaluated.standardOutput.utf8)) as? [String: Any])
        let matrix = try XCTUnwrap(report["confusion_matrix"] as? [[Int]])
        let cells = try elements(folder + "/confusion_matrix.svg").filter { $0.name == "rect" }.count
        XCTAssertEqual(cells, 1 + 9, "the background and a cell per (truth, prediction)")
        let data = try JSONDecoder().decode(PlotData.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/plots.json")))
        XCTAssertEqual(data.confusion, matrix)
        let evalData = try JSONDecoder().decode(PlotData.self, from: Data(contentsOf: URL(fileURLWithPath: scratch.file("eval-plots/plots.json"))))
        XCTAssertEqual(evalData.confusion, matrix)
        for name in ["confusion_matrix.svg", "confusion_matrix_normalized.svg"] {
            XCTAssertEqual(try String(contentsOfFile: scratch.file("eval-plots/" + name), encoding: .utf8),
                           try String(contentsOfFile: folder + "/" + name, encoding: .utf8), name)
        }
        // percept plot redraws the folder's plots from its files, the same.
        let before = try String(contentsOfFile: folder + "/results.svg", encoding: .utf8)
        try FileManager.default.removeItem(atPath: folder + "/results.svg")
        let plotted = try percept(["plot", folder])
        XCTAssertEqual(plotted.status, 0, plotted.standardError)
        XCTAssertEqual(try String(contentsOfFile: folder + "/results.svg", encoding: .utf8), before)
        // args.yaml repeats the run; a second run gets the next name.
        let repeated = try percept(["classify", "train", "--data", scratch.file("data.h5"), "--config", folder + "/args.yaml", "--project", scratch.file("runs")])
        XCTAssertEqual(repeated.status, 0, repeated.standardError)
        XCTAssertTrue(repeated.standardError.hasPrefix("run folder: \(scratch.file("runs/classify/train2"))\n"), repeated.standardError)
        XCTAssertEqual(try String(contentsOfFile: scratch.file("runs/classify/train2/args.yaml"), encoding: .utf8),
                       try String(contentsOfFile: folder + "/args.yaml", encoding: .utf8))
    }

    /// Tagging and detection runs draw precision-recall and F1 curves, per class and the mean.
    func testCurvesPerClassAndMean() throws {
        let scratch = Scratch()
        try writeData(scratch.file("items.h5"))
        for extra in [["--size", "24x24"]] {
            let composed = try percept(["compose", "tagging", "--from", scratch.file("items.h5"), "-o", scratch.file("tags.h5"),
                                        "--count", "24", "--seed", "2", "--quiet"] + extra)
            XCTAssertEqual(composed.status, 0, composed.standardError)
        }
        let trained = try percept(["tag", "train", "--data", scratch.file("tags.h5"), "--val", scratch.file("tags.h5"), "--epochs", "2",
                                   "--set", "widths=[4,4,4]", "--project", scratch.file("runs")])
        XCTAssertEqual(trained.status, 0, trained.standardError)
        for name in ["PR_curve.svg", "F1_curve.svg"] {
            let series = try elements(scratch.file("runs/tag/train/" + name)).filter { $0.name == "polyline" }.compactMap { $0.attributes["data-series"] }
            XCTAssertEqual(series.prefix(3), ["rows", "columns", "square"], name)
            XCTAssertTrue(series.last?.hasPrefix("all classes") == true, "\(name): \(series)")
        }
    }

    /// Ctrl-C stops a run between steps with one line naming its last checkpoint, and exit 130.
    func testCtrlCNamesTheLastCheckpoint() throws {
        let scratch = Scratch()
        try writeData(scratch.file("data.h5"))
        let process = Process()
        process.executableURL = try perceptExecutable()
        process.arguments = ["classify", "train", "--data", scratch.file("data.h5"), "--set", "preset=plain", "--set", "widths=[4,8]",
                             "--epochs", "1000", "--batch", "4", "--project", scratch.file("runs"), "--threads", "1"]
        let log = scratch.file("log")
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !((try? String(contentsOfFile: log, encoding: .utf8))?.contains("epoch 1/1000 done") ?? false) {
            usleep(20_000)
        }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertEqual(process.terminationStatus, 130, text)
        let checkpoint = scratch.file("runs/classify/train/weights/last.h5")
        let line = try XCTUnwrap(text.split(separator: "\n").last.map(String.init))
        XCTAssertTrue(line.hasPrefix("interrupted in epoch ") && line.contains("the last checkpoint is \(checkpoint)")
                      && line.hasSuffix(": --resume \(checkpoint) continues"), line)
        XCTAssertGreaterThanOrEqual(try ModelCheckpoint.read(path: checkpoint).epoch, 1)
    }
}
