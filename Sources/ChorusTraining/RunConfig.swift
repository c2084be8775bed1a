import ChorusConfig
import ChorusModel
import Foundation

/// Where a run's student comes from: an existing HF checkpoint, or a fresh random model of a
/// given architecture (how the demo teachers are trained from scratch).
public enum ModelSource: Equatable {
    /// A Hugging Face model directory.
    case checkpoint(URL)
    /// A new model with random weights (`init_seed`), vocabulary taken from the tokenizer.
    case scratch(ModelConfig, seed: UInt64)
}

/// Optimisation settings shared by the trainers (`[train]` in a run file).
public struct OptimizationConfig: Equatable {
    /// Optimizer steps.
    public var steps: Int = 100
    /// Sequences per optimizer step.
    public var batchSize: Int = 8
    /// Sequences per forward/backward; gradients accumulate over batchSize / microBatch passes
    /// (on-policy: 0 = the whole batch in one pass).
    public var microBatch: Int = 8
    /// Peak learning rate.
    public var lr: Double = 3e-4
    /// Learning-rate schedule.
    public var schedule: LRSchedule = .cosine(warmup: 10, minRatio: 0.1)
    /// AdamW settings.
    public var adam = AdamWConfig()
    /// Global gradient-norm clip (0 = off).
    public var gradClip: Double = 1.0
    /// Seed of every random choice in the run.
    public var seed: UInt64 = 0
    /// Worker threads (nil: all cores).
    public var threads: Int?
    /// Save a checkpoint every this many steps (and at the end).
    public var checkpointEvery: Int = 50
    /// Write a metrics row every this many steps.
    public var logEvery: Int = 1

    public init() {}

    /// Which trainer reads `[train]`: the on-policy trainer's batch is its rollouts (P × G),
    /// so it has no `batch_size`, and `micro_batch` defaults to the whole batch.
    enum Trainer { case sft, onPolicy }

    /// Reads `[train]`.
    static func read(_ t: ConfigTable?, trainer: Trainer = .sft) throws -> OptimizationConfig {
        var o = OptimizationConfig()
        if trainer == .onPolicy { o.microBatch = 0 }
        guard let t else { return o }
        o.steps = try t.int("steps", min: 1) ?? o.steps
        if trainer == .sft {
            o.batchSize = try t.int("batch_size", min: 1) ?? o.batchSize
            o.microBatch = try t.int("micro_batch", min: 1) ?? min(o.batchSize, 8)
        } else {
            o.microBatch = try t.int("micro_batch", min: 1) ?? 0
        }
        if trainer == .sft && o.batchSize % o.microBatch != 0 {
            throw t.error("batch_size", "\(o.batchSize) must be a multiple of micro_batch (\(o.microBatch))")
        }
        o.lr = try t.double("lr", min: 0) ?? o.lr
        let warmup = try t.int("warmup", min: 0) ?? 10
        let minRatio = try t.double("min_lr_ratio", min: 0, max: 1) ?? 0.1
        switch try t.choice("schedule", ["constant", "linear-warmup", "cosine"]) ?? "cosine" {
        case "constant": o.schedule = .constant
        case "linear-warmup": o.schedule = .linearWarmup(warmup: warmup)
        default: o.schedule = .cosine(warmup: warmup, minRatio: minRatio)
        }
        o.adam.weightDecay = Float(try t.double("weight_decay", min: 0) ?? Double(o.adam.weightDecay))
        o.adam.beta1 = Float(try t.double("beta1", min: 0, max: 0.999999) ?? Double(o.adam.beta1))
        o.adam.beta2 = Float(try t.double("beta2", min: 0, max: 0.999999) ?? Double(o.adam.beta2))
        o.adam.eps = Float(try t.double("eps", min: 0) ?? Double(o.adam.eps))
        o.gradClip = try t.double("grad_clip", min: 0) ?? o.gradClip
        o.seed = UInt64(try t.int("seed", min: 0) ?? 0)
        o.threads = try t.int("threads", min: 1)
        o.checkpointEvery = try t.int("checkpoint_every", min: 1) ?? o.checkpointEvery
        o.logEvery = try t.int("log_every", min: 1) ?? o.logEvery
        try t.finish()
        return o
    }
}

/// Reads `[model]`: `init = "DIR"` for a checkpoint, or an architecture for a fresh model
/// (`shape = "qwen3-10m"` or explicit fields), plus an optional `tokenizer` path.
/// Paths are relative to the run file.
/// `vocabSize` is called with the tokenizer path only for a model trained from scratch.
func readModelSource(_ t: ConfigTable, base: URL, vocabSize: (URL) throws -> Int) throws -> (ModelSource, tokenizer: URL?) {
    func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
    let tok = try t.string("tokenizer").map(resolve)
    if let dir = try t.string("init") {
        for k in ["shape", "family", "hidden_size"] where t.has(k) {
            throw t.error(k, "cannot be combined with '\(t.key("init"))'")
        }
        try t.finish()
        return (.checkpoint(resolve(dir)), tok)
    }
    guard let tok else { throw t.error("tokenizer", "missing (a model trained from scratch needs a tokenizer)") }
    let vocab = try vocabSize(tok)
    var cfg: ModelConfig
    if let s = try t.string("shape") {
        guard let shape = BuiltinShape(rawValue: s) else {
            throw t.error("shape", "\"\(s)\" is not one of: \(BuiltinShape.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        cfg = shape.config
        cfg.vocabSize = vocab
    } else {
        let family = try t.choice("family", ModelFamily.allCases.map(\.rawValue)) ?? "qwen3"
        let hidden = try t.required("hidden_size", try t.int("hidden_size", min: 1))
        let heads = try t.required("heads", try t.int("heads", min: 1))
        cfg = ModelConfig(
            family: ModelFamily(rawValue: family)!, vocabSize: vocab, hiddenSize: hidden,
            intermediateSize: try t.required("intermediate_size", try t.int("intermediate_size", min: 1)),
            numLayers: try t.required("layers", try t.int("layers", min: 1)),
            numHeads: heads, numKVHeads: try t.int("kv_heads", min: 1) ?? heads,
            headDim: try t.int("head_dim", min: 2), ropeTheta: try t.double("rope_theta", min: 1) ?? 10_000,
            tieWordEmbeddings: try t.bool("tie_embeddings") ?? true,
            maxPositionEmbeddings: try t.int("max_positions", min: 1) ?? 2048)
    }
    let seed = UInt64(try t.int("init_seed", min: 0) ?? 0)
    try t.finish()
    do { try cfg.validate(file: t.file) } catch { throw ConfigFileError(t.file, "[model]: \(error)") }
    return (.scratch(cfg, seed: seed), tok)
}
