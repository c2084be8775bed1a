import ArgumentParser
import ChorusCache
import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation

/// `chorus bench`: throughput of a model directory or a built-in random-weight shape.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure forward, decode (and training) throughput; prints one JSON object.",
        discussion: "Without --model a built-in Qwen3-shaped model with random weights is used: "
            + BuiltinShape.allCases.map(\.rawValue).joined(separator: ", ") + ".")

    @Option(help: "A Hugging Face model directory (default: a built-in shape).")
    var model: String?

    @Option(help: "Built-in shape when --model is not given.")
    var shape: String = BuiltinShape.qwen3_23m.rawValue

    @Option(help: "Sequences per batch.")
    var batch: Int = 4

    @Option(help: "Tokens per sequence.")
    var seq: Int = 256

    @Option(name: .customLong("decode-steps"), help: "Tokens decoded per sequence in the decode measurement.")
    var decodeSteps: Int = 32

    @OptionGroup var workers: ThreadOptions

    @Flag(help: "Also measure the score cache: bytes per position at k = 0/20/50 and (de)compression MB/s (~15 s).")
    var cache = false

    @Flag(help: "Also measure teacher-pool scoring (positions/s) with 1 and 4 random teachers of the built-in shape.")
    var teachers = false

    @Flag(help: "Also measure rollouts: --batch prompts of 16 tokens, 64 tokens sampled each (temperature 1, top-p 1, EOS ignored) by the trainer's batched generate; adds rollout_tokens_per_s.")
    var rollout = false

    @Option(name: .customLong("sampling-precision"), help: "Weights the rollout measurement samples with: f32 (or fp32), bf16 or f16 (16-bit weights through the AVX-512 kernel where the CPU has it; sampling_kernel says which).")
    var samplingPrecision: String = SamplingPrecision.f32.rawValue

    /// The parsed --sampling-precision ("fp32" is accepted for f32).
    var precision: SamplingPrecision? { SamplingPrecision(rawValue: samplingPrecision == "fp32" ? "f32" : samplingPrecision) }

    @Flag(help: "Skip the training (forward + backward) measurement.")
    var noTrain = false

    @Flag(help: "Print JSON only (the default output is JSON too; this flag keeps scripts explicit).")
    var json = false

    func validate() throws {
        if batch <= 0 || seq <= 1 { throw ValidationError("--batch must be >= 1 and --seq >= 2") }
        if decodeSteps < 1 { throw ValidationError("--decode-steps must be >= 1, got \(decodeSteps)") }
        if model == nil && BuiltinShape(rawValue: shape) == nil {
            throw ValidationError("unknown --shape '\(shape)' (valid: \(BuiltinShape.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if precision == nil {
            throw ValidationError("unknown --sampling-precision '\(samplingPrecision)' (valid: fp32, \(SamplingPrecision.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    func run() throws {
        workers.configure()
        let m: TransformerModel
        var name = shape
        if let dir = model {
            m = try TransformerModel.load(directory: URL(fileURLWithPath: dir))
            name = dir
        } else {
            m = TransformerModel(config: BuiltinShape(rawValue: shape)!.config)
            m.initializeRandom(seed: 0)
        }
        // Every size below comes from the command line: check the memory before allocating.
        let (tokens, overflow) = batch.multipliedReportingOverflow(by: seq)
        if overflow { throw CLIError("--batch \(batch) × --seq \(seq) tokens is more than Chorus can count") }
        try MemoryCheck.scoring(m.config, tokens: tokens, longest: seq)
        try MemoryCheck.generation(m.config, promptTokens: batch * 16, longestPrompt: 16, samples: batch, maxTokens: decodeSteps)
        if !noTrain { try MemoryCheck.training(m.config, tokens: tokens, longest: seq) }
        var pairs: [(String, String)] = [
            ("model", JSONText.string(name)),
            ("parameters", "\(m.config.parameterCount)"),
            ("batch", "\(batch)"), ("seq", "\(seq)"), ("threads", "\(Parallel.threads)"),
        ]
        for (k, v) in try ModelBenchmark.inference(model: m, batch: batch, seq: seq, decodeSteps: decodeSteps) {
            pairs.append((k, JSONText.number((v * 100).rounded() / 100)))
        }
        if rollout {
            pairs.append(("sampling_precision", JSONText.string(precision!.rawValue)))
            // Which products a bf16 / f16 sampler runs: the 16-bit AVX-512 kernel, or (a CPU
            // without it, or CHORUS_HALF_KERNEL=0) the f32 path over the rounded weights.
            pairs.append(("sampling_kernel", JSONText.string(precision! == .f32 ? "f32" : HalfKernel.active ? "16-bit avx512" : "f32 (rounded weights)")))
            for (k, v) in try ModelBenchmark.rollout(model: m, batch: batch, precision: precision!) {
                pairs.append((k, JSONText.number((v * 100).rounded() / 100)))
            }
        }
        let peak = ModelBenchmark.gemmGFLOPs()
        if !noTrain {
            let train = try ModelBenchmark.training(model: m, batch: batch, seq: seq)
            for (k, v) in train { pairs.append((k, JSONText.number((v * 100).rounded() / 100))) }
            pairs.append(("train_share_of_sgemm", JSONText.number((train[1].1 / peak * 1000).rounded() / 1000)))
        }
        pairs.append(("sgemm_gflops", JSONText.number((peak * 100).rounded() / 100)))
        if teachers {
            let shapeForTeachers = BuiltinShape(rawValue: shape) ?? .qwen3_10m
            for (k, v) in try TeacherBenchmark.run(shape: shapeForTeachers) {
                pairs.append((k, JSONText.number((v * 100).rounded() / 100)))
            }
        }
        if cache {
            for (k, v) in CacheBenchmark.run().sorted(by: { $0.key < $1.key }) {
                pairs.append((k, JSONText.number((v * 1000).rounded() / 1000)))
            }
        }
        emit(JSONText.object(pairs))
    }
}
