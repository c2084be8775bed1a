import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTeachers
import Foundation

/// A `chorus train` run file (on-policy distillation). Every table but `[model]`, `[teachers]`
/// and `[data]` is optional; unknown keys and out-of-range values are errors naming the key.
///
///     [model]       init = "DIR"                      the student (HF directory with tokenizer.json)
///     [teachers]    pool = "pool.toml", aggregator = "arithmetic", self_teacher = "frozen" | "follow",
///                   cache = "DIR", cache_top_k = 20, boundaries = [..] (hard switch),
///                   soft_switch_log_space = false
///     [data]        prompts = "file.jsonl" ({"prompt": ..., "answer": ..., other string fields}),
///                   or benchmark = "add3" (a built-in benchmark's train split, drawn with
///                   train.seed: train.steps × prompts_per_step problems (at most 10⁶), none
///                   of its eval split; see `chorus tasks list`) — exactly one of the two;
///                   epochs = N (instead of train.steps; prompts files only)
///     [rollout]     group_size = 4, prompts_per_step = 8, temperature = 1.0, top_p = 1.0,
///                   max_tokens = 64, precision = "f32" | "bf16" | "f16"
///     [objective]   divergence = "reverse-kl" | "forward-kl" | "jensen-shannon" | "hellinger" |
///                   "tsallis" | "naive-k3", tsallis_alpha = 0.5, full_vocabulary = false,
///                   gamma = 0.0, coefficient = 1.0, clip = 0 (off), whitening = "none" |
///                   "sample" | "group" | "batch", loss = "token-mean" | "sequence-mean",
///                   entropy_bonus = 0.0
///     [correction]  mode = "mask" | "truncate" | "none", lo = 0.5, hi = 2.0
///     [filter]      by = "none" | "kl" | "student-entropy" | "teacher-entropy", min = 0.0, max = 1.0
///     [train]       steps, lr, schedule, warmup, min_lr_ratio, weight_decay, beta1, beta2, eps,
///                   grad_clip, seed, threads, checkpoint_every, log_every, micro_batch
///     [eval]        data = "file.jsonl" and/or benchmarks = ["add3", "add4", "max3"] (their
///                   eval splits; at least one of the two), every = 10, k = 4, problems =
///                   (all), temperature = 0.0, top_p = 1.0, max_tokens = (rollout.max_tokens,
///                   at most 32768); each eval row holds one entry per set, keyed by the
///                   file's name without extension or the benchmark's name
///     [output]      dir = "runs/opd", keep_checkpoints = 2, rollouts_every = (eval.every, or
///                   50 without [eval]; 0 = off): record the rollouts of step 1, every N-th step
///                   and the last under dir/rollouts/ (`RolloutLog`, for `chorus inspect`)
///     [curriculum]  space = "arithmetic" | "geometric", transition = "step" | "linear", and
///                   [[curriculum.stage]] at = P, weights = { NAME = W, ... } (docs/curricula.md);
///                   the table makes the aggregator "curriculum" (another one is refused)
///
/// Relative paths are relative to the run file.
public struct OnPolicyConfig {
    public var student: URL
    public var pool: URL
    public var aggregator: String
    public var followSelfTeacher: Bool
    public var cache: URL?
    public var boundaries: [Double]?
    public var softSwitchLogSpace: Bool
    /// Top-k kept in the cache's records (`teachers.cache_top_k`, default 20). A hit rebuilds
    /// the rows from the top-k and a uniform tail; `chorus compare` sets it to V for small
    /// vocabularies so that full-vocabulary runs train on (nearly) exact rows from the cache.
    public var cacheTopK: Int
    /// The prompt file (`data.prompts`); nil when the prompts come from `benchmark`.
    public var prompts: URL?
    /// The built-in benchmark whose train split gives the prompts (`data.benchmark`).
    public var benchmark: String?
    public var epochs: Double?
    public var groupSize: Int
    public var promptsPerStep: Int
    public var temperature: Double
    public var topP: Double
    public var maxTokens: Int
    public var precision: SamplingPrecision
    public var divergence: Divergence
    public var fullVocabulary: Bool
    public var gamma: Double
    public var coefficient: Double
    public var clip: Double
    public var whitening: Whitening
    public var loss: LossAggregation
    public var entropyBonus: Double
    public var correction: CorrectionMode
    public var correctionLo: Double
    public var correctionHi: Double
    public var filter: FilterScore?
    public var filterMin: Double
    public var filterMax: Double
    public var opt: OptimizationConfig
    public var eval: EvalSettings?
    public var outputDir: URL
    public var keepCheckpoints: Int
    /// Record the rollouts of step 1, every this many steps and the last (0: never).
    public var rolloutsEvery: Int
    /// The run file text (recorded in the run directory).
    public var text: String
    /// The run file as errors name it.
    public var file: String
    /// The run file's `[curriculum]` (teacher names not yet matched to the pool: see
    /// `curriculum(manifest:)`); nil when the run file has none.
    public var curriculum: CurriculumSpec?

    /// Evaluation during training (`[eval]`): what `chorus eval` runs, at step 0, every
    /// `every` steps and after the last.
    public struct EvalSettings {
        /// The JSONL problems (`{"prompt", "answer"}`); its name without extension names the benchmark.
        public var data: URL?
        /// Built-in benchmarks evaluated on their eval splits (after `data`), in the order given.
        public var benchmarks: [String]
        /// Evaluate after every this many steps (≥ 1).
        public var every: Int
        /// Samples per problem.
        public var k: Int
        /// The first N problems (nil: all).
        public var problems: Int?
        /// Sampling temperature (0: greedy, one sample computed and counted k times).
        public var temperature: Double
        /// Nucleus mass in (0, 1].
        public var topP: Double
        /// Most tokens per completion.
        public var maxTokens: Int
    }

    /// Parses and validates a run file; `overrides` are `--set key=value` pairs applied first.
    public init(contentsOf url: URL, overrides: [String] = []) throws {
        var text: String
        do { text = try InputFile.readText(url.path) } catch let e as InputFileError { throw ConfigFileError(url.path, e.problem) }
        text = try applyOverrides(overrides, to: text, file: url.path)
        try self.init(text: text, file: url.path, base: PathStandIns.directory(of: url))
    }

    public init(text: String, file: String, base: URL) throws {
        self.text = text
        self.file = file
        func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
        let root = try ConfigTable(string: text, file: file)
        let m = try root.required("[model]", try root.table("model"))
        student = resolve(try m.required("init", try m.string("init")))
        try m.finish()

        let t = try root.required("[teachers]", try root.table("teachers"))
        pool = resolve(try t.required("pool", try t.string("pool")))
        aggregator = try t.choice("aggregator", AggregatorFactory.names) ?? "arithmetic"
        followSelfTeacher = (try t.choice("self_teacher", ["frozen", "follow"]) ?? "frozen") == "follow"
        cache = try t.string("cache").map(resolve)
        boundaries = try t.doubles("boundaries")
        softSwitchLogSpace = try t.bool("soft_switch_log_space") ?? false
        cacheTopK = try t.int("cache_top_k", min: 1, max: 65_536) ?? 20
        try t.finish()

        // A curriculum is an aggregator: [curriculum] implies aggregator = "curriculum", and
        // another strategy beside it is refused rather than one of the two ignored.
        curriculum = try root.table("curriculum").map { try CurriculumSpec(table: $0) }
        if curriculum != nil {
            if t.has("aggregator"), aggregator != "curriculum" {
                throw t.error("aggregator", "\"\(aggregator)\" conflicts with the [curriculum] table (a curriculum is its own aggregator): remove one of the two")
            }
            aggregator = "curriculum"
        }
        if aggregator == "curriculum" {
            for k in ["boundaries", "soft_switch_log_space"] where t.has(k) {
                throw t.error(k, "does not apply to aggregator \"curriculum\" (its stages give at and weights, [curriculum] space the mixture)")
            }
        }

        let d = try root.required("[data]", try root.table("data"))
        prompts = try d.string("prompts").map(resolve)
        benchmark = try d.choice("benchmark", Benchmark.names)
        if prompts != nil && benchmark != nil { throw d.error("benchmark", "give either data.prompts or data.benchmark, not both") }
        if prompts == nil && benchmark == nil { throw d.error("prompts", "missing required key (or give data.benchmark = \"add3\", a built-in benchmark)") }
        epochs = try d.double("epochs", min: 1e-9)
        if epochs != nil && benchmark != nil { throw d.error("epochs", "needs data.prompts: a benchmark is an endless stream (set train.steps)") }
        try d.finish()

        let r = try root.table("rollout")
        groupSize = try r?.int("group_size", min: 1, max: 4096) ?? 4
        promptsPerStep = try r?.int("prompts_per_step", min: 1, max: 65_536) ?? 8
        temperature = try r?.double("temperature", min: 0, max: 100) ?? 1
        topP = try r?.double("top_p", min: 1e-6, max: 1) ?? 1
        maxTokens = try r?.int("max_tokens", min: 1, max: 1 << 20) ?? 64
        precision = SamplingPrecision(rawValue: try r?.choice("precision", SamplingPrecision.allCases.map(\.rawValue)) ?? "f32")!
        try r?.finish()

        let o = try root.table("objective")
        let alpha = try o?.double("tsallis_alpha", min: -100, max: 100) ?? 0.5
        let dname = try o?.choice("divergence", Divergence.names) ?? "reverse-kl"
        if dname == "tsallis" && abs(alpha - 1) < 1e-9 { throw o!.error("tsallis_alpha", "must not be 1 (the limit is the reverse KL: use divergence = \"reverse-kl\")") }
        divergence = Divergence(name: dname, alpha: alpha)!
        fullVocabulary = try o?.bool("full_vocabulary") ?? false
        gamma = try o?.double("gamma", min: 0, max: 1) ?? 0
        coefficient = try o?.double("coefficient", min: 0, max: 1e6) ?? 1
        clip = try o?.double("clip", min: 0) ?? 0
        whitening = Whitening(rawValue: try o?.choice("whitening", Whitening.allCases.map(\.rawValue)) ?? "none")!
        loss = LossAggregation(rawValue: try o?.choice("loss", LossAggregation.allCases.map(\.rawValue)) ?? "token-mean")!
        entropyBonus = try o?.double("entropy_bonus", min: 0, max: 100) ?? 0
        if fullVocabulary {
            // The student of a control-token run carries rows <|teacher-k|> the teachers lack, so
            // the exact reverse KL over the student's vocabulary is infinite (a NaN loss at step 1).
            if aggregator == "control-token" {
                throw o!.error("full_vocabulary", "control-token adds routing tokens the teachers have no probability for; use the sampled-token estimate (full_vocabulary = false) with aggregator = \"control-token\"")
            }
            if divergence == .naiveK3 { throw o!.error("full_vocabulary", "naive-k3 is a sampled-token ablation with no full-vocabulary form") }
            for (k, set) in [("gamma", gamma != 0), ("whitening", whitening != .none), ("entropy_bonus", entropyBonus != 0), ("clip", clip != 0)] where set {
                throw o!.error(k, "applies to the sampled-token estimate only; remove it or set full_vocabulary = false")
            }
        }
        try o?.finish()

        let c = try root.table("correction")
        correction = CorrectionMode(rawValue: try c?.choice("mode", CorrectionMode.allCases.map(\.rawValue)) ?? "mask")!
        correctionLo = try c?.double("lo", min: 0) ?? 0.5
        correctionHi = try c?.double("hi", min: 0) ?? 2.0
        if correctionLo > correctionHi { throw c!.error("lo", "must be <= hi (\(correctionLo) > \(correctionHi))") }
        try c?.finish()

        let f = try root.table("filter")
        let by = try f?.choice("by", ["none"] + FilterScore.allCases.map(\.rawValue)) ?? "none"
        filter = FilterScore(rawValue: by)
        filterMin = try f?.double("min", min: 0, max: 1) ?? 0
        filterMax = try f?.double("max", min: 0, max: 1) ?? 1
        if filterMin > filterMax { throw f!.error("min", "must be <= max (\(filterMin) > \(filterMax))") }
        try f?.finish()

        let tr = try root.table("train")
        if epochs != nil && tr?.has("steps") == true { throw tr!.error("steps", "give either train.steps or data.epochs, not both") }
        opt = try OptimizationConfig.read(tr, trainer: .onPolicy)

        if let e = try root.table("eval") { eval = try EvalSettings.read(e, defaultMaxTokens: maxTokens, resolve: resolve) }
        let out = try root.table("output")
        outputDir = resolve(try out?.string("dir") ?? "runs/opd")
        keepCheckpoints = try out?.int("keep_checkpoints", min: 1) ?? 2
        rolloutsEvery = try out?.int("rollouts_every", min: 0) ?? (eval?.every ?? 50)
        try out?.finish()
        try root.finish()
    }

    /// Most problems drawn for `data.benchmark`; a longer run visits them again in a new
    /// seeded order each epoch (a pool this size never limits a CPU run's variety).
    public static let maxBenchmarkPrompts = 1_000_000

    /// The training prompts: the `data.prompts` file, or the first `train.steps ×
    /// prompts_per_step` problems (at most `maxBenchmarkPrompts`) of `data.benchmark`'s train
    /// split drawn with `train.seed`, a dataset named after the benchmark.
    public func promptDataset() throws -> PromptDataset {
        if let b = benchmark {
            let (n, overflow) = opt.steps.multipliedReportingOverflow(by: promptsPerStep)
            let count = overflow ? Self.maxBenchmarkPrompts : min(Self.maxBenchmarkPrompts, max(1, n))
            return try Benchmark.named(b).dataset(split: .train, count: count, seed: opt.seed)
        }
        return try PromptDataset(contentsOf: prompts!)
    }

    /// The evaluation sets of `[eval]`: the `data` file (if any), then each benchmark's eval split.
    public func evalDatasets() throws -> [PromptDataset] { try eval?.datasets() ?? [] }

    /// The `curriculum` aggregator's stages over the pool `manifest`'s teachers: the run
    /// file's `[curriculum]` (teacher names checked against the pool), else the manifest's;
    /// nil for other aggregators. Throws when `aggregator = "curriculum"` has neither, or both
    /// give one (a curriculum lives in one place, so no edit is silently overridden).
    public func curriculum(manifest: PoolManifest) throws -> Curriculum? {
        guard aggregator == "curriculum" else { return nil }
        guard let spec = curriculum else {
            if let c = manifest.curriculum { return c }
            throw ConfigFileError(file: file, key: "teachers.aggregator",
                                  reason: "\"curriculum\" needs a [curriculum] table, in the run file or in the pool manifest \(manifest.file.path)")
        }
        if manifest.curriculum != nil {
            throw ConfigFileError(file: spec.file, key: spec.key,
                                  reason: "the pool manifest \(manifest.file.path) has its own [curriculum]; give the curriculum in one place")
        }
        return try spec.resolve(teacherNames: manifest.teachers.map(\.name))
    }

    /// Sequences per step (P × G).
    public var rolloutsPerStep: Int { promptsPerStep * groupSize }
}

/// The TOML literal an override's value stands for: the value itself when it is one (`3`,
/// `1e-4`, `"cosine"`, `true`, `[1, 2]`), else a bare word or path (`cosine`, `/tmp/run`) taken
/// as a string, so that `--set output.dir=/tmp/run` works without shell-quoted quotes. Anything
/// else (an unbalanced quote or bracket, a newline) is refused naming the override — it must
/// never surface as a syntax error at some line of the run file. `option` names the
/// command-line option in errors (`--set`, `--sweep`).
func overrideLiteral(_ value: String, override o: String, file: String, option: String = "--set") throws -> String {
    if (try? ConfigTable(string: "v = \(value)", file: "")) != nil, !value.contains("\n") { return value }
    let structural: Set<Character> = ["\"", "'", "[", "]", "{", "}", "\n", "\r", "#", "\\"]
    guard !value.contains(where: { structural.contains($0) || $0.asciiValue.map { $0 < 0x20 } == true }) else {
        throw ConfigFileError(file, "\(option) '\(o)': the value is not a TOML literal (a string is quoted: KEY='\"text\"')")
    }
    return "\"" + value + "\""
}

/// Applies `--set section.key=value` overrides to run-file text: the value replaces the key's
/// line in its table (or is appended to the table, or a new table). Values are TOML literals
/// (`3`, `1e-4`, `"cosine"`, `true`), or bare words and paths taken as strings (`overrideLiteral`).
/// `section[N].key` addresses the N-th (0-based) entry of an array of tables, e.g.
/// `curriculum.stage[1].at=0.3` for the second `[[curriculum.stage]]`; an index past the last
/// entry is an error. `option` names the command-line option in errors (`chorus compare
/// --sweep` applies its values through here too).
public func applyOverrides(_ overrides: [String], to text: String, file: String, option: String = "--set") throws -> String {
    var lines = text.components(separatedBy: "\n")
    for o in overrides {
        guard let eq = o.firstIndex(of: "="), let dot = o[..<eq].lastIndex(of: ".") else {
            throw ConfigFileError(file, "\(option) '\(o)': expected SECTION.KEY=VALUE (e.g. train.lr=1e-4)")
        }
        let section = String(o[..<dot]).trimmingCharacters(in: .whitespaces)
        let key = String(o[o.index(after: dot)..<eq]).trimmingCharacters(in: .whitespaces)
        let given = String(o[o.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
        if section.isEmpty || key.isEmpty || given.isEmpty { throw ConfigFileError(file, "\(option) '\(o)': expected SECTION.KEY=VALUE") }
        guard key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }),
              section.allSatisfy({ $0.isLetter || $0.isNumber || "_-.[]".contains($0) }) else {
            throw ConfigFileError(file, "\(option) '\(o)': SECTION.KEY may hold letters, digits, '_' and '-' only (and [N] after an array of tables)")
        }
        let value = try overrideLiteral(given, override: o, file: file, option: option)
        var header = "[\(section)]"
        var start: Int?
        if section.hasSuffix("]"), let open = section.lastIndex(of: "["), let n = Int(section[section.index(after: open)..<section.index(before: section.endIndex)]) {
            // An entry of an array of tables: its header line may carry a comment.
            let base = String(section[..<open])
            header = "[[\(base)]]"
            let entries = lines.indices.filter { i in
                let l = lines[i].trimmingCharacters(in: .whitespaces)
                return l.hasPrefix(header) && (l.dropFirst(header.count).trimmingCharacters(in: .whitespaces).first.map { $0 == "#" } ?? true)
            }
            guard n >= 0, n < entries.count else {
                throw ConfigFileError(file, "\(option) '\(o)': the file has \(entries.count) [[\(base)]] table\(entries.count == 1 ? "" : "s"); index \(n) is out of range")
            }
            start = entries[n]
        } else {
            for (i, l) in lines.enumerated() where l.trimmingCharacters(in: .whitespaces) == header { start = i }
        }
        guard let s = start else { lines += ["", header, "\(key) = \(value)"]; continue }
        var end = lines.count, replaced = false
        for i in (s + 1)..<lines.count where lines[i].trimmingCharacters(in: .whitespaces).hasPrefix("[") { end = i; break }
        for i in (s + 1)..<end {
            let l = lines[i].trimmingCharacters(in: .whitespaces)
            if l.hasPrefix(key), l.dropFirst(key.count).trimmingCharacters(in: .whitespaces).hasPrefix("=") {
                lines[i] = "\(key) = \(value)"; replaced = true
            }
        }
        if !replaced { lines.insert("\(key) = \(value)", at: s + 1) }
    }
    return lines.joined(separator: "\n")
}
