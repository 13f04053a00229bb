import PerceptCore
import PerceptDatasets
import Foundation

/// The image pyramid a window head scans: which scales, each level's size, the level padding,
/// and the level and window that fit an object (for training crops and second looks).
extension WindowHead {
    /// `levels` scales from `window / minSize` down to `window / maxSize` for objects of
    /// `minSize` to `maxSize` pixels (their squares), evenly spaced in log scale.
    public static func pyramid(window: Int, minSize: Float, maxSize: Float, levels: Int) -> [Float] {
        let top = Float(window) / minSize, bottom = Float(window) / maxSize
        guard levels > 1 else { return [top] }
        return (0..<levels).map { top * Foundation.pow(bottom / top, Float($0) / Float(levels - 1)) }
    }

    /// The pyramid levels of an image of `height` x `width`: each level's size (the image
    /// scaled by one of `scales`, rounded) and its effective scale (boxes map back exactly for
    /// square images, to within half a pixel otherwise).
    public func levels(height: Int, width: Int) -> [(height: Int, width: Int, scale: Float)] {
        settings.scales.map { Self.level(height: height, width: width, scale: $0) }
    }

    /// One level: the image of `height` x `width` scaled by `scale`, its size rounded, and the
    /// effective scale of that rounded size.
    public static func level(height: Int, width: Int, scale: Float) -> (height: Int, width: Int, scale: Float) {
        let levelHeight = Swift.max(1, Int((Float(height) * scale).rounded()))
        let levelWidth = Swift.max(1, Int((Float(width) * scale).rounded()))
        return (levelHeight, levelWidth, (Float(levelWidth) / Float(width) + Float(levelHeight) / Float(height)) / 2)
    }

    /// Padding of each pyramid level, so that objects at the image border still fill a window.
    public var levelPadding: Int { architecture.window / 2 }

    /// The window that fits `box` best, as training presents objects: centred on the box, at the
    /// level of an image of `height` x `width` (scale clamped to the pyramid's range) where
    /// the box's square is a window wide. `scaleFactor` and `shift` (level pixels) jitter it.
    public func fittingWindow(_ box: DetectionBox, height: Int, width: Int, scaleFactor: Float = 1,
                       shift: (x: Float, y: Float) = (0, 0)) -> (height: Int, width: Int, scale: Float, left: Int, top: Int) {
        let scales = settings.scales
        let square = objectSquare(box)
        let side = Swift.max(square.x2 - square.x1, 1)
        let scale = Swift.min(Swift.max(Float(architecture.window) / side * scaleFactor, scales.min()!), scales.max()!)
        let level = Self.level(height: height, width: width, scale: scale)
        let half = Float(architecture.window) / 2
        let left = Int(((box.x1 + box.x2) / 2 * level.scale - half + shift.x).rounded())
        let top = Int(((box.y1 + box.y2) / 2 * level.scale - half + shift.y).rounded())
        return (level.height, level.width, level.scale, left, top)
    }
}
