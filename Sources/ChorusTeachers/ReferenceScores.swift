import ChorusTensor
import Foundation

/// The reference scores of one response.
///
/// Per token (`chunks` nil), or per chunk when a cross-tokenizer teacher scored the response
/// (`chunks` the student token ranges, see docs/cross-tokenizer.md). A chunk's log-prob sits on
/// its last token and the chunk's other tokens hold 0, so the sum of `logprobs` (or of a
/// teacher's `teacherLogprobs`) over any run of whole chunks is that run's log-prob.
public struct ReferenceScores {
    /// log π_ref(y_t) per response token; with `chunks`, log π_ref(chunk) on each chunk's last
    /// token and 0 on its other tokens.
    public var logprobs: [Float]
    /// Entropy (nats) of the whole aggregated distribution π_ref at each token; NaN for a
    /// chunked response (the chunk distributions' entropies are not computed).
    public var entropy: [Float]
    /// The group's teacher weights (the aggregator's mixture for the group).
    public var weights: [Double]
    /// Per response token the weights actually used, when the aggregator changed them at some
    /// position (`Aggregator.positionMixture`); nil when `weights` hold at every token.
    public var positionWeights: [[Double]]?
    /// log π_k(y_t) per teacher; nil for a teacher that was not scored (weight 0 and
    /// `scoreInactive` off).
    public var teacherLogprobs: [[Float]?]
    /// (T, V) log π_ref rows when requested.
    public var distribution: Tensor?
    /// True when some active teacher's scores came from top-k records (cache) rather than
    /// full distributions; see `TopKApproximation`.
    public var approximate: Bool
    /// The student token ranges of the chunks (contiguous, covering the response) when the
    /// response was scored per chunk; nil when it was scored per token (every teacher shares
    /// the student's vocabulary).
    public var chunks: [Range<Int>]? = nil
    /// argmax_v π_ref(v | s_t) at each response position (the reference's top-1 token at the
    /// student's prefix: the "virtual rollout"), when asked for (`keepTopTokens`) and the
    /// response was scored per token; nil otherwise.
    public var topTokens: [Int]? = nil
    /// log π_ref of `topTokens` (T), beside them.
    public var topLogprobs: [Float]? = nil
}
