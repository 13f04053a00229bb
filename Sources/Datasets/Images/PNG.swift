import CPNG
import Foundation

/// How a PNG file stores its pixels (read from its header).
public struct PNGInfo: Sendable {
    public let width: Int
    public let height: Int
    /// Channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palette images report 3 or 4).
    public let channels: Int
    public let isPalette: Bool
    public let is16Bit: Bool
}

/// PNG reading and writing through libpng's simplified `png_image` API, which keeps libpng's
/// longjmp error handling inside C.
public enum PNG {
    /// Whether `bytes` start with the PNG signature.
    public static func isPNG(_ bytes: [UInt8]) -> Bool { bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) }

    /// Reads the header of the PNG at `path`; fails like `read` for images over `maximumPixels`.
    public static func info(path: String, maximumPixels: Int = Image.maximumPixels) throws -> PNGInfo {
        try info(bytes: readBytes(path), path: path, maximumPixels: maximumPixels)
    }

    /// Reads the header of PNG bytes held in memory.
    public static func info(bytes: [UInt8], path: String, maximumPixels: Int = Image.maximumPixels) throws -> PNGInfo {
        var image = png_image()
        return try bytes.withUnsafeBytes { raw in
            try beginRead(&image, raw, path: path, maximumPixels: maximumPixels)
            defer { png_image_free(&image) }
            return info(of: image)
        }
    }

    /// Reads the header into `image` and refuses, before anything is allocated, an image over
    /// `maximumPixels` or one whose pixels could not fit in the file: deflate packs at most
    /// 1032 bytes into one, so a header declaring more pixel bytes than 1032 times the file size
    /// is truncated or hostile. On error `image` holds nothing to free.
    static func beginRead(_ image: inout png_image, _ raw: UnsafeRawBufferPointer, path: String,
                          maximumPixels: Int) throws {
        guard percept_png_begin_read(&image, raw.baseAddress, raw.count) != 0 else {
            throw DatasetError(path, "not a valid PNG (\(message(image)))")
        }
        let width = Int(image.width), height = Int(image.height)
        // libpng checked the signature and that IHDR comes first: bit depth and colour type
        // are its bytes 24 and 25.
        let bitDepth = Int(raw[24]), samples = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(raw[25])] ?? 4
        let pixelBytes = height * ((width * samples * bitDepth + 7) / 8)
        var problem: String?
        if width * height > maximumPixels {
            problem = "PNG header declares \(width)x\(height) pixels, over the limit of \(maximumPixels) pixels"
                + (maximumPixels == Image.maximumPixels ? " (Image.maximumPixels)" : "")
        } else if pixelBytes > 1032 * raw.count {
            problem = "PNG header declares \(width)x\(height) pixels, which a file of \(raw.count) bytes cannot hold (truncated or corrupt)"
        }
        if let problem {
            png_image_free(&image)
            throw DatasetError(path, problem)
        }
    }

    static func info(of image: png_image) -> PNGInfo {
        let format = image.format
        let color = format & percept_png_format_rgb() != 0
        let alpha = format & percept_png_format_gray_alpha() != 0
        return PNGInfo(width: Int(image.width), height: Int(image.height),
                       channels: (color ? 3 : 1) + (alpha ? 1 : 0),
                       isPalette: format & percept_png_format_rgb_colormap() & ~percept_png_format_rgb() != 0,
                       is16Bit: format & percept_png_format_linear_gray() != 0)
    }

    static func message(_ image: png_image) -> String {
        var copy = image.message
        return withUnsafeBytes(of: &copy) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func readBytes(_ path: String) throws -> [UInt8] { [UInt8](try readData(path)) }

    /// Reads any PNG (8/16-bit gray, gray+alpha, RGB, RGBA, palette) as 8-bit pixels with
    /// `channels` channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). Alpha dropped by the
    /// conversion is composited onto black; 16-bit samples are scaled to 8 bits.
    /// Images over `maximumPixels` are an error.
    public static func read(path: String, channels: Int, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        try read(bytes: readBytes(path), path: path, channels: channels, maximumPixels: maximumPixels)
    }

    /// Decodes PNG bytes held in memory; `path` only names the source in errors.
    public static func read(bytes: [UInt8], path: String, channels: Int,
                            maximumPixels: Int = Image.maximumPixels) throws -> Image {
        let formats: [UInt32] = [percept_png_format_gray(), percept_png_format_gray_alpha(),
                                 percept_png_format_rgb(), percept_png_format_rgba()]
        precondition((1...4).contains(channels), "PNG channels must be 1...4, got \(channels)")
        var image = png_image()
        return try bytes.withUnsafeBytes { raw in
            try beginRead(&image, raw, path: path, maximumPixels: maximumPixels)
            // 16-bit images are taken as sRGB-encoded so 8-bit output is value / 257.
            percept_png_assume_16bit_srgb(&image)
            let width = Int(image.width), height = Int(image.height)
            var pixels = [UInt8](repeating: 0, count: width * height * channels)
            try finishRead(&image, formats[channels - 1], into: &pixels, path: path)
            return Image(width: width, height: height, channels: channels, pixels: pixels)
        }
    }

    /// Decodes PNG bytes with the channels the file stores (1 gray, 2 gray+alpha, 3 RGB, 4
    /// RGBA; palettes expanded), 8 bits each.
    public static func readNative(bytes: [UInt8], path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        let channels = try info(bytes: bytes, path: path, maximumPixels: maximumPixels).channels
        return try read(bytes: bytes, path: path, channels: channels, maximumPixels: maximumPixels)
    }

    /// Reads an index mask: palette and gray PNGs keep their raw index values (no colour
    /// conversion); 16-bit gray values above 255 are an error. A gray+alpha mask keeps its gray
    /// values whatever the alpha (transparency is not compositing onto black here: the values
    /// are class indices); a 16-bit one must be opaque, since libpng hands 16-bit samples over
    /// premultiplied by alpha. Masks over `maximumPixels` are an error.
    public static func readIndexMask(path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        try readIndexMask(bytes: readBytes(path), path: path, maximumPixels: maximumPixels)
    }

    /// Decodes an index mask held in memory; `path` only names the source in errors.
    public static func readIndexMask(bytes: [UInt8], path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        var image = png_image()
        return try bytes.withUnsafeBytes { raw in
            try beginRead(&image, raw, path: path, maximumPixels: maximumPixels)
            let info = info(of: image)
            let width = info.width, height = info.height
            var indices = [UInt8](repeating: 0, count: width * height)
            if info.isPalette {
                // Colormapped output keeps the file's palette, so indices pass through unchanged.
                var colormap = [UInt8](repeating: 0, count: 256 * 4)
                try colormap.withUnsafeMutableBytes { map in
                    try finishRead(&image, percept_png_format_rgba_colormap(), into: &indices, colormap: map.baseAddress, path: path)
                }
            } else if info.channels <= 2 && info.is16Bit {
                var wide = [UInt16](repeating: 0, count: width * height * info.channels)
                let format = info.channels == 2 ? percept_png_format_linear_gray_alpha() : percept_png_format_linear_gray()
                try finishRead(&image, format, into: &wide, path: path)
                for index in 0..<indices.count {
                    let place = "pixel (\(index % width), \(index / width))"
                    if info.channels == 2 && wide[2 * index + 1] != 65535 {
                        throw DatasetError(path, "16-bit gray+alpha mask has a transparent \(place): its index cannot be read exactly (save the mask without alpha)")
                    }
                    let value = wide[info.channels * index]
                    guard value <= 255 else { throw DatasetError(path, "mask value \(value) at \(place) does not fit 8 bits") }
                    indices[index] = UInt8(value)
                }
            } else if info.channels == 2 {
                var grayAlpha = [UInt8](repeating: 0, count: width * height * 2)
                try finishRead(&image, percept_png_format_gray_alpha(), into: &grayAlpha, path: path)
                for index in 0..<indices.count { indices[index] = grayAlpha[2 * index] }
            } else if info.channels == 1 {
                try finishRead(&image, percept_png_format_gray(), into: &indices, path: path)
            } else {
                png_image_free(&image)
                throw DatasetError(path, "an index mask must be a palette or gray PNG, this one is \(info.channels == 3 ? "RGB" : "RGBA")")
            }
            return Image(width: width, height: height, channels: 1, pixels: indices)
        }
    }

    /// Decodes the image begun in `image` into `buffer`, sized for `format`; frees `image` and
    /// throws when the data is corrupt or truncated.
    static func finishRead<Sample>(_ image: inout png_image, _ format: UInt32, into buffer: inout [Sample],
                                   colormap: UnsafeMutableRawPointer? = nil, path: String) throws {
        let ok = buffer.withUnsafeMutableBytes { percept_png_finish_read(&image, format, $0.baseAddress, colormap) }
        guard ok != 0 else {
            let text = message(image)
            png_image_free(&image)
            throw DatasetError(path, "corrupt or truncated PNG (\(text))")
        }
    }

    /// Encodes an 8-bit gray (1 channel) or RGB (3 channels) image; 2 and 4 channels write
    /// gray+alpha and RGBA. With `palette` (RGB triples) a 1-channel image is written as a
    /// palette PNG whose indices are the pixel values.
    public static func encode(_ image: Image, palette: [UInt8]? = nil, path: String = "<memory>") throws -> [UInt8] {
        let formats: [UInt32] = [percept_png_format_gray(), percept_png_format_gray_alpha(),
                                 percept_png_format_rgb(), percept_png_format_rgba()]
        var format = formats[image.channels - 1]
        var entries: UInt32 = 0
        if let palette {
            precondition(image.channels == 1 && palette.count % 3 == 0 && palette.count / 3 <= 256, "palette needs RGB triples for a 1-channel image")
            format = percept_png_format_rgb_colormap()
            entries = UInt32(palette.count / 3)
        }
        var output: UnsafeMutableRawPointer?
        var size = 0
        var text = [CChar](repeating: 0, count: 128)
        let ok = image.pixels.withUnsafeBytes { pixels in
            (palette ?? []).withUnsafeBytes { map in
                percept_png_write_to_memory(UInt32(image.width), UInt32(image.height), format, pixels.baseAddress,
                                            palette == nil ? nil : map.baseAddress, entries, &output, &size, &text, 128)
            }
        }
        guard ok != 0, let output else { throw DatasetError(path, "cannot encode PNG (\(String(cString: text)))") }
        defer { free(output) }
        return [UInt8](UnsafeRawBufferPointer(start: output, count: size))
    }

    /// Encodes 16-bit linear samples (1...4 channels); used to produce 16-bit test files.
    public static func encode16(width: Int, height: Int, channels: Int, samples: [UInt16]) throws -> [UInt8] {
        let formats: [UInt32] = [percept_png_format_linear_gray(), percept_png_format_linear_gray_alpha(),
                                 percept_png_format_linear_rgb(), percept_png_format_linear_rgb_alpha()]
        precondition(samples.count == width * height * channels)
        var output: UnsafeMutableRawPointer?
        var size = 0
        var text = [CChar](repeating: 0, count: 128)
        let ok = samples.withUnsafeBytes { pixels in
            percept_png_write_to_memory(UInt32(width), UInt32(height), formats[channels - 1], pixels.baseAddress,
                                        nil, 0, &output, &size, &text, 128)
        }
        guard ok != 0, let output else { throw DatasetError("<memory>", "cannot encode PNG (\(String(cString: text)))") }
        defer { free(output) }
        return [UInt8](UnsafeRawBufferPointer(start: output, count: size))
    }

    /// Writes an image as a PNG file atomically (temp file in the same directory, then rename).
    public static func write(_ image: Image, to path: String, palette: [UInt8]? = nil) throws {
        let bytes = try encode(image, palette: palette, path: path)
        try AtomicOutput.write(Data(bytes), to: path)
    }
}
