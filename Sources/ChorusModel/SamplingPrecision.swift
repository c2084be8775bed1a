import ChorusTensor

/// The weights the sampler uses: the learner's f32 weights or a copy rounded to bf16 / f16
/// (faster storage on real engines; here it also makes the rollout/learner mismatch that the
/// correction exists for).
public enum SamplingPrecision: String, Sendable, CaseIterable {
    case f32, bf16, f16
}

extension TransformerModel {
    /// A copy of this model for sampling at `precision`: every parameter rounded to the nearest
    /// bf16 / f16 value (round-to-nearest-even, as PyTorch's `.to(dtype)`), or copied unchanged
    /// for f32. `reusing`, a model of the same config from an earlier call, is refreshed in place
    /// instead of allocating a new one (the trainer refreshes its sampler every step).
    public func samplingCopy(precision: SamplingPrecision, reusing old: TransformerModel? = nil) -> TransformerModel {
        let s: TransformerModel
        if let old, old.config == config { s = old } else { s = TransformerModel(config: config) }
        let n = layout.totalCount
        let src = parameters.data, dst = s.parameters.data
        switch precision {
        case .f32: dst.update(from: src, count: n)
        case .bf16: for i in 0..<n { dst[i] = HalfConversion.bf16ToFloat(HalfConversion.floatToBF16(src[i])) }
        case .f16: for i in 0..<n { dst[i] = HalfConversion.f16ToFloat(HalfConversion.floatToF16(src[i])) }
        }
        return s
    }
}
