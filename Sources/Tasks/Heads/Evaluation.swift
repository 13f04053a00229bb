import Foundation

/// One value of an evaluation report: a count, a metric, a metric that is undefined (a class
/// with no examples), or a name.
public enum ReportValue: Sendable, Equatable {
    case count(Int)
    case metric(Double)
    case undefined
    case text(String)

    /// The value as a JSON-serialisable object.
    var json: Any {
        switch self {
        case .count(let n): return n
        case .metric(let x): return x
        case .undefined: return NSNull()
        case .text(let s): return s
        }
    }

    public var number: Double? {
        switch self {
        case .count(let n): return Double(n)
        case .metric(let x): return x
        default: return nil
        }
    }
}

/// A head's evaluation: the number that picks the best model, a line for the training log, and
/// the full report `percept TASK eval` prints as a table or as JSON (one printer for every task).
public struct Evaluation: Sendable {
    /// A headline metric: its JSON key and, where the text line shows it, its label there.
    public struct Metric: Sendable {
        public var key: String, label: String?, value: ReportValue
        public init(_ key: String, _ label: String?, _ value: ReportValue) { self.key = key; self.label = label; self.value = value }
    }

    /// A column of the per-class table: its JSON key, its heading and its printf width.
    public struct Column: Sendable {
        public var key: String, heading: String, width: Int, decimals: Int
        public init(_ key: String, _ heading: String, width: Int, decimals: Int = 4) {
            self.key = key; self.heading = heading; self.width = width; self.decimals = decimals
        }
    }

    public var metricName: String
    /// What picks the best epoch.
    public var value: Double
    public var summary: String
    /// Headline metrics, in print order.
    public var metrics: [Metric]
    /// The per-class table: its JSON key (`per_class`), the row name's key (`class`), columns and rows.
    public var tableKey = "per_class", rowKey = "class"
    public var columns: [Column] = []
    public var rows: [(name: String, cells: [ReportValue])] = []
    /// A confusion matrix, rows truth and columns prediction, under `matrixKey` in JSON; printed
    /// in the table when `printsMatrix`.
    public var matrixKey = "confusion_matrix"
    public var matrix: [[Int]]?
    public var printsMatrix = true

    public init(metricName: String, value: Double, summary: String, metrics: [Metric]) {
        self.metricName = metricName; self.value = value; self.summary = summary; self.metrics = metrics
    }

    /// A headline metric's value by JSON key.
    public subscript(key: String) -> Double? { metrics.first { $0.key == key }?.value.number }

    /// The report as one JSON object with sorted keys.
    public func json() -> String {
        var object: [String: Any] = [:]
        for metric in metrics { object[metric.key] = metric.value.json }
        if !columns.isEmpty {
            object[tableKey] = rows.map { row -> [String: Any] in
                var entry: [String: Any] = [rowKey: row.name]
                for (column, cell) in zip(columns, row.cells) { entry[column.key] = cell.json }
                return entry
            }
        }
        if let matrix { object[matrixKey] = matrix }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The report as text: the headline line, the per-class table, the matrix.
    public func table() -> String {
        func text(_ value: ReportValue, width: Int = 0, decimals: Int = 4) -> String {
            let body: String
            switch value {
            case .count(let n): body = String(n)
            case .metric(let x): body = String(format: "%.\(decimals)f", x)
            case .undefined: body = "-"
            case .text(let s): body = s
            }
            return String(repeating: " ", count: max(0, width - body.count)) + body
        }
        var lines = [metrics.compactMap { metric in metric.label.map { "\($0) \(text(metric.value))" } }.joined(separator: "  ")]
        if !columns.isEmpty {
            let width = max(12, rows.map(\.name.count).max() ?? 0)
            lines.append(rowKey.padding(toLength: width, withPad: " ", startingAt: 0)
                         + columns.map { "  " + String(repeating: " ", count: max(0, $0.width - $0.heading.count)) + $0.heading }.joined())
            for row in rows {
                lines.append(row.name.padding(toLength: width, withPad: " ", startingAt: 0)
                             + zip(columns, row.cells).map { "  " + text($1, width: $0.width, decimals: $0.decimals) }.joined())
            }
        }
        if printsMatrix, let matrix {
            lines.append("confusion matrix (rows: truth, columns: prediction)")
            for row in matrix { lines.append(row.map { String(format: "%6d", $0) }.joined()) }
        }
        return lines.joined(separator: "\n")
    }
}
