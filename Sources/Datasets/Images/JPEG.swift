import CTurboJPEG
import Foundation

/// JPEG reading through libjpeg-turbo's TurboJPEG API, pixel for pixel as PIL decodes the same
/// file (both are libjpeg-turbo with the accurate IDCT and fancy upsampling), EXIF orientation
/// applied. Truncated or corrupt data is an error, never a half-grey image.
public enum JPEG {
    /// Whether `bytes` start as a JPEG does (SOI, then a marker).
    public static func isJPEG(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
    }

    /// What the marker segments before the first scan say.
    struct Markers {
        var width = 0, height = 0
        var precision = 8
        var lossless = false
        var orientation: Int?
    }

    /// Walks the marker segments from SOI to the first scan (SOS), each length checked.
    static func markers(_ bytes: [UInt8], path: String) throws -> Markers {
        var found = Markers(), sawFrame = false
        var i = 2
        while i + 4 <= bytes.count {
            guard bytes[i] == 0xFF else { throw DatasetError(path, "corrupt JPEG: no marker at byte \(i)") }
            var marker = bytes[i + 1]
            i += 2
            while marker == 0xFF, i < bytes.count { marker = bytes[i]; i += 1 }    // fill bytes
            if marker == 0x01 || (0xD0...0xD7).contains(marker) { continue }       // no length
            if marker == 0xD9 || marker == 0xDA { break }                          // EOI, SOS
            guard i + 2 <= bytes.count else { break }
            let length = Int(bytes[i]) << 8 | Int(bytes[i + 1])
            guard length >= 2, i + length <= bytes.count else {
                throw DatasetError(path, "corrupt or truncated JPEG: a segment of \(length) bytes runs past the end of the file")
            }
            let segment = bytes[(i + 2)..<(i + length)]
            switch marker {
            case 0xC0...0xCF where marker != 0xC4 && marker != 0xC8 && marker != 0xCC:   // SOFn
                guard segment.count >= 5, !sawFrame else { break }
                sawFrame = true
                found.precision = Int(segment[segment.startIndex])
                found.height = Int(segment[segment.startIndex + 1]) << 8 | Int(segment[segment.startIndex + 2])
                found.width = Int(segment[segment.startIndex + 3]) << 8 | Int(segment[segment.startIndex + 4])
                found.lossless = [0xC3, 0xC7, 0xCB, 0xCF].contains(marker)
            case 0xE1 where found.orientation == nil && segment.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]):  // "Exif\0\0"
                found.orientation = EXIF.orientation(tiff: segment.dropFirst(6))
            default:
                break
            }
            i += length
        }
        return found
    }

    /// Decodes a JPEG held in memory: gray files as 1 channel, colour ones (YCbCr, RGB, CMYK and
    /// YCCK) as RGB, turned upright by their EXIF orientation. `path` names the source in errors.
    public static func read(bytes: [UInt8], path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        let markers = try markers(bytes, path: path)
        if markers.lossless { throw DatasetError(path, "lossless JPEG is not supported") }
        if markers.precision != 8 { throw DatasetError(path, "\(markers.precision)-bit JPEG is not supported (8-bit only)") }
        guard let handle = percept_jpeg_create() else { throw DatasetError(path, "cannot start the JPEG decoder") }
        defer { percept_jpeg_destroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        try bytes.withUnsafeBufferPointer { raw in
            guard percept_jpeg_header(handle, raw.baseAddress, UInt(raw.count), &width, &height, &subsampling, &colorspace) == 0 else {
                throw DatasetError(path, "not a valid JPEG (\(String(cString: percept_jpeg_error(handle))))")
            }
        }
        let (w, h) = (Int(width), Int(height))
        guard w >= 1, h >= 1 else { throw DatasetError(path, "JPEG header declares an empty \(w)x\(h) image") }
        if w * h > maximumPixels {
            throw DatasetError(path, "JPEG header declares \(w)x\(h) pixels, over the limit of \(maximumPixels) pixels"
                + (maximumPixels == Image.maximumPixels ? " (Image.maximumPixels)" : ""))
        }
        let cmyk = colorspace == percept_jpeg_colorspace_cmyk() || colorspace == percept_jpeg_colorspace_ycck()
        let channels = colorspace == percept_jpeg_colorspace_gray() ? 1 : cmyk ? 4 : 3
        var pixels = [UInt8](repeating: 0, count: w * h * channels)
        try bytes.withUnsafeBufferPointer { raw in
            try pixels.withUnsafeMutableBufferPointer { out in
                guard percept_jpeg_decode(handle, raw.baseAddress, UInt(raw.count), out.baseAddress, width, height, Int32(channels)) == 0 else {
                    throw DatasetError(path, "corrupt or truncated JPEG (\(String(cString: percept_jpeg_error(handle))))")
                }
            }
        }
        var image = Image(width: w, height: h, channels: channels, pixels: pixels)
        if cmyk { image = cmykToRGB(image) }
        return image.oriented(markers.orientation)
    }

    /// CMYK (as stored: Adobe's inverted convention, which PIL assumes for every CMYK JPEG) to
    /// RGB exactly as PIL's `convert("RGB")` does: r = k' - c'k'/255 with k' = 255 - k, in its
    /// fixed-point rounding.
    static func cmykToRGB(_ image: Image) -> Image {
        let plane = image.width * image.height
        var output = [UInt8](repeating: 0, count: plane * 3)
        image.pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { out in
                for p in 0..<plane {
                    // Stored inverted: PIL's "CMYK;I" raw mode gives c = 255 - stored.
                    let nk = 255 - (255 - Int(source[4 * p + 3]))
                    for k in 0..<3 {
                        let c = 255 - Int(source[4 * p + k])
                        let t = c * nk + 128
                        out[3 * p + k] = UInt8(clamping: nk - (((t >> 8) + t) >> 8))
                    }
                }
            }
        }
        return Image(width: image.width, height: image.height, channels: 3, pixels: output)
    }
}
