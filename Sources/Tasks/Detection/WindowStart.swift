import PerceptDatasets
import PerceptCore

/// OverFeat's weight surgery: a window head started from a classifier of single windows.
extension WindowHead {
    /// Starts the window classifier from a classifier of single windows with the W1 head
    /// (flatten, hidden layer, output), as OverFeat turns a classifier into a dense detector:
    /// the hidden layer's weights over the flattened C x side x side map are this head's side x
    /// side convolution, and the classifier's output rows are the class logits after background
    /// (the background row and the box deltas start fresh). Applies only to a classifier of the
    /// same classes, in the same order, whose layers have exactly these shapes; returns whether
    /// it did.
    @discardableResult
    public func start(from pretrained: PretrainedBackbone, classes: [String]) -> Bool {
        let hidden = hiddenLayer.weight.value.shape, k = architecture.classes
        guard pretrained.task == VisionTask.classification.rawValue, pretrained.classes == classes, classes.count == k,
              let hiddenWeight = pretrained.headParameters["hiddenLayer.weight"], hiddenWeight.shape == [hidden[0], hidden[1] * hidden[2] * hidden[3]],
              let hiddenBias = pretrained.headParameters["hiddenLayer.bias"], hiddenBias.shape == [hidden[0]],
              let outputWeight = pretrained.headParameters["output.weight"], outputWeight.shape == [k, hidden[0]],
              let outputBias = pretrained.headParameters["output.bias"], outputBias.shape == [k],
              let bias = output.bias else { return false }
        // [out, C * side * side] is [out, C, side, side] in row-major order: the same floats.
        hiddenLayer.weight.value = Tensor(shape: hidden, scalars: hiddenWeight.scalars)
        hiddenLayer.bias?.value = hiddenBias.copy()
        let weights = output.weight.value.copy(), biases = bias.value.copy()
        let width = hidden[0]
        (weights.pointer + width).update(from: outputWeight.pointer, count: k * width)
        (biases.pointer + 1).update(from: outputBias.pointer, count: k)
        output.weight.value = weights
        bias.value = biases
        return true
    }
}
