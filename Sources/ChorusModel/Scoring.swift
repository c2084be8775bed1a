import ChorusTensor
import Foundation

extension TransformerModel {
    /// Rows of logits computed at once by the LM head (bounds memory for large vocabularies).
    public static let headChunk = 256

    /// Runs the LM head on selected rows of the final hidden states and hands each chunk to
    /// `body(firstSelected, count, logits, rowsHidden)`: logits (count, V) and the gathered
    /// hidden rows (count, C) they came from, both row-major scratch the body may overwrite.
    ///
    /// hidden is (N, C); `rows` lists which of the N rows to project, in output order.
    public func headChunks(hidden: UnsafePointer<Float>, rows: [Int], scratch: Tensor,
                           _ body: (Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let C = config.hiddenSize, V = config.vocabSize
        let chunk = TransformerModel.headChunk
        let need = chunk * (C + V)
        if scratch.capacity < need { preconditionFailure("head scratch too small") }
        let gathered = scratch.data, logits = scratch.data + chunk * C
        var s = 0
        while s < rows.count {
            let m = min(chunk, rows.count - s)
            for i in 0..<m { (gathered + i * C).update(from: hidden + rows[s + i] * C, count: C) }
            gemm(.none, .transpose, m: m, n: V, k: C, a: gathered, lda: C, b: parameter(layout.lmHead), ldb: C, c: logits, ldc: V,
                 bHalf: halfWeights?.lmHead)
            body(s, m, logits, gathered)
            s += m
        }
    }

    /// A scratch tensor large enough for `headChunks`.
    public func makeHeadScratch() -> Tensor {
        Tensor(shape: [TransformerModel.headChunk * (config.hiddenSize + config.vocabSize)])
    }

    /// Scores next-token predictions: for each (row, target) pair, the log-prob of the target,
    /// the entropy and the top-k of the distribution predicted at that row.
    ///
    /// With `logProbabilities` the same LM-head pass also writes each row's log-softmax vector
    /// there, (rows.count, V) row-major — the values `logProbabilities(hidden:rows:scratch:)`
    /// gives — so a caller that needs both runs the head once.
    public func score(hidden: UnsafePointer<Float>, rows: [Int], targets: [Int], topK: Int,
                      scratch: Tensor, logProbabilities: UnsafeMutablePointer<Float>? = nil) -> [PositionScore] {
        precondition(rows.count == targets.count)
        let V = config.vocabSize
        var out = [PositionScore](repeating: PositionScore(logprob: 0, entropy: 0), count: rows.count)
        out.withUnsafeMutableBufferPointer { ob in
            let o = ob.baseAddress!
            headChunks(hidden: hidden, rows: rows, scratch: scratch) { s, m, logits, _ in
                parallelFor(m, costPerItem: V * 4) { a, b in
                    for i in a..<b {
                        let row = logits + i * V
                        let st = rowStats(row, count: V)
                        var ps = PositionScore(logprob: row[targets[s + i]] - st.logSumExp, entropy: st.entropy)
                        if topK > 0 {
                            let (ids, vals) = topKRow(row, count: V, k: topK)
                            ps.topIds = ids
                            ps.topLogprobs = vals.map { $0 - st.logSumExp }
                        }
                        (o + s + i).pointee = ps
                        if let lp = logProbabilities {
                            // log-softmax: x − logsumexp, as logSoftmaxInPlace computes it.
                            let dst = lp + (s + i) * V
                            var j = 0
                            while j + 8 <= V { storeVec(loadVec(row + j) - st.logSumExp, dst + j); j += 8 }
                            while j < V { dst[j] = row[j] - st.logSumExp; j += 1 }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Full log-softmax vectors for the selected rows, (rows.count, V) row-major.
    public func logProbabilities(hidden: UnsafePointer<Float>, rows: [Int], scratch: Tensor) -> Tensor {
        let V = config.vocabSize
        let out = Tensor(shape: [rows.count, V])
        headChunks(hidden: hidden, rows: rows, scratch: scratch) { s, m, logits, _ in
            (out.data + s * V).update(from: logits, count: m * V)
            logSoftmaxInPlace(out.data + s * V, rows: m, cols: V)
        }
        return out
    }

    /// Scores one whole sequence: entry i (i >= 1) describes log p(tokens[i] | tokens[<i]).
    /// Entry 0 has no prediction and is returned as nil.
    public func scoreSequence(_ tokens: [Int], topK: Int = 0, from first: Int = 1,
                              workspace: ForwardWorkspace = ForwardWorkspace()) throws -> [PositionScore?] {
        if tokens.isEmpty { throw ModelError.emptyInput("no tokens") }
        let hidden = try forwardHidden([PackedSequence(tokens: tokens)], workspace: workspace)
        let first = max(1, first)
        if first >= tokens.count { return [PositionScore?](repeating: nil, count: tokens.count) }
        let rows = Array((first - 1)..<(tokens.count - 1))
        let targets = Array(tokens[first...])
        let s = score(hidden: hidden, rows: rows, targets: targets, topK: topK, scratch: makeHeadScratch())
        return [PositionScore?](repeating: nil, count: first) + s.map { Optional($0) }
    }
}

/// The k largest values of a row and their indices, largest first; ties keep the lower index.
public func topKRow(_ x: UnsafePointer<Float>, count n: Int, k: Int) -> ([Int32], [Float]) {
    let k = min(k, n)
    if k <= 0 { return ([], []) }
    var ids = [Int32](repeating: 0, count: k)
    var vals = [Float](repeating: -.infinity, count: k)
    var filled = 0
    for j in 0..<n {
        let v = x[j]
        if filled == k && !(v > vals[k - 1]) { continue }
        // Insert keeping descending order; equal values stay after earlier (lower) indices.
        var pos = filled == k ? k - 1 : filled
        while pos > 0 && vals[pos - 1] < v {
            if pos < k { vals[pos] = vals[pos - 1]; ids[pos] = ids[pos - 1] }
            pos -= 1
        }
        vals[pos] = v
        ids[pos] = Int32(j)
        if filled < k { filled += 1 }
    }
    return (ids, vals)
}
