import ChorusModel
import ChorusTensor
import Foundation

/// AdamW hyper-parameters (PyTorch semantics: decoupled weight decay, bias correction).
public struct AdamWConfig: Sendable, Codable, Equatable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var eps: Float = 1e-8
    /// Decoupled weight decay, applied to matrices (embeddings, projections) only; norms and
    /// biases are not decayed (as nanoGPT and most LM recipes do).
    public var weightDecay: Float = 0.1
    public init(beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8, weightDecay: Float = 0.1) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }
}

/// AdamW over one flat parameter buffer, with first/second moments in flat buffers of the same
/// layout (llm.c style). One loop over the buffer per step; a per-element decay mask
/// distinguishes matrices from vectors.
public final class AdamW {
    public let config: AdamWConfig
    /// First moment m, same layout as the parameters.
    public let m: Tensor
    /// Second moment v.
    public let v: Tensor
    /// Steps taken so far (bias correction uses step + 1 on the next update).
    public var step: Int = 0
    /// Per-range decay flag: (offset, count, decays).
    let ranges: [(Int, Int, Bool)]

    /// Creates the optimizer state for a model's parameters.
    public init(model: TransformerModel, config: AdamWConfig) {
        self.config = config
        m = Tensor(shape: [model.parameters.count])
        v = Tensor(shape: [model.parameters.count])
        var r: [(Int, Int, Bool)] = []
        for e in model.layout.entries { r.append((e.offset, e.count, e.shape.count >= 2)) }
        ranges = r
    }

    /// One update: θ ← θ − lr·wd·θ (matrices), m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g²,
    /// θ ← θ − (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + ε)   — exactly torch.optim.AdamW.
    public func update(parameters: Tensor, gradients: Tensor, lr: Float) {
        step += 1
        let b1 = config.beta1, b2 = config.beta2, eps = config.eps
        let bc1 = 1 - Foundation.pow(Double(b1), Double(step)), bc2 = 1 - Foundation.pow(Double(b2), Double(step))
        let stepSize = Float(Double(lr) / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let p = parameters.data, g = gradients.data, mm = m.data, vv = v.data
        for (off, count, decays) in ranges {
            let decay: Float = decays ? 1 - lr * config.weightDecay : 1
            parallelFor(count, costPerItem: 16) { a, b in
                for i in (off + a)..<(off + b) {
                    let gi = g[i]
                    p[i] *= decay
                    mm[i] = b1 * mm[i] + (1 - b1) * gi
                    vv[i] = b2 * vv[i] + (1 - b2) * gi * gi
                    let denom = vv[i].squareRoot() / bc2Sqrt + eps
                    p[i] -= stepSize * mm[i] / denom
                }
            }
        }
    }
}

/// Global L2 norm of a gradient buffer (accumulated in Double).
public func gradientNorm(_ g: Tensor) -> Double {
    var s = 0.0
    let p = g.data
    var i = 0
    let n = g.count
    while i < n {
        let end = min(n, i + 4096)
        var acc = FloatVec()
        var j = i
        while j + 8 <= end { let x = loadVec(p + j); acc += x * x; j += 8 }
        var part = Double(acc.sum())
        while j < end { part += Double(p[j] * p[j]); j += 1 }
        s += part
        i = end
    }
    return s.squareRoot()
}

/// Scales the gradients so their global norm is at most maxNorm (torch's clip_grad_norm_:
/// factor maxNorm / (norm + 1e-6), applied only when it is below 1). Returns the norm before
/// clipping.
@discardableResult
public func clipGradientNorm(_ g: Tensor, maxNorm: Double) -> Double {
    let norm = gradientNorm(g)
    let coef = maxNorm / (norm + 1e-6)
    if maxNorm > 0 && coef < 1 { scaleInPlace(g.data, Float(coef), count: g.count) }
    return norm
}

/// Learning-rate schedules over optimizer steps 0..<total.
public enum LRSchedule: Sendable, Codable, Equatable {
    /// The same rate every step.
    case constant
    /// Linear warm-up over `warmup` steps to the peak, then constant.
    case linearWarmup(warmup: Int)
    /// Linear warm-up, then cosine decay to `minRatio`·peak at the last step.
    case cosine(warmup: Int, minRatio: Double)

    /// The rate for a 0-based step: warm-up gives peak·(step+1)/warmup; cosine then gives
    /// peak·(min + (1−min)·½(1 + cos(π·(step−warmup)/(total−warmup)))).
    public func rate(step: Int, total: Int, peak: Double) -> Double {
        switch self {
        case .constant:
            return peak
        case let .linearWarmup(w):
            return step < w ? peak * Double(step + 1) / Double(w) : peak
        case let .cosine(w, minRatio):
            if step < w { return peak * Double(step + 1) / Double(w) }
            let prog = Double(step - w) / Double(max(1, total - w))
            return peak * (minRatio + (1 - minRatio) * 0.5 * (1 + Foundation.cos(Double.pi * min(1, prog))))
        }
    }
}
