import ChorusTensor
import Foundation

/// What a training forward pass saves for the backward pass, plus the backward's scratch.
/// Grown on demand and reused across steps, so a warm training step allocates nothing.
///
/// Memory is linear in the token count N: per layer a handful of (N, ·) activations and, for
/// attention, one log-partition per (row, head) — the probabilities are recomputed in the
/// backward pass rather than stored (they would be L·H·T² floats).
public final class TrainingTape {
    struct LayerSaved {
        var xIn = Tensor(shape: [0]), xMid = Tensor(shape: [0]), h1 = Tensor(shape: [0]), qkvRaw = Tensor(shape: [0])
        var qkv = Tensor(shape: [0]), att = Tensor(shape: [0]), h2 = Tensor(shape: [0]), gu = Tensor(shape: [0])
        var act = Tensor(shape: [0]), rstd1 = Tensor(shape: [0]), rstd2 = Tensor(shape: [0])
        var qkRstd = Tensor(shape: [0]), lse = Tensor(shape: [0])
    }
    var layers: [LayerSaved] = []
    /// The residual stream; after the forward pass, the last block's output.
    var x = Tensor(shape: [0])
    var hF = Tensor(shape: [0]), rstdF = Tensor(shape: [0])
    var positions: [Int32] = []
    var rows: [SequenceRows] = []
    /// The token of each packed row (the embedding's backward pass adds dx rows to them).
    var tokens: [Int] = []
    /// Key/value stores of the responses that share their prompt's rows (`sharePrompts`), one
    /// per such response, reused across steps while large enough.
    var joinCaches: [KVCache] = []
    /// dK and dV of those responses' joined keys (prompt rows, then their own), per layer.
    var dJoin = Tensor(shape: [0])
    /// Head rows in response order: packed row, target, sequence, position.
    var headRows: [(row: Int, target: Int, sequence: Int, position: Int)] = []
    var lse: [Float] = []
    var n = 0
    /// Whether the model has q/k norms (then the raw projection is saved separately).
    var qkNorm = false
    var attentionScratch = Tensor(shape: [0])
    // Backward scratch.
    var dx = Tensor(shape: [0]), dh = Tensor(shape: [0]), dqkv = Tensor(shape: [0]), dqkvRaw = Tensor(shape: [0])
    var datt = Tensor(shape: [0]), dgu = Tensor(shape: [0]), dact = Tensor(shape: [0])
    var partials = Tensor(shape: [0]), headScratch = Tensor(shape: [0])

    /// An empty tape; buffers are sized by the first `trainingForward`.
    public init() {}

    /// Bytes currently held (activations and scratch), for memory reports.
    public var bytes: Int {
        var t = [x, hF, rstdF, attentionScratch, dx, dh, dqkv, dqkvRaw, datt, dgu, dact, partials, headScratch]
        for s in layers { t += [s.xIn, s.xMid, s.h1, s.qkvRaw, s.qkv, s.att, s.h2, s.gu, s.act, s.rstd1, s.rstd2, s.qkRstd, s.lse] }
        return t.reduce(0) { $0 + 4 * $1.capacity }
    }

    func ensure(tokens n: Int, config c: ModelConfig) {
        let C = c.hiddenSize, Q = c.qkvDim, A = c.attnDim, I = c.intermediateSize
        let qkHeads = c.numHeads + c.numKVHeads
        qkNorm = c.qkNorm
        if layers.count != c.numLayers { layers = Array(repeating: LayerSaved(), count: c.numLayers) }
        for l in 0..<c.numLayers {
            grow(&layers[l].xIn, to: n * C); grow(&layers[l].xMid, to: n * C)
            grow(&layers[l].h1, to: n * C); grow(&layers[l].h2, to: n * C)
            grow(&layers[l].qkv, to: n * Q); grow(&layers[l].att, to: n * A)
            grow(&layers[l].gu, to: n * 2 * I); grow(&layers[l].act, to: n * I)
            grow(&layers[l].rstd1, to: n); grow(&layers[l].rstd2, to: n)
            grow(&layers[l].lse, to: n * c.numHeads)
            if c.qkNorm { grow(&layers[l].qkvRaw, to: n * Q); grow(&layers[l].qkRstd, to: n * qkHeads) }
        }
        grow(&x, to: n * C); grow(&hF, to: n * C); grow(&rstdF, to: n)
        grow(&dx, to: n * C); grow(&dh, to: n * C); grow(&dqkv, to: n * Q); grow(&datt, to: n * A)
        grow(&dgu, to: n * 2 * I); grow(&dact, to: n * I)
        if c.qkNorm { grow(&dqkvRaw, to: n * Q) }
        grow(&partials, to: Parallel.threads * max(C, c.headDim))
        grow(&headScratch, to: TransformerModel.headChunk * (C + c.vocabSize))
        if positions.count < n { positions = [Int32](repeating: 0, count: n) }
    }

    /// Layer l's block buffers: every intermediate in its own saved tensor.
    func blockBuffers(layer l: Int) -> BlockBuffers {
        let s = layers[l]
        let raw = qkNorm ? s.qkvRaw.data : s.qkv.data
        return BlockBuffers(h1: s.h1.data, qkvRaw: raw, qkv: s.qkv.data, att: s.att.data, h2: s.h2.data, gu: s.gu.data,
                            act: s.act.data, xIn: s.xIn.data, xMid: s.xMid.data, rstd1: s.rstd1.data, rstd2: s.rstd2.data,
                            qkRstd: s.qkRstd.data, attentionLSE: s.lse.data)
    }
}

extension TransformerModel {
    /// Training forward pass over whole prompt + response sequences (packed row after row),
    /// through the same `blockForward` as inference, saving what the backward pass needs.
    ///
    /// Returns, per sequence and response token t, log p(y_t | prompt, y_<t) and the entropy of
    /// that next-token distribution. These equal the scoring path's values (`forwardHidden`
    /// then `score`) on the same batch.
    ///
    /// With `sharePrompts`, consecutive sequences with the same prompt (the G responses of a
    /// rollout group) share the prompt's rows: the prompt runs once, each response's tokens
    /// (all but the last, which predicts nothing) run as rows that attend over the prompt's keys
    /// and values and their own, and the prompt's last row predicts every response's first
    /// token. The values are the unshared pass's up to float summation order (the products
    /// see other batches); the backward pass sums the responses' gradients into the shared
    /// rows. At the demo's 8-token prompts and ~5-token responses this halves the rows.
    public func trainingForward(_ batch: [TrainingSequence], tape: TrainingTape, sharePrompts: Bool = false) throws -> ResponseScores {
        let c = config, C = c.hiddenSize, V = c.vocabSize
        for s in batch where s.promptLength < 1 || s.promptLength > s.tokens.count {
            throw ModelError.emptyInput("a training sequence needs a prompt of 1 ... \(s.tokens.count) tokens, got \(s.promptLength)")
        }
        for s in batch { try checkTokens(s.tokens) }
        // Packed rows: a sequence alone, or a shared prompt followed by its responses' rows.
        var rows: [SequenceRows] = [], tokens: [Int] = [], positions: [Int32] = []
        var heads: [(row: Int, target: Int, sequence: Int, position: Int)] = []
        var joins = 0, maxKV = 0
        var i = 0
        while i < batch.count {
            let first = batch[i], P = first.promptLength
            var j = i + 1
            if sharePrompts {
                while j < batch.count && batch[j].promptLength == P && batch[j].tokens[0..<P] == first.tokens[0..<P] { j += 1 }
            }
            if j - i == 1 {
                let row = tokens.count
                rows.append(SequenceRows(row: row, count: first.tokens.count, start: 0))
                tokens += first.tokens
                positions += (0..<first.tokens.count).map { Int32($0) }
                for t in 0..<first.responseLength { heads.append((row + P - 1 + t, first.tokens[P + t], i, t)) }
                maxKV = max(maxKV, first.tokens.count)
            } else {
                let prefixRow = tokens.count
                rows.append(SequenceRows(row: prefixRow, count: P, start: 0))
                tokens += first.tokens[0..<P]
                positions += (0..<P).map { Int32($0) }
                for si in i..<j {
                    let s = batch[si], L = s.responseLength, row = tokens.count
                    for t in 0..<L { heads.append((t == 0 ? prefixRow + P - 1 : row + t - 1, s.tokens[P + t], si, t)) }
                    guard L > 1 else { continue }
                    if joins == tape.joinCaches.count || tape.joinCaches[joins].capacity < P + L - 1 {
                        let cache = KVCache(config: c, capacity: max(P + L - 1, 2 * (joins < tape.joinCaches.count ? tape.joinCaches[joins].capacity : 0)))
                        if joins == tape.joinCaches.count { tape.joinCaches.append(cache) } else { tape.joinCaches[joins] = cache }
                    }
                    rows.append(SequenceRows(row: row, count: L - 1, start: P, cache: tape.joinCaches[joins], prefixRow: prefixRow))
                    joins += 1
                    tokens += s.tokens[P..<(s.tokens.count - 1)]
                    positions += (0..<(L - 1)).map { Int32(P + $0) }
                    maxKV = max(maxKV, P + L - 1)
                }
                maxKV = max(maxKV, P)
            }
            i = j
        }
        rope.ensure(maxKV)
        let n = tokens.count
        if n == 0 { throw ModelError.emptyInput("a training batch has no tokens") }
        tape.ensure(tokens: n, config: c)
        tape.n = n
        tape.rows = rows
        tape.tokens = tokens
        tape.headRows = heads
        for r in 0..<n { tape.positions[r] = positions[r] }
        embed(CollectionOfOne(tokens), into: tape.x.data)
        for l in 0..<c.numLayers {
            blockForward(layer: l, x: tape.x.data, rows: rows, n: n, positions: tape.positions,
                         buffers: tape.blockBuffers(layer: l), attentionScratch: &tape.attentionScratch)
        }
        rmsNormForward(tape.hF.data, tape.rstdF.data, tape.x.data, parameter(layout.finalNorm), rows: n, cols: C, eps: c.rmsNormEps)
        // Head: each response token's log-prob, entropy and its row's log-partition (for backward).
        let m = tape.headRows.count
        tape.lse = [Float](repeating: 0, count: m)
        var lp = [Float](repeating: 0, count: m), ent = lp
        tape.lse.withUnsafeMutableBufferPointer { lseB in
            lp.withUnsafeMutableBufferPointer { lpB in
                ent.withUnsafeMutableBufferPointer { entB in
                    let heads = tape.headRows
                    headChunks(hidden: tape.hF.data, rows: heads.map(\.row), scratch: tape.headScratch) { s0, count, logits, _ in
                        parallelFor(count, costPerItem: V * 3) { a, b in
                            for i in a..<b {
                                let k = s0 + i
                                let st = rowStats(logits + i * V, count: V)
                                lseB[k] = st.logSumExp
                                lpB[k] = logits[i * V + heads[k].target] - st.logSumExp
                                entB[k] = st.entropy
                            }
                        }
                    }
                }
            }
        }
        var out = ResponseScores(logprobs: [], entropy: [])
        var k = 0
        for s in batch {
            out.logprobs.append(Array(lp[k..<(k + s.responseLength)]))
            out.entropy.append(Array(ent[k..<(k + s.responseLength)]))
            k += s.responseLength
        }
        return out
    }

    /// Backward pass of `objective` for the batch of the last `trainingForward`, accumulating
    /// dL/dθ into `grads` (same layout as `parameters`). Returns L (in Double, summed in
    /// response order so it does not depend on the thread count).
    @discardableResult
    public func trainingBackward(_ objective: some LogitObjective, tape: TrainingTape, grads: Tensor) -> Double {
        let c = config, n = tape.n
        precondition(grads.count == parameters.count)
        let C = c.hiddenSize, Q = c.qkvDim, A = c.attnDim, I = c.intermediateSize, D = c.headDim, H = c.numHeads, V = c.vocabSize
        let kvDim = c.numKVHeads * D
        let g = grads.data
        // LM head + loss: dlogits from the objective; dhF = dlogits·W; dW += dlogitsᵀ·hF.
        let active = tape.headRows.indices.filter { objective.isActive(sequence: tape.headRows[$0].sequence, position: tape.headRows[$0].position) }
        var losses = [Double](repeating: 0, count: active.count)
        let dh = tape.dh.data
        dh.update(repeating: 0, count: n * C)
        let W = parameter(layout.lmHead), dW = g + layout.lmHead
        let heads = tape.headRows, lse = tape.lse
        let activeRows = active.map { heads[$0].row }
        losses.withUnsafeMutableBufferPointer { lossB in
            headChunks(hidden: tape.hF.data, rows: activeRows, scratch: tape.headScratch) { s0, m, logits, hidden in
                parallelFor(m, costPerItem: V * 3) { a, b in
                    for i in a..<b {
                        let k = active[s0 + i], h = heads[k]
                        lossB[s0 + i] = objective.gradient(LogitRow(sequence: h.sequence, position: h.position, target: h.target,
                                                                    values: logits + i * V, vocabSize: V, logSumExp: lse[k]))
                    }
                }
                // The head's weight gradient from the gathered hF rows, then dhF (into the same
                // scratch, no longer needed) scattered back to its rows.
                gemm(.transpose, .none, m: V, n: C, k: m, a: logits, lda: V, b: hidden, ldb: C, beta: 1, c: dW, ldc: C)
                gemm(.none, .none, m: m, n: C, k: V, a: logits, lda: V, b: W, ldb: C, c: hidden, ldc: C)
                // Added, not assigned: a shared prompt's last row predicts several responses.
                for i in 0..<m { addInPlace(dh + activeRows[s0 + i] * C, hidden + i * C, count: C) }
            }
        }
        let loss = losses.reduce(0, +)
        let dx = tape.dx.data
        dx.update(repeating: 0, count: n * C)
        rmsNormBackward(dx, g + layout.finalNorm, dh, tape.x.data, parameter(layout.finalNorm), tape.rstdF.data,
                        rows: n, cols: C, partials: tape.partials.data)
        for l in stride(from: c.numLayers - 1, through: 0, by: -1) {
            let L = layout.layers[l], S = tape.layers[l], b = tape.blockBuffers(layer: l)
            // MLP branch: x_out = xMid + down(silu(gate(h2))·up(h2)).
            let dact = tape.dact.data, dgu = tape.dgu.data
            gemm(.none, .none, m: n, n: I, k: C, a: dx, lda: C, b: parameter(L.down), ldb: I, c: dact, ldc: I)
            gemm(.transpose, .none, m: C, n: I, k: n, a: dx, lda: C, b: b.act, ldb: I, beta: 1, c: g + L.down, ldc: I)
            swigluBackward(dgu, dact, b.gu, rows: n, hidden: I)
            gemm(.transpose, .none, m: 2 * I, n: C, k: n, a: dgu, lda: 2 * I, b: b.h2, ldb: C, beta: 1, c: g + L.gateUp, ldc: C)
            gemm(.none, .none, m: n, n: C, k: 2 * I, a: dgu, lda: 2 * I, b: parameter(L.gateUp), ldb: C, c: dh, ldc: C)
            rmsNormBackward(dx, g + L.postNorm, dh, S.xMid.data, parameter(L.postNorm), S.rstd2.data, rows: n, cols: C,
                            partials: tape.partials.data)
            // Attention branch: xMid = xIn + o(att).
            if let bias = L.oBias { addColumnSums(g + bias, dx, rows: n, cols: C) }
            gemm(.transpose, .none, m: C, n: A, k: n, a: dx, lda: C, b: b.att, ldb: A, beta: 1, c: g + L.o, ldc: A)
            let datt = tape.datt.data, dqkv = tape.dqkv.data
            gemm(.none, .none, m: n, n: A, k: C, a: dx, lda: C, b: parameter(L.o), ldb: A, c: datt, ldc: A)
            // dK and dV accumulate: clear their columns first (dQ is assigned).
            for r in 0..<n { (dqkv + r * Q + A).update(repeating: 0, count: 2 * kvDim) }
            // (A response sharing its prompt attends over a cache rebuilt here from the saved qkv.)
            let seqs = attentionSequences(layer: l, rows: tape.rows, qkv: b.qkv)
            let shape = attentionShape
            grow(&tape.attentionScratch, to: shape.backwardScratch(maxKeys: tape.rows.map { $0.start + $0.count }.max() ?? 0))
            // dK/dV: a sequence's own columns of dqkv, or for a response sharing its prompt a
            // (start + count, kvDim) pair of join buffers, scattered back below.
            var dkv: [(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)] = []
            var joinFloats = 0
            for r in tape.rows where r.prefixRow != nil { joinFloats += 2 * (r.start + r.count) * kvDim }
            grow(&tape.dJoin, to: joinFloats)
            tape.dJoin.data.update(repeating: 0, count: joinFloats)
            var offset = 0
            for r in tape.rows {
                if r.prefixRow == nil {
                    dkv.append((dqkv + r.row * Q + A, dqkv + r.row * Q + A + kvDim))
                } else {
                    let keys = r.start + r.count
                    dkv.append((tape.dJoin.data + offset, tape.dJoin.data + offset + keys * kvDim))
                    offset += 2 * keys * kvDim
                }
            }
            attentionBackward(dq: dqkv, dkv: dkv, dout: datt, out: b.att, ldo: A, lse: S.lse.data, q: b.qkv, ldq: Q,
                              sequences: seqs, shape: shape, scratch: tape.attentionScratch.data)
            for (si, r) in tape.rows.enumerated() {
                guard let p = r.prefixRow else { continue }
                for k in 0..<(r.start + r.count) {
                    let dst = dqkv + (k < r.start ? p + k : r.row + k - r.start) * Q + A
                    addInPlace(dst, dkv[si].keys + k * kvDim, count: kvDim)
                    addInPlace(dst + kvDim, dkv[si].values + k * kvDim, count: kvDim)
                }
            }
            tape.positions.withUnsafeBufferPointer { pos in
                ropeBackward(dqkv, rows: n, ld: Q, heads: H + c.numKVHeads, headDim: D, positions: pos.baseAddress!, table: rope)
            }
            var dRaw = dqkv
            if let qn = L.qNorm, let kn = L.kNorm {
                // The norm backward accumulates into the q/k columns; values pass straight through.
                dRaw = tape.dqkvRaw.data
                for r in 0..<n {
                    (dRaw + r * Q).update(repeating: 0, count: A + kvDim)
                    (dRaw + r * Q + A + kvDim).update(from: dqkv + r * Q + A + kvDim, count: kvDim)
                }
                qkNormBackward(dRaw, dqWeight: g + qn, dkWeight: g + kn, dqkv, b.qkvRaw, S.qkRstd.data,
                               qWeight: parameter(qn), kWeight: parameter(kn), rows: n, ld: Q,
                               qHeads: H, kvHeads: c.numKVHeads, headDim: D, partials: tape.partials.data)
            }
            if let bias = L.qkvBias { addColumnSums(g + bias, dRaw, rows: n, cols: Q) }
            gemm(.transpose, .none, m: Q, n: C, k: n, a: dRaw, lda: Q, b: b.h1, ldb: C, beta: 1, c: g + L.qkv, ldc: C)
            gemm(.none, .none, m: n, n: C, k: Q, a: dRaw, lda: Q, b: parameter(L.qkv), ldb: C, c: dh, ldc: C)
            rmsNormBackward(dx, g + L.inputNorm, dh, S.xIn.data, parameter(L.inputNorm), S.rstd1.data, rows: n, cols: C,
                            partials: tape.partials.data)
        }
        // Embedding: dE[token] += dx[row] (serial: rows may share a token).
        let dE = g + layout.embed
        for (r, t) in tape.tokens.enumerated() { addInPlace(dE + t * C, dx + r * C, count: C) }
        return loss
    }
}
