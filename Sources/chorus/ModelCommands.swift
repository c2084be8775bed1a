import ArgumentParser
import ChorusModel
import ChorusTensor
import Foundation

/// Options naming a model directory.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A Hugging Face model directory (config.json + safetensors).")
    var model: String

    @OptionGroup var workers: ThreadOptions

    func load() throws -> TransformerModel {
        workers.configure()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("\(model): model directory not found")
        }
        return try TransformerModel.load(directory: URL(fileURLWithPath: model))
    }
}

/// `chorus logprobs`: per-position log-probs, entropies and top-k of a token sequence.
struct Logprobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a token sequence: log p(token_i | tokens_<i), entropy and top-k per position (JSON).")

    @OptionGroup var options: ModelOptions

    @Option(help: "Comma-separated token ids, e.g. 5,17,3.")
    var tokens: String

    @Option(name: .customLong("top-k"), help: "How many most likely tokens to list per position.")
    var topK: Int = 5

    func validate() throws {
        if topK < 0 { throw ValidationError("--top-k must be >= 0") }
    }

    func run() throws {
        let ids = try parseTokenList(tokens)
        let model = try options.load()
        let scores = try model.scoreSequence(ids, topK: topK)
        let lps = scores.map { $0.map { JSONText.number($0.logprob) } ?? "null" }
        let ents = scores.map { $0.map { JSONText.number($0.entropy) } ?? "null" }
        let tops = scores.map { s -> String in
            guard let s else { return "null" }
            return JSONText.array(zip(s.topIds, s.topLogprobs).map { "[\($0.0),\(JSONText.number($0.1))]" })
        }
        emit(JSONText.object([
            ("tokens", JSONText.array(ids.map(String.init))),
            ("logprobs", JSONText.array(lps)),
            ("entropy", JSONText.array(ents)),
            ("top", JSONText.array(tops)),
        ]))
    }
}

/// `chorus sample`: continue a prompt with the KV-cache sampler.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample a continuation of a token prompt (JSON: all tokens and the sampled tokens' log-probs).",
        discussion: """
        Log-probs are under the model itself (temperature 1, no top-k/top-p), so they equal what \
        `chorus logprobs` reports for the same tokens. Sampling stops after --max-tokens or at an \
        end-of-sequence id from config.json (unless --ignore-eos). Temperature 0 is greedy.
        """)

    @OptionGroup var options: ModelOptions

    @Option(help: "Comma-separated prompt token ids.")
    var tokens: String

    @Option(name: .customLong("max-tokens"), help: "Maximum number of tokens to sample.")
    var maxTokens: Int

    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 1

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass in (0, 1].")
    var topP: Float = 1

    @Option(name: .customLong("top-k"), help: "Keep only the k most likely tokens (0 = all).")
    var topK: Int = 0

    @Option(help: "Random seed.")
    var seed: UInt64 = 0

    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at end-of-sequence tokens.")
    var ignoreEOS = false

    func validate() throws {
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        try SamplingParameters(temperature: temperature, topP: topP, topK: topK).validate()
    }

    func run() throws {
        let prompt = try parseTokenList(tokens)
        let model = try options.load()
        try model.checkTokens(prompt)
        let stops = ignoreEOS ? [] : Set(model.config.eosTokenIds)
        let g = try model.generate(prompts: [prompt], maxTokens: maxTokens,
                                   params: SamplingParameters(temperature: temperature, topP: topP, topK: topK),
                                   seeds: [seed], stopTokens: stops)[0]
        emit(JSONText.object([
            ("tokens", JSONText.array(g.tokens.map(String.init))),
            ("logprobs", JSONText.array(g.logprobs.map(JSONText.number))),
        ]))
    }
}

/// `chorus convert`: load a checkpoint (strictly) and write it again as f32 or bf16.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-save a Hugging Face model directory as float32 or bfloat16 safetensors (tokenizer.json copied).")

    @Option(help: "Source model directory.")
    var model: String

    @Option(help: "Destination directory (created).")
    var output: String

    @Option(help: "f32 or bf16.")
    var dtype: String = "f32"

    func validate() throws {
        if dtype != "f32" && dtype != "bf16" { throw ValidationError("--dtype must be f32 or bf16") }
    }

    func run() throws {
        let m = try TransformerModel.load(directory: URL(fileURLWithPath: model))
        let out = URL(fileURLWithPath: output)
        try m.save(directory: out, dtype: dtype == "bf16" ? .bf16 : .f32)
        let tok = URL(fileURLWithPath: model).appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: tok.path) {
            try? FileManager.default.removeItem(at: out.appendingPathComponent("tokenizer.json"))
            try FileManager.default.copyItem(at: tok, to: out.appendingPathComponent("tokenizer.json"))
        }
    }
}
