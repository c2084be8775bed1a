import ChorusCore
import ChorusModel
import Foundation

/// Rows rebuilt from top-k scores: cache records (or, in the same way, what a remote teacher
/// reports). `scores[r]` holds one `PositionScore` per token of response r, `targets[r]` the
/// tokens; the scores are handed out as they are.
public final class TopKRows: TeacherRows {
    public let scores: [[PositionScore]]
    public let targets: [[Int]]
    public let vocabularySize: Int
    public init(scores: [[PositionScore]], targets: [[Int]], vocabularySize: Int) {
        precondition(scores.count == targets.count && zip(scores, targets).allSatisfy { $0.count == $1.count })
        self.scores = scores
        self.targets = targets
        self.vocabularySize = vocabularySize
    }
    public var isApproximate: Bool { true }
    public func rows(response r: Int, positions: Range<Int>, into out: UnsafeMutablePointer<Float>?) throws -> [PositionScore] {
        let V = vocabularySize
        if let out {
            for (i, t) in positions.enumerated() {
                TopKApproximation.fillRow(scores[r][t], target: targets[r][t], count: V, into: out + i * V)
            }
        }
        return Array(scores[r][positions])
    }
}

/// Rebuilding a full distribution from top-k scores (cache records, remote teachers).
///
/// The known entries (the top-k and the sampled token) keep their exact log-probs; the rest
/// of the mass, 1 − Σ known, is spread uniformly over the V − #known other tokens (a uniform
/// tail). The sampled token's log-prob under each teacher is therefore exact, and so are
/// log π_ref(y_t) for the arithmetic mean and every one-hot strategy; the geometric
/// normalizer and the mixture entropies are approximations (the tail's shape is unknown).
/// With k >= 1 the tail lies below the k-th entry (up to the storage precision), so a rebuilt
/// row's maximum is the top-1 log-prob.
public enum TopKApproximation {
    public static func fillRow(_ s: PositionScore, target: Int, count V: Int, into out: UnsafeMutablePointer<Float>) {
        var known: [Int: Float] = [:]
        for (id, lp) in zip(s.topIds, s.topLogprobs) { known[Int(id)] = lp }
        known[target] = s.logprob
        var mass: Double = 0
        for lp in known.values { mass += Foundation.exp(Double(lp)) }
        let rest = V - known.count
        let tail = rest > 0 ? Float(Foundation.log(max(1 - mass, 1e-12) / Double(rest))) : -.infinity
        out.update(repeating: tail, count: V)
        for (id, lp) in known { out[id] = lp }
    }

    /// The entropy (nats) of the row `fillRow` rebuilds: −Σ_known p·log p − β·log(β / n_tail),
    /// β = 1 − Σ_known p spread over the n_tail = V − #known other tokens. This is the largest
    /// entropy any distribution with these known entries can have; with k = V it is exact.
    public static func entropy(_ s: PositionScore, target: Int, count V: Int) -> Float {
        var known: [Int: Double] = [:]
        for (id, lp) in zip(s.topIds, s.topLogprobs) { known[Int(id)] = Double(lp) }
        known[target] = Double(s.logprob)
        var mass = 0.0, h = 0.0
        for lp in known.values {
            let p = Foundation.exp(lp)
            mass += p
            if p > 0 { h -= p * lp }
        }
        let rest = V - known.count, beta = max(1 - mass, 0)
        if rest > 0, beta > 1e-12 { h -= beta * Foundation.log(beta / Double(rest)) }
        return Float(h)
    }
}
