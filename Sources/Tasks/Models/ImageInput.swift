import PerceptCore
import PerceptDatasets
import Foundation

/// Image files named on the command line: files as given, directories searched recursively
/// for PNG and JPEG files.
public func collectImagePaths(_ arguments: [String]) throws -> [String] {
    var paths: [String] = []
    let fm = FileManager.default
    for argument in arguments {
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: argument, isDirectory: &isDirectory) else {
            throw DatasetError(argument, "no such file or directory")
        }
        if isDirectory.boolValue {
            guard let entries = fm.enumerator(atPath: argument)?.allObjects as? [String] else {
                throw DatasetError(argument, "cannot list directory")
            }
            let found = entries.filter { ImageFile.hasImageExtension($0) }
                .map { (argument as NSString).appendingPathComponent($0) }
            guard !found.isEmpty else { throw DatasetError(argument, "directory holds no PNG or JPEG images") }
            paths += found.sorted()
        } else {
            paths.append(argument)
        }
    }
    return paths
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

/// Reads PNGs into one normalised [N, C, H, W] tensor of the model's input size: channels are
/// converted and images of another size are resized (bilinear).
public func loadImages<C>(_ paths: [String], for configuration: ModelConfiguration<C>) throws -> Tensor {
    let (c, h, w) = (configuration.inputChannels, configuration.inputHeight, configuration.inputWidth)
    let out = Tensor.uninitialized([paths.count, c, h, w])
    let plane = h * w
    for (i, path) in paths.enumerated() {
        var image = try ImageFile.read(path: path, channels: c)
        if image.width != w || image.height != h { image = image.resized(width: w, height: h) }
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
