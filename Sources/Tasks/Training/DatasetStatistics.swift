import PerceptCore
import PerceptDatasets
import Foundation

/// Per-channel mean and standard deviation of value / 255 over up to `limit` images.
public func channelStatistics(_ dataset: ImageDataset, limit: Int = 10_000) throws -> (mean: [Float], std: [Float]) {
    let n = min(dataset.count, limit)
    let bytes = try dataset.readImages(0..<n)
    let c = dataset.channels, plane = dataset.height * dataset.width
    var sum = [Double](repeating: 0, count: c), squares = [Double](repeating: 0, count: c)
    bytes.withUnsafeBufferPointer { p in
        for i in 0..<n {
            for ch in 0..<c {
                let base = (i * c + ch) * plane
                var s = 0.0, q = 0.0
                for j in 0..<plane { let v = Double(p[base + j]) / 255; s += v; q += v * v }
                sum[ch] += s; squares[ch] += q
            }
        }
    }
    let count = Double(n * plane)
    let mean = sum.map { $0 / count }
    let std = zip(squares, mean).map { max(($0 / count - $1 * $1).squareRoot(), 1e-3) }
    return (mean.map(Float.init), std.map(Float.init))
}

/// The fraction of images carrying each tag, over up to `limit` rows of `dataset`.
public func tagFrequencies(_ dataset: TaggingDataset, limit: Int = 100_000) throws -> [Float] {
    let rows = min(dataset.count, limit), k = dataset.tagCount
    var counts = [Int](repeating: 0, count: k)
    let step = 8192
    for start in stride(from: 0, to: rows, by: step) {
        let tags = try dataset.readTags(start..<min(start + step, rows))
        for (index, tag) in tags.enumerated() where tag != 0 { counts[index % k] += 1 }
    }
    return counts.map { Float($0) / Float(max(rows, 1)) }
}
