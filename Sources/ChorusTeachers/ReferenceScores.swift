import ChorusTensor
import Foundation

/// The reference scores of one response.
public struct ReferenceScores {
    /// log π_ref(y_t) per response token.
    public var logprobs: [Float]
    /// Entropy (nats) of the whole aggregated distribution π_ref at each token.
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
}
