import Foundation

// The per-token steps between scores and loss, as pure functions over ragged [sequence][token]
// arrays (one row per response, aligned with it), in the order the trainer applies them:
// divergence weights → discount → rollout correction → token filter → clipping → whitening →
// loss normalisation. Each is small enough to check by hand (TokenWeightTests).

/// Rollout/learner mismatch correction on ρ_t = π_learner(y_t) / π_rollout(y_t).
public enum CorrectionMode: String, Sendable, CaseIterable {
    /// w_t = 1.
    case none
    /// Truncated importance sampling: w_t = clamp(ρ_t, lo, hi).
    case truncate
    /// Masked importance sampling (IcePop): w_t = ρ_t inside [lo, hi], 0 (no gradient) outside.
    case mask
}

/// What the token filter scores each response token by.
public enum FilterScore: String, Sendable, CaseIterable {
    /// |log r_t| = |log π_θ(y_t) − log π_ref(y_t)|.
    case kl
    /// The student's entropy at the token.
    case studentEntropy = "student-entropy"
    /// The reference's entropy at the token.
    case teacherEntropy = "teacher-entropy"
}

/// How advantages are standardised.
public enum Whitening: String, Sendable, CaseIterable {
    case none, sample, group, batch
}

/// How per-token terms are averaged into the loss.
public enum LossAggregation: String, Sendable, CaseIterable {
    /// Σ_t term / (kept tokens in the batch).
    case tokenMean = "token-mean"
    /// mean over sequences of (Σ_t term / kept tokens of the sequence).
    case sequenceMean = "sequence-mean"
}

/// Per-token policy-gradient weights A_t = −f′(r_t), log r_t = student − reference.
public func divergenceWeights(student: [[Float]], reference: [[Float]], divergence: Divergence) -> [[Float]] {
    zip(student, reference).map { s, r in
        zip(s, r).map { Float(divergence.weight(logRatio: Double($0) - Double($1))) }
    }
}

/// Per-chunk log-ratios log r_c = Σ_{t∈c} student_t − Σ_{t∈c} reference_t for each response
/// (T_i tokens) cut into `chunks[i]` (contiguous student token ranges; nil: every token is a
/// chunk). Summed in Double; a one-token chunk gives exactly Double(s) − Double(r).
public func chunkLogRatios(student: [[Float]], reference: [[Float]], chunks: [[Range<Int>]?]) -> [[Double]] {
    (0..<student.count).map { i in
        let s = student[i], r = reference[i]
        guard let cs = chunks[i] else { return zip(s, r).map { Double($0) - Double($1) } }
        return cs.map { c in
            var a = 0.0, b = 0.0
            for t in c { a += Double(s[t]); b += Double(r[t]) }
            return a - b
        }
    }
}

/// Per-token log r_t where each token carries its chunk's log-ratio (the rule of
/// docs/cross-tokenizer.md: every student token of chunk c gets log r_c, so its weight
/// −f′(r_c) multiplies Σ_{t∈c} ∇log π_θ(y_t) = ∇log π_θ(c)). (T_i) per response.
public func tokenLogRatios(student: [[Float]], reference: [[Float]], chunks: [[Range<Int>]?]) -> [[Float]] {
    let perChunk = chunkLogRatios(student: student, reference: reference, chunks: chunks)
    return (0..<student.count).map { i in
        guard let cs = chunks[i] else { return perChunk[i].map { Float($0) } }
        var out = [Float](repeating: 0, count: student[i].count)
        for (c, l) in zip(cs, perChunk[i]) { for t in c { out[t] = Float(l) } }
        return out
    }
}

/// Per-token weights A_t = −f′(r_t) from log r_t.
public func divergenceWeights(logRatios: [[Float]], divergence: Divergence) -> [[Float]] {
    logRatios.map { $0.map { Float(divergence.weight(logRatio: Double($0))) } }
}

/// Discounted sums Â_t = Σ_{s≥t} γ^(s−t) A_s along each response (γ = 0: unchanged).
public func discounted(_ a: [[Float]], gamma: Double) -> [[Float]] {
    if gamma == 0 { return a }
    return a.map { row in
        var out = row, acc = 0.0
        for t in stride(from: row.count - 1, through: 0, by: -1) {
            acc = Double(row[t]) + gamma * acc
            out[t] = Float(acc)
        }
        return out
    }
}

/// Correction weights w_t from learner and rollout log-probs. Returns the weights and, per
/// token, whether it was masked (mask mode only).
public func correctionWeights(learner: [[Float]], rollout: [[Float]], mode: CorrectionMode, lo: Double, hi: Double)
    -> (weights: [[Float]], masked: [[Bool]]) {
    var w: [[Float]] = [], m: [[Bool]] = []
    for (l, r) in zip(learner, rollout) {
        var wr = [Float](repeating: 1, count: l.count), mr = [Bool](repeating: false, count: l.count)
        for t in l.indices {
            let rho = Foundation.exp(Double(l[t]) - Double(r[t]))
            switch mode {
            case .none: break
            case .truncate: wr[t] = Float(min(max(rho, lo), hi))
            case .mask:
                if rho >= lo && rho <= hi { wr[t] = Float(rho) } else { wr[t] = 0; mr[t] = true }
            }
        }
        w.append(wr); m.append(mr)
    }
    return (w, m)
}

/// Keeps tokens whose score's percentile within the batch lies in [pMin, pMax] (percentiles in
/// [0, 1]; rank / (n − 1), ties share the lower rank). Only tokens in `eligible` take part.
public func percentileFilter(scores: [[Float]], eligible: [[Bool]], pMin: Double, pMax: Double) -> [[Bool]] {
    var flat: [(Float, Int, Int)] = []
    for (i, row) in scores.enumerated() { for (t, s) in row.enumerated() where eligible[i][t] { flat.append((s, i, t)) } }
    var keep = scores.map { [Bool](repeating: false, count: $0.count) }
    if flat.isEmpty { return keep }
    flat.sort { $0.0 < $1.0 }
    let n = flat.count
    var rank = 0
    for k in 0..<n {
        if k > 0 && flat[k].0 != flat[k - 1].0 { rank = k }
        let pct = n == 1 ? 0.5 : Double(rank) / Double(n - 1)
        if pct >= pMin - 1e-12 && pct <= pMax + 1e-12 { keep[flat[k].1][flat[k].2] = true }
    }
    return keep
}

/// Clips each weight to [−c, c] (c ≤ 0: off). Returns the clipped weights and how many were clipped.
public func clipped(_ a: [[Float]], limit c: Double) -> ([[Float]], Int) {
    if c <= 0 { return (a, 0) }
    var n = 0
    let out = a.map { row in row.map { x -> Float in
        if abs(Double(x)) > c { n += 1; return Float(x < 0 ? -c : c) }
        return x
    } }
    return (out, n)
}

/// Standardises the weights of kept tokens: (A − mean)/(std + 1e-6) over each sample, each
/// group of `groupSize` consecutive samples, or the whole batch. Unkept tokens are unchanged.
public func whitened(_ a: [[Float]], kept: [[Bool]], mode: Whitening, groupSize: Int) -> [[Float]] {
    if mode == .none { return a }
    var out = a
    let sets: [[Int]]
    switch mode {
    case .none: return a
    case .sample: sets = a.indices.map { [$0] }
    case .group: sets = stride(from: 0, to: a.count, by: max(1, groupSize)).map { Array($0..<min(a.count, $0 + max(1, groupSize))) }
    case .batch: sets = [Array(a.indices)]
    }
    for set in sets {
        var n = 0.0, s = 0.0, ss = 0.0
        for i in set { for t in a[i].indices where kept[i][t] { n += 1; s += Double(a[i][t]); ss += Double(a[i][t]) * Double(a[i][t]) } }
        if n == 0 { continue }
        let mean = s / n, std = max(0, ss / n - mean * mean).squareRoot()
        for i in set { for t in a[i].indices where kept[i][t] { out[i][t] = Float((Double(a[i][t]) - mean) / (std + 1e-6)) } }
    }
    return out
}

/// The loss normaliser of each token: 1/(kept tokens in the batch) for token-mean, or
/// 1/(kept tokens of the sequence · sequences with any) for sequence-mean; 0 for unkept tokens.
public func lossNormalisers(kept: [[Bool]], aggregation: LossAggregation) -> [[Float]] {
    let total = kept.reduce(0) { $0 + $1.filter { $0 }.count }
    let sequences = kept.filter { $0.contains(true) }.count
    return kept.map { row in
        let n = row.filter { $0 }.count
        return row.map { k in
            guard k else { return 0 }
            switch aggregation {
            case .tokenMean: return 1 / Float(total)
            case .sequenceMean: return 1 / Float(n * sequences)
            }
        }
    }
}
