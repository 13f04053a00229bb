import PerceptCore

// Item pasting (`Augmentation.pasting`): another item drawn from the loader's window of rows
// goes over the image by the rule compose draws canvases with, so that items overlap as they do
// there. The donor is drawn first (`Pasting.donor`), so a loader knows which rows to read before
// it reads them; the rest of the draws follow from the same per-image generator.

enum Pasting {
    /// Whether this image gets a pasted item, and from which of `candidates` rows: nil with
    /// probability `1 - probability`. Draws nothing when `probability` is 0, so runs without
    /// pasting keep their random stream.
    static func donor(probability: Float, candidates: Int, using generator: inout SeededGenerator) -> Int? {
        guard probability > 0, generator.nextUniform() < probability, candidates > 0 else { return nil }
        return Int(generator.next() % UInt64(candidates))
    }
}

/// Where another item goes when it is pasted onto an image (`Augmentation.pasting`): its pixel
/// (x, y) lands on (x + dx, y + dy), at an offset where the two image frames overlap with IoU in
/// (0, 0.2], so the pasted item covers an edge of the image's item without hiding it. Images of
/// fewer than 3 pixels have no such offset.
struct PastedItem {
    let dx: Int, dy: Int
    /// The file row of the pasted item.
    let source: Int

    init(dx: Int, dy: Int, source: Int) { self.dx = dx; self.dy = dy; self.source = source }

    /// The offset for the item of row `source` (the drawn donor); nil when no offset is found in
    /// 100 tries, as on images too small to overlap that little.
    init?(width: Int, height: Int, source: Int, using generator: inout SeededGenerator) {
        self.source = source
        let area = width * height
        for _ in 0..<100 {
            let dx = Int.random(in: -(width - 1)...(width - 1), using: &generator)
            let dy = Int.random(in: -(height - 1)...(height - 1), using: &generator)
            let overlap = (width - abs(dx)) * (height - abs(dy))
            // IoU = overlap / (2 area - overlap) <= 0.2, i.e. 6 overlap <= 2 area.
            if 6 * overlap <= 2 * area { self.dx = dx; self.dy = dy; return }
        }
        return nil
    }

    /// `image` (one `width` x `height` plane) with the plane `item` pasted at the offset, by maximum.
    func apply(to image: UnsafeMutablePointer<UInt8>, item: UnsafePointer<UInt8>, width: Int, height: Int) {
        for y in max(0, dy)..<min(height, height + dy) {
            let target = image + y * width, source = item + (y - dy) * width
            for x in max(0, dx)..<min(width, width + dx) { target[x] = max(target[x], source[x - dx]) }
        }
    }
}

/// The items of a segmentation mask as compose labels them: the connected regions
/// (8-neighbours) of one class (1-254; 0 is background, 255 ignored). Items of one class that
/// touch make one region.
struct MaskRegions {
    struct Region {
        let label: UInt8
        /// Pixel indices, row-major.
        var pixels: [Int] = []
        /// Bounding box: columns `x0..<x1`, rows `y0..<y1`.
        var x0 = Int.max, y0 = Int.max, x1 = 0, y1 = 0

        /// The bounding box moved by (`dx`, `dy`), as compose's boxes (`x2`, `y2` exclusive).
        func box(dx: Int = 0, dy: Int = 0) -> DetectionBox {
            DetectionBox(x1: Float(x0 + dx), y1: Float(y0 + dy), x2: Float(x1 + dx), y2: Float(y1 + dy), label: Int32(label))
        }
    }

    let regions: [Region]

    /// The regions of the `width` x `height` plane `mask`.
    init(mask: [UInt8], width: Int, height: Int) {
        precondition(mask.count == width * height, "\(mask.count) mask pixels for \(width)x\(height)")
        var seen = [Bool](repeating: false, count: width * height)
        var regions: [Region] = [], stack: [Int] = []
        for start in 0..<(width * height) where !seen[start] && mask[start] != 0 && mask[start] != 255 {
            var region = Region(label: mask[start])
            seen[start] = true
            stack.append(start)
            while let p = stack.popLast() {
                let x = p % width, y = p / width
                region.pixels.append(p)
                region.x0 = min(region.x0, x); region.x1 = max(region.x1, x + 1)
                region.y0 = min(region.y0, y); region.y1 = max(region.y1, y + 1)
                for ny in max(0, y - 1)...min(height - 1, y + 1) {
                    for nx in max(0, x - 1)...min(width - 1, x + 1) {
                        let q = ny * width + nx
                        if !seen[q] && mask[q] == region.label { seen[q] = true; stack.append(q) }
                    }
                }
            }
            regions.append(region)
        }
        self.regions = regions
    }
}

/// An item of another segmentation canvas pasted onto this one (`Augmentation.pasting`): one
/// region of the other canvas's mask (`MaskRegions`) with its image pixels, moved by
/// (`dx`, `dy`) to where its box stays inside the canvas and overlaps each of the canvas's own
/// items' boxes by IoU 0.2 at most, as compose places items. Only canvases with fewer than
/// `maxItems` regions get one, so canvases keep compose's item counts.
struct PastedRegion {
    let dx: Int, dy: Int
    /// The file row of the canvas the region comes from.
    let source: Int
    let region: MaskRegions.Region

    static let maxItems = 3

    init(dx: Int, dy: Int, source: Int, region: MaskRegions.Region) {
        self.dx = dx; self.dy = dy; self.source = source; self.region = region
    }

    /// A region of the canvas of row `source` (the drawn donor) for the canvas whose mask is
    /// `target`; nil when the canvas already has `maxItems` regions, the other canvas has none,
    /// or no place is found in 100 tries. `mask` gives the mask plane of a file row. Touching
    /// items of one class count as one region.
    init?(target: [UInt8], width: Int, height: Int, source: Int, mask: (Int) -> [UInt8], using generator: inout SeededGenerator) {
        let items = MaskRegions(mask: target, width: width, height: height).regions.map { $0.box() }
        self.source = source
        guard items.count < PastedRegion.maxItems else { return nil }
        let regions = MaskRegions(mask: mask(source), width: width, height: height).regions
        guard !regions.isEmpty else { return nil }
        let region = regions[Int(generator.next() % UInt64(regions.count))]
        self.region = region
        for _ in 0..<100 {
            let dx = Int.random(in: -region.x0...(width - region.x1), using: &generator)
            let dy = Int.random(in: -region.y0...(height - region.y1), using: &generator)
            let box = region.box(dx: dx, dy: dy)
            if items.allSatisfy({ intersectionOverUnion($0, box) <= 0.2 }) { self.dx = dx; self.dy = dy; return }
        }
        return nil
    }

    /// Pastes the region by compose's rule (`Composer.paste`): each of its pixels, and each
    /// background pixel of the other canvas next to it (the item's faint rim) where the target
    /// is background too, goes on by per-channel maximum; a region pixel at least as bright as
    /// the target's (brightest channel; ties to the later paste) takes its label in `mask`.
    func apply(image: UnsafeMutablePointer<UInt8>, mask: UnsafeMutablePointer<UInt8>,
               sourceImage: UnsafePointer<UInt8>, sourceMask: UnsafePointer<UInt8>, width: Int, height: Int, channels: Int) {
        let plane = width * height
        func paste(_ p: Int, label: UInt8?) {
            let t = p + dy * width + dx
            var source: UInt8 = 0, target: UInt8 = 0
            for c in 0..<channels {
                source = max(source, sourceImage[c * plane + p]); target = max(target, image[c * plane + t])
                image[c * plane + t] = max(image[c * plane + t], sourceImage[c * plane + p])
            }
            if let label, source >= target { mask[t] = label }
        }
        for p in region.pixels {
            let x = p % width, y = p / width
            for ny in max(0, y - 1)...min(height - 1, y + 1) {
                for nx in max(0, x - 1)...min(width - 1, x + 1) {
                    let q = ny * width + nx
                    let tx = nx + dx, ty = ny + dy
                    if sourceMask[q] == 0 && tx >= 0 && tx < width && ty >= 0 && ty < height && mask[ty * width + tx] == 0 {
                        paste(q, label: nil)
                    }
                }
            }
        }
        for p in region.pixels { paste(p, label: region.label) }
    }
}
