import ChorusCore
import ChorusTensor
import Foundation

/// Upper estimates of what the model's operations hold in memory, in bytes (Doubles, so an
/// absurd request cannot overflow the arithmetic), and the checks against `ResourceLimits`
/// that run before anything input-sized is allocated.
///
/// Shapes: C hidden, I intermediate, V vocabulary, L layers, Hkv·D the KV row width, N the
/// number of tokens in a batch, T the longest sequence (attention keys).
extension ModelConfig {
    /// The f32 parameters: 4 × parameter count (computed without building the layout, so a
    /// config that would overflow `Int` still gets a number).
    public var parameterBytes: Double {
        let C = Double(hiddenSize), I = Double(intermediateSize), V = Double(vocabSize)
        let perLayer = C * Double(qkvDim + attnDim) + 3 * C * I + 2 * C + Double(qkvDim + hiddenSize) + 2 * Double(headDim)
        return 4 * (V * C * (tieWordEmbeddings ? 1 : 2) + Double(numLayers) * perLayer + C)
    }

    /// KV caches for `positions` positions in all: 2 (keys, values) × L × Hkv·D × positions × 4.
    public func kvCacheBytes(positions: Double) -> Double {
        8 * Double(numLayers) * Double(numKVHeads * headDim) * positions
    }

    /// An inference forward pass over N tokens with up to T keys: the workspace (N × (2C +
    /// qkv + attention + 3I)), the attention scratch (threads × 64 × T) and the LM-head scratch
    /// (256 × (C + V)), plus the scores (N × V when full distributions are kept).
    public func forwardBytes(tokens N: Double, maxKeys T: Double, fullDistributions: Bool = false) -> Double {
        let C = Double(hiddenSize), I = Double(intermediateSize), V = Double(vocabSize)
        let work = N * (2 * C + Double(qkvDim + attnDim) + 3 * I)
        let attention = Double(Parallel.threads) * 64 * T
        let head = 256 * (C + V) + (fullDistributions ? N * V : 0)
        return 4 * (work + attention + head) + 64 * N
    }

    /// A training forward + backward over N tokens with up to T keys: per layer the saved
    /// activations (N × (4C + 2·qkv + attention + 3I + heads)), the backward scratch and the
    /// gradient buffer (one more copy of the parameters).
    public func trainingBytes(tokens N: Double, maxKeys T: Double) -> Double {
        let C = Double(hiddenSize), I = Double(intermediateSize)
        let perLayer = N * (4 * C + 2 * Double(qkvDim) + Double(attnDim) + 3 * I + Double(numHeads + numKVHeads) + 2)
        let scratch = N * (2 * C + 2 * Double(qkvDim) + Double(attnDim) + 3 * I) + 2 * Double(Parallel.threads) * 64 * T
        return 4 * (Double(numLayers) * perLayer + scratch) + forwardBytes(tokens: 0, maxKeys: 0) + parameterBytes
    }
}

/// The checks run before input-sized allocations (see `ResourceLimits`).
public enum MemoryCheck {
    /// A model of `config` fits (its parameters, before they are allocated or read).
    public static func model(_ config: ModelConfig, source: String) throws {
        try ResourceLimits.check(bytes: config.parameterBytes,
                                 for: "\(source): the model's \(config.parameterCountEstimate) parameters")
    }

    /// Sampling `maxTokens` tokens for each of `samples` continuations of prompts of `promptTokens`
    /// tokens in all (the longest `longestPrompt`): the KV caches of every sample at full length
    /// and the prefill forward pass.
    public static func generation(_ config: ModelConfig, promptTokens: Int, longestPrompt: Int, samples: Int, maxTokens: Int) throws {
        let positions = Double(samples) * (Double(longestPrompt) + Double(maxTokens))
        let bytes = config.kvCacheBytes(positions: positions)
            + config.forwardBytes(tokens: Double(max(promptTokens, samples)), maxKeys: Double(longestPrompt) + Double(maxTokens))
            + 8 * positions
        try ResourceLimits.check(bytes: bytes, for: "sampling \(maxTokens) tokens for \(samples) sequence(s)")
    }

    /// Scoring `tokens` tokens in sequences of at most `longest`.
    public static func scoring(_ config: ModelConfig, tokens: Int, longest: Int, topK: Int = 0) throws {
        let bytes = config.forwardBytes(tokens: Double(tokens), maxKeys: Double(longest)) + Double(tokens) * Double(8 * topK + 64)
        try ResourceLimits.check(bytes: bytes, for: "scoring \(tokens) tokens")
    }

    /// Training on `tokens` tokens per micro-batch in sequences of at most `longest`, with AdamW
    /// (two more copies of the parameters).
    public static func training(_ config: ModelConfig, tokens: Int, longest: Int) throws {
        let bytes = config.trainingBytes(tokens: Double(tokens), maxKeys: Double(longest)) + 2 * config.parameterBytes
        try ResourceLimits.check(bytes: bytes, for: "training on \(tokens) tokens per micro-batch")
    }
}

extension ModelConfig {
    /// The parameter count as text, from `parameterBytes` (no Int overflow for absurd configs).
    var parameterCountEstimate: String {
        let n = parameterBytes / 4
        return n < 1e15 ? "\(Int(n))" : String(format: "%.3g", n)
    }
}
