import Foundation
import Yams

/// The image lists of an Ultralytics dataset YAML: `train`, `val` and (optional) `test`.
public enum YOLOSplit: String, CaseIterable, Sendable {
    case train, val, test
}

extension Converter {
    // MARK: YOLO detection

    /// Converts one split of an Ultralytics YOLO dataset (a `data.yaml` naming image folders or
    /// image lists and the class names; one `labels/.../NAME.txt` per `images/.../NAME.*`) to a
    /// detection file. Normalised `class cx cy w h` lines become `[x1, y1, x2, y2]` pixels of the
    /// stored (resized) image; class k is category id k + 1, images are ids 1... in order.
    public static func yolo(data yamlPath: String, split: YOLOSplit = .train, output: String,
                            options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let dataset = try YOLODataFile(path: yamlPath)
        let (paths, others) = try dataset.imageFiles(split)
        guard !paths.isEmpty else { throw DatasetError(yamlPath, "empty input: no PNG or JPEG images in '\(split.rawValue)'") }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(paths[0])
        let writer = try DatasetWriter(path: output, task: .detection, channels: channels, height: size.height,
                                       width: size.width, source: "yolo: \(lastComponent(yamlPath)), \(split.rawValue)",
                                       overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: dataset.names.count)
        var boxes = 0, background = 0, zeroArea = 0, duplicates = 0
        do {
            for (index, path) in paths.enumerated() {
                // Labels first: a bad line is found before the image is decoded.
                let labels = try YOLOLabelFile(path: YOLOLabelFile.path(forImage: path), classCount: dataset.names.count)
                let original = try ImageFile.read(path: path, channels: channels)
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(path, "image is \(original.width)x\(original.height), expected \(size) (detection files hold one size: use --size)")
                }
                let (image, placement) = fit(original, to: size, letterbox: options.letterbox)
                // Normalised corners map onto where the image went: the whole stored image when
                // stretched, its scaled and centred place when letterboxed.
                let area = placement.map { (width: $0.width, height: $0.height, offsetX: $0.offsetX, offsetY: $0.offsetY) }
                    ?? (width: size.width, height: size.height, offsetX: 0, offsetY: 0)
                var imageBoxes: [DetectionBox] = []
                for box in labels.boxes {
                    guard let pixels = box.pixels(width: area.width, height: area.height, offsetX: area.offsetX, offsetY: area.offsetY) else {
                        zeroArea += 1; continue
                    }
                    imageBoxes.append(pixels)
                    perClass[box.label] += 1
                }
                zeroArea += labels.zeroArea
                duplicates += labels.duplicates
                boxes += imageBoxes.count
                if imageBoxes.isEmpty { background += 1 }
                try writer.append(image: image, boxes: imageBoxes, imageID: Int64(index + 1), originalWidth: original.width,
                                  originalHeight: original.height, source: path)
                options.progress?(index + 1, paths.count)
            }
            try writer.finish(classNames: dataset.names, categoryIDs: dataset.names.indices.map { Int64($0 + 1) })
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .detection, count: paths.count, channels: channels,
                                        height: size.height, width: size.width, classNames: dataset.names,
                                        perClass: perClass, boxes: boxes)
        if background > 0 { summary.notes.append("\(background) images without boxes (background)") }
        if zeroArea > 0 { summary.notes.append("skipped \(zeroArea) boxes with zero width or height") }
        if duplicates > 0 { summary.notes.append("skipped \(duplicates) duplicate label lines (as Ultralytics does)") }
        if others > 0 { summary.notes.append("skipped \(others) files that are not PNG or JPEG images") }
        return summary
    }
}

/// An Ultralytics dataset YAML: the dataset root (`path`), the image folders or lists of each
/// split, and the class names (`names`, a list or a map from class index to name).
struct YOLODataFile {
    /// A folder of images or a text file listing them, resolved against the dataset root.
    struct Source { let path: String; let line: Int }

    let path: String
    let names: [String]
    private let splits: [YOLOSplit: [Source]]

    init(path: String) throws {
        try self.init(text: String(decoding: readData(path), as: UTF8.self), path: path)
    }

    /// Parses the YAML `text` of the file at `path` (whose folder relative paths start from).
    init(text: String, path: String) throws {
        self.path = path
        let top: Node.Mapping
        do {
            guard let node = try Yams.compose(yaml: text), let mapping = node.mapping else {
                throw DatasetError(path, "is not a YAML map of keys (path, train, val, names)")
            }
            top = mapping
        } catch let error as DatasetError {
            throw error
        } catch {
            throw DatasetError(path, "malformed YAML (\(String(describing: error).split(separator: "\n").first ?? ""))")
        }
        func value(_ key: String) -> Node? {
            guard let node = top[key], !Self.isNull(node) else { return nil }
            return node
        }
        func scalar(_ node: Node, _ key: String) throws -> String {
            guard let text = node.scalar?.string else { throw DatasetError(path, "\(Self.place(node))'\(key)' must be a single value") }
            return text
        }
        // Ultralytics resolves a relative `path` against its own datasets folder; the YAML's
        // folder is where it looks without `path`, and keeps a dataset movable with its YAML.
        let folder = (path as NSString).deletingLastPathComponent
        var root = folder.isEmpty ? "." : folder
        if let node = value("path") {
            let given = try scalar(node, "path")
            root = Self.join(root, given)
        }
        var splits: [YOLOSplit: [Source]] = [:]
        for split in YOLOSplit.allCases {
            guard let node = value(split.rawValue) else { continue }
            // One folder or list, or (as Ultralytics also takes) a YAML list of them.
            let items = node.sequence.map(Array.init) ?? [node]
            splits[split] = try items.map { item in
                let entry = try scalar(item, split.rawValue)
                var resolved = Self.join(root, entry)
                // Ultralytics' fallback for YAMLs that sit inside their dataset (Roboflow's
                // `train: ../train/images`): the same path below the root.
                if !FileManager.default.fileExists(atPath: resolved) && entry.hasPrefix("../") {
                    resolved = Self.join(root, String(entry.dropFirst(3)))
                }
                return Source(path: resolved, line: item.mark?.line ?? 0)
            }
        }
        self.splits = splits
        guard let namesNode = value("names") else { throw DatasetError(path, "missing 'names' (the class names, a list or a map)") }
        names = try Self.classNames(namesNode, path: path)
        if let count = value("nc") {
            guard let number = count.scalar.flatMap({ Int($0.string) }), number == names.count else {
                throw DatasetError(path, "\(Self.place(count))'nc' is \(count.scalar?.string ?? "not a number") but 'names' holds \(names.count) names")
            }
        }
    }

    /// `names` as Ultralytics takes it: a list in class order, or a map whose keys are the class
    /// indices 0 to K-1 (its `check_class_names` refuses other keys).
    static func classNames(_ node: Node, path: String) throws -> [String] {
        var names: [String] = []
        if let items = node.sequence {
            for item in items {
                guard let name = item.scalar?.string else { throw DatasetError(path, "\(place(item))a class name must be a single value") }
                names.append(name)
            }
        } else if let mapping = node.mapping {
            var byIndex: [Int: String] = [:]
            for (key, item) in mapping {
                guard let index = key.scalar.flatMap({ Int($0.string) }), index >= 0 else {
                    throw DatasetError(path, "\(place(key))'names' key '\(key.scalar?.string ?? "?")' is not a class index (0, 1, ...)")
                }
                guard let name = item.scalar?.string else { throw DatasetError(path, "\(place(item))a class name must be a single value") }
                guard byIndex.updateValue(name, forKey: index) == nil else { throw DatasetError(path, "\(place(key))class \(index) is named twice") }
            }
            guard byIndex.keys.sorted() == Array(0..<byIndex.count) else {
                throw DatasetError(path, "\(place(node))'names' keys must be the class indices 0 to \(byIndex.count - 1), got \(byIndex.keys.sorted().map(String.init).joined(separator: ", "))")
            }
            names = (0..<byIndex.count).map { byIndex[$0]! }
        } else {
            throw DatasetError(path, "\(place(node))'names' must be a list ([cat, dog]) or a map ({0: cat, 1: dog})")
        }
        guard !names.isEmpty else { throw DatasetError(path, "\(place(node))'names' is empty") }
        return names
    }

    /// The image files of `split` in order (each folder sorted, each list as written), and the
    /// number of other files in its folders.
    func imageFiles(_ split: YOLOSplit) throws -> (paths: [String], others: Int) {
        guard let sources = splits[split] else {
            throw DatasetError(path, "missing '\(split.rawValue)' (the images of the split to convert)")
        }
        var paths: [String] = [], others = 0
        for source in sources {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source.path, isDirectory: &isFolder) else {
                throw DatasetError(path, "line \(source.line): '\(split.rawValue)' names \(source.path), which does not exist")
            }
            if isFolder.boolValue {
                // Ultralytics globs `**/*.*`: images in nested folders belong to the split too.
                let (names, skipped) = try Converter.imageFiles(in: source.path, recursive: true)
                paths += names.map { source.path + "/" + $0 }
                others += skipped
            } else {
                paths += try Self.listedImages(source.path)
            }
        }
        return (paths, others)
    }

    /// The images a list file names, one per line; relative paths start from the list's folder
    /// (Ultralytics reads `./` so and other relative lines from the working directory).
    static func listedImages(_ listPath: String) throws -> [String] {
        let folder = (listPath as NSString).deletingLastPathComponent
        let text = String(decoding: try readData(listPath), as: UTF8.self)
        var paths: [String] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !entry.isEmpty else { continue }
            let imagePath = join(folder, entry)
            guard ImageFile.hasImageExtension(imagePath) else {
                throw DatasetError(listPath, "line \(number + 1): '\(entry)' is not a PNG or JPEG file name")
            }
            guard FileManager.default.fileExists(atPath: imagePath) else {
                throw DatasetError(listPath, "line \(number + 1): no such image \(imagePath)")
            }
            paths.append(imagePath)
        }
        return paths
    }

    /// `relative` below `base` (or itself where absolute), without the `.` components that
    /// `path: .` or `./images` would leave in messages; a relative result keeps a leading `./`,
    /// so that a label path can still be found by its `/images/` component.
    static func join(_ base: String, _ relative: String) -> String {
        guard !relative.hasPrefix("/") else { return relative }
        var base = base.isEmpty ? "." : base
        while base.count > 1 && (base.hasSuffix("/") || base.hasSuffix("/.")) { base.removeLast(base.hasSuffix("/") ? 1 : 2) }
        let parts = relative.split(separator: "/").filter { $0 != "." }.map(String.init)
        return base == "/" ? "/" + parts.joined(separator: "/") : ([base] + parts).joined(separator: "/")
    }

    /// Whether a YAML value is empty (`key:`, `~`, `null`).
    static func isNull(_ node: Node) -> Bool {
        guard let scalar = node.scalar, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// "line N: " for a node that knows where it was, for error messages.
    static func place(_ node: Node) -> String { node.mark.map { "line \($0.line): " } ?? "" }
}

/// One YOLO label file: a line `class cx cy w h` per box, numbers normalised to the image's
/// width and height. A missing or empty file is a background image.
public struct YOLOLabelFile {
    /// One box of a label line, corners normalised to 0-1.
    struct Box: Hashable {
        let label: Int
        let x1: Double, y1: Double, x2: Double, y2: Double

        /// The box in pixels of a `width` x `height` image placed at (`offsetX`, `offsetY`) of
        /// its canvas; nil when it has no area there.
        func pixels(width: Int, height: Int, offsetX: Int = 0, offsetY: Int = 0) -> DetectionBox? {
            func x(_ value: Double) -> Float { Float(value * Double(width) + Double(offsetX)) }
            func y(_ value: Double) -> Float { Float(value * Double(height) + Double(offsetY)) }
            let box = DetectionBox(x1: x(x1), y1: y(y1), x2: x(x2), y2: y(y2), label: Int32(label))
            return box.x2 > box.x1 && box.y2 > box.y1 ? box : nil
        }
    }

    /// How far past the image's edge (in image widths or heights) a box may reach from
    /// rounding in whatever wrote it; it is clipped to the edge.
    static let tolerance = 1e-3

    /// The boxes in file order, duplicates and zero-area boxes left out.
    var boxes: [Box] = []
    /// Lines whose box has zero width or height.
    var zeroArea = 0
    /// Lines repeating an earlier line's box (Ultralytics drops them too).
    var duplicates = 0

    /// The label file of an image, by Ultralytics' `img2label_paths`: the last `/images/` of the
    /// path becomes `/labels/` and the extension `.txt`.
    public static func path(forImage image: String) -> String {
        var path = image
        if let range = path.range(of: "/images/", options: .backwards) { path.replaceSubrange(range, with: "/labels/") }
        if let dot = path.lastIndex(of: ".") { path = String(path[..<dot]) }
        return path + ".txt"
    }

    /// Reads the label file at `path` (none: no boxes) for a dataset of `classCount` classes.
    init(path: String, classCount: Int) throws {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && !isFolder.boolValue
        try self.init(text: exists ? String(decoding: try readData(path), as: UTF8.self) : "", path: path, classCount: classCount)
    }

    /// Parses label `text`; `path` names the file in errors.
    init(text: String, path: String, classCount: Int) throws {
        var seen = Set<Box>()
        // "\r\n" is one Character, so Windows files split cleanly too.
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard !fields.isEmpty else { continue }
            let place = "line \(index + 1)"
            guard fields.count == 5 else {
                let polygon = fields.count >= 7 && fields.count % 2 == 1 ? " (segment polygons are not supported)" : ""
                throw DatasetError(path, "\(place): expected 5 fields 'class cx cy w h', got \(fields.count)\(polygon)")
            }
            // Ultralytics reads the class as a float too: 3.0 is class 3.
            guard let classValue = Double(fields[0]), classValue.isFinite, classValue == classValue.rounded() else {
                throw DatasetError(path, "\(place): class '\(fields[0])' is not an integer")
            }
            guard classValue >= 0 && classValue < Double(classCount) else {
                throw DatasetError(path, "\(place): class \(fields[0]) is outside the \(classCount) names (0-\(classCount - 1))")
            }
            var numbers: [Double] = []
            for field in fields[1...] {
                guard let number = Double(field), number.isFinite else { throw DatasetError(path, "\(place): '\(field)' is not a number") }
                numbers.append(number)
            }
            let (centerX, centerY, width, height) = (numbers[0], numbers[1], numbers[2], numbers[3])
            guard width >= 0 && height >= 0 else { throw DatasetError(path, "\(place): negative width or height (\(fields[3]) x \(fields[4]))") }
            let corners = [centerX - width / 2, centerY - height / 2, centerX + width / 2, centerY + height / 2]
            guard corners.allSatisfy({ $0 >= -Self.tolerance && $0 <= 1 + Self.tolerance }) else {
                throw DatasetError(path, "\(place): box '\(fields[1...].joined(separator: " "))' reaches outside the image (0-1)")
            }
            guard width > 0 && height > 0 else { zeroArea += 1; continue }
            let clipped = corners.map { min(1, max(0, $0)) }
            let box = Box(label: Int(classValue), x1: clipped[0], y1: clipped[1], x2: clipped[2], y2: clipped[3])
            guard seen.insert(box).inserted else { duplicates += 1; continue }
            boxes.append(box)
        }
    }

    /// One label line for `box` in a `imageWidth` x `imageHeight` image: `class cx cy w h`
    /// normalised to 0-1, then ` score` where given (Ultralytics' `save_txt` with `save_conf`),
    /// each number as `%g` prints it, as theirs are.
    public static func line(_ box: DetectionBox, score: Float? = nil, imageWidth: Int, imageHeight: Int) -> String {
        let width = Double(imageWidth), height = Double(imageHeight)
        let x1 = Double(box.x1), y1 = Double(box.y1), x2 = Double(box.x2), y2 = Double(box.y2)
        var numbers = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        if let score { numbers.append(Double(score)) }
        return ([String(box.label)] + numbers.map { String(format: "%g", $0) }).joined(separator: " ")
    }
}
