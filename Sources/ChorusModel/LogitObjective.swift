import ChorusTensor
import Foundation

/// One training sequence: a prompt followed by a response. Training objectives see the
/// response tokens only, indexed 0 ..< responseLength, so no caller maps tokens to packed rows.
public struct TrainingSequence: Equatable, Sendable {
    /// Prompt ids followed by response ids.
    public var tokens: [Int]
    /// Number of prompt ids at the front (at least 1: the first response token needs a prefix).
    public var promptLength: Int
    /// Response tokens, `tokens.count − promptLength`.
    public var responseLength: Int { tokens.count - promptLength }
    /// The response ids.
    public var response: ArraySlice<Int> { tokens[promptLength...] }

    /// A sequence whose first `promptLength` ids are the prompt.
    public init(tokens: [Int], promptLength: Int) {
        self.tokens = tokens
        self.promptLength = promptLength
    }

    /// A prompt and a response.
    public init(prompt: [Int], response: [Int]) {
        self.init(tokens: prompt + response, promptLength: prompt.count)
    }
}

/// The learner's view of each response token: log π_θ(y_t | s_t) and the entropy (nats) of
/// π_θ(· | s_t), in float32 — the values the rollout correction compares with the sampler's.
public struct ResponseScores: Sendable {
    /// Per sequence, per response token.
    public var logprobs: [[Float]]
    /// Per sequence, per response token.
    public var entropy: [[Float]]

    /// Scores of a batch (empty to accumulate micro-batches into).
    public init(logprobs: [[Float]] = [], entropy: [[Float]] = []) {
        self.logprobs = logprobs
        self.entropy = entropy
    }
}

/// One row of LM-head logits handed to a `LogitObjective`: the row that predicts response
/// token `position` of sequence `sequence`.
public struct LogitRow {
    /// Index of the sequence in the batch.
    public let sequence: Int
    /// Index of the predicted token in the sequence's response.
    public let position: Int
    /// The response token y_t.
    public let target: Int
    /// In: the logits z (V). Out: dL/dz, written by the objective.
    public let values: UnsafeMutablePointer<Float>
    /// V.
    public let vocabSize: Int
    /// log Σ_j exp(z_j), so log p_j = z_j − logSumExp.
    public let logSumExp: Float

    /// A row handed to an objective (the backward pass makes these; tests may too).
    public init(sequence: Int, position: Int, target: Int, values: UnsafeMutablePointer<Float>, vocabSize: Int, logSumExp: Float) {
        self.sequence = sequence; self.position = position; self.target = target
        self.values = values; self.vocabSize = vocabSize; self.logSumExp = logSumExp
    }
}

/// A training loss, entering the backward pass as the gradient of each logits row.
///
/// The backward pass runs the LM head on the active rows, hands each to `gradient`, and
/// propagates what it writes; a new objective (sampled-token policy gradient, entropy bonus,
/// an exact full-vocabulary divergence) never needs a new kernel. `gradient` is called
/// concurrently for different rows: implementations must only read shared state.
public protocol LogitObjective {
    /// Whether response token `position` of `sequence` has a gradient at all (inactive rows
    /// skip the LM head).
    func isActive(sequence: Int, position: Int) -> Bool
    /// Overwrites `row.values` with dL/dz for this row and returns the row's term of L.
    func gradient(_ row: LogitRow) -> Double
}

/// The token-weighted log-likelihood loss with an optional entropy bonus:
///
///     L = −Σ_t w_t · log p(y_t | s_t) − Σ_t e_t · H(p(· | s_t))
///
/// dL/dz_j = w·(p_j − [j = y]) + e·p_j·(log p_j + H). Cross-entropy is w_t = 1/N; a
/// policy-gradient step uses w_t = (masked, clipped) advantage / #tokens; e_t = β/#tokens is
/// the entropy bonus. Weights are aligned with each response.
public struct TokenObjective: LogitObjective {
    /// w[sequence][position].
    public var weights: [[Float]]
    /// e[sequence][position], or nil for no entropy term.
    public var entropyWeights: [[Float]]?

    /// A loss with per-response-token weights (and optional entropy-bonus weights).
    public init(weights: [[Float]], entropyWeights: [[Float]]? = nil) {
        self.weights = weights
        self.entropyWeights = entropyWeights
    }

    public func isActive(sequence s: Int, position t: Int) -> Bool {
        weights[s][t] != 0 || (entropyWeights.map { $0[s][t] != 0 } ?? false)
    }

    public func gradient(_ row: LogitRow) -> Double {
        let w = weights[row.sequence][row.position]
        let e = entropyWeights?[row.sequence][row.position] ?? 0
        let z = row.values, V = row.vocabSize, lse = row.logSumExp
        let logp = z[row.target] - lse
        var loss = -Double(w) * Double(logp)
        if e == 0 {
            // w·(softmax − onehot)
            var j = 0
            while j + 8 <= V { storeVec(vexp(loadVec(z + j) - lse) * w, z + j); j += 8 }
            while j < V { z[j] = sexp(z[j] - lse) * w; j += 1 }
        } else {
            // H = −Σ p log p, then w·p + e·p·(log p + H).
            var hv = FloatVec()
            var j = 0
            while j + 8 <= V { let lp = loadVec(z + j) - lse; hv -= vexp(lp) * lp; j += 8 }
            var H = hv.sum()
            while j < V { let lp = z[j] - lse; H -= sexp(lp) * lp; j += 1 }
            loss -= Double(e) * Double(H)
            j = 0
            while j + 8 <= V {
                let lp = loadVec(z + j) - lse, p = vexp(lp)
                storeVec(p * w + p * (lp + H) * e, z + j)
                j += 8
            }
            while j < V { let lp = z[j] - lse, p = sexp(lp); z[j] = p * w + p * (lp + H) * e; j += 1 }
        }
        z[row.target] -= w
        return loss
    }
}
