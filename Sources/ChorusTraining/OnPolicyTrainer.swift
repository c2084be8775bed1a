import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTeachers
import ChorusTensor
import ChorusTokenizer
import Foundation

/// On-policy distillation: the student samples G responses to each of P prompts, the teacher
/// pool scores them, the aggregator makes π_ref, and the per-token weights update the student.
/// One step reads top to bottom in `step`: rollout → score → aggregate → weights → correct →
/// filter → clip/whiten → loss → update (the update itself is `OptimizationLoop`'s).
public final class OnPolicyTrainer {
    public let config: OnPolicyConfig
    /// The student being trained.
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public let pool: TeacherPool
    public let aggregator: any Aggregator
    /// The training prompts (`data.prompts`, or `data.benchmark`'s train split).
    public let prompts: [PromptRecord]
    /// The evaluations run every `eval.every` steps, one per set of `[eval]` (`data`, then each
    /// of `benchmarks`); empty without an `[eval]` table.
    public let evaluators: [Evaluator]
    /// The first evaluation (nil without an `[eval]` table).
    public var evaluator: Evaluator? { evaluators.first }
    /// The prompts' student token ids (before any control token).
    let promptIds: [[Int]]
    public let loop: OptimizationLoop
    let stopTokens: Set<Int>
    let tape = TrainingTape()
    /// The reduced-precision copy the sampler reads (nil: the student itself).
    var sampler: TransformerModel?
    let workspace = ForwardWorkspace()

    /// Print progress to stderr.
    public var showProgress: Bool { get { loop.showProgress } set { loop.showProgress = newValue } }
    /// Stop after this many steps of this process (`--max-steps`).
    public var stopAfter: Int? { get { loop.stopAfter } set { loop.stopAfter = newValue } }

    /// Prepares a run: student, tokenizer, prompts, teacher pool (and cache), aggregator; a fresh
    /// run directory or, with `resume`, the continuation of one.
    public init(config: OnPolicyConfig, resume: URL? = nil) throws {
        self.config = config
        Parallel.configure(threads: config.opt.threads)
        let tokURL = config.student.appendingPathComponent("tokenizer.json")
        let tok = try Tokenizer(contentsOf: tokURL)
        tokenizer = tok
        var student = try TransformerModel.load(directory: config.student)
        let promptSet = try config.promptDataset()
        prompts = promptSet.records
        promptIds = prompts.map { tok.encode($0.prompt) }
        for (r, p) in zip(prompts, promptIds) where p.isEmpty {
            throw DataError.badLine(file: promptSet.path, line: r.line, reason: "field \"prompt\": encodes to no tokens")
        }
        // Control-token routing adds one <|teacher-k|> token per teacher to the student.
        var options = AggregatorOptions(boundaries: config.boundaries, softSwitchLogSpace: config.softSwitchLogSpace, seed: config.opt.seed)
        let manifest = try PoolManifest.load(contentsOf: config.pool)
        // Stage weights name teachers: checked against the pool before any model loads.
        options.curriculum = try config.curriculum(manifest: manifest)
        if config.aggregator == "control-token" {
            let (m, ids) = try ControlTokenInstaller.install(student: student, tokenizer: tokenizer, teacherCount: manifest.teachers.count)
            student = m
            options.controlTokenIds = ids
        }
        model = student
        // Evaluation prompts of a control-token student start with the strongest (last)
        // teacher's token, as DESIGN.md's routing prescribes at evaluation.
        let evalPrefix = options.controlTokenIds?.last.map { [$0] } ?? []
        evaluators = try config.eval?.evaluators(tokenizer: tok, seed: config.opt.seed, prefix: evalPrefix) ?? []
        pool = try TeacherPool.load(manifest: config.pool, student: StudentSource(
            directory: config.student, liveModel: config.followSelfTeacher ? model : nil))
        options.weights = pool.weights
        // Cross-tokenizer teachers give chunk log-probs only: no rows over the student's vocabulary.
        if config.fullVocabulary { try pool.requireSharedVocabulary(for: "objective.full_vocabulary = true") }
        if config.filter == .teacherEntropy { try pool.requireSharedVocabulary(for: "filter.by = \"teacher-entropy\"") }
        if let dir = config.cache { pool.store = try ScoreCacheStore(directory: dir) }
        pool.cacheTopK = config.cacheTopK
        aggregator = try AggregatorFactory.make(name: config.aggregator, teacherCount: pool.teachers.count, options: options)
        for p in promptIds { try model.checkTokens(p) }
        // Run-file sizes: one micro-batch of the longest rollout must fit the memory limit.
        let longest = (promptIds.map(\.count).max() ?? 0) + config.maxTokens
        try MemoryCheck.training(model.config, tokens: config.opt.microBatch * longest, longest: longest)
        stopTokens = Set(model.config.eosTokenIds)
        var opt = config.opt
        if let e = config.epochs { opt.steps = max(1, Int((e * Double(prompts.count) / Double(config.promptsPerStep)).rounded(.up))) }
        var settings: [String: Any] = ["kind": "opd", "prompts": prompts.count, "teachers": pool.names,
                                       "aggregator": config.aggregator, "steps": opt.steps]
        // The stages as used (normalised), also when they came from the pool manifest.
        if let c = options.curriculum { settings["curriculum"] = c.settings(teacherNames: pool.names) }
        loop = try OptimizationLoop(model: model, options: opt, directory: resume ?? config.outputDir, resume: resume != nil,
                                    runFileText: config.text,
                                    settings: settings,
                                    tokenizerJSON: Data(tokenizer.jsonString().utf8), keepCheckpoints: config.keepCheckpoints)
        // Rollout files of steps after the checkpoint belong to lost work (redone now); a fresh
        // run starts with none.
        RolloutLog.removeSteps(after: loop.state.step, run: loop.run.url)
    }

    /// Whether 1-based step `s` records its rollouts: step 1, every `rollouts_every`-th, the last.
    func recordsRollouts(step s: Int) -> Bool {
        let every = config.rolloutsEvery
        return every > 0 && (s == 1 || s % every == 0 || s == loop.options.steps)
    }

    /// Runs the remaining steps; returns the final model directory (nil if stopped early).
    @discardableResult
    public func train() throws -> URL? {
        let periodic = PeriodicEvaluation(evaluators: evaluators, model: model, stopTokens: stopTokens, loop: loop)
        if let every = config.eval?.every { try periodic.attach(every: every) }
        defer { periodic.detach() }
        return try loop.train { state in try self.step(&state) }
    }

    /// The prompts of 0-based step `step`: a seeded permutation per epoch, so any step's batch
    /// is a pure function of (seed, step).
    func promptIndices(step: Int) -> [Int] {
        var order = EpochOrder(count: prompts.count, seed: config.opt.seed ^ 0x0D15_7111)
        return (0..<config.promptsPerStep).map { order.index(step * config.promptsPerStep + $0) }
    }

    /// One on-policy step; accumulates the gradient into `loop.grads`.
    func step(_ state: inout TrainerState) throws -> StepReport {
        let c = config, G = c.groupSize
        let progress = Double(state.step) / Double(loop.options.steps)
        var clock = StepClock()

        // 1. Rollout: G samples per prompt from the student (or its reduced-precision copy).
        let picked = promptIndices(step: state.step)
        let routing = aggregator as? ControlTokenRouting
        let groupIndex = picked.indices.map { state.step * c.promptsPerStep + $0 }
        let studentPrompts = picked.indices.map { j in routing?.studentPrompt(promptIds[picked[j]], group: groupIndex[j]) ?? promptIds[picked[j]] }
        let seeds = (0..<(picked.count * G)).map { _ in state.rng.next() }
        let rolloutModel = try samplingModel()
        let rollouts = try rolloutModel.generate(
            prompts: studentPrompts, samplesPerPrompt: G, maxTokens: c.maxTokens,
            params: SamplingParameters(temperature: Float(c.temperature), topP: Float(c.topP)), seeds: seeds,
            stopTokens: stopTokens, suppressTokens: routing?.controlTokenIds ?? [], workspace: workspace)
        clock.lap("rollout")

        // 2. Score and aggregate: one group per prompt, at progress p.
        let groups = picked.indices.map { j in
            ScoringGroup(prompt: studentPrompts[j], responses: rollouts[(j * G)..<(j * G + G)].map { Array($0.response) },
                         index: groupIndex[j], privileged: prompts[picked[j]].fields, promptText: prompts[picked[j]].prompt)
        }
        let before = pool.store?.hitsAndMisses() ?? [:]
        let recording = recordsRollouts(step: state.step + 1)
        let refs = try pool.score(groups, aggregator: aggregator, progress: progress, keepDistribution: c.fullVocabulary,
                                  keepTopTokens: recording).flatMap { $0 }
        let after = pool.store?.hitsAndMisses() ?? [:]
        clock.lap("scoring")

        // 3. The learner's log-probs (f32) and entropies of the sampled tokens.
        let batch = rollouts.map { TrainingSequence(tokens: $0.tokens, promptLength: $0.promptLength) }
        let micro = loop.options.microBatch > 0 ? loop.options.microBatch : batch.count
        var learner = ResponseScores(logprobs: [], entropy: [])
        for mb in stride(from: 0, to: batch.count, by: micro) {
            let s = try model.trainingForward(Array(batch[mb..<min(batch.count, mb + micro)]), tape: tape, sharePrompts: true)
            learner.logprobs += s.logprobs
            learner.entropy += s.entropy
        }
        let refLogprobs = refs.map(\.logprobs)

        // 4. Weights: −f′(r) (discounted, scaled), rollout correction, token filter, clipping,
        //    whitening, loss normalisation.
        // A response scored per chunk (a cross-tokenizer teacher) gives every token of chunk c
        // the chunk's log r_c; otherwise log r_t per token.
        let chunked = refs.contains { $0.chunks != nil }
        let logRatios = chunked ? tokenLogRatios(student: learner.logprobs, reference: refLogprobs, chunks: refs.map(\.chunks)) : nil
        var advantage = logRatios.map { divergenceWeights(logRatios: $0, divergence: c.divergence) }
            ?? divergenceWeights(student: learner.logprobs, reference: refLogprobs, divergence: c.divergence)
        advantage = discounted(advantage, gamma: c.gamma).map { $0.map { $0 * Float(c.coefficient) } }
        let (isWeights, masked) = correctionWeights(learner: learner.logprobs, rollout: rollouts.map(\.logprobs),
                                                    mode: c.correction, lo: c.correctionLo, hi: c.correctionHi)
        let eligible = masked.map { $0.map { !$0 } }
        var kept = eligible
        if let by = c.filter {
            let scores: [[Float]]
            switch by {
            case .kl: scores = logRatios?.map { $0.map(abs) } ?? zip(learner.logprobs, refLogprobs).map { zip($0, $1).map { abs($0 - $1) } }
            case .studentEntropy: scores = learner.entropy
            case .teacherEntropy: scores = refs.map(\.entropy)
            }
            kept = percentileFilter(scores: scores, eligible: eligible, pMin: c.filterMin, pMax: c.filterMax)
        }
        let (clippedAdvantage, clippedCount) = clipped(advantage, limit: c.clip)
        advantage = whitened(clippedAdvantage, kept: kept, mode: c.whitening, groupSize: G)
        let norm = lossNormalisers(kept: kept, aggregation: c.loss)
        if recording {
            // The factor on ∇log π_θ(y_t) (or on D_f at t, full vocabulary): what step 5 uses.
            let weights = batch.indices.map { i in (0..<batch[i].responseLength).map { t in
                norm[i][t] * isWeights[i][t] * (c.fullVocabulary ? Float(c.coefficient) : advantage[i][t])
            } }
            try recordRollouts(step: state.step + 1, picked: picked, studentPrompts: studentPrompts, rollouts: rollouts,
                               learner: learner, refs: refs, masked: masked, kept: kept, weights: weights)
        }

        // 5. Loss and backward: L = −Σ_t m_t·w_t·n_t·sg(Â_t)·log π_θ(y_t) (− β·H_t), or the exact
        //    full-vocabulary divergence.
        var loss = 0.0
        for mb in stride(from: 0, to: batch.count, by: micro) {
            let range = mb..<min(batch.count, mb + micro)
            if micro < batch.count { _ = try model.trainingForward(Array(batch[range]), tape: tape, sharePrompts: true) }
            let coef = range.map { i in (0..<batch[i].responseLength).map { t in norm[i][t] * isWeights[i][t] } }
            if c.fullVocabulary {
                let rows = try range.map { i -> UnsafePointer<Float> in
                    guard let d = refs[i].distribution else { throw PoolError.badGroup("the pool returned no distribution for full_vocabulary") }
                    return UnsafePointer(d.data)
                }
                loss += withExtendedLifetime(refs) {
                    model.trainingBackward(FullVocabularyDivergence(divergence: c.divergence, reference: rows,
                                                                    coefficients: coef.map { $0.map { $0 * Float(c.coefficient) } }),
                                           tape: tape, grads: loop.grads)
                }
            } else {
                let w = range.map { i in (0..<batch[i].responseLength).map { t in coef[i - mb][t] * advantage[i][t] } }
                let e = c.entropyBonus == 0 ? nil : range.map { i in norm[i].map { $0 * Float(c.entropyBonus) } }
                loss += model.trainingBackward(TokenObjective(weights: w, entropyWeights: e), tape: tape, grads: loop.grads)
            }
        }
        clock.lap("update")

        return StepReport(
            loss: loss, tokens: batch.reduce(0) { $0 + $1.tokens.count },
            metrics: metrics(rollouts: rollouts, learner: learner, refs: refs, masked: masked, kept: kept, isWeights: isWeights,
                             clipped: clippedCount, cacheBefore: before, cacheAfter: after, clock: clock),
            progress: [("kl", String(format: "%.4f", mean(zip(learner.logprobs.joined(), refLogprobs.joined()).map { Double($0 - $1) }))),
                       ("masked", String(format: "%.3f", fraction(masked)))])
    }

    /// Writes RUN_DIR/rollouts/step-S.jsonl: every sample of the step with its per-token
    /// scores (`RolloutRecord`). Reads the step's values only, so training is unchanged.
    func recordRollouts(step: Int, picked: [Int], studentPrompts: [[Int]], rollouts: [Generation], learner: ResponseScores,
                        refs: [ReferenceScores], masked: [[Bool]], kept: [[Bool]], weights: [[Float]]) throws {
        let G = config.groupSize
        // A token's own bytes as text; bytes that are not whole UTF-8 characters (a byte-level
        // token inside a multi-byte character) as <0xAB>, rather than U+FFFD.
        let table = tokenizer.byteTable()
        func text(_ id: Int) -> String {
            if let table, table.contains(id) {
                let bytes = Array(table.span(id))
                return String(bytes: bytes, encoding: .utf8) ?? bytes.map { String(format: "<0x%02X>", $0) }.joined()
            }
            return (try? tokenizer.decode([id])) ?? "<\(id)>"
        }
        let checker = ExactMatch()
        var records: [RolloutRecord] = []
        for i in 0..<rollouts.count {
            let j = i / G, problem = prompts[picked[j]], ref = refs[i]
            let response = Array(rollouts[i].response)
            let completion = completionText(response, stopTokens: stopTokens, tokenizer: tokenizer)
            var reward: Double?
            if problem.answer != nil { reward = completion.map { checker.reward(completion: $0, problem: problem) } ?? 0 }
            let chunks: [[Int]]? = ref.chunks?.map { [$0.lowerBound, $0.upperBound] }
            records.append(RolloutRecord(
                step: step, sample: i, group: j, prompt: problem.prompt, promptIds: studentPrompts[j], responseIds: response,
                tokens: response.map(text), rolloutLogprob: rollouts[i].logprobs, learnerLogprob: learner.logprobs[i],
                studentEntropy: learner.entropy[i], referenceLogprob: ref.logprobs, referenceEntropy: ref.entropy,
                teachers: pool.names, teacherLogprobs: ref.teacherLogprobs, teacherWeights: ref.weights,
                masked: masked[i], kept: kept[i], weight: weights[i],
                referenceTop1: ref.topTokens, referenceTop1Tokens: ref.topTokens?.map(text), referenceTop1Logprob: ref.topLogprobs,
                chunks: chunks, answer: problem.answer, completion: completion, reward: reward))
        }
        try RolloutLog.write(records, step: step, run: loop.run.url)
    }

    /// The model the sampler uses this step: the student, or a copy rounded to bf16/f16.
    func samplingModel() throws -> TransformerModel {
        guard config.precision != .f32 else { return model }
        sampler = model.samplingCopy(precision: config.precision, reusing: sampler)
        return sampler!
    }

    /// The metrics row fields of a step (DESIGN.md's list).
    func metrics(rollouts: [Generation], learner: ResponseScores, refs: [ReferenceScores], masked: [[Bool]], kept: [[Bool]],
                 isWeights: [[Float]], clipped: Int, cacheBefore: [String: (hits: Int, misses: Int)],
                 cacheAfter: [String: (hits: Int, misses: Int)], clock: StepClock) -> [(String, JSONLine.Value)] {
        let lr = zip(learner.logprobs.joined(), refs.map(\.logprobs).joined()).map { Double($0) - Double($1) }
        let tokens = lr.count
        var out: [(String, JSONLine.Value)] = []
        if pool.crossVocabularyTeachers.isEmpty {
            out += [
                ("kl_k1", .double(mean(lr))),
                ("kl_k3", .double(mean(lr.map { Foundation.exp(-$0) - 1 + $0 }))),
            ]
        } else {
            out += chunkKLMetrics(learner: learner, refs: refs, tokens: tokens)
        }
        for (k, name) in pool.names.enumerated() where pool.crossVocabularyTeachers.isEmpty {
            var d: [Double] = []
            for (i, r) in refs.enumerated() {
                guard let t = r.teacherLogprobs[k] else { continue }
                d += zip(learner.logprobs[i], t).map { Double($0) - Double($1) }
            }
            out.append(("kl_k1/\(name)", .double(d.isEmpty ? .nan : mean(d))))
            out.append(("kl_k3/\(name)", .double(d.isEmpty ? .nan : mean(d.map { Foundation.exp(-$0) - 1 + $0 }))))
        }
        for (k, name) in pool.names.enumerated() {
            out.append(("weight/\(name)", .double(mean(refs.map { $0.weights[k] }))))
        }
        let drift = zip(rollouts.flatMap(\.logprobs), learner.logprobs.joined()).map { Double($0) - Double($1) }
        let rhos = zip(learner.logprobs.joined(), rollouts.flatMap(\.logprobs)).map { Foundation.exp(Double($0) - Double($1)) }
        out += [
            ("student_entropy", .double(mean(learner.entropy.joined().map(Double.init)))),
            ("reference_entropy", .double(pool.crossVocabularyTeachers.isEmpty ? mean(refs.flatMap(\.entropy).map(Double.init))
                                                : mean(refs.flatMap(\.entropy).filter { !$0.isNaN }.map(Double.init)))),
            ("response_length", .double(Double(tokens) / Double(max(1, rollouts.count)))),
            ("ppl_drift", .double(mean(drift))),
            ("masked_fraction", .double(fraction(masked))),
            ("kept_fraction", .double(fraction(kept))),
            ("clipped_fraction", .double(Double(clipped) / Double(max(1, tokens)))),
            ("is_weight_mean", .double(mean(rhos))),
            ("is_weight_min", .double(rhos.min() ?? .nan)),
            ("is_weight_max", .double(rhos.max() ?? .nan)),
        ]
        var hits = 0, misses = 0
        for (name, a) in cacheAfter {
            let b = cacheBefore[name] ?? (0, 0)
            hits += a.hits - b.hits; misses += a.misses - b.misses
        }
        out += [("cache_hits", .int(hits)), ("cache_misses", .int(misses))]
        for (name, s) in clock.laps { out.append(("seconds_\(name)", .double(s))) }
        return out
    }
}

extension OnPolicyTrainer {
    /// KL metrics of a pool with a cross-tokenizer teacher, from chunk log-ratios log r_c
    /// (a token-scored response counts each token as a chunk): `kl_k1` = Σ_c log r_c / tokens
    /// and `kl_k3` = Σ_c (1/r_c − 1 + log r_c) / tokens (per student token, as in a
    /// same-vocabulary pool), `chunk_kl_k1` / `chunk_kl_k3` the means over chunks; the same per
    /// teacher (`kl_k1/NAME`, …, `chunk_kl_k3/NAME`; null for a teacher not scored that step).
    func chunkKLMetrics(learner: ResponseScores, refs: [ReferenceScores], tokens: Int) -> [(String, JSONLine.Value)] {
        // `tokens`: the student tokens of the responses the ratios cover.
        func fields(_ suffix: String, _ ratios: [Double], tokens: Int) -> [(String, JSONLine.Value)] {
            let k3 = ratios.map { Foundation.exp(-$0) - 1 + $0 }
            let empty = ratios.isEmpty
            return [("kl_k1" + suffix, .double(empty ? .nan : ratios.reduce(0, +) / Double(max(1, tokens)))),
                    ("kl_k3" + suffix, .double(empty ? .nan : k3.reduce(0, +) / Double(max(1, tokens)))),
                    ("chunk_kl_k1" + suffix, .double(mean(ratios))), ("chunk_kl_k3" + suffix, .double(mean(k3)))]
        }
        let chunks = refs.map(\.chunks)
        var out = fields("", chunkLogRatios(student: learner.logprobs, reference: refs.map(\.logprobs), chunks: chunks).flatMap { $0 },
                         tokens: tokens)
        for (k, name) in pool.names.enumerated() {
            let scored = refs.indices.filter { refs[$0].teacherLogprobs[k] != nil }
            let ratios = chunkLogRatios(student: scored.map { learner.logprobs[$0] }, reference: scored.map { refs[$0].teacherLogprobs[k]! },
                                        chunks: scored.map { chunks[$0] })
            out += fields("/\(name)", ratios.flatMap { $0 }, tokens: scored.reduce(0) { $0 + learner.logprobs[$1].count })
        }
        return out
    }
}

/// Wall-clock seconds of the parts of a step.
struct StepClock {
    private var last = DispatchTime.now().uptimeNanoseconds
    private(set) var laps: [(String, Double)] = []
    mutating func lap(_ name: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        laps.append((name, Double(now - last) / 1e9))
        last = now
    }
}

func mean<S: Sequence>(_ xs: S) -> Double where S.Element == Double {
    var s = 0.0, n = 0
    for x in xs { s += x; n += 1 }
    return n == 0 ? .nan : s / Double(n)
}

func fraction(_ flags: [[Bool]]) -> Double {
    let n = flags.reduce(0) { $0 + $1.count }
    return n == 0 ? 0 : Double(flags.reduce(0) { $0 + $1.filter { $0 }.count }) / Double(n)
}
