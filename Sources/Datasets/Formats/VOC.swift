import Foundation

extension Converter {
    // MARK: Pascal VOC

    /// Converts a Pascal VOC detection dataset (`root` holding `Annotations/*.xml`,
    /// `JPEGImages/`, `ImageSets/Main/<split>.txt`) to a detection file. VOC writes 1-based
    /// pixel corners; they are read as Detectron2 reads them: x1 = xmin - 1, y1 = ymin - 1,
    /// x2 = xmax, y2 = ymax. `difficult` objects become ignore regions, as VOC's own evaluation
    /// leaves them out. The classes are `classes` in the order given (another name is an
    /// error), else the sorted names found; category ids are 1...K in class order.
    public static func voc(root: String, split: String = "train", classes: [String]? = nil, output: String,
                           options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let listPath = root + "/ImageSets/Main/" + split + ".txt"
        guard let listData = FileManager.default.contents(atPath: listPath) else {
            throw DatasetError(listPath, "no such image set (the split '\(split)' of \(root))")
        }
        guard let list = String(data: listData, encoding: .utf8) else { throw DatasetError(listPath, "not UTF-8 text") }
        // A line is an image id, or (in the per-class lists) an id and a flag: the id is the first field.
        let ids = list.split(whereSeparator: \.isNewline).compactMap { $0.split(whereSeparator: \.isWhitespace).first.map(String.init) }
        guard !ids.isEmpty else { throw DatasetError(listPath, "empty input: no image ids") }
        let annotations = try ids.map { try VOCAnnotation(path: root + "/Annotations/" + $0 + ".xml") }
        let classNames = classes ?? Array(Set(annotations.flatMap { $0.objects.map(\.name) })).sorted()
        guard !classNames.isEmpty else { throw DatasetError(root, "no objects in the annotations and no --classes") }
        let classIndex = Dictionary(classNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var paths: [String] = []
        for (id, annotation) in zip(ids, annotations) {
            let candidates = [annotation.fileName.map { root + "/JPEGImages/" + $0 }, root + "/JPEGImages/" + id + ".jpg",
                              root + "/JPEGImages/" + id + ".png"].compactMap { $0 }
            guard let path = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw DatasetError(annotation.path, "image '\(annotation.fileName ?? id + ".jpg")' not found in \(root)/JPEGImages")
            }
            for object in annotation.objects where classIndex[object.name] == nil {
                throw DatasetError(annotation.path, "object '\(object.name)' is not among the \(classNames.count) classes of --classes")
            }
            paths.append(path)
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(paths[0])
        let writer = try DatasetWriter(path: output, task: .detection, channels: channels, height: size.height, width: size.width,
                                       source: "voc: \(root), \(split)", overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: classNames.count)
        var boxes = 0, difficult = 0
        do {
            for (index, (annotation, path)) in zip(annotations, paths).enumerated() {
                let original = try ImageFile.read(path: path, channels: channels == 1 ? 1 : 3)
                if let declared = annotation.size, declared != ImageSize(width: original.width, height: original.height) {
                    throw DatasetError(annotation.path, "declares a \(declared) image but \(lastComponent(path)) is \(original.width)x\(original.height)")
                }
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(path, "image is \(original.width)x\(original.height), expected \(size) (detection files hold one size: use --size)")
                }
                let (fitted, placement) = fit(original, to: size, letterbox: options.letterbox)
                let scaleX = Float(placement?.width ?? size.width) / Float(original.width)
                let scaleY = Float(placement?.height ?? size.height) / Float(original.height)
                let offsetX = Float(placement?.offsetX ?? 0), offsetY = Float(placement?.offsetY ?? 0)
                var imageBoxes: [DetectionBox] = []
                for object in annotation.objects {
                    // 1-based inclusive corners -> 0-based pixel edges, clipped to the image.
                    let x1 = max(0, min(Float(original.width), object.xmin - 1)), y1 = max(0, min(Float(original.height), object.ymin - 1))
                    let x2 = max(0, min(Float(original.width), object.xmax)), y2 = max(0, min(Float(original.height), object.ymax))
                    guard x2 > x1, y2 > y1 else { continue }
                    let label = classIndex[object.name]!
                    imageBoxes.append(DetectionBox(x1: x1 * scaleX + offsetX, y1: y1 * scaleY + offsetY, x2: x2 * scaleX + offsetX,
                                                   y2: y2 * scaleY + offsetY, label: Int32(label), ignore: object.difficult))
                    if object.difficult { difficult += 1 } else { perClass[label] += 1 }
                }
                boxes += imageBoxes.count
                try writer.append(image: fitted.converted(toChannels: channels), boxes: imageBoxes, imageID: Int64(index + 1),
                                  originalWidth: original.width, originalHeight: original.height, source: path)
                options.progress?(index + 1, annotations.count)
            }
            try writer.finish(classNames: classNames, categoryIDs: classNames.indices.map { Int64($0 + 1) })
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .detection, count: annotations.count, channels: channels,
                                        height: size.height, width: size.width, classNames: classNames, perClass: perClass, boxes: boxes)
        if difficult > 0 { summary.notes.append("kept \(difficult) difficult object\(difficult == 1 ? "" : "s") as ignore regions") }
        return summary
    }
}

/// One VOC annotation file: the image's file name and size, and its objects.
struct VOCAnnotation {
    struct Object { var name: String; var difficult: Bool; var xmin: Float, ymin: Float, xmax: Float, ymax: Float }

    let path: String
    var fileName: String?
    var size: ImageSize?
    var objects: [Object] = []

    init(path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DatasetError(path, "no such annotation file")
        }
        let root = try XMLTree.parse(data, path: path)
        guard root.name == "annotation" else { throw DatasetError(path, "the root element is <\(root.name)>, not <annotation>") }
        fileName = root.child("filename")?.text
        if let size = root.child("size") {
            guard let width = size.child("width").flatMap({ Int($0.text) }), let height = size.child("height").flatMap({ Int($0.text) }),
                  width > 0, height > 0 else {
                throw DatasetError(path, "<size> needs positive integer <width> and <height>")
            }
            self.size = ImageSize(width: width, height: height)
        }
        for (index, element) in root.children.filter({ $0.name == "object" }).enumerated() {
            let place = "object \(index + 1)"
            guard let name = element.child("name")?.text, !name.isEmpty else { throw DatasetError(path, "\(place): no <name>") }
            guard let box = element.child("bndbox") else { throw DatasetError(path, "\(place) ('\(name)'): no <bndbox>") }
            func corner(_ tag: String) throws -> Float {
                guard let text = box.child(tag)?.text, let value = Float(text), value.isFinite else {
                    throw DatasetError(path, "\(place) ('\(name)'): <\(tag)> must be a number")
                }
                return value
            }
            let object = Object(name: name, difficult: element.child("difficult")?.text == "1",
                                xmin: try corner("xmin"), ymin: try corner("ymin"), xmax: try corner("xmax"), ymax: try corner("ymax"))
            guard object.xmax >= object.xmin, object.ymax >= object.ymin else {
                throw DatasetError(path, "\(place) ('\(name)'): xmax/ymax below xmin/ymin")
            }
            objects.append(object)
        }
    }
}

/// A minimal XML reader for annotation files: elements, their text and children; the
/// declaration, comments, processing instructions and attributes are skipped, and the five
/// predefined entities decoded. Size and depth are bounded, so a hostile file is an error.
struct XMLTree {
    var name: String
    var text = ""
    var children: [XMLTree] = []

    func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }

    static func parse(_ data: Data, path: String) throws -> XMLTree {
        guard data.count <= 16 << 20 else { throw DatasetError(path, "XML file over 16 MB") }
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(path, "not UTF-8 XML") }
        let characters = Array(text.unicodeScalars)
        var stack: [XMLTree] = [], root: XMLTree?
        var i = 0
        func fail(_ problem: String) -> DatasetError { DatasetError(path, "malformed XML: \(problem)") }
        while i < characters.count {
            if characters[i] != "<" {
                var end = i
                while end < characters.count && characters[end] != "<" { end += 1 }
                let content = decode(String(String.UnicodeScalarView(characters[i..<end])))
                if !stack.isEmpty { stack[stack.count - 1].text += content }
                else if !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw fail("text outside the root element") }
                i = end
                continue
            }
            // Skip <?...?>, <!--...-->, <!DOCTYPE ...>.
            if i + 1 < characters.count, characters[i + 1] == "?" || characters[i + 1] == "!" {
                let comment = i + 3 < characters.count && characters[i + 2] == "-" && characters[i + 3] == "-"
                var end = i + 2
                if comment {
                    while end + 2 < characters.count && !(characters[end] == "-" && characters[end + 1] == "-" && characters[end + 2] == ">") { end += 1 }
                    end += 2
                } else {
                    while end < characters.count && characters[end] != ">" { end += 1 }
                }
                guard end < characters.count else { throw fail("an unterminated '<\(characters[i + 1])'") }
                i = end + 1
                continue
            }
            var end = i + 1
            while end < characters.count && characters[end] != ">" { end += 1 }
            guard end < characters.count else { throw fail("an unterminated tag") }
            var tag = String(String.UnicodeScalarView(characters[(i + 1)..<end]))
            i = end + 1
            if tag.hasPrefix("/") {
                let name = tag.dropFirst().trimmingCharacters(in: .whitespaces)
                guard var closed = stack.popLast(), closed.name == name else { throw fail("</\(name)> closes no open <\(name)>") }
                closed.text = closed.text.trimmingCharacters(in: .whitespacesAndNewlines)
                if stack.isEmpty {
                    guard root == nil else { throw fail("a second root element <\(name)>") }
                    root = closed
                } else {
                    stack[stack.count - 1].children.append(closed)
                }
                continue
            }
            let selfClosing = tag.hasSuffix("/")
            if selfClosing { tag.removeLast() }
            let name = String(tag.split(whereSeparator: \.isWhitespace).first ?? "")
            guard !name.isEmpty else { throw fail("an empty tag") }
            if selfClosing {
                if stack.isEmpty { guard root == nil else { throw fail("a second root element") }; root = XMLTree(name: name) }
                else { stack[stack.count - 1].children.append(XMLTree(name: name)) }
            } else {
                guard stack.count < 64 else { throw fail("elements nested over 64 deep") }
                stack.append(XMLTree(name: name))
            }
        }
        guard stack.isEmpty else { throw fail("<\(stack.last!.name)> is never closed") }
        guard let root else { throw fail("no root element") }
        return root
    }

    static func decode(_ text: String) -> String {
        guard text.contains("&") else { return text }
        return text.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
