import ChorusCore
import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

extension TeacherPool {
    /// Scores prompt groups with every active teacher and aggregates them into π_ref.
    ///
    /// For each group the aggregator's mixture at (progress, group.index) picks the weights;
    /// the teachers see `aggregator.teacherPrompt(group.prompt)`. Teachers with weight 0 are
    /// skipped unless `scoreInactive` (their per-teacher log-probs are then reported too).
    /// `keepDistribution` returns the (T, V) log π_ref rows; `keepTopTokens` the argmax of each
    /// row (`ReferenceScores.topTokens`, the "virtual rollout"): one pass over V per position,
    /// nothing else changes.
    public func score(_ groups: [ScoringGroup], aggregator: any Aggregator, progress: Double,
                      scoreInactive: Bool = false, keepDistribution: Bool = false,
                      keepTopTokens: Bool = false) throws -> [[ReferenceScores]] {
        if aggregator.teacherCount != teachers.count {
            throw PoolError.aggregatorSize(aggregator: aggregator.teacherCount, teachers: teachers.count)
        }
        if !crossVocabularyTeachers.isEmpty {
            return try scoreChunked(groups, aggregator: aggregator, progress: progress, scoreInactive: scoreInactive,
                                    keepDistribution: keepDistribution, keepTopTokens: keepTopTokens)
        }
        let (mixtures, teacherGroups) = try mixturesAndTeacherGroups(groups, aggregator: aggregator, progress: progress)
        // Each teacher scores every group that needs it in one call (one batched forward for a
        // local teacher), so a step's groups share the gemms.
        var sources = [[GroupRows?]](repeating: [GroupRows?](repeating: nil, count: teachers.count), count: groups.count)
        let needed = teachers.indices.map { k in groups.indices.filter { scoreInactive || mixtures[$0].weights[k] > 0 } }
        let scored = teachers.indices.filter { !needed[$0].isEmpty }
        let perTeacher = try teacherRows(scored.map { k in (k, needed[k].map { teacherGroups[$0] }) })
        for (k, rows) in zip(scored, perTeacher) {
            for (j, r) in rows.enumerated() { sources[needed[k][j]][k] = r }
        }
        return try groups.indices.map { gi in
            try scoreGroup(teacherGroups[gi], aggregator: aggregator, mixture: mixtures[gi], sources: sources[gi],
                           keepDistribution: keepDistribution, keepTopTokens: keepTopTokens)
        }
    }

    /// Each listed teacher's rows for its groups (`rows(teacher:groups:)`), in order. When
    /// there are at least as many teachers as threads, local teachers over distinct models,
    /// without a score cache, run side by side on `Parallel.threads` workers
    /// (`Parallel.coarse`), each teacher's forward serially on its worker, teachers dealt
    /// largest first to the least loaded worker (a fixed assignment, so the numbers are those
    /// of one thread): four small teachers' forwards otherwise split every small op over the
    /// cores, and the thread hand-offs cost as much as the ops. With more threads than
    /// teachers each forward keeps every core instead.
    func teacherRows(_ work: [(teacher: Int, groups: [ScoringGroup])]) throws -> [[GroupRows]] {
        let workers = Parallel.threads
        var models: [ObjectIdentifier] = [], costs: [Int] = []
        var local = store == nil && workers > 1 && work.count >= workers
        for (k, _) in work where local {
            guard let source = (teachers[k] as? CheckpointTeacher)?.source ?? (teachers[k] as? SelfTeacher)?.source else { local = false; break }
            let m = try source.model()   // loads the weights here, not on a worker
            models.append(ObjectIdentifier(m))
            costs.append(m.config.parameterCount)
        }
        // Two teachers over one model object would share its RoPE table and buffers.
        if !local || Set(models).count != models.count {
            return try work.map { try rows(teacher: $0.teacher, groups: $0.groups) }
        }
        var load = [Int](repeating: 0, count: workers), owner = [Int](repeating: 0, count: work.count)
        for i in work.indices.sorted(by: { costs[$0] > costs[$1] || (costs[$0] == costs[$1] && $0 < $1) }) {
            let w = load.indices.min { load[$0] < load[$1] }!
            owner[i] = w
            load[w] += costs[i]
        }
        let results = UnsafeMutableBufferPointer<Result<[GroupRows], Error>?>.allocate(capacity: work.count)
        results.initialize(repeating: nil)
        defer { results.deinitialize(); results.deallocate() }
        Parallel.coarse(workers) { w in
            for i in work.indices where owner[i] == w {
                results[i] = Result(catching: { try rows(teacher: work[i].teacher, groups: work[i].groups) })
            }
        }
        return try results.map { try $0!.get() }
    }

    /// One scored teacher's rows for a group (fresh, or as the score store holds them).
    struct GroupRows {
        let rows: any TeacherRows
    }

    /// Aggregates one group from its teachers' rows (`sources[k]` nil for a teacher not scored).
    func scoreGroup(_ g: ScoringGroup, aggregator: any Aggregator, mixture mix: Mixture, sources: [GroupRows?],
                    keepDistribution: Bool, keepTopTokens: Bool = false) throws -> [ReferenceScores] {
        let K = teachers.count, V = vocabularySize
        let scored = (0..<K).filter { sources[$0] != nil }
        let approximate = mix.active.contains { sources[$0]!.rows.isApproximate }

        var results: [ReferenceScores] = []
        let chunk = max(1, chunkRows)
        // Teacher rows (K, chunk, V) then reference rows (chunk, V), kept across calls.
        if aggregationScratch.capacity < (K + 1) * chunk * V { aggregationScratch = Tensor(shape: [(K + 1) * chunk * V]) }
        let buf = aggregationScratch.data, ref = buf + K * chunk * V
        for (r, resp) in g.responses.enumerated() {
            let T = resp.count
            var out = ReferenceScores(logprobs: [Float](repeating: 0, count: T), entropy: [Float](repeating: 0, count: T),
                                      weights: mix.weights, teacherLogprobs: [[Float]?](repeating: nil, count: K),
                                      distribution: keepDistribution ? Tensor(shape: [T, V]) : nil, approximate: approximate)
            for k in scored { out.teacherLogprobs[k] = [Float](repeating: 0, count: T) }
            if keepTopTokens {
                out.topTokens = [Int](repeating: 0, count: T)
                out.topLogprobs = [Float](repeating: 0, count: T)
            }
            var t0 = 0
            while t0 < T {
                let m = min(chunk, T - t0)
                // Each scored teacher's rows and statistics at positions t0 ..< t0 + m.
                var statistics = [[TeacherTokenStatistics?]](repeating: [TeacherTokenStatistics?](repeating: nil, count: K), count: m)
                for k in scored {
                    let base = buf + k * chunk * V
                    let scores = try sources[k]!.rows.rows(response: r, positions: t0..<(t0 + m), into: base)
                    for i in 0..<m {
                        out.teacherLogprobs[k]![t0 + i] = scores[i].logprob
                        statistics[i][k] = TeacherTokenStatistics(logprob: scores[i].logprob, entropy: scores[i].entropy,
                                                                  topLogprob: maxValue(base + i * V, count: V))
                    }
                }
                let mixes = try (0..<m).map { i in
                    try positionMixture(aggregator, group: mix, statistics: statistics[i])
                }
                for i in 0..<m where mixes[i].weights != mix.weights {
                    if out.positionWeights == nil { out.positionWeights = [[Double]](repeating: mix.weights, count: T) }
                    out.positionWeights![t0 + i] = mixes[i].weights
                }
                var ents = [Float](repeating: 0, count: m)
                ents.withUnsafeMutableBufferPointer { eb in
                    let e = eb.baseAddress!
                    parallelFor(m, costPerItem: V * 4 * mix.active.count) { a, b in
                        for i in a..<b {
                            let rows: [UnsafePointer<Float>?] = (0..<K).map { k in mixes[i].weights[k] > 0 ? UnsafePointer(buf + k * chunk * V + i * V) : nil }
                            e[i] = MixtureKernel.combine(mixes[i], rows: rows, count: V, into: ref + i * V)
                        }
                    }
                }
                for i in 0..<m {
                    out.logprobs[t0 + i] = ref[i * V + resp[t0 + i]]
                    out.entropy[t0 + i] = ents[i]
                    let active = mixes[i].active
                    if active.count == 1, sources[active[0]]!.rows.isApproximate, let s = statistics[i][active[0]] {
                        // π_ref is one teacher whose rows were rebuilt: its own log-prob and entropy are exact.
                        out.logprobs[t0 + i] = s.logprob
                        out.entropy[t0 + i] = s.entropy
                    }
                    if keepTopTokens {
                        let (id, lp) = argmax(ref + i * V, count: V)
                        out.topTokens![t0 + i] = id
                        out.topLogprobs![t0 + i] = lp
                    }
                }
                if let d = out.distribution { (d.data + t0 * V).update(from: ref, count: m * V) }
                t0 += m
            }
            results.append(out)
        }
        return results
    }

    /// The aggregator's mixture at one position, checked: weights only on scored teachers,
    /// normalized. The group's mixture comes back unchecked (it chose the scored teachers).
    func positionMixture(_ aggregator: any Aggregator, group mix: Mixture, statistics: [TeacherTokenStatistics?]) throws -> Mixture {
        let m = aggregator.positionMixture(mix, statistics: statistics)
        if m == mix { return m }
        let checked = Mixture(weights: try normalizedWeights(m.weights, count: teachers.count), space: m.space)
        if let k = checked.weights.indices.first(where: { checked.weights[$0] > 0 && statistics[$0] == nil }) {
            throw AggregatorError.badWeights("'\(aggregator.name)' gives weight to teacher \(k) ('\(teachers[k].name)'), which was not scored")
        }
        return checked
    }

    /// A teacher's rows for each of `groups`: its cached records when every response of the
    /// group is in the store, otherwise the teacher's own rows (all such groups in one call),
    /// whose scores (with the cache's top-k) are recorded and then used as the store gives them
    /// back (`storedRows`).
    func rows(teacher k: Int, groups: [ScoringGroup]) throws -> [GroupRows] {
        let t = teachers[k]
        guard let store, t.isCacheable else { return try t.rows(for: groups, topK: 0).map { GroupRows(rows: $0) } }
        let fp = try t.fingerprint(memo: store.fingerprintMemo)
        var out = [GroupRows?](repeating: nil, count: groups.count)
        var missing: [(index: Int, context: [Int])] = []
        for (i, g) in groups.enumerated() {
            let ctx = try t.context(for: g)
            var recs: [[PositionScore]] = []
            for resp in g.responses {
                guard let r = store.lookup(teacher: t.name, fingerprint: fp, topK: cacheTopK, context: ctx, response: resp),
                      r.count == resp.count else { break }
                recs.append(r)
            }
            if recs.count == g.responses.count {
                out[i] = GroupRows(rows: TopKRows(scores: recs, targets: g.responses, vocabularySize: t.vocabularySize))
            } else {
                missing.append((i, ctx))
            }
        }
        if !missing.isEmpty {
            let fresh = try t.rows(for: missing.map { groups[$0.index] }, topK: cacheTopK)
            for (j, m) in missing.enumerated() {
                out[m.index] = try storedRows(store, teacher: t, fingerprint: fp, context: m.context, group: groups[m.index], fresh: fresh[j])
            }
        }
        return out.map { $0! }
    }

    /// Records a group's freshly computed scores in the store and returns the rows the store
    /// gives back: the record's top-k entries at its storage precision (`TopKRows`), exactly what
    /// a later lookup returns. So a step trains on the same reference whether its scores were
    /// computed now or read from the cache later — a resumed run that redoes a step, a re-run,
    /// the later strategies of `chorus compare` — and a resume stays exact with a cache. Falls
    /// back to the fresh rows when the store keeps nothing (a store whose `store` returns nil).
    func storedRows(_ store: TeacherScoreStore, teacher t: Teacher, fingerprint fp: TeacherFingerprint, context: [Int],
                    group g: ScoringGroup, fresh: any TeacherRows) throws -> GroupRows {
        var stored: [[PositionScore]] = []
        var complete = true
        for (r, resp) in g.responses.enumerated() {
            let scores = try fresh.rows(response: r, positions: 0..<resp.count, into: nil)
            let back = try store.store(teacher: t.name, fingerprint: fp, topK: cacheTopK, context: context, response: resp, scores: scores)
            if let back, back.count == resp.count { stored.append(back) } else { complete = false }
        }
        guard complete else { return GroupRows(rows: fresh) }
        return GroupRows(rows: TopKRows(scores: stored, targets: g.responses, vocabularySize: t.vocabularySize))
    }
}

/// The index and value of the largest of n floats (the first on ties; NaN never wins).
func argmax(_ x: UnsafePointer<Float>, count n: Int) -> (Int, Float) {
    var best = 0, value = -Float.infinity
    for j in 0..<n where x[j] > value { best = j; value = x[j] }
    return (best, value)
}

/// The largest of n floats.
func maxValue(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var mv = FloatVec(repeating: -.infinity)
    var j = 0
    while j + 8 <= n { let v = loadVec(x + j); mv.replace(with: v, where: v .> mv); j += 8 }
    var m = mv.max()
    while j < n { m = max(m, x[j]); j += 1 }
    return m
}

extension TeacherPool {
    /// Each group's teacher mixture at `progress`, and the group as the teachers see it (its
    /// prompt through `aggregator.teacherPrompt`, e.g. without a control token). Shared by the
    /// per-token and the chunked (cross-tokenizer) scoring paths. Throws when a teachers'
    /// prompt comes out empty.
    func mixturesAndTeacherGroups(_ groups: [ScoringGroup], aggregator: any Aggregator,
                                  progress: Double) throws -> ([Mixture], [ScoringGroup]) {
        var mixtures: [Mixture] = [], teacherGroups: [ScoringGroup] = []
        for g in groups {
            mixtures.append(try aggregator.mixture(AggregationContext(progress: progress, group: g.index)))
            var tg = g
            tg.prompt = aggregator.teacherPrompt(g.prompt)
            if tg.prompt.isEmpty { throw PoolError.badGroup("group \(g.index): the teachers' prompt is empty") }
            teacherGroups.append(tg)
        }
        return (mixtures, teacherGroups)
    }
}
