import ChorusTensor
import Foundation

/// Errors from running a model on user input.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case tokenOutOfRange(token: Int, vocabSize: Int)
    case emptyInput(String)
    case cacheFull(capacity: Int, needed: Int)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(t, v): return "token id \(t) is outside the vocabulary [0, \(v))"
        case let .emptyInput(w): return "empty input: \(w)"
        case let .cacheFull(c, n): return "KV cache capacity \(c) is too small for \(n) positions"
        }
    }
}

/// A decoder-only transformer (llama / qwen2 / qwen3) with all parameters in one flat buffer.
///
/// Mirrors HF LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM: pre-norm blocks
/// `x = x + attn(norm1(x)); x = x + mlp(norm2(x))`, rotary attention with GQA, SwiGLU MLP,
/// final RMSNorm and a (possibly tied) LM head.
public final class TransformerModel: @unchecked Sendable {
    /// The architecture (only the special-token ids may change after creation).
    public private(set) var config: ModelConfig
    /// Where each HF tensor lives in `parameters`.
    public let layout: ParameterLayout
    /// All parameters, flat (see `ParameterLayout`).
    public let parameters: Tensor
    /// Rotary tables, grown on demand.
    public let rope: RopeTable

    /// A model with zeroed parameters (fill them with `load` or `initializeRandom`).
    public init(config: ModelConfig) {
        self.config = config
        self.layout = ParameterLayout(config: config)
        self.parameters = Tensor(shape: [layout.totalCount])
        self.rope = RopeTable(headDim: config.headDim, theta: config.ropeTheta, positions: 256)
    }

    /// Records end-of-sequence ids (and optionally BOS) in the config, e.g. for a model trained
    /// from scratch whose tokenizer defines them; they are written to config.json on save.
    public func setSpecialTokenIds(eos: [Int], bos: Int? = nil) {
        config.eosTokenIds = eos
        if let bos { config.bosTokenId = bos }
    }

    /// Pointer to the parameter at a flat offset.
    @inline(__always) public func p(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.data + offset }

    /// HF-style initialisation: linear and embedding weights N(0, std²), norms 1, biases 0.
    public func initializeRandom(seed: UInt64, std: Float = 0.02) {
        var rng = ChorusRNG(seed: seed)
        for e in layout.entries {
            let ptr = p(e.offset)
            if e.name.hasSuffix("norm.weight") || e.name.hasSuffix("layernorm.weight") {
                ptr.update(repeating: 1, count: e.count)
            } else if e.name.hasSuffix(".bias") {
                ptr.update(repeating: 0, count: e.count)
            } else {
                rng.fillNormal(ptr, count: e.count, std: std)
            }
        }
    }

    /// Throws if any token is outside the vocabulary.
    public func checkTokens<S: Sequence>(_ tokens: S) throws where S.Element == Int {
        for t in tokens where t < 0 || t >= config.vocabSize {
            throw ModelError.tokenOutOfRange(token: t, vocabSize: config.vocabSize)
        }
    }

    /// Forward FLOPs for `tokens` new tokens attending over contexts whose summed causal
    /// attention pairs (query, key) is `attentionPairs` (matmuls only; 2 FLOPs per MAC).
    public func forwardFLOPs(tokens: Int, attentionPairs: Int, headRows: Int? = nil) -> Double {
        let c = config
        let perTok = c.hiddenSize * c.qkvDim + c.attnDim * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize
        let body = 2.0 * Double(perTok) * Double(c.numLayers) * Double(tokens)
        let attn = 4.0 * Double(c.numHeads * c.headDim) * Double(attentionPairs) * Double(c.numLayers)
        let head = 2.0 * Double(c.hiddenSize * c.vocabSize) * Double(headRows ?? tokens)
        return body + attn + head
    }
}

/// One sequence (or a continuation of one) in a forward batch.
///
/// Without a cache the segment is a whole sequence starting at position 0. With a cache the
/// tokens continue it at position `cache.length`; their keys and values are appended.
public struct Segment {
    /// The new token ids.
    public var tokens: [Int]
    /// The sequence's KV cache, or nil for a stateless full forward.
    public var cache: KVCache?
    /// New tokens, optionally continuing the sequence held in `cache`.
    public init(tokens: [Int], cache: KVCache? = nil) {
        self.tokens = tokens
        self.cache = cache
    }
}

/// Reusable activation buffers for inference forward passes (grown to the largest batch seen,
/// never shrunk), so repeated calls allocate nothing.
public final class ForwardWorkspace {
    private(set) var capacity = 0
    private(set) var scratchCapacity = 0
    var x: Tensor, h: Tensor, qkv: Tensor, att: Tensor, gu: Tensor, act: Tensor
    var positions: [Int32] = []
    var scores: Tensor
    /// Rows of query processed per attention block (bounds the scores scratch).
    static let queryBlock = 64

    /// An empty workspace; buffers grow on first use.
    public init() {
        x = Tensor(shape: [0]); h = x; qkv = x; att = x; gu = x; act = x; scores = x
    }

    func ensure(tokens n: Int, config c: ModelConfig) {
        if n > capacity {
            let cap = max(n, capacity * 3 / 2)
            x = Tensor(shape: [cap, c.hiddenSize])
            h = Tensor(shape: [cap, c.hiddenSize])
            qkv = Tensor(shape: [cap, c.qkvDim])
            att = Tensor(shape: [cap, c.attnDim])
            gu = Tensor(shape: [cap, 2 * c.intermediateSize])
            act = Tensor(shape: [cap, c.intermediateSize])
            capacity = cap
        }
        if positions.count < n { positions = [Int32](repeating: 0, count: n) }
    }

    func ensureScratch(maxKV: Int) {
        let need = Parallel.threads * ForwardWorkspace.queryBlock * maxKV
        if need > scratchCapacity {
            scores = Tensor(shape: [max(need, scratchCapacity * 3 / 2)])
            scratchCapacity = scores.count
        }
    }
}

/// The location of one segment inside the packed token rows of a forward batch.
struct SegmentRows {
    var row: Int        // first packed row
    var count: Int      // new tokens
    var start: Int      // absolute position of the first new token
    var cache: KVCache?
}

extension TransformerModel {
    /// Runs the transformer body over a batch of segments packed row after row.
    ///
    /// Returns the final-normed hidden states, (N, C) for N = total new tokens, valid until
    /// the workspace is used again. Caches in the segments are extended by their tokens.
    public func forwardHidden(_ segments: [Segment], workspace ws: ForwardWorkspace) throws -> UnsafeMutablePointer<Float> {
        let c = config
        var rows: [SegmentRows] = []
        rows.reserveCapacity(segments.count)
        var n = 0, maxKV = 0
        for s in segments {
            if s.tokens.isEmpty { throw ModelError.emptyInput("a segment has no tokens") }
            try checkTokens(s.tokens)
            let start = s.cache?.length ?? 0
            if let kv = s.cache, start + s.tokens.count > kv.capacity {
                throw ModelError.cacheFull(capacity: kv.capacity, needed: start + s.tokens.count)
            }
            rows.append(SegmentRows(row: n, count: s.tokens.count, start: start, cache: s.cache))
            n += s.tokens.count
            maxKV = max(maxKV, start + s.tokens.count)
        }
        ws.ensure(tokens: n, config: c)
        ws.ensureScratch(maxKV: maxKV)
        rope.ensure(maxKV)

        let C = c.hiddenSize
        let x = ws.x.data, h = ws.h.data
        // Embedding lookup: x[r] = E[token].
        let E = p(layout.embed)
        for (si, s) in segments.enumerated() {
            let r0 = rows[si].row
            for (i, t) in s.tokens.enumerated() {
                (x + (r0 + i) * C).update(from: E + t * C, count: C)
                ws.positions[r0 + i] = Int32(rows[si].start + i)
            }
        }
        for l in 0..<c.numLayers {
            blockForward(layer: l, rows: rows, n: n, ws: ws)
        }
        rmsNormForward(h, nil, x, p(layout.finalNorm), rows: n, cols: C, eps: c.rmsNormEps)
        for r in rows { r.cache?.length = r.start + r.count }
        return h
    }

    /// One transformer block over the packed rows, updating the residual stream ws.x in place.
    func blockForward(layer l: Int, rows: [SegmentRows], n: Int, ws: ForwardWorkspace) {
        let c = config, L = layout.layers[l]
        let C = c.hiddenSize, D = c.headDim, Q = c.qkvDim, I = c.intermediateSize
        let x = ws.x.data, h = ws.h.data, qkv = ws.qkv.data, att = ws.att.data
        // x = x + o_proj(attn(input_layernorm(x)))
        rmsNormForward(h, nil, x, p(L.inputNorm), rows: n, cols: C, eps: c.rmsNormEps)
        gemm(.none, .transpose, m: n, n: Q, k: C, a: h, lda: C, b: p(L.qkv), ldb: C, c: qkv, ldc: Q)
        if let b = L.qkvBias { addBiasRows(qkv, p(b), rows: n, cols: Q, ld: Q) }
        if let qn = L.qNorm, let kn = L.kNorm {
            headRMSNorm(qkv, rstd: nil, rows: n, ld: Q, qHeads: c.numHeads, kvHeads: c.numKVHeads,
                        headDim: D, qWeight: p(qn), kWeight: p(kn), eps: c.rmsNormEps)
        }
        ws.positions.withUnsafeBufferPointer { pos in
            // q and k heads are adjacent in a row: rotate all Hq + Hkv of them in one pass.
            ropeForward(qkv, rows: n, ld: Q, heads: c.numHeads + c.numKVHeads, headDim: D, positions: pos.baseAddress!, table: rope)
        }
        attentionForward(layer: l, rows: rows, ws: ws)
        gemm(.none, .transpose, m: n, n: C, k: c.attnDim, a: att, lda: c.attnDim, b: p(L.o), ldb: c.attnDim, beta: 1, c: x, ldc: C)
        if let b = L.oBias { addBiasRows(x, p(b), rows: n, cols: C, ld: C) }
        // x = x + down_proj(silu(gate_proj(h)) * up_proj(h)), h = post_attention_layernorm(x)
        rmsNormForward(h, nil, x, p(L.postNorm), rows: n, cols: C, eps: c.rmsNormEps)
        gemm(.none, .transpose, m: n, n: 2 * I, k: C, a: h, lda: C, b: p(L.gateUp), ldb: C, c: ws.gu.data, ldc: 2 * I)
        swigluForward(ws.act.data, ws.gu.data, rows: n, hidden: I)
        gemm(.none, .transpose, m: n, n: C, k: I, a: ws.act.data, lda: I, b: p(L.down), ldb: I, beta: 1, c: x, ldc: C)
    }

    /// Causal multi-head attention with GQA over packed segments.
    ///
    /// Reads q (rotated) from ws.qkv; keys/values come from ws.qkv for stateless segments or
    /// from the segment's KV cache (after appending the new rows) otherwise. Writes ws.att,
    /// (N, Hq·D). softmax(q·kᵀ/√D) over keys at positions ≤ the query's, then ·v.
    func attentionForward(layer l: Int, rows: [SegmentRows], ws: ForwardWorkspace) {
        let c = config
        let D = c.headDim, Q = c.qkvDim, A = c.attnDim, H = c.numHeads
        let kvDim = c.numKVHeads * D
        let qkv = ws.qkv.data, att = ws.att.data
        // Append new keys/values to the caches first; attention then reads only from the cache.
        for r in rows {
            guard let kv = r.cache else { continue }
            for i in 0..<r.count {
                let src = qkv + (r.row + i) * Q + A
                (kv.keys(layer: l) + (r.start + i) * kvDim).update(from: src, count: kvDim)
                (kv.values(layer: l) + (r.start + i) * kvDim).update(from: src + kvDim, count: kvDim)
            }
        }
        let blk = ForwardWorkspace.queryBlock
        let maxKV = rows.map { $0.start + $0.count }.max() ?? 0
        let scale = 1 / Float(D).squareRoot()
        let scratch = ws.scores.data
        let items = rows.count * H
        let workers = max(1, min(Parallel.threads, items))
        let body = { (w: Int) in
            let S = scratch + w * blk * maxKV
            var item = items * w / workers
            let end = items * (w + 1) / workers
            while item < end {
                let r = rows[item / H], head = item % H, kvh = head / c.kvMul
                item += 1
                let kBase: UnsafePointer<Float>, vBase: UnsafePointer<Float>, ldkv: Int
                if let kv = r.cache {
                    kBase = UnsafePointer(kv.keys(layer: l) + kvh * D)
                    vBase = UnsafePointer(kv.values(layer: l) + kvh * D)
                    ldkv = kvDim
                } else {
                    kBase = UnsafePointer(qkv + r.row * Q + A + kvh * D)
                    vBase = UnsafePointer(qkv + r.row * Q + A + kvDim + kvh * D)
                    ldkv = Q
                }
                var i0 = 0
                while i0 < r.count {
                    let m = min(blk, r.count - i0)
                    let nkv = r.start + i0 + m   // keys visible to the last query of the block
                    gemm(.none, .transpose, m: m, n: nkv, k: D, alpha: scale,
                         a: qkv + (r.row + i0) * Q + head * D, lda: Q, b: kBase, ldb: ldkv, c: S, ldc: nkv, parallel: false)
                    for i in 0..<m {
                        let valid = r.start + i0 + i + 1
                        softmaxRowInPlace(S + i * nkv, count: valid)
                        if valid < nkv { (S + i * nkv + valid).update(repeating: 0, count: nkv - valid) }
                    }
                    gemm(.none, .none, m: m, n: D, k: nkv, a: S, lda: nkv, b: vBase, ldb: ldkv,
                         c: att + (r.row + i0) * A + head * D, ldc: A, parallel: false)
                    i0 += m
                }
            }
        }
        if workers == 1 {
            body(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: workers, execute: body)
        }
    }

    /// Qwen3 q_norm / k_norm in place: RMSNorm over each of the Hq query heads (q_norm weight)
    /// and Hkv key heads (k_norm weight) at the front of every row of x (row stride ld). The
    /// training pass saves each head's reciprocal RMS in rstd, (N, Hq+Hkv); inference passes nil.
    func headRMSNorm(_ x: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?, rows n: Int, ld: Int,
                     qHeads: Int, kvHeads: Int, headDim d: Int, qWeight: UnsafePointer<Float>,
                     kWeight: UnsafePointer<Float>, eps: Float) {
        let heads = qHeads + kvHeads
        parallelFor(n, costPerItem: heads * d * 3) { a, b in
            for r in a..<b {
                for h in 0..<heads {
                    let v = x + r * ld + h * d, w = h < qHeads ? qWeight : kWeight
                    var ss: Float = 0
                    for j in 0..<d { ss += v[j] * v[j] }
                    let s = 1 / (ss / Float(d) + eps).squareRoot()
                    rstd?[r * heads + h] = s
                    for j in 0..<d { v[j] = v[j] * s * w[j] }
                }
            }
        }
    }
}
