import PerceptCore
import PerceptDatasets
import Foundation

/// Image files named on the command line: files as given, directories searched recursively
/// for PNG and JPEG files (in sorted order).
public func collectImagePaths(_ arguments: [String]) throws -> [String] {
    try collectImageFiles(arguments).paths
}

/// The image files named on the command line, and per directory how many other files it holds.
public func collectImageFiles(_ arguments: [String]) throws -> (paths: [String], skipped: [(directory: String, count: Int)]) {
    var paths: [String] = [], skipped: [(directory: String, count: Int)] = []
    let fm = FileManager.default
    for argument in arguments {
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: argument, isDirectory: &isDirectory) else {
            throw DatasetError(argument, "no such file or directory")
        }
        if isDirectory.boolValue {
            guard let enumerator = fm.enumerator(atPath: argument) else { throw DatasetError(argument, "cannot list directory") }
            var found: [String] = [], others = 0
            while let entry = enumerator.nextObject() as? String {
                if (entry as NSString).lastPathComponent.hasPrefix(".") { continue }
                if ImageFile.hasImageExtension(entry) {
                    found.append((argument as NSString).appendingPathComponent(entry))
                } else if enumerator.fileAttributes?[.type] as? FileAttributeType != .typeDirectory {
                    others += 1
                }
            }
            guard !found.isEmpty else { throw DatasetError(argument, "directory holds no PNG or JPEG images") }
            paths += found.sorted()
            if others > 0 { skipped.append((argument, others)) }
        } else {
            paths.append(argument)
        }
    }
    return (paths, skipped)
}

/// One image as a normalised [1, C, H, W] tensor at its own size (value / 255, then
/// `(x - mean[c]) / std[c]`), for heads that take images of any size.
public func normalisedTensor(_ image: Image, mean: [Float], std: [Float]) -> Tensor {
    let c = image.channels, plane = image.width * image.height
    precondition(mean.count == c && std.count == c, "normalisation for \(mean.count) channels, image has \(c)")
    let out = Tensor.uninitialized([1, c, image.height, image.width])
    image.pixels.withUnsafeBufferPointer { pixels in
        for ch in 0..<c {
            let scale = 1 / (255 * std[ch]), shift = mean[ch] / std[ch]
            let dst = out.pointer + ch * plane
            for p in 0..<plane { dst[p] = Float(pixels[p * c + ch]) * scale - shift }
        }
    }
    return out
}

/// Reads image files into one normalised [N, C, H, W] tensor of the model's input size (see
/// `modelInput`).
public func loadImages<H>(_ paths: [String], for configuration: ModelConfiguration<H>) throws -> Tensor {
    modelInput(try paths.map { try ImageFile.read(path: $0, channels: configuration.inputChannels) }, for: configuration)
}

/// Images as one normalised [N, C, H, W] tensor of the model's input size: channels converted
/// by the colour rule (`ImageFile`) and images of another size resized (bilinear, as `convert
/// --size` does, so training and prediction agree), or with `letterbox` fitted with their aspect
/// kept on a black canvas (as `convert --size --letterbox` does).
public func modelInput<H>(_ images: [Image], for configuration: ModelConfiguration<H>, letterbox: Bool = false) -> Tensor {
    let (c, h, w) = (configuration.inputChannels, configuration.inputHeight, configuration.inputWidth)
    let out = Tensor.uninitialized([images.count, c, h, w])
    let plane = h * w
    for (i, original) in images.enumerated() {
        var image = original.converted(toChannels: c)
        if letterbox {
            image = image.letterboxed(width: w, height: h).image
        } else if image.width != w || image.height != h {
            image = image.resized(width: w, height: h)
        }
        image.pixels.withUnsafeBufferPointer { pixels in
            // Interleaved HWC bytes -> planar, normalised floats.
            let base = out.pointer + i * c * plane
            for ch in 0..<c {
                let scale = 1 / (255 * configuration.std[ch]), shift = configuration.mean[ch] / configuration.std[ch]
                let dst = base + ch * plane
                for p in 0..<plane { dst[p] = Float(pixels[p * c + ch]) * scale - shift }
            }
        }
    }
    return out
}
