import ChorusCore
import ChorusModel
import ChorusTensor
import Foundation

/// The result of one teacher forward over a prompt group: the final hidden states of every
/// response position (row i predicts target i), packed response after response, and — when
/// the runner's head budget allowed — every row's log-softmax, computed for all the groups of
/// the call in a few large LM-head products (`HiddenStateRunner.headBudgetFloats`). Otherwise
/// the LM head runs on demand, a chunk of rows at a time, once per row. The forwards of one
/// `HiddenStateRunner` share its head scratch and its precomputed rows, which the runner's next
/// forward replaces (a stale forward then runs the head itself), so their `scores` calls must
/// not run concurrently (the runner itself is not reentrant either).
public final class TeacherForward {
    /// The model whose LM head turns hidden rows into distributions.
    public let model: TransformerModel
    /// First packed row of each response; `offsets[r] ..< offsets[r] + lengths[r]`.
    public let offsets: [Int]
    /// Tokens per response.
    public let lengths: [Int]
    /// The response tokens, packed (the targets of the rows).
    public let targets: [Int]
    /// (N_all, C) final-normed hidden states of the runner call; this group's rows start at `firstRow`.
    let hidden: Tensor
    let firstRow: Int
    let scratch: Tensor
    /// The runner whose `headRows` hold this group's log-softmax rows from `firstRow` on, and
    /// the runner generation they belong to; nil when the head was not precomputed.
    public let precomputed: (runner: HiddenStateRunner, generation: Int)?

    /// `scratch` must hold `model.makeHeadScratch()`'s capacity; it is shared, not owned.
    init(model: TransformerModel, hidden: Tensor, firstRow: Int, lengths: [Int], targets: [Int], scratch: Tensor,
         precomputed: (runner: HiddenStateRunner, generation: Int)?) {
        self.model = model
        self.hidden = hidden
        self.firstRow = firstRow
        self.lengths = lengths
        self.targets = targets
        var o: [Int] = [], s = 0
        for n in lengths { o.append(s); s += n }
        offsets = o
        self.scratch = scratch
        self.precomputed = precomputed
    }

    /// Vocabulary size V.
    public var vocabularySize: Int { model.config.vocabSize }
    /// Total response positions N.
    public var count: Int { targets.count }

    /// Scores of packed positions `rows` (log-prob of the target, entropy, top-k) and, when
    /// `logProbabilities` is given, their log-softmax rows written there, (rows.count, V).
    public func scores(rows: Range<Int>, topK: Int, logProbabilities: UnsafeMutablePointer<Float>? = nil) -> [PositionScore] {
        if let p = precomputed, p.runner.generation == p.generation {
            // The same values the head pass below gives (x − logsumexp, the logits' entropy),
            // read from the rows the runner computed for the whole call.
            let V = vocabularySize
            let base = UnsafePointer(p.runner.headRows.data + (firstRow + rows.lowerBound) * V)
            let entropy = p.runner.headEntropy.data + firstRow + rows.lowerBound
            var out: [PositionScore] = []
            out.reserveCapacity(rows.count)
            for (i, r) in rows.enumerated() {
                let row = base + i * V
                var ps = PositionScore(logprob: row[targets[r]], entropy: entropy[i])
                if topK > 0 { (ps.topIds, ps.topLogprobs) = topKRow(row, count: V, k: topK) }
                out.append(ps)
            }
            logProbabilities?.update(from: base, count: rows.count * V)
            return out
        }
        return model.score(hidden: hidden.data, rows: rows.map { firstRow + $0 }, targets: Array(targets[rows]), topK: topK,
                           scratch: scratch, logProbabilities: logProbabilities)
    }
}
