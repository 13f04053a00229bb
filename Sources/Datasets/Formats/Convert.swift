import CZlib
import Foundation

/// A width and height in pixels, parsed from `WxH`.
public struct ImageSize: Equatable, Sendable, CustomStringConvertible {
    public var width: Int, height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    /// Parses "32x32" (or "32X32"); nil when malformed or not positive.
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0,
              width <= 65536, height <= 65536 else { return nil }
        self.init(width: width, height: height)
    }

    public var description: String { "\(width)x\(height)" }
}

/// Settings shared by every conversion.
public struct ConversionOptions {
    /// Resize every image (and mask, and boxes) to this size; without it all images must match.
    public var size: ImageSize?
    /// Channels to store (1 gray or 3 RGB); nil keeps the converter's default (IDX 1, PNG 3).
    public var channels: Int?
    /// With `size`: keep each image's aspect, scaled to fit and centred on a black canvas
    /// (boxes follow; masks are padded with 255, ignore), instead of stretching it.
    public var letterbox = false
    /// Replace an existing output file.
    public var overwrite: Bool
    /// Called after each image with (done, total).
    public var progress: ((Int, Int) -> Void)?

    public init(size: ImageSize? = nil, channels: Int? = nil, overwrite: Bool = false,
                progress: ((Int, Int) -> Void)? = nil) {
        self.size = size
        self.channels = channels
        self.overwrite = overwrite
        self.progress = progress
    }
}

/// What a conversion wrote, for the closing report.
public struct ConversionSummary: CustomStringConvertible {
    public var output: String
    public var task: VisionTask
    public var count: Int
    public var channels: Int, height: Int, width: Int
    public var classNames: [String]
    /// Per class: images (classification, tagging), boxes (detection) or images containing
    /// the class (segmentation).
    public var perClass: [Int]
    /// Boxes written (detection).
    public var boxes: Int = 0
    /// Things skipped on purpose, e.g. "3 crowd annotations".
    public var notes: [String] = []

    public var description: String {
        let unit: String
        switch task {
        case .classification: unit = "images"
        case .tagging: unit = "images tagged"
        case .detection: unit = "boxes"
        case .segmentation: unit = "images containing"
        }
        var lines = ["wrote \(output): \(task.rawValue), \(count) images of \(channels)x\(height)x\(width)"
                     + (task == .detection ? ", \(boxes) boxes" : "")]
        lines.append("\(unit) per class:")
        let width = classNames.map(\.count).max() ?? 0
        for (name, number) in zip(classNames, perClass) {
            lines.append("  " + name.padding(toLength: max(width, 1), withPad: " ", startingAt: 0) + "  \(number)")
        }
        lines += notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}

/// Conversions from common dataset formats to Percept's HDF5 layouts.
public enum Converter {
    // MARK: helpers

    static func subdirectories(of directory: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(directory, "no such directory")
        }
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        return entries.filter { entry in
            var isDirectory: ObjCBool = false
            return !entry.hasPrefix(".") && FileManager.default.fileExists(atPath: directory + "/" + entry, isDirectory: &isDirectory)
                && isDirectory.boolValue
        }.sorted()
    }

    /// Sorted image (PNG, JPEG) file names in `directory`, paths relative to it, and the number
    /// of other (non-hidden) files; with `recursive`, images in nested folders too (as
    /// torchvision's ImageFolder walks each class folder).
    static func imageFiles(in directory: String, recursive: Bool = false) throws -> (names: [String], others: Int) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError(directory, "no such directory")
        }
        var names: [String] = [], others = 0
        func walk(_ relative: String) throws {
            let folder = relative.isEmpty ? directory : directory + "/" + relative
            for entry in try FileManager.default.contentsOfDirectory(atPath: folder) where !entry.hasPrefix(".") {
                let path = relative.isEmpty ? entry : relative + "/" + entry
                var isFolder: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isFolder)
                if isFolder.boolValue {
                    if recursive { try walk(path) } else { others += 1 }
                } else if ImageFile.hasImageExtension(entry) {
                    names.append(path)
                } else {
                    others += 1
                }
            }
        }
        try walk("")
        return (names.sorted(), others)
    }

    static func findImage(named name: String, in directory: String) -> String? {
        for candidate in [name, name + ".png", name + ".jpg", name + ".jpeg"] where FileManager.default.fileExists(atPath: directory + "/" + candidate) {
            return directory + "/" + candidate
        }
        return nil
    }

    static func firstSize(_ path: String) throws -> ImageSize {
        let size = try ImageFile.size(path: path)
        return ImageSize(width: size.width, height: size.height)
    }

    /// Reads a PNG or JPEG with `channels` channels (the colour rule of `ImageFile`), resized
    /// when `size` is given.
    static func loadImage(_ path: String, channels: Int, size: ImageSize?, letterbox: Bool = false) throws -> Image {
        let image = try ImageFile.read(path: path, channels: channels)
        guard let size else { return image }
        return fit(image, to: size, letterbox: letterbox).image
    }

    /// `image` at `size`: stretched, or letterboxed (`fill` around it); boxes map by `placement`.
    static func fit(_ image: Image, to size: ImageSize, letterbox: Bool, fill: UInt8 = 0, nearest: Bool = false)
        -> (image: Image, placement: Letterbox?) {
        if letterbox {
            let (boxed, placement) = image.letterboxed(width: size.width, height: size.height, fill: fill, nearest: nearest)
            return (boxed, placement)
        }
        if image.width == size.width && image.height == size.height { return (image, nil) }
        return (nearest ? image.resizedNearest(width: size.width, height: size.height) : image.resized(width: size.width, height: size.height), nil)
    }
}
