import ChorusKernels
import Dispatch
import Foundation

/// Where one sequence of a packed attention batch lives.
///
/// Its `count` new queries are rows `row ..< row + count` of the packed query matrix and sit
/// at absolute positions `start ..< start + count`; query i sees keys 0 ... start + i (causal).
/// Keys and values are (start + count, ·) with row stride `ld`, KV head h at column h·D: they
/// are either the new rows themselves (a whole sequence, start = 0) or a KV cache that already
/// holds the new rows.
public struct AttentionSequence {
    /// First packed query row.
    public var row: Int
    /// New queries.
    public var count: Int
    /// Absolute position of the first new query (keys before it come from a cache).
    public var start: Int
    /// Keys, (start + count, ld); KV head h at column h·D.
    public var keys: UnsafeMutablePointer<Float>
    /// Values, laid out as `keys`.
    public var values: UnsafeMutablePointer<Float>
    /// Row stride of keys and values.
    public var ld: Int

    /// A sequence of `count` queries from packed row `row`, attending over `keys`/`values`.
    public init(row: Int, count: Int, start: Int, keys: UnsafeMutablePointer<Float>,
                values: UnsafeMutablePointer<Float>, ld: Int) {
        self.row = row; self.count = count; self.start = start
        self.keys = keys; self.values = values; self.ld = ld
    }
}

/// The shape of a (grouped-query) causal attention.
public struct AttentionShape: Sendable {
    /// Query heads Hq.
    public var heads: Int
    /// Key/value heads Hkv (Hq is a multiple); query head h reads KV head h / (Hq/Hkv).
    public var kvHeads: Int
    /// Head dimension D.
    public var headDim: Int
    /// Query rows processed per block: bounds the score scratch at `block` × keys per worker.
    public static let block = 64
    /// Sequences of at most this many keys (cache included) run the direct kernels
    /// (`attentionRowsDirect`, `attentionBackwardDirect`) instead of blocks of `gemm` calls:
    /// at the demo's ~15-token sequences and 12..20-wide heads each sgemm call (its argument
    /// checks, buffer lock and packing) cost more than its few hundred multiply-adds, and
    /// attention took ~45% of a training step. 0 turns the direct path off (tests compare both).
    nonisolated(unsafe) public static var directMaxKeys = 128
    /// Widest head the direct kernels take (their scratch is (2·D + 2) × keys floats per worker,
    /// inside the `block` × keys the gemm path reserves).
    public static let directMaxHeadDim = 32

    /// Whether a sequence of `keys` keys runs the direct kernels.
    @inline(__always) func isDirect(keys: Int) -> Bool {
        headDim <= AttentionShape.directMaxHeadDim && keys <= AttentionShape.directMaxKeys
    }

    public init(heads: Int, kvHeads: Int, headDim: Int) {
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
    }

    /// Floats of scratch `attentionForward` needs for keys up to `maxKeys` (per all workers).
    public func forwardScratch(maxKeys: Int) -> Int { Parallel.threads * AttentionShape.block * maxKeys }
    /// Floats of scratch `attentionBackward` needs for keys up to `maxKeys`.
    public func backwardScratch(maxKeys: Int) -> Int { 2 * Parallel.threads * AttentionShape.block * maxKeys }
}

/// Causal multi-head attention with GQA, as HF's eager attention:
/// out = softmax(q·kᵀ/√D + causal mask)·v, per head.
///
/// q is (N, ldq) with query head h at column h·D; out is (N, ldo), head h at column h·D.
/// lse, when given, receives each (row, head)'s log Σ exp of the scaled scores, (N, Hq): the
/// backward pass recomputes the probabilities from it instead of storing N·T of them.
/// Work is split over (sequence, head) pairs, queries in blocks of `AttentionShape.block`, so
/// memory is O(block × keys) per worker, never O(T²).
public func attentionForward(
    _ out: UnsafeMutablePointer<Float>, ldo: Int, _ lse: UnsafeMutablePointer<Float>?,
    q: UnsafePointer<Float>, ldq: Int, sequences: [AttentionSequence], shape: AttentionShape,
    scratch: UnsafeMutablePointer<Float>
) {
    let H = shape.heads, D = shape.headDim, group = H / shape.kvHeads
    let blk = AttentionShape.block
    if lse == nil && group <= blk && sequences.allSatisfy({ $0.count == 1 }) {
        singleQueryAttention(out, ldo: ldo, q: q, ldq: ldq, sequences: sequences, shape: shape, scratch: scratch)
        return
    }
    let maxKV = sequences.map { $0.start + $0.count }.max() ?? 0
    let scale = 1 / Float(D).squareRoot()
    let items = sequences.count * H
    let workers = max(1, min(Parallel.threads, items))
    parallelChunks(items, workers: workers, costPerItem: 1 << 16) { w, lo, hi in
        let S = scratch + w * blk * maxKV
        for item in lo..<hi {
            let sq = sequences[item / H], head = item % H, kvh = head / group
            let k = UnsafePointer(sq.keys + kvh * D), v = UnsafePointer(sq.values + kvh * D)
            if shape.isDirect(keys: sq.start + sq.count) {
                attentionRowsDirect(out + sq.row * ldo + head * D, ldo: ldo, lse.map { $0 + sq.row * H + head }, lseStride: H,
                                    q: q + sq.row * ldq + head * D, ldq: ldq, count: sq.count, start: sq.start,
                                    keys: k, values: v, ld: sq.ld, headDim: D, scale: scale, scratch: S)
                continue
            }
            var i0 = 0
            while i0 < sq.count {
                let m = min(blk, sq.count - i0)
                let nkv = sq.start + i0 + m   // keys visible to the last query of the block
                gemm(.none, .transpose, m: m, n: nkv, k: D, alpha: scale,
                     a: q + (sq.row + i0) * ldq + head * D, lda: ldq, b: k, ldb: sq.ld, c: S, ldc: nkv, parallel: false)
                for i in 0..<m {
                    let valid = sq.start + i0 + i + 1
                    let l = softmaxRowInPlace(S + i * nkv, count: valid)
                    lse?[(sq.row + i0 + i) * H + head] = l
                    if valid < nkv { (S + i * nkv + valid).update(repeating: 0, count: nkv - valid) }
                }
                gemm(.none, .none, m: m, n: D, k: nkv, a: S, lda: nkv, b: v, ldb: sq.ld,
                     c: out + (sq.row + i0) * ldo + head * D, ldc: ldo, parallel: false)
                i0 += m
            }
        }
    }
}

/// `attentionForward` for a decode step (every sequence has one new query, no lse wanted), in
/// vectorised Swift instead of two BLAS calls per (sequence, head): at batch 64 those tiny
/// products (1 × keys × D) cost more in call and packing overhead than in arithmetic. One work
/// item is a (sequence, KV head): the `group` query heads sharing its keys and values read
/// them once. On CPUs with AVX-512F + FMA (and `HalfKernel.enabled`) the two products run in
/// ChorusKernels' `oneQueryScores` / `oneQueryValues` (16-lane fused multiply-adds), elsewhere
/// in 8-lane portable Swift. Scores are q·k/√D, then `softmaxRowInPlace`, then out = Σ_t p_t·v_t
/// in key order; each (sequence, head) is computed by one thread in a fixed order, so results
/// do not depend on the batch or the thread count.
func singleQueryAttention(_ out: UnsafeMutablePointer<Float>, ldo: Int, q: UnsafePointer<Float>, ldq: Int,
                          sequences: [AttentionSequence], shape: AttentionShape, scratch: UnsafeMutablePointer<Float>) {
    let H = shape.heads, HK = shape.kvHeads, D = shape.headDim, group = H / HK
    let blk = AttentionShape.block
    var maxKV = 0
    for s in sequences { maxKV = max(maxKV, s.start + 1) }
    let scale = 1 / Float(D).squareRoot()
    let items = sequences.count * HK
    let workers = max(1, min(Parallel.threads, items))
    let D8 = D & ~7
    // The AVX-512/FMA kernels where the CPU has them (and D fits their 16 lanes); the same
    // arithmetic in portable 8-lane Swift otherwise.
    let fused = D % 16 == 0 && HalfKernel.active
    parallelChunks(items, workers: workers, costPerItem: 4 * group * D * maxKV) { w, lo, hi in
        let S = scratch + w * blk * maxKV   // group rows of nkv scores
        for item in lo..<hi {
            let sq = sequences[item / HK], kvh = item % HK
            let nkv = sq.start + 1
            let k = sq.keys + kvh * D, v = sq.values + kvh * D
            let q0 = q + sq.row * ldq + kvh * group * D, o0 = out + sq.row * ldo + kvh * group * D
            if fused {
                oneQueryScores(group: group, d: D, q: q0, keys: k, ld: sq.ld, count: nkv, scale: scale, scores: S)
                for g in 0..<group { _ = softmaxRowInPlace(S + g * nkv, count: nkv) }
                oneQueryValues(group: group, d: D, p: S, values: v, ld: sq.ld, count: nkv, out: o0)
                continue
            }
            for g in 0..<group {
                let qh = q0 + g * D, row = S + g * nkv
                for t in 0..<nkv {
                    let kt = k + t * sq.ld
                    var acc = FloatVec()
                    var d = 0
                    while d < D8 { acc += loadVec(qh + d) * loadVec(kt + d); d += 8 }
                    var dotv = acc.sum()
                    while d < D { dotv += qh[d] * kt[d]; d += 1 }
                    row[t] = dotv * scale
                }
                _ = softmaxRowInPlace(row, count: nkv)
                let o = o0 + g * D
                o.update(repeating: 0, count: D)
                // Key by key over the whole row: D/8 independent sums, not one chain per lane group.
                for t in 0..<nkv {
                    let p = FloatVec(repeating: row[t]), vt = v + t * sq.ld
                    var d = 0
                    while d < D8 { storeVec(loadVec(o + d) + p * loadVec(vt + d), o + d); d += 8 }
                    while d < D { o[d] += row[t] * vt[d]; d += 1 }
                }
            }
        }
    }
}

/// Attention backward with the probabilities recomputed from the forward's `lse`
/// (FlashAttention's scheme): per query block, P = exp(q·kᵀ/√D − lse), then
/// dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)) / √D,  dQ = dS·K,  dK += dSᵀ·Q.
///
/// dq (N, ldq) is *assigned*; dK and dV *accumulate* into `dkv[s]` (laid out as sequence s's
/// keys/values, same ld). out and lse are what `attentionForward` produced. Work items are
/// (sequence, KV head), so the query heads sharing one K/V accumulate in one worker and the
/// result does not depend on scheduling.
public func attentionBackward(
    dq: UnsafeMutablePointer<Float>, dkv: [(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)],
    dout: UnsafePointer<Float>, out: UnsafePointer<Float>, ldo: Int, lse: UnsafePointer<Float>,
    q: UnsafePointer<Float>, ldq: Int, sequences: [AttentionSequence], shape: AttentionShape,
    scratch: UnsafeMutablePointer<Float>
) {
    precondition(dkv.count == sequences.count, "one dK/dV destination per sequence")
    let H = shape.heads, D = shape.headDim, HK = shape.kvHeads, group = H / HK
    let blk = AttentionShape.block
    let maxKV = sequences.map { $0.start + $0.count }.max() ?? 0
    let scale = 1 / Float(D).squareRoot()
    let items = sequences.count * HK
    let workers = max(1, min(Parallel.threads, items))
    parallelChunks(items, workers: workers, costPerItem: 1 << 16) { w, lo, hi in
        let P = scratch + 2 * w * blk * maxKV, dP = P + blk * maxKV
        for item in lo..<hi {
            let s = item / HK, sq = sequences[s], kvh = item % HK
            let k = UnsafePointer(sq.keys + kvh * D), v = UnsafePointer(sq.values + kvh * D)
            let dk = dkv[s].keys + kvh * D, dv = dkv[s].values + kvh * D
            if shape.isDirect(keys: sq.start + sq.count) {
                attentionBackwardDirect(dq: dq + sq.row * ldq, ldq: ldq, dk: dk, dv: dv, dout: dout + sq.row * ldo, out: out + sq.row * ldo,
                                        ldo: ldo, lse: lse + sq.row * H, heads: (kvh * group)..<((kvh + 1) * group), lseStride: H,
                                        q: q + sq.row * ldq, count: sq.count, start: sq.start, keys: k, values: v, ld: sq.ld,
                                        headDim: D, scale: scale, scratch: P)
                continue
            }
            for head in (kvh * group)..<((kvh + 1) * group) {
                var i0 = 0
                while i0 < sq.count {
                    let m = min(blk, sq.count - i0), r0 = sq.row + i0
                    let nkv = sq.start + i0 + m
                    let qb = q + r0 * ldq + head * D, dOb = dout + r0 * ldo + head * D
                    gemm(.none, .transpose, m: m, n: nkv, k: D, alpha: scale, a: qb, lda: ldq, b: k, ldb: sq.ld,
                         c: P, ldc: nkv, parallel: false)
                    for i in 0..<m {
                        let valid = sq.start + i0 + i + 1
                        expShiftedInPlace(P + i * nkv, count: valid, shift: lse[(r0 + i) * H + head])
                        if valid < nkv { (P + i * nkv + valid).update(repeating: 0, count: nkv - valid) }
                    }
                    gemm(.transpose, .none, m: nkv, n: D, k: m, a: P, lda: nkv, b: dOb, ldb: ldo, beta: 1,
                         c: dv, ldc: sq.ld, parallel: false)
                    gemm(.none, .transpose, m: m, n: nkv, k: D, a: dOb, lda: ldo, b: v, ldb: sq.ld, c: dP, ldc: nkv, parallel: false)
                    for i in 0..<m {
                        let valid = sq.start + i0 + i + 1
                        let di = dot(dOb + i * ldo, out + (r0 + i) * ldo + head * D, count: D)
                        let pr = P + i * nkv, dr = dP + i * nkv
                        for j in 0..<valid { dr[j] = pr[j] * (dr[j] - di) * scale }
                        if valid < nkv { (dr + valid).update(repeating: 0, count: nkv - valid) }
                    }
                    gemm(.none, .none, m: m, n: D, k: nkv, a: dP, lda: nkv, b: k, ldb: sq.ld,
                         c: dq + r0 * ldq + head * D, ldc: ldq, parallel: false)
                    gemm(.transpose, .none, m: nkv, n: D, k: m, a: dP, lda: nkv, b: qb, ldb: ldq, beta: 1,
                         c: dk, ldc: sq.ld, parallel: false)
                    i0 += m
                }
            }
        }
    }
}

// MARK: - Direct kernels (short sequences, narrow heads)

// Every value below is a plain sum in a fixed order, independent of where a row sits in its
// batch or block: a score is Σ_d q_d·k_jd in d order then × scale, an output element
// Σ_j p_j·v_jd in j order. SIMD lanes and scalar tails do the same operations (no fused
// multiply-add), so a row gives the same bits whether it is scored in a full forward or on a
// fork of its prefix's cache. (A decode step — one query per sequence, no lse — takes
// `singleQueryAttention` instead, whose sums run in another order.)

/// s_j = (Σ_d q_d · kᵀ[d][j]) · scale for j < valid. kt is (D, n) (keys transposed).
@inline(__always)
func attentionScores(_ s: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, kt: UnsafePointer<Float>, n: Int, valid: Int,
                     headDim D: Int, scale: Float) {
    var j = 0
    while j + 8 <= valid {
        var acc = FloatVec()
        for d in 0..<D { acc += FloatVec(repeating: q[d]) * loadVec(kt + d * n + j) }
        storeVec(acc * scale, s + j)
        j += 8
    }
    while j < valid {
        var a: Float = 0
        for d in 0..<D { a += q[d] * kt[d * n + j] }
        s[j] = a * scale
        j += 1
    }
}

/// o_d = Σ_{j < valid} p_j · x[j·ld + d] for d < D (assigned).
@inline(__always)
func weightedRowSum(_ o: UnsafeMutablePointer<Float>, p: UnsafePointer<Float>, rows x: UnsafePointer<Float>, ld: Int,
                    valid: Int, headDim D: Int) {
    var d0 = 0
    while d0 + 8 <= D {
        var acc = FloatVec()
        for j in 0..<valid { acc += FloatVec(repeating: p[j]) * loadVec(x + j * ld + d0) }
        storeVec(acc, o + d0)
        d0 += 8
    }
    while d0 < D {
        var a: Float = 0
        for j in 0..<valid { a += p[j] * x[j * ld + d0] }
        o[d0] = a
        d0 += 1
    }
}

/// y_d += a · x_d for d < D.
@inline(__always)
func axpyRow(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, headDim D: Int) {
    var d = 0
    while d + 8 <= D { storeVec(loadVec(y + d) + FloatVec(repeating: a) * loadVec(x + d), y + d); d += 8 }
    while d < D { y[d] += a * x[d]; d += 1 }
}

/// xᵀ: (n, D) rows of stride ld into (D, n).
@inline(__always)
func transposeHead(_ t: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int, ld: Int, headDim D: Int) {
    for j in 0..<n {
        let row = x + j * ld
        for d in 0..<D { t[d * n + j] = row[d] }
    }
}

/// One head of one sequence, directly: for query i (absolute position start + i) the scores
/// over keys 0 ... start + i, their softmax (log-partition to lse[i·lseStride]) and
/// out_i = Σ_j p_j·v_j. q and out point at the head's first row (strides ldq, ldo); keys and
/// values are (start + count, ld). scratch holds (D + 1)·(start + count) floats.
func attentionRowsDirect(_ out: UnsafeMutablePointer<Float>, ldo: Int, _ lse: UnsafeMutablePointer<Float>?, lseStride: Int,
                         q: UnsafePointer<Float>, ldq: Int, count: Int, start: Int,
                         keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, ld: Int,
                         headDim D: Int, scale: Float, scratch: UnsafeMutablePointer<Float>) {
    let n = start + count
    let kt = scratch, s = scratch + D * n
    transposeHead(kt, k, n: n, ld: ld, headDim: D)
    for i in 0..<count {
        let valid = start + i + 1
        attentionScores(s, q: q + i * ldq, kt: kt, n: n, valid: valid, headDim: D, scale: scale)
        let l = softmaxRowInPlace(s, count: valid)
        lse?[i * lseStride] = l
        weightedRowSum(out + i * ldo, p: s, rows: v, ld: ld, valid: valid, headDim: D)
    }
}

/// The backward pass of `attentionRowsDirect` for the query heads `heads` sharing one KV head:
/// P recomputed from lse, then per query row dV_j += p_j·dO_i, dP_j = dO_i·v_j,
/// dS_j = p_j (dP_j − dO_i·O_i) / √D, dQ_i = Σ_j dS_j k_j (assigned), dK_j += dS_j q_i.
/// dq, dout, out, q and lse point at the sequence's first row (column 0; head h at h·D,
/// lse at h); dk, dv, keys and values at the KV head's columns. scratch holds (2·D + 2)·(start + count) floats.
func attentionBackwardDirect(dq: UnsafeMutablePointer<Float>, ldq: Int, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                             dout: UnsafePointer<Float>, out: UnsafePointer<Float>, ldo: Int, lse: UnsafePointer<Float>,
                             heads: Range<Int>, lseStride: Int, q: UnsafePointer<Float>, count: Int, start: Int,
                             keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, ld: Int,
                             headDim D: Int, scale: Float, scratch: UnsafeMutablePointer<Float>) {
    let n = start + count
    let kt = scratch, vt = kt + D * n, p = vt + D * n, ds = p + n
    transposeHead(kt, k, n: n, ld: ld, headDim: D)
    transposeHead(vt, v, n: n, ld: ld, headDim: D)
    for head in heads {
        for i in 0..<count {
            let valid = start + i + 1
            let qi = q + i * ldq + head * D, doi = dout + i * ldo + head * D
            attentionScores(p, q: qi, kt: kt, n: n, valid: valid, headDim: D, scale: scale)
            expShiftedInPlace(p, count: valid, shift: lse[i * lseStride + head])
            for j in 0..<valid { axpyRow(dv + j * ld, p[j], doi, headDim: D) }
            attentionScores(ds, q: doi, kt: vt, n: n, valid: valid, headDim: D, scale: 1)
            let di = dot(doi, out + i * ldo + head * D, count: D)
            for j in 0..<valid { ds[j] = p[j] * (ds[j] - di) * scale }
            weightedRowSum(dq + i * ldq + head * D, p: ds, rows: k, ld: ld, valid: valid, headDim: D)
            for j in 0..<valid { axpyRow(dk + j * ld, ds[j], qi, headDim: D) }
        }
    }
}
