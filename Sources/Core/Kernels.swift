// Small vector kernels for the elementwise work around the GEMMs.
//
// Swift's optimiser leaves loops such as `d[i] = y[i] > 0 ? g[i] : 0` scalar and branchy;
// written on SIMD8 they compile to packed compares and blends (measured: the ReLU pullback
// went from 13% of a ResNet-8 training step to a memory-bound few percent).

@usableFromInline typealias Vector = SIMD8<Float>

@inlinable @inline(__always)
func load(_ p: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(p).loadUnaligned(as: Vector.self)
}

@inlinable @inline(__always)
func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self)
}

/// Runs an elementwise kernel over `n` elements split across threads in blocks of at least
/// 64K elements (smaller arrays are not worth waking a second thread for).
@inlinable
public func elementwise(_ n: Int, _ body: (Int, Int) -> Void) {
    let block = 65_536
    if n < 2 * block { body(0, n); return }
    parallelFor((n + block - 1) / block) { blocks in
        let start = blocks.lowerBound * block
        body(start, min(blocks.upperBound * block, n) - start)
    }
}

/// dst[i] = src[i] for i < n: for the short rows of image planes, where a call to memmove
/// costs more than the copy.
@inlinable
public func copyFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n { store(load(src + i), dst + i); i += 8 }
    while i < n { dst[i] = src[i]; i += 1 }
}

/// dst[i] += src[i] for i < n.
@inlinable
public func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n { store(load(dst + i) + load(src + i), dst + i); i += 8 }
    while i < n { dst[i] += src[i]; i += 1 }
}

/// out[i] = a[i] + b[i] for i < n.
@inlinable
public func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n { store(load(a + i) + load(b + i), out + i); i += 8 }
    while i < n { out[i] = a[i] + b[i]; i += 1 }
}

/// y[i] = max(x[i], 0).
@inlinable
public func reluForward(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
    let zero = Vector(repeating: 0)
    var i = 0
    while i + 8 <= n { let v = load(x + i); store(v.replacing(with: zero, where: v .< zero), y + i); i += 8 }
    while i < n { y[i] = max(x[i], 0); i += 1 }
}

/// d[i] = y[i] > 0 ? g[i] : 0 (the ReLU pullback given its output y).
@inlinable
public func reluBackward(output y: UnsafePointer<Float>, gradient g: UnsafePointer<Float>,
                         into d: UnsafeMutablePointer<Float>, count n: Int) {
    let zero = Vector(repeating: 0)
    var i = 0
    while i + 8 <= n {
        store(load(g + i).replacing(with: zero, where: load(y + i) .<= zero), d + i)
        i += 8
    }
    while i < n { d[i] = y[i] > 0 ? g[i] : 0; i += 1 }
}

/// dst[i] = src[2 i] for i < n (stride-2 im2col rows).
@inlinable
public func gatherEven(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    // Reads src[2i ..< 2i + 16]: stop while the last pair is still inside the row.
    while i + 8 <= n - 1 {
        store(UnsafeRawPointer(src + 2 * i).loadUnaligned(as: SIMD16<Float>.self).evenHalf, dst + i)
        i += 8
    }
    while i < n { dst[i] = src[2 * i]; i += 1 }
}

/// dst[2 i] += src[i] for i < n (stride-2 col2im rows).
@inlinable
public func scatterAddEven(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n - 1 {
        let raw = UnsafeMutableRawPointer(dst + 2 * i)
        var v = raw.loadUnaligned(as: SIMD16<Float>.self)
        v.evenHalf += load(src + i)
        raw.storeBytes(of: v, as: SIMD16<Float>.self)
        i += 8
    }
    while i < n { dst[2 * i] += src[i]; i += 1 }
}
