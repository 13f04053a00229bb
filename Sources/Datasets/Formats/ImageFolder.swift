import Foundation

extension Converter {
    // MARK: ImageFolder

    /// Converts a folder with one sub-folder of PNG or JPEG images per class (nested folders
    /// included, as torchvision's ImageFolder walks them) to a classification file. The classes
    /// are the sub-folders sorted by name, or `classes` in the order given (so a validation
    /// folder that lacks a class gets the training set's classes and order).
    public static func folder(_ directory: String, classes: [String]? = nil, output: String,
                              options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let folders = try subdirectories(of: directory)
        let classNames = classes ?? folders
        guard !classNames.isEmpty else { throw DatasetError(directory, "empty input: no class sub-folders") }
        if let classes {
            guard Set(classes).count == classes.count, !classes.contains(where: \.isEmpty) else {
                throw DatasetError(directory, "--classes must name each class once, got \(classes)")
            }
            if let stray = folders.first(where: { !classes.contains($0) }) {
                throw DatasetError(directory + "/" + stray, "is a class folder not among --classes (\(classes.joined(separator: ", ")))")
            }
        }
        var files: [(path: String, label: Int)] = []
        var skipped = 0
        for (label, name) in classNames.enumerated() where folders.contains(name) {
            let (images, others) = try imageFiles(in: directory + "/" + name, recursive: true)
            files += images.map { (directory + "/" + name + "/" + $0, label) }
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
                let image = try loadImage(file.path, channels: channels, size: options.size, letterbox: options.letterbox)
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
        for (label, name) in classNames.enumerated() where perClass[label] == 0 {
            summary.notes.append("warning: class '\(name)' has no images")
        }
        return summary
    }
}
