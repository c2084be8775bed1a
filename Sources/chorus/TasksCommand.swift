import ArgumentParser
import ChorusCore
import ChorusTasks
import Foundation

/// `chorus tasks`: the built-in verifiable benchmarks (list them, write their problems as JSONL).
struct TasksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "The built-in verifiable benchmarks: list them, or generate problems as JSONL.",
        subcommands: [TasksList.self, TasksGenerate.self])
}

/// The benchmarks as one JSON line: `[{"name":..,"description":..,"role":..,"eval_size":N},...]`
/// (`chorus tasks list` and `chorus eval --list`).
func benchmarkListJSON() -> String {
    JSONText.array(Benchmark.all.map { b in
        JSONText.object([("name", JSONText.string(b.name)), ("description", JSONText.string(b.description)),
                         ("role", JSONText.string(b.role.rawValue)), ("eval_size", "\(b.evalSize)")])
    })
}

/// `chorus tasks list`: name, description, role and eval-split size of every benchmark (JSON).
struct TasksList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Print the benchmarks as JSON: name, description, role (in-distribution, out-of-distribution, retention), eval_size.")

    func run() throws { emit(benchmarkListJSON()) }
}

/// `chorus tasks generate`: a seeded mixture of benchmarks written as prompt/completion/answer JSONL.
struct TasksGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write N problems of one or more benchmarks as {\"prompt\",\"completion\",\"answer\"} JSONL.",
        discussion: """
        Each --benchmark NAME[:WEIGHT] adds a benchmark (weight 1 by default); problems are \
        drawn from them in proportion to the weights, interleaved by a generator seeded with \
        --seed. The train split is an endless stream from --seed that never yields a prompt \
        of the eval split; the eval split is each benchmark's fixed set (--seed then only \
        interleaves). completion = answer, so the file is `chorus sft` data ([data] train) as \
        well as `chorus eval --data` / `chorus train` prompts. The file is written atomically. \
        Prints {"output": FILE, "split": S, "count": N, "benchmarks": {NAME: n, ...}}.
        """)

    @Option(name: .customLong("benchmark"), help: "NAME or NAME:WEIGHT (repeatable); see `chorus tasks list`.")
    var benchmarks: [String] = []

    @Option(help: "train (a stream from --seed, disjoint from eval) or eval (the fixed evaluation set).")
    var split: String = "train"

    @Option(parsing: .unconditional, help: "Number of problems (1...\(Benchmark.maxCount)).")
    var count: Int

    @Option(help: "Seed of the train stream and of the interleaving.")
    var seed: UInt64 = 0

    @Option(help: "The JSONL file to write (its directory must exist).")
    var output: String

    func validate() throws {
        if benchmarks.isEmpty { throw CLIError("--benchmark: give at least one (known: \(Benchmark.names.joined(separator: ", ")))") }
        if Benchmark.Split(rawValue: split) == nil { throw CLIError("--split must be train or eval, got '\(split)'") }
        if count < 1 || count > Benchmark.maxCount { throw CLIError("--count must be in 1...\(Benchmark.maxCount), got \(count)") }
    }

    func run() throws {
        let mixture: BenchmarkMixture
        do { mixture = try BenchmarkMixture(specs: benchmarks) } catch { throw CLIError("--benchmark: \(error)") }
        let counts = try mixture.write(split: Benchmark.Split(rawValue: split)!, count: count, seed: seed,
                                       to: URL(fileURLWithPath: output))
        emit(JSONText.object([("output", JSONText.string(RawArguments.restorePaths(output))), ("split", JSONText.string(split)),
                              ("count", "\(count)"),
                              ("benchmarks", JSONText.object(counts.map { ($0.benchmark, "\($0.count)") }))]))
    }
}
