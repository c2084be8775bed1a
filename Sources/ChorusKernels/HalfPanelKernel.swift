/// The product with 16-bit weights of the rollout sampler (its decode steps and prefill),
/// compiled with AVX-512F + AVX2 + FMA (see Package.swift): callers reach it only after
/// `CPUFeatures` found those instructions.
///
/// Panel layout (written by `HalfMatrix.pack` in ChorusTensor): the N outputs are cut into
/// panels of 32; panel p holds, for k = 0 ..< K in order, 32 16-bit values as 16 UInt32 words
/// — word j has output 32p + j in its low half and output 32p + 16 + j in its high half. One
/// 64-byte load then yields both 16-output halves with 32-bit lane operations only (bf16: a
/// shift and a mask; f16: the same split, then an exact bit-level widening), and the kernel
/// streams each panel front to back.
///
/// Every output c[i][j] is one fused multiply-add chain over k = 0 ..< K in order, whatever
/// the row tile, the panel range or the thread: results do not depend on the batch size or the
/// thread count.

/// Words (UInt32) per k step of a panel: 32 outputs of 16 bits.
public let halfPanelWords = 16
/// Outputs per panel.
public let halfPanelWidth = 32

/// bf16 bits in the low / high halves of the words -> Float (exact: bf16 is the top of an f32).
@inline(__always)
func widenBF16(_ w: SIMD16<UInt32>) -> (SIMD16<Float>, SIMD16<Float>) {
    (unsafeBitCast(w &<< 16, to: SIMD16<Float>.self), unsafeBitCast(w & 0xFFFF_0000, to: SIMD16<Float>.self))
}

/// Finite IEEE binary16 bits in the low / high halves of the words -> Float, exactly: sign
/// and magnitude moved to their f32 places, then the exponent rebased by a multiply by 2^112
/// (right for normals and subnormals alike). Infinity and NaN would come out finite: a matrix
/// holding one is never given to this kernel (`HalfMatrix.allFinite`).
@inline(__always)
func widenF16(_ w: SIMD16<UInt32>) -> (SIMD16<Float>, SIMD16<Float>) {
    let lo = ((w &<< 16) & 0x8000_0000) | ((w &<< 13) & 0x0FFF_E000)
    let hi = (w & 0x8000_0000) | ((w &>> 3) & 0x0FFF_E000)
    return (unsafeBitCast(lo, to: SIMD16<Float>.self) * 0x1p112, unsafeBitCast(hi, to: SIMD16<Float>.self) * 0x1p112)
}

@inline(__always)
func loadWords(_ p: UnsafePointer<UInt32>) -> SIMD16<UInt32> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt32>.self)
}

/// Writes one tile row: c[j] = alpha·acc[j] (+ beta·c[j]) for the first `valid` of 32 outputs.
@inline(__always)
func storeRow(_ lo: SIMD16<Float>, _ hi: SIMD16<Float>, _ c: UnsafeMutablePointer<Float>, valid: Int,
              alpha: Float, beta: Float) {
    var l = lo * alpha, h = hi * alpha
    if valid == 32 {
        let raw = UnsafeMutableRawPointer(c)
        if beta != 0 {
            l += UnsafeRawPointer(c).loadUnaligned(as: SIMD16<Float>.self) * beta
            h += UnsafeRawPointer(c + 16).loadUnaligned(as: SIMD16<Float>.self) * beta
        }
        raw.storeBytes(of: l, as: SIMD16<Float>.self)
        (raw + 64).storeBytes(of: h, as: SIMD16<Float>.self)
        return
    }
    for j in 0..<min(valid, 16) { c[j] = beta == 0 ? l[j] : l[j] + beta * c[j] }
    if valid > 16 { for j in 16..<valid { c[j] = beta == 0 ? h[j - 16] : h[j - 16] + beta * c[j] } }
}

/// Eight rows of A against one panel (16 accumulators: AVX-512's 32 registers hold them); the
/// same per-output chain as `tile4` and `tile1`.
@inline(__always)
func tile8(bf16: Bool, k K: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<UInt32>,
           c: UnsafeMutablePointer<Float>, ldc: Int, valid: Int, alpha: Float, beta: Float) {
    var c0l = SIMD16<Float>(), c0h = SIMD16<Float>(), c1l = SIMD16<Float>(), c1h = SIMD16<Float>()
    var c2l = SIMD16<Float>(), c2h = SIMD16<Float>(), c3l = SIMD16<Float>(), c3h = SIMD16<Float>()
    var c4l = SIMD16<Float>(), c4h = SIMD16<Float>(), c5l = SIMD16<Float>(), c5h = SIMD16<Float>()
    var c6l = SIMD16<Float>(), c6h = SIMD16<Float>(), c7l = SIMD16<Float>(), c7h = SIMD16<Float>()
    let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
    let a4 = a + 4 * lda, a5 = a + 5 * lda, a6 = a + 6 * lda, a7 = a + 7 * lda
    var p = panel
    for k in 0..<K {
        let w = loadWords(p); p += halfPanelWords
        let bl: SIMD16<Float>, bh: SIMD16<Float>
        if bf16 { (bl, bh) = widenBF16(w) } else { (bl, bh) = widenF16(w) }
        var x = SIMD16<Float>(repeating: a0[k]); c0l.addProduct(x, bl); c0h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a1[k]); c1l.addProduct(x, bl); c1h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a2[k]); c2l.addProduct(x, bl); c2h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a3[k]); c3l.addProduct(x, bl); c3h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a4[k]); c4l.addProduct(x, bl); c4h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a5[k]); c5l.addProduct(x, bl); c5h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a6[k]); c6l.addProduct(x, bl); c6h.addProduct(x, bh)
        x = SIMD16<Float>(repeating: a7[k]); c7l.addProduct(x, bl); c7h.addProduct(x, bh)
    }
    storeRow(c0l, c0h, c, valid: valid, alpha: alpha, beta: beta)
    storeRow(c1l, c1h, c + ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c2l, c2h, c + 2 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c3l, c3h, c + 3 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c4l, c4h, c + 4 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c5l, c5h, c + 5 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c6l, c6h, c + 6 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c7l, c7h, c + 7 * ldc, valid: valid, alpha: alpha, beta: beta)
}

/// Four rows of A (row stride lda) against one panel over K: acc[r] = Σ_k a[r][k]·panel[k], one
/// fused multiply-add per (row, output, k) in k order.
@inline(__always)
func tile4(bf16: Bool, k K: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<UInt32>,
           c: UnsafeMutablePointer<Float>, ldc: Int, valid: Int, alpha: Float, beta: Float) {
    var c0l = SIMD16<Float>(), c0h = SIMD16<Float>(), c1l = SIMD16<Float>(), c1h = SIMD16<Float>()
    var c2l = SIMD16<Float>(), c2h = SIMD16<Float>(), c3l = SIMD16<Float>(), c3h = SIMD16<Float>()
    let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
    var p = panel
    for k in 0..<K {
        let w = loadWords(p); p += halfPanelWords
        let bl: SIMD16<Float>, bh: SIMD16<Float>
        if bf16 { (bl, bh) = widenBF16(w) } else { (bl, bh) = widenF16(w) }
        let x0 = SIMD16<Float>(repeating: a0[k]), x1 = SIMD16<Float>(repeating: a1[k])
        let x2 = SIMD16<Float>(repeating: a2[k]), x3 = SIMD16<Float>(repeating: a3[k])
        c0l.addProduct(x0, bl); c0h.addProduct(x0, bh)
        c1l.addProduct(x1, bl); c1h.addProduct(x1, bh)
        c2l.addProduct(x2, bl); c2h.addProduct(x2, bh)
        c3l.addProduct(x3, bl); c3h.addProduct(x3, bh)
    }
    storeRow(c0l, c0h, c, valid: valid, alpha: alpha, beta: beta)
    storeRow(c1l, c1h, c + ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c2l, c2h, c + 2 * ldc, valid: valid, alpha: alpha, beta: beta)
    storeRow(c3l, c3h, c + 3 * ldc, valid: valid, alpha: alpha, beta: beta)
}

/// One row against one panel (the rows left over after the 4-row tiles): the same chain per
/// output as `tile4`, so a row's result does not depend on which tile it fell in.
@inline(__always)
func tile1(bf16: Bool, k K: Int, a: UnsafePointer<Float>, panel: UnsafePointer<UInt32>,
           c: UnsafeMutablePointer<Float>, valid: Int, alpha: Float, beta: Float) {
    var cl = SIMD16<Float>(), ch = SIMD16<Float>()
    var p = panel
    for k in 0..<K {
        let w = loadWords(p); p += halfPanelWords
        let bl: SIMD16<Float>, bh: SIMD16<Float>
        if bf16 { (bl, bh) = widenBF16(w) } else { (bl, bh) = widenF16(w) }
        let x = SIMD16<Float>(repeating: a[k])
        cl.addProduct(x, bl); ch.addProduct(x, bh)
    }
    storeRow(cl, ch, c, valid: valid, alpha: alpha, beta: beta)
}

/// C[:, 32·p0 ..< min(n, 32·p1)] = alpha·A·Wᵀ (+ beta·C) for panels p0 ..< p1 of a packed
/// 16-bit W (bf16 when `bf16`, else f16): A is (m, k) with row stride lda, C (m, n) with row
/// stride ldc, W (n, k) packed as described at the top of this file. Single-threaded; callers
/// split panel ranges between threads.
public func halfPanelGemm(bf16: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                          packed: UnsafePointer<UInt32>, panels p0: Int, _ p1: Int, beta: Float,
                          c: UnsafeMutablePointer<Float>, ldc: Int) {
    let stride = k * halfPanelWords
    // Rows in blocks that stay in L2 while the panels stream past (many rows: a prefill).
    var i0 = 0
    while i0 < m {
        let rowsHere = min(halfRowBlock, m - i0)
        let ab = a + i0 * lda, cb = c + i0 * ldc
        for p in p0..<p1 {
            let panel = packed + p * stride
            let j0 = p * halfPanelWidth, valid = min(halfPanelWidth, n - j0)
            if bf16 {
                rows(bf16: true, m: rowsHere, k: k, a: ab, lda: lda, panel: panel, c: cb + j0, ldc: ldc, valid: valid, alpha: alpha, beta: beta)
            } else {
                rows(bf16: false, m: rowsHere, k: k, a: ab, lda: lda, panel: panel, c: cb + j0, ldc: ldc, valid: valid, alpha: alpha, beta: beta)
            }
        }
        i0 += rowsHere
    }
}

/// Rows of A multiplied against all panels before moving on (a multiple of the 8-row tile).
let halfRowBlock = 256

/// All m rows against one panel: tiles of 8, then 4, then single rows.
@inline(__always)
func rows(bf16: Bool, m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, panel: UnsafePointer<UInt32>,
          c: UnsafeMutablePointer<Float>, ldc: Int, valid: Int, alpha: Float, beta: Float) {
    var i = 0
    while i + 8 <= m {
        tile8(bf16: bf16, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc, ldc: ldc, valid: valid, alpha: alpha, beta: beta)
        i += 8
    }
    if i + 4 <= m {
        tile4(bf16: bf16, k: k, a: a + i * lda, lda: lda, panel: panel, c: c + i * ldc, ldc: ldc, valid: valid, alpha: alpha, beta: beta)
        i += 4
    }
    while i < m {
        tile1(bf16: bf16, k: k, a: a + i * lda, panel: panel, c: c + i * ldc, valid: valid, alpha: alpha, beta: beta)
        i += 1
    }
}
