import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTokenizer
import Foundation

extension OnPolicyConfig.EvalSettings {
    /// Reads an `[eval]` table (the keys of `OnPolicyConfig`'s doc comment); shared by `chorus
    /// train` and `chorus sft` run files. `defaultMaxTokens` is `eval.max_tokens` when absent.
    static func read(_ e: ConfigTable, defaultMaxTokens: Int, resolve: (String) -> URL) throws -> Self {
        let data = try e.string("data").map(resolve)
        let benchmarks = try e.strings("benchmarks") ?? []
        for (i, b) in benchmarks.enumerated() where !Benchmark.names.contains(b) {
            throw e.error("benchmarks", "element \(i): \"\(b)\" is not one of: \(Benchmark.names.joined(separator: ", "))")
        }
        if Set(benchmarks).count != benchmarks.count { throw e.error("benchmarks", "names a benchmark twice") }
        if let data, benchmarks.contains(data.deletingPathExtension().lastPathComponent) {
            throw e.error("data", "has the name of a benchmark in eval.benchmarks (rows are keyed by name); rename the file")
        }
        if data == nil && benchmarks.isEmpty { throw e.error("data", "missing required key (or give eval.benchmarks = [\"add3\", ...])") }
        let settings = Self(
            data: data, benchmarks: benchmarks,
            every: try e.int("every", min: 1) ?? 10, k: try e.int("k", min: 1, max: 1024) ?? 4,
            problems: try e.int("problems", min: 1), temperature: try e.double("temperature", min: 0, max: 100) ?? 0,
            topP: try e.double("top_p", min: 1e-6, max: 1) ?? 1,
            maxTokens: try e.int("max_tokens", min: 1, max: EvalOptions.maxMaxTokens) ?? min(defaultMaxTokens, EvalOptions.maxMaxTokens))
        try e.finish()
        return settings
    }

    /// The evaluation sets: the `data` file (if any), then each benchmark's eval split.
    public func datasets() throws -> [PromptDataset] {
        try (data.map { [try PromptDataset(contentsOf: $0)] } ?? []) + benchmarks.map { try Benchmark.named($0).dataset(split: .eval) }
    }

    /// One evaluator per set, sampling with seeds derived from the run's `seed` (so two runs of
    /// one seed, whatever their trainer, draw the same evaluation samples); `prefix` goes before
    /// every prompt (a control-token student's routing token).
    public func evaluators(tokenizer: Tokenizer, seed: UInt64, prefix: [Int] = []) throws -> [Evaluator] {
        try datasets().map { set in
            do {
                return try Evaluator(
                    dataset: set, tokenizer: tokenizer,
                    options: EvalOptions(k: k, problems: problems, temperature: temperature, topP: topP,
                                         maxTokens: maxTokens, seed: seed ^ 0xE7A1_5EED),
                    promptPrefix: prefix)
            } catch let error as EvalError {
                // The evaluator speaks in `chorus eval`'s flags; a run file names its keys.
                if case let .tooFewProblems(path, have, want) = error {
                    throw ConfigFileError(path, "eval.problems = \(want), but the " + (benchmarks.contains(path) ? "benchmark's eval split" : "file")
                                                + " holds \(have) problems")
                }
                throw error
            }
        }
    }

    /// The `[eval]` table that reads back as these settings (absolute paths), for generated run files.
    public var tomlTable: String {
        var lines = ["[eval]"]
        if let data { lines.append("data = \(tomlString(data.path))") }
        if !benchmarks.isEmpty { lines.append("benchmarks = [" + benchmarks.map(tomlString).joined(separator: ", ") + "]") }
        lines += ["every = \(every)", "k = \(k)"]
        if let problems { lines.append("problems = \(problems)") }
        lines += ["temperature = \(temperature)", "top_p = \(topP)", "max_tokens = \(maxTokens)"]
        return lines.joined(separator: "\n")
    }
}

/// A TOML basic string of `s` (`\`, `"` and control characters escaped).
func tomlString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\u%04X", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Evaluation during training, shared by the trainers: every evaluator on the current model at
/// step 0 (once, also when a run killed before its first checkpoint is resumed), every `every`
/// steps and after the last, each as a metrics row `{"step": s, "eval": {NAME: {...}, ...},
/// "eval_seconds": t}` (sets in `[eval]` order). It reads the f32 model and the evaluators' own
/// seeds only, so a run with evaluations trains exactly as one without.
public final class PeriodicEvaluation {
    /// The evaluations, one per set.
    public let evaluators: [Evaluator]
    let model: TransformerModel
    let stopTokens: Set<Int>
    unowned let loop: OptimizationLoop
    /// The evaluator's own scratch, so an evaluation leaves the trainer's workspaces as they were.
    let workspace = ForwardWorkspace()

    /// Evaluates `model` (the loop's) with `evaluators`; completions end at `stopTokens`.
    public init(evaluators: [Evaluator], model: TransformerModel, stopTokens: Set<Int>, loop: OptimizationLoop) {
        self.evaluators = evaluators
        self.model = model
        self.stopTokens = stopTokens
        self.loop = loop
    }

    /// Evaluates step 0 when the run has no step-0 row yet and hooks the loop's `afterStep`
    /// (cleared by `detach`). The progress line shows the latest evaluation.
    public func attach(every: Int) throws {
        guard !evaluators.isEmpty else { return }
        let steps = loop.options.steps
        let logged = loop.run.evalSteps()
        if let last = logged.last { loop.progressFields = [("eval", String(format: "%.3f", last.meanAtK))] }
        if loop.state.step == 0 && !logged.contains(where: { $0.step == 0 }) { try evaluate(step: 0) }
        loop.afterStep = { [unowned self] s in
            if s % every == 0 || s == steps { try self.evaluate(step: s) }
        }
    }

    /// Unhooks the loop.
    public func detach() { loop.afterStep = nil }

    /// Runs every evaluator and logs the row for `step`.
    public func evaluate(step: Int) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let results = try evaluators.map { try $0.run(model: model, stopTokens: stopTokens, workspace: workspace) }
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        loop.appendRow([("step", .int(step)), ("eval", .raw(JSONText.object(results.map { ($0.name, $0.summaryJSON) }))),
                        ("eval_seconds", .double(dt))])
        loop.progressFields = results.count == 1 ? [("eval", String(format: "%.3f", results[0].scores.meanAtK))]
            : results.map { ("eval " + $0.name, String(format: "%.3f", $0.scores.meanAtK)) }
    }
}
