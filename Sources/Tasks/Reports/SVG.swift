import Foundation

/// A small SVG writer for the plots of a run: text that diffs, tests read as XML, and a browser
/// opens. Coordinates are SVG user units (pixels), y down.
public struct SVGDocument {
    public let width: Double, height: Double
    private var body: [String] = []

    public init(width: Double, height: Double) { self.width = width; self.height = height }

    /// The ten colours of matplotlib's tab10, so plots look as users of it expect.
    public static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                 "#bcbd22", "#17becf"]

    public mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, stroke: String? = nil) {
        body.append(#"<rect x="\#(n(x))" y="\#(n(y))" width="\#(n(width))" height="\#(n(height))" fill="\#(fill)""#
                    + (stroke.map { #" stroke="\#($0)""# } ?? "") + "/>")
    }

    public mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String = "#000", width: Double = 1) {
        body.append(#"<line x1="\#(n(x1))" y1="\#(n(y1))" x2="\#(n(x2))" y2="\#(n(y2))" stroke="\#(stroke)" stroke-width="\#(n(width))"/>"#)
    }

    /// A polyline through `points`; `label` becomes its `data-series` attribute (tests read it).
    public mutating func polyline(_ points: [(x: Double, y: Double)], stroke: String, width: Double = 1.5, dashed: Bool = false,
                                  opacity: Double = 1, label: String? = nil) {
        guard !points.isEmpty else { return }
        let coordinates = points.map { "\(n($0.x)),\(n($0.y))" }.joined(separator: " ")
        body.append(#"<polyline points="\#(coordinates)" fill="none" stroke="\#(stroke)" stroke-width="\#(n(width))""#
                    + (dashed ? #" stroke-dasharray="4 3""# : "") + (opacity < 1 ? #" stroke-opacity="\#(n(opacity))""# : "")
                    + (label.map { #" data-series="\#(Self.escape($0))""# } ?? "") + "/>")
    }

    public mutating func text(_ content: String, x: Double, y: Double, size: Double = 11, anchor: String = "start",
                              rotate: Double? = nil, fill: String = "#000", bold: Bool = false) {
        let transform = rotate.map { #" transform="rotate(\#(n($0)) \#(n(x)) \#(n(y)))""# } ?? ""
        body.append(#"<text x="\#(n(x))" y="\#(n(y))" font-size="\#(n(size))" text-anchor="\#(anchor)" fill="\#(fill)""#
                    + (bold ? #" font-weight="bold""# : "") + transform + ">" + Self.escape(content) + "</text>")
    }

    /// The document's text.
    public func render() -> String {
        #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
            + #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(n(width))" height="\#(n(height))" viewBox="0 0 \#(n(width)) \#(n(height))" font-family="sans-serif">"#
            + "\n" + ##"<rect x="0" y="0" width="\##(n(width))" height="\##(n(height))" fill="#fff"/>"## + "\n"
            + body.joined(separator: "\n") + "\n</svg>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// Numbers with at most two decimals, no trailing zeros.
    func n(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.2f", rounded)
            .replacingOccurrences(of: #"0+$"#, with: "", options: .regularExpression)
    }
}

/// One line chart: axes with ticks, series of (x, y) points, a title and a legend.
public struct LineChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public var width: Double = 1.5
        public var dashed = false
        public var opacity: Double = 1
        public init(_ name: String, _ points: [(x: Double, y: Double)], color: String, width: Double = 1.5, dashed: Bool = false,
                    opacity: Double = 1) {
            self.name = name; self.points = points; self.color = color; self.width = width; self.dashed = dashed; self.opacity = opacity
        }
    }

    public var title: String
    public var xLabel: String, yLabel: String
    public var series: [Series]
    /// Fixed axis ranges (nil: the data's, with a margin).
    public var xRange: ClosedRange<Double>?, yRange: ClosedRange<Double>?
    public var legend = true
    /// Width kept right of the plot for the legend (0: the legend goes inside, top right).
    public var legendWidth = 0.0
    /// Ticks on whole numbers only (epochs).
    public var integerX = false

    public init(title: String, xLabel: String, yLabel: String, series: [Series],
                xRange: ClosedRange<Double>? = nil, yRange: ClosedRange<Double>? = nil) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
        self.xRange = xRange; self.yRange = yRange
    }

    /// Draws the chart in the box at (`x`, `y`) of `width` x `height`.
    public func draw(into svg: inout SVGDocument, x: Double, y: Double, width: Double, height: Double) {
        let left = x + 48, right = x + width - 10 - legendWidth, top = y + 24, bottom = y + height - 34
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }.filter(\.isFinite)
        let xr = xRange ?? Self.range(xs), yr = yRange ?? Self.range(ys, margin: 0.05)
        func px(_ v: Double) -> Double { left + (v - xr.lowerBound) / max(xr.upperBound - xr.lowerBound, 1e-12) * (right - left) }
        func py(_ v: Double) -> Double { bottom - (v - yr.lowerBound) / max(yr.upperBound - yr.lowerBound, 1e-12) * (bottom - top) }
        svg.text(title, x: (left + right) / 2, y: y + 15, size: 12, anchor: "middle", bold: true)
        svg.rect(x: left, y: top, width: right - left, height: bottom - top, fill: "none", stroke: "#444")
        for tick in Self.ticks(xr) where !integerX || tick == tick.rounded() {
            svg.line(x1: px(tick), y1: bottom, x2: px(tick), y2: bottom + 4, stroke: "#444")
            svg.line(x1: px(tick), y1: top, x2: px(tick), y2: bottom, stroke: "#eee")
            svg.text(Self.label(tick), x: px(tick), y: bottom + 15, size: 9, anchor: "middle")
        }
        for tick in Self.ticks(yr) {
            svg.line(x1: left - 4, y1: py(tick), x2: left, y2: py(tick), stroke: "#444")
            svg.line(x1: left, y1: py(tick), x2: right, y2: py(tick), stroke: "#eee")
            svg.text(Self.label(tick), x: left - 6, y: py(tick) + 3, size: 9, anchor: "end")
        }
        svg.text(xLabel, x: (left + right) / 2, y: bottom + 28, size: 10, anchor: "middle")
        svg.text(yLabel, x: x + 11, y: (top + bottom) / 2, size: 10, anchor: "middle", rotate: -90)
        for s in series {
            svg.polyline(s.points.filter { $0.y.isFinite }.map { (px($0.x), py($0.y)) }, stroke: s.color, width: s.width,
                         dashed: s.dashed, opacity: s.opacity, label: s.name)
        }
        guard legend else { return }
        let named = series.filter { !$0.name.isEmpty && $0.opacity >= 1 }
        let legendX = legendWidth > 0 ? right + 12 : right - 110
        for (i, s) in named.prefix(24).enumerated() {
            let ly = top + 10 + Double(i) * 13
            svg.line(x1: legendX, y1: ly - 3, x2: legendX + 15, y2: ly - 3, stroke: s.color, width: 2)
            svg.text(s.name, x: legendX + 19, y: ly, size: 9)
        }
    }

    static func range(_ values: [Double], margin: Double = 0) -> ClosedRange<Double> {
        guard let low = values.min(), let high = values.max() else { return 0...1 }
        if low == high { return (low - 0.5)...(high + 0.5) }
        let pad = (high - low) * margin
        return (low - pad)...(high + pad)
    }

    /// About five round tick values inside `range`.
    static func ticks(_ range: ClosedRange<Double>) -> [Double] {
        let span = range.upperBound - range.lowerBound
        guard span > 0, span.isFinite else { return [range.lowerBound] }
        let raw = span / 5, magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var value = (range.lowerBound / step).rounded(.up) * step
        while value <= range.upperBound + step * 1e-9 { ticks.append(value); value += step }
        return ticks
    }

    static func label(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e6 { return String(Int(value)) }
        return String(format: abs(value) < 0.01 ? "%.2g" : "%.3g", value)
    }
}
