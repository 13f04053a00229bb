import Foundation

extension Converter {
    // MARK: Index masks

    /// Converts PNG or JPEG images plus index-mask PNGs of the same names (or the same stem:
    /// `x.jpg` with `x.png`, as VOC keeps them) to a segmentation file. Mask values must be
    /// below the number of classes or 255 (ignore).
    public static func masks(images imageDirectory: String, masks maskDirectory: String, classes: [String]?,
                             output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
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
        var present = [Int](repeating: 0, count: 255)
        do {
            for (index, name) in names.enumerated() {
                let imagePath = imageDirectory + "/" + name, maskPath = maskPath(name)!
                let original = try ImageFile.read(path: imagePath, channels: channels == 1 ? 1 : 3)
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(imagePath, "image is \(original.width)x\(original.height), expected \(size) (use --size to resize)")
                }
                let mask = try PNG.readIndexMask(path: maskPath)
                guard mask.width == original.width, mask.height == original.height else {
                    throw DatasetError(maskPath, "mask is \(mask.width)x\(mask.height) but its image is \(original.width)x\(original.height)")
                }
                var seen = [Bool](repeating: false, count: 255)
                for (pixel, value) in mask.pixels.enumerated() where value != DatasetLayout.ignoreIndex {
                    if let classes, Int(value) >= classes.count {
                        throw DatasetError(maskPath, "value \(value) at pixel (\(pixel % mask.width), \(pixel / mask.width)) is outside the \(classes.count) declared classes")
                    }
                    seen[Int(value)] = true
                }
                for value in 0..<255 where seen[value] { present[value] += 1 }
                let image = original.resized(width: size.width, height: size.height).converted(toChannels: channels)
                try writer.append(image: image, mask: mask.resizedNearest(width: size.width, height: size.height), source: imagePath)
                options.progress?(index + 1, names.count)
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
