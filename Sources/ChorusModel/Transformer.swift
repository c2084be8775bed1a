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
    /// The matrices packed as 16-bit floats, on a bf16 / f16 sampling copy only
    /// (`samplingCopy`): decode-sized products then go through `gemm`'s 16-bit kernel.
    public internal(set) var halfWeights: HalfWeights?

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

    /// Pointer to the parameter tensor at a flat offset of `parameters` (a `ParameterLayout` offset).
    @inline(__always) public func parameter(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.data + offset }

    /// HF-style initialisation: linear and embedding weights N(0, std²), norms 1, biases 0.
    public func initializeRandom(seed: UInt64, std: Float = 0.02) {
        var rng = ChorusRNG(seed: seed)
        for e in layout.entries {
            let ptr = parameter(e.offset)
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

/// One sequence (or a continuation of one) in a packed forward batch.
///
/// Without a cache the tokens are a whole sequence starting at position 0. With a cache they
/// continue it at position `cache.length`; their keys and values are appended.
public struct PackedSequence {
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
    var x: Tensor, h: Tensor, qkv: Tensor, att: Tensor, gu: Tensor, act: Tensor
    var positions: [Int32] = []
    var attentionScratch: Tensor
    /// The rows of a decode step, reused across steps.
    var decodeRows: [SequenceRows] = []

    /// An empty workspace; buffers grow on first use.
    public init() {
        x = Tensor(shape: [0]); h = x; qkv = x; att = x; gu = x; act = x; attentionScratch = x
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

    /// The inference block buffers: every intermediate aliases one workspace buffer and
    /// nothing is saved.
    func blockBuffers() -> BlockBuffers {
        BlockBuffers(h1: h.data, qkvRaw: qkv.data, qkv: qkv.data, att: att.data, h2: h.data, gu: gu.data, act: act.data)
    }
}

/// Grows `t` to at least `n` floats (by half again, so repeated growth is amortised).
func grow(_ t: inout Tensor, to n: Int) {
    if t.capacity < n { t = Tensor(shape: [max(n, t.capacity * 3 / 2)]) }
}

/// Where one transformer block writes its intermediates. Inference aliases them onto one
/// workspace and saves nothing; training points them into the tape's storage for the layer
/// and asks for the statistics (reciprocal RMS, attention log-partitions) and residual copies
/// the backward pass needs.
struct BlockBuffers {
    var h1, qkvRaw, qkv, att, h2, gu, act: UnsafeMutablePointer<Float>
    /// Copies of the residual stream entering the block and after the attention branch.
    var xIn: UnsafeMutablePointer<Float>? = nil, xMid: UnsafeMutablePointer<Float>? = nil
    var rstd1: UnsafeMutablePointer<Float>? = nil, rstd2: UnsafeMutablePointer<Float>? = nil
    var qkRstd: UnsafeMutablePointer<Float>? = nil, attentionLSE: UnsafeMutablePointer<Float>? = nil
}

/// The location of one sequence inside the packed token rows of a forward batch.
struct SequenceRows {
    var row: Int        // first packed row
    var count: Int      // new tokens
    var start: Int      // absolute position of the first new token
    var cache: KVCache?
    /// With a cache: the packed row of a prefix in the same batch whose `start` rows of keys and
    /// values are copied into cache positions 0 ..< start at every layer first (a training
    /// response that shares its prompt's rows with the other responses of its group).
    var prefixRow: Int? = nil
}

extension TransformerModel {
    /// Runs the transformer body over a batch of sequences packed row after row.
    ///
    /// Returns the final-normed hidden states, (N, C) for N = total new tokens, valid until
    /// the workspace is used again. Caches in the sequences are extended by their tokens.
    public func forwardHidden(_ sequences: [PackedSequence], workspace ws: ForwardWorkspace) throws -> UnsafeMutablePointer<Float> {
        let c = config
        let (rows, n) = try packRows(sequences)
        ws.ensure(tokens: n, config: c)
        for (si, s) in sequences.enumerated() {
            for i in s.tokens.indices { ws.positions[rows[si].row + i] = Int32(rows[si].start + i) }
        }
        embed(sequences.lazy.map(\.tokens), into: ws.x.data)
        return body(rows: rows, n: n, workspace: ws)
    }

    /// One decode step of a batch: token i continues the sequence in `caches[i]` (appending its
    /// keys and values). The same body as `forwardHidden` with one-token sequences, without
    /// building a `PackedSequence` (and its token array) per sequence: the rollout engine calls
    /// this once per sampled token. Returns the final-normed hidden states, (N, C).
    public func forwardDecode(tokens: [Int], caches: [KVCache], workspace ws: ForwardWorkspace) throws -> UnsafeMutablePointer<Float> {
        precondition(tokens.count == caches.count, "one cache per token")
        let n = tokens.count
        if n == 0 { throw ModelError.emptyInput("a decode step has no tokens") }
        try checkTokens(tokens)
        ws.decodeRows.removeAll(keepingCapacity: true)
        var maxKV = 0
        for (i, kv) in caches.enumerated() {
            if kv.length + 1 > kv.capacity { throw ModelError.cacheFull(capacity: kv.capacity, needed: kv.length + 1) }
            ws.decodeRows.append(SequenceRows(row: i, count: 1, start: kv.length, cache: kv))
            maxKV = max(maxKV, kv.length + 1)
        }
        rope.ensure(maxKV)
        ws.ensure(tokens: n, config: config)
        let C = config.hiddenSize, E = parameter(layout.embed)
        for i in 0..<n {
            ws.positions[i] = Int32(caches[i].length)
            (ws.x.data + i * C).update(from: E + tokens[i] * C, count: C)
        }
        return body(rows: ws.decodeRows, n: n, workspace: ws)
    }

    /// The layers and the final norm over packed rows already embedded in `ws.x`; extends the
    /// rows' caches. Returns ws.h, (N, C).
    func body(rows: [SequenceRows], n: Int, workspace ws: ForwardWorkspace) -> UnsafeMutablePointer<Float> {
        let c = config
        let buffers = ws.blockBuffers()
        for l in 0..<c.numLayers {
            blockForward(layer: l, x: ws.x.data, rows: rows, n: n, positions: ws.positions, buffers: buffers,
                         attentionScratch: &ws.attentionScratch)
        }
        rmsNormForward(ws.h.data, nil, ws.x.data, parameter(layout.finalNorm), rows: n, cols: c.hiddenSize, eps: c.rmsNormEps)
        for r in rows { r.cache?.length = r.start + r.count }
        return ws.h.data
    }

    /// Validates a batch and lays its sequences out row after row; returns the rows of each and
    /// the total N.
    func packRows(_ sequences: [PackedSequence]) throws -> ([SequenceRows], Int) {
        var rows: [SequenceRows] = []
        rows.reserveCapacity(sequences.count)
        var n = 0, maxKV = 0
        for s in sequences {
            if s.tokens.isEmpty { throw ModelError.emptyInput("a sequence has no tokens") }
            try checkTokens(s.tokens)
            let start = s.cache?.length ?? 0
            if let kv = s.cache, start + s.tokens.count > kv.capacity {
                throw ModelError.cacheFull(capacity: kv.capacity, needed: start + s.tokens.count)
            }
            rows.append(SequenceRows(row: n, count: s.tokens.count, start: start, cache: s.cache))
            n += s.tokens.count
            maxKV = max(maxKV, start + s.tokens.count)
        }
        rope.ensure(maxKV)
        return (rows, n)
    }

    /// Embedding lookup: x[r] = E[token r] for the tokens of all sequences, packed. x is (N, C).
    func embed<S: Sequence>(_ sequences: S, into x: UnsafeMutablePointer<Float>) where S.Element == [Int] {
        let C = config.hiddenSize, E = parameter(layout.embed)
        var r = 0
        for s in sequences {
            for t in s { (x + r * C).update(from: E + t * C, count: C); r += 1 }
        }
    }

    /// One transformer block over the packed rows (mirrors HF LlamaDecoderLayer /
    /// Qwen3DecoderLayer), updating the residual stream x (N, C) in place:
    ///
    ///     x = x + o_proj(attn(rope(qk_norm(qkv_proj(input_layernorm(x))))))
    ///     x = x + down_proj(silu(gate_proj(h)) * up_proj(h)),  h = post_attention_layernorm(x)
    ///
    /// The same code serves inference, scoring and training; `buffers` decides what is kept.
    func blockForward(layer l: Int, x: UnsafeMutablePointer<Float>, rows: [SequenceRows], n: Int, positions: [Int32],
                      buffers b: BlockBuffers, attentionScratch: inout Tensor) {
        let c = config, L = layout.layers[l]
        let C = c.hiddenSize, D = c.headDim, Q = c.qkvDim, I = c.intermediateSize, A = c.attnDim
        let half = halfWeights?.layers[l]   // a bf16 / f16 sampling copy's packed matrices
        b.xIn?.update(from: x, count: n * C)
        rmsNormForward(b.h1, b.rstd1, x, parameter(L.inputNorm), rows: n, cols: C, eps: c.rmsNormEps)
        gemm(.none, .transpose, m: n, n: Q, k: C, a: b.h1, lda: C, b: parameter(L.qkv), ldb: C, c: b.qkvRaw, ldc: Q, bHalf: half?.qkv)
        if let bias = L.qkvBias { addBiasRows(b.qkvRaw, parameter(bias), rows: n, cols: Q, ld: Q) }
        if let qn = L.qNorm, let kn = L.kNorm {
            qkNormForward(b.qkv, b.qkRstd, b.qkvRaw, qWeight: parameter(qn), kWeight: parameter(kn),
                          rows: n, ld: Q, qHeads: c.numHeads, kvHeads: c.numKVHeads, headDim: D, eps: c.rmsNormEps)
            if b.qkv != b.qkvRaw {   // the values pass through the norm untouched
                for r in 0..<n { (b.qkv + r * Q + A + c.numKVHeads * D).update(from: b.qkvRaw + r * Q + A + c.numKVHeads * D, count: c.numKVHeads * D) }
            }
        }
        positions.withUnsafeBufferPointer { pos in
            // q and k heads are adjacent in a row: rotate all Hq + Hkv of them in one pass.
            ropeForward(b.qkv, rows: n, ld: Q, heads: c.numHeads + c.numKVHeads, headDim: D, positions: pos.baseAddress!, table: rope)
        }
        let seqs = attentionSequences(layer: l, rows: rows, qkv: b.qkv)
        let shape = attentionShape
        grow(&attentionScratch, to: shape.forwardScratch(maxKeys: seqs.reduce(0) { max($0, $1.start + $1.count) }))
        attentionForward(b.att, ldo: A, b.attentionLSE, q: b.qkv, ldq: Q, sequences: seqs, shape: shape,
                         scratch: attentionScratch.data)
        gemm(.none, .transpose, m: n, n: C, k: A, a: b.att, lda: A, b: parameter(L.o), ldb: A, beta: 1, c: x, ldc: C, bHalf: half?.o)
        if let bias = L.oBias { addBiasRows(x, parameter(bias), rows: n, cols: C, ld: C) }
        b.xMid?.update(from: x, count: n * C)
        rmsNormForward(b.h2, b.rstd2, x, parameter(L.postNorm), rows: n, cols: C, eps: c.rmsNormEps)
        gemm(.none, .transpose, m: n, n: 2 * I, k: C, a: b.h2, lda: C, b: parameter(L.gateUp), ldb: C, c: b.gu, ldc: 2 * I, bHalf: half?.gateUp)
        swigluForward(b.act, b.gu, rows: n, hidden: I)
        gemm(.none, .transpose, m: n, n: C, k: I, a: b.act, lda: I, b: parameter(L.down), ldb: I, beta: 1, c: x, ldc: C, bHalf: half?.down)
    }

    /// The attention geometry of the model.
    var attentionShape: AttentionShape {
        AttentionShape(heads: config.numHeads, kvHeads: config.numKVHeads, headDim: config.headDim)
    }

    /// Where each sequence's keys and values are for layer l: the new rows of the fused qkv
    /// buffer for a stateless sequence, or its KV cache, into which the new rows are appended
    /// first (attention then reads only from the cache).
    func attentionSequences(layer l: Int, rows: [SequenceRows], qkv: UnsafeMutablePointer<Float>) -> [AttentionSequence] {
        let c = config, Q = c.qkvDim, A = c.attnDim, kvDim = c.numKVHeads * c.headDim
        return rows.map { r in
            guard let kv = r.cache else {
                let k = qkv + r.row * Q + A
                return AttentionSequence(row: r.row, count: r.count, start: 0, keys: k, values: k + kvDim, ld: Q)
            }
            let keys = kv.keys(layer: l), values = kv.values(layer: l)
            if let p = r.prefixRow {
                for i in 0..<r.start {
                    let src = qkv + (p + i) * Q + A
                    (keys + i * kvDim).update(from: src, count: kvDim)
                    (values + i * kvDim).update(from: src + kvDim, count: kvDim)
                }
            }
            for i in 0..<r.count {
                let src = qkv + (r.row + i) * Q + A
                (keys + (r.start + i) * kvDim).update(from: src, count: kvDim)
                (values + (r.start + i) * kvDim).update(from: src + kvDim, count: kvDim)
            }
            return AttentionSequence(row: r.row, count: r.count, start: r.start, keys: keys, values: values, ld: kvDim)
        }
    }
}
