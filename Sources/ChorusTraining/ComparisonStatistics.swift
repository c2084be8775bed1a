import Foundation

/// The statistics `chorus compare` reports (docs/compare.md): mean ± std over seeds, the paired
/// comparison against the default strategy, and the stability flags read from a run's metrics.
public enum ComparisonStatistics {
    /// Mean and sample standard deviation (n − 1 in the denominator; 0 for one value, NaN for none).
    public static func meanStd(_ xs: [Double]) -> (mean: Double, std: Double) {
        guard !xs.isEmpty else { return (.nan, .nan) }
        let m = xs.reduce(0, +) / Double(xs.count)
        guard xs.count > 1 else { return (m, 0) }
        let v = xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count - 1)
        return (m, v.squareRoot())
    }

    /// The two-sided 95% critical value of Student's t with `df` degrees of freedom (df ≥ 1):
    /// exact table values for df 1…30 (to 3 decimals), then linear interpolation in 1/df between
    /// 30, 40, 60, 120 and ∞ (1.960), which is within 0.002 of the true quantile.
    public static func tCritical95(df: Int) -> Double {
        precondition(df >= 1, "t critical value needs df >= 1")
        let table: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                               2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                               2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
        if df <= 30 { return table[df - 1] }
        let knots: [(Double, Double)] = [(30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980), (.infinity, 1.960)]
        let x = 1 / Double(df)
        for i in 0..<(knots.count - 1) {
            let (d0, t0) = knots[i], (d1, t1) = knots[i + 1]
            let x0 = 1 / d0, x1 = d1.isInfinite ? 0 : 1 / d1
            if x <= x0 && x >= x1 { return t1 + (t0 - t1) * (x - x1) / (x0 - x1) }
        }
        return 1.960
    }

    /// A paired comparison of one metric: `differences[i]` = strategy − default on seed i.
    public struct PairedComparison: Equatable, Sendable {
        /// The per-seed differences.
        public var differences: [Double]
        /// Their mean.
        public var meanDifference: Double
        /// t = mean / (std / √n); nil when undefined (one seed, or every difference equal so
        /// the spread is 0).
        public var t: Double?
        /// The two-sided 95% critical value for n − 1 degrees of freedom (nil for one seed).
        public var critical: Double?
        /// |t| above the critical value: the difference stands out of the seed-to-seed noise.
        public var significant: Bool { if let t, let critical { return abs(t) > critical } else { return false } }
    }

    /// The paired t statistic of per-seed differences (NaN entries are refused by the caller:
    /// a metric missing on one seed has no pair).
    public static func paired(_ differences: [Double]) -> PairedComparison {
        let (m, s) = meanStd(differences)
        let n = differences.count
        var t: Double?
        if n > 1, s > 0 { t = m / (s / Double(n).squareRoot()) }
        return PairedComparison(differences: differences, meanDifference: m, t: t, critical: n > 1 ? tCritical95(df: n - 1) : nil)
    }

    /// `k1<0`: the step rows' `kl_k1` split into ten consecutive windows (each at least one
    /// step) has a window with a negative mean. The k1 estimate is the KL itself in
    /// expectation, so a sustained negative mean says the reference is not what the student's
    /// samples are scored against (approximate rows, rollout/learner mismatch).
    public static func k1Negative(_ kl: [Double]) -> Bool {
        let xs = kl.filter { $0.isFinite }
        guard !xs.isEmpty else { return false }
        let w = max(1, xs.count / 10)
        var i = 0
        while i < xs.count {
            let part = xs[i..<min(xs.count, i + w)]
            if part.reduce(0, +) / Double(part.count) < 0 { return true }
            i += w
        }
        return false
    }

    /// `gn-spike`: the steps (1-based positions in `norms`) whose gradient norm exceeds
    /// `factor` × the median of all earlier norms, once at least `warmup` earlier norms exist.
    public static func gradNormSpikes(_ norms: [Double], factor: Double = 10, warmup: Int = 5) -> [Int] {
        var sorted: [Double] = [], spikes: [Int] = []
        for (i, g) in norms.enumerated() where g.isFinite {
            if sorted.count >= warmup {
                let n = sorted.count
                let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
                if g > factor * median { spikes.append(i + 1) }
            }
            let at = sorted.firstIndex { $0 > g } ?? sorted.count
            sorted.insert(g, at: at)
        }
        return spikes
    }

    /// `collapse` on one eval set: after its peak, a mean@k below half the peak (only when the
    /// peak is at least `floor`, so noise near zero is not called a collapse), or — for a
    /// retention set — a mean@k more than `retentionDrop` below the step-0 value.
    public static func collapsed(_ means: [Double], retention: Bool, floor: Double = 0.10, retentionDrop: Double = 0.10) -> Bool {
        guard let first = means.first, let peak = means.max(), let at = means.firstIndex(of: peak) else { return false }
        if peak >= floor && means[at...].contains(where: { $0 < peak / 2 }) { return true }
        if retention && means.contains(where: { $0 < first - retentionDrop }) { return true }
        return false
    }
}
