import PerceptDatasets
import PerceptCore

/// FCN's convolutionalised classifier: class scores started from a classifier's output layer.
extension SegmentationHead {
    /// Starts the class scores from a classifier with a linear output on globally pooled
    /// features of the same map, as FCN turns a classifier's last layer into a convolution: a
    /// k x k score convolution becomes the classifier's output weights over k x k (the mean of
    /// the features there), item class c scoring as class c + 1 after background, whose row
    /// starts fresh. Applies only to a classifier
    /// whose classes are `classes` after the first, in order; returns whether it did.
    @discardableResult
    public func start(from pretrained: PretrainedBackbone, classes: [String]) -> Bool {
        let shape = classifier.weight.value.shape, k = architecture.classes
        guard pretrained.task == VisionTask.classification.rawValue,
              pretrained.headParameters["hiddenLayer.weight"] == nil, classes.count == k, Array(classes.dropFirst()) == pretrained.classes,
              let weight = pretrained.headParameters["output.weight"], weight.shape == [k - 1, shape[1]],
              let bias = pretrained.headParameters["output.bias"], bias.shape == [k - 1],
              let scoreBias = classifier.bias else { return false }
        let channels = shape[1], taps = shape[2] * shape[3]
        let weights = classifier.weight.value.copy(), biases = scoreBias.value.copy()
        for c in 0..<(k - 1) {
            for i in 0..<channels {
                let w = weight.pointer[c * channels + i] / Float(taps)
                for t in 0..<taps { weights.pointer[((c + 1) * channels + i) * taps + t] = w }
            }
            biases.pointer[c + 1] = bias.pointer[c]
        }
        classifier.weight.value = weights
        scoreBias.value = biases
        return true
    }
}
