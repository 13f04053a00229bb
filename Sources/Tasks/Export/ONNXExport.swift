import PerceptCore
import PerceptDatasets
import Foundation

/// Percept models as ONNX (opset 17, IR version 8), so they run in onnxruntime, on a phone, in
/// a browser or a C++ service. The input is `images`, float32 [N, C, H, W] of pixels / 255 (as
/// Ultralytics' exports take them); the model's normalisation is the graph's first two nodes.
/// Batch norm is folded into the convolutions before it. Outputs: classification
/// `probabilities` [N, classes]; tagging `scores` [N, tags] (sigmoid); segmentation `scores`
/// [N, classes, H, W] (softmax, at the input's size); detection, the dense window scorer over one
/// pyramid level, `scores` [N, classes + 1, H', W'] (softmax over background and classes) and
/// `deltas` [N, 4, H', W'] (R-CNN deltas against each window's square). Decoding (thresholds,
/// the pyramid, NMS, second looks, flip averaging) stays in the host program: docs/export.md.
public enum ONNXExport {
    /// The ONNX file of `model`.
    public static func export<H: Head>(_ model: Model<H>) throws -> Data {
        let c = model.configuration
        var graph = ONNXGraph()
        let (images, normalised) = input(mean: c.mean, std: c.std, into: &graph)
        let features = try backbone(model.backbone, input: normalised, into: &graph)
        let outputs = try head(model.head, features: features, into: &graph)
        let fullyConvolutional = H.task == .detection || H.task == .segmentation
        let inputDims: [ONNXGraph.Dimension] = [.symbol("N"), .value(c.inputChannels),
                                                fullyConvolutional ? .symbol("H") : .value(c.inputHeight),
                                                fullyConvolutional ? .symbol("W") : .value(c.inputWidth)]
        let metadata: [(String, String)] = [
            ("task", H.task.rawValue), ("classes", json(c.classes)), ("input_channels", String(c.inputChannels)),
            ("input_height", String(c.inputHeight)), ("input_width", String(c.inputWidth)),
            ("mean", json(c.mean.map(Double.init))), ("std", json(c.std.map(Double.init))),
            ("input_scale", "pixels / 255"), ("percept_version", PerceptVersion.current),
            ("percept_model", c.json()),
        ] + detectionGeometry(model.head)
        return graph.model(inputs: [(images, inputDims)], outputs: outputs, metadata: metadata, producerVersion: PerceptVersion.current)
    }

    /// A multi-task model as one graph: the backbone once, then every head, its outputs named
    /// after its task (`classification_probabilities`, `tagging_scores`, `detection_scores`,
    /// `detection_deltas`, `segmentation_scores`). The input takes any size, so every head must:
    /// a vector head that flattens its map is refused.
    public static func export(_ multi: MultiTaskModel) throws -> Data {
        let c = multi.configuration
        for task in multi.tasks where (multi.head(task) as? VectorHeadLayers)?.layout.pooling == .flatten {
            throw ModelError("ONNX export: the \(task.rawValue) head flattens its map, so it takes one input size only, and a multi-task graph takes any")
        }
        var graph = ONNXGraph()
        let (images, normalised) = input(mean: c.mean, std: c.std, into: &graph)
        let features = try backbone(multi.backbone, input: normalised, into: &graph)
        var outputs: [(name: String, dims: [ONNXGraph.Dimension])] = []
        for task in multi.tasks {
            outputs += try head(multi.head(task)!, features: features, into: &graph, prefix: task.rawValue + "_")
        }
        let classes = Dictionary(uniqueKeysWithValues: multi.tasks.map { task -> (String, [String]) in
            switch task {
            case .classification: return (task.rawValue, c.classification!.classes)
            case .tagging: return (task.rawValue, c.tagging!.classes)
            case .detection: return (task.rawValue, c.detection!.classes)
            case .segmentation: return (task.rawValue, c.segmentation!.classes)
            }
        })
        let metadata: [(String, String)] = [
            ("task", MultiTaskConfiguration.task), ("heads", json(multi.tasks.map(\.rawValue))), ("classes", json(classes)),
            ("input_channels", String(c.inputChannels)), ("mean", json(c.mean.map(Double.init))), ("std", json(c.std.map(Double.init))),
            ("input_scale", "pixels / 255"), ("percept_version", PerceptVersion.current), ("percept_model", c.json()),
        ] + (multi.detection.map(detectionGeometry) ?? [])
        return graph.model(inputs: [(images, [.symbol("N"), .value(c.inputChannels), .symbol("H"), .symbol("W")])], outputs: outputs,
                           metadata: metadata, producerVersion: PerceptVersion.current)
    }

    /// The graph's input `images` and its normalisation, `(x - mean) / std` per channel.
    static func input(mean: [Float], std: [Float], into graph: inout ONNXGraph) -> (images: String, normalised: String) {
        let images = graph.name("images")
        let mean = graph.constant("mean", mean, dims: [1, mean.count, 1, 1])
        let std = graph.constant("std", std, dims: [1, std.count, 1, 1])
        return (images, graph.node("Div", [graph.node("Sub", [images, mean]), std], output: "normalised"))
    }

    /// What the exported graph computes for `pixels` ([N, C, H, W], values / 255), computed by
    /// Percept: the outputs by name, in the graph's order (the test data of an export).
    public static func outputs<H: Head>(_ model: Model<H>, pixels: Tensor) -> [(name: String, tensor: Tensor)] {
        let c = model.configuration
        model.setMode(.inference)
        return outputs(H.task, raw: model(normalised(pixels, mean: c.mean, std: c.std)))
    }

    /// What the exported graph of a multi-task model computes for `pixels`, output by output.
    public static func outputs(_ multi: MultiTaskModel, pixels: Tensor) -> [(name: String, tensor: Tensor)] {
        let c = multi.configuration
        multi.setMode(.inference)
        let raw = multi(normalised(pixels, mean: c.mean, std: c.std))
        return multi.tasks.flatMap { task in outputs(task, raw: raw[task]!).map { (task.rawValue + "_" + $0.name, $0.tensor) } }
    }

    /// A head's raw outputs as the graph gives them: probabilities, scores and deltas by name.
    static func outputs(_ task: VisionTask, raw: Tensor) -> [(name: String, tensor: Tensor)] {
        switch task {
        case .classification: return [("probabilities", raw.softmax(axis: 1))]
        case .tagging: return [("scores", raw.sigmoid())]
        case .segmentation: return [("scores", raw.softmax(axis: 1))]
        case .detection:
            let k = raw.shape[1] - 4
            return [("scores", raw.channels(0..<k).softmax(axis: 1)), ("deltas", raw.channels(k..<raw.shape[1]))]
        }
    }

    static func normalised(_ pixels: Tensor, mean: [Float], std: [Float]) -> Tensor {
        let normalised = Tensor.uninitialized(pixels.shape)
        let channels = pixels.shape[1], plane = pixels.shape[2] * pixels.shape[3]
        for n in 0..<pixels.shape[0] {
            for ch in 0..<channels {
                let base = (n * channels + ch) * plane
                for p in 0..<plane { normalised.pointer[base + p] = (pixels.pointer[base + p] - mean[ch]) / std[ch] }
            }
        }
        return normalised
    }

    /// A float32 tensor as a serialised ONNX TensorProto (an `input_0.pb` or `output_0.pb`).
    public static func tensorFile(name: String, _ tensor: Tensor) -> Data {
        UnsafeBufferPointer(start: tensor.pointer, count: tensor.count).withMemoryRebound(to: Float.self) {
            ONNXGraph.tensorFile(name: name, dims: tensor.shape, values: $0)
        }
    }

    /// What a host program needs to decode a detector's dense outputs: the window, the stride
    /// between windows, the padding of each pyramid level and the box coder.
    static func detectionGeometry(_ head: some Head) -> [(String, String)] {
        guard let window = head as? WindowHead else { return [] }
        return detectionGeometry(window)
    }

    static func detectionGeometry(_ window: WindowHead) -> [(String, String)] {
        let coder = WindowHead.coder
        return [("window", String(window.architecture.window)), ("stride", String(window.stride)),
                ("level_padding", String(window.levelPadding)), ("window_context", String(window.architecture.context)),
                ("delta_weights", json([coder.weights.x, coder.weights.y, coder.weights.width, coder.weights.height].map(Double.init))),
                ("delta_max_log_scale", String(coder.maximumLogScale))]
    }

    static func json<T: Encodable>(_ value: T) -> String {
        String(decoding: (try? JSONEncoder().encode(value)) ?? Data("null".utf8), as: UTF8.self)
    }

    // MARK: Backbones

    /// The backbone's maps by name (`input`, `stem`, `stage1`, ...) as graph tensor names.
    static func backbone(_ backbone: any Backbone, input: String, into graph: inout ONNXGraph) throws -> [String: String] {
        var maps = ["input": input]
        if let plain = backbone as? PlainCNN {
            var h = input
            for (index, conv) in plain.convs.enumerated() {
                h = convolution(conv, norm: nil, h, into: &graph, name: "stage\(index + 1)_conv")
                h = graph.node("MaxPool", [h], [.ints("kernel_shape", [2, 2]), .ints("strides", [2, 2])])
                h = graph.node("Relu", [h], output: "stage\(index + 1)")
                maps["stage\(index + 1)"] = h
            }
            return maps
        }
        if let resnet = backbone as? ResNet {
            var h: String
            if resnet.configuration.poolsStem {
                // The pool sits between the convolution and its batch norm: no folding across it.
                h = convolution(resnet.stem, norm: nil, input, into: &graph, name: "stem_conv")
                h = graph.node("MaxPool", [h], [.ints("kernel_shape", [2, 2]), .ints("strides", [2, 2])])
                h = batchNorm(resnet.stemNorm, h, into: &graph)
            } else {
                h = convolution(resnet.stem, norm: resnet.stemNorm, input, into: &graph, name: "stem_conv")
            }
            h = graph.node("Relu", [h], output: "stem")
            maps["stem"] = h
            for (index, stage) in resnet.stages.enumerated() {
                for (b, block) in stage.blocks.enumerated() {
                    let prefix = "stage\(index + 1)_block\(b + 1)"
                    var y = graph.node("Relu", [convolution(block.conv1, norm: block.bn1, h, into: &graph, name: prefix + "_conv1")])
                    y = convolution(block.conv2, norm: block.bn2, y, into: &graph, name: prefix + "_conv2")
                    let shortcut = block.projection.map { convolution($0, norm: block.projectionNorm, h, into: &graph, name: prefix + "_projection") } ?? h
                    h = graph.node("Relu", [graph.node("Add", [y, shortcut])], output: prefix)
                }
                maps["stage\(index + 1)"] = h
            }
            return maps
        }
        throw ModelError("ONNX export: the backbone \(type(of: backbone)) has no ONNX form")
    }

    /// `conv` (and a batch norm after it, folded into its weights and bias) as a Conv node.
    static func convolution(_ conv: Conv2D, norm: BatchNorm2D?, _ input: String, into graph: inout ONNXGraph, name: String) -> String {
        let shape = conv.weight.value.shape   // [out, in / groups, k, k]
        var weights = conv.weight.value.scalars
        var bias = conv.bias?.value.scalars ?? [Float](repeating: 0, count: shape[0])
        if let norm {
            let per = weights.count / shape[0]
            let gamma = norm.weight.value.scalars, beta = norm.bias.value.scalars
            let mean = norm.runningMean.value.scalars, variance = norm.runningVariance.value.scalars
            for o in 0..<shape[0] {
                let scale = gamma[o] / (variance[o] + norm.epsilon).squareRoot()
                for i in 0..<per { weights[o * per + i] *= scale }
                bias[o] = (bias[o] - mean[o]) * scale + beta[o]
            }
        }
        let w = graph.constant(name + "_weight", weights, dims: shape)
        let b = graph.constant(name + "_bias", bias, dims: [shape[0]])
        let pad = conv.padding
        return graph.node("Conv", [input, w, b], [.ints("kernel_shape", [shape[2], shape[3]]), .ints("strides", [conv.stride, conv.stride]),
                                                 .ints("pads", [pad, pad, pad, pad]), .int("group", conv.groups)], output: name)
    }

    static func batchNorm(_ norm: BatchNorm2D, _ input: String, into graph: inout ONNXGraph) -> String {
        let channels = norm.weight.value.count
        return graph.node("BatchNormalization", [input, graph.constant("bn_scale", norm.weight.value.scalars, dims: [channels]),
                                                 graph.constant("bn_bias", norm.bias.value.scalars, dims: [channels]),
                                                 graph.constant("bn_mean", norm.runningMean.value.scalars, dims: [channels]),
                                                 graph.constant("bn_var", norm.runningVariance.value.scalars, dims: [channels])],
                          [.float("epsilon", norm.epsilon)])
    }

    /// A Linear layer as a 1x1 convolution's node (for per-position scores).
    static func pointwise(_ layer: Linear, _ input: String, into graph: inout ONNXGraph, name: String) -> String {
        let (out, inputs) = (layer.weight.value.shape[0], layer.weight.value.shape[1])
        let w = graph.constant(name + "_weight", layer.weight.value.scalars, dims: [out, inputs, 1, 1])
        let b = graph.constant(name + "_bias", layer.bias?.value.scalars ?? [Float](repeating: 0, count: out), dims: [out])
        return graph.node("Conv", [input, w, b], [.ints("kernel_shape", [1, 1])], output: name)
    }

    static func gemm(_ layer: Linear, _ input: String, into graph: inout ONNXGraph, name: String) -> String {
        let (out, inputs) = (layer.weight.value.shape[0], layer.weight.value.shape[1])
        let w = graph.constant(name + "_weight", layer.weight.value.scalars, dims: [out, inputs])
        let b = graph.constant(name + "_bias", layer.bias?.value.scalars ?? [Float](repeating: 0, count: out), dims: [out])
        return graph.node("Gemm", [input, w, b], [.int("transB", 1)], output: name)
    }

    /// `x` resized bilinearly (half-pixel centres, as Percept's upsampling) to the spatial size
    /// of `like`, its batch and channels kept.
    static func resize(_ x: String, like: String, into graph: inout ONNXGraph) -> String {
        let zero = graph.int64s("zero", [0]), two = graph.int64s("two", [2]), four = graph.int64s("four", [4])
        let batchAndChannels = graph.node("Slice", [graph.node("Shape", [x]), zero, two])
        let spatial = graph.node("Slice", [graph.node("Shape", [like]), two, four])
        let sizes = graph.node("Concat", [batchAndChannels, spatial], [.int("axis", 0)])
        return graph.node("Resize", [x, "", "", sizes], [.string("mode", "linear"), .string("coordinate_transformation_mode", "half_pixel")])
    }

    // MARK: Heads

    /// The head's graph and the model's outputs (name, dims).
    /// The head's nodes; its outputs are named `prefix` + the task's output names.
    static func head<H: Head>(_ head: H, features: [String: String], into graph: inout ONNXGraph,
                              prefix: String = "") throws -> [(name: String, dims: [ONNXGraph.Dimension])] {
        if let vector = head as? VectorHeadLayers {
            let logits = try vectorLogits(vector, features: features, into: &graph)
            let k = vector.layout.outputs
            if head is ClassificationHead {
                let probabilities = graph.node("Softmax", [logits], [.int("axis", 1)], output: prefix + "probabilities")
                return [(probabilities, [.symbol("N"), .value(k)])]
            }
            let scores = graph.node("Sigmoid", [logits], output: prefix + "scores")
            return [(scores, [.symbol("N"), .value(k)])]
        }
        if let window = head as? WindowHead {
            let a = window.architecture
            var h = convolution(window.hiddenLayer, norm: nil, features[a.input]!, into: &graph, name: "window_hidden")
            h = graph.node("Relu", [h])
            h = convolution(window.output, norm: nil, h, into: &graph, name: "window_output")
            let k = a.classes + 1
            let axis = graph.int64s("channel_axis", [1])
            let classes = graph.node("Slice", [h, graph.int64s("from", [0]), graph.int64s("to", [k]), axis])
            let scores = graph.node("Softmax", [classes], [.int("axis", 1)], output: prefix + "scores")
            let deltas = graph.node("Slice", [h, graph.int64s("from", [k]), graph.int64s("to", [k + 4]), axis], output: prefix + "deltas")
            return [(scores, [.symbol("N"), .value(k), .symbol("positions_down"), .symbol("positions_across")]),
                    (deltas, [.symbol("N"), .value(4), .symbol("positions_down"), .symbol("positions_across")])]
        }
        if let segmenter = head as? SegmentationHead {
            let a = segmenter.architecture
            var h = convolution(segmenter.classifier, norm: nil, features[a.deepest]!, into: &graph, name: "class_scores")
            for (index, (score, name)) in zip(segmenter.skipScores, a.skips).enumerated() {
                let skip = features[name]!
                h = graph.node("Add", [resize(h, like: skip, into: &graph), convolution(score, norm: nil, skip, into: &graph, name: "skip\(index + 1)_scores")])
            }
            let input = features["input"]!
            h = resize(h, like: input, into: &graph)
            if let refinement = segmenter.refinement {
                let edges = graph.node("Relu", [convolution(refinement.edges, norm: nil, input, into: &graph, name: "refine_edges")])
                let mixed = graph.node("Relu", [convolution(refinement.mix, norm: nil, graph.node("Concat", [h, edges], [.int("axis", 1)]),
                                                            into: &graph, name: "refine_mix")])
                h = graph.node("Add", [h, convolution(refinement.output, norm: nil, mixed, into: &graph, name: "refine_output")])
            }
            let scores = graph.node("Softmax", [h], [.int("axis", 1)], output: prefix + "scores")
            return [(scores, [.symbol("N"), .value(a.classes), .symbol("H"), .symbol("W")])]
        }
        throw ModelError("ONNX export: the head \(type(of: head)) has no ONNX form")
    }

    /// A vector head's logits [N, outputs] from its map.
    static func vectorLogits(_ head: VectorHeadLayers, features: [String: String], into graph: inout ONNXGraph) throws -> String {
        let x = features[head.inputMap.name]!
        if head.layout.pooling == .scoreMax {
            // Every position scored by the layers, then each output's maximum over positions.
            var h = x
            if let hidden = head.hiddenLayer { h = graph.node("Relu", [pointwise(hidden, h, into: &graph, name: "hidden")]) }
            h = pointwise(head.output, h, into: &graph, name: "position_scores")
            return graph.node("Flatten", [graph.node("GlobalMaxPool", [h])], [.int("axis", 1)], output: "logits")
        }
        var h: String
        switch head.layout.pooling {
        case .global: h = graph.node("Flatten", [graph.node("GlobalAveragePool", [x])], [.int("axis", 1)])
        case .globalMax: h = graph.node("Flatten", [graph.node("GlobalMaxPool", [x])], [.int("axis", 1)])
        case .flatten: h = graph.node("Flatten", [x], [.int("axis", 1)])
        case .scoreMax: fatalError("handled above")
        }
        if let hidden = head.hiddenLayer { h = graph.node("Relu", [gemm(hidden, h, into: &graph, name: "hidden")]) }
        return gemm(head.output, h, into: &graph, name: "logits")
    }
}
