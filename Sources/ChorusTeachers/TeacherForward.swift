import ChorusCore
import ChorusModel
import ChorusTensor
import Foundation

/// The result of one teacher forward over a prompt group: the final hidden states of every
/// response position (row i predicts target i), packed response after response. The LM head
/// runs on demand, a chunk of rows at a time, once per row (`scores(rows:topK:logProbabilities:)`
/// gives the scores and the log-prob rows of one head pass). The forwards of one
/// `HiddenStateRunner` share its LM-head scratch, so their `scores` calls must not run
/// concurrently (the runner itself is not reentrant either).
public final class TeacherForward {
    /// The model whose LM head turns hidden rows into distributions.
    public let model: TransformerModel
    /// First packed row of each response; `offsets[r] ..< offsets[r] + lengths[r]`.
    public let offsets: [Int]
    /// Tokens per response.
    public let lengths: [Int]
    /// The response tokens, packed (the targets of the rows).
    public let targets: [Int]
    /// (N, C) final-normed hidden states.
    let hidden: Tensor
    let scratch: Tensor

    /// `scratch` must hold `model.makeHeadScratch()`'s capacity; it is shared, not owned.
    init(model: TransformerModel, hidden: Tensor, lengths: [Int], targets: [Int], scratch: Tensor) {
        self.model = model
        self.hidden = hidden
        self.lengths = lengths
        self.targets = targets
        var o: [Int] = [], s = 0
        for n in lengths { o.append(s); s += n }
        offsets = o
        self.scratch = scratch
    }

    /// Vocabulary size V.
    public var vocabularySize: Int { model.config.vocabSize }
    /// Total response positions N.
    public var count: Int { targets.count }

    /// Scores of packed positions `rows` (log-prob of the target, entropy, top-k) and, when
    /// `logProbabilities` is given, their log-softmax rows written there, (rows.count, V).
    public func scores(rows: Range<Int>, topK: Int, logProbabilities: UnsafeMutablePointer<Float>? = nil) -> [PositionScore] {
        model.score(hidden: hidden.data, rows: Array(rows), targets: Array(targets[rows]), topK: topK, scratch: scratch,
                    logProbabilities: logProbabilities)
    }
}
