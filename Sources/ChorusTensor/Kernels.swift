import Foundation

// Row-wise and elementwise kernels. Each is a free function: outputs first, then inputs,
// weights and sizes (llm.c style). Rows are processed in parallel when they are large enough.

// MARK: - Elementwise

/// out[i] += x[i] for i in 0..<n.
@inline(__always)
public func addInPlace(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n { storeVec(loadVec(out + i) + loadVec(x + i), out + i); i += 8 }
    while i < n { out[i] += x[i]; i += 1 }
}

/// out[i] *= s for i in 0..<n.
@inline(__always)
public func scaleInPlace(_ out: UnsafeMutablePointer<Float>, _ s: Float, count n: Int) {
    var i = 0
    while i + 8 <= n { storeVec(loadVec(out + i) * s, out + i); i += 8 }
    while i < n { out[i] *= s; i += 1 }
}

/// Adds a bias row to each of `rows` rows: out is (rows, ld), bias is (cols), cols <= ld.
public func addBiasRows(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int) {
    for r in 0..<rows { addInPlace(out + r * ld, bias, count: cols) }
}

/// SiLU: x * sigmoid(x) = x / (1 + exp(-x)).
@inline(__always)
public func silu(_ x: Float) -> Float { x / (1 + Foundation.exp(-x)) }

/// SwiGLU forward: out = silu(gate) * up, as in HF's `down_proj(act_fn(gate_proj(x)) * up_proj(x))`.
///
/// gu is (N, 2I) with the gate in columns [0, I) and up in [I, 2I) (the fused gate/up
/// product); out is (N, I).
public func swigluForward(_ out: UnsafeMutablePointer<Float>, _ gu: UnsafePointer<Float>, rows n: Int, hidden i: Int) {
    parallelFor(n, costPerItem: i * 8) { lo, hi in
        for r in lo..<hi {
            let g = gu + r * 2 * i, u = g + i, o = out + r * i
            var j = 0
            while j + 8 <= i {
                let gv = loadVec(g + j)
                let s = gv / (1 + vexp(-gv))
                storeVec(s * loadVec(u + j), o + j)
                j += 8
            }
            while j < i { o[j] = silu(g[j]) * u[j]; j += 1 }
        }
    }
}

// MARK: - RMSNorm

/// RMSNorm forward, as HF LlamaRMSNorm: out = x * rsqrt(mean(x^2) + eps) * weight.
///
/// inp and out are (N, C) with row strides ldIn/ldOut; weight is (C); rstd (N) receives the
/// reciprocal RMS of each row for the backward pass (may be nil). `serial` keeps it on the
/// calling thread (inside a parallel region).
public func rmsNormForward(
    _ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>?,
    _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    rows n: Int, cols c: Int, eps: Float, ldIn: Int? = nil, ldOut: Int? = nil, serial: Bool = false
) {
    let li = ldIn ?? c, lo = ldOut ?? c
    parallelFor(n, costPerItem: serial ? 0 : c * 3) { a, b in
        for r in a..<b {
            let x = inp + r * li, o = out + r * lo
            var acc = FloatVec()
            var j = 0
            while j + 8 <= c { let v = loadVec(x + j); acc += v * v; j += 8 }
            var ss = acc.sum()
            while j < c { ss += x[j] * x[j]; j += 1 }
            let s = 1 / (ss / Float(c) + eps).squareRoot()
            rstd?[r] = s
            j = 0
            while j + 8 <= c { storeVec(loadVec(x + j) * s * loadVec(weight + j), o + j); j += 8 }
            while j < c { o[j] = x[j] * s * weight[j]; j += 1 }
        }
    }
}

/// Qwen3's q_norm / k_norm: RMSNorm over each head of a fused projection row.
///
/// inp and out are (N, ld) with `qHeads` query heads then `kvHeads` key heads of dimension d
/// at the front of each row (what follows, the values, is not touched); query heads use
/// qWeight (d), key heads kWeight (d). rstd, when given, receives (qHeads + kvHeads, N): head
/// h's reciprocal RMS of row r at h·N + r. out may alias inp (in place).
public func qkNormForward(
    _ out: UnsafeMutablePointer<Float>, _ rstd: UnsafeMutablePointer<Float>?, _ inp: UnsafePointer<Float>,
    qWeight: UnsafePointer<Float>, kWeight: UnsafePointer<Float>,
    rows n: Int, ld: Int, qHeads: Int, kvHeads: Int, headDim d: Int, eps: Float
) {
    // One pass over the rows with every head inside (one thread hand-off, not one per head);
    // each head is `rmsNormForward`'s arithmetic on its d columns.
    let heads = qHeads + kvHeads
    parallelFor(n, costPerItem: heads * d * 3) { a, b in
        for h in 0..<heads {
            rmsNormForward(out + h * d + a * ld, rstd.map { $0 + h * n + a }, inp + h * d + a * ld, h < qHeads ? qWeight : kWeight,
                           rows: b - a, cols: d, eps: eps, ldIn: ld, ldOut: ld, serial: true)
        }
    }
}

// MARK: - Softmax family

/// Per-row statistics of a log-softmax: the max, log of the partition sum and the entropy.
public struct RowStats: Sendable {
    public var max: Float
    public var logSumExp: Float
    public var entropy: Float
}

/// Computes max, log Σ exp and the entropy (nats) of softmax(x) for one row of length n,
/// without writing anything. Entropy uses H = logZ - Σ p_i (x_i - max).
@inline(__always)
public func rowStats(_ x: UnsafePointer<Float>, count n: Int) -> RowStats {
    var mv = FloatVec(repeating: -.infinity)
    var j = 0
    while j + 8 <= n { let v = loadVec(x + j); mv.replace(with: v, where: v .> mv); j += 8 }
    var m = mv.max()
    while j < n { m = Swift.max(m, x[j]); j += 1 }
    var sv = FloatVec(), tv = FloatVec()
    j = 0
    while j + 8 <= n {
        let d = loadVec(x + j) - m
        let e = vexp(d)
        sv += e
        tv += e * d
        j += 8
    }
    var s = sv.sum(), t = tv.sum()
    while j < n { let d = x[j] - m; let e = sexp(d); s += e; t += e * d; j += 1 }
    let logZ = Foundation.log(s)
    return RowStats(max: m, logSumExp: m + logZ, entropy: logZ - t / s)
}

/// In-place log-softmax of `rows` rows of length n (row stride ld); returns nothing.
public func logSoftmaxInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int, ld: Int? = nil) {
    let l = ld ?? n
    parallelFor(rows, costPerItem: n * 4) { a, b in
        for r in a..<b {
            let p = x + r * l
            let st = rowStats(p, count: n)
            var j = 0
            while j + 8 <= n { storeVec(loadVec(p + j) - st.logSumExp, p + j); j += 8 }
            while j < n { p[j] -= st.logSumExp; j += 1 }
        }
    }
}

/// In-place softmax of one row of length n: x <- exp(x - max) / Σ. Returns log Σ exp(x), the
/// row's log-partition (attention keeps it so its backward pass can recompute the row).
@inline(__always) @discardableResult
public func softmaxRowInPlace(_ x: UnsafeMutablePointer<Float>, count n: Int) -> Float {
    var mv = FloatVec(repeating: -.infinity)
    var j = 0
    while j + 8 <= n { let v = loadVec(x + j); mv.replace(with: v, where: v .> mv); j += 8 }
    var m = mv.max()
    while j < n { m = Swift.max(m, x[j]); j += 1 }
    var sv = FloatVec()
    j = 0
    while j + 8 <= n { let e = vexp(loadVec(x + j) - m); storeVec(e, x + j); sv += e; j += 8 }
    var s = sv.sum()
    while j < n { let e = sexp(x[j] - m); x[j] = e; s += e; j += 1 }
    let inv = 1 / s
    j = 0
    while j + 8 <= n { storeVec(loadVec(x + j) * inv, x + j); j += 8 }
    while j < n { x[j] *= inv; j += 1 }
    return m + Foundation.log(s)
}

/// x <- exp(x − shift) over one row of length n (probabilities from a saved log-partition).
@inline(__always)
public func expShiftedInPlace(_ x: UnsafeMutablePointer<Float>, count n: Int, shift: Float) {
    var j = 0
    while j + 8 <= n { storeVec(vexp(loadVec(x + j) - shift), x + j); j += 8 }
    while j < n { x[j] = sexp(x[j] - shift); j += 1 }
}

/// Σ a_i·b_i over n elements.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
    var acc = FloatVec()
    var j = 0
    while j + 8 <= n { acc += loadVec(a + j) * loadVec(b + j); j += 8 }
    var s = acc.sum()
    while j < n { s += a[j] * b[j]; j += 1 }
    return s
}

/// In-place softmax over rows (row stride ld).
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols n: Int, ld: Int? = nil) {
    let l = ld ?? n
    parallelFor(rows, costPerItem: n * 4) { a, b in
        for r in a..<b { softmaxRowInPlace(x + r * l, count: n) }
    }
}

// MARK: - RoPE

/// Precomputed rotary cos/sin tables, HF convention (rotate_half over two halves of head_dim).
///
/// cos and sin are (maxPositions, D/2): angle(pos, i) = pos * theta^(-2i/D), computed in
/// float32 as transformers does.
public final class RopeTable: @unchecked Sendable {
    public let headDim: Int
    public private(set) var positions: Int
    public let theta: Double
    public private(set) var cos: [Float]
    public private(set) var sin: [Float]
    private let invFreq: [Float]

    /// Creates a table for head dimension D covering `positions` positions (grown on demand).
    public init(headDim: Int, theta: Double, positions: Int = 512) {
        self.headDim = headDim
        self.theta = theta
        let half = headDim / 2
        // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in float32.
        invFreq = (0..<half).map { i in 1 / Float(Foundation.pow(Float(theta), Float(2 * i) / Float(headDim))) }
        self.positions = 0
        cos = []; sin = []
        ensure(positions)
    }

    /// Grows the table to cover at least n positions.
    public func ensure(_ n: Int) {
        if n <= positions { return }
        let half = headDim / 2
        let newN = Swift.max(n, positions * 2)
        cos.reserveCapacity(newN * half); sin.reserveCapacity(newN * half)
        for p in positions..<newN {
            for i in 0..<half {
                let a = Float(p) * invFreq[i]
                cos.append(Foundation.cos(a)); sin.append(Foundation.sin(a))
            }
        }
        positions = newN
    }
}

/// Applies RoPE in place to `heads` heads of dimension D in each of `rows` rows.
///
/// x is (rows, ld) with heads at column offsets 0, D, 2D, ...; pos[r] is the position of row r.
/// q_embed = q * cos + rotate_half(q) * sin, rotate_half([x1, x2]) = [-x2, x1].
public func ropeForward(
    _ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, heads: Int, headDim d: Int,
    positions pos: UnsafePointer<Int32>, table: RopeTable
) {
    ropeRotate(x, rows: rows, ld: ld, heads: heads, headDim: d, positions: pos, table: table, inverse: false)
}

/// Rotates pairs (x1[i], x2[i]) by +angle (forward) or −angle (`inverse`, the backward pass).
func ropeRotate(
    _ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, heads: Int, headDim d: Int,
    positions pos: UnsafePointer<Int32>, table: RopeTable, inverse: Bool
) {
    let half = d / 2
    let sign: Float = inverse ? -1 : 1
    table.cos.withUnsafeBufferPointer { cosB in
        table.sin.withUnsafeBufferPointer { sinB in
            let cp = cosB.baseAddress!, sp = sinB.baseAddress!
            parallelFor(rows, costPerItem: heads * d * 3) { a, b in
                for r in a..<b {
                    let c = cp + Int(pos[r]) * half, s = sp + Int(pos[r]) * half
                    for h in 0..<heads {
                        let x1 = x + r * ld + h * d, x2 = x1 + half
                        var i = 0
                        while i + 8 <= half {
                            let a1 = loadVec(x1 + i), a2 = loadVec(x2 + i)
                            let cv = loadVec(c + i), sv = loadVec(s + i) * sign
                            storeVec(a1 * cv - a2 * sv, x1 + i)
                            storeVec(a2 * cv + a1 * sv, x2 + i)
                            i += 8
                        }
                        while i < half {
                            let a1 = x1[i], a2 = x2[i], si = s[i] * sign
                            x1[i] = a1 * c[i] - a2 * si
                            x2[i] = a2 * c[i] + a1 * si
                            i += 1
                        }
                    }
                }
            }
        }
    }
}
