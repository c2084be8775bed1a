import ChorusConfig
import ChorusModel
import ChorusTensor
import ChorusTokenizer
import Foundation

/// One tokenized supervised example: loss on the completion tokens only.
public struct SFTExample: Equatable {
    /// Prompt ids followed by completion ids.
    public var tokens: [Int]
    /// Number of prompt ids at the front.
    public var promptLength: Int
}

/// A `chorus sft` run file:
///
///     [model]   init = "DIR"  |  shape = "qwen3-10m" / explicit architecture, tokenizer = "..."
///     [data]    train = "file.jsonl" (lines {"prompt": ..., "completion": ...}),
///               max_length = 256, eos = "<|endoftext|>" (appended to each completion; optional)
///     [train]   steps, batch_size, micro_batch, lr, schedule, warmup, min_lr_ratio,
///               weight_decay, beta1, beta2, eps, grad_clip, seed, threads,
///               checkpoint_every, log_every
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
    public var outputDir: URL
    public var keepCheckpoints: Int
    /// The run file text (recorded in the run directory).
    public var text: String
    /// The tokenizer, when reading the run file already had to load it (a model trained from
    /// scratch takes its vocabulary size from it); the trainer reuses it.
    public var loadedTokenizer: Tokenizer?

    /// Parses and validates a run file.
    public init(contentsOf url: URL) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw ConfigFileError(url.path, "cannot read file") }
        try self.init(text: text, file: url.path, base: url.deletingLastPathComponent())
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
        guard let text = try? String(contentsOf: f, encoding: .utf8) else { throw DataError.unreadable(f.path) }
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
            if toks.count <= pi.count || toks.count < 2 || pi.isEmpty && toks.count < 2 { dropped += 1; continue }
            out.append(SFTExample(tokens: toks, promptLength: pi.count))
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
/// exact resume from run checkpoints.
public final class SFTTrainer {
    public let config: SFTConfig
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public let tokenizerJSON: Data
    public let examples: [SFTExample]
    public let run: RunDirectory
    let optimizer: AdamW
    var state: TrainerState
    /// Print progress to stderr.
    public var showProgress = true
    /// Stop (as if killed) after this many steps of this process; for tests and `--max-steps`.
    public var stopAfter: Int?

    /// Prepares a run: tokenizer, data, model (fresh, from a checkpoint, or resumed).
    public init(config: SFTConfig, resume: URL? = nil) throws {
        self.config = config
        Parallel.configure(threads: config.opt.threads)
        tokenizerJSON = try Data(contentsOf: config.tokenizer)
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
            model = TransformerModel(config: cfg)
            model.initializeRandom(seed: seed)
        }
        if let e = eosId, model.config.eosTokenIds.isEmpty { model.setSpecialTokenIds(eos: [e]) }
        if tokenizer.vocabSize > model.config.vocabSize {
            throw ConfigFileError(config.tokenizer.path, "tokenizer has \(tokenizer.vocabSize) tokens but the model's vocab_size is \(model.config.vocabSize)")
        }
        for ex in examples { try model.checkTokens(ex.tokens) }
        optimizer = AdamW(model: model, config: config.opt.adam)
        state = TrainerState(step: 0, rng: ChorusRNG(seed: config.opt.seed), seed: config.opt.seed)
        let dir = resume ?? config.outputDir
        run = try RunDirectory(url: dir)
        if resume != nil {
            try run.recordConfig(text: config.text, settings: [:], resuming: true)
            if let ck = run.latestCheckpoint() {
                state = try run.loadCheckpoint(ck, model: model, optimizer: optimizer)
            }
            try run.truncateMetrics(after: state.step)
        } else {
            if run.latestCheckpoint() != nil { throw RunError.exists(dir.path) }
            try? FileManager.default.removeItem(at: run.metricsURL)
            try run.recordConfig(text: config.text, settings: [
                "kind": "sft", "seed": Int(config.opt.seed), "threads": Parallel.threads,
                "parameters": model.config.parameterCount, "examples": examples.count,
                "started": ISO8601DateFormatter().string(from: Date()),
            ], resuming: false)
        }
    }

    /// The step the run will continue from.
    public var step: Int { state.step }

    /// Runs the remaining steps; returns the final model directory (nil if stopped early).
    @discardableResult
    public func train() throws -> URL? {
        let o = config.opt
        var order = EpochOrder(count: examples.count, seed: o.seed)
        let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
        StopSignal.install()
        defer { StopSignal.uninstall() }
        let progress = ProgressReporter(total: o.steps, startStep: state.step)
        progress.enabled = showProgress
        var doneHere = 0
        while state.step < o.steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let batch = (0..<o.batchSize).map { examples[order.index(state.step * o.batchSize + $0)] }
            let targets = batch.reduce(0) { $0 + $1.tokens.count - $1.promptLength }
            let w = 1 / Float(targets)
            grads.zero()
            var loss = 0.0, tokens = 0
            for mb in stride(from: 0, to: batch.count, by: o.microBatch) {
                let part = Array(batch[mb..<min(batch.count, mb + o.microBatch)])
                var weights: [Float] = []
                for ex in part {
                    // Row r predicts token r+1: weighted when that token is in the completion.
                    for r in 0..<ex.tokens.count { weights.append(r + 1 >= ex.promptLength && r + 1 < ex.tokens.count ? w : 0) }
                    tokens += ex.tokens.count
                }
                _ = try model.trainingForward(part.map(\.tokens), tape: tape)
                loss += model.trainingBackward(weights: weights, tape: tape, grads: grads)
            }
            let norm = clipGradientNorm(grads, maxNorm: o.gradClip)
            let lr = o.schedule.rate(step: state.step, total: o.steps, peak: o.lr)
            optimizer.update(parameters: model.parameters, gradients: grads, lr: Float(lr))
            state.step += 1
            state.counters["tokens", default: 0] += Double(tokens)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if state.step % o.logEvery == 0 || state.step == o.steps {
                run.appendMetrics(JSONLine([
                    ("step", .int(state.step)), ("progress", .double(Double(state.step) / Double(o.steps))),
                    ("loss", .double(loss)), ("lr", .double(lr)), ("grad_norm", .double(norm)),
                    ("tokens", .int(tokens)), ("tokens_per_s", .double(Double(tokens) / dt)), ("step_seconds", .double(dt)),
                ]).text)
            }
            progress.update(step: state.step, fields: [("loss", String(format: "%.4f", loss))], tokensPerSecond: Double(tokens) / dt)
            if state.step % o.checkpointEvery == 0 || state.step == o.steps {
                run.syncMetrics()
                try run.saveCheckpoint(step: state.step, model: model, tokenizerJSON: tokenizerJSON, optimizer: optimizer,
                                       state: state, keep: config.keepCheckpoints)
            }
            doneHere += 1
            let interrupted = StopSignal.requested
            if (stopAfter.map { doneHere >= $0 } ?? false || interrupted) && state.step < o.steps {
                // A requested stop (--max-steps, Ctrl-C, SIGTERM) keeps all finished steps.
                if state.step % o.checkpointEvery != 0 {
                    run.syncMetrics()
                    try run.saveCheckpoint(step: state.step, model: model, tokenizerJSON: tokenizerJSON, optimizer: optimizer,
                                           state: state, keep: config.keepCheckpoints)
                }
                if interrupted { FileHandle.standardError.write(Data("\nstopped at step \(state.step); continue with --resume \(run.url.path)\n".utf8)) }
                return nil
            }
        }
        return try run.saveFinal(model: model, tokenizerJSON: tokenizerJSON)
    }
}
