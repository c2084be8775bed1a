import ChorusModel
import ChorusTensor
import Foundation

/// An f-divergence D_f(π_θ‖π_ref) = E_{π_ref}[f(r)], r = π_θ/π_ref, and its policy-gradient
/// weight. Minimising it by policy gradient on the student's own samples needs the per-token
/// weight A = −f′(r) on ∇log π_θ(y_t); using the value f(r)/r instead is biased (k3 below).
public enum Divergence: Equatable, Sendable {
    /// f = r log r. A = −log r (−f′ up to the constant −1, which has zero expectation).
    case reverseKL
    /// f = −log r. A = 1/r.
    case forwardKL
    /// f = ½[r log r − (1+r) log((1+r)/2)]. A = −½ log(2r/(1+r)).
    case jensenShannon
    /// f = (√r − 1)². A = r^(−1/2) − 1.
    case hellinger
    /// f = (r^α − 1)/(α − 1). A = −α r^(α−1)/(α − 1).
    case tsallis(alpha: Double)
    /// The k3 value estimate used as a weight: A = −(1/r − 1 + log r). Known to be biased;
    /// kept only as a labelled ablation.
    case naiveK3

    /// Run-file names.
    public static let names = ["reverse-kl", "forward-kl", "jensen-shannon", "hellinger", "tsallis", "naive-k3"]

    /// The divergence named `name` (`tsallis` takes `alpha`, which must not be 1).
    public init?(name: String, alpha: Double = 0.5) {
        switch name {
        case "reverse-kl": self = .reverseKL
        case "forward-kl": self = .forwardKL
        case "jensen-shannon": self = .jensenShannon
        case "hellinger": self = .hellinger
        case "tsallis": self = .tsallis(alpha: alpha)
        case "naive-k3": self = .naiveK3
        default: return nil
        }
    }

    /// The policy-gradient weight A = −f′(r) at log r (in Double; log r may be large).
    public func weight(logRatio l: Double) -> Double {
        switch self {
        case .reverseKL: return -l
        case .forwardKL: return Foundation.exp(-l)
        case .jensenShannon:
            // −½ log(2r/(1+r)) = −½ (log 2 + l − log(1 + e^l)), with a stable softplus.
            return -0.5 * (Foundation.log(2) + l - softplus(l))
        case .hellinger: return Foundation.exp(-0.5 * l) - 1
        case let .tsallis(a): return -a * Foundation.exp((a - 1) * l) / (a - 1)
        case .naiveK3: return -(Foundation.exp(-l) - 1 + l)
        }
    }

    /// f′(r) at log r: the weight of the exact derivative (naive k3 has no generator; its
    /// "derivative" is minus its weight, which is what makes it biased).
    public func fPrime(logRatio l: Double) -> Double {
        switch self {
        case .reverseKL: return l + 1
        default: return -weight(logRatio: l)
        }
    }

    /// f(r) at log r (naive k3: the k3 value 1/r − 1 + log r, times r so that E_ref[f] is the
    /// reverse KL it estimates).
    public func f(logRatio l: Double) -> Double {
        let r = Foundation.exp(l)
        switch self {
        case .reverseKL: return r * l
        case .forwardKL: return -l
        case .jensenShannon: return 0.5 * (r * l - (1 + r) * (softplus(l) - Foundation.log(2)))
        case .hellinger: let s = Foundation.exp(0.5 * l) - 1; return s * s
        case let .tsallis(a): return (Foundation.exp(a * l) - 1) / (a - 1)
        case .naiveK3: return r * (1 / r - 1 + l)
        }
    }
}

/// log(1 + e^x) without overflow.
@inline(__always) func softplus(_ x: Double) -> Double {
    x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
}

/// The exact full-vocabulary objective: L = Σ_t c_t · D_f(π_θ(·|s_t) ‖ π_ref(·|s_t)), the
/// divergence summed over the whole vocabulary at each response position instead of estimated
/// from the sampled token. Needs the reference's full log-prob rows (local teachers).
///
/// With r_j = p_j/q_j:  ∂/∂z_j Σ_v q_v f(r_v) = p_j (f′(r_j) − Σ_v p_v f′(r_v)).
public struct FullVocabularyDivergence: LogitObjective, @unchecked Sendable {
    public let divergence: Divergence
    /// Per sequence, the reference log-prob rows of its response, (T_i, V) row-major.
    public let reference: [UnsafePointer<Float>]
    /// c[sequence][position] (mask × correction / normaliser); 0 = no gradient.
    public let coefficients: [[Float]]

    /// `reference[i]` must hold `coefficients[i].count` rows of V log-probs.
    public init(divergence: Divergence, reference: [UnsafePointer<Float>], coefficients: [[Float]]) {
        self.divergence = divergence
        self.reference = reference
        self.coefficients = coefficients
    }

    public func isActive(sequence s: Int, position t: Int) -> Bool { coefficients[s][t] != 0 }

    public func gradient(_ row: LogitRow) -> Double {
        let c = Double(coefficients[row.sequence][row.position])
        let V = row.vocabSize, z = row.values, lse = row.logSumExp
        let q = reference[row.sequence] + row.position * V
        if divergence == .reverseKL {
            // f(r) = r log r, f′ = log r + 1: q_v f(r_v) = p_v l_v, so one exp per entry and
            // pass (the generic passes take four), same Double arithmetic otherwise.
            var value = 0.0, mean = 0.0
            for j in 0..<V {
                let lp = Double(z[j] - lse), l = lp - Double(q[j])
                let p = Foundation.exp(lp)
                value += p * l
                mean += p * (l + 1)
            }
            for j in 0..<V {
                let lp = Double(z[j] - lse), l = lp - Double(q[j])
                z[j] = Float(c * Foundation.exp(lp) * (l + 1 - mean))
            }
            return c * value
        }
        // Pass 1: the divergence value and E_p[f′(r)].
        var value = 0.0, mean = 0.0
        for j in 0..<V {
            let lp = Double(z[j] - lse), l = lp - Double(q[j])
            let p = Foundation.exp(lp)
            value += Foundation.exp(Double(q[j])) * divergence.f(logRatio: l)
            mean += p * divergence.fPrime(logRatio: l)
        }
        // Pass 2: the gradient row.
        for j in 0..<V {
            let lp = Double(z[j] - lse), l = lp - Double(q[j])
            z[j] = Float(c * Foundation.exp(lp) * (divergence.fPrime(logRatio: l) - mean))
        }
        return c * value
    }
}
