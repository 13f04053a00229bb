import Foundation

extension Converter {
    // MARK: ImageFolder

    /// Converts a folder with one sub-folder of PNG or JPEG images per class (nested folders included) to a classification file.
    public static func folder(_ directory: String, output: String,
                              options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let classNames = try subdirectories(of: directory)
        guard !classNames.isEmpty else { throw DatasetError(directory, "empty input: no class sub-folders") }
        var files: [(path: String, label: Int)] = []
        var skipped = 0
        for (label, name) in classNames.enumerated() {
            let (pngs, others) = try imageFiles(in: directory + "/" + name, recursive: true)
            files += pngs.map { (directory + "/" + name + "/" + $0, label) }
            skipped += others
        }
        guard !files.isEmpty else { throw DatasetError(directory, "empty input: no PNG or JPEG images in the class sub-folders") }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(files[0].path)
        let writer = try DatasetWriter(path: output, task: .classification, channels: channels, height: size.height,
                                       width: size.width, source: "folder: \(directory)", overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: classNames.count)
        do {
            for (index, file) in files.enumerated() {
                let image = try loadImage(file.path, channels: channels, size: options.size)
                try writer.append(image: image, label: file.label, source: file.path)
                perClass[file.label] += 1
                options.progress?(index + 1, files.count)
            }
            try writer.finish(classNames: classNames)
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .classification, count: files.count, channels: channels,
                                        height: size.height, width: size.width, classNames: classNames, perClass: perClass)
        if skipped > 0 { summary.notes.append("skipped \(skipped) files that are not PNG or JPEG images") }
        return summary
    }
}
