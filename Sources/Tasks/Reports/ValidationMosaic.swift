import PerceptCore
import PerceptDatasets
import Foundation

/// `val_predictions.png`: the first validation images of a detection or segmentation run, each
/// as a pair, the ground truth on the left and the model's prediction on the right (boxes
/// scoring at least 0.3, or the class map), four pairs to a row.
public enum ValidationMosaic {
    /// The mosaic, or nil for tasks without spatial predictions.
    public static func make<H: Head>(_ model: Model<H>, _ dataset: ImageDataset, count: Int = 8) throws -> Image? {
        let n = min(count, dataset.count)
        guard n > 0 else { return nil }
        let bytes = try dataset.readImages(0..<n)
        let plane = dataset.channels * dataset.height * dataset.width
        let images = bytes.withUnsafeBufferPointer { raw in
            (0..<n).map { Image(planar: raw.baseAddress! + $0 * plane, width: dataset.width, height: dataset.height, channels: dataset.channels) }
        }
        let names = model.configuration.classes
        var pairs: [(Image, Image)] = []
        if let detector = model as? Model<WindowHead>, let scenes = dataset as? DetectionDataset {
            let truth = try scenes.readBoxes(0..<n)
            let found = detector.predict(images: images)
            for i in 0..<n {
                pairs.append((Drawing.boxes(image: images[i], truth[i].map { ($0, 1) }, classNames: names),
                              Drawing.boxes(image: images[i], found[i].filter { $0.score >= 0.3 }.map { ($0.box, $0.score) }, classNames: names)))
            }
        } else if let segmenter = model as? Model<SegmentationHead>, let canvases = dataset as? SegmentationDataset {
            let masks = try canvases.readMasks(0..<n), side = dataset.width * dataset.height
            let found = segmenter.predict(images: images)
            for i in 0..<n {
                let truth = Image(width: dataset.width, height: dataset.height, channels: 1,
                                  pixels: masks[(i * side)..<((i + 1) * side)].map { $0 == 255 ? 0 : $0 })
                pairs.append((Drawing.segmentationOverlay(image: images[i], mask: truth, classNames: names),
                              Drawing.segmentationOverlay(image: images[i], mask: found[i].image, classNames: names)))
            }
        } else {
            return nil
        }
        return tile(pairs)
    }

    /// Pairs side by side with a gap, four pairs to a row, on dark grey.
    static func tile(_ pairs: [(Image, Image)]) -> Image {
        let cellWidth = pairs.map { $0.0.width + $0.1.width + 4 }.max()! + 12, cellHeight = pairs.map { max($0.0.height, $0.1.height) }.max()! + 12
        let columns = min(4, pairs.count), rows = (pairs.count + columns - 1) / columns
        var canvas = Image(width: columns * cellWidth, height: rows * cellHeight, channels: 3,
                           pixels: [UInt8](repeating: 48, count: columns * cellWidth * rows * cellHeight * 3))
        func paste(_ picture: Image, x: Int, y: Int) {
            for row in 0..<picture.height {
                let to = ((y + row) * canvas.width + x) * 3, from = row * picture.width * 3
                canvas.pixels.replaceSubrange(to..<(to + picture.width * 3), with: picture.pixels[from..<(from + picture.width * 3)])
            }
        }
        for (index, (truth, prediction)) in pairs.enumerated() {
            let x = (index % columns) * cellWidth + 6, y = (index / columns) * cellHeight + 6
            paste(truth.converted(toChannels: 3), x: x, y: y)
            paste(prediction.converted(toChannels: 3), x: x + truth.width + 4, y: y)
        }
        return canvas
    }
}
