import PerceptCore
import PerceptDatasets
import Foundation

/// Segmentation metrics from a confusion matrix, as torchvision's reference `ConfusionMatrix`
/// computes them: pixel accuracy, per-class IoU = TP / (TP + FP + FN), and their means. Pixels
/// whose truth is outside `0..<classes` (the ignore label 255) are not counted.
public struct SegmentationMetrics: Sendable {
    public let classes: Int
    /// confusion[truth * classes + prediction], in pixels.
    public private(set) var confusion: [Int]

    public init(classes: Int) {
        self.classes = classes
        confusion = [Int](repeating: 0, count: classes * classes)
    }

    /// Adds one image: predicted and true class per pixel.
    public mutating func add(prediction: [UInt8], truth: UnsafeBufferPointer<Int32>) {
        precondition(prediction.count == truth.count, "\(prediction.count) predicted pixels for \(truth.count) labels")
        let k = classes
        confusion.withUnsafeMutableBufferPointer { matrix in
            for (p, t) in zip(prediction, truth) where t >= 0 && Int(t) < k {
                matrix[Int(t) * k + Int(p)] += 1
            }
        }
    }

    /// Counted pixels.
    public var pixels: Int { confusion.reduce(0, +) }

    /// Fraction of counted pixels labelled correctly.
    public var pixelAccuracy: Double {
        let total = pixels
        return total == 0 ? 0 : Double((0..<classes).reduce(0) { $0 + confusion[$1 * classes + $1] }) / Double(total)
    }

    /// IoU of each class; nil for a class that is neither present nor predicted (0 / 0).
    public var perClassIoU: [Double?] {
        (0..<classes).map { c in
            let tp = confusion[c * classes + c]
            let truth = (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] }
            let predicted = (0..<classes).reduce(0) { $0 + confusion[$1 * classes + c] }
            let union = truth + predicted - tp
            return union == 0 ? nil : Double(tp) / Double(union)
        }
    }

    /// Recall of each class (torchvision's per-class "acc"); nil for a class with no pixels.
    public var perClassAccuracy: [Double?] {
        (0..<classes).map { c in
            let truth = (0..<classes).reduce(0) { $0 + confusion[c * classes + $1] }
            return truth == 0 ? nil : Double(confusion[c * classes + c]) / Double(truth)
        }
    }

    /// Mean IoU over the classes with a defined IoU, with or without class 0 (background).
    public func meanIoU(includingBackground: Bool) -> Double {
        let values = perClassIoU.enumerated().compactMap { includingBackground || $0.offset > 0 ? $0.element : nil }
        return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
    }
}
