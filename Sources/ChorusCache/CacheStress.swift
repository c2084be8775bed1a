import ChorusCore
import Foundation

/// Deterministic records for crash and concurrency tests: the writer process
/// (`chorus cache stress-write`) and the checking test derive item `index` of stream `seed`
/// independently, so the test can tell whether every acknowledged record survived intact.
/// Cheap to generate (no softmax over a vocabulary): realism does not matter here, exactness does.
public enum CacheStress {
    /// Item `index` of stream `seed`: a context of 24–150 tokens scored from position 8 with
    /// top-8, under teacher "stress-<seed % 4>".
    public static func item(seed: UInt64, index: Int) -> (key: CacheKey, record: ScoreRecord, teacher: String) {
        var rng = ChorusRNG(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index))
        let length = 24 + Int(rng.next() % 127)
        let start = 8
        let tokens = (0..<length).map { _ in Int32(rng.next() % 50_000) }
        var positions: [PositionScore] = []
        for t in start..<length {
            var lp: Float = -Float(rng.uniformDouble() * 2)
            var ids: [Int32] = [], lps: [Float] = []
            for j in 0..<8 {
                // Put the actual token in the top-k most of the time, as real teachers do.
                ids.append(j == 0 && rng.next() % 3 != 0 ? tokens[t] : Int32(rng.next() % 50_000))
                lps.append(lp)
                lp -= Float(rng.uniformDouble() * 1.5)
            }
            let actual: Float = ids[0] == tokens[t] ? lps[0] : lp - Float(rng.uniformDouble() * 5)
            positions.append(PositionScore(logprob: actual, entropy: Float(rng.uniformDouble() * 4), topIds: ids, topLogprobs: lps))
        }
        let fingerprint = TeacherFingerprint(bytes: SHA256.hash(Array("stress-teacher-\(seed % 4)".utf8)))
        let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 8, start: start), tokens: tokens)
        return (key, ScoreRecord(positions: positions), "stress-\(seed % 4)")
    }

    /// The record as the cache will return it: quantised exactly as stored. Tests compare
    /// lookups against this, so any byte-level damage that slipped through would show.
    public static func expected(_ key: CacheKey, _ record: ScoreRecord) throws -> ScoreRecord {
        let frame = try RecordFrame.encode(key: key, record: record, teacher: "x", storedAt: 0)
        return try RecordFrame.decode(frame, from: 0, segment: "expected").record
    }
}
