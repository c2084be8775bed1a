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
    let maxKV = sequences.map { $0.start + $0.count }.max() ?? 0
    let scale = 1 / Float(D).squareRoot()
    let items = sequences.count * H
    let workers = max(1, min(Parallel.threads, items))
    parallelChunks(items, workers: workers, costPerItem: 1 << 16) { w, lo, hi in
        let S = scratch + w * blk * maxKV
        for item in lo..<hi {
            let sq = sequences[item / H], head = item % H, kvh = head / group
            let k = UnsafePointer(sq.keys + kvh * D), v = UnsafePointer(sq.values + kvh * D)
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
