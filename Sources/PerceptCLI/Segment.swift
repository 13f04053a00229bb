import ArgumentParser
import Core
import Datasets
import Foundation
import Tasks

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Semantic segmentation (a class per pixel).",
        subcommands: [SegmentTrain.self, SegmentEval.self, SegmentPredict.self])
}

struct SegmentTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a segmenter on a segmentation dataset (index masks, 0 = background, 255 = ignored).",
        discussion: "With no options this trains the tuned recipe: a ResNet-8 backbone of widths 32/64/128 with a stride-2 stem, started from the shipped Fashion-MNIST classifier of that shape (models/fashion-classifier-long.h5: its weights, batch-norm statistics and input normalisation; --backbone-weights none trains from scratch), 3x3 class scores on its deepest map (the item classes' started from the classifier's output layer; --no-start-scores leaves them fresh) upsampled bilinearly to the input size and refined there from the image (a 3x3 convolution of the image and two 1x1 convolutions, added to the scores), per-pixel softmax cross-entropy, 16 epochs of SGD with Nesterov momentum at peak learning rate 0.2, cosine schedule, crop and flip augmentation with half the canvases getting an item of another pasted on (--paste); predictions average each image's scores with its mirror image's. --skips and --decoder-width add finer maps (FCN score fusion, or a U-Net-style decoder). With --val the best epoch is picked by mean IoU over the item classes (background excluded).")

    @OptionGroup var arguments: TrainArguments

    @Option(help: ArgumentHelp("Backbone maps the decoder merges, deepest first, e.g. stage2,stage1,stem (default: the recipe's).", valueName: "MAP,..."))
    var skips: String?

    @Option(help: "Channels of the decoder's 3x3 convolutions; 0 for FCN score fusion (1x1 class scores per map, summed) (default: the recipe's).")
    var decoderWidth: Int?

    @Option(help: "Hidden channels of the full-resolution refinement of the class scores from the input image; 0 for none (default: the recipe's).")
    var refineWidth: Int?

    @Option(help: ArgumentHelp("Backbone maps the class scores are refined from on their way up to the input size, coarsest first, e.g. stage2,stage1 (each: the scores resized to the map, a 3x3 convolution of the map, two 1x1 convolutions, added to the scores) (default: the recipe's).", valueName: "MAP,..."))
    var refineMaps: String?

    @Option(help: "Hidden channels of each --refine-maps refinement (default: the recipe's).")
    var refineMapsWidth: Int?

    @Option(help: "Side of the class-score convolution on the deepest map (or the decoder's last level): 1 scores each position from its own features, 3 (or 5, 7) also from its neighbours' (default: the recipe's).")
    var classifierKernel: Int?

    @Option(help: "Side of the class-score convolutions of the skip maps in FCN score fusion (--decoder-width 0): 1, 3, 5 or 7 (default: the recipe's).")
    var skipKernel: Int?

    @Flag(inversion: .prefixedNo, help: "Store the setting that predictions average each image's scores with its mirror image's (default: on).")
    var flipAverage: Bool?

    @Flag(inversion: .prefixedNo, help: "With a classifier's backbone (--backbone-weights, the recipe's by default), also start the item classes' scores from its output layer, where its classes are the dataset's (default: on).")
    var startScores: Bool?

    @Option(help: ArgumentHelp("Loss weight per class, background first (default: all 1).", valueName: "W0,W1,..."))
    var classWeights: String?

    @Option(help: "Weight of a Lovász-softmax term (a surrogate of 1 - IoU over each batch, Berman et al. 2018) added to the cross-entropy; 0 for none (default: the recipe's).")
    var lovasz: Float?

    @Option(help: "Context the deepest map's positions gather before they are scored: attention (each position adds an attention-weighted mix of all positions' features, Wang et al. 2018), global (the mean of all positions' features, ParseNet) or none; FCN score fusion only (default: the recipe's).")
    var context: ContextChoice?

    @Option(help: "Query and key channels of --context attention (default: the recipe's).")
    var contextKeys: Int?

    @Option(help: "Channels of a 3x3 convolution + batch norm + ReLU on the deepest map before the class scores (torchvision's FCNHead); 0 for none; FCN score fusion only (default: the recipe's).")
    var hiddenWidth: Int?

    func validate() throws {
        if let hiddenWidth, !(0...4096).contains(hiddenWidth) { throw ValidationError("--hidden-width must be 0 to 4096") }
        if let contextKeys, !(1...4096).contains(contextKeys) { throw ValidationError("--context-keys must be 1 to 4096") }
        if contextKeys != nil, context?.context != .attention {
            throw ValidationError("--context-keys sets attention's keys; it needs --context attention")
        }
        if let lovasz, !(lovasz >= 0 && lovasz <= 100) { throw ValidationError("--lovasz must be between 0 and 100") }
        if let decoderWidth, decoderWidth < 0 { throw ValidationError("--decoder-width must be 0 or more") }
        if let refineWidth, refineWidth < 0 { throw ValidationError("--refine-width must be 0 or more") }
        if let refineMapsWidth, !(1...4096).contains(refineMapsWidth) { throw ValidationError("--refine-maps-width must be 1 to 4096") }
        if refineMapsWidth != nil, (refineMaps ?? "").isEmpty {
            throw ValidationError("--refine-maps-width sets the width of --refine-maps refinements; it needs --refine-maps")
        }
        let headOptions: [(name: String, value: Any?)] = [
            ("--skips", skips), ("--decoder-width", decoderWidth), ("--refine-width", refineWidth),
            ("--refine-maps", refineMaps), ("--refine-maps-width", refineMapsWidth), ("--classifier-kernel", classifierKernel),
            ("--skip-kernel", skipKernel), ("--flip-average", flipAverage), ("--start-scores", startScores),
            ("--class-weights", classWeights), ("--lovasz", lovasz), ("--context", context), ("--context-keys", contextKeys),
            ("--hidden-width", hiddenWidth)]
        if arguments.resume != nil, headOptions.contains(where: { $0.value != nil }) {
            throw ValidationError("--resume continues the head the run was started with; drop the head options (\(headOptions.map(\.name).joined(separator: ", ")))")
        }
        if let classifierKernel, ![1, 3, 5, 7].contains(classifierKernel) { throw ValidationError("--classifier-kernel must be 1, 3, 5 or 7") }
        if let skipKernel, ![1, 3, 5, 7].contains(skipKernel) { throw ValidationError("--skip-kernel must be 1, 3, 5 or 7") }
        if let classWeights, commaList(classWeights)!.contains(where: { Float($0).map { !($0 >= 0 && $0.isFinite) } ?? true }) {
            throw ValidationError("--class-weights must be non-negative numbers separated by commas, got '\(classWeights)'")
        }
    }

    func run() throws {
        try failingCleanly {
            let dataset = try SegmentationDataset(path: arguments.data)
            let validation = try arguments.val.map { try SegmentationDataset(path: $0) }
            var recipe = Recipe.segmentation
            if let skips { recipe.skips = commaList(skips)!.filter { !$0.isEmpty } }
            if let decoderWidth { recipe.decoderWidth = decoderWidth }
            if let refineWidth { recipe.refineWidth = refineWidth }
            if let refineMaps { recipe.refineMaps = commaList(refineMaps)!.filter { !$0.isEmpty } }
            if let refineMapsWidth { recipe.refineMapsWidth = refineMapsWidth }
            if let classifierKernel { recipe.classifierKernel = classifierKernel }
            if let skipKernel { recipe.skipKernel = skipKernel }
            if let flipAverage { recipe.flipAverage = flipAverage }
            if let startScores { recipe.startScores = startScores }
            if let lovasz { recipe.lovaszWeight = lovasz }
            if let context { recipe.context = context.context }
            if let contextKeys { recipe.contextKeys = contextKeys }
            if let hiddenWidth { recipe.hiddenWidth = hiddenWidth }
            let classes = dataset.classNames.count
            let weights = classWeights.map { commaList($0)!.compactMap(Float.init) }
            if let weights, weights.count != classes {
                throw DatasetError(dataset.path, "has \(classes) classes, --class-weights gives \(weights.count) weights")
            }
            try runTraining(SegmentationHead.self, arguments, base: recipe, dataset: dataset, validation: validation, configure: { recipe, map, _, _ in
                SegmentationHead.Configuration(deepest: map.name, skips: recipe.skips, decoderWidth: recipe.decoderWidth,
                                               refineWidth: recipe.refineWidth,
                                               classifierKernel: recipe.classifierKernel == 1 ? nil : recipe.classifierKernel,
                                               skipKernel: recipe.skipKernel == 1 ? nil : recipe.skipKernel,
                                               classes: classes, classWeights: weights,
                                               lovaszWeight: recipe.lovaszWeight == 0 ? nil : recipe.lovaszWeight,
                                               flipAverage: recipe.flipAverage ? true : nil, context: recipe.context,
                                               contextKeys: recipe.context == .attention ? recipe.contextKeys : nil,
                                               hiddenWidth: recipe.hiddenWidth == 0 ? nil : recipe.hiddenWidth,
                                               refineMaps: recipe.refineMaps.isEmpty ? nil : recipe.refineMaps,
                                               refineMapsWidth: recipe.refineMaps.isEmpty ? nil : recipe.refineMapsWidth)
            }, prepare: { model, recipe, pretrained in
                if let context = model.head.configuration.context {
                    let keys = model.head.configuration.contextKeys.map { " (\($0) keys)" } ?? ""
                    FileHandle.standardError.write(Data("\(context.rawValue) context on \(model.head.configuration.deepest)\(keys)\n".utf8))
                }
                if recipe.startScores, let pretrained, model.head.start(from: pretrained, classes: dataset.classNames) {
                    FileHandle.standardError.write(Data("class scores from \(pretrained.path)'s output layer\n".utf8))
                }
            })
        }
    }
}

struct SegmentEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Pixel accuracy, per-class IoU and mean IoU with and without the background class.")

    @OptionGroup var arguments: EvalArguments

    @Flag(inversion: .prefixedNo, help: "Average the scores of each image and its mirror image (default: the model's setting).")
    var flipAverage: Bool?

    func run() throws {
        try failingCleanly {
            var (model, _, loader): (Model<SegmentationHead>, _, _) = try arguments.open(SegmentationDataset.init(path:))
            if let flipAverage, flipAverage != (model.configuration.head.flipAverage ?? false) {
                model = try model.reconfigured { $0.head.flipAverage = flipAverage }
            }
            let names = model.configuration.classes
            let metrics = try model.measure(loader)
            let iou = metrics.perClassIoU, recall = metrics.perClassAccuracy
            let items = metrics.meanIoU(includingBackground: false), all = metrics.meanIoU(includingBackground: true)
            if arguments.json {
                let object: [String: Any] = [
                    "pixels": metrics.pixels, "pixel_accuracy": metrics.pixelAccuracy,
                    "mean_iou": items, "mean_iou_with_background": all,
                    // confusion[truth][prediction] in pixels, as torchvision's ConfusionMatrix.mat.
                    "confusion": names.indices.map { t in Array(metrics.confusion[t * names.count..<(t + 1) * names.count]) },
                    "per_class": names.indices.map { c in
                        ["class": names[c], "iou": iou[c] as Any? ?? NSNull(), "accuracy": recall[c] as Any? ?? NSNull()] as [String: Any]
                    },
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return
            }
            print(String(format: "pixels %d  pixel accuracy %.4f  mIoU %.4f (classes 1-%d)  mIoU with background %.4f",
                         metrics.pixels, metrics.pixelAccuracy, items, names.count - 1, all))
            let width = max(12, names.map(\.count).max() ?? 0)
            print("class".padding(toLength: width, withPad: " ", startingAt: 0) + "     IoU  accuracy")
            for c in names.indices {
                func cell(_ value: Double?, _ size: Int) -> String {
                    value.map { String(format: "%\(size).4f", $0) } ?? String(repeating: " ", count: size - 1) + "-"
                }
                print(names[c].padding(toLength: width, withPad: " ", startingAt: 0) + "  " + cell(iou[c], 6) + "  " + cell(recall[c], 8))
            }
        }
    }
}

struct SegmentPredict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Segment PNG images; writes one 8-bit index-mask PNG per image (pixel value = class index, 0 = background) with the image's file name.",
        discussion: "Images of another size than the model's input are resized for the model (bilinear) and their masks resized back to the image's size (nearest neighbour).")

    @Option(help: "Model file.")
    var model: String

    @Argument(help: "PNG images or directories of them.")
    var images: [String]

    @Option(name: .shortAndLong, help: "Directory for the masks (created if missing).")
    var output: String

    @Option(help: "Also write colour overlays with a legend of class names to this directory.")
    var overlay: String?

    @Flag(help: "Replace masks or overlays that already exist.")
    var force = false

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try failingCleanly {
            if let threads { Threads.set(threads) }
            let (model, _) = try Model<SegmentationHead>.load(path: model)
            let paths = try collectImagePaths(images)
            let names = try uniqueOutputNames(paths)
            for directory in [output] + (overlay.map { [$0] } ?? []) {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            let targets = names.map { (output as NSString).appendingPathComponent($0) }
            let overlays = overlay.map { dir in names.map { (dir as NSString).appendingPathComponent($0) } }
            if !force, let existing = (targets + (overlays ?? [])).first(where: { FileManager.default.fileExists(atPath: $0) }) {
                throw DatasetError(existing, "exists; pass --force to replace it")
            }
            let classNames = model.configuration.classes
            // In batches, so memory stays bounded for long lists of images.
            for start in stride(from: 0, to: paths.count, by: 64) {
                let batch = Array(paths[start..<min(start + 64, paths.count)])
                let originals = try batch.map { try PNG.read(path: $0, channels: 3) }
                let predictions = model.predict(try loadImages(batch, for: model.configuration))
                for (offset, (original, prediction)) in zip(originals, predictions).enumerated() {
                    let i = start + offset
                    var mask = prediction.image
                    if mask.width != original.width || mask.height != original.height {
                        mask = mask.resizedNearest(width: original.width, height: original.height)
                    }
                    try PNG.write(mask, to: targets[i])
                    if let overlays {
                        try PNG.write(Drawing.segmentationOverlay(image: original, mask: mask, classNames: classNames), to: overlays[i])
                    }
                }
            }
            FileHandle.standardError.write(Data("wrote \(paths.count) masks to \(output)\(overlay.map { " and overlays to \($0)" } ?? "")\n".utf8))
        }
    }
}

/// The output file name of each input (its own name); two inputs of the same name are an error,
/// since one output would replace the other.
func uniqueOutputNames(_ paths: [String]) throws -> [String] {
    var seen: [String: String] = [:]
    return try paths.map { path in
        let name = (path as NSString).lastPathComponent
        if let other = seen[name] { throw DatasetError(path, "has the same file name as \(other); outputs are named after their inputs") }
        seen[name] = path
        return name
    }
}

/// `--context`: one of the head's contexts, or none.
struct ContextChoice: ExpressibleByArgument {
    let context: SegmentationContext?

    init?(argument: String) {
        if argument == "none" { context = nil; return }
        guard let context = SegmentationContext(rawValue: argument) else { return nil }
        self.context = context
    }

    static var allValueStrings: [String] { SegmentationContext.allCases.map(\.rawValue) + ["none"] }
}
