// An adaptive multi-symbol range coder: the entropy coder of payload version 2
// (docs/cache-format.md, "Range coder"). The carry handling is LZMA's (Igor Pavlov,
// LzmaEnc.c `RangeEnc_ShiftLow`); the symbols are coded with adaptive frequency tables
// (Schindler / Subbotin style: range / total, then cumulative frequency), so one symbol costs
// one division and a short scan instead of a tree of binary decisions.
//
// Why not zstd alone: zstd's entropy stage is order-0 Huffman over bytes, so a 13-bit
// move-to-front index or a 15-bit id pays whole-byte boundaries and cannot use what the codec
// knows (the rank a value sits at). Here every number is coded with a model of its own kind
// and rank, learnt as the record is read.

/// Writes range-coded bytes. `finish()` must be called once, after the last symbol.
struct RangeEncoder {
    private(set) var bytes: [UInt8] = []
    private var low: UInt64 = 0
    private var range: UInt32 = 0xFFFF_FFFF
    private var cache: UInt8 = 0
    private var cacheSize = 1
    /// The first byte LZMA's scheme emits is always 0 (no carry can reach it); it is dropped.
    private var droppedFirst = false

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    /// Codes the sub-interval [cumulative, cumulative + frequency) of [0, total); total ≤ 2^16.
    @inline(__always) mutating func encode(cumulative: UInt32, frequency: UInt32, total: UInt32) {
        let r = range / total
        low += UInt64(r * cumulative)
        range = r * frequency
        while range < (1 << 24) { range <<= 8; shiftLow() }
    }

    /// Codes `count` ≤ 16 bits of `value` with equal probabilities.
    @inline(__always) mutating func encodeBits(_ value: UInt32, count: Int) {
        let r = range >> UInt32(count)
        low += UInt64(r * value)
        range = r
        while range < (1 << 24) { range <<= 8; shiftLow() }
    }

    @inline(__always) private mutating func shiftLow() {
        if low < 0xFF00_0000 || low >= (1 << 32) {
            let carry = UInt8(truncatingIfNeeded: low >> 32)
            var pending = cache
            repeat {
                if droppedFirst { bytes.append(pending &+ carry) } else { droppedFirst = true }
                pending = 0xFF
                cacheSize -= 1
            } while cacheSize != 0
            cache = UInt8(truncatingIfNeeded: low >> 24)
        }
        cacheSize += 1
        low = (low & 0x00FF_FFFF) << 8
    }

    /// Flushes the state; returns the coded bytes.
    mutating func finish() -> [UInt8] {
        for _ in 0..<5 { shiftLow() }
        return bytes
    }
}

/// Reads what `RangeEncoder` wrote. Never traps on damaged input: arithmetic wraps and reads
/// past the end count as `overrun`, which the caller turns into an error.
struct RangeDecoder {
    private let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    private var range: UInt32 = 0xFFFF_FFFF
    private var code: UInt32 = 0
    private var r: UInt32 = 1
    /// Bytes the decoder wanted past `end` (must be 0 for a well-formed stream).
    private(set) var overrun = 0

    init(_ bytes: [UInt8], from start: Int, to end: Int) {
        self.bytes = bytes
        self.position = start
        self.end = end
        for _ in 0..<4 { code = (code << 8) | UInt32(nextByte()) }
    }

    @inline(__always) private mutating func nextByte() -> UInt8 {
        guard position < end else { overrun += 1; return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The cumulative frequency the next symbol's interval contains; follow with `consume`.
    @inline(__always) mutating func target(total: UInt32) -> UInt32 {
        r = range / total
        return min(code / r, total - 1)
    }

    @inline(__always) mutating func consume(cumulative: UInt32, frequency: UInt32) {
        code &-= r &* cumulative
        range = r &* frequency
        normalize()
    }

    @inline(__always) mutating func decodeBits(count: Int) -> UInt32 {
        r = range >> UInt32(count)
        let v = min(code / r, (1 << UInt32(count)) - 1)
        code &-= r &* v
        range = r
        normalize()
        return v
    }

    @inline(__always) private mutating func normalize() {
        while range < (1 << 24) {
            range <<= 8
            code = (code << 8) | UInt32(nextByte())
        }
    }
}

/// A bank of adaptive frequency tables, one flat array. Every table starts uniform (frequency 1
/// per symbol); a coded symbol gains `increment`; when a table's total would pass `limit` all its
/// frequencies are halved (rounding up, so none reaches 0), which also lets it follow drift.
struct FrequencyTables {
    static let increment: UInt32 = 24
    static let limit: UInt32 = 1 << 16

    private var freq: [UInt32] = []
    private var start: [Int] = []
    private var size: [Int] = []
    private var total: [UInt32] = []

    /// Adds a table of `symbols` symbols; returns its index.
    mutating func add(symbols: Int) -> Int {
        start.append(freq.count)
        size.append(symbols)
        total.append(UInt32(symbols))
        freq.append(contentsOf: repeatElement(1, count: symbols))
        return start.count - 1
    }

    @inline(__always) mutating func encode(_ symbol: Int, table t: Int, into e: inout RangeEncoder) {
        let base = start[t]
        let tot = total[t]
        let (cum, f): (UInt32, UInt32) = freq.withUnsafeBufferPointer { p in
            var c: UInt32 = 0
            for i in 0..<symbol { c += p[base + i] }
            return (c, p[base + symbol])
        }
        e.encode(cumulative: cum, frequency: f, total: tot)
        update(symbol, table: t)
    }

    @inline(__always) mutating func decode(table t: Int, from d: inout RangeDecoder) -> Int {
        let base = start[t]
        let n = size[t]
        let v = d.target(total: total[t])
        let (symbol, cum, f): (Int, UInt32, UInt32) = freq.withUnsafeBufferPointer { p in
            var c: UInt32 = 0, s = 0
            // v < total, so the scan stops inside the table.
            while s < n - 1 && c + p[base + s] <= v { c += p[base + s]; s += 1 }
            return (s, c, p[base + s])
        }
        d.consume(cumulative: cum, frequency: f)
        update(symbol, table: t)
        return symbol
    }

    @inline(__always) private mutating func update(_ symbol: Int, table t: Int) {
        let base = start[t]
        freq[base + symbol] += Self.increment
        total[t] += Self.increment
        if total[t] > Self.limit {
            var sum: UInt32 = 0
            for i in base..<(base + size[t]) { freq[i] = (freq[i] + 1) >> 1; sum += freq[i] }
            total[t] = sum
        }
    }
}

/// Adaptive coding of unsigned integers in several contexts, an adaptive Elias-gamma code:
/// the bit length b of v (0 for v = 0, so 65 symbols) from a table per context, then, for b ≥ 2,
/// the top min(2, b−1) bits below the leading one from a table per (context, b), then the
/// remaining b−3 bits as they are. Small values thus cost what their frequency says, and large
/// ones (ids) pay for their magnitude class and two leading bits, with the rest uniform.
struct AdaptiveIntegers {
    static let lengthSymbols = 65
    private var tables = FrequencyTables()
    private let lengthBase: Int
    private let mantissaBase: Int

    init(contexts: Int) {
        precondition(contexts >= 1)
        var first = -1
        for _ in 0..<contexts {
            let t = tables.add(symbols: Self.lengthSymbols)
            if first < 0 { first = t }
        }
        lengthBase = first
        var mantissaFirst = -1
        for _ in 0..<contexts {
            for b in 0..<Self.lengthSymbols {
                let t = tables.add(symbols: b >= 3 ? 4 : 2)
                if mantissaFirst < 0 { mantissaFirst = t }
            }
        }
        mantissaBase = mantissaFirst
    }

    @inline(__always) mutating func encode(_ v: UInt64, context: Int, into e: inout RangeEncoder) {
        let b = 64 - v.leadingZeroBitCount
        tables.encode(b, table: lengthBase + context, into: &e)
        guard b >= 2 else { return }
        let m = b - 1
        let top = min(2, m)
        let rest = m - top
        tables.encode(Int((v >> UInt64(rest)) & ((1 << UInt64(top)) - 1)),
                      table: mantissaBase + context * Self.lengthSymbols + b, into: &e)
        var left = rest
        while left > 0 {
            let c = min(16, left)
            left -= c
            e.encodeBits(UInt32(truncatingIfNeeded: (v >> UInt64(left)) & ((1 << UInt64(c)) - 1)), count: c)
        }
    }

    @inline(__always) mutating func decode(context: Int, from d: inout RangeDecoder) -> UInt64 {
        let b = tables.decode(table: lengthBase + context, from: &d)
        guard b >= 2 else { return UInt64(b) }
        let m = b - 1
        let top = min(2, m)
        var v = UInt64(1) << UInt64(top) | UInt64(tables.decode(table: mantissaBase + context * Self.lengthSymbols + b, from: &d))
        var left = m - top
        while left > 0 {
            let c = min(16, left)
            left -= c
            v = v << UInt64(c) | UInt64(d.decodeBits(count: c))
        }
        return v
    }
}
