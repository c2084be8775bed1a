import ChorusCore
import ChorusModel
import ChorusTokenizer
import Foundation

/// How an evaluation samples: k samples per problem over the first `problems` problems.
public struct EvalOptions: Sendable, Equatable {
    /// Samples per problem (≥ 1).
    public var k: Int
    /// Evaluate the first N problems (nil: all of them).
    public var problems: Int?
    /// Sampling temperature; 0 is greedy, and then the k samples are one sample computed once.
    public var temperature: Double
    /// Nucleus mass in (0, 1].
    public var topP: Double
    /// Most tokens sampled per completion (EOS included).
    public var maxTokens: Int
    /// Sample j of problem i draws from `Evaluator.sampleSeed(seed, i, j)`.
    public var seed: UInt64
    /// Most sequences decoded together in one batched `generate` call.
    public var chunkSequences: Int

    /// Largest k and max_tokens accepted (also `chorus eval`'s bounds).
    public static let maxK = 1024
    public static let maxMaxTokens = 32_768

    public init(k: Int = 8, problems: Int? = nil, temperature: Double = 1, topP: Double = 1, maxTokens: Int = 64,
                seed: UInt64 = 0, chunkSequences: Int = 64) {
        self.k = k; self.problems = problems; self.temperature = temperature; self.topP = topP
        self.maxTokens = maxTokens; self.seed = seed; self.chunkSequences = chunkSequences
    }

    /// Throws naming the first option out of range (CLI spelling).
    public func validate() throws {
        func bad(_ s: String) -> EvalError { .invalidOption(s) }
        if k < 1 || k > Self.maxK { throw bad("--k must be in 1...\(Self.maxK), got \(k)") }
        if let n = problems, n < 1 { throw bad("--problems must be >= 1, got \(n)") }
        if !temperature.isFinite || temperature < 0 || temperature > 100 { throw bad("--temperature must be a finite number in [0, 100], got \(temperature)") }
        if !(topP > 0 && topP <= 1) { throw bad("--top-p must be in (0, 1], got \(topP)") }
        if maxTokens < 1 || maxTokens > Self.maxMaxTokens { throw bad("--max-tokens must be in 1...\(Self.maxMaxTokens), got \(maxTokens)") }
        if chunkSequences < 1 { throw bad("chunk size must be >= 1, got \(chunkSequences)") }
    }
}

/// Errors of an evaluation set-up, one line each.
public enum EvalError: Error, CustomStringConvertible, Equatable {
    case invalidOption(String)
    case tooFewProblems(path: String, have: Int, want: Int)
    case emptyPrompt(path: String, line: Int)
    /// The model gave a non-finite log-prob while sampling (NaN or infinite weights or
    /// activations): the samples are noise, so no score is reported.
    case nonFinite(path: String, line: Int, sample: Int, token: Int)

    public var description: String {
        switch self {
        case let .invalidOption(s): return s
        case let .tooFewProblems(p, have, want): return "\(p): \(have) problems, fewer than the \(want) asked for"
        case let .emptyPrompt(p, l): return "\(p):\(l): field \"prompt\": encodes to no tokens"
        case let .nonFinite(p, l, j, t):
            return "\(p):\(l): sample \(j), token \(t): the model's log-prob is not finite (non-finite weights or activations); no score reported"
        }
    }
}

/// The rewards of an evaluation, problem-major: `rewards[i][j]` is sample j of problem i.
public struct EvalScores: Sendable, Equatable {
    public var rewards: [[Double]]
    public init(rewards: [[Double]]) { self.rewards = rewards }

    /// Mean reward over all samples of all problems.
    public var meanAtK: Double {
        let n = rewards.reduce(0) { $0 + $1.count }
        return n == 0 ? 0 : rewards.reduce(0) { $0 + $1.reduce(0, +) } / Double(n)
    }

    /// Fraction of problems with at least one correct sample (reward 1).
    public var bestAtK: Double {
        rewards.isEmpty ? 0 : Double(rewards.filter { $0.contains { $0 >= 1 } }.count) / Double(rewards.count)
    }
}

/// The outcome of `Evaluator.run`.
public struct EvalResult: Sendable {
    /// The benchmark's name (the data file's name without extension).
    public var name: String
    public var scores: EvalScores
    /// The decoded completions, `completions[i][j]` for sample j of problem i (nil: undecodable).
    public var completions: [[String?]]
    public var k: Int
    public var problems: Int

    /// `{"mean_at_k":x,"best_at_k":y,"k":K,"problems":N}`.
    public var summaryJSON: String {
        JSONText.object([("mean_at_k", JSONText.number(scores.meanAtK)), ("best_at_k", JSONText.number(scores.bestAtK)),
                         ("k", "\(k)"), ("problems", "\(problems)")])
    }

    /// `{"NAME":{"mean_at_k":x,"best_at_k":y,"k":K,"problems":N}}`: `chorus eval`'s output line.
    public var json: String { JSONText.object([(name, summaryJSON)]) }
}

/// Samples k completions for each of the first N problems of a prompt dataset and scores them
/// with a `RewardChecker`: mean@k (mean reward over all samples) and best@k (fraction of
/// problems with a correct sample).
///
/// Sampling goes through the model's batched `generate` (KV cache, each prompt prefilled once
/// and shared by its samples) in chunks of at most `chunkSequences` sequences. Sample j of
/// problem i draws from its own generator seeded by `sampleSeed(seed, i, j)`, so results are
/// a pure function of (model, data, options, thread count), and the first N problems score the
/// same whatever N is. With temperature 0 the k samples are identical: one is computed.
public final class Evaluator {
    public let dataset: PromptDataset
    public let tokenizer: Tokenizer
    public let checker: any RewardChecker
    public let options: EvalOptions
    /// Tokens put before every prompt (a control-token student's `<|teacher-k|>`).
    public let promptPrefix: [Int]
    /// The evaluated problems (the first N) and their token ids (prefix included).
    public let problems: [PromptRecord]
    let promptIds: [[Int]]

    /// Validates options, problem count, the checker's fields and that every prompt encodes
    /// to tokens; nothing is sampled yet.
    public init(dataset: PromptDataset, tokenizer: Tokenizer, checker: any RewardChecker = ExactMatch(),
                options: EvalOptions, promptPrefix: [Int] = []) throws {
        try options.validate()
        let n = options.problems ?? dataset.count
        if n > dataset.count { throw EvalError.tooFewProblems(path: dataset.path, have: dataset.count, want: n) }
        let chosen = Array(dataset.records.prefix(n))
        for p in chosen {
            for f in checker.requiredFields where p.fields[f] == nil {
                throw DatasetError.badLine(path: dataset.path, line: p.line, field: f, reason: "missing (\(checker.name) needs it)")
            }
        }
        problems = chosen
        promptIds = try chosen.map { p in
            let ids = tokenizer.encode(p.prompt)
            if ids.isEmpty { throw EvalError.emptyPrompt(path: dataset.path, line: p.line) }
            return promptPrefix + ids
        }
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.checker = checker
        self.options = options
        self.promptPrefix = promptPrefix
    }

    /// The seed of sample j of problem i: a SplitMix64-style hash of (seed, i, j), so every
    /// sample has its own stream whatever the batch, chunking or problem count.
    public static func sampleSeed(_ seed: UInt64, problem i: Int, sample j: Int) -> UInt64 {
        var rng = ChorusRNG(seed: seed ^ (UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15)
                                  ^ (UInt64(truncatingIfNeeded: j) &* 0xC2B2_AE3D_27D4_EB4F))
        return rng.next()
    }

    /// One batched `generate` call: these problems, `samples` samples each, starting at sample
    /// index `firstSample`.
    public struct Call: Sendable, Equatable {
        public var problems: Range<Int>
        public var samples: Int
        public var firstSample: Int
    }

    /// The calls that cover every (problem, sample) pair once, each at most `chunk` sequences:
    /// whole problems (prompt prefilled once, its samples forked) when k fits in a chunk, else
    /// one problem's samples split over several calls.
    public static func plan(problems n: Int, samples s: Int, chunk: Int) -> [Call] {
        var calls: [Call] = []
        if s <= chunk {
            let per = max(1, chunk / s)
            for p in stride(from: 0, to: n, by: per) { calls.append(Call(problems: p..<min(n, p + per), samples: s, firstSample: 0)) }
        } else {
            for p in 0..<n {
                for j in stride(from: 0, to: s, by: chunk) { calls.append(Call(problems: p..<(p + 1), samples: min(chunk, s - j), firstSample: j)) }
            }
        }
        return calls
    }

    /// Samples and scores. `stopTokens` default to the model's EOS ids (config.json); with none,
    /// every completion runs to `maxTokens`.
    public func run(model: TransformerModel, stopTokens: Set<Int>? = nil,
                    workspace: ForwardWorkspace = ForwardWorkspace()) throws -> EvalResult {
        for p in promptIds { try model.checkTokens(p) }
        let stops = stopTokens ?? Set(model.config.eosTokenIds)
        let greedy = options.temperature == 0
        let drawn = greedy ? 1 : options.k
        // Bound the KV caches of one call (~2¹⁷ positions) as well as its sequence count.
        let longest = (promptIds.map(\.count).max() ?? 0) + options.maxTokens
        let chunk = max(1, min(options.chunkSequences, (1 << 17) / max(1, longest)))
        let params = SamplingParameters(temperature: Float(options.temperature), topP: Float(options.topP))
        var texts = [[String?]](repeating: [String?](repeating: nil, count: drawn), count: problems.count)
        for call in Self.plan(problems: problems.count, samples: drawn, chunk: chunk) {
            let seeds = call.problems.flatMap { i in
                (0..<call.samples).map { Self.sampleSeed(options.seed, problem: i, sample: call.firstSample + $0) }
            }
            let gens = try model.generate(prompts: call.problems.map { promptIds[$0] }, samplesPerPrompt: call.samples,
                                          maxTokens: options.maxTokens, params: params, seeds: seeds, stopTokens: stops,
                                          workspace: workspace)
            for (n, g) in gens.enumerated() {
                let i = call.problems.lowerBound + n / call.samples, j = call.firstSample + n % call.samples
                if let t = g.logprobs.firstIndex(where: { !$0.isFinite }) {
                    throw EvalError.nonFinite(path: dataset.path, line: problems[i].line, sample: j, token: t)
                }
                texts[i][j] = completionText(g.response, stopTokens: stops, tokenizer: tokenizer)
            }
        }
        var rewards = zip(problems, texts).map { p, ts in ts.map { t in t.map { checker.reward(completion: $0, problem: p) } ?? 0 } }
        if greedy {
            rewards = rewards.map { [Double](repeating: $0[0], count: options.k) }
            texts = texts.map { [String?](repeating: $0[0], count: options.k) }
        }
        return EvalResult(name: dataset.name, scores: EvalScores(rewards: rewards), completions: texts,
                          k: options.k, problems: problems.count)
    }
}
