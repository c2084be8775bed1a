import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTensor
import ChorusTokenizer
import Foundation

/// One tokenized supervised example: the loss is on the completion (the response) only.
public typealias SFTExample = TrainingSequence

/// A `chorus sft` run file:
///
///     [model]   init = "DIR"  |  shape = "qwen3-10m" / explicit architecture, tokenizer = "..."
///     [data]    train = "file.jsonl" (lines {"prompt": ..., "completion": ...}),
///               max_length = 256, eos = "<|endoftext|>" (appended to each completion; optional)
///     [train]   steps, batch_size, micro_batch, lr, schedule, warmup, min_lr_ratio,
///               weight_decay, beta1, beta2, eps, grad_clip, seed, threads,
///               checkpoint_every, log_every
///     [eval]    as in `chorus train` (`OnPolicyConfig`): evaluation at step 0, every `every`
///               steps and after the last (max_tokens defaults to 64)
///     [output]  dir = "runs/NAME", keep_checkpoints = 2
///
/// Relative paths are relative to the run file.
public struct SFTConfig {
    public var model: ModelSource
    public var tokenizer: URL
    public var trainFiles: [URL]
    public var maxLength: Int
    public var eos: String?
    public var opt: OptimizationConfig
    /// Evaluation during training (`[eval]`), as in an on-policy run; nil without the table.
    public var eval: OnPolicyConfig.EvalSettings?
    public var outputDir: URL
    public var keepCheckpoints: Int
    /// The run file text (recorded in the run directory).
    public var text: String
    /// The tokenizer, when reading the run file already had to load it (a model trained from
    /// scratch takes its vocabulary size from it); the trainer reuses it.
    public var loadedTokenizer: Tokenizer?

    /// Parses and validates a run file.
    public init(contentsOf url: URL) throws {
        let text: String
        do { text = try InputFile.readText(url.path) } catch let e as InputFileError { throw ConfigFileError(url.path, e.problem) }
        try self.init(text: text, file: url.path, base: PathStandIns.directory(of: url))
    }

    public init(text: String, file: String, base: URL) throws {
        self.text = text
        let root = try ConfigTable(string: text, file: file)
        func resolve(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : base.appendingPathComponent(p) }
        let mt = try root.required("[model]", try root.table("model"))
        var loaded: Tokenizer?
        let (source, tok) = try readModelSource(mt, base: base) { url in
            let t = try Tokenizer(contentsOf: url)
            loaded = t
            return t.vocabSize
        }
        model = source
        switch source {
        case let .checkpoint(dir): tokenizer = tok ?? dir.appendingPathComponent("tokenizer.json")
        case .scratch: tokenizer = tok!   // readModelSource requires it for a fresh model
        }
        loadedTokenizer = loaded
        let dt = try root.required("[data]", try root.table("data"))
        trainFiles = [resolve(try dt.required("train", try dt.string("train")))]
        maxLength = try dt.int("max_length", min: 2) ?? 512
        eos = try dt.string("eos")
        try dt.finish()
        opt = try OptimizationConfig.read(try root.table("train"))
        if let e = try root.table("eval") { eval = try OnPolicyConfig.EvalSettings.read(e, defaultMaxTokens: 64, resolve: resolve) }
        let ot = try root.table("output")
        outputDir = resolve(try ot?.string("dir") ?? "runs/sft")
        keepCheckpoints = try ot?.int("keep_checkpoints", min: 1) ?? 2
        try ot?.finish()
        try root.finish()
    }
}

/// Errors about training data.
public enum DataError: Error, CustomStringConvertible {
    case unreadable(String)
    case badLine(file: String, line: Int, reason: String)
    case empty(String)
    case unknownToken(String, String)

    public var description: String {
        switch self {
        case let .unreadable(f): return "\(f): cannot read file"
        case let .badLine(f, l, r): return "\(f):\(l): \(r)"
        case let .empty(f): return "\(f): no usable examples (every example was empty or had no completion tokens within max_length)"
        case let .unknownToken(f, t): return "\(f): token '\(t)' is not in the tokenizer"
        }
    }
}

/// Reads `{"prompt": ..., "completion": ...}` JSONL and tokenizes it (prompt and completion
/// encoded separately, optional EOS id appended, truncated to maxLength). Examples left
/// without a completion token are dropped and counted.
public func loadSFTExamples(files: [URL], tokenizer: Tokenizer, maxLength: Int, eos: Int?) throws -> (examples: [SFTExample], dropped: Int) {
    var out: [SFTExample] = [], dropped = 0
    for f in files {
        let text = try InputFile.readText(f.path)   // "FILE: no such file", "FILE: not valid UTF-8 ... line N"
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw DataError.badLine(file: f.path, line: i + 1, reason: "not a JSON object")
            }
            guard let p = obj["prompt"] as? String, let c = obj["completion"] as? String else {
                throw DataError.badLine(file: f.path, line: i + 1, reason: "needs string fields \"prompt\" and \"completion\"")
            }
            let pi = tokenizer.encode(p)
            var ci = tokenizer.encode(c)
            if let e = eos { ci.append(e) }
            var toks = pi + ci
            if toks.count > maxLength { toks = Array(toks.prefix(maxLength)) }
            // The first token has no prefix to be predicted from: with an empty prompt it is context.
            let context = max(1, pi.count)
            if toks.count <= context { dropped += 1; continue }
            out.append(SFTExample(tokens: toks, promptLength: context))
        }
    }
    if out.isEmpty { throw DataError.empty(files.map(\.path).joined(separator: ", ")) }
    return (out, dropped)
}

/// The order examples are visited in: a fresh seeded permutation per epoch, so the batch of
/// any step is a pure function of (seed, step) and resuming needs no data-loader state.
public struct EpochOrder {
    let count: Int
    let seed: UInt64
    private var cachedEpoch = -1
    private var perm: [Int] = []

    public init(count: Int, seed: UInt64) { self.count = count; self.seed = seed }

    /// The example index at global sample position s.
    public mutating func index(_ s: Int) -> Int {
        let epoch = s / count
        if epoch != cachedEpoch {
            var rng = ChorusRNG(seed: seed ^ (0x5EED_0000 &+ UInt64(epoch) &* 0x9E37_79B9))
            perm = Array(0..<count)
            perm.shuffle(using: &rng)
            cachedEpoch = epoch
        }
        return perm[s % count]
    }
}

/// Supervised fine-tuning: cross-entropy on completion tokens, AdamW, gradient accumulation,
/// exact resume from run checkpoints (the loop itself is `OptimizationLoop`).
public final class SFTTrainer {
    public let config: SFTConfig
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public let examples: [SFTExample]
    /// The evaluations of `[eval]` (empty without the table).
    public let evaluators: [Evaluator]
    /// Steps, checkpoints, metrics and stop requests.
    public let loop: OptimizationLoop
    /// Print progress to stderr.
    public var showProgress: Bool { get { loop.showProgress } set { loop.showProgress = newValue } }
    /// Stop (as if killed) after this many steps of this process; for tests and `--max-steps`.
    public var stopAfter: Int? { get { loop.stopAfter } set { loop.stopAfter = newValue } }
    public var run: RunDirectory { loop.run }
    /// The permutation of examples for the current epoch (cached across steps).
    private var order: EpochOrder

    /// Prepares a run: tokenizer, data, model (fresh, from a checkpoint, or resumed).
    public init(config: SFTConfig, resume: URL? = nil) throws {
        self.config = config
        Parallel.configure(threads: config.opt.threads)
        let tokenizerJSON = try InputFile.read(config.tokenizer.path)
        tokenizer = try config.loadedTokenizer ?? Tokenizer(contentsOf: config.tokenizer)
        var eosId: Int?
        if let e = config.eos {
            guard let id = tokenizer.tokenToId(e) else { throw DataError.unknownToken(config.tokenizer.path, e) }
            eosId = id
        }
        (examples, _) = try loadSFTExamples(files: config.trainFiles, tokenizer: tokenizer, maxLength: config.maxLength, eos: eosId)
        switch config.model {
        case let .checkpoint(dir):
            model = try TransformerModel.load(directory: dir)
        case let .scratch(cfg, seed):
            // Sizes from the run file: checked against the memory limit before allocating.
            try MemoryCheck.model(cfg, source: "the run file's [model]")
            model = TransformerModel(config: cfg)
            model.initializeRandom(seed: seed)
        }
        if let e = eosId, model.config.eosTokenIds.isEmpty { model.setSpecialTokenIds(eos: [e]) }
        if tokenizer.vocabSize > model.config.vocabSize {
            throw ConfigFileError(config.tokenizer.path, "tokenizer has \(tokenizer.vocabSize) tokens but the model's vocab_size is \(model.config.vocabSize)")
        }
        for ex in examples { try model.checkTokens(ex.tokens) }
        // One micro-batch of the longest examples, with AdamW's state, must fit.
        let longest = examples.map(\.tokens.count).max() ?? 0
        try MemoryCheck.training(model.config, tokens: config.opt.microBatch * longest, longest: longest)
        order = EpochOrder(count: examples.count, seed: config.opt.seed)
        evaluators = try config.eval?.evaluators(tokenizer: tokenizer, seed: config.opt.seed) ?? []
        loop = try OptimizationLoop(model: model, options: config.opt, directory: resume ?? config.outputDir, resume: resume != nil,
                                    runFileText: config.text, settings: ["kind": "sft", "examples": examples.count],
                                    tokenizerJSON: tokenizerJSON, keepCheckpoints: config.keepCheckpoints)
    }

    /// The step the run will continue from.
    public var step: Int { loop.state.step }

    /// The examples of 0-based step `step`: a pure function of (seed, step), so resuming needs
    /// no data-loader state.
    public func batch(step: Int) -> [SFTExample] {
        return (0..<config.opt.batchSize).map { examples[order.index(step * config.opt.batchSize + $0)] }
    }

    /// The cross-entropy weights of a batch, per completion token: 1/N each, N the batch's
    /// completion tokens (EOS included when configured), so the loss is the mean token NLL.
    public static func lossWeights(_ batch: [SFTExample]) -> [[Float]] {
        let n = batch.reduce(0) { $0 + $1.responseLength }
        return batch.map { [Float](repeating: 1 / Float(n), count: $0.responseLength) }
    }

    /// Runs the remaining steps; returns the final model directory (nil if stopped early).
    @discardableResult
    public func train() throws -> URL? {
        let micro = config.opt.microBatch
        let tape = TrainingTape()
        let periodic = PeriodicEvaluation(evaluators: evaluators, model: model, stopTokens: Set(model.config.eosTokenIds), loop: loop)
        if let every = config.eval?.every { try periodic.attach(every: every) }
        defer { periodic.detach() }
        return try loop.train { state in
            let batch = self.batch(step: state.step)
            let weights = SFTTrainer.lossWeights(batch)
            var loss = 0.0, tokens = 0
            for mb in stride(from: 0, to: batch.count, by: micro) {
                let part = Array(mb..<min(batch.count, mb + micro))
                _ = try model.trainingForward(part.map { batch[$0] }, tape: tape)
                loss += model.trainingBackward(TokenObjective(weights: part.map { weights[$0] }), tape: tape, grads: loop.grads)
                tokens += part.reduce(0) { $0 + batch[$1].tokens.count }
            }
            return StepReport(loss: loss, tokens: tokens)
        }
    }
}
