import ChorusCore
// Payload version 1 (docs/cache-format.md, "Payload version 1"): nine column streams of varints
// and byte planes, left to zstd's entropy coder. Superseded by version 2 (range-coded); still
// read, and still written by tests to check that it reads.

extension RecordCodec {

    /// The version-1 payload of a record (kept so that tests can write version-1 records and
    /// check that they still read back).
    static func encodePayloadV1(key: CacheKey, record: ScoreRecord) throws -> [UInt8] {
        let n = record.positions.count
        let start = key.options.start
        try validateContext(key, positions: n)
        var w = ByteWriter(capacity: 64 + 24 * n)
        w.u8(1)
        w.blob(key.fingerprint.bytes)
        w.raw(key.options.canonicalBytes)
        w.varint(UInt64(n))
        w.u8(UInt8(ScorePrecision.coarseShift))
        w.u8(idCodingMoveToFront)

        // Context tokens that the scores do not imply: a scored token whose actual rank is in
        // the top-k is topIds[rank - 1], so only the others are written (see below).
        var explicitTokens: [Int32] = Array(key.tokens[0..<start])
        explicitTokens.reserveCapacity(key.tokens.count)

        var counts = ByteWriter(capacity: n)
        var actualRank = ByteWriter(capacity: n)
        var actualResidual = ByteWriter(capacity: n)
        var top0 = ByteWriter(capacity: 2 * n)
        var deltas = ByteWriter(capacity: 20 * n)
        var entropy = ByteWriter(capacity: 2 * n)
        var ids: [Int32] = []
        ids.reserveCapacity(20 * n)

        var order: [Int] = []
        var fine: [Int64] = []
        for (i, p) in record.positions.enumerated() {
            let k = p.topIds.count
            try validatePosition(p, index: i)
            counts.varint(UInt64(k))

            // Highest first; a stable sort keeps the teacher's order among equal log-probs.
            order = Array(0..<k)
            if !isNonIncreasing(p.topLogprobs) {
                order.sort { p.topLogprobs[$0] > p.topLogprobs[$1] || (p.topLogprobs[$0] == p.topLogprobs[$1] && $0 < $1) }
            }
            fine = order.map { quantiseLogprob(p.topLogprobs[$0]) }
            // reconstructed[j] in fine steps: what the decoder will produce for rank j.
            var previousCoarse: Int64 = 0
            for j in 0..<k {
                ids.append(p.topIds[order[j]])
                if j == 0 {
                    top0.varint(UInt64(fine[0]))
                    previousCoarse = coarse(fine[0])
                } else {
                    let c = coarse(fine[j])
                    deltas.varint(UInt64(c - previousCoarse))
                    previousCoarse = c
                }
            }

            // The actual token: usually in the top-k (often first), then its log-prob is a tiny
            // residual against what the decoder rebuilds for that rank.
            let actualId = key.tokens[start + i]
            let qa = quantiseLogprob(p.logprob)
            var rank = -1
            for j in 0..<k where p.topIds[order[j]] == actualId { rank = j; break }
            actualRank.varint(UInt64(rank + 1))
            if rank < 0 { explicitTokens.append(actualId) }
            // The reference must be exactly what the decoder rebuilds for that rank.
            func rebuilt(_ j: Int) -> Int64 { j == 0 ? fine[0] : reconstructed(fine[j], top1: fine[0]) }
            let reference: Int64 = rank >= 0 ? rebuilt(rank) : (k > 0 ? rebuilt(k - 1) : 0)
            actualResidual.signedVarint(qa - reference)

            if p.entropy.isNaN {
                entropy.varint(0)
            } else {
                let q = Int64((Double(max(0, p.entropy)) * Double(ScorePrecision.entropyStepsPerNat)).rounded(.toNearestOrAwayFromZero))
                entropy.varint(UInt64(q + 1))
            }
        }

        explicitTokens.append(contentsOf: key.tokens[(start + n)...])
        let (mtf, fresh) = encodeIds(ids)
        w.varint(UInt64(key.tokens.count))
        for stream in [bytePlanes(explicitTokens), counts.bytes, actualRank.bytes, actualResidual.bytes, top0.bytes,
                       deltas.bytes, entropy.bytes, mtf, bytePlanes(fresh)] {
            w.blob(stream)
        }
        return w.bytes
    }
    /// Move-to-front coding of the top-k ids, all positions in a row. Each id becomes its index
    /// + 1 in a list of recently seen ids (frequent ids sit near the front, so indices are small),
    /// or 0 followed by the id itself in the `fresh` stream when it is not in the list.
    static func encodeIds(_ ids: [Int32]) -> (indices: [UInt8], fresh: [Int32]) {
        // Codes fit in 16 bits (capacity < 65536); low bytes first, then high bytes, so the
        // mostly-zero high bytes form one run that zstd squeezes to almost nothing.
        var low = [UInt8](), high = [UInt8]()
        low.reserveCapacity(ids.count); high.reserveCapacity(ids.count)
        var fresh = [Int32]()
        var list = MoveToFrontList(capacity: moveToFrontCapacity)
        for id in ids {
            var code = 0
            if let index = list.find(id) {
                code = index + 1
                list.moveToFront(index)
            } else {
                fresh.append(id)
                list.push(id)
            }
            low.append(UInt8(truncatingIfNeeded: code))
            high.append(UInt8(truncatingIfNeeded: code >> 8))
        }
        return (low + high, fresh)
    }

    /// Non-negative ids as byte planes: one width byte W (1...4, the bytes the largest id
    /// needs), then the count as a varint, then W planes of `count` bytes, least significant
    /// first. Planes keep each byte position's statistics together for zstd.
    static func bytePlanes(_ values: [Int32]) -> [UInt8] {
        let maxValue = values.max() ?? 0
        var width = 1
        while width < 4 && Int(maxValue) >> (8 * width) != 0 { width += 1 }
        var w = ByteWriter(capacity: 8 + width * values.count)
        w.u8(UInt8(width))
        w.varint(UInt64(values.count))
        for plane in 0..<width {
            for v in values { w.u8(UInt8(truncatingIfNeeded: Int(v) >> (8 * plane))) }
        }
        return w.bytes
    }

    /// Inverse of `bytePlanes`.
    static func readBytePlanes(_ r: inout ByteReader, limit: Int) throws -> [Int32] {
        let width = Int(try r.u8())
        guard (1...4).contains(width) else { throw TruncatedField(detail: "byte-plane width \(width)") }
        let count = try r.count(limit: limit)
        let planes = try r.take(width * count)
        let base = planes.startIndex
        var values = [Int32](repeating: 0, count: count)
        for plane in 0..<width {
            for i in 0..<count { values[i] |= Int32(bitPattern: UInt32(planes[base + plane * count + i]) << (8 * plane)) }
        }
        for v in values where v < 0 { throw TruncatedField(detail: "id \(v) out of range") }
        return values
    }

    /// Inverse of `encodeIds`.
    static func decodeIds(count: Int, indices: inout ByteReader, fresh: [Int32]) throws -> [Int32] {
        var ids = [Int32]()
        ids.reserveCapacity(count)
        var list = MoveToFrontList(capacity: moveToFrontCapacity, searchable: false)
        let planes = try indices.take(2 * count)
        let base = planes.startIndex
        var nextFresh = 0
        for i in 0..<count {
            let code = Int(planes[base + i]) | Int(planes[base + count + i]) << 8
            if code == 0 {
                guard nextFresh < fresh.count else { throw TruncatedField(detail: "fewer new ids than the id codes need") }
                let id = fresh[nextFresh]
                nextFresh += 1
                ids.append(id)
                list.push(id)
            } else {
                guard code <= UInt64(list.count) else { throw TruncatedField(detail: "move-to-front index \(code) past the list") }
                let index = Int(code - 1)
                ids.append(list.item(index))
                list.moveToFront(index)
            }
        }
        guard nextFresh == fresh.count else { throw TruncatedField(detail: "\(fresh.count - nextFresh) unused new ids") }
        return ids
    }

    // MARK: decode

    /// Decodes an uncompressed version-1 payload; throws `TruncatedField` on any inconsistency.
    static func decodePayloadV1(_ bytes: [UInt8]) throws -> DecodedPayload {
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == 1 else { throw TruncatedField(detail: "payload version \(version) is not 1") }
        let (fingerprint, options, n, tokenCount) = try readPayloadHeader(&r, idCoding: idCodingMoveToFront)

        func stream() throws -> ByteReader {
            let len = try r.count(limit: r.remaining)
            let s = ByteReader(bytes, from: r.position, to: r.position + len)
            r.position += len
            return s
        }
        var tokensS = try stream(), countsS = try stream(), rankS = try stream(), residualS = try stream()
        var top0S = try stream(), deltasS = try stream(), entropyS = try stream()
        var mtfS = try stream(), freshS = try stream()
        guard r.remaining == 0 else { throw TruncatedField(detail: "\(r.remaining) bytes after the last stream") }

        let explicitTokens = try readBytePlanes(&tokensS, limit: tokenCount)
        let start = options.start
        guard start >= 0, start + n <= tokenCount, start <= explicitTokens.count else {
            throw TruncatedField(detail: "\(n) positions from \(start) exceed \(tokenCount) tokens")
        }
        var tokens = Array(explicitTokens[0..<start])
        tokens.reserveCapacity(tokenCount)
        var nextExplicit = start

        var counts = [Int]()
        counts.reserveCapacity(n)
        var totalTop = 0
        for _ in 0..<n {
            let k = try countsS.count(limit: maxTopK)
            counts.append(k)
            totalTop += k
        }
        let fresh = try readBytePlanes(&freshS, limit: totalTop)
        let ids = try decodeIds(count: totalTop, indices: &mtfS, fresh: fresh)

        var positions = [PositionScore]()
        positions.reserveCapacity(n)
        var idCursor = 0
        for i in 0..<n {
            let k = counts[i]
            var topFine = [Int64]()
            topFine.reserveCapacity(k)
            var lps = [Float]()
            lps.reserveCapacity(k)
            var previousCoarse: Int64 = 0
            for j in 0..<k {
                if j == 0 {
                    let f = Int64(bitPattern: try top0S.varint())
                    guard f >= 0 else { throw TruncatedField(detail: "top-1 log-prob out of range") }
                    topFine.append(f)
                    previousCoarse = coarse(f)
                } else {
                    let d = try deltasS.varint()
                    guard d < (1 << 40) else { throw TruncatedField(detail: "log-prob delta out of range") }
                    previousCoarse += Int64(d)
                    topFine.append(max(previousCoarse << ScorePrecision.coarseShift, topFine[0]))
                }
                lps.append(dequantiseFine(topFine[j]))
            }
            let rankCode = try rankS.count(limit: k)
            if rankCode > 0 {
                tokens.append(ids[idCursor + rankCode - 1])
            } else {
                guard nextExplicit < explicitTokens.count else { throw TruncatedField(detail: "too few explicit tokens") }
                tokens.append(explicitTokens[nextExplicit])
                nextExplicit += 1
            }
            let residual = try residualS.signedVarint()
            let reference: Int64 = rankCode > 0 ? topFine[rankCode - 1] : (k > 0 ? topFine[k - 1] : 0)
            let qa = reference + residual
            guard qa >= 0 else { throw TruncatedField(detail: "actual log-prob out of range") }
            let e = try entropyS.varint()
            let entropy: Float = e == 0 ? .nan : Float(Double(e - 1) / Double(ScorePrecision.entropyStepsPerNat))
            positions.append(PositionScore(logprob: dequantiseFine(qa), entropy: entropy,
                                            topIds: Array(ids[idCursor..<(idCursor + k)]), topLogprobs: lps))
            idCursor += k
        }
        tokens.append(contentsOf: explicitTokens[nextExplicit...])
        guard tokens.count == tokenCount else {
            throw TruncatedField(detail: "rebuilt \(tokens.count) context tokens, header says \(tokenCount)")
        }
        for (name, s) in [("tokens", tokensS), ("counts", countsS), ("rank", rankS), ("residual", residualS),
                          ("top0", top0S), ("deltas", deltasS), ("entropy", entropyS), ("mtf", mtfS), ("fresh", freshS)]
            where s.remaining != 0 {
            throw TruncatedField(detail: "\(s.remaining) unread bytes in the \(name) stream")
        }
        return DecodedPayload(fingerprint: fingerprint, options: options, tokens: tokens,
                              record: ScoreRecord(positions: positions))
    }
}
