import ChorusCore
import ChorusCache
import ChorusModel
import Foundation

/// A cache of teacher scores keyed by (teacher fingerprint, top-k, context ids, response ids).
/// `ChorusCache.ScoreCache` is adapted to it; tests may use an in-memory one.
public protocol TeacherScoreStore: AnyObject {
    func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]?
    /// Records `scores` (one per response token) and returns them as a later `lookup` of the same
    /// key will (the record's precision; the record already stored under the key if there was
    /// one), without counting a hit or miss; nil when the store keeps nothing to read back.
    @discardableResult
    func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int], scores: [PositionScore]) throws -> [PositionScore]?
    /// Hits and misses per teacher name (for metrics).
    func hitsAndMisses() -> [String: (hits: Int, misses: Int)]
    /// Where teacher fingerprints are remembered across runs (nil: none, weights are hashed
    /// once per process).
    var fingerprintMemo: FingerprintMemo? { get }
}

extension TeacherScoreStore {
    public var fingerprintMemo: FingerprintMemo? { nil }
}

/// `ChorusCache.ScoreCache` as the pool's score store. A record is keyed by the teacher's
/// fingerprint, the options (top-k, start = context length) and the whole context ids
/// (context + response), and holds one position per response token.
///
/// Fingerprints are remembered in the cache directory (`FingerprintMemo`), so a warm run reads
/// no weights file.
public final class ScoreCacheStore: TeacherScoreStore {
    public let cache: ScoreCache
    public let fingerprintMemo: FingerprintMemo?
    public init(cache: ScoreCache) {
        self.cache = cache
        fingerprintMemo = FingerprintMemo(directory: cache.directory)
    }
    public convenience init(directory: URL) throws { self.init(cache: try ScoreCache(directory: directory)) }

    func key(_ fp: TeacherFingerprint, _ topK: Int, _ context: [Int], _ response: [Int]) -> CacheKey {
        CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: topK, start: context.count),
                      tokens: (context + response).map { Int32(truncatingIfNeeded: $0) })
    }

    public func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]? {
        cache.lookup(key(fingerprint, topK, context, response), teacher: teacher)?.positions
    }

    @discardableResult
    public func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int],
                      scores: [PositionScore]) throws -> [PositionScore]? {
        try cache.storeReadingBack(key(fingerprint, topK, context, response), ScoreRecord(positions: scores), teacher: teacher).record?.positions
    }

    public func hitsAndMisses() -> [String: (hits: Int, misses: Int)] {
        cache.counterSnapshot().mapValues { (hits: $0.hits, misses: $0.misses) }
    }
}
