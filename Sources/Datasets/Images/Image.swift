import Foundation

/// An 8-bit image with interleaved channels (`[H, W, C]`, as PNG stores it).
public struct Image: Equatable, Sendable {
    /// The largest image, in pixels, that Percept's readers accept (64 megapixels, 8192 x 8192):
    /// PNG headers, IDX records and the images of dataset files are checked against it before
    /// any pixel memory is allocated, so a hostile header fails with an error instead of an
    /// abort. The PNG readers take a `maximumPixels` argument to choose another limit.
    public static let maximumPixels = 1 << 26

    public var width: Int
    public var height: Int
    public var channels: Int
    /// `height * width * channels` bytes, row by row, channels interleaved.
    public var pixels: [UInt8]

    /// An image from interleaved pixels.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels,
                     "\(width)x\(height)x\(channels) image needs \(width * height * channels) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A black image.
    public init(width: Int, height: Int, channels: Int) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: 0, count: width * height * channels))
    }

    /// Copies the pixels planar (`[C, H, W]`, the layout of the `images` datasets) into `destination`.
    public func copyPlanar(into destination: UnsafeMutablePointer<UInt8>) {
        let plane = width * height
        pixels.withUnsafeBufferPointer { source in
            if channels == 1 { destination.update(from: source.baseAddress!, count: plane); return }
            for index in 0..<plane {
                for channel in 0..<channels {
                    destination[channel * plane + index] = source[index * channels + channel]
                }
            }
        }
    }

    /// An image from planar `[C, H, W]` bytes.
    public init(planar source: UnsafePointer<UInt8>, width: Int, height: Int, channels: Int) {
        let plane = width * height
        var pixels = [UInt8](repeating: 0, count: plane * channels)
        pixels.withUnsafeMutableBufferPointer { destination in
            for index in 0..<plane {
                for channel in 0..<channels {
                    destination[index * channels + channel] = source[channel * plane + index]
                }
            }
        }
        self.init(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// The image resized to `width` x `height` with `filter` (see `ResamplingFilter`; the
    /// default, bilinear, averages over the covered area when shrinking so large reductions do
    /// not alias).
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResamplingFilter = .bilinear) -> Image {
        if newWidth == width && newHeight == height { return self }
        if filter == .nearest { return resizedNearest(width: newWidth, height: newHeight) }
        let horizontal = ResamplingWeights(source: width, destination: newWidth, filter: filter)
        let vertical = ResamplingWeights(source: height, destination: newHeight, filter: filter)
        // Horizontal pass into floats, then vertical pass with rounding.
        var intermediate = [Float](repeating: 0, count: height * newWidth * channels)
        var output = [UInt8](repeating: 0, count: newHeight * newWidth * channels)
        let channels = self.channels
        pixels.withUnsafeBufferPointer { source in
            intermediate.withUnsafeMutableBufferPointer { middle in
                for y in 0..<height {
                    let row = source.baseAddress! + y * width * channels
                    let out = middle.baseAddress! + y * newWidth * channels
                    for x in 0..<newWidth {
                        let first = horizontal.first[x]
                        for channel in 0..<channels {
                            var sum: Float = 0
                            for k in 0..<horizontal.count[x] {
                                sum += horizontal.weights[horizontal.offset[x] + k] * Float(row[(first + k) * channels + channel])
                            }
                            out[x * channels + channel] = sum
                        }
                    }
                }
            }
        }
        intermediate.withUnsafeBufferPointer { middle in
            output.withUnsafeMutableBufferPointer { out in
                let rowLength = newWidth * channels
                for y in 0..<newHeight {
                    let first = vertical.first[y]
                    let destination = out.baseAddress! + y * rowLength
                    for i in 0..<rowLength {
                        var sum: Float = 0
                        for k in 0..<vertical.count[y] {
                            sum += vertical.weights[vertical.offset[y] + k] * middle[(first + k) * rowLength + i]
                        }
                        destination[i] = UInt8(max(0, min(255, sum.rounded())))
                    }
                }
            }
        }
        return Image(width: newWidth, height: newHeight, channels: channels, pixels: output)
    }

    /// The image resized by nearest neighbour: for index masks, whose values must not blend.
    public func resizedNearest(width newWidth: Int, height newHeight: Int) -> Image {
        if newWidth == width && newHeight == height { return self }
        var output = [UInt8](repeating: 0, count: newWidth * newHeight * channels)
        let sourceX = (0..<newWidth).map { min(width - 1, Int((Double($0) + 0.5) * Double(width) / Double(newWidth))) }
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { out in
                for y in 0..<newHeight {
                    let sy = min(height - 1, Int((Double(y) + 0.5) * Double(height) / Double(newHeight)))
                    for x in 0..<newWidth {
                        for channel in 0..<channels {
                            out[(y * newWidth + x) * channels + channel] = source[(sy * width + sourceX[x]) * channels + channel]
                        }
                    }
                }
            }
        }
        return Image(width: newWidth, height: newHeight, channels: channels, pixels: output)
    }

    /// The image with `target` channels (1 or 3) by the colour rule (`ImageFile`): gray
    /// replicated to RGB; RGB to gray as PIL's `convert("L")` (L = (19595 R + 38470 G + 7471 B
    /// + 32768) >> 16); alpha dropped.
    public func converted(toChannels target: Int) -> Image {
        precondition(target == 1 || target == 3, "channels must be 1 or 3, got \(target)")
        if target == channels { return self }
        let plane = width * height
        var output = [UInt8](repeating: 0, count: plane * target)
        let channels = self.channels
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { out in
                for index in 0..<plane {
                    let pixel = source.baseAddress! + index * channels
                    switch (target, channels >= 3) {
                    case (3, true):
                        out[index * 3] = pixel[0]; out[index * 3 + 1] = pixel[1]; out[index * 3 + 2] = pixel[2]
                    case (3, false):
                        out[index * 3] = pixel[0]; out[index * 3 + 1] = pixel[0]; out[index * 3 + 2] = pixel[0]
                    case (_, true):
                        let r = Int(pixel[0]) * 19595, g = Int(pixel[1]) * 38470, b = Int(pixel[2]) * 7471
                        out[index] = UInt8((r + g + b + 0x8000) >> 16)
                    default:
                        out[index] = pixel[0]
                    }
                }
            }
        }
        return Image(width: width, height: height, channels: target, pixels: output)
    }
}

/// Where a letterboxed image sits in its canvas: canvas pixel = image pixel * `scale` + offset.
public struct Letterbox: Equatable, Sendable {
    public var scale: Float, offsetX: Int, offsetY: Int, width: Int, height: Int

    /// The placement of a `width` x `height` image in a `canvasWidth` x `canvasHeight` canvas:
    /// scaled by the smaller of the two ratios (aspect kept), centred.
    public init(width: Int, height: Int, canvasWidth: Int, canvasHeight: Int) {
        let scale = Swift.min(Double(canvasWidth) / Double(width), Double(canvasHeight) / Double(height))
        self.width = Swift.max(1, Swift.min(canvasWidth, Int((Double(width) * scale).rounded())))
        self.height = Swift.max(1, Swift.min(canvasHeight, Int((Double(height) * scale).rounded())))
        self.scale = Float(scale)
        offsetX = (canvasWidth - self.width) / 2
        offsetY = (canvasHeight - self.height) / 2
    }
}

extension Image {
    /// The image scaled to fit `width` x `height` with its aspect kept (bilinear, as `resized`),
    /// centred on a canvas of `fill` (Ultralytics' letterbox), and where it went.
    public func letterboxed(width canvasWidth: Int, height canvasHeight: Int, fill: UInt8 = 0,
                            nearest: Bool = false) -> (image: Image, placement: Letterbox) {
        let placement = Letterbox(width: width, height: height, canvasWidth: canvasWidth, canvasHeight: canvasHeight)
        let scaled = nearest ? resizedNearest(width: placement.width, height: placement.height)
            : resized(width: placement.width, height: placement.height)
        var canvas = [UInt8](repeating: fill, count: canvasWidth * canvasHeight * channels)
        let row = placement.width * channels
        for y in 0..<placement.height {
            let to = ((y + placement.offsetY) * canvasWidth + placement.offsetX) * channels
            canvas.replaceSubrange(to..<(to + row), with: scaled.pixels[(y * row)..<((y + 1) * row)])
        }
        return (Image(width: canvasWidth, height: canvasHeight, channels: channels, pixels: canvas), placement)
    }
}

/// Per-output-pixel source ranges and weights of a separable resampling filter.
struct ResamplingWeights {
    var first: [Int] = []
    var count: [Int] = []
    var offset: [Int] = []
    var weights: [Float] = []

    init(source: Int, destination: Int, filter: ResamplingFilter = .bilinear) {
        let scale = Double(source) / Double(destination)
        // Pixel centres map to pixel centres; with aligned corners the outermost ones map to each other.
        let corners = filter == .bilinearAlignedCorners
        let step = corners ? (destination > 1 ? Double(source - 1) / Double(destination - 1) : 0) : scale
        // Widening the kernel by the reduction factor makes it average the covered area.
        let stretch = corners ? 1 : max(scale, 1)
        let radius = (filter == .bicubic ? 2 : 1) * stretch
        for x in 0..<destination {
            let center = corners ? Double(x) * step + 0.5 : (Double(x) + 0.5) * scale
            let low = max(0, Int((center - radius).rounded(.down)))
            let high = min(source, Int((center + radius).rounded(.up)))
            var row: [Double] = []
            for i in low..<high {
                row.append(filter.kernel((Double(i) + 0.5 - center) / stretch))
            }
            var total = row.reduce(0, +)
            if total <= 0 {
                // Degenerate case (a single source pixel at the edge): nearest neighbour.
                row = row.map { _ in 0 }
                row[min(row.count - 1, max(0, Int(center) - low))] = 1
                total = 1
            }
            first.append(low)
            count.append(row.count)
            offset.append(weights.count)
            weights.append(contentsOf: row.map { Float($0 / total) })
        }
    }
}

/// How `Image.resized` computes a pixel from its neighbours. Image libraries differ here (and
/// so do the datasets made with them), which is why `percept compose --resample` offers several.
public enum ResamplingFilter: String, Sendable, CaseIterable {
    /// Triangle filter between pixel centres (PIL's `BILINEAR`): bilinear interpolation when
    /// enlarging, widened by the reduction factor when shrinking, weights renormalised at the edges.
    case bilinear
    /// Keys' cubic convolution with a = -0.5 (PIL's `BICUBIC`), widened when shrinking: sharper
    /// than bilinear, with slight ringing at edges.
    case bicubic
    /// Bilinear interpolation with the corner pixels' centres mapped onto each other (PyTorch's
    /// `align_corners=True`, scikit-image's `order=1` before 0.19), never widened.
    case bilinearAlignedCorners = "bilinear-corners"
    /// The nearest source pixel.
    case nearest

    /// The filter's weight at `distance` source pixels (of the widened filter's unit).
    func kernel(_ distance: Double) -> Double {
        let d = abs(distance)
        switch self {
        case .bilinear, .bilinearAlignedCorners, .nearest:
            return max(0, 1 - d)
        case .bicubic:
            let a = -0.5
            if d < 1 { return ((a + 2) * d - (a + 3)) * d * d + 1 }
            if d < 2 { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a }
            return 0
        }
    }
}
