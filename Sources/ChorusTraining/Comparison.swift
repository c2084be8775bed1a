import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTeachers
import ChorusTensor
import ChorusTokenizer
import Foundation

/// Errors of `chorus compare` (one line each, naming the option or path).
public enum ComparisonError: Error, CustomStringConvertible, Equatable {
    case unknownAggregator(String)
    case unknownBaseline(String)
    case duplicateLabel(String)
    case noAggregators
    case badSeeds(Int)
    case badSteps(Int)
    case outputNotDirectory(String)
    case outputNotEmpty(String)
    case badPlan(String, String)
    case planMismatch(String, String)
    case baseline(String, String)
    /// A `--sweep` argument (or one of its values) that cannot be run, and why.
    case sweep(String, String)
    /// `--sweep` together with `--aggregators` or `--baselines`.
    case sweepWithStrategies
    /// More runs than `Comparison.maxSweepRuns`.
    case tooManySweepRuns(Int)

    public var description: String {
        switch self {
        case let .unknownAggregator(n):
            return "--aggregators: unknown aggregator '\(n)' (valid: \(AggregatorFactory.names.joined(separator: ", ")))"
        case let .unknownBaseline(n):
            return "--baselines: unknown baseline '\(n)' (valid: \(ComparisonBaseline.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .duplicateLabel(n): return "'\(n)' is listed twice"
        case .noAggregators: return "--aggregators: give at least one aggregator (valid: \(AggregatorFactory.names.joined(separator: ", "))), or sweep run-file keys with --sweep KEY=V1,V2,..."
        case let .badSeeds(n): return "--seeds must be in 1...\(Comparison.maxSeeds), got \(n)"
        case let .badSteps(n): return "--steps must be in 1...\(Comparison.maxSteps), got \(n)"
        case let .outputNotDirectory(p): return "\(p): --output exists and is not a directory"
        case let .outputNotEmpty(p):
            return "\(p): --output is not empty and holds no \(ComparisonPlan.fileName) (not a compare output); choose an empty or new directory"
        case let .badPlan(p, why): return "\(p): unreadable compare plan: \(why)"
        case let .planMismatch(p, why):
            return "\(p): this output holds a different comparison (\(why)); re-run with the original arguments to continue it, or choose another --output"
        case let .baseline(label, why): return "baseline \(label): \(why)"
        case let .sweep(arg, why): return "--sweep \(arg): \(why)"
        case .sweepWithStrategies:
            return "--sweep cannot be combined with --aggregators or --baselines: a sweep varies run-file keys around the run file's own recipe (sweep teachers.aggregator to vary the strategy)"
        case let .tooManySweepRuns(n):
            return "--sweep: \(n) runs (seeds × (1 + every listed value)) exceed the limit of \(Comparison.maxSweepRuns); sweep fewer values or seeds"
        }
    }
}

/// The off-policy baselines OPD is held against, each trained to the same number of response
/// tokens as the default strategy's run of the same seed (docs/compare.md).
public enum ComparisonBaseline: String, CaseIterable, Sendable {
    /// SFT of the student on samples of the strongest teacher (sequence-level distillation).
    case sftTeacher = "sft-teacher"
    /// SFT of the student on its own samples that `ExactMatch` marks correct.
    case sftSelf = "sft-self"
}

/// What a compare output was started with (OUTPUT/compare-plan.json): a re-run continues it only
/// with the same run file text (after `--set`) and the same lists, sweeps, seeds and steps.
public struct ComparisonPlan: Codable, Equatable, Sendable {
    /// The plan file's name inside OUTPUT.
    public static let fileName = "compare-plan.json"
    /// The plan format's version.
    public var version = 1
    /// The run file's path as given (informational: the text is what must match).
    public var runFile: String
    /// The run file's text after the `--set` overrides.
    public var runFileText: String
    /// `--aggregators`, `--baselines`, `--seeds` and `--steps` (nil: the run file's) as given.
    public var aggregators: [String]
    public var baselines: [String]
    public var seeds: Int
    public var steps: Int?
    /// Each `--sweep` as `KEY=V1,V2,...` (values trimmed); nil (absent from the file) for a
    /// comparison of strategies, so their plans read as before.
    public var sweeps: [String]? = nil

    enum CodingKeys: String, CodingKey {
        case version, runFile = "run_file", runFileText = "run_file_text", aggregators, baselines, seeds, steps, sweeps
    }

    /// The first field in which `other` (the re-run) differs, described; nil when equal.
    func difference(_ other: ComparisonPlan) -> String? {
        if runFileText != other.runFileText { return "it was made from a different run file or --set overrides: \(runFile)" }
        func list(_ l: [String]) -> String { l.isEmpty ? "(none)" : l.joined(separator: ",") }
        if aggregators != other.aggregators { return "--aggregators was \(list(aggregators)), now \(list(other.aggregators))" }
        if baselines != other.baselines { return "--baselines was '\(baselines.joined(separator: ","))', now '\(other.baselines.joined(separator: ","))'" }
        if sweeps != other.sweeps {
            func said(_ s: [String]?) -> String { s.map { $0.map { "--sweep " + $0 }.joined(separator: " ") } ?? "(no --sweep)" }
            return "the sweeps were \(said(sweeps)), now \(said(other.sweeps))"
        }
        if seeds != other.seeds { return "--seeds was \(seeds), now \(other.seeds)" }
        if steps != other.steps { return "--steps was \(steps.map(String.init) ?? "(the run file's)"), now \(other.steps.map(String.init) ?? "(the run file's)")" }
        return nil
    }
}

/// `chorus compare`: every listed aggregation strategy (and baseline) trained from the same
/// seeds, one normal run directory each (OUTPUT/LABEL/seed-S/), then a table of their
/// evaluations, final train KL and stability flags (docs/compare.md).
///
/// A strategy's run file is the given one with `[teachers] aggregator`, `[train] seed` (the run
/// file's seed + i for the i-th seed), `steps` (`--steps`), `[output] dir`, `[teachers] cache`
/// (the run file's, else OUTPUT/cache, shared by every run) and every path made absolute, so
/// `chorus train OUTPUT/L/seed-S/run.toml --resume OUTPUT/L/seed-S` continues any of them.
/// Runs of one seed draw the same prompts and sampling seeds, so their first step's rollouts
/// are identical and the second strategy's first step is served by the cache.
///
/// With `--sweep KEY=V1,V2,...` it varies run-file keys instead: the run file's own recipe runs
/// once per seed (`default`, shared by every axis) and every value that changes it once per
/// seed (`KEY=VALUE`), each run file the default's with that one key set.
public final class Comparison {
    /// Most seeds per strategy.
    public static let maxSeeds = 100
    /// Most steps per run (`--steps`).
    public static let maxSteps = 10_000_000
    /// Full-vocabulary runs of a vocabulary at most this size keep whole distributions in the
    /// cache (`teachers.cache_top_k = V`), so a cache hit trains on the exact rows up to the
    /// record's precision rather than a top-20 approximation (docs/compare.md: the order effect).
    public static let fullRecordVocabularyLimit = 4096

    /// One run of the comparison.
    public struct Run: Sendable {
        /// The strategy (aggregator name) or baseline name; in a sweep `default` or `KEY=VALUE`.
        public var label: String
        /// The baseline, nil for a strategy.
        public var baseline: ComparisonBaseline?
        /// The i-th seed (0-based) and the run's `train.seed`.
        public var seedIndex: Int
        public var seed: UInt64
        /// OUTPUT/LABEL/seed-S (a sweep label made filesystem-safe: `Comparison.directoryName`).
        public var directory: URL
        /// A strategy's run file text (baselines: made when the run starts, from the samples).
        public var text: String?
    }

    /// What this comparison runs (written to OUTPUT/compare-plan.json by `run`).
    public let plan: ComparisonPlan
    /// OUTPUT.
    public let output: URL
    /// The run file after `--set`, as parsed.
    public let base: OnPolicyConfig
    /// The label the others are compared with: the run file's aggregator if listed, else the
    /// first; in a sweep `defaultSweepLabel` (the run file's own recipe).
    public let defaultLabel: String
    /// Strategies first, then baselines; in a sweep the default, then every axis's values that
    /// change the recipe (`KEY=VALUE`), in the order given. Each with its seeds.
    public let labels: [String]
    /// Every run, in execution order: seed-major (all labels of seed 0, then seed 1, …), so a
    /// baseline follows the default strategy's run of its seed.
    public let runs: [Run]
    /// Per-label changes to the run file beyond the aggregator, said once at the start.
    public let changes: [String: [String]]
    /// The sweeps (`--sweep`), one axis each; empty for a comparison of strategies.
    public let axes: [SweepAxis]
    /// Where progress lines go (stderr in the CLI).
    public var log: (String) -> Void = { _ in }
    /// Show each run's own progress line.
    public var showRunProgress = false
    /// Stop (as if interrupted) after this many training steps in this process (tests).
    public var stopAfterSteps: Int?
    /// The directory of the shared score cache.
    public let cacheDirectory: URL
    /// The student's vocabulary size.
    let vocabularySize: Int

    /// Validates everything before any work: names, counts, the run file and every run's
    /// child run file, and OUTPUT (new, empty, or a compare output of this same plan).
    ///
    /// Either `aggregators` (and `baselines`): every strategy from the same seeds; or `sweeps`
    /// (`KEY=V1,V2,...` each): the run file's own recipe once per seed, labelled
    /// `Comparison.defaultSweepLabel`, and one run per seed for every value that changes the
    /// recipe, labelled `KEY=VALUE` (docs/compare.md, "Sweeps").
    public init(runFile: URL, overrides: [String] = [], aggregators: [String] = [], baselines: [String] = [],
                sweeps: [String] = [], seeds: Int = 1, steps: Int? = nil, output: URL) throws {
        if !sweeps.isEmpty && !(aggregators.isEmpty && baselines.isEmpty) { throw ComparisonError.sweepWithStrategies }
        if sweeps.isEmpty && aggregators.isEmpty { throw ComparisonError.noAggregators }
        for a in aggregators where !AggregatorFactory.names.contains(a) { throw ComparisonError.unknownAggregator(a) }
        for b in baselines where ComparisonBaseline(rawValue: b) == nil { throw ComparisonError.unknownBaseline(b) }
        var seen = Set<String>()
        for l in aggregators + baselines where !seen.insert(l).inserted { throw ComparisonError.duplicateLabel(l) }
        if seeds < 1 || seeds > Self.maxSeeds { throw ComparisonError.badSeeds(seeds) }
        if let s = steps, s < 1 || s > Self.maxSteps { throw ComparisonError.badSteps(s) }
        let parsed = try Self.checkSweeps(sweeps, overrides: overrides, seeds: seeds, steps: steps)
        base = try OnPolicyConfig(contentsOf: runFile, overrides: overrides)
        if steps != nil && base.epochs != nil {
            throw ConfigFileError(runFile.path, "--steps cannot be combined with data.epochs (the run length is given in epochs); remove one of the two")
        }
        plan = ComparisonPlan(runFile: runFile.path, runFileText: base.text, aggregators: aggregators, baselines: baselines,
                              seeds: seeds, steps: steps, sweeps: sweeps.isEmpty ? nil : parsed.map { $0.key + "=" + $0.values.joined(separator: ",") })
        self.output = output
        cacheDirectory = base.cache ?? output.appendingPathComponent("cache", isDirectory: true)
        vocabularySize = try ModelConfig(contentsOf: base.student.appendingPathComponent("config.json")).vocabSize
        if !baselines.isEmpty {
            if base.eval == nil { throw ComparisonError.baseline(baselines[0], "needs an [eval] table in the run file (its rows are what a baseline is compared by)") }
        }
        if baselines.contains(ComparisonBaseline.sftSelf.rawValue), base.prompts != nil {
            // sft-self keeps the samples ExactMatch marks correct: every prompt needs an answer.
            let set = try base.promptDataset()
            if let p = set.records.first(where: { $0.answer == nil }) {
                throw ComparisonError.baseline("sft-self", "\(set.path):\(p.line): no \"answer\" field (sft-self keeps the student's correct samples)")
            }
        }
        // What each label trains from: a strategy, the default recipe, or a sweep's variant.
        var recipes: [(label: String, config: OnPolicyConfig, aggregator: String)] = []
        if sweeps.isEmpty {
            defaultLabel = aggregators.contains(base.aggregator) ? base.aggregator : aggregators[0]
            labels = aggregators + baselines
            axes = []
            let config = base
            recipes = aggregators.map { ($0, config, $0) }
        } else {
            let (axes, variants) = try Self.sweepRecipes(parsed, base: base, runFile: runFile)
            defaultLabel = Self.defaultSweepLabel
            labels = [Self.defaultSweepLabel] + variants.map(\.label)
            self.axes = axes
            recipes = [(Self.defaultSweepLabel, base, base.aggregator)] + variants.map { ($0.label, $0.config, $0.config.aggregator) }
        }
        try Self.checkOutput(output, plan: plan)

        // Strategies keep their names as directories; a sweep label (`curriculum.stage[1].at=0.3`) is made filesystem-safe.
        var directories: [String: String] = [:]
        for (i, label) in labels.enumerated() {
            directories[label] = sweeps.isEmpty ? label : Self.directoryName(label, index: i, taken: Set(directories.values))
        }
        var runs: [Run] = [], changes: [String: [String]] = [:]
        for i in 0..<seeds {
            let seed = base.opt.seed + UInt64(i)
            for label in labels {
                let dir = output.appendingPathComponent(directories[label]!, isDirectory: true).appendingPathComponent("seed-\(seed)", isDirectory: true)
                if let b = ComparisonBaseline(rawValue: label) {
                    runs.append(Run(label: label, baseline: b, seedIndex: i, seed: seed, directory: dir, text: nil))
                    continue
                }
                let recipe = recipes.first { $0.label == label }!
                let text: String, said: [String]
                do {
                    let vocabulary = recipe.config.student == base.student
                        ? vocabularySize : try ModelConfig(contentsOf: recipe.config.student.appendingPathComponent("config.json")).vocabSize
                    (text, said) = try Self.childText(base: recipe.config, runFile: runFile, aggregator: recipe.aggregator, seed: seed, steps: steps,
                                                      directory: dir, cache: cacheDirectory, vocabularySize: vocabulary)
                } catch let e where !sweeps.isEmpty && label != Self.defaultSweepLabel {
                    // A variant's own problem (its run file with --steps, its student): named by its value.
                    throw ComparisonError.sweep(label, "\(e)")
                }
                changes[label] = said
                runs.append(Run(label: label, baseline: nil, seedIndex: i, seed: seed, directory: dir, text: text))
            }
        }
        self.runs = runs
        self.changes = changes
    }

    /// The sweeps' syntax and counts, before the run file is read: each argument parsed
    /// (`parseSweep`), no key swept twice or also given to `--set`, no key compare sets itself,
    /// and at most `maxSweepRuns` runs.
    static func checkSweeps(_ sweeps: [String], overrides: [String], seeds: Int, steps: Int?) throws -> [(key: String, values: [String])] {
        let parsed = try sweeps.map(parseSweep)
        func bare(_ k: String) -> String { k.filter { !$0.isWhitespace } }
        let setKeys = Set(overrides.compactMap { o in o.firstIndex(of: "=").map { bare(String(o[..<$0])) } })
        var keys = Set<String>()
        for (arg, p) in zip(sweeps, parsed) {
            if !keys.insert(bare(p.key)).inserted { throw ComparisonError.sweep(arg, "\(p.key) is swept twice; give all its values in one --sweep") }
            if setKeys.contains(bare(p.key)) { throw ComparisonError.sweep(arg, "\(p.key) is also given to --set; the sweep's default is the run file's value, so give it there (or drop the --set)") }
            if let why = reservedSweepKeys[bare(p.key)] { throw ComparisonError.sweep(arg, "\(p.key) cannot be swept: \(why)") }
            if bare(p.key) == "train.steps", steps != nil { throw ComparisonError.sweep(arg, "train.steps cannot be swept together with --steps (which sets every run's train.steps)") }
        }
        // Counted with every listed value (one of them may turn out to be the default recipe).
        let (runs, overflow) = seeds.multipliedReportingOverflow(by: 1 + parsed.reduce(0) { $0 + $1.values.count })
        if !parsed.isEmpty && (overflow || runs > maxSweepRuns) { throw ComparisonError.tooManySweepRuns(overflow ? Int.max : runs) }
        return parsed
    }

    /// Every sweep value's run file (the run file after `--set`, with `KEY = VALUE`), parsed and
    /// validated as `chorus train` would; the axes with their rows, and the values that change
    /// the recipe (label `KEY=VALUE`, their configuration) in order. A value that parses to the
    /// default recipe's configuration becomes the axis's default row; two values of one key with
    /// the same configuration, or an axis with no value besides the default, are refused.
    static func sweepRecipes(_ parsed: [(key: String, values: [String])], base: OnPolicyConfig, runFile: URL) throws
        -> (axes: [SweepAxis], variants: [(label: String, config: OnPolicyConfig)]) {
        let recipe = configurationFingerprint(base, ignoring: ["text"])
        var axes: [SweepAxis] = [], variants: [(label: String, config: OnPolicyConfig)] = []
        for (key, values) in parsed {
            var rows: [SweepAxis.Row] = [], byConfiguration: [String: String] = [:]
            for v in values {
                let arg = key + "=" + v
                let variant: OnPolicyConfig
                do {
                    let text = try applyOverrides([arg], to: base.text, file: runFile.path, option: "--sweep")
                    variant = try OnPolicyConfig(text: text, file: runFile.path, base: PathStandIns.directory(of: runFile))
                    // Files the value names that the default recipe does not: read now, not when its turn comes.
                    if variant.pool != base.pool { _ = try PoolManifest.load(contentsOf: variant.pool) }
                    if variant.prompts != base.prompts || variant.benchmark != base.benchmark { _ = try variant.promptDataset() }
                    if variant.eval?.data != base.eval?.data { _ = try variant.evalDatasets() }
                } catch { throw ComparisonError.sweep(arg, "\(error)") }
                let fingerprint = configurationFingerprint(variant, ignoring: ["text"])
                if let other = byConfiguration[fingerprint] {
                    throw ComparisonError.sweep(arg, fingerprint == recipe
                        ? "gives the default recipe's configuration, as \(key)=\(other) does (the same setting written twice, or a key with no effect under the run file's other settings); list each setting once"
                        : "gives the same run configuration as \(key)=\(other) (the same setting written twice); list each setting once")
                }
                byConfiguration[fingerprint] = v
                if fingerprint == recipe {
                    rows.append(SweepAxis.Row(value: v, label: defaultSweepLabel, isDefault: true))
                } else {
                    rows.append(SweepAxis.Row(value: v, label: arg, isDefault: false))
                    variants.append((arg, variant))
                }
            }
            let axis = key + "=" + values.joined(separator: ",")
            if rows.allSatisfy(\.isDefault) {
                throw ComparisonError.sweep(axis, "every value gives the default recipe's configuration (the run file's own value, or a key with no effect under its other settings): nothing to compare")
            }
            if !rows.contains(where: \.isDefault) { rows.insert(SweepAxis.Row(value: nil, label: defaultSweepLabel, isDefault: true), at: 0) }
            axes.append(SweepAxis(key: key, values: values, runFileValue: runFileValue(of: key, text: base.text), rows: rows))
        }
        return (axes, variants)
    }

    /// Refuses an OUTPUT that is a file, or a non-empty directory that is not a compare output of
    /// the same plan.
    static func checkOutput(_ output: URL, plan: ComparisonPlan) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: output.path, isDirectory: &isDir) else { return }
        if !isDir.boolValue { throw ComparisonError.outputNotDirectory(output.path) }
        let entries = ((try? fm.contentsOfDirectory(atPath: output.path)) ?? []).filter { !$0.hasPrefix(".") }
        if entries.isEmpty { return }
        let planURL = output.appendingPathComponent(ComparisonPlan.fileName)
        guard entries.contains(ComparisonPlan.fileName) else { throw ComparisonError.outputNotEmpty(output.path) }
        let old: ComparisonPlan
        do { old = try JSONDecoder().decode(ComparisonPlan.self, from: try InputFile.read(planURL.path)) } catch let e as InputFileError {
            throw ComparisonError.badPlan(planURL.path, e.problem)
        } catch { throw ComparisonError.badPlan(planURL.path, "not a compare plan (\(error))") }
        if let why = old.difference(plan) { throw ComparisonError.planMismatch(output.path, why) }
    }

    /// A strategy's run file: the given text with the comparison's keys set (every path
    /// absolute), checked by parsing it. Returns the text and the changes beyond the aggregator,
    /// said once per strategy.
    static func childText(base: OnPolicyConfig, runFile: URL, aggregator: String, seed: UInt64, steps: Int?, directory: URL,
                          cache: URL, vocabularySize: Int) throws -> (String, [String]) {
        var sets = ["model.init=" + tomlString(base.student.path), "teachers.pool=" + tomlString(base.pool.path),
                    "teachers.aggregator=" + tomlString(aggregator), "teachers.cache=" + tomlString(cache.path),
                    "train.seed=\(seed)", "output.dir=" + tomlString(directory.path)]
        if let p = base.prompts { sets.append("data.prompts=" + tomlString(p.path)) }
        if let d = base.eval?.data { sets.append("eval.data=" + tomlString(d.path)) }
        if let s = steps { sets.append("train.steps=\(s)") }
        var said: [String] = []
        var full = base.fullVocabulary
        if aggregator == "control-token" && full {
            sets.append("objective.full_vocabulary=false")
            said.append("objective.full_vocabulary = false (control-token's routing tokens have no teacher probability)")
            full = false
        }
        // A cache_top_k the run file sets is kept (the fast, approximate choice); else small
        // vocabularies get whole rows in the records.
        let explicitTopK = (try? ConfigTable(string: base.text, file: runFile.path).table("teachers")?.has("cache_top_k")) == true
        if full && explicitTopK && base.cacheTopK < vocabularySize {
            said.append("teachers.cache_top_k = \(base.cacheTopK) kept from the run file: a strategy whose rollouts another run already scored trains on rows rebuilt from the top-\(base.cacheTopK)")
        } else if full && vocabularySize <= fullRecordVocabularyLimit && base.cacheTopK < vocabularySize {
            sets.append("teachers.cache_top_k=\(vocabularySize)")
            said.append("teachers.cache_top_k = \(vocabularySize) (cache records hold whole distributions, so cache hits train on exact rows)")
        }
        let file = directory.appendingPathComponent("run.toml").path
        // A [curriculum] table makes the run's aggregator "curriculum" (another one beside it is
        // refused), so the other strategies' run files leave it out.
        var source = base.text
        if base.curriculum != nil && aggregator != "curriculum" {
            source = try removingCurriculum(from: source, file: runFile.path)
            said.append("[curriculum] table left out (it belongs to the curriculum strategy)")
        }
        let text = try applyOverrides(sets, to: source, file: file)
        let child = try OnPolicyConfig(text: text, file: file, base: PathStandIns.directory(of: runFile))
        // The curriculum strategy needs its stages (run file or pool manifest): checked now, not
        // when its turn comes.
        if aggregator == "curriculum" { _ = try child.curriculum(manifest: try PoolManifest.load(contentsOf: child.pool)) }
        return (text, said)
    }

    // MARK: running

    /// Runs (or resumes, or skips when finished) every run in order. Returns false when stopped
    /// early (Ctrl-C, SIGTERM or `stopAfterSteps`): the finished steps are checkpointed and a
    /// re-run continues.
    @discardableResult
    public func run() throws -> Bool {
        try InputFile.createDirectory(output.path)
        let planURL = output.appendingPathComponent(ComparisonPlan.fileName)
        if !FileManager.default.fileExists(atPath: planURL.path) {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(try enc.encode(plan), to: planURL)
        }
        for label in labels { for c in changes[label] ?? [] { log("\(label): \(c)") } }
        for a in axes {
            for r in a.rows where r.isDefault && r.value != nil {
                log("sweep \(a.key): \(r.value!) gives the run file's own recipe, so its row is the \(Self.defaultSweepLabel) run")
            }
        }
        failures = [:]
        for (i, r) in runs.enumerated() {
            let head = "[\(i + 1)/\(runs.count)] \(r.label) seed \(r.seed)"
            var finished = true
            do {
                if let b = r.baseline { finished = try runBaseline(r, b, head: head) } else { finished = try runStrategy(r, head: head) }
            } catch let e as NonFiniteError {
                // A diverging strategy is a result: flag it and go on with the others.
                fail(r, head: head, "\(e)")
            } catch let ComparisonError.baseline(_, why) {
                fail(r, head: head, why)
            }
            if !finished { log("\(head): stopped; run the same command again to continue"); return false }
        }
        if !failures.isEmpty { log("\(failures.count) run\(failures.count == 1 ? "" : "s") failed (flagged in the table; a re-run retries them)") }
        return true
    }

    /// The runs of the last `run` that failed (a non-finite loss or weights, a baseline that
    /// could not be built), by directory path, with the reason; they are flagged `failed` in
    /// the table and their metrics left out of its numbers.
    public private(set) var failures: [String: String] = [:]

    func fail(_ r: Run, head: String, _ why: String) {
        failures[r.directory.path] = why
        log("\(head): failed: \(why)")
    }

    /// Steps this process may still train (nil: no limit).
    var remainingSteps: Int?

    func isFinished(_ dir: URL) -> Bool {
        FileManager.default.fileExists(atPath: dir.appendingPathComponent("final/model.safetensors").path)
    }

    func recordedText(_ dir: URL) -> String? { try? InputFile.readText(dir.appendingPathComponent("run.toml").path) }

    /// Trains `loop` via `train`, counting steps against `stopAfterSteps`; returns whether the run finished.
    func drive(_ loop: OptimizationLoop, head: String, train: () throws -> URL?) throws -> Bool {
        if remainingSteps == nil { remainingSteps = stopAfterSteps }
        let start = loop.state.step
        loop.showProgress = showRunProgress
        loop.stopAfter = remainingSteps
        let final = try train()
        if let r = remainingSteps { remainingSteps = max(0, r - (loop.state.step - start)) }
        if final != nil { log("\(head): finished") }
        return final != nil
    }

    func runStrategy(_ r: Run, head: String) throws -> Bool {
        let text = r.text!
        let recorded = recordedText(r.directory)
        if isFinished(r.directory) && recorded == text { log("\(head): already finished, skipped"); return true }
        if remainingSteps == 0 { return false }
        let cfg = try OnPolicyConfig(text: text, file: r.directory.appendingPathComponent("run.toml").path,
                                     base: PathStandIns.directory(of: URL(fileURLWithPath: plan.runFile)))
        let trainer = try OnPolicyTrainer(config: cfg, resume: recorded != nil ? r.directory : nil)
        log("\(head): " + (recorded == nil ? "starting" : "resuming at step \(trainer.loop.state.step)") + " (\(trainer.loop.options.steps) steps)")
        return try drive(trainer.loop, head: head) { try trainer.train() }
    }

    // MARK: baselines

    /// The step rows' response tokens of a finished run: Σ response_length × P·G (scaled up
    /// when rows were logged every N steps).
    func responseTokens(_ outcome: RunOutcome) -> Int {
        let rows = outcome.responseLengths
        guard !rows.isEmpty else { return 0 }
        let sum = rows.reduce(0, +) * Double(base.rolloutsPerStep)
        let steps = plan.steps ?? base.opt.steps
        return Int((sum * Double(max(steps, rows.count)) / Double(rows.count)).rounded())
    }

    func runBaseline(_ r: Run, _ b: ComparisonBaseline, head: String) throws -> Bool {
        let runToml = r.directory.appendingPathComponent("run.toml")
        if isFinished(r.directory) && recordedText(r.directory) != nil { log("\(head): already finished, skipped"); return true }
        if remainingSteps == 0 { return false }
        let cfg: SFTConfig, resume: Bool
        if recordedText(r.directory) != nil {
            cfg = try SFTConfig(contentsOf: runToml)
            resume = true
        } else {
            guard let defaultRun = runs.first(where: { $0.label == defaultLabel && $0.seed == r.seed }), isFinished(defaultRun.directory) else {
                throw ComparisonError.baseline(r.label, "the default strategy's run of seed \(r.seed) has not finished")
            }
            let budget = responseTokens(RunOutcome.read(defaultRun.directory))
            if budget < 1 { throw ComparisonError.baseline(r.label, "\(defaultRun.directory.path)/metrics.jsonl holds no response_length rows (the token budget)") }
            log("\(head): sampling (budget \(budget) response tokens, as \(defaultLabel) seed \(r.seed))")
            let text = try baselineText(r, b, budget: budget)
            cfg = try SFTConfig(text: text, file: runToml.path, base: r.directory)
            resume = false
        }
        let trainer = try SFTTrainer(config: cfg, resume: resume ? r.directory : nil)
        log("\(head): " + (resume ? "resuming at step \(trainer.step)" : "starting") + " (\(trainer.loop.options.steps) SFT steps)")
        return try drive(trainer.loop, head: head) { try trainer.train() }
    }

    /// The teacher sft-teacher samples from: the checkpoint teacher (same vocabulary as the
    /// student) with the best mean@k on the run's first eval set, with the run's `[eval]`
    /// options and seed; ties go to the later (stronger, in curriculum order) teacher. The
    /// choice is kept in OUTPUT/sft-teacher/teacher.json.
    func strongestTeacher(tokenizer: Tokenizer) throws -> (name: String, path: URL) {
        let memo = output.appendingPathComponent("sft-teacher/teacher.json")
        let manifest = try PoolManifest.load(contentsOf: base.pool)
        let candidates = manifest.teachers.filter { $0.kind == .checkpoint && !$0.crossTokenizer && $0.path != nil }
        if let data = try? Data(contentsOf: memo), let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
           let name = obj["teacher"] as? String, let t = candidates.first(where: { $0.name == name }) {
            return (name, t.path!)
        }
        guard let e = base.eval, let set = try e.datasets().first else {
            throw ComparisonError.baseline("sft-teacher", "needs an [eval] table to choose the strongest teacher")
        }
        var best: (name: String, path: URL, score: Double)?
        var scores: [(String, String)] = []
        for t in candidates {
            let model = try TransformerModel.load(directory: t.path!)
            if model.config.vocabSize != vocabularySize { continue }
            let ev = try Evaluator(dataset: set, tokenizer: tokenizer,
                                   options: EvalOptions(k: e.k, problems: e.problems, temperature: e.temperature, topP: e.topP,
                                                        maxTokens: e.maxTokens, seed: base.opt.seed ^ 0xE7A1_5EED))
            let m = try ev.run(model: model).scores.meanAtK
            scores.append((t.name, JSONText.number(m)))
            log("sft-teacher: \(t.name) mean@\(e.k) on \(set.name) = \(String(format: "%.3f", m))")
            if best == nil || m >= best!.score { best = (t.name, t.path!, m) }
        }
        guard let best else { throw ComparisonError.baseline("sft-teacher", "the pool has no local checkpoint teacher with the student's vocabulary") }
        try InputFile.createDirectory(memo.deletingLastPathComponent().path)
        try AtomicFile.write(Data(JSONText.object([("teacher", JSONText.string(best.name)), ("eval_set", JSONText.string(set.name)),
                                                   ("mean_at_k", JSONText.object(scores))]).utf8), to: memo)
        return (best.name, best.path)
    }

    /// Samples the baseline's data (OUTPUT/LABEL/seed-S/samples.jsonl) and returns its SFT run
    /// file: batch P·G, the OPD run's optimizer settings, the fewest steps whose completion
    /// tokens (in the order `SFTTrainer` draws them) reach `budget`, the run's `[eval]`.
    func baselineText(_ r: Run, _ b: ComparisonBaseline, budget: Int) throws -> String {
        let tok = try Tokenizer(contentsOf: base.student.appendingPathComponent("tokenizer.json"))
        var cfg = base
        cfg.opt.seed = r.seed
        if let s = plan.steps { cfg.opt.steps = s }
        let prompts = try cfg.promptDataset().records
        let modelDir: URL, keep: (PromptRecord, String) -> Bool
        switch b {
        case .sftTeacher:
            let t = try strongestTeacher(tokenizer: tok)
            modelDir = t.path
            keep = { _, _ in true }
            log("\(r.label) seed \(r.seed): sampling \(base.groupSize) completions of teacher \(t.name) per training prompt")
        case .sftSelf:
            modelDir = base.student
            let checker = ExactMatch()
            keep = { p, text in checker.reward(completion: text, problem: p) >= 1 }
        }
        let model = try TransformerModel.load(directory: modelDir)
        let (lines, drawn, longest) = try sample(model: model, tokenizer: tok, prompts: prompts, seed: r.seed, keep: keep)
        if lines.isEmpty {
            throw ComparisonError.baseline(r.label, "none of the \(drawn) samples was kept" + (b == .sftSelf ? " (the student answered no training prompt correctly)" : ""))
        }
        if b == .sftSelf { log("\(r.label) seed \(r.seed): \(lines.count) of \(drawn) student samples are correct") }
        try InputFile.createDirectory(r.directory.path)
        let samples = r.directory.appendingPathComponent("samples.jsonl")
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: samples)

        let batch = base.rolloutsPerStep
        let maxLength = max(2, longest)
        let (examples, _) = try loadSFTExamples(files: [samples], tokenizer: tok, maxLength: maxLength, eos: nil)
        var order = EpochOrder(count: examples.count, seed: r.seed)
        var tokens = 0, steps = 0
        while tokens < budget && steps < Self.maxSteps {
            for j in 0..<batch { tokens += examples[order.index(steps * batch + j)].responseLength }
            steps += 1
        }
        log("\(r.label) seed \(r.seed): \(steps) SFT steps of \(batch) sequences = \(tokens) completion tokens (budget \(budget))")
        let o = base.opt
        var micro = o.microBatch > 0 ? min(o.microBatch, batch) : batch
        while batch % micro != 0 { micro -= 1 }
        var lines2 = ["# chorus compare baseline \(r.label): SFT at the token budget of \(defaultLabel) seed \(r.seed) (\(budget) response tokens)",
                      "[model]", "init = " + tomlString(base.student.path), "",
                      "[data]", "train = " + tomlString(samples.path), "max_length = \(maxLength)", "",
                      "[train]", "steps = \(max(1, steps))", "batch_size = \(batch)", "micro_batch = \(micro)", "lr = \(o.lr)"]
        switch o.schedule {
        case .constant: lines2.append("schedule = \"constant\"")
        case let .linearWarmup(w): lines2 += ["schedule = \"linear-warmup\"", "warmup = \(w)"]
        case let .cosine(w, m): lines2 += ["schedule = \"cosine\"", "warmup = \(w)", "min_lr_ratio = \(m)"]
        }
        lines2 += ["weight_decay = \(Double(o.adam.weightDecay))", "beta1 = \(Double(o.adam.beta1))", "beta2 = \(Double(o.adam.beta2))",
                   "eps = \(Double(o.adam.eps))", "grad_clip = \(o.gradClip)", "seed = \(r.seed)",
                   "checkpoint_every = \(o.checkpointEvery)", "log_every = \(o.logEvery)"]
        if let t = o.threads { lines2.append("threads = \(t)") }
        if let e = base.eval { lines2 += ["", e.tomlTable] }
        lines2 += ["", "[output]", "dir = " + tomlString(r.directory.path), "keep_checkpoints = \(base.keepCheckpoints)", ""]
        return lines2.joined(separator: "\n")
    }

    /// G samples per prompt at the rollout settings (seeded per prompt and sample), as SFT
    /// lines `{"prompt", "completion"}`; a completion that ended with EOS keeps it (as text,
    /// which the tokenizer reads back as the special token). Returns the kept lines, the
    /// number drawn and the longest kept example in tokens.
    func sample(model: TransformerModel, tokenizer: Tokenizer, prompts: [PromptRecord], seed: UInt64,
                keep: (PromptRecord, String) -> Bool) throws -> ([String], Int, Int) {
        let G = base.groupSize
        let stops = Set(model.config.eosTokenIds)
        let params = SamplingParameters(temperature: Float(base.temperature), topP: Float(base.topP))
        let workspace = ForwardWorkspace()
        let per = max(1, 512 / G)
        var lines: [String] = [], drawn = 0, longest = 0
        for start in stride(from: 0, to: prompts.count, by: per) {
            let chunk = Array(start..<min(prompts.count, start + per))
            let ids = chunk.map { tokenizer.encode(prompts[$0].prompt) }
            let seeds = chunk.flatMap { i in (0..<G).map { Evaluator.sampleSeed(seed ^ 0x5F7_BA5E, problem: i, sample: $0) } }
            let gens = try model.generate(prompts: ids, samplesPerPrompt: G, maxTokens: base.maxTokens, params: params, seeds: seeds,
                                          stopTokens: stops, workspace: workspace)
            for (n, g) in gens.enumerated() {
                drawn += 1
                let p = prompts[chunk[n / G]]
                guard let text = completionText(g.response, stopTokens: stops, tokenizer: tokenizer), keep(p, text) else { continue }
                var completion = text
                if let last = g.response.last, stops.contains(last), let eos = tokenizer.idToToken(last) { completion += eos }
                lines.append(JSONText.object([("prompt", JSONText.string(p.prompt)), ("completion", JSONText.string(completion))]))
                longest = max(longest, ids[n / G].count + g.response.count)
            }
        }
        return (lines, drawn, longest)
    }

    // MARK: the table

    /// Reads every run's metrics (missing or damaged files become notes) and summarises them.
    public func summary() -> ComparisonSummary {
        let outcomes = runs.map { r -> RunOutcome in
            var o = RunOutcome.read(r.directory)
            if let why = failures[r.directory.path] {
                o.failure = why
                o.notes.append("\(r.label) seed \(r.seed) failed: \(why)")
            }
            return o
        }
        var sets: [(name: String, retention: Bool)] = []
        if let e = base.eval {
            if let d = e.data { sets.append((d.deletingPathExtension().lastPathComponent, false)) }
            for b in e.benchmarks { sets.append((b, (try? Benchmark.named(b).role) == .retention)) }
        }
        return ComparisonSummary(labels: labels, defaultLabel: defaultLabel, seeds: runs.filter { $0.label == labels[0] }.map(\.seed),
                                 runs: runs, outcomes: outcomes, evalSets: sets, axes: axes)
    }
}

/// What the table reads from one run's metrics.jsonl; reading never fails (a missing file or a
/// malformed line becomes a note).
public struct RunOutcome: Sendable {
    /// One eval row's entry for one set.
    public struct EvalPoint: Sendable, Equatable {
        /// The step the eval row was logged at (0: the initial model).
        public var step: Int
        /// mean@k and best@k of the set at that step.
        public var mean: Double
        public var best: Double
    }
    /// The run directory.
    public var directory: URL
    /// Eval points per set name, by step (a repeated step: the last row wins).
    public var evals: [String: [EvalPoint]] = [:]
    /// k of each set's mean@k.
    public var evalK: [String: Int] = [:]
    /// The step rows' `kl_k1`, `grad_norm` and `response_length`, in step order.
    public var kl: [Double] = []
    public var gradNorms: [Double] = []
    public var responseLengths: [Double] = []
    /// Skipped lines and missing files, one sentence each.
    public var notes: [String] = []
    /// Whether final/model.safetensors exists.
    public var finished = false
    /// Why the run failed in this compare (nil: it did not); its numbers are left out of the table.
    public var failure: String?

    /// Reads `directory`/metrics.jsonl.
    public static func read(_ directory: URL) -> RunOutcome {
        var out = RunOutcome(directory: directory)
        out.finished = FileManager.default.fileExists(atPath: directory.appendingPathComponent("final/model.safetensors").path)
        let url = directory.appendingPathComponent("metrics.jsonl")
        guard FileManager.default.fileExists(atPath: url.path) else { out.notes.append("\(url.path): missing (the run has not started)"); return out }
        let text: String
        do { text = try InputFile.readText(url.path) } catch { out.notes.append("\(error)"); return out }
        var steps: [Int: (kl: Double?, gn: Double?, len: Double?)] = [:]
        var evals: [String: [Int: EvalPoint]] = [:]
        var bad: [Int] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let step = (obj["step"] as? NSNumber)?.intValue else { bad.append(i + 1); continue }
            func number(_ v: Any?) -> Double? { (v as? NSNumber).map(\.doubleValue).flatMap { $0.isFinite ? $0 : nil } }
            if let e = obj["eval"] as? [String: Any] {
                for (name, v) in e {
                    guard let d = v as? [String: Any], let m = number(d["mean_at_k"]), let b = number(d["best_at_k"]) else { continue }
                    evals[name, default: [:]][step] = EvalPoint(step: step, mean: m, best: b)
                    if let k = (d["k"] as? NSNumber)?.intValue { out.evalK[name] = k }
                }
            } else if obj["loss"] != nil {
                steps[step] = (number(obj["kl_k1"]), number(obj["grad_norm"]), number(obj["response_length"]))
            }
        }
        if !bad.isEmpty {
            out.notes.append("\(url.path): skipped \(bad.count) malformed line\(bad.count == 1 ? "" : "s") (line \(bad.prefix(5).map(String.init).joined(separator: ", ")))")
        }
        for s in steps.keys.sorted() {
            let r = steps[s]!
            if let k = r.kl { out.kl.append(k) }
            if let g = r.gn { out.gradNorms.append(g) }
            if let l = r.len { out.responseLengths.append(l) }
        }
        out.evals = evals.mapValues { byStep in byStep.keys.sorted().map { byStep[$0]! } }
        return out
    }

    /// The run's table values: per set `NAME.mean.peak`, `NAME.mean.final`, `NAME.best.peak`,
    /// `NAME.best.final`, and `kl.final` (the mean `kl_k1` over the last 10% of step rows, at
    /// least one); a value the run did not log is absent.
    public var values: [String: Double] {
        var v: [String: Double] = [:]
        for (name, pts) in evals where !pts.isEmpty {
            v[name + ".mean.peak"] = pts.map(\.mean).max()
            v[name + ".mean.final"] = pts.last!.mean
            v[name + ".best.peak"] = pts.map(\.best).max()
            v[name + ".best.final"] = pts.last!.best
        }
        if !kl.isEmpty {
            let tail = kl.suffix(max(1, kl.count / 10))
            v["kl.final"] = tail.reduce(0, +) / Double(tail.count)
        }
        return v
    }

    /// The stability flags (`ComparisonStatistics`): `k1<0`, `gn-spike`, `collapse(SET)`.
    public func flags(retention: Set<String>) -> [String] {
        var f: [String] = []
        if failure != nil { f.append("failed") }
        if ComparisonStatistics.k1Negative(kl) { f.append("k1<0") }
        if !ComparisonStatistics.gradNormSpikes(gradNorms).isEmpty { f.append("gn-spike") }
        for name in evals.keys.sorted() where ComparisonStatistics.collapsed(evals[name]!.map(\.mean), retention: retention.contains(name)) {
            f.append("collapse(\(name))")
        }
        return f
    }
}

/// The comparison's table: per label, each value's mean ± std over seeds and the paired
/// comparison with the default strategy (a sweep: the default recipe); the flags; the runs'
/// notes. A sweep's table has one block per axis (`blocks`).
public struct ComparisonSummary {
    /// One column of the table.
    public struct Column: Sendable {
        /// The key in `RunOutcome.values`.
        public var key: String
        /// The header text.
        public var title: String
        /// Decimals shown.
        public var decimals: Int
    }

    /// One label's aggregate of one column.
    public struct Cell: Sendable {
        /// The per-seed values (seeds whose run logged the column), their mean and sample std.
        public var values: [Double]
        public var mean: Double
        public var std: Double
        /// Against the default strategy (nil for the default itself or without pairs).
        public var paired: ComparisonStatistics.PairedComparison?
    }

    /// The rows' labels (strategies, then baselines) and the one the others are paired with.
    public let labels: [String]
    public let defaultLabel: String
    /// The `train.seed` of each seed.
    public let seeds: [UInt64]
    /// Every run and what its metrics.jsonl held, in the same order.
    public let runs: [Comparison.Run]
    public let outcomes: [RunOutcome]
    /// Per eval set: mean@k peak, final, best@k peak, final; then the final train KL.
    public let columns: [Column]
    /// cells[label][column key].
    public let cells: [String: [String: Cell]]
    /// Flags per label: each flag with the number of seeds that raised it.
    public let flags: [String: [(flag: String, seeds: Int)]]
    /// Every note of every run.
    public let notes: [String]
    /// The sweep's axes (empty for a comparison of strategies).
    public let axes: [SweepAxis]

    /// One block of the table: a title line (nil for a comparison of strategies, whose table is
    /// one block) and its rows, the header first.
    public struct Block: Sendable {
        /// `sweep KEY: the default recipe has …`; nil for a comparison of strategies.
        public var title: String?
        /// The header row (`strategy` or the key, the columns, `flags`), then one row per line of the block.
        public var rows: [[String]]
    }

    init(labels: [String], defaultLabel: String, seeds: [UInt64], runs: [Comparison.Run], outcomes: [RunOutcome],
         evalSets: [(name: String, retention: Bool)], axes: [SweepAxis] = []) {
        self.axes = axes
        self.labels = labels
        self.defaultLabel = defaultLabel
        self.seeds = seeds
        self.runs = runs
        self.outcomes = outcomes
        var cols: [Column] = []
        for s in evalSets {
            let k = outcomes.compactMap { $0.evalK[s.name] }.first.map(String.init) ?? "k"
            cols += [Column(key: s.name + ".mean.peak", title: "\(s.name) mean@\(k) peak", decimals: 3),
                     Column(key: s.name + ".mean.final", title: "\(s.name) mean@\(k) final", decimals: 3),
                     Column(key: s.name + ".best.peak", title: "\(s.name) best@\(k) peak", decimals: 3),
                     Column(key: s.name + ".best.final", title: "\(s.name) best@\(k) final", decimals: 3)]
        }
        cols.append(Column(key: "kl.final", title: "train KL (k1, last 10%)", decimals: 4))
        columns = cols
        let retention = Set(evalSets.filter(\.retention).map(\.name))
        var values: [String: [UInt64: [String: Double]]] = [:]
        var flagCounts: [String: [String: Int]] = [:]
        for (r, o) in zip(runs, outcomes) where !o.evals.isEmpty || !o.kl.isEmpty || o.failure != nil {
            if o.failure == nil { values[r.label, default: [:]][r.seed] = o.values }
            for f in o.flags(retention: retention) { flagCounts[r.label, default: [:]][f, default: 0] += 1 }
        }
        var cells: [String: [String: Cell]] = [:]
        for label in labels {
            for c in cols {
                let per = seeds.compactMap { s in values[label]?[s]?[c.key].map { (s, $0) } }
                guard !per.isEmpty else { continue }
                let (m, sd) = ComparisonStatistics.meanStd(per.map(\.1))
                var paired: ComparisonStatistics.PairedComparison?
                if label != defaultLabel {
                    let diffs = per.compactMap { s, v in values[defaultLabel]?[s]?[c.key].map { v - $0 } }
                    if !diffs.isEmpty { paired = ComparisonStatistics.paired(diffs) }
                }
                cells[label, default: [:]][c.key] = Cell(values: per.map(\.1), mean: m, std: sd, paired: paired)
            }
        }
        self.cells = cells
        flags = flagCounts.mapValues { d in d.keys.sorted().map { ($0, d[$0]!) } }
        notes = outcomes.flatMap(\.notes)
    }

    /// A cell as text: the mean (± std with several seeds), `*` when the paired t test finds the
    /// difference from the default strategy significant; "—" when no run logged it.
    public func text(_ label: String, _ column: Column) -> String {
        guard let c = cells[label]?[column.key] else { return "—" }
        var s = String(format: "%.\(column.decimals)f", c.mean)
        if c.values.count > 1 { s += String(format: " ± %.\(column.decimals)f", c.std) }
        if c.paired?.significant == true { s += "*" }
        return s
    }

    /// The flags cell of a label: `k1<0`, or `k1<0 (2/3)` when not every seed raised it.
    public func flagText(_ label: String) -> String {
        let n = seeds.count
        let f = (flags[label] ?? []).map { $0.seeds == n || n == 1 ? $0.flag : "\($0.flag) (\($0.seeds)/\(n))" }
        return f.isEmpty ? "—" : f.joined(separator: " ")
    }

    /// The table as rows of cells, the header first: every label, one row each (a comparison of
    /// strategies: its whole table, the HTML report's summary; a sweep: see `blocks`).
    public var rows: [[String]] {
        [[axes.isEmpty ? "strategy" : "run"] + columns.map(\.title) + ["flags"]]
            + labels.map { l in [l == defaultLabel && axes.isEmpty ? l + " (default)" : l] + columns.map { text(l, $0) } + [flagText(l)] }
    }

    /// The table's blocks: a comparison of strategies is one untitled block (`rows`); a sweep has
    /// one per axis, headed by the key, a row per value (the default recipe's marked, and first
    /// when no value is the default), the default's cells being the shared default runs'.
    public var blocks: [Block] {
        if axes.isEmpty { return [Block(title: nil, rows: rows)] }
        return axes.map { a in
            let title = "sweep \(a.key): the default recipe has " + (a.runFileValue.map { "the run file's value \($0)" } ?? "the built-in value (the run file does not set it)")
            return Block(title: title, rows: [[a.key] + columns.map(\.title) + ["flags"]]
                         + a.rows.map { r in [a.rowName(r)] + columns.map { text(r.label, $0) } + [flagText(r.label)] })
        }
    }

    /// Rows as aligned text lines, a dashed line under the header.
    static func aligned(_ rows: [[String]]) -> [String] {
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
        var out = rows.map { r in r.indices.map { i in r[i].padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            .trimmingCharacters(in: .whitespaces) }
        out.insert(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "), at: 1)
        return out
    }

    /// The table as aligned text (a sweep: each block after its title line, blank lines
    /// between), with a legend line and the notes.
    public var table: String {
        var out: [String] = []
        for (i, b) in blocks.enumerated() {
            if i > 0 { out.append("") }
            if let t = b.title { out.append(t) }
            out += Self.aligned(b.rows)
        }
        out.append("")
        let against = axes.isEmpty ? defaultLabel : "the default recipe (the row marked default, the same runs in every block)"
        out.append(seeds.count > 1
                   ? "\(seeds.count) seeds (\(seeds.map(String.init).joined(separator: ", "))): mean ± sample std; * = differs from \(against) by a paired t test (two-sided 95%)."
                   : "1 seed (\(seeds.first.map(String.init) ?? "?")): no spread and no significance marks (use --seeds 3).")
        out.append("Flags: failed = the run stopped with an error (see the notes; its numbers are left out); k1<0 = a tenth of the run with negative mean k1 KL; gn-spike = grad norm > 10x the running median; collapse(SET) = mean@k fell below half its peak (or, retention sets, 10 points below step 0).")
        for n in notes { out.append("note: " + n) }
        return out.joined(separator: "\n") + "\n"
    }

    /// compare.json: labels, seeds, columns and every run's values and flags, each label's
    /// mean, std and paired comparison per column, and the notes; a sweep adds `sweeps`, its
    /// axes and their rows.
    public var json: String {
        func num(_ x: Double) -> String { JSONText.number(x) }
        let labelObjects = labels.map { l -> String in
            let runObjs = zip(runs, outcomes).filter { $0.0.label == l }.map { r, o in
                JSONText.object([("seed", "\(r.seed)"), ("directory", JSONText.string(r.directory.path)), ("finished", o.finished ? "true" : "false"),
                                 ("failure", o.failure.map(JSONText.string) ?? "null"),
                                 ("values", JSONText.object(o.values.keys.sorted().map { ($0, num(o.values[$0]!)) }))])
            }
            let cellObjs = columns.compactMap { c -> (String, String)? in
                guard let cell = cells[l]?[c.key] else { return nil }
                var f = [("mean", num(cell.mean)), ("std", num(cell.std)), ("values", JSONText.array(cell.values.map(num)))]
                if let p = cell.paired {
                    f += [("difference", num(p.meanDifference)), ("t", p.t.map(num) ?? "null"),
                          ("critical", p.critical.map(num) ?? "null"), ("significant", p.significant ? "true" : "false")]
                }
                return (c.key, JSONText.object(f))
            }
            return JSONText.object([("label", JSONText.string(l)), ("default", l == defaultLabel ? "true" : "false"),
                                    ("runs", JSONText.array(runObjs)), ("summary", JSONText.object(cellObjs)),
                                    ("flags", JSONText.array((flags[l] ?? []).map { JSONText.object([("flag", JSONText.string($0.flag)), ("seeds", "\($0.seeds)")]) }))])
        }
        var fields = [
            ("default", JSONText.string(defaultLabel)), ("seeds", JSONText.array(seeds.map { "\($0)" })),
            ("columns", JSONText.array(columns.map { JSONText.object([("key", JSONText.string($0.key)), ("title", JSONText.string($0.title))]) })),
            ("labels", JSONText.array(labelObjects)), ("notes", JSONText.array(notes.map(JSONText.string))),
        ]
        if !axes.isEmpty {
            // Each axis: its key, the run file's value (null: not set) and its rows in table
            // order, each naming the label (in "labels") whose runs it shows.
            fields.append(("sweeps", JSONText.array(axes.map { a in
                JSONText.object([("key", JSONText.string(a.key)), ("run_file_value", a.runFileValue.map(JSONText.string) ?? "null"),
                                 ("rows", JSONText.array(a.rows.map { r in
                                     JSONText.object([("value", r.value.map(JSONText.string) ?? "null"), ("label", JSONText.string(r.label)),
                                                      ("default", r.isDefault ? "true" : "false")])
                                 }))])
            })))
        }
        return JSONText.object(fields) + "\n"
    }

    /// Writes OUTPUT/table.txt and OUTPUT/compare.json (atomically).
    public func write(to output: URL) throws {
        try AtomicFile.write(Data(table.utf8), to: output.appendingPathComponent("table.txt"))
        try AtomicFile.write(Data(json.utf8), to: output.appendingPathComponent("compare.json"))
    }
}
