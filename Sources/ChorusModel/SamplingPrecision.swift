import ChorusTensor

/// The weights the sampler uses: the learner's f32 weights or a copy rounded to bf16 / f16
/// (faster storage on real engines; here it also makes the rollout/learner mismatch that the
/// correction exists for).
public enum SamplingPrecision: String, Sendable, CaseIterable {
    case f32, bf16, f16

    /// The 16-bit format of the precision (nil for f32).
    public var halfFormat: HalfFormat? {
        switch self {
        case .f32: return nil
        case .bf16: return .bf16
        case .f16: return .f16
        }
    }
}

/// A sampling copy's matrices as packed 16-bit `HalfMatrix`es, for `gemm`'s 16-bit kernel
/// route (batched decoding and the prefill): the same rounded values as the copy's f32
/// parameters, half the bytes. The f32 parameters stay for CPUs without the kernel's
/// instructions (and for the embedding lookup and norms).
public final class HalfWeights: @unchecked Sendable {
    /// The matrices of one transformer block, shaped as in `ParameterLayout.Layer`.
    public struct Layer: Sendable {
        /// ((Hq+2Hkv)·D, C).
        public let qkv: HalfMatrix
        /// (C, Hq·D).
        public let o: HalfMatrix
        /// (2I, C).
        public let gateUp: HalfMatrix
        /// (C, I).
        public let down: HalfMatrix
    }
    /// One entry per layer.
    public let layers: [Layer]
    /// The LM head, (V, C) (the embedding when tied).
    public let lmHead: HalfMatrix
    /// bf16 or f16.
    public let format: HalfFormat

    /// Zeroed matrices for a model of `config` (fill them with `pack`).
    init(config c: ModelConfig, format: HalfFormat) {
        let C = c.hiddenSize, I = c.intermediateSize
        self.format = format
        layers = (0..<c.numLayers).map { _ in
            Layer(qkv: HalfMatrix(rows: c.qkvDim, cols: C, format: format), o: HalfMatrix(rows: C, cols: c.attnDim, format: format),
                  gateUp: HalfMatrix(rows: 2 * I, cols: C, format: format), down: HalfMatrix(rows: C, cols: I, format: format))
        }
        lmHead = HalfMatrix(rows: c.vocabSize, cols: C, format: format)
    }

    /// Rounds and packs the matrices of `model`'s parameters (at `layout` offsets).
    func pack(_ model: TransformerModel) {
        for (L, h) in zip(model.layout.layers, layers) {
            h.qkv.pack(from: model.parameter(L.qkv), ld: h.qkv.cols)
            h.o.pack(from: model.parameter(L.o), ld: h.o.cols)
            h.gateUp.pack(from: model.parameter(L.gateUp), ld: h.gateUp.cols)
            h.down.pack(from: model.parameter(L.down), ld: h.down.cols)
        }
        lmHead.pack(from: model.parameter(model.layout.lmHead), ld: lmHead.cols)
    }
}

extension TransformerModel {
    /// A copy of this model for sampling at `precision`: every parameter rounded to the nearest
    /// bf16 / f16 value (round-to-nearest-even, as PyTorch's `.to(dtype)`), or copied unchanged
    /// for f32. `reusing`, a model of the same config from an earlier call, is refreshed in place
    /// instead of allocating a new one (the trainer refreshes its sampler every step).
    ///
    /// At bf16 / f16 the copy also holds its matrices packed as 16-bit `HalfWeights`, which
    /// `generate`'s decode steps multiply with (the learner always scores in f32).
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
        if let format = precision.halfFormat {
            if s.halfWeights?.format != format { s.halfWeights = HalfWeights(config: config, format: format) }
            s.halfWeights!.pack(s)   // from the rounded copy: rounding again changes nothing
        } else {
            s.halfWeights = nil
        }
        return s
    }
}
