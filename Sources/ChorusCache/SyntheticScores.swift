import ChorusCore
import Foundation

/// A seeded generator of realistic-looking teacher scores, used by the benchmark, the tests and
/// the crash-test writer. Real teacher scores cannot be shipped, and compression numbers measured
/// on uniform noise or on constant data would both be meaningless, so this models the features
/// that matter for the codec:
///
/// - a vocabulary (default 32,000) with a Zipf-like unigram prior, logit = -zipf * ln(rank + 2).
///   BPE vocabularies number tokens roughly in merge order, which roughly follows frequency, so
///   the frequency rank of an id is its id scaled by a log-normal jitter exp(idJitter * N(0,1))
///   and re-ranked; `idJitter = nil` makes the ranks a random permutation instead (no relation
///   between id and frequency: the pessimistic case for the codec);
/// - contextual noise, N(0, noise^2) on every logit, drifting from one position to the next as
///   an AR(1) process with coefficient `correlation` (logits are the unembedding of a residual
///   stream that changes gradually; 0 makes every position independent, the pessimistic case);
/// - a per-context "topic": a few hundred ids that get a boost for the whole context, because
///   documents repeat their content words;
/// - 0–3 per-position "plausible continuations" (random ids) with a large boost, which make
///   many positions confident, as real LMs are;
/// - a softmax temperature, and an actual token sampled from the teacher distribution itself
///   (on-policy samples come from a student close to the teacher).
///
/// With the defaults the mean entropy is about 2 nats and the actual token is the top-1 about
/// half the time, in the range real 1–8B models show on chat text (`stats` reports both).
public struct SyntheticTeacher: Sendable {
    /// Vocabulary size.
    public var vocab: Int
    /// Zipf exponent of the unigram prior.
    public var zipf: Double
    /// Standard deviation of the per-position logit noise.
    public var noise: Double
    /// Ids in the per-context topic, and their logit boost.
    public var topicSize: Int
    public var topicBoost: Double
    /// Largest logit boost of a per-position plausible continuation.
    public var peakBoost: Double
    /// Softmax temperature.
    public var temperature: Double
    /// Log-normal jitter between id order and frequency order; nil for a random permutation.
    public var idJitter: Double?
    /// Position-to-position correlation of the logit noise, in [0, 1).
    public var correlation: Double

    private var rng: ChorusRNG
    private let priorLogits: [Double]
    private let gaussians: [Double]

    /// A generator; the same seed and parameters give the same scores.
    public init(seed: UInt64, vocab: Int = 32_000, zipf: Double = 1.3, noise: Double = 3.0,
                topicSize: Int = 300, topicBoost: Double = 2.5, peakBoost: Double = 14, temperature: Double = 0.7,
                correlation: Double = 0.6, idJitter: Double? = 1.0) {
        self.vocab = vocab
        self.zipf = zipf
        self.noise = noise
        self.topicSize = topicSize
        self.topicBoost = topicBoost
        self.peakBoost = peakBoost
        self.temperature = temperature
        self.correlation = correlation
        self.idJitter = idJitter
        var rng = ChorusRNG(seed: seed)
        // Frequency rank of each id.
        var rank = Array(0..<vocab)
        if let jitter = idJitter {
            var keys = [Double]()
            for id in 0..<vocab { keys.append(Double(id + 1) * exp(jitter * rng.normalDouble())) }
            let byFrequency = (0..<vocab).sorted { keys[$0] < keys[$1] }
            for (r, id) in byFrequency.enumerated() { rank[id] = r }
        } else {
            for i in stride(from: vocab - 1, to: 0, by: -1) { rank.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        }
        priorLogits = rank.map { -zipf * log(Double($0) + 2) }
        // A table of standard normals indexed at random: exact Gaussians per logit per position
        // would dominate benchmark setup time and add nothing to realism.
        gaussians = (0..<(1 << 16)).map { _ in rng.normalDouble() }
        self.rng = rng
    }

    /// A context of `promptLength + responseLength` tokens whose response positions are scored
    /// with top-`k`: returns the tokens and the record (which starts at `promptLength`).
    public mutating func context(promptLength: Int, responseLength: Int, k: Int) -> (tokens: [Int32], record: ScoreRecord) {
        var tokens = [Int32]()
        for _ in 0..<promptLength { tokens.append(Int32(rng.next() % UInt64(vocab))) }
        var topic = [Int]()
        for _ in 0..<topicSize { topic.append(Int(rng.next() % UInt64(vocab))) }
        var positions = [PositionScore]()
        positions.reserveCapacity(responseLength)
        var logits = [Double](repeating: 0, count: vocab)
        var drift = [Double](repeating: 0, count: vocab)
        for t in 0..<responseLength {
            let (token, position) = scorePosition(topic: topic, k: k, first: t == 0, drift: &drift, logits: &logits)
            tokens.append(token)
            positions.append(position)
        }
        return (tokens, ScoreRecord(positions: positions))
    }

    private mutating func scorePosition(topic: [Int], k: Int, first: Bool, drift: inout [Double],
                                        logits: inout [Double]) -> (Int32, PositionScore) {
        let mask = UInt64(gaussians.count - 1)
        var state = rng.next() | 1
        // AR(1) keeps the marginal N(0, 1): drift' = rho * drift + sqrt(1 - rho^2) * eps.
        let rho = first ? 0 : correlation
        let fresh = (1 - rho * rho).squareRoot()
        for v in 0..<vocab {
            // A cheap xorshift walk over the Gaussian table; seeded per position from the RNG.
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            drift[v] = rho * drift[v] + fresh * gaussians[Int(state & mask)]
            logits[v] = priorLogits[v] + noise * drift[v]
        }
        for _ in 0..<(topicSize / 10) { logits[topic[Int(rng.next() % UInt64(topic.count))]] += topicBoost }
        let peaks = Int(rng.next() % 4)
        for p in 0..<peaks {
            logits[Int(rng.next() % UInt64(vocab))] += peakBoost * rng.uniformDouble() / Double(p + 1)
        }
        var maxLogit = -Double.infinity
        for v in 0..<vocab {
            logits[v] /= temperature
            maxLogit = max(maxLogit, logits[v])
        }
        var sum = 0.0
        for v in 0..<vocab { sum += exp(logits[v] - maxLogit) }
        let lse = maxLogit + log(sum)
        var entropy = 0.0
        var topIds = [Int32](), topLps = [Double]()
        topIds.reserveCapacity(k + 1); topLps.reserveCapacity(k + 1)
        let u = rng.uniformDouble()
        var cumulative = 0.0
        var actual = -1
        for v in 0..<vocab {
            let lp = logits[v] - lse
            let p = exp(lp)
            entropy -= p * lp
            cumulative += p
            if actual < 0 && cumulative >= u { actual = v }
            if k > 0 && (topLps.count < k || lp > topLps[topLps.count - 1]) {
                var j = topLps.count
                while j > 0 && topLps[j - 1] < lp { j -= 1 }
                topLps.insert(lp, at: j)
                topIds.insert(Int32(v), at: j)
                if topLps.count > k { topLps.removeLast(); topIds.removeLast() }
            }
        }
        if actual < 0 { actual = vocab - 1 }
        let position = PositionScore(logprob: Float(logits[actual] - lse), entropy: Float(entropy),
                                      topIds: topIds, topLogprobs: topLps.map { Float($0) })
        return (Int32(actual), position)
    }
}
