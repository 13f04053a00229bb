import PerceptCore
import PerceptDatasets

/// A head that predicts on images of any size (the detector's pyramid, the segmenter's fully
/// convolutional scores), each scaled down first where its longer side exceeds `maxSide`, its
/// predictions mapped back to the image's own pixels.
public protocol AnySizeHead: Head {
    /// The longest side an image is scaled down to before prediction (a setting).
    var maxSide: Int { get }
    /// `prediction` made on an image of `size` pixels, as it is for the same image at `original`.
    func mapped(_ prediction: Prediction, from size: (width: Int, height: Int), to original: (width: Int, height: Int)) -> Prediction
}

extension WindowHead: AnySizeHead {
    public var maxSide: Int { settings.maxSide }

    public func mapped(_ detections: [Detection], from size: (width: Int, height: Int), to original: (width: Int, height: Int)) -> [Detection] {
        let sx = Float(original.width) / Float(size.width), sy = Float(original.height) / Float(size.height)
        guard sx != 1 || sy != 1 else { return detections }
        return detections.map { d in
            Detection(box: DetectionBox(x1: d.box.x1 * sx, y1: d.box.y1 * sy, x2: d.box.x2 * sx, y2: d.box.y2 * sy, label: d.box.label),
                      score: d.score)
        }
    }
}

extension SegmentationHead: AnySizeHead {
    public var maxSide: Int { settings.maxSide }

    public func mapped(_ prediction: SegmentationPrediction, from size: (width: Int, height: Int),
                       to original: (width: Int, height: Int)) -> SegmentationPrediction {
        guard size != original else { return prediction }
        let mask = prediction.image.resizedNearest(width: original.width, height: original.height)
        return SegmentationPrediction(width: mask.width, height: mask.height, mask: mask.pixels)
    }
}

extension Model where H: AnySizeHead {
    /// The size an image of `width` x `height` is predicted at: itself, or scaled down so that
    /// its longer side is `maxSide` (aspect kept, sides rounded).
    public func predictionSize(width: Int, height: Int) -> (width: Int, height: Int) {
        PerceptTasks.predictionSize(width: width, height: height, maxSide: head.maxSide)
    }
}

/// An image of `width` x `height` as prediction sees it: itself, or scaled down so that its
/// longer side is `maxSide` (aspect kept, sides rounded).
public func predictionSize(width: Int, height: Int, maxSide side: Int) -> (width: Int, height: Int) {
    let longer = Swift.max(width, height)
    guard longer > side else { return (width, height) }
    let scale = Double(side) / Double(longer)
    return (Swift.max(1, Int((Double(width) * scale).rounded())), Swift.max(1, Int((Double(height) * scale).rounded())))
}

extension Model where H: AnySizeHead {

    /// Predictions for images as read (any size, any channels), in the images' own pixels: each
    /// is converted by the colour rule, scaled down (area-averaging) where it is larger than
    /// `maxSide`, normalised and predicted at that size; consecutive images of one size share a
    /// batch of up to `batchSize`.
    public func predict(images: [Image], batchSize: Int = 64) -> [H.Prediction] {
        let c = configuration
        var predictions: [H.Prediction] = []
        var start = 0
        while start < images.count {
            let size = predictionSize(width: images[start].width, height: images[start].height)
            var end = start + 1
            while end < images.count, end - start < batchSize,
                  (images[end].width, images[end].height) == (images[start].width, images[start].height) { end += 1 }
            let batch = Tensor.uninitialized([end - start, c.inputChannels, size.height, size.width])
            for (offset, image) in images[start..<end].enumerated() {
                var scaled = image.converted(toChannels: c.inputChannels)
                if (scaled.width, scaled.height) != size { scaled = scaled.resized(width: size.width, height: size.height) }
                let one = normalisedTensor(scaled, mean: c.mean, std: c.std)
                (batch.pointer + offset * one.count).update(from: one.pointer, count: one.count)
            }
            let found = predict(batch, geometry: InputGeometry(height: size.height, width: size.width), batchSize: batchSize)
            for (image, prediction) in zip(images[start..<end], found) {
                predictions.append(head.mapped(prediction, from: size, to: (image.width, image.height)))
            }
            start = end
            Tensor.releasePooledBuffers()
        }
        return predictions
    }
}
