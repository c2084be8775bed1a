import ChorusTensor
import Foundation

/// Activations saved by a training forward pass for the backward pass, plus the backward's
/// scratch buffers. Sized for a token count and grown on demand; reused across steps so a
/// training step allocates nothing once warm.
public final class TrainingTape {
    struct LayerSaved {
        var xIn, h1, qkvRaw, qkv, att, xMid, h2, gu, act: Tensor
        var rstd1, rstd2, qkRstd: Tensor
        var probs: Tensor
    }
    var layers: [LayerSaved] = []
    var xOut = Tensor(shape: [0]), hF = Tensor(shape: [0]), rstdF = Tensor(shape: [0])
    var lse: [Float] = []
    var logprobs: [Float] = []
    var targets: [Int32] = []
    var tokens: [Int32] = []
    var positions: [Int32] = []
    var segments: [(row: Int, count: Int, probOffset: Int)] = []
    var n = 0
    private(set) var capacity = 0
    private(set) var probCapacity = 0
    // Backward scratch.
    var dx = Tensor(shape: [0]), dh = Tensor(shape: [0]), dqkv = Tensor(shape: [0]), dqkvRaw = Tensor(shape: [0])
    var datt = Tensor(shape: [0]), dgu = Tensor(shape: [0]), dact = Tensor(shape: [0])
    var dP = Tensor(shape: [0]), partials = Tensor(shape: [0]), headScratch = Tensor(shape: [0])

    /// An empty tape; buffers are sized by the first `trainingForward`.
    public init() {}

    func ensure(tokens n: Int, probs: Int, maxT: Int, config c: ModelConfig) {
        let C = c.hiddenSize, Q = c.qkvDim, A = c.attnDim, I = c.intermediateSize
        if n > capacity || probs > probCapacity || layers.count != c.numLayers {
            let cap = max(n, capacity), pcap = max(probs, probCapacity)
            layers = (0..<c.numLayers).map { _ in
                LayerSaved(
                    xIn: Tensor(shape: [cap, C]), h1: Tensor(shape: [cap, C]),
                    qkvRaw: Tensor(shape: [c.qkNorm ? cap * Q : 0]), qkv: Tensor(shape: [cap, Q]),
                    att: Tensor(shape: [cap, A]), xMid: Tensor(shape: [cap, C]), h2: Tensor(shape: [cap, C]),
                    gu: Tensor(shape: [cap, 2 * I]), act: Tensor(shape: [cap, I]),
                    rstd1: Tensor(shape: [cap]), rstd2: Tensor(shape: [cap]),
                    qkRstd: Tensor(shape: [c.qkNorm ? cap * (c.numHeads + c.numKVHeads) : 0]),
                    probs: Tensor(shape: [pcap]))
            }
            xOut = Tensor(shape: [cap, C]); hF = Tensor(shape: [cap, C]); rstdF = Tensor(shape: [cap])
            dx = Tensor(shape: [cap, C]); dh = Tensor(shape: [cap, C])
            dqkv = Tensor(shape: [cap, Q]); dqkvRaw = Tensor(shape: [c.qkNorm ? cap * Q : 0])
            datt = Tensor(shape: [cap, A]); dgu = Tensor(shape: [cap, 2 * I]); dact = Tensor(shape: [cap, I])
            capacity = cap
            probCapacity = pcap
        }
        let workers = Parallel.threads
        if dP.count < workers * maxT * maxT { dP = Tensor(shape: [workers * maxT * maxT]) }
        let pc = workers * max(C, c.headDim * 2)
        if partials.count < pc { partials = Tensor(shape: [pc]) }
        let hs = TransformerModel.headChunk * (C + c.vocabSize)
        if headScratch.count < hs { headScratch = Tensor(shape: [hs]) }
    }
}

extension TransformerModel {
    /// Training forward pass over whole sequences (packed row after row), saving what the
    /// backward pass needs. Returns, per packed row r, log p(tokens[r+1] | tokens[≤r]) within
    /// the same sequence; the last row of each sequence has no target and gets 0.
    public func trainingForward(_ sequences: [[Int]], tape: TrainingTape) throws -> [Float] {
        let c = config
        let C = c.hiddenSize, Q = c.qkvDim, A = c.attnDim, I = c.intermediateSize, D = c.headDim, H = c.numHeads
        var n = 0, probs = 0, maxT = 0
        tape.segments = []
        for s in sequences {
            if s.isEmpty { throw ModelError.emptyInput("a training sequence has no tokens") }
            try checkTokens(s)
            tape.segments.append((n, s.count, probs))
            n += s.count
            probs += H * s.count * s.count
            maxT = max(maxT, s.count)
        }
        tape.ensure(tokens: n, probs: probs, maxT: maxT, config: c)
        tape.n = n
        rope.ensure(maxT)
        tape.tokens = []; tape.targets = []; tape.positions = []
        for s in sequences {
            for (i, t) in s.enumerated() {
                tape.tokens.append(Int32(t))
                tape.targets.append(i + 1 < s.count ? Int32(s[i + 1]) : -1)
                tape.positions.append(Int32(i))
            }
        }
        // Embedding.
        let E = p(layout.embed)
        var x = tape.layers[0].xIn.data
        for r in 0..<n { (x + r * C).update(from: E + Int(tape.tokens[r]) * C, count: C) }
        for l in 0..<c.numLayers {
            let L = layout.layers[l], S = tape.layers[l]
            // Layer l's input was written into S.xIn by the previous layer (or the embedding).
            x = S.xIn.data
            rmsNormForward(S.h1.data, S.rstd1.data, x, p(L.inputNorm), rows: n, cols: C, eps: c.rmsNormEps)
            let qkv = S.qkv.data
            gemm(.none, .transpose, m: n, n: Q, k: C, a: S.h1.data, lda: C, b: p(L.qkv), ldb: C, c: qkv, ldc: Q)
            if let b = L.qkvBias { addBiasRows(qkv, p(b), rows: n, cols: Q, ld: Q) }
            if let qn = L.qNorm, let kn = L.kNorm {
                S.qkvRaw.data.update(from: qkv, count: n * Q)
                headRMSNorm(qkv, rstd: S.qkRstd.data, rows: n, ld: Q, qHeads: H, kvHeads: c.numKVHeads,
                                  headDim: D, qWeight: p(qn), kWeight: p(kn), eps: c.rmsNormEps)
            }
            tape.positions.withUnsafeBufferPointer { pos in
                ropeForward(qkv, rows: n, ld: Q, heads: H + c.numKVHeads, headDim: D, positions: pos.baseAddress!, table: rope)
            }
            trainingAttentionForward(qkv: qkv, out: S.att.data, probs: S.probs.data, tape: tape)
            S.xMid.data.update(from: x, count: n * C)
            let xm = S.xMid.data
            gemm(.none, .transpose, m: n, n: C, k: A, a: S.att.data, lda: A, b: p(L.o), ldb: A, beta: 1, c: xm, ldc: C)
            if let b = L.oBias { addBiasRows(xm, p(b), rows: n, cols: C, ld: C) }
            rmsNormForward(S.h2.data, S.rstd2.data, xm, p(L.postNorm), rows: n, cols: C, eps: c.rmsNormEps)
            gemm(.none, .transpose, m: n, n: 2 * I, k: C, a: S.h2.data, lda: C, b: p(L.gateUp), ldb: C, c: S.gu.data, ldc: 2 * I)
            swigluForward(S.act.data, S.gu.data, rows: n, hidden: I)
            // The block output goes to the next layer's xIn (or xOut): start from xMid.
            let next = l + 1 < c.numLayers ? tape.layers[l + 1].xIn.data : tape.xOut.data
            next.update(from: xm, count: n * C)
            gemm(.none, .transpose, m: n, n: C, k: I, a: S.act.data, lda: I, b: p(L.down), ldb: I, beta: 1, c: next, ldc: C)
            x = next
        }
        rmsNormForward(tape.hF.data, tape.rstdF.data, tape.xOut.data, p(layout.finalNorm), rows: n, cols: C, eps: c.rmsNormEps)
        // Head: log-probs of the targets and each row's log-partition (kept for backward).
        if tape.lse.count < n { tape.lse = [Float](repeating: 0, count: n); tape.logprobs = tape.lse }
        let rows = (0..<n).filter { tape.targets[$0] >= 0 }
        for r in 0..<n { tape.lse[r] = 0; tape.logprobs[r] = 0 }
        let V = c.vocabSize
        tape.lse.withUnsafeMutableBufferPointer { lseB in
            tape.logprobs.withUnsafeMutableBufferPointer { lpB in
                tape.targets.withUnsafeBufferPointer { tg in
                    let lseP = lseB.baseAddress!, lpP = lpB.baseAddress!, tgP = tg.baseAddress!
                    headChunks(hidden: tape.hF.data, rows: rows, scratch: tape.headScratch) { s0, m, logits, _ in
                        parallelFor(m, costPerItem: V * 3) { a, b in
                            for i in a..<b {
                                let r = rows[s0 + i]
                                let st = rowStats(logits + i * V, count: V)
                                lseP[r] = st.logSumExp
                                lpP[r] = logits[i * V + Int(tgP[r])] - st.logSumExp
                            }
                        }
                    }
                }
            }
        }
        return Array(tape.logprobs.prefix(n))
    }

    /// Backward pass of the token-weighted loss  L = −Σ_r w_r · log p(target_r | prefix_r)
    /// for the batch of the last `trainingForward`, accumulating dL/dθ into `grads` (same
    /// layout as `parameters`). Cross-entropy is w_r = 1/#targets; a policy-gradient step uses
    /// w_r = advantage_r / #tokens. Rows without a target must have weight 0.
    /// Returns L (in Double).
    @discardableResult
    public func trainingBackward(weights: [Float], tape: TrainingTape, grads: Tensor) -> Double {
        let c = config, n = tape.n
        precondition(weights.count == n, "one weight per packed row")
        precondition(grads.count == parameters.count)
        let C = c.hiddenSize, Q = c.qkvDim, A = c.attnDim, I = c.intermediateSize, D = c.headDim, H = c.numHeads, V = c.vocabSize
        let g = grads.data
        var loss = 0.0
        let rows = (0..<n).filter { weights[$0] != 0 }
        for r in rows {
            precondition(tape.targets[r] >= 0, "row \(r) has a weight but no target")
            loss -= Double(weights[r]) * Double(tape.logprobs[r])
        }
        // LM head + loss: dlogits = w·(softmax − onehot); dhF = dlogits·W; dW += dlogitsᵀ·hF.
        let dh = tape.dh.data
        dh.update(repeating: 0, count: n * C)
        let W = p(layout.lmHead), dW = g + layout.lmHead
        headChunks(hidden: tape.hF.data, rows: rows, scratch: tape.headScratch) { s0, m, logits, hidden in
            parallelFor(m, costPerItem: V * 3) { a, b in
                for i in a..<b {
                    let r = rows[s0 + i], w = weights[r], lse = tape.lse[r]
                    let row = logits + i * V
                    var j = 0
                    while j + 8 <= V { storeVec(vexp(loadVec(row + j) - lse) * w, row + j); j += 8 }
                    while j < V { row[j] = sexp(row[j] - lse) * w; j += 1 }
                    row[Int(tape.targets[r])] -= w
                }
            }
            // The head's weight gradient from the gathered hF rows, then dhF (into the same
            // scratch, no longer needed) scattered back to its rows.
            gemm(.transpose, .none, m: V, n: C, k: m, a: logits, lda: V, b: hidden, ldb: C, beta: 1, c: dW, ldc: C)
            gemm(.none, .none, m: m, n: C, k: V, a: logits, lda: V, b: W, ldb: C, c: hidden, ldc: C)
            for i in 0..<m { (dh + rows[s0 + i] * C).update(from: hidden + i * C, count: C) }
        }
        let dx = tape.dx.data
        dx.update(repeating: 0, count: n * C)
        rmsNormBackward(dx, g + layout.finalNorm, dh, tape.xOut.data, p(layout.finalNorm), tape.rstdF.data,
                        rows: n, cols: C, partials: tape.partials.data)
        for l in stride(from: c.numLayers - 1, through: 0, by: -1) {
            let L = layout.layers[l], S = tape.layers[l]
            // MLP branch: x_out = xMid + down(silu(gate(h2))·up(h2)).
            let dact = tape.dact.data, dgu = tape.dgu.data
            gemm(.none, .none, m: n, n: I, k: C, a: dx, lda: C, b: p(L.down), ldb: I, c: dact, ldc: I)
            gemm(.transpose, .none, m: C, n: I, k: n, a: dx, lda: C, b: S.act.data, ldb: I, beta: 1, c: g + L.down, ldc: I)
            swigluBackward(dgu, dact, S.gu.data, rows: n, hidden: I)
            gemm(.transpose, .none, m: 2 * I, n: C, k: n, a: dgu, lda: 2 * I, b: S.h2.data, ldb: C, beta: 1, c: g + L.gateUp, ldc: C)
            gemm(.none, .none, m: n, n: C, k: 2 * I, a: dgu, lda: 2 * I, b: p(L.gateUp), ldb: C, c: dh, ldc: C)
            rmsNormBackward(dx, g + L.postNorm, dh, S.xMid.data, p(L.postNorm), S.rstd2.data, rows: n, cols: C,
                            partials: tape.partials.data)
            // Attention branch: xMid = xIn + o(att).
            if let b = L.oBias { addColumnSums(g + b, dx, rows: n, cols: C) }
            gemm(.transpose, .none, m: C, n: A, k: n, a: dx, lda: C, b: S.att.data, ldb: A, beta: 1, c: g + L.o, ldc: A)
            let datt = tape.datt.data
            gemm(.none, .none, m: n, n: A, k: C, a: dx, lda: C, b: p(L.o), ldb: A, c: datt, ldc: A)
            let dqkv = tape.dqkv.data
            trainingAttentionBackward(dqkv: dqkv, datt: datt, qkv: S.qkv.data, probs: S.probs.data, tape: tape)
            tape.positions.withUnsafeBufferPointer { pos in
                ropeBackward(dqkv, rows: n, ld: Q, heads: H + c.numKVHeads, headDim: D, positions: pos.baseAddress!, table: rope)
            }
            var dRaw = dqkv
            if let qn = L.qNorm, let kn = L.kNorm {
                dRaw = tape.dqkvRaw.data
                headRMSNormBackward(dRaw, dqWeight: g + qn, dkWeight: g + kn, dout: dqkv, inp: S.qkvRaw.data,
                                    rstd: S.qkRstd.data, qWeight: p(qn), kWeight: p(kn), rows: n, ld: Q,
                                    qHeads: H, kvHeads: c.numKVHeads, headDim: D, partials: tape.partials.data)
            }
            if let b = L.qkvBias { addColumnSums(g + b, dRaw, rows: n, cols: Q) }
            gemm(.transpose, .none, m: Q, n: C, k: n, a: dRaw, lda: Q, b: S.h1.data, ldb: C, beta: 1, c: g + L.qkv, ldc: C)
            gemm(.none, .none, m: n, n: C, k: Q, a: dRaw, lda: Q, b: p(L.qkv), ldb: C, c: dh, ldc: C)
            rmsNormBackward(dx, g + L.inputNorm, dh, S.xIn.data, p(L.inputNorm), S.rstd1.data, rows: n, cols: C,
                            partials: tape.partials.data)
        }
        // Embedding: dE[token] += dx[row] (serial: rows may share a token).
        let dE = g + layout.embed
        for r in 0..<n { addInPlace(dE + Int(tape.tokens[r]) * C, dx + r * C, count: C) }
        return loss
    }

    /// Causal attention over whole sequences, saving the probabilities P (T×T per head,
    /// zero above the diagonal) for the backward pass. out is (N, Hq·D).
    func trainingAttentionForward(qkv: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                  probs: UnsafeMutablePointer<Float>, tape: TrainingTape) {
        let c = config, D = c.headDim, Q = c.qkvDim, A = c.attnDim, H = c.numHeads, kvDim = c.numKVHeads * D
        let scale = 1 / Float(D).squareRoot()
        let segs = tape.segments
        let items = segs.count * H
        parallelFor(items, costPerItem: 1 << 16) { lo, hi in
            for item in lo..<hi {
                let sg = segs[item / H], head = item % H, kvh = head / c.kvMul, T = sg.count
                let P = probs + sg.probOffset + head * T * T
                let q = qkv + sg.row * Q + head * D
                let k = qkv + sg.row * Q + A + kvh * D
                let v = qkv + sg.row * Q + A + kvDim + kvh * D
                gemm(.none, .transpose, m: T, n: T, k: D, alpha: scale, a: q, lda: Q, b: k, ldb: Q, c: P, ldc: T, parallel: false)
                for i in 0..<T {
                    softmaxRowInPlace(P + i * T, count: i + 1)
                    if i + 1 < T { (P + i * T + i + 1).update(repeating: 0, count: T - i - 1) }
                }
                gemm(.none, .none, m: T, n: D, k: T, a: P, lda: T, b: v, ldb: Q, c: out + sg.row * A + head * D, ldc: A, parallel: false)
            }
        }
    }

    /// Attention backward. For each head: dV += Pᵀ·dO, dP = dO·Vᵀ,
    /// dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √D, dQ = dS·K, dK += dSᵀ·Q. Work items are
    /// (sequence, KV head) so the query heads sharing a K/V accumulate in one worker.
    /// dqkv (N, Q) is assigned.
    func trainingAttentionBackward(dqkv: UnsafeMutablePointer<Float>, datt: UnsafePointer<Float>,
                                   qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>, tape: TrainingTape) {
        let c = config, D = c.headDim, Q = c.qkvDim, A = c.attnDim, kvDim = c.numKVHeads * D
        let scale = 1 / Float(D).squareRoot()
        let segs = tape.segments, HK = c.numKVHeads
        let maxT = segs.map(\.count).max() ?? 0
        let dPAll = tape.dP.data
        let items = segs.count * HK
        let workers = max(1, min(Parallel.threads, items))
        // K and V gradient slots are accumulated into: clear them first.
        for r in 0..<tape.n { (dqkv + r * Q + A).update(repeating: 0, count: 2 * kvDim) }
        parallelChunks(items, workers: workers, costPerItem: 1 << 16) { w, lo, hi in
            let dP = dPAll + w * maxT * maxT
            for item in lo..<hi {
                let sg = segs[item / HK], kvh = item % HK, T = sg.count
                let k = qkv + sg.row * Q + A + kvh * D, v = k + kvDim
                let dk = dqkv + sg.row * Q + A + kvh * D, dv = dk + kvDim
                for head in (kvh * c.kvMul)..<((kvh + 1) * c.kvMul) {
                    let P = probs + sg.probOffset + head * T * T
                    let dO = datt + sg.row * A + head * D
                    let q = qkv + sg.row * Q + head * D, dq = dqkv + sg.row * Q + head * D
                    gemm(.transpose, .none, m: T, n: D, k: T, a: P, lda: T, b: dO, ldb: A, beta: 1, c: dv, ldc: Q, parallel: false)
                    gemm(.none, .transpose, m: T, n: T, k: D, a: dO, lda: A, b: v, ldb: Q, c: dP, ldc: T, parallel: false)
                    for i in 0..<T {
                        let pr = P + i * T, dr = dP + i * T
                        var dot: Float = 0
                        for j in 0...i { dot += pr[j] * dr[j] }
                        for j in 0...i { dr[j] = pr[j] * (dr[j] - dot) * scale }
                        if i + 1 < T { (dr + i + 1).update(repeating: 0, count: T - i - 1) }
                    }
                    gemm(.none, .none, m: T, n: D, k: T, a: dP, lda: T, b: k, ldb: Q, c: dq, ldc: Q, parallel: false)
                    gemm(.transpose, .none, m: T, n: D, k: T, a: dP, lda: T, b: q, ldb: Q, beta: 1, c: dk, ldc: Q, parallel: false)
                }
            }
        }
    }

    /// Backward of the q/k norms: writes the gradient w.r.t. the raw projection into dinp
    /// (q and k columns from the norm backward, v columns copied through) and accumulates
    /// the two weight gradients.
    func headRMSNormBackward(_ dinp: UnsafeMutablePointer<Float>, dqWeight: UnsafeMutablePointer<Float>,
                             dkWeight: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, inp: UnsafePointer<Float>,
                             rstd: UnsafePointer<Float>, qWeight: UnsafePointer<Float>, kWeight: UnsafePointer<Float>,
                             rows n: Int, ld: Int, qHeads: Int, kvHeads: Int, headDim d: Int,
                             partials: UnsafeMutablePointer<Float>) {
        let heads = qHeads + kvHeads
        let workers = max(1, min(Parallel.threads, n))
        partials.update(repeating: 0, count: workers * 2 * d)
        parallelChunks(n, workers: workers, costPerItem: heads * d * 6) { w, a, b in
            let dwq = partials + w * 2 * d, dwk = dwq + d
            for r in a..<b {
                for h in 0..<heads {
                    let off = r * ld + h * d
                    let x = inp + off, dy = dout + off, dx = dinp + off
                    let wt = h < qHeads ? qWeight : kWeight, dw = h < qHeads ? dwq : dwk
                    let s = rstd[r * heads + h]
                    var dot: Float = 0
                    for j in 0..<d { dot += dy[j] * wt[j] * x[j] }
                    let k = s * s * s * dot / Float(d)
                    for j in 0..<d {
                        dx[j] = s * dy[j] * wt[j] - k * x[j]
                        dw[j] += dy[j] * x[j] * s
                    }
                }
                let v0 = r * ld + heads * d
                (dinp + v0).update(from: dout + v0, count: ld - heads * d)
            }
        }
        for w in 0..<workers {
            addInPlace(dqWeight, partials + w * 2 * d, count: d)
            addInPlace(dkWeight, partials + w * 2 * d + d, count: d)
        }
    }
}
