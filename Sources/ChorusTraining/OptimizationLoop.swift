import ChorusCore
import ChorusModel
import ChorusTensor
import Foundation

/// What one training step reports back to the loop.
public struct StepReport {
    /// The step's loss (already summed over micro-batches).
    public var loss: Double
    /// Tokens processed (for tokens/s).
    public var tokens: Int
    /// Extra metrics-row fields, in order, after the loop's own (step, progress, loss, lr, grad_norm).
    public var metrics: [(String, JSONLine.Value)]
    /// Extra progress-line fields.
    public var progress: [(String, String)]

    public init(loss: Double, tokens: Int, metrics: [(String, JSONLine.Value)] = [], progress: [(String, String)] = []) {
        self.loss = loss; self.tokens = tokens; self.metrics = metrics; self.progress = progress
    }
}

/// A step whose loss or gradient is not finite: the run stops before the update, keeping the
/// last good checkpoint.
public struct NonFiniteError: Error, CustomStringConvertible {
    /// The 1-based step that failed.
    public var step: Int
    /// What was not finite: "loss" or a parameter tensor's gradient.
    public var what: String
    /// The newest checkpoint on disk, if any.
    public var checkpoint: String?
    /// Whether the update itself produced the non-finite values (nothing was logged or saved).
    public var afterUpdate = false

    public init(step: Int, what: String, checkpoint: String?, afterUpdate: Bool = false) {
        self.step = step; self.what = what; self.checkpoint = checkpoint; self.afterUpdate = afterUpdate
    }

    public var description: String {
        "step \(step): \(what) is not finite (NaN or Inf); "
            + (afterUpdate ? "stopped without saving it (the learning rate is probably too high)" : "stopped before the update")
            + (checkpoint.map { ", the last good checkpoint is \($0)" } ?? ", no checkpoint was written yet")
    }
}

/// The optimisation loop both trainers share: zero the gradients, let the trainer accumulate
/// one step's gradients, check them, clip, schedule the rate, update with AdamW, log a metrics
/// row, checkpoint, and honour stop requests (SIGINT/SIGTERM, `stopAfter`). It also starts a
/// run directory afresh or resumes it exactly from its newest checkpoint.
public final class OptimizationLoop {
    public let model: TransformerModel
    public let optimizer: AdamW
    public let run: RunDirectory
    public let options: OptimizationConfig
    /// The gradient buffer the step body accumulates into (zeroed before each step).
    public let grads: Tensor
    /// Step counter, RNG and counters; part of every checkpoint.
    public var state: TrainerState
    let tokenizerJSON: Data
    let keepCheckpoints: Int
    /// Print progress to stderr.
    public var showProgress = true
    /// Stop (as if interrupted) after this many steps of this process; `--max-steps`.
    public var stopAfter: Int?
    /// Work that belongs to a finished step, run after its update and metrics row and before
    /// its checkpoint (an evaluation): a kill before the checkpoint drops its rows with the
    /// step's, and resuming redoes both. Receives the number of steps done.
    public var afterStep: ((Int) throws -> Void)?
    /// Fields shown on every progress line after the step's own (the latest evaluation).
    public var progressFields: [(String, String)] = []

    /// Opens `directory` for a run: a fresh one (refused when it already holds checkpoints) or,
    /// with `resume`, the continuation of the run recorded there (the run file must be the same).
    /// `settings` go into run.json of a fresh run, with the seed and thread count added.
    public init(model: TransformerModel, options: OptimizationConfig, directory: URL, resume: Bool,
                runFileText: String, settings: [String: Any], tokenizerJSON: Data, keepCheckpoints: Int) throws {
        self.model = model
        self.options = options
        self.tokenizerJSON = tokenizerJSON
        self.keepCheckpoints = keepCheckpoints
        optimizer = AdamW(model: model, config: options.adam)
        grads = Tensor(shape: [model.parameters.count])
        state = TrainerState(step: 0, rng: ChorusRNG(seed: options.seed), seed: options.seed)
        run = try RunDirectory(url: directory, resuming: resume)
        if resume {
            try run.recordConfig(text: runFileText, settings: [:], resuming: true)
            if let ck = run.latestCheckpoint() {
                state = try run.loadCheckpoint(ck, model: model, optimizer: optimizer)
            }
            try run.truncateMetrics(after: state.step)
        } else {
            if run.latestCheckpoint() != nil { throw RunError.exists(directory.path) }
            try? FileManager.default.removeItem(at: run.metricsURL)
            var all = settings
            all["seed"] = Int(options.seed)
            all["threads"] = Parallel.threads
            all["parameters"] = model.config.parameterCount
            all["started"] = ISO8601DateFormatter().string(from: Date())
            try run.recordConfig(text: runFileText, settings: all, resuming: false)
        }
    }

    /// Runs steps until `options.steps`; `step` accumulates one step's gradients into `grads`
    /// (already zeroed) and may use `state.rng`. Returns the final model directory, or nil when
    /// stopped early (the finished steps are checkpointed).
    @discardableResult
    public func train(_ step: (inout TrainerState) throws -> StepReport) throws -> URL? {
        let o = options
        StopSignal.install()
        defer { StopSignal.uninstall() }
        // The directory stays locked while steps run; afterwards another process may take it.
        defer { run.unlock() }
        let progress = ProgressReporter(total: o.steps, startStep: state.step)
        progress.enabled = showProgress
        var doneHere = 0
        while state.step < o.steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            grads.zero()
            let report = try step(&state)
            try checkFinite(report.loss)
            let norm = clipGradientNorm(grads, maxNorm: o.gradClip)
            let lr = o.schedule.rate(step: state.step, total: o.steps, peak: o.lr)
            optimizer.update(parameters: model.parameters, gradients: grads, lr: Float(lr))
            // A finite gradient can still overflow the weights or AdamW's moments (lr = 1e30):
            // stop before such a state is logged or checkpointed, keeping the last good one.
            try checkFiniteState()
            state.step += 1
            state.counters["tokens", default: 0] += Double(report.tokens)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if state.step % o.logEvery == 0 || state.step == o.steps {
                let row: [(String, JSONLine.Value)] = [
                    ("step", .int(state.step)), ("progress", .double(Double(state.step) / Double(o.steps))),
                    ("loss", .double(report.loss)), ("lr", .double(lr)), ("grad_norm", .double(norm)),
                ] + report.metrics + [
                    ("tokens", .int(report.tokens)), ("tokens_per_s", .double(Double(report.tokens) / dt)),
                    ("step_seconds", .double(dt)),
                ]
                run.appendMetrics(JSONLine(row).text)
            }
            try afterStep?(state.step)
            progress.update(step: state.step, fields: [("loss", String(format: "%.4f", report.loss))] + report.progress + progressFields,
                            tokensPerSecond: Double(report.tokens) / dt)
            let checkpointDue = state.step % o.checkpointEvery == 0 || state.step == o.steps
            if checkpointDue { try checkpoint() }
            doneHere += 1
            let interrupted = StopSignal.requested
            if (stopAfter.map { doneHere >= $0 } ?? false || interrupted) && state.step < o.steps {
                // A requested stop (--max-steps, Ctrl-C, SIGTERM) keeps all finished steps.
                if !checkpointDue { try checkpoint() }
                if interrupted { FileHandle.standardError.write(Data("\nstopped at step \(state.step); continue with --resume \(PathStandIns.restore(run.url.path))\n".utf8)) }
                return nil
            }
        }
        return try run.saveFinal(model: model, tokenizerJSON: tokenizerJSON)
    }

    /// Appends a row that is not a step's (an evaluation) to metrics.jsonl. It must carry a
    /// "step" field: resuming keeps the rows of steps up to the checkpoint's and drops the rest.
    public func appendRow(_ pairs: [(String, JSONLine.Value)]) {
        precondition(pairs.first?.0 == "step", "a metrics row starts with its step")
        run.appendMetrics(JSONLine(pairs).text)
    }

    func checkpoint() throws {
        run.syncMetrics()
        try run.saveCheckpoint(step: state.step, model: model, tokenizerJSON: tokenizerJSON, optimizer: optimizer,
                               state: state, keep: keepCheckpoints)
    }

    /// Throws naming the first parameter tensor that the update made NaN or Inf, or AdamW's
    /// moments when they overflowed.
    func checkFiniteState() throws {
        let failedStep = state.step + 1
        let ck = run.latestCheckpoint()?.path
        if allFinite(model.parameters.data, model.parameters.count),
           allFinite(optimizer.m.data, optimizer.m.count), allFinite(optimizer.v.data, optimizer.v.count) { return }
        for e in model.layout.entries {
            let p = model.parameters.data + e.offset
            for i in 0..<e.count where !p[i].isFinite {
                throw NonFiniteError(step: failedStep, what: "\(e.name) after the update", checkpoint: ck, afterUpdate: true)
            }
        }
        throw NonFiniteError(step: failedStep, what: "AdamW's moment estimates after the update", checkpoint: ck, afterUpdate: true)
    }

    /// Whether every one of `n` floats is finite.
    func allFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Bool {
        for i in 0..<n where !p[i].isFinite { return false }
        return true
    }

    /// Throws naming the loss or the first parameter tensor whose gradient is NaN or Inf.
    func checkFinite(_ loss: Double) throws {
        let failedStep = state.step + 1
        let ck = run.latestCheckpoint()?.path
        if !loss.isFinite { throw NonFiniteError(step: failedStep, what: "loss", checkpoint: ck) }
        if gradientNorm(grads).isFinite { return }
        for e in model.layout.entries {
            let p = grads.data + e.offset
            for i in 0..<e.count where !p[i].isFinite {
                throw NonFiniteError(step: failedStep, what: "the gradient of \(e.name)", checkpoint: ck)
            }
        }
        throw NonFiniteError(step: failedStep, what: "the gradient norm", checkpoint: ck)
    }
}
