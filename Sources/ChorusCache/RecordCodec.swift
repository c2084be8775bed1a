import ChorusCore
import Foundation

// The record payload codec: quantisation, transforms, adaptive range coding. The byte layout is
// specified in docs/cache-format.md; keep the two in step.
//
// Why this shape: a teacher's scores are dominated by the top-k (ids, log-probs). Log-probs are
// sorted non-increasing, so after quantising they become small non-negative deltas; ids repeat a
// lot within a context (frequent tokens, topic words), so a move-to-front transform turns them
// into small indices. Every number is then range-coded with an adaptive model of its own kind
// and, for ids and deltas, of its rank: the gap between ranks 1 and 2 is distributed unlike the
// gap between ranks 18 and 19, and a rank-0 id is far more often a recent one.

/// Quantisation steps of the stored values. All steps are powers of two, so the quantised
/// integers convert back to floats exactly.
public enum ScorePrecision {
    /// Actual-token and top-1 log-probs: steps of 1/1024 nat, so the error is at most 1/2048.
    public static let fineStepsPerNat = 1024
    /// Top-k log-probs after the first: steps of 1/64 nat (16 fine steps), error at most
    /// 8.5/1024 = 0.0083 nat (`topLogprobBound`), i.e. under 0.9% relative error in probability.
    /// That is finer than the teacher's own arithmetic: a bf16 logit of magnitude 16–32 is only
    /// resolved to 1/8 nat. Each halving of the step cost about 2.4 bytes per position at k=20 (payload v1).
    public static let coarseShift = 4
    /// Entropy: steps of 1/256 nat, error at most 1/512 nat.
    public static let entropyStepsPerNat = 256
    /// Log-probs below this (including -inf) are stored as this value.
    public static let logprobFloor: Float = -1024
    /// Entropies above this are rejected (no distribution over 2^31 tokens exceeds ~21.5 nats;
    /// the bound keeps the quantised value far inside Int64).
    public static let entropyMax: Float = 1024
    /// A log-prob above 0 by more than this is rejected as invalid; smaller excesses (rounding
    /// in the teacher's log-softmax) are stored as 0.
    public static let positiveTolerance: Float = 1e-3

    /// Maximum absolute error of the actual token's log-prob and of the top-1 log-prob.
    public static let logprobBound: Double = 0.5 / Double(fineStepsPerNat)
    /// Maximum absolute error of top-k log-probs after the first: rounding to a fine step, then
    /// to a coarse step of `2^coarseShift` fine steps (half of it, rounded half-up).
    public static let topLogprobBound: Double = (Double(1 << (coarseShift - 1)) + 0.5) / Double(fineStepsPerNat)
    /// Maximum absolute error of the entropy.
    public static let entropyBound: Double = 0.5 / Double(entropyStepsPerNat)
}

/// What a payload decodes to: the record and the key fields it was stored under.
struct DecodedPayload {
    var fingerprint: TeacherFingerprint
    var options: ScoringOptions
    var tokens: [Int32]
    var record: ScoreRecord
}

enum RecordCodec {
    /// The payload version written and read. (Version 1, column streams left to zstd, was
    /// replaced before any cache was written; docs/cache-format.md.)
    static let payloadVersion: UInt8 = 2
    /// Id coding 2: move-to-front over the ids seen so far in this record, range-coded (1 was
    /// version 1's byte-plane coding of the same list).
    static let idCodingRangeCoded: UInt8 = 2
    /// How many recently seen ids the move-to-front list keeps.
    static let moveToFrontCapacity = 4096
    /// Sanity limits that keep a corrupted count from allocating gigabytes.
    static let maxTokens = 1 << 26
    static let maxTopK = 1 << 16

    // MARK: quantisation

    /// -logprob in fine steps, clamped to [0, -floor]. Exact in Double (steps are powers of two).
    @inline(__always) static func quantiseLogprob(_ lp: Float) -> Int64 {
        let clamped = min(0, max(Double(lp), Double(ScorePrecision.logprobFloor)))
        return Int64((-clamped * Double(ScorePrecision.fineStepsPerNat)).rounded(.toNearestOrAwayFromZero))
    }

    @inline(__always) static func dequantiseFine(_ q: Int64) -> Float {
        Float(-Double(q) / Double(ScorePrecision.fineStepsPerNat))
    }

    /// Fine steps to coarse steps, rounding half up; monotone, so sorted input stays sorted.
    @inline(__always) static func coarse(_ fine: Int64) -> Int64 {
        (fine + (1 << (ScorePrecision.coarseShift - 1))) >> ScorePrecision.coarseShift
    }

    /// What the decoder rebuilds for rank >= 1, in fine steps: the coarse value, but never
    /// above the top-1 log-prob (rounding a coarse step up could otherwise overtake the finely
    /// stored top-1 and break the non-increasing order). The true value is <= top-1, so the clamp
    /// only moves it closer: the error stays within `topLogprobBound`.
    @inline(__always) static func reconstructed(_ fine: Int64, top1: Int64) -> Int64 {
        max(coarse(fine) << ScorePrecision.coarseShift, top1)
    }

    // MARK: encode

    /// The adaptive models of the payload, one per kind of number. The coder state of a
    /// record starts fresh: a record decodes on its own.
    struct ScoreModels {
        /// Context tokens that the scores do not imply (prompt, actual tokens outside the top-k,
        /// unscored tail).
        let tokens = AdaptiveIntegers(contexts: 1)
        let counts = AdaptiveIntegers(contexts: 1)
        /// Move-to-front codes, by rank group (`idContext`).
        let idCodes = AdaptiveIntegers(contexts: RecordCodec.idContexts)
        let newIds = AdaptiveIntegers(contexts: 1)
        let top1 = AdaptiveIntegers(contexts: 1)
        /// Coarse log-prob gaps, by rank group (`deltaContext`).
        let deltas = AdaptiveIntegers(contexts: RecordCodec.deltaContexts)
        let rank = AdaptiveIntegers(contexts: 1)
        /// Actual-token residuals: actual is the top-1 / elsewhere in the top-k / not in it.
        let residual = AdaptiveIntegers(contexts: 3)
        /// Entropies, by the magnitude of this position's top-1 log-prob (`entropyContext`).
        let entropy = AdaptiveIntegers(contexts: RecordCodec.entropyContexts)
    }

    static let entropyContexts = 14
    /// 0 without a top-k, else 1 + the bit length of the top-1 in fine steps, capped: a confident
    /// position has a low entropy.
    @inline(__always) static func entropyContext(k: Int, top1: Int64) -> Int {
        k == 0 ? 0 : 1 + min(64 - UInt64(top1).leadingZeroBitCount, entropyContexts - 2)
    }

    static let idContexts = 5
    /// Rank groups of the id codes: ranks 0, 1–2, 3–6, 7–12, 13 and beyond.
    @inline(__always) static func idContext(_ j: Int) -> Int {
        j < 1 ? 0 : (j < 3 ? 1 : (j < 7 ? 2 : (j < 13 ? 3 : 4)))
    }

    static let deltaContexts = 19
    /// Contexts of the log-prob gaps: the gap after the top-1 by how confident the top-1 is (its
    /// −log-prob below 1/16, 1/4, 1 nat, or more: a confident top-1 stands far above the rest),
    /// then ranks 2–15 each, then 16 and beyond.
    @inline(__always) static func deltaContext(_ j: Int, top1: Int64) -> Int {
        if j == 1 { return top1 < 64 ? 0 : (top1 < 256 ? 1 : (top1 < 1024 ? 2 : 3)) }
        return min(j, 16) + 2
    }

    @inline(__always) static func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
    @inline(__always) static func unzigzag(_ u: UInt64) -> Int64 { Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1) }

    /// The uncompressed payload (version 2) of a record, checked for validity first.
    static func encodePayload(key: CacheKey, record: ScoreRecord) throws -> [UInt8] {
        let n = record.positions.count
        let start = key.options.start
        try validateContext(key, positions: n)
        var w = ByteWriter(capacity: 64 + key.options.canonicalBytes.count + key.fingerprint.bytes.count)
        w.u8(payloadVersion)
        w.blob(key.fingerprint.bytes)
        w.raw(key.options.canonicalBytes)
        w.varint(UInt64(n))
        w.u8(UInt8(ScorePrecision.coarseShift))
        w.u8(idCodingRangeCoded)
        w.varint(UInt64(key.tokens.count))

        var e = RangeEncoder(capacity: 48 * n + 2 * (key.tokens.count - n) + 16)
        let m = ScoreModels()
        var list = MoveToFrontList(capacity: moveToFrontCapacity)
        for t in key.tokens[0..<start] { m.tokens.encode(UInt64(t), context: 0, into: &e) }

        var order: [Int] = []
        var fine: [Int64] = []
        var previousK = Int64(key.options.topK)
        for (i, p) in record.positions.enumerated() {
            let k = p.topIds.count
            try validatePosition(p, index: i)
            var q: Int64 = 0
            if !p.entropy.isNaN {
                q = Int64((Double(max(0, p.entropy)) * Double(ScorePrecision.entropyStepsPerNat)).rounded(.toNearestOrAwayFromZero))
            }
            m.counts.encode(zigzag(Int64(k) - previousK), context: 0, into: &e)
            previousK = Int64(k)

            // Highest first; a stable sort keeps the teacher's order among equal log-probs.
            order = Array(0..<k)
            if !isNonIncreasing(p.topLogprobs) {
                order.sort { p.topLogprobs[$0] > p.topLogprobs[$1] || (p.topLogprobs[$0] == p.topLogprobs[$1] && $0 < $1) }
            }
            fine = order.map { quantiseLogprob(p.topLogprobs[$0]) }
            for j in 0..<k {
                let id = p.topIds[order[j]]
                if let index = list.find(id) {
                    m.idCodes.encode(UInt64(index + 1), context: idContext(j), into: &e)
                    list.moveToFront(index)
                } else {
                    m.idCodes.encode(0, context: idContext(j), into: &e)
                    m.newIds.encode(UInt64(id), context: 0, into: &e)
                    list.push(id)
                }
            }
            if k > 0 {
                m.top1.encode(UInt64(fine[0]), context: 0, into: &e)
                var previousCoarse = coarse(fine[0])
                for j in 1..<k {
                    let c = coarse(fine[j])
                    m.deltas.encode(UInt64(c - previousCoarse), context: deltaContext(j, top1: fine[0]), into: &e)
                    previousCoarse = c
                }
            }

            // The actual token: usually in the top-k (often first), then its log-prob is a tiny
            // residual against what the decoder rebuilds for that rank.
            let actualId = key.tokens[start + i]
            let qa = quantiseLogprob(p.logprob)
            var rank = -1
            for j in 0..<k where p.topIds[order[j]] == actualId { rank = j; break }
            m.rank.encode(UInt64(rank + 1), context: 0, into: &e)
            // The reference must be exactly what the decoder rebuilds for that rank.
            func rebuilt(_ j: Int) -> Int64 { j == 0 ? fine[0] : reconstructed(fine[j], top1: fine[0]) }
            let reference: Int64 = rank >= 0 ? rebuilt(rank) : (k > 0 ? rebuilt(k - 1) : 0)
            m.residual.encode(zigzag(qa - reference), context: rank == 0 ? 0 : (rank > 0 ? 1 : 2), into: &e)
            if rank < 0 { m.tokens.encode(UInt64(actualId), context: 0, into: &e) }
            let top1 = k > 0 ? fine[0] : 0
            m.entropy.encode(p.entropy.isNaN ? 0 : UInt64(q + 1), context: entropyContext(k: k, top1: top1), into: &e)
        }
        for t in key.tokens[(start + n)...] { m.tokens.encode(UInt64(t), context: 0, into: &e) }
        let (coded, raw) = e.finish()
        w.blob(coded)
        w.raw(raw)
        return w.bytes
    }

    // MARK: decode

    /// Decodes an uncompressed payload; throws `TruncatedField` on any inconsistency.
    static func decodePayload(_ bytes: [UInt8]) throws -> DecodedPayload {
        guard let version = bytes.first else { throw TruncatedField(detail: "empty payload") }
        guard version == payloadVersion else { throw TruncatedField(detail: "payload version \(version) is not \(payloadVersion)") }
        var r = ByteReader(bytes)
        _ = try r.u8()
        let fingerprint = TeacherFingerprint(bytes: try r.blob())
        let options = try ScoringOptions.decode(&r)
        let n = try r.count(limit: maxTokens)
        let shift = try r.u8()
        guard Int(shift) == ScorePrecision.coarseShift else { throw TruncatedField(detail: "coarse shift \(shift) unsupported") }
        let idCoding = try r.u8()
        guard idCoding == idCodingRangeCoded else { throw TruncatedField(detail: "id coding \(idCoding) unsupported") }
        let tokenCount = try r.count(limit: maxTokens)
        let start = options.start
        guard start >= 0, start + n <= tokenCount else {
            throw TruncatedField(detail: "\(n) positions from \(start) exceed \(tokenCount) tokens")
        }

        let codedLength = try r.count(limit: r.remaining)
        guard codedLength <= r.remaining else { throw TruncatedField(detail: "range-coded length \(codedLength) past the payload") }
        var d = RangeDecoder(bytes, from: r.position, to: r.position + codedLength, rawEnd: bytes.count)
        let m = ScoreModels()
        var list = MoveToFrontList(capacity: moveToFrontCapacity, searchable: false)
        func token() throws -> Int32 {
            let t = m.tokens.decode(context: 0, from: &d)
            guard d.overrun == 0 else { throw TruncatedField(detail: "range-coded scores run past the payload") }
            guard t <= UInt64(Int32.max) else { throw TruncatedField(detail: "token id \(t) out of range") }
            return Int32(t)
        }
        var tokens = [Int32]()
        tokens.reserveCapacity(tokenCount)
        for _ in 0..<start { tokens.append(try token()) }

        var positions = [PositionScore]()
        positions.reserveCapacity(n)
        var topFine = [Int64]()
        var previousK = Int64(options.topK)
        for _ in 0..<n {
            guard d.overrun == 0 else { throw TruncatedField(detail: "range-coded scores run past the payload") }
            let kCode = previousK &+ unzigzag(m.counts.decode(context: 0, from: &d))
            guard kCode >= 0, kCode <= Int64(maxTopK) else { throw TruncatedField(detail: "top-k \(kCode) out of range") }
            let k = Int(kCode)
            previousK = kCode
            var ids = [Int32]()
            ids.reserveCapacity(k)
            for j in 0..<k {
                let code = m.idCodes.decode(context: idContext(j), from: &d)
                if code == 0 {
                    let id = m.newIds.decode(context: 0, from: &d)
                    guard id <= UInt64(Int32.max) else { throw TruncatedField(detail: "id \(id) out of range") }
                    ids.append(Int32(id))
                    list.push(Int32(id))
                } else {
                    guard code <= UInt64(list.count) else { throw TruncatedField(detail: "move-to-front index \(code) past the list") }
                    let index = Int(code - 1)
                    ids.append(list.item(index))
                    list.moveToFront(index)
                }
            }
            topFine.removeAll(keepingCapacity: true)
            var lps = [Float]()
            lps.reserveCapacity(k)
            if k > 0 {
                let f = m.top1.decode(context: 0, from: &d)
                guard f < (1 << 40) else { throw TruncatedField(detail: "top-1 log-prob out of range") }
                topFine.append(Int64(f))
                lps.append(dequantiseFine(Int64(f)))
                var previousCoarse = coarse(Int64(f))
                for j in 1..<k {
                    let delta = m.deltas.decode(context: deltaContext(j, top1: topFine[0]), from: &d)
                    guard delta < (1 << 40) else { throw TruncatedField(detail: "log-prob delta out of range") }
                    previousCoarse += Int64(delta)
                    let v = max(previousCoarse << ScorePrecision.coarseShift, topFine[0])
                    topFine.append(v)
                    lps.append(dequantiseFine(v))
                }
            }
            let rankCode = m.rank.decode(context: 0, from: &d)
            guard rankCode <= UInt64(k) else { throw TruncatedField(detail: "actual rank \(rankCode) past top-\(k)") }
            let rank = Int(rankCode) - 1
            let residual = unzigzag(m.residual.decode(context: rank == 0 ? 0 : (rank > 0 ? 1 : 2), from: &d))
            guard residual.magnitude < (1 << 40) else { throw TruncatedField(detail: "actual log-prob residual out of range") }
            tokens.append(rank >= 0 ? ids[rank] : try token())
            let reference: Int64 = rank >= 0 ? topFine[rank] : (k > 0 ? topFine[k - 1] : 0)
            let qa = reference + residual
            guard qa >= 0 else { throw TruncatedField(detail: "actual log-prob out of range") }
            let top1 = k > 0 ? topFine[0] : 0
            let e = m.entropy.decode(context: entropyContext(k: k, top1: top1), from: &d)
            let entropy: Float = e == 0 ? .nan : Float(Double(e - 1) / Double(ScorePrecision.entropyStepsPerNat))
            positions.append(PositionScore(logprob: dequantiseFine(qa), entropy: entropy, topIds: ids, topLogprobs: lps))
        }
        for _ in (start + n)..<tokenCount { tokens.append(try token()) }
        guard d.consumedExactly else {
            throw TruncatedField(detail: "range-coded scores do not end where the payload does")
        }
        return DecodedPayload(fingerprint: fingerprint, options: options, tokens: tokens,
                              record: ScoreRecord(positions: positions))
    }

    static func isNonIncreasing(_ v: [Float]) -> Bool {
        var i = 1
        while i < v.count { if v[i] > v[i - 1] { return false }; i += 1 }
        return true
    }

    /// `what` is built only for the error: every position of every record passes through here.
    @inline(__always)
    static func checkLogprob(_ lp: Float, what: @autoclosure () -> String) throws {
        guard !lp.isNaN, lp <= ScorePrecision.positiveTolerance else {
            throw CacheError.invalidRecord(detail: "\(what()) \(lp) is not a log-probability (must be <= 0)")
        }
    }

    /// The context checks every encoder applies: n positions from `start` fit in the context,
    /// and no context id is negative.
    static func validateContext(_ key: CacheKey, positions n: Int) throws {
        let start = key.options.start
        // The decoder's limits (`decodePayload`), stated here so the writer refuses first.
        guard key.options.topK >= 0, key.options.topK <= maxTopK else {
            throw CacheError.invalidRecord(detail: "options.top_k \(key.options.topK) is outside [0, \(maxTopK)]")
        }
        guard key.tokens.count <= maxTokens else {
            throw CacheError.invalidRecord(detail: "\(key.tokens.count) context tokens exceed the limit of \(maxTokens)")
        }
        guard start >= 0, start + n <= key.tokens.count else {
            throw CacheError.invalidRecord(detail:
                "\(n) positions from start \(start) do not fit in \(key.tokens.count) context tokens")
        }
        for t in key.tokens where t < 0 {
            throw CacheError.invalidRecord(detail: "negative token id \(t) in the context")
        }
    }

    /// The checks every encoder applies to one position before coding it: matching top-k
    /// arrays, k within bounds, log-probs <= 0 (up to rounding), ids >= 0, and an entropy that
    /// is NaN (unknown) or a number in [0, entropyMax].
    static func validatePosition(_ p: PositionScore, index i: Int) throws {
        let k = p.topIds.count
        guard p.topLogprobs.count == k else {
            throw CacheError.invalidRecord(detail: "position \(i): \(k) top ids but \(p.topLogprobs.count) top log-probs")
        }
        guard k <= maxTopK else { throw CacheError.invalidRecord(detail: "position \(i): top-k \(k) > \(maxTopK)") }
        try checkLogprob(p.logprob, what: "position \(i) log-prob")
        for j in p.topLogprobs.indices { try checkLogprob(p.topLogprobs[j], what: "position \(i) top[\(j)] log-prob") }
        for id in p.topIds where id < 0 {
            throw CacheError.invalidRecord(detail: "position \(i): negative top id \(id)")
        }
        if !p.entropy.isNaN {
            guard p.entropy.isFinite, p.entropy >= -ScorePrecision.positiveTolerance, p.entropy <= ScorePrecision.entropyMax else {
                throw CacheError.invalidRecord(detail: "position \(i): entropy \(p.entropy) is not a number in [0, \(ScorePrecision.entropyMax)]")
            }
        }
    }

}

/// A bounded move-to-front list of ids. Linear search is fine: frequent ids sit near the front,
/// which is the whole point of the transform.
///
/// Stored back to front (the front is the end of `storage`) from `base` on, so that a push is an
/// append and dropping the least recently used id is `base += 1` (compacted now and then):
/// inserting at index 0 of an array would move the whole list for every new id, a third of all.
struct MoveToFrontList {
    private var storage: [Int32]
    private var base = 0
    let capacity: Int
    /// Whether `find` will be used (the encoder); the decoder only indexes.
    private let searchable: Bool

    init(capacity: Int, searchable: Bool = true) {
        self.capacity = capacity
        self.searchable = searchable
        storage = []
        storage.reserveCapacity(2 * capacity + 1)
        if searchable { members.reserveCapacity(capacity + 1) }
    }

    var count: Int { storage.count - base }

    /// The id at `index` (0 = front = most recently used); index < count.
    @inline(__always) func item(_ index: Int) -> Int32 { storage[storage.count - 1 - index] }

    /// The ids in the list, so that a new id (a third of all ids) costs a hash probe instead of
    /// a scan of the whole list.
    private var members = Set<Int32>()

    @inline(__always) func find(_ id: Int32) -> Int? {
        guard members.contains(id) else { return nil }
        return storage.withUnsafeBufferPointer { buf in
            var p = buf.count - 1
            while p >= base { if buf[p] == id { return buf.count - 1 - p }; p -= 1 }
            return nil
        }
    }

    @inline(__always) mutating func moveToFront(_ index: Int) {
        guard index > 0 else { return }
        storage.withUnsafeMutableBufferPointer { buf in
            let last = buf.count - 1
            var p = last - index
            let id = buf[p]
            while p < last { buf[p] = buf[p + 1]; p += 1 }
            buf[last] = id
        }
    }

    /// Inserts a new id at the front, dropping the least recently used one when full.
    @inline(__always) mutating func push(_ id: Int32) {
        storage.append(id)
        if searchable { members.insert(id) }
        if count > capacity {
            if searchable { members.remove(storage[base]) }
            base += 1
            if base >= capacity {
                storage.removeFirst(base)
                base = 0
            }
        }
    }
}
