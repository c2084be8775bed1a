import ChorusTensor
import Foundation

/// The reference distribution of one position from full teacher distributions.
public enum MixtureKernel {
    /// Combines teacher log-prob rows into log π_ref and returns the entropy of π_ref (nats).
    ///
    /// rows[k] is teacher k's log-softmax row (V) or nil when the teacher has weight 0; out is
    /// (V). probability: out = log Σ_k w_k exp(rows[k]); logarithm: out = Σ_k w_k rows[k].
    /// Either way out is then normalized (log-softmax), so Σ exp(out) = 1 up to rounding.
    public static func combine(_ m: Mixture, rows: [UnsafePointer<Float>?], count V: Int,
                               into out: UnsafeMutablePointer<Float>) -> Float {
        let active = m.active
        precondition(!active.isEmpty, "a mixture needs a positive weight")
        if active.count == 1 {
            // One teacher (a hard switch, a one-hot curriculum stage): its log-softmax row as it
            // is. Normalising it again would move values by an ulp, so the reference would no
            // longer equal that teacher's own scores bit for bit.
            out.update(from: rows[active[0]]!, count: V)
            return rowStats(out, count: V).entropy
        } else if m.space == .logarithm {
            out.update(repeating: 0, count: V)
            for k in active {
                let r = rows[k]!, w = Float(m.weights[k])
                var j = 0
                while j + 8 <= V { storeVec(loadVec(out + j) + w * loadVec(r + j), out + j); j += 8 }
                while j < V { out[j] += w * r[j]; j += 1 }
            }
        } else {
            // q(v) = Σ_k w_k exp(lp_k(v)); log-probs are <= 0 so exp cannot overflow.
            out.update(repeating: 0, count: V)
            for k in active {
                let r = rows[k]!, w = Float(m.weights[k])
                var j = 0
                while j + 8 <= V { storeVec(loadVec(out + j) + w * vexp(loadVec(r + j)), out + j); j += 8 }
                while j < V { out[j] += w * sexp(r[j]); j += 1 }
            }
            for j in 0..<V {
                let q = out[j]
                if q > 1e-30 {
                    out[j] = Foundation.log(q)
                } else {
                    // Every teacher puts (almost) no mass here: log-sum-exp without underflow.
                    var mx = -Float.infinity
                    for k in active { mx = max(mx, rows[k]![j] + Foundation.log(Float(m.weights[k]))) }
                    if mx == -.infinity { out[j] = -.infinity; continue }
                    var s: Float = 0
                    for k in active { s += Foundation.exp(rows[k]![j] + Foundation.log(Float(m.weights[k])) - mx) }
                    out[j] = mx + Foundation.log(s)
                }
            }
        }
        let st = rowStats(out, count: V)
        var j = 0
        while j + 8 <= V { storeVec(loadVec(out + j) - st.logSumExp, out + j); j += 8 }
        while j < V { out[j] -= st.logSumExp; j += 1 }
        return st.entropy
    }
}
