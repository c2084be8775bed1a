import ChorusTensor
import Foundation

/// Named model shapes with random weights for `chorus bench` (all Qwen3-shaped, tied head,
/// vocabulary 8192).
public enum BuiltinShape: String, CaseIterable, Sendable {
    /// ~10M parameters: hidden 256, 10 layers, 4 heads / 2 KV, MLP 768.
    case qwen3_10m = "qwen3-10m"
    /// ~23M parameters: hidden 512, 6 layers, 8 heads / 4 KV, head_dim 64, MLP 1536.
    case qwen3_23m = "qwen3-23m"
    /// ~50M parameters: hidden 768, 7 layers, 12 heads / 4 KV, MLP 2048.
    case qwen3_50m = "qwen3-50m"

    /// The configuration of the shape.
    public var config: ModelConfig {
        switch self {
        case .qwen3_10m:
            return ModelConfig(family: .qwen3, vocabSize: 8192, hiddenSize: 256, intermediateSize: 768, numLayers: 10,
                               numHeads: 4, numKVHeads: 2, headDim: 64, ropeTheta: 1_000_000)
        case .qwen3_23m:
            return ModelConfig(family: .qwen3, vocabSize: 8192, hiddenSize: 512, intermediateSize: 1536, numLayers: 6,
                               numHeads: 8, numKVHeads: 4, headDim: 64, ropeTheta: 1_000_000)
        case .qwen3_50m:
            return ModelConfig(family: .qwen3, vocabSize: 8192, hiddenSize: 768, intermediateSize: 2048, numLayers: 7,
                               numHeads: 12, numKVHeads: 4, headDim: 64, ropeTheta: 1_000_000)
        }
    }
}

/// Inference throughput measurements (forward scoring and KV-cache decoding).
public enum ModelBenchmark {
    /// Runs `body` repeatedly (after one warm-up) until `minSeconds` have passed and at least
    /// `minRuns` runs were timed; returns seconds per run (the median).
    public static func time(minSeconds: Double = 2, minRuns: Int = 3, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var times: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        repeat {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        } while times.count < minRuns || Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < minSeconds
        times.sort()
        return times[times.count / 2]
    }

    /// Throughput of the gemm wrapper on a (1024 x 512) · (512 x 1536) product, the shape of a
    /// fused MLP projection: the machine's practical matmul ceiling for `chorus bench`.
    public static func gemmGFLOPs(m: Int = 1024, n: Int = 1536, k: Int = 512) -> Double {
        let a = Tensor(shape: [m, k]), b = Tensor(shape: [n, k]), c = Tensor(shape: [m, n])
        var rng = ChorusRNG(seed: 1)
        rng.fillNormal(a.data, count: a.count, std: 1)
        rng.fillNormal(b.data, count: b.count, std: 1)
        let t = time(minSeconds: 1) {
            gemm(.none, .transpose, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: c.data, ldc: n)
        }
        return 2.0 * Double(m * n * k) / t / 1e9
    }

    /// Training throughput: one forward + backward of cross-entropy over B sequences of T
    /// tokens (gradients accumulated, no optimizer step). FLOPs are counted as 3× the forward
    /// matmul FLOPs (backward = two products per forward product), the usual convention.
    public static func training(model: TransformerModel, batch B: Int, seq T: Int, seed: UInt64 = 0) throws -> [(String, Double)] {
        var rng = ChorusRNG(seed: seed)
        let V = model.config.vocabSize
        let batch = (0..<B).map { _ in TrainingSequence(tokens: (0..<T).map { _ in rng.int(below: V) }, promptLength: 1) }
        let objective = TokenObjective(weights: batch.map { [Float](repeating: 1 / Float(B * (T - 1)), count: $0.responseLength) })
        let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
        let t = try time {
            _ = try model.trainingForward(batch, tape: tape)
            model.trainingBackward(objective, tape: tape, grads: grads)
        }
        let flops = 3 * model.forwardFLOPs(tokens: B * T, attentionPairs: B * T * (T + 1) / 2)
        return [("train_tokens_per_s", Double(B * T) / t), ("train_gflops", flops / t / 1e9)]
    }

    /// Forward scoring of B sequences of T tokens (log-prob, entropy of every position) and
    /// batched decoding of `decodeSteps` tokens for B sequences after a 16-token prompt.
    /// Returns ordered (key, value) pairs for the bench JSON.
    public static func inference(model: TransformerModel, batch B: Int, seq T: Int, decodeSteps: Int = 32,
                                 seed: UInt64 = 0) throws -> [(String, Double)] {
        var rng = ChorusRNG(seed: seed)
        let V = model.config.vocabSize
        let seqs = (0..<B).map { _ in (0..<T).map { _ in rng.int(below: V) } }
        let ws = ForwardWorkspace(), scratch = model.makeHeadScratch()
        let rows = Array(0..<(B * T))
        var targets: [Int] = []
        for s in seqs { targets += s[1...] + [s[0]] }
        let fwd = try time {
            let h = try model.forwardHidden(seqs.map { PackedSequence(tokens: $0) }, workspace: ws)
            _ = model.score(hidden: h, rows: rows, targets: targets, topK: 0, scratch: scratch)
        }
        let flops = model.forwardFLOPs(tokens: B * T, attentionPairs: B * T * (T + 1) / 2)

        // Decode: prefill a 16-token prompt, then time the single-token steps.
        let prompt = 16
        let caches = (0..<B).map { _ in KVCache(config: model.config, capacity: prompt + decodeSteps) }
        var decodeSeconds = 0.0
        for _ in 0..<2 {   // second round is the measured one
            for c in caches { c.reset() }
            _ = try model.forwardHidden((0..<B).map { PackedSequence(tokens: Array(seqs[$0].prefix(prompt)), cache: caches[$0]) }, workspace: ws)
            let t0 = DispatchTime.now().uptimeNanoseconds
            for step in 0..<decodeSteps {
                let h = try model.forwardHidden((0..<B).map { PackedSequence(tokens: [seqs[$0][(prompt + step) % T]], cache: caches[$0]) }, workspace: ws)
                _ = model.score(hidden: h, rows: Array(0..<B), targets: [Int](repeating: 0, count: B), topK: 0, scratch: scratch)
            }
            decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        return [
            ("forward_tokens_per_s", Double(B * T) / fwd),
            ("forward_gflops", flops / fwd / 1e9),
            ("decode_tokens_per_s", Double(B * decodeSteps) / decodeSeconds),
        ]
    }

    /// Rollout throughput, as the on-policy trainer samples: B prompts of `promptTokens` random
    /// ids, `tokens` sampled from each (temperature 1, top-p 1, EOS ignored) by one batched
    /// `generate` call on the model's sampling copy at `precision` (prefill included in the
    /// time). Returns sampled tokens per second (the median over repeated calls, each with fresh
    /// seeds).
    public static func rollout(model: TransformerModel, batch B: Int, precision: SamplingPrecision,
                               promptTokens: Int = 16, tokens: Int = 64, seed: UInt64 = 0) throws -> [(String, Double)] {
        var rng = ChorusRNG(seed: seed)
        let V = model.config.vocabSize
        let prompts = (0..<B).map { _ in (0..<promptTokens).map { _ in rng.int(below: V) } }
        let sampler = model.samplingCopy(precision: precision)
        let ws = ForwardWorkspace()
        let params = SamplingParameters(temperature: 1, topP: 1)
        var call: UInt64 = 0
        let t = try time(minSeconds: 3) {
            let seeds = (0..<UInt64(B)).map { call &* 1_000_003 &+ $0 }
            call += 1
            let out = try sampler.generate(prompts: prompts, samplesPerPrompt: 1, maxTokens: tokens, params: params,
                                           seeds: seeds, stopTokens: [], workspace: ws)
            precondition(out.allSatisfy { $0.response.count == tokens }, "a rollout stopped early")
        }
        return [("rollout_tokens_per_s", Double(B * tokens) / t)]
    }
}
