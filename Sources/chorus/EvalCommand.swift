import ArgumentParser
import ChorusTasks
import ChorusTokenizer
import Foundation

/// `chorus eval`: mean@k and best@k of a model on a JSONL prompt file.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model on {\"prompt\", \"answer\"} JSONL problems: mean@k and best@k (JSON).",
        discussion: """
        Samples --k completions per problem (the first --problems, default all), each cut at an \
        EOS id of config.json, decoded and trimmed of surrounding whitespace; reward 1 when it \
        equals the trimmed "answer". Prints {"NAME": {"mean_at_k": x, "best_at_k": y, "k": K, \
        "problems": N}}, NAME the data file's name without extension: mean_at_k is the mean \
        reward over all samples, best_at_k the fraction of problems with a correct sample. \
        Temperature 0 is greedy (the k samples are then identical). Deterministic given --seed \
        and --threads.
        """)

    @OptionGroup var model: ModelOptions

    // Numeric options parse their next argument unconditionally, so a negative value (`--k -1`)
    // reaches validate() and its one-line error instead of "missing value" and the usage text.

    @Option(help: "JSONL problems: one {\"prompt\": ..., \"answer\": ...} object per line.")
    var data: String

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
    func validate() throws { try options.validate() }

    func run() throws {
        let dataset = try PromptDataset(contentsOf: URL(fileURLWithPath: data))
        let m = try model.load()
        let tokURL = URL(fileURLWithPath: model.model).appendingPathComponent("tokenizer.json")
        let evaluator = try Evaluator(dataset: dataset, tokenizer: try Tokenizer(contentsOf: tokURL), options: options)
        emit(try evaluator.run(model: m).json)
    }
}
