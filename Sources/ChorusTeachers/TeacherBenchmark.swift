import ChorusCore
import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// Scoring throughput of a teacher pool on a built-in shape with random weights, for
/// `chorus bench`: response positions aggregated per second (arithmetic mean over all
/// teachers, full distributions, prompt prefix shared across a group's responses).
public enum TeacherBenchmark {
    /// Measures, for each teacher count K in `teacherCounts`, the response positions per second
    /// of `TeacherPool.score` on one group of `responses` responses of `responseLength` tokens
    /// after a `promptLength`-token prompt. Keys: `score_positions_per_s_<K>_teacher(s)`, plus
    /// `score_positions_per_s_1_teacher_unshared` (prefix recomputed per response) when 1 is
    /// among the counts, and `…_cache_miss` (a score store that never hits: scoring plus the
    /// top-k scores a cache would record).
    public static func run(shape: BuiltinShape = .qwen3_10m, teacherCounts: [Int] = [1, 4], promptLength: Int = 128,
                           responses: Int = 4, responseLength: Int = 128, minSeconds: Double = 2) throws -> [(String, Double)] {
        let V = shape.config.vocabSize
        var rng = ChorusRNG(seed: 1)
        let prompt = (0..<promptLength).map { _ in rng.int(below: V) }
        let group = ScoringGroup(prompt: prompt, responses: (0..<responses).map { _ in (0..<responseLength).map { _ in rng.int(below: V) } })
        let positions = Double(responses * responseLength)
        var out: [(String, Double)] = []
        let models: [TransformerModel] = (0..<(teacherCounts.max() ?? 1)).map { k in
            let m = TransformerModel(config: shape.config)
            m.initializeRandom(seed: UInt64(100 + k))
            return m
        }
        for K in teacherCounts {
            let teachers = (0..<K).map { CheckpointTeacher(name: "t\($0)", model: models[$0]) }
            let pool = try TeacherPool(teachers: teachers)
            let agg = try pool.makeAggregator(name: "arithmetic")
            let s = try ModelBenchmark.time(minSeconds: minSeconds) { _ = try pool.score([group], aggregator: agg, progress: 0) }
            out.append(("score_positions_per_s_\(K)_teacher\(K == 1 ? "" : "s")", positions / s))
            // Every lookup misses: the teachers run, their top-20 scores are recorded, and the
            // pool aggregates the rows rebuilt from them, as on a real miss (no disk, no codec).
            pool.store = MissingStore()
            let miss = try ModelBenchmark.time(minSeconds: minSeconds) { _ = try pool.score([group], aggregator: agg, progress: 0) }
            pool.store = nil
            out.append(("score_positions_per_s_\(K)_teacher\(K == 1 ? "" : "s")_cache_miss", positions / miss))
            if K == 1 {
                teachers[0].runner.sharePrefix = false
                let u = try ModelBenchmark.time(minSeconds: minSeconds) { _ = try pool.score([group], aggregator: agg, progress: 0) }
                out.append(("score_positions_per_s_1_teacher_unshared", positions / u))
            }
        }
        return out
    }
}

/// A score store that never hits and keeps nothing, but hands a stored response's scores back
/// as given: the pool's work on a cache miss (score, record, aggregate the recorded rows)
/// without disk or record codec.
final class MissingStore: TeacherScoreStore {
    func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]? { nil }
    func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int], scores: [PositionScore]) throws -> [PositionScore]? { scores }
    func hitsAndMisses() -> [String: (hits: Int, misses: Int)] { [:] }
}
