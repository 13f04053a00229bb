import Foundation
import PerceptDatasets

/// What the validation plots of a run are drawn from, kept as `plots.json` in the run folder so
/// that `percept plot` can redraw them: the confusion matrix (classification) and per-class
/// precision/recall/F1 curves (tagging, detection).
public struct PlotData: Codable, Sendable {
    public var task: VisionTask
    public var classes: [String]
    /// confusion[truth][prediction].
    public var confusion: [[Int]]?
    public var curves: [ClassCurves]?

    public init(task: VisionTask, classes: [String], confusion: [[Int]]? = nil, curves: [ClassCurves]? = nil) {
        self.task = task; self.classes = classes; self.confusion = confusion; self.curves = curves
    }
}

/// The plots of a run or an evaluation, as SVG.
public enum RunPlots {
    /// Writes every plot the data allows into `folder`; returns the files written.
    @discardableResult
    public static func write(into folder: String, results: ResultsLog?, data: PlotData?) throws -> [String] {
        var written: [String] = []
        func save(_ name: String, _ svg: String) throws {
            try AtomicOutput.write(Data(svg.utf8), to: folder + "/" + name)
            written.append(folder + "/" + name)
        }
        if let results, !results.rows.isEmpty { try save("results.svg", Self.results(results)) }
        if let data {
            if let confusion = data.confusion, data.task == .classification {
                try save("confusion_matrix.svg", confusionMatrix(confusion, classes: data.classes, normalized: false))
                try save("confusion_matrix_normalized.svg", confusionMatrix(confusion, classes: data.classes, normalized: true))
            }
            if let curves = data.curves, !curves.isEmpty {
                try save("PR_curve.svg", precisionRecall(curves))
                try save("F1_curve.svg", f1(curves))
            }
        }
        return written
    }

    /// `results.svg`: a panel per column of the log (but `epoch`), each epoch's value as a thin
    /// line with points and a smoothed line over it.
    public static func results(_ log: ResultsLog) -> String {
        let columns = log.columns.filter { $0 != "epoch" }
        let perRow = 4, panelWidth = 260.0, panelHeight = 200.0
        let rows = (columns.count + perRow - 1) / perRow
        var svg = SVGDocument(width: panelWidth * Double(min(perRow, max(columns.count, 1))), height: panelHeight * Double(max(rows, 1)))
        let epochs = log.values("epoch")
        for (index, column) in columns.enumerated() {
            let values = log.values(column)
            let raw = zip(epochs, values).map { (x: $0, y: $1) }
            var chart = LineChart(title: column, xLabel: "epoch", yLabel: "", series: [
                .init("results", raw, color: SVGDocument.palette[0], width: 1.2),
                .init("smooth", zip(epochs, smoothed(values)).map { (x: $0, y: $1) }, color: SVGDocument.palette[1], width: 1.5, dashed: true),
            ])
            chart.legend = index == 0
            chart.integerX = true
            chart.draw(into: &svg, x: Double(index % perRow) * panelWidth, y: Double(index / perRow) * panelHeight,
                       width: panelWidth, height: panelHeight)
        }
        return svg.render()
    }

    /// A centred moving average over up to 5 epochs (fewer at the ends, and none for short runs,
    /// whose few points are the trend): the trend under the noise.
    static func smoothed(_ values: [Double]) -> [Double] {
        let half = min(2, max(0, (values.count - 1) / 4))
        return values.indices.map { i in
            let window = values[max(0, i - half)...min(values.count - 1, i + half)].filter(\.isFinite)
            return window.isEmpty ? .nan : window.reduce(0, +) / Double(window.count)
        }
    }

    /// A confusion matrix, rows truth and columns prediction: counts, or each row as fractions.
    public static func confusionMatrix(_ matrix: [[Int]], classes: [String], normalized: Bool) -> String {
        let k = matrix.count
        let cell = max(18, min(48, 560.0 / Double(max(k, 1)))), labelSpace = 110.0
        var svg = SVGDocument(width: labelSpace + cell * Double(k) + 30, height: labelSpace + cell * Double(k) + 50)
        svg.text(normalized ? "Confusion matrix (normalised by row)" : "Confusion matrix", x: svg.width / 2, y: 18, size: 13,
                 anchor: "middle", bold: true)
        let top = 30.0, left = labelSpace
        let largest = max(1, matrix.flatMap { $0 }.max() ?? 1)
        for (t, row) in matrix.enumerated() {
            let total = max(1, row.reduce(0, +))
            for (p, count) in row.enumerated() {
                let value = normalized ? Double(count) / Double(total) : Double(count) / Double(largest)
                let shade = Int(255 - value * 200)
                svg.rect(x: left + Double(p) * cell, y: top + Double(t) * cell, width: cell, height: cell,
                         fill: String(format: "#%02x%02xff", shade, shade), stroke: "#ccc")
                let text = normalized ? String(format: "%.2f", Double(count) / Double(total)) : String(count)
                if count > 0 {
                    svg.text(text, x: left + (Double(p) + 0.5) * cell, y: top + (Double(t) + 0.5) * cell + 3, size: min(10, cell / 3.2),
                             anchor: "middle", fill: value > 0.6 ? "#fff" : "#000")
                }
            }
            svg.text(classes.indices.contains(t) ? classes[t] : String(t), x: left - 4, y: top + (Double(t) + 0.5) * cell + 3,
                     size: 9, anchor: "end")
        }
        for p in 0..<k {
            let x = left + (Double(p) + 0.5) * cell, y = top + Double(k) * cell + 6
            svg.text(classes.indices.contains(p) ? classes[p] : String(p), x: x, y: y, size: 9, anchor: "end", rotate: -60)
        }
        svg.text("predicted", x: left + cell * Double(k) / 2, y: svg.height - 4, size: 10, anchor: "middle")
        svg.text("true", x: 12, y: top + cell * Double(k) / 2, size: 10, anchor: "middle", rotate: -90)
        return svg.render()
    }

    /// Precision against recall as the confidence threshold falls: each class thin, the mean bold.
    public static func precisionRecall(_ curves: [ClassCurves]) -> String {
        chart(title: "Precision-recall", xLabel: "recall", yLabel: "precision", curves: curves) { (x: $0.recall, y: $0.precision) }
    }

    /// F1 against the confidence threshold: each class thin, the mean bold (its best in the legend).
    public static func f1(_ curves: [ClassCurves]) -> String {
        chart(title: "F1 by confidence", xLabel: "confidence", yLabel: "F1", curves: curves) { (x: ClassCurves.confidences, y: $0.f1) }
    }

    private static func chart(title: String, xLabel: String, yLabel: String, curves: [ClassCurves],
                              axes: (ClassCurves) -> (x: [Double], y: [Double])) -> String {
        var series = curves.enumerated().map { index, curve in
            let (x, y) = axes(curve)
            return LineChart.Series(curve.name, zip(x, y).map { (x: $0, y: $1) }, color: SVGDocument.palette[index % 10], width: 1)
        }
        // The mean over classes: of F1 at each confidence; of precision at each recall (each
        // class's precision envelope, the best precision at that recall or beyond, as AP takes it).
        let grid = ClassCurves.confidences
        let mean = ClassCurves(name: "all classes", precision: average(curves.map { envelope($0, at: grid) }), recall: grid,
                               f1: average(curves.map(\.f1)))
        let (x, y) = axes(mean)
        let best = zip(ClassCurves.confidences, mean.f1).max { $0.1 < $1.1 }
        let label = title.hasPrefix("F1") ? String(format: "all classes %.2f at %.2f", best?.1 ?? 0, best?.0 ?? 0) : "all classes"
        series.append(.init(label, zip(x, y).map { (x: $0, y: $1) }, color: "#000", width: 3))
        var svg = SVGDocument(width: 780, height: 460)
        var chart = LineChart(title: title, xLabel: xLabel, yLabel: yLabel, series: series, xRange: 0...1, yRange: 0...1.02)
        chart.legendWidth = 170
        chart.draw(into: &svg, x: 0, y: 0, width: 780, height: 460)
        return svg.render()
    }

    /// A class's best precision at recall `r` or more, for each `r` of `recalls`.
    static func envelope(_ curve: ClassCurves, at recalls: [Double]) -> [Double] {
        recalls.map { r in zip(curve.recall, curve.precision).filter { $0.0 >= r - 1e-12 }.map(\.1).max() ?? 0 }
    }

    static func average(_ rows: [[Double]]) -> [Double] {
        guard let first = rows.first else { return [] }
        return first.indices.map { i in rows.map { $0[i] }.reduce(0, +) / Double(rows.count) }
    }
}

extension Model {
    /// The model's metrics over every image of `dataset`, in file order (batches of 16 scenes
    /// for detection, 256 images otherwise), and their evaluation.
    public func evaluation(on dataset: ImageDataset) throws -> (Evaluation, H.Metrics) {
        let c = configuration
        let loader = DataLoader(dataset, batchSize: H.task == .detection ? 16 : 256, shuffle: false, mean: c.mean, std: c.std)
        let metrics = try measure(loader)
        return (head.evaluation(of: metrics, classes: c.classes), metrics)
    }

    /// The plots of an evaluation (`metrics` and their `evaluation` on `dataset`) in `directory`
    /// (created if missing): plots.json, the SVGs it allows (and results.svg of `results`), and
    /// val_predictions.png where the head's predictions can be drawn beside the truth; returns
    /// the files written.
    @discardableResult
    public func writePlots(of metrics: H.Metrics, evaluation: Evaluation, on dataset: ImageDataset, into directory: String,
                           results: ResultsLog? = nil) throws -> [String] {
        let c = configuration
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let curves = head.scoredPredictions(of: metrics).map { zip(c.classes, $0).map { ClassCurves(name: $0, $1) } }
        let data = PlotData(task: H.task, classes: c.classes, confusion: evaluation.matrix, curves: curves)
        let dataPath = directory + "/plots.json"
        try AtomicOutput.write(try JSONEncoder().encode(data), to: dataPath)
        var written = [dataPath] + (try RunPlots.write(into: directory, results: results, data: data))
        if let mosaic = try ValidationMosaic.make(self, dataset) {
            try PNG.write(mosaic, to: directory + "/val_predictions.png")
            written.append(directory + "/val_predictions.png")
        }
        return written
    }
}
