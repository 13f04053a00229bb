import Foundation

extension Converter {
    // MARK: COCO detection

    /// Converts COCO detection JSON plus a folder of PNG or JPEG images to a detection file. Boxes go
    /// from COCO `[x, y, w, h]` to `[x1, y1, x2, y2]` pixels of the stored (resized) image;
    /// image and category ids are kept. Crowd annotations become ignore regions (as pycocotools
    /// treats them); empty boxes are skipped.
    public static func coco(images directory: String, annotations jsonPath: String, output: String,
                            options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let coco = try COCOFile(path: jsonPath)
        guard !coco.images.isEmpty else { throw DatasetError(jsonPath, "empty input: no images") }
        guard !coco.categories.isEmpty else { throw DatasetError(jsonPath, "no categories") }
        var paths: [String] = []
        for image in coco.images {
            let path = directory + "/" + image.fileName
            guard FileManager.default.fileExists(atPath: path) else {
                throw DatasetError(jsonPath, "images[\(image.index)]: image '\(image.fileName)' (id \(image.id)) not found in \(directory)")
            }
            paths.append(path)
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(paths[0])
        let writer = try DatasetWriter(path: output, task: .detection, channels: channels, height: size.height,
                                       width: size.width, source: "coco: \(directory), \(lastComponent(jsonPath))",
                                       overwrite: options.overwrite)
        var perClass = [Int](repeating: 0, count: coco.categories.count)
        var boxes = 0
        do {
            for (index, entry) in coco.images.enumerated() {
                let original = try ImageFile.read(path: paths[index], channels: channels == 1 ? 1 : 3)
                // Boxes are in the declared size's pixels: another PNG size would clip them silently.
                if let declared = entry.declaredSize, declared != ImageSize(width: original.width, height: original.height) {
                    throw DatasetError(jsonPath, "images[\(entry.index)]: '\(entry.fileName)' is declared \(declared) but the PNG is \(original.width)x\(original.height)")
                }
                if options.size == nil && (original.width != size.width || original.height != size.height) {
                    throw DatasetError(paths[index], "image is \(original.width)x\(original.height), expected \(size) (detection files hold one size: use --size)")
                }
                let (fitted, placement) = fit(original, to: size, letterbox: options.letterbox)
                let image = fitted.converted(toChannels: channels)
                // Stretched: each axis by its own ratio; letterboxed: both by the placement's, then offset.
                let scaleX = Float(placement?.width ?? size.width) / Float(original.width)
                let scaleY = Float(placement?.height ?? size.height) / Float(original.height)
                let offsetX = Float(placement?.offsetX ?? 0), offsetY = Float(placement?.offsetY ?? 0)
                var imageBoxes: [DetectionBox] = []
                for annotation in coco.annotations[entry.id] ?? [] {
                    let x1 = max(0, min(Float(original.width), annotation.x)) * scaleX + offsetX
                    let y1 = max(0, min(Float(original.height), annotation.y)) * scaleY + offsetY
                    let x2 = max(0, min(Float(original.width), annotation.x + annotation.width)) * scaleX + offsetX
                    let y2 = max(0, min(Float(original.height), annotation.y + annotation.height)) * scaleY + offsetY
                    guard x2 > x1, y2 > y1 else { continue }
                    imageBoxes.append(DetectionBox(x1: x1, y1: y1, x2: x2, y2: y2, label: Int32(annotation.label), ignore: annotation.crowd))
                    if !annotation.crowd { perClass[annotation.label] += 1 }
                }
                boxes += imageBoxes.count
                try writer.append(image: image, boxes: imageBoxes, imageID: entry.id, originalWidth: original.width,
                                  originalHeight: original.height, source: paths[index])
                options.progress?(index + 1, coco.images.count)
            }
            try writer.finish(classNames: coco.categories.map(\.name), categoryIDs: coco.categories.map(\.id))
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .detection, count: coco.images.count, channels: channels,
                                        height: size.height, width: size.width, classNames: coco.categories.map(\.name),
                                        perClass: perClass, boxes: boxes)
        let crowds = coco.crowdCount
        if crowds > 0 { summary.notes.append("kept \(crowds) crowd annotation\(crowds == 1 ? "" : "s") as ignore regions (pycocotools' iscrowd)") }
        let empty = coco.annotationCount - boxes
        if empty > 0 { summary.notes.append("skipped \(empty) boxes with no area inside their image") }
        return summary
    }
}


/// The parts of a COCO detection JSON file that conversion needs.
struct COCOFile {
    struct ImageEntry { let index: Int; let id: Int64; let fileName: String; let declaredSize: ImageSize? }
    struct Category { let id: Int64; let name: String }
    struct Annotation { let label: Int; let x: Float, y: Float, width: Float, height: Float; let crowd: Bool }

    var images: [ImageEntry] = []
    /// Sorted by id; a category's position is its class index.
    var categories: [Category] = []
    var annotations: [Int64: [Annotation]] = [:]
    var crowdCount = 0
    var annotationCount = 0

    init(path: String) throws {
        try self.init(data: readData(path), path: path)
    }

    /// Parses COCO JSON `data`; `path` only names the source in errors.
    init(data: Data, path: String) throws {
        let root: Any
        do { root = try JSONSerialization.jsonObject(with: data) } catch {
            let reason = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
            throw DatasetError(path, "malformed JSON (\(reason.replacingOccurrences(of: "\n", with: " ")))")
        }
        guard let top = root as? [String: Any] else { throw DatasetError(path, "top level is not a JSON object") }
        func array(_ key: String) throws -> [[String: Any]] {
            guard let value = top[key] else { throw DatasetError(path, "missing '\(key)'") }
            guard let list = value as? [Any] else { throw DatasetError(path, "'\(key)' is not an array") }
            return try list.enumerated().map { index, item in
                guard let object = item as? [String: Any] else { throw DatasetError(path, "\(key)[\(index)] is not an object") }
                return object
            }
        }
        func integer(_ object: [String: Any], _ key: String, _ place: String) throws -> Int64 {
            guard let number = object[key] as? NSNumber, number.doubleValue == number.doubleValue.rounded() else {
                throw DatasetError(path, "\(place): '\(key)' missing or not an integer")
            }
            // Exact when written as an integer; a float spelling (3.0, 1e3) only where doubles
            // are exact. NSNumber.int64Value would wrap 2^64 - 1 to -1.
            if let exact = Int64(number.stringValue) { return exact }
            guard abs(number.doubleValue) < 9_007_199_254_740_992 else {
                throw DatasetError(path, "\(place): '\(key)' \(number.stringValue) is outside the 64-bit integer range")
            }
            return Int64(number.doubleValue)
        }
        for (index, object) in try array("categories").enumerated() {
            guard let name = object["name"] as? String else { throw DatasetError(path, "categories[\(index)]: 'name' missing or not a string") }
            categories.append(Category(id: try integer(object, "id", "categories[\(index)]"), name: name))
        }
        categories.sort { $0.id < $1.id }
        for index in 1..<max(categories.count, 1) where categories[index].id == categories[index - 1].id {
            throw DatasetError(path, "category id \(categories[index].id) is declared twice")
        }
        let classIndex = Dictionary(uniqueKeysWithValues: categories.enumerated().map { ($1.id, $0) })
        var imageIDs = Set<Int64>()
        for (index, object) in try array("images").enumerated() {
            guard let fileName = object["file_name"] as? String, !fileName.isEmpty else {
                throw DatasetError(path, "images[\(index)]: 'file_name' missing or not a string")
            }
            let id = try integer(object, "id", "images[\(index)]")
            guard imageIDs.insert(id).inserted else { throw DatasetError(path, "images[\(index)]: image id \(id) is declared twice") }
            var declaredSize: ImageSize?
            if object["width"] != nil || object["height"] != nil {
                let width = try integer(object, "width", "images[\(index)]"), height = try integer(object, "height", "images[\(index)]")
                guard width > 0, height > 0 else { throw DatasetError(path, "images[\(index)]: size \(width)x\(height) is not positive") }
                declaredSize = ImageSize(width: Int(width), height: Int(height))
            }
            images.append(ImageEntry(index: index, id: id, fileName: fileName, declaredSize: declaredSize))
        }
        for (index, object) in try array("annotations").enumerated() {
            let place = "annotations[\(index)]"
            let imageID = try integer(object, "image_id", place)
            let categoryID = try integer(object, "category_id", place)
            guard imageIDs.contains(imageID) else { throw DatasetError(path, "\(place): image_id \(imageID) is not among the images") }
            guard let label = classIndex[categoryID] else {
                throw DatasetError(path, "\(place): category_id \(categoryID) is outside the declared categories")
            }
            guard let box = object["bbox"] as? [NSNumber], box.count == 4,
                  box.allSatisfy({ $0.doubleValue.isFinite }) else {
                throw DatasetError(path, "\(place): 'bbox' must be 4 numbers [x, y, width, height]")
            }
            annotationCount += 1
            let crowd = (object["iscrowd"] as? NSNumber).map { $0.intValue != 0 } ?? false
            if crowd { crowdCount += 1 }
            annotations[imageID, default: []].append(Annotation(label: label, x: box[0].floatValue, y: box[1].floatValue,
                                                                width: box[2].floatValue, height: box[3].floatValue, crowd: crowd))
        }
    }
}
