import Foundation

/// One class's scored predictions on a validation set: each prediction's score and whether it
/// was right (a tag present, a box matched at IoU 0.5), and how many positives there were.
public struct ScoredPredictions: Codable, Sendable {
    public var scores: [Float]
    public var correct: [Bool]
    public var positives: Int

    public init(scores: [Float], correct: [Bool], positives: Int) {
        self.scores = scores; self.correct = correct; self.positives = positives
    }
}

/// Precision, recall and F1 of one class at confidence thresholds 0, 0.01, ..., 1 (the data of
/// Ultralytics' PR_curve and F1_curve plots); stored in a run folder's plots.json.
public struct ClassCurves: Codable, Sendable, Equatable {
    public var name: String
    public var precision: [Double], recall: [Double], f1: [Double]

    /// The confidence thresholds every curve is sampled at.
    public static let confidences: [Double] = (0...100).map { Double($0) / 100 }

    public init(name: String, _ predictions: ScoredPredictions) {
        self.name = name
        var precision: [Double] = [], recall: [Double] = [], f1: [Double] = []
        for threshold in Self.confidences {
            var predicted = 0, truePositives = 0
            for (score, correct) in zip(predictions.scores, predictions.correct) where Double(score) >= threshold {
                predicted += 1
                if correct { truePositives += 1 }
            }
            // No prediction left: precision 1 by convention (the curve's end at recall 0).
            let p = predicted == 0 ? 1 : Double(truePositives) / Double(predicted)
            let r = predictions.positives == 0 ? 0 : Double(truePositives) / Double(predictions.positives)
            precision.append(p); recall.append(r); f1.append(p + r > 0 ? 2 * p * r / (p + r) : 0)
        }
        self.precision = precision; self.recall = recall; self.f1 = f1
    }

    public init(name: String, precision: [Double], recall: [Double], f1: [Double]) {
        self.name = name; self.precision = precision; self.recall = recall; self.f1 = f1
    }
}
