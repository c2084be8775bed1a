/// What a model says about one position: the log-prob of the token that actually follows,
/// the entropy of its next-token distribution and its most likely tokens. Also the record
/// type of the score cache (ChorusCache), where imported scores may carry a NaN entropy
/// (unknown).
public struct PositionScore: Sendable, Equatable {
    /// log p(target | prefix).
    public var logprob: Float
    /// Entropy (nats) of p(· | prefix).
    public var entropy: Float
    /// The K most likely tokens, highest first (ties: lower id first).
    public var topIds: [Int32]
    /// Their log-probs, matching `topIds`.
    public var topLogprobs: [Float]

    /// A score; `topIds` and `topLogprobs` have equal lengths, highest first.
    public init(logprob: Float, entropy: Float, topIds: [Int32] = [], topLogprobs: [Float] = []) {
        self.logprob = logprob
        self.entropy = entropy
        self.topIds = topIds
        self.topLogprobs = topLogprobs
    }
}
