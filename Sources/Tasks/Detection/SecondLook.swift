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
        // Each crop carries the context the head was trained with around its window.
        let margin = architecture.context, size = architecture.window + 2 * margin, plane = size * size
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
                let crop = image.resizedBilinearWindow(height: fit.height, width: fit.width, left: fit.left - margin, top: fit.top - margin,
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

    /// Second looks from features: as `refine(_:in:_:)`, but each view's patch is sampled
    /// bilinearly from the map of the pyramid level nearest its fitting scale (`levels`: each
    /// level's scale and the map the head reads, [N, C, H, W], of an image of `height` x `width`
    /// padded by `levelPadding`), stretched by the ratio of the two scales; no backbone runs.
    /// A view at a level's own scale and on its map's grid gets exactly the dense pass's output.
    public func refine(_ detections: [Detection], image: Int, of levels: [(scale: Float, map: Tensor)],
                       height h: Int, width w: Int) -> [Detection] {
        guard let first = levels.first?.map else { return detections }
        let channels = first.shape[1], side = architecture.featureSide, patch = channels * side * side
        let d = Float(stride) / 2, zero: Float = 0
        var shifts: [(x: Float, y: Float)] = [(zero, zero)]
        if settings.shiftAverage { shifts += [(d, zero), (-d, zero), (zero, d), (zero, -d)] }
        let views = shifts.count, m = detections.count * views
        // This image's maps channels-last, so that a sample's channels are contiguous; patches
        // are [m, side, side, channels] and the hidden weights are permuted to match.
        let interleaved: [[Float]] = levels.map { level in
            let (mh, mw) = (level.map.shape[2], level.map.shape[3]), plane = mh * mw
            let source = level.map.pointer + image * channels * plane
            var out = [Float](repeating: 0, count: plane * channels)
            out.withUnsafeMutableBufferPointer { out in
                for c in 0..<channels { for p in 0..<plane { out[p * channels + c] = source[c * plane + p] } }
            }
            return out
        }
        let patches = Tensor.zeros([m, patch])
        var windows: [(height: Int, width: Int, scale: Float, left: Int, top: Int)] = []
        for (index, detection) in detections.enumerated() {
            for (view, shift) in shifts.enumerated() {
                let fit = fittingWindow(detection.box, height: h, width: w, shift: shift)
                windows.append(fit)
                // The level nearest in log scale, and the window's place and step on its map.
                let nearest = levels.indices.min { abs(Foundation.log(levels[$0].scale / fit.scale)) < abs(Foundation.log(levels[$1].scale / fit.scale)) }!
                let ratio = levels[nearest].scale / fit.scale
                let (mh, mw) = (levels[nearest].map.shape[2], levels[nearest].map.shape[3])
                let x0 = (Float(fit.left) * ratio + Float(levelPadding)) / Float(stride)
                let y0 = (Float(fit.top) * ratio + Float(levelPadding)) / Float(stride)
                let target = patches.pointer + (index * views + view) * patch
                interleaved[nearest].withUnsafeBufferPointer { source in
                    for i in 0..<side {
                        let y = y0 + Float(i) * ratio
                        let yl = Int(y.rounded(.down)), fy = y - Float(yl)
                        for j in 0..<side {
                            let x = x0 + Float(j) * ratio
                            // Bilinear weights of the four neighbours, those outside the map counting as zero.
                            let xl = Int(x.rounded(.down)), fx = x - Float(xl)
                            let to = target + (i * side + j) * channels
                            for corner in 0..<4 {
                                let (dy, dx) = (corner >> 1, corner & 1)
                                let weight = (dy == 0 ? 1 - fy : fy) * (dx == 0 ? 1 - fx : fx)
                                let (row, column) = (yl + dy, xl + dx)
                                guard weight > 0, row >= 0, row < mh, column >= 0, column < mw else { continue }
                                let from = source.baseAddress! + (row * mw + column) * channels
                                for c in 0..<channels { to[c] += weight * from[c] }
                            }
                        }
                    }
                }
            }
        }
        // The hidden layer over a window's whole patch is one matrix product.
        let hiddenWeight = Tensor.uninitialized([architecture.hidden, patch])
        let original = hiddenLayer.weight.tensor.pointer
        for k in 0..<architecture.hidden {
            for c in 0..<channels {
                for cell in 0..<(side * side) { hiddenWeight.pointer[k * patch + cell * channels + c] = original[k * patch + c * side * side + cell] }
            }
        }
        let hidden = patches.linear(hiddenWeight, bias: hiddenLayer.bias?.tensor).relu()
        let outputs = hidden.reshaped([m, architecture.hidden, 1, 1]).pointwiseConv2D(output.weight.tensor, bias: output.bias?.tensor)
        return detections.enumerated().map { index, detection in
            let label = Int(detection.box.label)
            var probability: Float = 0, corners = (x1: Float(0), y1: Float(0), x2: Float(0), y2: Float(0))
            for view in 0..<views {
                let slot = index * views + view, fit = windows[slot]
                let (p, deltas) = secondLook(outputs.pointer + slot * self.channels, label: label)
                let box = Self.coder.decode(deltas: deltas, reference: windowSquare(left: fit.left, top: fit.top, scale: fit.scale, label: label))
                probability += p
                corners = (corners.x1 + box.x1, corners.y1 + box.y1, corners.x2 + box.x2, corners.y2 + box.y2)
            }
            let n = Float(views)
            let box = DetectionBox(x1: corners.x1 / n, y1: corners.y1 / n, x2: corners.x2 / n, y2: corners.y2 / n, label: detection.box.label)
            return Detection(box: box, score: (probability / n * detection.score).squareRoot())
        }
    }

    /// One window's output vector (`base`, `classes + 5` floats): the softmax probability of
    /// object class `label` and the box deltas.
    func secondLook(_ base: UnsafePointer<Float>, label: Int) -> (Float, (Float, Float, Float, Float)) {
        let k = architecture.classes + 1
        return (probability(of: label + 1, base, 0, plane: 1), (base[k], base[k + 1], base[k + 2], base[k + 3]))
    }

    /// Window crops ([N, C, window + 2 context, ...]) through the network, at most 512 at a time: a
    /// photo's hundred detections make a thousand views, whose activations would otherwise all
    /// be alive at once.
    static func run(_ windows: Tensor, _ context: PredictionContext) -> Tensor {
        let n = windows.shape[0], chunk = 512
        guard n > chunk else { return context.runCrops(windows) }
        let per = windows.count / n
        var parts: [Tensor] = []
        for start in Swift.stride(from: 0, to: n, by: chunk) {
            let count = Swift.min(chunk, n - start)
            let slice = Tensor.uninitialized([count] + Array(windows.shape.dropFirst()))
            slice.pointer.update(from: windows.pointer + start * per, count: count * per)
            parts.append(context.runCrops(slice))
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
