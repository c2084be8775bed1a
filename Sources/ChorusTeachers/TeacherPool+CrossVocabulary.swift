import ChorusCore
import ChorusTensor
import Foundation

extension TeacherPool {
    /// `score` for a pool holding a cross-tokenizer teacher (docs/cross-tokenizer.md).
    ///
    /// A group whose scored teachers all share the student's vocabulary is aggregated per
    /// token exactly as in a same-vocabulary pool (`scoreGroup`). Otherwise each cross teacher
    /// scores the group translated into its own tokens, and every response is cut into the
    /// chunks whose byte boundaries are token boundaries of the student and of every scored
    /// cross teacher. Teacher k's chunk log-prob L_k(c) is the sum of its token log-probs over
    /// the chunk (its own tokens, or the student's for a same-vocabulary teacher), and the
    /// chunk's reference log-prob is, with the mixture's weights w:
    /// - one active teacher: L_k(c)
    /// - probability space (arithmetic, soft switch): log Σ_k w_k exp(L_k(c))
    /// - log space (geometric, log-space soft switch): Σ_k w_k L_k(c), unnormalised (the sum
    ///   over all chunk strings is not computed; it is ≤ 1 by Hölder, so log π_ref(c) is a
    ///   lower bound of the normalised value).
    /// A per-token adaptive aggregator is asked once per chunk, with the teachers' chunk
    /// log-probs and their entropies at the chunk's first position (top log-prob NaN).
    func scoreChunked(_ groups: [ScoringGroup], aggregator: any Aggregator, progress: Double,
                      scoreInactive: Bool, keepDistribution: Bool, keepTopTokens: Bool = false) throws -> [[ReferenceScores]] {
        if keepDistribution {
            try requireSharedVocabulary(for: "the full-vocabulary reference distribution (objective.full_vocabulary)")
        }
        let K = teachers.count
        let (mixtures, studentGroups) = try mixturesAndTeacherGroups(groups, aggregator: aggregator, progress: progress)
        var sources = [[GroupRows?]](repeating: [GroupRows?](repeating: nil, count: K), count: groups.count)
        var translated = [[TranslatedGroup?]](repeating: [TranslatedGroup?](repeating: nil, count: K), count: groups.count)
        for k in teachers.indices {
            let needed = groups.indices.filter { scoreInactive || mixtures[$0].weights[k] > 0 }
            if needed.isEmpty { continue }
            var own: [ScoringGroup] = []
            if let x = teachers[k] as? CrossTokenizerTeacher {
                for gi in needed {
                    let t = try x.translate(studentGroups[gi])
                    translated[gi][k] = t
                    own.append(t.group)
                }
            } else {
                own = needed.map { studentGroups[$0] }
            }
            for (j, rows) in try rows(teacher: k, groups: own).enumerated() { sources[needed[j]][k] = rows }
        }
        return try groups.indices.map { gi in
            if translated[gi].allSatisfy({ $0 == nil }) {
                return try scoreGroup(studentGroups[gi], aggregator: aggregator, mixture: mixtures[gi], sources: sources[gi],
                                      keepDistribution: false, keepTopTokens: keepTopTokens)
            }
            return try chunkGroup(studentGroups[gi], aggregator: aggregator, mixture: mixtures[gi], sources: sources[gi],
                                  translated: translated[gi])
        }
    }

    /// Aggregates one group per chunk (see `scoreChunked`); `translated[k]` is cross teacher
    /// k's view of the group (nil for a same-vocabulary teacher or one not scored).
    func chunkGroup(_ g: ScoringGroup, aggregator: any Aggregator, mixture mix: Mixture, sources: [GroupRows?],
                    translated: [TranslatedGroup?]) throws -> [ReferenceScores] {
        let K = teachers.count
        let scored = (0..<K).filter { sources[$0] != nil }
        let cross = scored.filter { translated[$0] != nil }
        let approximate = mix.active.contains { sources[$0]!.rows.isApproximate }
        var results: [ReferenceScores] = []
        // Per-chunk scratch, reused across chunks and responses.
        var chunkLogprob = [Double](repeating: 0, count: K)
        var statistics = [TeacherTokenStatistics?](repeating: nil, count: K)
        var cursor = [Int](repeating: 0, count: K)
        for (r, resp) in g.responses.enumerated() {
            let T = resp.count
            // Each scored teacher's scores at its own positions.
            var scores = [[PositionScore]](repeating: [], count: K)
            for k in scored {
                let own = translated[k]?.group.responses[r] ?? resp
                scores[k] = try sources[k]!.rows.rows(response: r, positions: 0..<own.count, into: nil)
            }
            // Chunk ends: student token boundaries that end a chunk of every scored cross teacher.
            var endCount = [Int](repeating: 0, count: T + 1)
            for k in cross { for s in translated[k]!.alignments[r].student { endCount[s.upperBound] += 1 } }
            var chunks: [Range<Int>] = []
            var start = 0
            for e in stride(from: 1, through: T, by: 1) where endCount[e] == cross.count {
                chunks.append(start..<e)
                start = e
            }
            var out = ReferenceScores(logprobs: [Float](repeating: 0, count: T), entropy: [Float](repeating: .nan, count: T),
                                      weights: mix.weights, teacherLogprobs: [[Float]?](repeating: nil, count: K),
                                      distribution: nil, approximate: approximate, chunks: chunks)
            for k in scored { out.teacherLogprobs[k] = [Float](repeating: 0, count: T) }
            for k in 0..<K { cursor[k] = 0 }
            for c in chunks {
                for k in scored {
                    var s = 0.0
                    let first: PositionScore?
                    if let tr = translated[k] {
                        // Teacher k's own chunks up to this chunk's end (common ends are a subset of its ends).
                        let a = tr.alignments[r]
                        first = a.count > cursor[k] ? scores[k][a.teacher[cursor[k]].lowerBound] : nil
                        while cursor[k] < a.count, a.student[cursor[k]].upperBound <= c.upperBound {
                            for j in a.teacher[cursor[k]] { s += Double(scores[k][j].logprob) }
                            cursor[k] += 1
                        }
                    } else {
                        first = scores[k][c.lowerBound]
                        for t in c { s += Double(scores[k][t].logprob) }
                    }
                    chunkLogprob[k] = s
                    statistics[k] = TeacherTokenStatistics(logprob: Float(s), entropy: first?.entropy ?? .nan, topLogprob: .nan)
                    out.teacherLogprobs[k]![c.upperBound - 1] = Float(s)
                }
                let m = try positionMixture(aggregator, group: mix, statistics: statistics)
                if m.weights != mix.weights {
                    if out.positionWeights == nil { out.positionWeights = [[Double]](repeating: mix.weights, count: T) }
                    for t in c { out.positionWeights![t] = m.weights }
                }
                out.logprobs[c.upperBound - 1] = Float(Self.chunkMixture(m, chunkLogprob))
            }
            results.append(out)
        }
        return results
    }

    /// log π_ref(chunk) from the teachers' chunk log-probs L (K; entries of weight-0 teachers
    /// are ignored): see `scoreChunked`.
    static func chunkMixture(_ m: Mixture, _ L: [Double]) -> Double {
        let active = m.active
        if active.count == 1 { return L[active[0]] }
        if m.space == .logarithm { return active.reduce(0.0) { $0 + m.weights[$1] * L[$1] } }
        let mx = active.map { Foundation.log(m.weights[$0]) + L[$0] }.max()!
        if mx == -.infinity { return -.infinity }
        return mx + Foundation.log(active.reduce(0.0) { $0 + Foundation.exp(Foundation.log(m.weights[$1]) + L[$1] - mx) })
    }
}
