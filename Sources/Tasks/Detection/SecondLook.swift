import PerceptDatasets
import PerceptCore
import Foundation

/// Iterative localisation: second looks at a window head's detections.
extension WindowHead {
    /// A second look at `detections` of one normalised image ([1, C, H, W]), as in iterative
    /// localisation (Gidaris & Komodakis, 2015): each detection's fitting window is cropped
    /// (with `flipAverage`, also mirrored) and classified; the detection keeps its class, takes
    /// the box regressed from that window, and as its score the geometric mean of its score and
    /// that class's probability there. Measured on validation scenes, repeated looks sharpen
    /// boxes and scores alike (models/README.md).
    public func refine(_ detections: [Detection], in image: Tensor, _ context: PredictionContext) -> [Detection] {
        let (c, h, w) = (image.shape[1], image.shape[2], image.shape[3])
        let size = architecture.window, plane = size * size
        // Each detection's views: its fitting window and, with `shiftAverage`, that window moved
        // by half a stride in each direction.
        let d = Float(stride) / 2, zero: Float = 0
        var shifts: [(x: Float, y: Float)] = [(zero, zero)]
        if settings.shiftAverage { shifts += [(d, zero), (-d, zero), (zero, d), (zero, -d)] }
        let views = shifts.count, m = detections.count * views
        let crops = Tensor.uninitialized([m, c, size, size])
        var windows: [(height: Int, width: Int, scale: Float, left: Int, top: Int)] = []
        for (index, detection) in detections.enumerated() {
            for (view, shift) in shifts.enumerated() {
                let fit = fittingWindow(detection.box, height: h, width: w, shift: shift)
                let crop = image.resizedBilinearWindow(height: fit.height, width: fit.width, left: fit.left, top: fit.top,
                                                       size: size, background: context.background)
                let slot = index * views + view
                withExtendedLifetime(crop) { (crops.pointer + slot * c * plane).update(from: crop.pointer, count: c * plane) }
                windows.append(fit)
            }
        }
        var batch = crops
        if settings.flipAverage {
            batch = Tensor.uninitialized([2 * m, c, size, size])
            batch.pointer.update(from: crops.pointer, count: crops.count)
            let mirrored = crops.flippedHorizontally()
            withExtendedLifetime(mirrored) { (batch.pointer + crops.count).update(from: mirrored.pointer, count: crops.count) }
        }
        let outputs = Self.run(batch, context)
        return detections.enumerated().map { index, detection in
            let label = Int(detection.box.label)
            var probability: Float = 0, corners = (x1: Float(0), y1: Float(0), x2: Float(0), y2: Float(0))
            for view in 0..<views {
                let slot = index * views + view, fit = windows[slot]
                var (p, deltas) = secondLook(outputs.pointer + slot * channels, label: label)
                if settings.flipAverage {
                    let (mirrorP, mirrorDeltas) = secondLook(outputs.pointer + (m + slot) * channels, label: label)
                    p = (p + mirrorP) / 2
                    deltas = ((deltas.0 - mirrorDeltas.0) / 2, (deltas.1 + mirrorDeltas.1) / 2,
                              (deltas.2 + mirrorDeltas.2) / 2, (deltas.3 + mirrorDeltas.3) / 2)
                }
                let square = windowSquare(left: fit.left, top: fit.top, scale: fit.scale, label: label)
                let box = Self.coder.decode(deltas: deltas, reference: square)
                probability += p
                corners = (corners.x1 + box.x1, corners.y1 + box.y1, corners.x2 + box.x2, corners.y2 + box.y2)
            }
            let n = Float(views)
            let box = DetectionBox(x1: corners.x1 / n, y1: corners.y1 / n, x2: corners.x2 / n, y2: corners.y2 / n, label: detection.box.label)
            // The geometric mean with the score so far: repeated looks weigh the latest most.
            let score = (probability / n * detection.score).squareRoot()
            return Detection(box: box, score: score)
        }
    }

    /// One window's output vector (`base`, `classes + 5` floats): the softmax probability of
    /// object class `label` and the box deltas.
    func secondLook(_ base: UnsafePointer<Float>, label: Int) -> (Float, (Float, Float, Float, Float)) {
        let k = architecture.classes + 1
        return (probability(of: label + 1, base, 0, plane: 1), (base[k], base[k + 1], base[k + 2], base[k + 3]))
    }

    /// Window crops ([N, C, window, window]) through the network, at most 512 at a time: a
    /// photo's hundred detections make a thousand views, whose activations would otherwise all
    /// be alive at once.
    static func run(_ windows: Tensor, _ context: PredictionContext) -> Tensor {
        let n = windows.shape[0], chunk = 512
        guard n > chunk else { return context.run(windows) }
        let per = windows.count / n
        var parts: [Tensor] = []
        for start in Swift.stride(from: 0, to: n, by: chunk) {
            let count = Swift.min(chunk, n - start)
            let slice = Tensor.uninitialized([count] + Array(windows.shape.dropFirst()))
            slice.pointer.update(from: windows.pointer + start * per, count: count * per)
            parts.append(context.run(slice))
            Tensor.releasePooledBuffers()
        }
        let out = Tensor.uninitialized([n] + Array(parts[0].shape.dropFirst()))
        var offset = 0
        for part in parts {
            (out.pointer + offset).update(from: part.pointer, count: part.count)
            offset += part.count
        }
        return out
    }
}
