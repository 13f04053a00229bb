import Foundation

/// Image files as users have them, PNG or JPEG (told apart by their first bytes, not their
/// names), read by one colour rule, the same at training and at prediction:
/// - RGB(A) into one channel is PIL's `convert("L")`: ITU-R 601-2 luma in PIL's fixed-point
///   rounding, alpha dropped;
/// - gray into three channels is replicated; alpha is dropped, never composited;
/// - 16-bit PNGs scale to 8 bits (value / 257), palette PNGs expand to their colours;
/// - JPEGs decode as PIL decodes them, CMYK and YCCK converted to RGB as PIL does, turned
///   upright by their EXIF orientation.
public enum ImageFile {
    /// File name extensions the folder readers take (any case).
    public static let extensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Whether `path` names an image file by its extension.
    public static func hasImageExtension(_ path: String) -> Bool {
        extensions.contains((path as NSString).pathExtension.lowercased())
    }

    /// Reads the image at `path` with `channels` channels (1 or 3) by the colour rule.
    public static func read(path: String, channels: Int, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        try read(bytes: [UInt8](try readData(path)), path: path, channels: channels, maximumPixels: maximumPixels)
    }

    /// Reads the image at `path` as stored (see `decode`).
    public static func read(path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        try decode(bytes: [UInt8](try readData(path)), path: path, maximumPixels: maximumPixels)
    }

    /// Decodes image bytes held in memory; `path` names the source in errors.
    public static func read(bytes: [UInt8], path: String, channels: Int, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        try decode(bytes: bytes, path: path, maximumPixels: maximumPixels).converted(toChannels: channels)
    }

    /// The image as stored: 1-4 channels for a PNG, 1 or 3 for a JPEG.
    public static func decode(bytes: [UInt8], path: String, maximumPixels: Int = Image.maximumPixels) throws -> Image {
        if PNG.isPNG(bytes) { return try PNG.readNative(bytes: bytes, path: path, maximumPixels: maximumPixels) }
        if JPEG.isJPEG(bytes) { return try JPEG.read(bytes: bytes, path: path, maximumPixels: maximumPixels) }
        throw DatasetError(path, bytes.isEmpty ? "empty file, not an image" : "not a PNG or JPEG image")
    }

    /// The size of the image at `path` as it will be read (a JPEG's EXIF orientation applied),
    /// from its header where that tells it.
    public static func size(path: String) throws -> (width: Int, height: Int) {
        let bytes = [UInt8](try readData(path))
        if PNG.isPNG(bytes) {
            let info = try PNG.info(bytes: bytes, path: path)
            return (info.width, info.height)
        }
        if JPEG.isJPEG(bytes) {
            let markers = try JPEG.markers(bytes, path: path)
            if markers.width > 0, markers.height > 0 {
                return (markers.orientation ?? 1) >= 5 ? (markers.height, markers.width) : (markers.width, markers.height)
            }
        }
        let image = try decode(bytes: bytes, path: path)
        return (image.width, image.height)
    }
}
