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
    var batch: [TrainingSequence] = []
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
    public func trainingForward(_ batch: [TrainingSequence], tape: TrainingTape) throws -> ResponseScores {
        let c = config, C = c.hiddenSize, V = c.vocabSize
        for s in batch where s.promptLength < 1 || s.promptLength > s.tokens.count {
            throw ModelError.emptyInput("a training sequence needs a prompt of 1 ... \(s.tokens.count) tokens, got \(s.promptLength)")
        }
        let (rows, n) = try packRows(batch.map { PackedSequence(tokens: $0.tokens) })
        tape.ensure(tokens: n, config: c)
        tape.n = n
        tape.rows = rows
        tape.batch = batch
        tape.headRows = []
        for (si, s) in batch.enumerated() {
            for i in s.tokens.indices { tape.positions[rows[si].row + i] = Int32(i) }
            for t in 0..<s.responseLength {
                tape.headRows.append((rows[si].row + s.promptLength - 1 + t, s.tokens[s.promptLength + t], si, t))
            }
        }
        embed(batch.lazy.map(\.tokens), into: tape.x.data)
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
                for i in 0..<m { (dh + activeRows[s0 + i] * C).update(from: hidden + i * C, count: C) }
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
            let seqs = attentionSequences(layer: l, rows: tape.rows, qkv: b.qkv)
            let shape = attentionShape
            grow(&tape.attentionScratch, to: shape.backwardScratch(maxKeys: tape.rows.map(\.count).max() ?? 0))
            attentionBackward(dq: dqkv, dkv: tape.rows.map { (dqkv + $0.row * Q + A, dqkv + $0.row * Q + A + kvDim) },
                              dout: datt, out: b.att, ldo: A, lse: S.lse.data, q: b.qkv, ldq: Q, sequences: seqs,
                              shape: shape, scratch: tape.attentionScratch.data)
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
        var r = 0
        for s in tape.batch {
            for t in s.tokens { addInPlace(dE + t * C, dx + r * C, count: C); r += 1 }
        }
        return loss
    }
}
