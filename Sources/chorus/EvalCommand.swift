import ArgumentParser
import ChorusCore
import ChorusModel
import ChorusTasks
import ChorusTokenizer
import Foundation

/// `chorus eval`: mean@k and best@k of a model on JSONL prompt files and built-in benchmarks.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model on {\"prompt\", \"answer\"} JSONL problems or built-in benchmarks: mean@k and best@k (JSON).",
        discussion: """
        Samples --k completions per problem (the first --problems, default all), each cut at an \
        EOS id of config.json, decoded and trimmed of surrounding whitespace; reward 1 when it \
        equals the trimmed "answer". Prints {"NAME": {"mean_at_k": x, "best_at_k": y, "k": K, \
        "problems": N}, ...}, one entry per --data (NAME the file's name without extension) \
        and per --benchmark (NAME the benchmark; its fixed eval split, see `chorus eval \
        --list`): mean_at_k is the mean \
        reward over all samples, best_at_k the fraction of problems with a correct sample. \
        Temperature 0 is greedy (the k samples are then identical). Deterministic given --seed \
        and --threads.
        """)

    @Option(name: .long, help: "A Hugging Face model directory (config.json + safetensors + tokenizer.json).")
    var model: String?

    @OptionGroup var workers: ThreadOptions

    // Numeric options parse their next argument unconditionally, so a negative value (`--k -1`)
    // reaches validate() and its one-line error instead of "missing value" and the usage text.

    @Option(help: "JSONL problems: one {\"prompt\": ..., \"answer\": ...} object per line (repeatable).")
    var data: [String] = []

    @Option(name: .customLong("benchmark"), help: "A built-in benchmark's eval split (repeatable; see --list).")
    var benchmarks: [String] = []

    @Flag(help: "Print the built-in benchmarks as JSON (as `chorus tasks list`) and exit.")
    var list = false

    @Option(parsing: .unconditional, help: "Samples per problem (1...\(EvalOptions.maxK)).")
    var k: Int = 8

    @Option(parsing: .unconditional, help: "Evaluate only the first N problems (default: all).")
    var problems: Int?

    @Option(help: "Seed of the samples (sample j of problem i has its own stream).")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Sampling temperature, finite, >= 0 (0 = greedy).")
    var temperature: Double = 1

    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Nucleus sampling mass in (0, 1].")
    var topP: Double = 1

    @Option(name: .customLong("max-tokens"), parsing: .unconditional, help: "Most tokens sampled per completion (1...\(EvalOptions.maxMaxTokens)).")
    var maxTokens: Int = 64

    var options: EvalOptions {
        EvalOptions(k: k, problems: problems, temperature: temperature, topP: topP, maxTokens: maxTokens, seed: seed)
    }

    /// Throws the option's own one-line error (a ValidationError would add the usage text).
    func validate() throws {
        if list { return }
        if model == nil { throw CLIError("--model: a model directory is required (except with --list)") }
        if data.isEmpty && benchmarks.isEmpty { throw CLIError("give --data FILE or --benchmark NAME (repeatable; --list shows the benchmarks)") }
        try options.validate()
    }

    func run() throws {
        if list { return emit(benchmarkListJSON()) }
        // Every problem set is read and named before the model loads, so a bad name fails fast.
        var sets = try data.map { try PromptDataset(contentsOf: URL(fileURLWithPath: $0)) }
        for name in benchmarks {
            do { sets.append(try Benchmark.named(name).dataset(split: .eval)) } catch { throw CLIError("--benchmark: \(error)") }
        }
        var names = Set<String>()
        for d in sets where !names.insert(d.name).inserted {
            throw CLIError("two problem sets are named '\(d.name)' (the output is keyed by name): give each once")
        }
        let dir = model!
        workers.configure()
        let m = try TransformerModel.load(directory: URL(fileURLWithPath: dir))
        let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("tokenizer.json"))
        let evaluators = try sets.map { try Evaluator(dataset: $0, tokenizer: tokenizer, options: options) }
        emit(JSONText.object(try evaluators.map { e in
            let r = try e.run(model: m)
            return (r.name, r.summaryJSON)
        }))
    }
}
