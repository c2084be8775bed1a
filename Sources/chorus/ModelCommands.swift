import ArgumentParser
import ChorusCore
import ChorusModel
import ChorusTensor
import ChorusTokenizer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Options naming a model directory.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A Hugging Face model directory (config.json + safetensors).")
    var model: String

    @OptionGroup var workers: ThreadOptions

    func load() throws -> TransformerModel {
        workers.configure()
        return try TransformerModel.load(directory: URL(fileURLWithPath: model))
    }
}

/// `chorus logprobs`: per-position log-probs, entropies and top-k of a token sequence.
struct Logprobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a token sequence: log p(token_i | tokens_<i), entropy and top-k per position (JSON).",
        discussion: """
        The sequence is --tokens, or --text / --text-file encoded with the model's tokenizer.json; \
        text input adds "text" (the decoded sequence), "token_strings" (each token's text, \
        aligned with "tokens") and "top_strings" (the top-k tokens' texts) to the output.
        """)

    @OptionGroup var options: ModelOptions

    @OptionGroup var input: SequenceInput

    @Option(name: .customLong("top-k"), help: "How many most likely tokens to list per position.")
    var topK: Int = 5

    func validate() throws {
        if topK < 0 { throw ValidationError("--top-k must be >= 0") }
    }

    func run() throws {
        let (ids, tok) = try input.resolve { try CheckpointTokenizer.load(directory: URL(fileURLWithPath: options.model)) }
        let model = try options.load()
        try MemoryCheck.scoring(model.config, tokens: ids.count, longest: ids.count, topK: min(topK, model.config.vocabSize))
        let scores = try model.scoreSequence(ids, topK: topK)
        let lps = scores.map { $0.map { JSONText.number($0.logprob) } ?? "null" }
        let ents = scores.map { $0.map { JSONText.number($0.entropy) } ?? "null" }
        let tops = scores.map { s -> String in
            guard let s else { return "null" }
            return JSONText.array(zip(s.topIds, s.topLogprobs).map { "[\($0.0),\(JSONText.number($0.1))]" })
        }
        var fields = [
            ("tokens", JSONText.array(ids.map(String.init))),
            ("logprobs", JSONText.array(lps)),
            ("entropy", JSONText.array(ents)),
            ("top", JSONText.array(tops)),
        ]
        if let tok {
            fields += [
                ("text", JSONText.string(TextOutput.text(ids, tok))),
                ("token_strings", TextOutput.tokenStrings(ids, tok)),
                ("top_strings", JSONText.array(scores.map { $0.map { TextOutput.tokenStrings($0.topIds.map(Int.init), tok) } ?? "null" })),
            ]
        }
        emit(JSONText.object(fields))
    }
}

/// `chorus sample`: continue a prompt with the KV-cache sampler.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample a continuation of a prompt (JSON: all tokens and the sampled tokens' log-probs).",
        discussion: """
        Log-probs are under the model itself (temperature 1, no top-k/top-p), so they equal what \
        `chorus logprobs` reports for the same tokens. Sampling stops after --max-tokens or at an \
        end-of-sequence id from config.json (unless --ignore-eos). Temperature 0 is greedy. \
        The prompt is --tokens, or --text / --text-file encoded with the model's tokenizer.json; \
        text input adds "text" (the decoded completion, special tokens such as the final eos \
        included), "full_text" (prompt and completion) and "token_strings" (each token's text, \
        aligned with "tokens") to the output.
        """)

    @OptionGroup var options: ModelOptions

    @OptionGroup var input: SequenceInput

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
        let (prompt, tok) = try input.resolve { try CheckpointTokenizer.load(directory: URL(fileURLWithPath: options.model)) }
        let model = try options.load()
        try model.checkTokens(prompt)
        let stops = ignoreEOS ? [] : Set(model.config.eosTokenIds)
        let g = try model.generate(prompts: [prompt], maxTokens: maxTokens,
                                   params: SamplingParameters(temperature: temperature, topP: topP, topK: topK),
                                   seeds: [seed], stopTokens: stops)[0]
        var fields = [
            ("tokens", JSONText.array(g.tokens.map(String.init))),
            ("logprobs", JSONText.array(g.logprobs.map(JSONText.number))),
        ]
        if let tok {
            fields += [
                ("text", JSONText.string(TextOutput.text(Array(g.tokens.dropFirst(prompt.count)), tok))),
                ("full_text", JSONText.string(TextOutput.text(g.tokens, tok))),
                ("token_strings", TextOutput.tokenStrings(g.tokens, tok)),
            ]
        }
        emit(JSONText.object(fields))
    }
}

/// `chorus convert`: load a checkpoint (strictly) and write it again as f32 or bf16.
///
/// It never destroys its input: an output that is the input directory, inside it, or an
/// ancestor of it (compared by device and inode, so symbolic links and `..` cannot hide it) is
/// refused, and so is an output that already exists unless `--force` is given. With `--force`
/// only the files convert writes (config.json, model.safetensors, tokenizer.json) are
/// replaced, each atomically.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-save a Hugging Face model directory as float32 or bfloat16 safetensors (tokenizer.json copied).")

    @Option(help: "Source model directory.")
    var model: String

    @Option(help: "Destination directory (created; must not exist unless --force).")
    var output: String

    @Option(help: "f32 or bf16.")
    var dtype: String = "f32"

    @Flag(help: "Write into an existing output directory (replacing config.json, model.safetensors, tokenizer.json there).")
    var force = false

    func validate() throws {
        if dtype != "f32" && dtype != "bf16" { throw ValidationError("--dtype must be f32 or bf16") }
    }

    func run() throws {
        let source = URL(fileURLWithPath: model), out = URL(fileURLWithPath: output)
        try InputFile.checkDirectory(model, what: "model directory")
        try OutputSafety.checkDistinct(input: model, output: output, force: force)
        let m = try TransformerModel.load(directory: source)
        let tok = source.appendingPathComponent("tokenizer.json")
        // Read the tokenizer before writing anything, and write it atomically (never delete first).
        let tokenizerData: Data? = FileManager.default.fileExists(atPath: tok.path) ? try InputFile.read(tok.path) : nil
        try m.save(directory: out, dtype: dtype == "bf16" ? .bf16 : .f32)
        if let data = tokenizerData { try AtomicFile.write(data, to: out.appendingPathComponent("tokenizer.json")) }
    }
}

/// Checks that a command's output cannot overwrite its input.
enum OutputSafety {
    /// (device, inode) of an existing path, following symbolic links; nil when it does not exist.
    static func identity(_ path: String) -> (UInt64, UInt64)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// Identities of what `path` would name and of each existing directory above it, nearest
    /// first (for a file too: the directories above the file it resolves to). Existing components are resolved by the kernel (symbolic links, `..` after a
    /// link), never by string manipulation; components that do not exist yet are new
    /// directories, which cannot be an existing input.
    static func ancestry(_ path: String) -> [(UInt64, UInt64)] {
        var base = path.hasPrefix("/") ? "/" : "."
        var newNames = 0
        for c in path.split(separator: "/") where c != "." {
            if newNames > 0 {
                newNames += c == ".." ? -1 : 1
                continue
            }
            let next = base + "/" + c
            if identity(next) != nil { base = next } else { newNames = 1 }
        }
        var out: [(UInt64, UInt64)] = []
        var probe = base
        var st = stat()
        if stat(base, &st) == 0, st.st_mode & S_IFMT != S_IFDIR {
            // An existing file: `file/..` does not resolve, so go on from the directory that
            // really holds it (its canonical path, links resolved).
            out.append((UInt64(st.st_dev), UInt64(st.st_ino)))
            guard let real = realpath(base, nil) else { return out }
            probe = (String(cString: real) as NSString).deletingLastPathComponent
            free(real)
        }
        while let id = identity(probe), !out.contains(where: { $0 == id }), out.count < 4096 {
            out.append(id)
            probe += "/.."
        }
        return out
    }

    /// Refuses an output that is the input, lies inside it or contains it, and an existing
    /// output without `force`.
    static func checkDistinct(input: String, output: String, force: Bool) throws {
        guard let inputID = identity(input) else { return }   // loading will report the input
        let outputChain = ancestry(output)
        if outputChain.contains(where: { $0 == inputID }) {
            throw CLIError("--output \(output) is the input directory \(input) or inside it; converting in place would destroy the input, choose another directory")
        }
        if let outputID = identity(output), ancestry(input).contains(where: { $0 == outputID }) {
            throw CLIError("--output \(output) contains the input directory \(input); choose another directory")
        }
        var st = stat()
        if stat(output, &st) == 0, st.st_mode & S_IFMT != S_IFDIR {
            throw CLIError("--output \(output) exists and is not a directory; choose a directory to write the model into")
        }
        if identity(output) != nil && !force {
            throw CLIError("--output \(output) already exists; pass --force to write into it, or choose a new directory")
        }
    }
}
