import Foundation

// Transposed convolution is the adjoint of conv2D, so it reuses conv's geometry with the roles
// swapped: the "image" side is this op's output [Cout, Ho, Wo] and the kernel positions are the
// input pixels H x W. Forward is a GEMM followed by col2im; backward is im2col followed by GEMMs.

extension Tensor {
    /// Transposed conv: [N, Cin, H, W] * weight [Cin, Cout, kh, kw] (+ bias [Cout]) -> [N, Cout, (H - 1) stride - 2 padding + kh + outputPadding, ...].
    ///
    /// PyTorch `conv_transpose2d` semantics with groups = 1 and dilation = 1; outputPadding must
    /// be below stride and only adds rows and columns at the bottom and right.
    public func convTranspose2D(_ weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                                outputPadding: Int = 0) -> Tensor {
        checkShape(rank == 4 && weight.rank == 4 && weight.shape[0] == shape[1],
                   "convTranspose2D: input \(shape), weight \(weight.shape) (expects NCHW and [Cin, Cout, kh, kw])")
        let (n, cin, h, w) = (shape[0], shape[1], shape[2], shape[3])
        let (cout, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
        checkShape(stride >= 1 && padding >= 0 && outputPadding >= 0 && (outputPadding < stride || outputPadding == 0),
                   "convTranspose2D: stride \(stride), padding \(padding), output padding \(outputPadding) (output padding must be below stride)")
        let ho = (h - 1) * stride - 2 * padding + kh + outputPadding
        let wo = (w - 1) * stride - 2 * padding + kw + outputPadding
        checkShape(ho >= 1 && wo >= 1, "convTranspose2D: input \(shape), weight \(weight.shape), padding \(padding) give an empty output \(ho)x\(wo)")
        if let bias { checkShape(bias.shape == [cout], "convTranspose2D: bias \(bias.shape), expected [\(cout)]") }

        let geo = ConvGeometry(channels: cout, height: ho, width: wo, kernelH: kh, kernelW: kw,
                               stride: stride, padding: padding, outHeight: h, outWidth: w)
        let patch = geo.patchSize, pixels = h * w, outPlane = cout * ho * wo
        let out = Tensor.uninitialized([n, cout, ho, wo])
        let x = self
        parallelFor(n) { images in
            let col = TensorStorage(uninitializedCount: patch * pixels)
            for b in images {
                // col[Cout kh kw, H W] = W^T X: each input pixel's contribution to its output window.
                gemm(transposeA: true, m: patch, n: pixels, k: cin, weight.pointer, lda: patch,
                     x.pointer + b * cin * pixels, ldb: pixels, col.pointer, ldc: pixels)
                let image = out.pointer + b * outPlane
                if let bias {
                    for o in 0..<cout { (image + o * ho * wo).update(repeating: bias.pointer[o], count: ho * wo) }
                } else {
                    image.update(repeating: 0, count: outPlane)
                }
                geo.col2imAdd(col.pointer, ld: pixels, image)
            }
        }

        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return Tensor.record(out, inputs: inputs) { g in
            let dx = x.isTracked ? Tensor.uninitialized(x.shape) : nil
            let dw = weight.isTracked ? Tensor.uninitialized(weight.shape) : nil
            // Each chunk of images sums its own weight gradient; chunks are added in order.
            let partials = ChunkPartials(length: weight.count)
            parallelFor(n) { images in
                let col = TensorStorage(uninitializedCount: patch * pixels)
                let dwPartial = dw == nil ? nil : partials.make(for: images.lowerBound)
                for b in images {
                    geo.im2col(g.pointer + b * outPlane, col.pointer, ld: pixels)
                    if let dx {
                        // dX[Cin, H W] = W[Cin, Cout kh kw] im2col(dY).
                        gemm(m: cin, n: pixels, k: patch, weight.pointer, lda: patch, col.pointer, ldb: pixels,
                             dx.pointer + b * cin * pixels, ldc: pixels)
                    }
                    if let dwPartial {
                        // dW[Cin, Cout kh kw] += X[Cin, H W] im2col(dY)^T.
                        gemm(transposeB: true, m: cin, n: patch, k: pixels, x.pointer + b * cin * pixels, lda: pixels,
                             col.pointer, ldb: pixels, beta: 1, dwPartial, ldc: patch)
                    }
                }
            }
            if let dw { partials.sum(into: dw.pointer) }
            var grads: [Tensor?] = [dx, dw]
            if let bias { grads.append(bias.isTracked ? g.channelSums() : nil) }
            return grads
        }
    }
}
