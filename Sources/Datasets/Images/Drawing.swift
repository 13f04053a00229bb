import Foundation

/// Pictures for people to look at: class colours, mask overlays with a legend, boxes with
/// labels. Text is drawn in a built-in 5x7 pixel font (upper case, digits, a little
/// punctuation), so no font library is needed.
public enum Drawing {
    public typealias Color = (UInt8, UInt8, UInt8)

    /// A distinct, saturated colour per class (cycling after twelve).
    public static func classColor(_ label: Int) -> Color {
        let palette: [Color] = [
            (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40),
        ]
        return palette[((label % palette.count) + palette.count) % palette.count]
    }

    /// `image` (any channel count) as RGB, each pixel repeated `zoom` times.
    public static func rgb(_ image: Image, zoom: Int = 1) -> Image {
        let w = image.width * zoom, h = image.height * zoom, c = image.channels
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let source = ((y / zoom) * image.width + x / zoom) * c
                let target = (y * w + x) * 3
                if c >= 3 {
                    out[target] = image.pixels[source]; out[target + 1] = image.pixels[source + 1]; out[target + 2] = image.pixels[source + 2]
                } else {
                    let v = image.pixels[source]
                    out[target] = v; out[target + 1] = v; out[target + 2] = v
                }
            }
        }
        return Image(width: w, height: h, channels: 3, pixels: out)
    }

    /// The smallest zoom that makes a side of `side` pixels at least `minimum` wide.
    public static func zoom(for side: Int, minimum: Int = 256) -> Int { max(1, (minimum + side - 1) / max(side, 1)) }

    /// `image` with every pixel of class c > 0 in `mask` tinted with c's colour (half opacity),
    /// enlarged for viewing, and a legend of the classes present (colour swatch and name).
    public static func segmentationOverlay(image: Image, mask: Image, classNames: [String]) -> Image {
        precondition(mask.width == image.width && mask.height == image.height, "mask and image sizes differ")
        let zoom = zoom(for: max(image.width, image.height))
        var picture = rgb(image, zoom: zoom)
        tint(&picture, mask: mask, zoom: zoom)
        return withLegend(picture, legend(of: mask, classNames: classNames))
    }

    /// `image` enlarged for viewing with each box outlined in its class's colour and labelled
    /// with the class name and score. `boxes` are (corners in image pixels, class, score).
    public static func boxes(image: Image, _ boxes: [(box: DetectionBox, score: Float)], classNames: [String]) -> Image {
        let zoom = zoom(for: max(image.width, image.height), minimum: 480)
        var picture = rgb(image, zoom: zoom)
        draw(boxes, on: &picture, zoom: zoom, classNames: classNames)
        return picture
    }

    /// Everything predicted for one image in one picture: the mask tinted in (if any), the boxes
    /// with their labels, a caption strip above (the image's class, its tags) and the mask's
    /// legend below.
    public static func summary(image: Image, mask: Image?, maskNames: [String], boxes: [(box: DetectionBox, score: Float)],
                               boxNames: [String], caption: [String]) -> Image {
        let zoom = zoom(for: max(image.width, image.height), minimum: 480)
        var picture = rgb(image, zoom: zoom)
        if let mask {
            precondition(mask.width == image.width && mask.height == image.height, "mask and image sizes differ")
            tint(&picture, mask: mask, zoom: zoom)
        }
        draw(boxes, on: &picture, zoom: zoom, classNames: boxNames)
        return withLegend(withCaption(picture, caption), mask.map { legend(of: $0, classNames: maskNames) } ?? [])
    }

    /// Tints each pixel of `picture` (`mask` enlarged `zoom` times) of class c > 0 with c's colour.
    static func tint(_ picture: inout Image, mask: Image, zoom: Int) {
        let w = picture.width
        for y in 0..<picture.height {
            for x in 0..<w {
                let label = Int(mask.pixels[(y / zoom) * mask.width + x / zoom])
                guard label > 0 else { continue }
                let color = classColor(label - 1), offset = (y * w + x) * 3
                picture.pixels[offset] = UInt8((Int(picture.pixels[offset]) + Int(color.0)) / 2)
                picture.pixels[offset + 1] = UInt8((Int(picture.pixels[offset + 1]) + Int(color.1)) / 2)
                picture.pixels[offset + 2] = UInt8((Int(picture.pixels[offset + 2]) + Int(color.2)) / 2)
            }
        }
    }

    /// The classes present in `mask` (0 is background) with their colours.
    static func legend(of mask: Image, classNames: [String]) -> [(String, Color)] {
        let present = Set(mask.pixels.map(Int.init)).filter { $0 > 0 }.sorted()
        return present.map { ($0 < classNames.count ? classNames[$0] : "class \($0)", classColor($0 - 1)) }
    }

    /// Outlines each box (image pixels; `picture` is the image enlarged `zoom` times) in its
    /// class's colour with its class name and score.
    static func draw(_ boxes: [(box: DetectionBox, score: Float)], on picture: inout Image, zoom: Int, classNames: [String]) {
        for (box, score) in boxes {
            let label = Int(box.label), color = classColor(label)
            let x = Int((box.x1 * Float(zoom)).rounded()), y = Int((box.y1 * Float(zoom)).rounded())
            let width = Int(((box.x2 - box.x1) * Float(zoom)).rounded()), height = Int(((box.y2 - box.y1) * Float(zoom)).rounded())
            strokeRectangle(&picture, x: x, y: y, width: max(width, 2), height: max(height, 2), thickness: 2, color: color)
            let text = (label < classNames.count ? classNames[label] : "class \(label)") + String(format: " %.2f", score)
            let size = textSize(text, scale: 1)
            let textY = y - size.height - 3 >= 0 ? y - size.height - 3 : y + 2
            fillRectangle(&picture, x: x, y: textY - 1, width: size.width + 4, height: size.height + 3, color: color)
            drawText(&picture, text, x: x + 2, y: textY + 1, scale: 1, color: (0, 0, 0))
        }
    }

    /// `picture` with a strip above it holding `lines` of white text (none: `picture`).
    public static func withCaption(_ picture: Image, _ lines: [String]) -> Image {
        guard !lines.isEmpty else { return picture }
        let scale = 2, row = (glyphHeight + 3) * scale, margin = 4
        let width = max(picture.width, margin * 2 + (lines.map { textSize($0, scale: scale).width }.max() ?? 0))
        let top = margin * 2 + row * lines.count
        var out = Image(width: width, height: picture.height + top, channels: 3, pixels: [UInt8](repeating: 32, count: width * (picture.height + top) * 3))
        for y in 0..<picture.height {
            let source = y * picture.width * 3, target = ((y + top) * width) * 3
            out.pixels.replaceSubrange(target..<(target + picture.width * 3), with: picture.pixels[source..<(source + picture.width * 3)])
        }
        for (i, line) in lines.enumerated() {
            drawText(&out, line, x: margin, y: margin + i * row, scale: scale, color: (255, 255, 255))
        }
        return out
    }

    /// `picture` with a legend strip below it: one row per entry, a colour swatch and its name.
    public static func withLegend(_ picture: Image, _ entries: [(String, Color)]) -> Image {
        guard !entries.isEmpty else { return picture }
        let scale = 2, row = (glyphHeight + 3) * scale, margin = 4
        let textWidth = entries.map { textSize($0.0, scale: scale).width }.max() ?? 0
        let width = max(picture.width, margin * 2 + row + scale * 2 + textWidth)
        let height = picture.height + margin * 2 + row * entries.count
        var out = Image(width: width, height: height, channels: 3, pixels: [UInt8](repeating: 32, count: width * height * 3))
        for y in 0..<picture.height {
            let source = y * picture.width * 3
            out.pixels.replaceSubrange((y * width * 3)..<(y * width * 3 + picture.width * 3),
                                       with: picture.pixels[source..<(source + picture.width * 3)])
        }
        for (i, (name, color)) in entries.enumerated() {
            let top = picture.height + margin + i * row
            fillRectangle(&out, x: margin, y: top, width: glyphHeight * scale, height: glyphHeight * scale, color: color)
            drawText(&out, name, x: margin + glyphHeight * scale + 3 * scale, y: top, scale: scale, color: (255, 255, 255))
        }
        return out
    }

    /// Fills a rectangle, clipped to the image (RGB).
    public static func fillRectangle(_ image: inout Image, x: Int, y: Int, width: Int, height: Int, color: Color) {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(image.width, x + width), y1 = min(image.height, y + height)
        guard x0 < x1, y0 < y1 else { return }
        for py in y0..<y1 {
            for px in x0..<x1 {
                let offset = (py * image.width + px) * 3
                image.pixels[offset] = color.0; image.pixels[offset + 1] = color.1; image.pixels[offset + 2] = color.2
            }
        }
    }

    /// Outlines a rectangle `thickness` pixels wide, clipped to the image (RGB).
    public static func strokeRectangle(_ image: inout Image, x: Int, y: Int, width: Int, height: Int, thickness: Int, color: Color) {
        fillRectangle(&image, x: x, y: y, width: width, height: thickness, color: color)
        fillRectangle(&image, x: x, y: y + height - thickness, width: width, height: thickness, color: color)
        fillRectangle(&image, x: x, y: y, width: thickness, height: height, color: color)
        fillRectangle(&image, x: x + width - thickness, y: y, width: thickness, height: height, color: color)
    }

    public static let glyphWidth = 5, glyphHeight = 7

    /// Size in pixels of `text` drawn at `scale`.
    public static func textSize(_ text: String, scale: Int) -> (width: Int, height: Int) {
        (max(0, text.count * (glyphWidth + 1) - 1) * scale, glyphHeight * scale)
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` x `scale`,
    /// clipped to the image (RGB). Lower case is drawn as upper case; characters the font
    /// lacks as a box.
    public static func drawText(_ image: inout Image, _ text: String, x: Int, y: Int, scale: Int, color: Color) {
        var cursor = x
        for character in text.uppercased() {
            let rows = font[character] ?? [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F]
            for (r, bits) in rows.enumerated() {
                for c in 0..<glyphWidth where bits & (1 << (glyphWidth - 1 - c)) != 0 {
                    fillRectangle(&image, x: cursor + c * scale, y: y + r * scale, width: scale, height: scale, color: color)
                }
            }
            cursor += (glyphWidth + 1) * scale
        }
    }

    /// 5x7 glyphs, one byte per row, the high bit of the five the leftmost pixel.
    static let font: [Character: [UInt8]] = [
        " ": [0, 0, 0, 0, 0, 0, 0],
        "A": [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], "B": [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        "C": [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], "D": [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        "E": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], "F": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        "G": [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], "H": [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        "I": [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], "J": [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        "K": [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], "L": [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        "M": [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], "N": [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        "O": [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], "P": [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        "Q": [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], "R": [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        "S": [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], "T": [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        "U": [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], "V": [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        "W": [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], "X": [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        "Y": [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04], "Z": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        "0": [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], "1": [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "2": [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], "3": [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        "4": [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], "5": [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        "6": [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], "7": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        "8": [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], "9": [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        "-": [0, 0, 0, 0x1F, 0, 0, 0], "/": [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        ".": [0, 0, 0, 0, 0, 0x0C, 0x0C], ":": [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        ",": [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        "%": [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], "(": [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ")": [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], "_": [0, 0, 0, 0, 0, 0, 0x1F],
        "+": [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0], "'": [0x04, 0x04, 0, 0, 0, 0, 0],
    ]
}
