import ChorusCore
import ChorusTestSupport
import XCTest
@testable import ChorusCache

final class CodecTests: XCTestCase {
    let fingerprint = TeacherFingerprint(bytes: SHA256.hash(Array("teacher".utf8)))

    func roundTrip(_ tokens: [Int32], _ record: ScoreRecord, start: Int, k: Int = 20) throws -> (CacheKey, ScoreRecord) {
        let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: k, start: start), tokens: tokens)
        let frame = try RecordFrame.encode(key: key, record: record, teacher: "t", storedAt: 1)
        let decoded = try RecordFrame.decode(frame, from: 0, segment: "test")
        XCTAssertEqual(decoded.key.tokens, tokens, "context tokens must come back exactly")
        XCTAssertEqual(decoded.key.digest, key.digest)
        return (decoded.key, decoded.record)
    }

    /// Checks the documented bounds position by position.
    func assertWithinBounds(_ original: ScoreRecord, _ decoded: ScoreRecord, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(original.positions.count, decoded.positions.count, file: file, line: line)
        var worstActual = 0.0, worstTop1 = 0.0, worstTop = 0.0, worstEntropy = 0.0
        for (p, q) in zip(original.positions, decoded.positions) {
            XCTAssertEqual(p.topIds, q.topIds, "ids must be exact", file: file, line: line)
            worstActual = max(worstActual, abs(Double(p.logprob) - Double(q.logprob)))
            for j in 0..<p.topLogprobs.count {
                let e = abs(Double(p.topLogprobs[j]) - Double(q.topLogprobs[j]))
                if j == 0 { worstTop1 = max(worstTop1, e) } else { worstTop = max(worstTop, e) }
            }
            for j in 1..<max(1, q.topLogprobs.count) {
                XCTAssertLessThanOrEqual(q.topLogprobs[j], q.topLogprobs[j - 1], "decoded top-k must stay non-increasing",
                                         file: file, line: line)
            }
            if p.entropy.isNaN { XCTAssertTrue(q.entropy.isNaN, file: file, line: line) } else {
                worstEntropy = max(worstEntropy, abs(Double(p.entropy) - Double(q.entropy)))
            }
        }
        // Float32 rounding of the inputs adds at most ~1e-6 at these magnitudes.
        XCTAssertLessThanOrEqual(worstActual, 1e-3, file: file, line: line)
        XCTAssertLessThanOrEqual(worstActual, ScorePrecision.logprobBound + 1e-6, file: file, line: line)
        XCTAssertLessThanOrEqual(worstTop1, ScorePrecision.logprobBound + 1e-6, file: file, line: line)
        XCTAssertLessThanOrEqual(worstTop, ScorePrecision.topLogprobBound + 1e-6, file: file, line: line)
        XCTAssertLessThanOrEqual(worstEntropy, ScorePrecision.entropyBound + 1e-6, file: file, line: line)
    }

    func testSyntheticRecordsRoundTripWithinBounds() throws {
        var teacher = SyntheticTeacher(seed: 5, vocab: 3000)
        for k in [0, 1, 5, 20] {
            let (tokens, record) = teacher.context(promptLength: 17, responseLength: 40, k: max(k, 1))
            var rec = record
            if k == 0 { for i in rec.positions.indices { rec.positions[i].topIds = []; rec.positions[i].topLogprobs = [] } }
            let (_, decoded) = try roundTrip(tokens, rec, start: 17, k: k)
            assertWithinBounds(rec, decoded)
        }
    }

    func testAdversarialValuesRoundTrip() throws {
        // Random log-probs with ties, near-boundary roundings, the actual token at every rank and
        // outside the top-k, variable k, -inf, tiny positive rounding noise and unknown entropy.
        var rng = ChorusRNG(seed: 99)
        var tokens: [Int32] = (0..<5).map { Int32($0) }
        var positions: [PositionScore] = []
        for i in 0..<400 {
            let k = Int(rng.next() % 25)
            var lps: [Float] = []
            var lp = Float(-rng.uniformDouble() * 3)
            for _ in 0..<k {
                lps.append(lp)
                if rng.next() % 4 != 0 { lp -= Float(rng.uniformDouble() * (i % 2 == 0 ? 0.02 : 3)) }  // ties and near-ties
            }
            var ids: [Int32] = []
            while ids.count < k { let id = Int32(rng.next() % 200_000); if !ids.contains(id) { ids.append(id) } }
            let rank = k > 0 ? Int(rng.next() % UInt64(k + 1)) : 0
            let actualId: Int32 = rank < k ? ids[rank] : 250_000 + Int32(i)
            var actual: Float = rank < k ? lps[rank] : (lps.last ?? 0) - Float(rng.uniformDouble() * 30)
            if i == 7 { actual = -.infinity }
            if i == 8 { actual = 0.0004 }  // rounding noise above zero is allowed up to 1e-3
            tokens.append(actualId)
            positions.append(PositionScore(logprob: actual, entropy: i % 9 == 0 ? .nan : Float(rng.uniformDouble() * 11),
                                            topIds: ids, topLogprobs: lps))
        }
        tokens.append(contentsOf: [1, 2, 3])  // unscored tail
        let record = ScoreRecord(positions: positions)
        let (_, decoded) = try roundTrip(tokens, record, start: 5)
        var expected = record
        expected.positions[7].logprob = ScorePrecision.logprobFloor  // -inf is stored as the floor
        expected.positions[8].logprob = 0
        assertWithinBounds(expected, decoded)
        XCTAssertEqual(decoded.positions[7].logprob, ScorePrecision.logprobFloor)
    }

    func testUnsortedTopKIsStoredHighestFirst() throws {
        let p = PositionScore(logprob: -2, entropy: 1, topIds: [7, 9, 8], topLogprobs: [-2, -0.5, -1])
        let (_, decoded) = try roundTrip([1, 2, 8], ScoreRecord(positions: [p]), start: 2)
        XCTAssertEqual(decoded.positions[0].topIds, [9, 8, 7])
    }

    func testInvalidRecordsAreRejectedWithTypedErrors() {
        let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 1, start: 1), tokens: [1, 2])
        let bad: [PositionScore] = [
            PositionScore(logprob: .nan, entropy: 1),
            PositionScore(logprob: 0.5, entropy: 1),
            PositionScore(logprob: -1, entropy: 1, topIds: [1], topLogprobs: []),
            PositionScore(logprob: -1, entropy: -3),
            PositionScore(logprob: -1, entropy: 1e20),   // once crashed the encoder (Int64 conversion)
            PositionScore(logprob: -1, entropy: 1, topIds: [-4], topLogprobs: [-1]),
        ]
        for p in bad {
            XCTAssertThrowsError(try RecordFrame.encode(key: key, record: ScoreRecord(positions: [p]), teacher: "t", storedAt: 0)) {
                guard case CacheError.invalidRecord = $0 else { return XCTFail("unexpected \($0)") }
            }
        }
        // Two positions from start 1 do not fit in a 2-token context.
        let two = ScoreRecord(positions: [PositionScore(logprob: -1, entropy: 1), PositionScore(logprob: -1, entropy: 1)])
        XCTAssertThrowsError(try RecordFrame.encode(key: key, record: two, teacher: "t", storedAt: 0))
    }

    func testKeyDependsOnEveryInputAndNotOnDictionaryOrder() {
        let tokens: [Int32] = [1, 2, 3]
        let base = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 20, start: 1, extra: ["a": "1", "b": "2"]), tokens: tokens)
        var extra = [String: String]()
        extra["b"] = "2"; extra["a"] = "1"
        XCTAssertEqual(base.digest, CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 20, start: 1, extra: extra), tokens: tokens).digest)
        let variants = [
            CacheKey.make(fingerprint: TeacherFingerprint(bytes: [1]), options: base.options, tokens: tokens),
            CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 19, start: 1, extra: extra), tokens: tokens),
            CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 20, start: 2, extra: extra), tokens: tokens),
            CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 20, start: 1, template: "chatml", extra: extra), tokens: tokens),
            CacheKey.make(fingerprint: fingerprint, options: base.options, tokens: [1, 2, 4]),
        ]
        for v in variants { XCTAssertNotEqual(v.digest, base.digest) }
        XCTAssertEqual(base.digest.count, 32)
    }

    func testFingerprintCoversFileContentsAndStrings() throws {
        let dir = cacheDirectory(self, "fp")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let a = dir.appendingPathComponent("weights.bin"), b = dir.appendingPathComponent("copy.bin")
        try Data([1, 2, 3]).write(to: a)
        try Data([1, 2, 3]).write(to: b)
        let fa = try TeacherFingerprint.make(files: [a], strings: ["system prompt"])
        XCTAssertEqual(fa, try TeacherFingerprint.make(files: [b], strings: ["system prompt"]), "same content, other path")
        XCTAssertNotEqual(fa, try TeacherFingerprint.make(files: [a], strings: ["other prompt"]))
        try Data([1, 2, 4]).write(to: b)
        XCTAssertNotEqual(fa, try TeacherFingerprint.make(files: [b], strings: ["system prompt"]))
        XCTAssertThrowsError(try TeacherFingerprint.make(files: [dir.appendingPathComponent("missing")]))
    }

    func testDamagedPayloadBytesNeverDecode() throws {
        // Every single-byte flip of a frame must be caught (CRC) rather than decode to a value.
        var teacher = SyntheticTeacher(seed: 1, vocab: 500)
        let (tokens, record) = teacher.context(promptLength: 3, responseLength: 6, k: 4)
        let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 4, start: 3), tokens: tokens)
        let frame = try RecordFrame.encode(key: key, record: record, teacher: "t", storedAt: 0)
        for i in 0..<frame.count {
            var damaged = frame
            damaged[i] ^= 0x5a
            XCTAssertThrowsError(try RecordFrame.decode(damaged, from: 0, segment: "s"), "flip at byte \(i) went unnoticed")
        }
    }

    func testAdaptiveIntegersRoundTripEveryMagnitude() {
        var rng = ChorusRNG(seed: 3)
        var values: [(UInt64, Int)] = []
        for b in 0...64 {
            for _ in 0..<5 {
                let v: UInt64 = b == 0 ? 0 : (UInt64(1) << UInt64(b - 1)) | (rng.next() & ((UInt64(1) << UInt64(b - 1)) &- 1))
                values.append((v, Int(rng.next() % 3)))
            }
        }
        values += [(UInt64.max, 0), (1, 1), (2, 2), (3, 0)]
        for _ in 0..<3000 { values.append((rng.next() % 40, Int(rng.next() % 3))) }  // enough to rescale tables
        let model = AdaptiveIntegers(contexts: 3)
        var e = RangeEncoder(capacity: 64)
        for (v, c) in values { model.encode(v, context: c, into: &e) }
        let (coded, raw) = e.finish()
        let bytes = coded + raw
        let decodeModel = AdaptiveIntegers(contexts: 3)
        var d = RangeDecoder(bytes, from: 0, to: coded.count, rawEnd: bytes.count)
        for (i, (v, c)) in values.enumerated() {
            let got = decodeModel.decode(context: c, from: &d)
            if got != v { return XCTFail("value \(i): \(got) != \(v)") }
        }
        XCTAssertTrue(d.consumedExactly)
        // A decoder that stops early has not consumed everything.
        var short = RangeDecoder(bytes, from: 0, to: coded.count, rawEnd: bytes.count)
        let shortModel = AdaptiveIntegers(contexts: 3)
        for (v, c) in values.prefix(values.count / 2) { XCTAssertEqual(shortModel.decode(context: c, from: &short), v) }
        XCTAssertFalse(short.consumedExactly)
    }

    func testTruncatedOrExtendedPayloadsAreRejected() throws {
        var teacher = SyntheticTeacher(seed: 4, vocab: 2000)
        let (tokens, record) = teacher.context(promptLength: 5, responseLength: 30, k: 8)
        let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: 8, start: 5), tokens: tokens)
        let payload = try RecordCodec.encodePayload(key: key, record: record)
        XCTAssertNoThrow(try RecordCodec.decodePayload(payload))
        for cut in 0..<payload.count {
            XCTAssertThrowsError(try RecordCodec.decodePayload(Array(payload[0..<cut])), "payload cut at \(cut) of \(payload.count) decoded")
        }
        XCTAssertThrowsError(try RecordCodec.decodePayload(payload + [0]), "a trailing byte went unnoticed")
        var unknown = payload
        unknown[0] = 3
        XCTAssertThrowsError(try RecordCodec.decodePayload(unknown))
        unknown[0] = 1
        XCTAssertThrowsError(try RecordCodec.decodePayload(unknown), "payload version 1 is not read (none was ever written)")
        // Damage past the CRCs (which catch it in a frame) must give an error or some record,
        // never a trap; most flips desynchronise the range coder and are caught outright.
        var rng = ChorusRNG(seed: 8)
        var caught = 0
        for _ in 0..<400 {
            var damaged = payload
            damaged[Int(rng.next() % UInt64(payload.count))] ^= UInt8(1 + rng.next() % 255)
            if (try? RecordCodec.decodePayload(damaged)) == nil { caught += 1 }
        }
        XCTAssertGreaterThan(caught, 200, "most payload flips should be detected structurally")
    }
}
