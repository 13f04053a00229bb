import Foundation

extension Converter {
    // MARK: Index masks

    /// Converts PNG or JPEG images plus index-mask PNGs of the same names (or the same stem:
    /// `x.jpg` with `x.png`, as VOC keeps them) to a segmentation file. Mask values must be
    /// below the number of classes or 255 (ignore).
    public static func masks(images imageDirectory: String, masks maskDirectory: String, classes: [String]?,
                             mapping: MaskMapping = .identity, output: String,
                             options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let (names, skipped) = try imageFiles(in: imageDirectory)
        guard !names.isEmpty else { throw DatasetError(imageDirectory, "empty input: no PNG or JPEG images") }
        func maskPath(_ name: String) -> String? {
            let stem = maskDirectory + "/" + (name as NSString).deletingPathExtension + ".png"
            return [maskDirectory + "/" + name, stem].first { FileManager.default.fileExists(atPath: $0) }
        }
        for name in names where maskPath(name) == nil {
            throw DatasetError(maskDirectory + "/" + name, "no mask for image \(imageDirectory)/\(name)")
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(imageDirectory + "/" + names[0])
        let writer = try DatasetWriter(path: output, task: .segmentation, channels: channels, height: size.height,
                                       width: size.width, source: "masks: \(imageDirectory), \(maskDirectory)",
                                       overwrite: options.overwrite)
        var present = [Int](repeating: 0, count: 255), ignoredPixels = 0
        do {
            for (index, name) in names.enumerated() {
                let imagePath = imageDirectory + "/" + name, maskPath = maskPath(name)!
                let original = try ImageFile.read(path: imagePath, channels: channels == 1 ? 1 : 3)
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(imagePath, "image is \(original.width)x\(original.height), expected \(size) (use --size to resize)")
                }
                let mask = mapping.apply(try PNG.readIndexMask(path: maskPath))
                guard mask.width == original.width, mask.height == original.height else {
                    throw DatasetError(maskPath, "mask is \(mask.width)x\(mask.height) but its image is \(original.width)x\(original.height)")
                }
                var seen = [Bool](repeating: false, count: 255)
                for value in mask.pixels where value == DatasetLayout.ignoreIndex { ignoredPixels += 1 }
                for (pixel, value) in mask.pixels.enumerated() where value != DatasetLayout.ignoreIndex {
                    if let classes, Int(value) >= classes.count {
                        throw DatasetError(maskPath, "value \(value) at pixel (\(pixel % mask.width), \(pixel / mask.width)) is outside the \(classes.count) declared classes")
                    }
                    seen[Int(value)] = true
                }
                for value in 0..<255 where seen[value] { present[value] += 1 }
                let image = fit(original, to: size, letterbox: options.letterbox).image.converted(toChannels: channels)
                let fittedMask = fit(mask, to: size, letterbox: options.letterbox, fill: UInt8(DatasetLayout.ignoreIndex), nearest: true).image
                try writer.append(image: image, mask: fittedMask, source: imagePath)
                options.progress?(index + 1, names.count)
            }
            if mapping == .identity, present.enumerated().allSatisfy({ $0.offset == 0 || $0.element == 0 }), ignoredPixels > 0 {
                throw DatasetError(maskDirectory, "every mask holds only 0 and 255, and 255 means 'ignore': these look like binary masks; pass --binary to make 255 (any non-zero value) class 1")
            }
            let used = (present.lastIndex(where: { $0 > 0 }) ?? 0) + 1
            let classNames = classes ?? (0..<used).map { String($0) }
            try writer.finish(classNames: classNames)
            var summary = ConversionSummary(output: output, task: .segmentation, count: names.count, channels: channels,
                                            height: size.height, width: size.width, classNames: classNames,
                                            perClass: Array(present.prefix(classNames.count)))
            if skipped > 0 { summary.notes.append("skipped \(skipped) files that are not PNG or JPEG images") }
            return summary
        } catch {
            writer.abandon()
            throw error
        }
    }
}

/// How mask values become class indices before they are checked and stored (255 stays ignore):
/// as they are, or one of the conventions datasets use.
public enum MaskMapping: Equatable, Sendable {
    case identity
    /// 0 stays background, any other value is class 1 (foreground masks stored as 0/255).
    case binary
    /// ADE20K's convention (mmsegmentation's `reduce_zero_label`): 0 is "other" and becomes 255
    /// (ignore), every other value v becomes v - 1.
    case reduceZeroLabel
    /// Cityscapes' id -> train id table: listed ids become their train id, every other id 255.
    case labelMap([UInt8: UInt8])

    /// `mask` with its values mapped.
    public func apply(_ mask: Image) -> Image {
        let ignore = UInt8(DatasetLayout.ignoreIndex)
        var table = [UInt8](repeating: 0, count: 256)
        for value in 0..<256 {
            let v = UInt8(value)
            switch self {
            case .identity: table[value] = v
            case .binary: table[value] = v == 0 ? 0 : 1
            case .reduceZeroLabel: table[value] = v == 0 || v == ignore ? ignore : v - 1
            case .labelMap(let map): table[value] = map[v] ?? ignore
            }
        }
        guard self != .identity else { return mask }
        return Image(width: mask.width, height: mask.height, channels: 1, pixels: mask.pixels.map { table[Int($0)] })
    }

    /// Reads a label map: a JSON object `{"7": 0, "8": 1}` or lines `7 0` (`#` starts a comment);
    /// ids and train ids are 0-255.
    public static func labelMap(path: String) throws -> MaskMapping {
        let data = try readData(path)
        var map: [UInt8: UInt8] = [:]
        func add(_ id: Int?, _ trainID: Int?, _ place: String) throws {
            guard let id, let trainID, (0...255).contains(id), (0...255).contains(trainID) else {
                throw DatasetError(path, "\(place): a label map entry is two integers 0-255 (id, train id)")
            }
            guard map[UInt8(id)] == nil else { throw DatasetError(path, "\(place): id \(id) is mapped twice") }
            map[UInt8(id)] = UInt8(trainID)
        }
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                try add(Int(key), (value as? NSNumber)?.intValue, "key \(key)")
            }
        } else {
            guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(path, "not UTF-8 text or JSON") }
            for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," || $0 == ":" })
                if fields.isEmpty { continue }
                guard fields.count == 2 else { throw DatasetError(path, "line \(index + 1): expected 'id train_id'") }
                try add(Int(fields[0]), Int(fields[1]), "line \(index + 1)")
            }
        }
        guard !map.isEmpty else { throw DatasetError(path, "empty label map") }
        return .labelMap(map)
    }
}
