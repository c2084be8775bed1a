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

/// Writes range-coded bytes, plus a side stream of raw bits (bits that are as good as uniform
/// need no arithmetic: they are packed as they are, least significant first, which is exact and
/// costs no division). `finish()` must be called once, after the last symbol.
struct RangeEncoder {
    private(set) var bytes: [UInt8] = []
    private var raw: [UInt8] = []
    private var rawAccumulator: UInt64 = 0
    private var rawCount = 0
    private var low: UInt64 = 0
    private var range: UInt32 = 0xFFFF_FFFF
    private var cache: UInt8 = 0
    private var cacheSize = 1
    /// The first byte LZMA's scheme emits is always 0 (no carry can reach it); it is dropped.
    private var droppedFirst = false

    init(capacity: Int) {
        bytes.reserveCapacity(capacity)
        raw.reserveCapacity(capacity / 2)
    }

    /// Codes the sub-interval [cumulative, cumulative + frequency) of [0, total); total ≤ 2^16.
    @inline(__always) mutating func encode(cumulative: UInt32, frequency: UInt32, total: UInt32) {
        let r = range / total
        low += UInt64(r * cumulative)
        range = r * frequency
        while range < (1 << 24) { range <<= 8; shiftLow() }
    }

    /// Codes one bit whose probability of being 0 is `p` / 4096 (LZMA's binary coding: a shift
    /// and a multiply, no division), then moves `p` 1/32 of the way toward what was seen.
    @inline(__always) mutating func encodeBit(_ bit: Int, probability p: inout UInt16) {
        let bound = (range >> 12) * UInt32(p)
        if bit == 0 {
            range = bound
            p += (4096 - p) >> 5
        } else {
            low += UInt64(bound)
            range -= bound
            p -= p >> 5
        }
        while range < (1 << 24) { range <<= 8; shiftLow() }
    }

    /// Appends the low `count` ≤ 32 bits of `value` to the raw-bit stream.
    @inline(__always) mutating func writeRawBits(_ value: UInt64, count: Int) {
        rawAccumulator |= (value & ((1 << UInt64(count)) &- 1)) << UInt64(rawCount)
        rawCount += count
        while rawCount >= 8 {
            raw.append(UInt8(truncatingIfNeeded: rawAccumulator))
            rawAccumulator >>= 8
            rawCount -= 8
        }
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

    /// Flushes the state; returns the range-coded bytes and the raw bits (zero-padded to a byte).
    mutating func finish() -> (coded: [UInt8], raw: [UInt8]) {
        for _ in 0..<5 { shiftLow() }
        if rawCount > 0 { raw.append(UInt8(truncatingIfNeeded: rawAccumulator)) }
        return (bytes, raw)
    }
}

/// Reads what `RangeEncoder` wrote: the coded bytes in [start, end), the raw bits in
/// [end, rawEnd). Never traps on damaged input: arithmetic wraps and reads past either end
/// count as `overrun`, which the caller turns into an error.
struct RangeDecoder {
    private let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    private(set) var rawPosition: Int
    let rawEnd: Int
    private var rawAccumulator: UInt64 = 0
    private var rawCount = 0
    private var range: UInt32 = 0xFFFF_FFFF
    private var code: UInt32 = 0
    private var r: UInt32 = 1
    /// Bytes the decoder wanted past `end` (must be 0 for a well-formed stream).
    private(set) var overrun = 0

    init(_ bytes: [UInt8], from start: Int, to end: Int, rawEnd: Int) {
        self.bytes = bytes
        self.position = start
        self.end = end
        self.rawPosition = end
        self.rawEnd = rawEnd
        for _ in 0..<4 { code = (code << 8) | UInt32(nextByte()) }
    }

    @inline(__always) private mutating func nextByte() -> UInt8 {
        guard position < end else { overrun += 1; return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// Starts decoding a symbol of a table with this total: returns the scale r = range / total.
    /// The symbol is the one whose interval [r·cumulative, r·(cumulative + frequency)) holds
    /// `code`; finding it by multiplying saves the second division of the textbook decoder.
    @inline(__always) mutating func scale(total: UInt32) -> UInt32 {
        r = range / total
        return r
    }

    /// The coder's current value, to compare against r·cumulative.
    @inline(__always) var value: UInt32 { code }

    @inline(__always) mutating func consume(cumulative: UInt32, frequency: UInt32) {
        code &-= r &* cumulative
        range = r &* frequency
        normalize()
    }

    /// Inverse of `RangeEncoder.encodeBit`.
    @inline(__always) mutating func decodeBit(probability p: inout UInt16) -> Int {
        let bound = (range >> 12) &* UInt32(p)
        let bit: Int
        if code < bound {
            range = bound
            p &+= (4096 &- p) >> 5
            bit = 0
        } else {
            code &-= bound
            range &-= bound
            p &-= p >> 5
            bit = 1
        }
        normalize()
        return bit
    }

    /// The next `count` ≤ 32 raw bits.
    @inline(__always) mutating func readRawBits(count: Int) -> UInt64 {
        while rawCount < count {
            var b: UInt8 = 0
            if rawPosition < rawEnd { b = bytes[rawPosition]; rawPosition += 1 } else { overrun += 1 }
            rawAccumulator |= UInt64(b) << UInt64(rawCount)
            rawCount += 8
        }
        let v = rawAccumulator & ((1 << UInt64(count)) &- 1)
        rawAccumulator >>= UInt64(count)
        rawCount -= count
        return v
    }

    /// Whether both streams were read to their ends exactly (padding bits zero).
    var consumedExactly: Bool { overrun == 0 && position == end && rawPosition == rawEnd && rawAccumulator == 0 }

    @inline(__always) private mutating func normalize() {
        while range < (1 << 24) {
            range <<= 8
            code = (code << 8) | UInt32(nextByte())
        }
    }
}

/// A bank of adaptive frequency tables in one flat buffer. Every table starts uniform (frequency
/// 1 per symbol); a coded symbol gains `increment`; when a table's total would pass `limit` all
/// its frequencies are halved (rounding up, so none reaches 0), which also lets it follow drift.
/// A class over raw storage because this is the innermost loop of decoding: no copy-on-write
/// checks, no bounds checks (every index is derived from a table's own start and size, and a
/// decoded symbol is always below its table's size).
final class FrequencyTables {
    static let increment: UInt32 = 64
    static let limit: UInt32 = 1 << 16

    // Raw storage, all `let` so that reads need no exclusivity checks: per table its start in
    // `freq`, its size and its total.
    private let freq: UnsafeMutablePointer<UInt32>
    private let start: UnsafeMutablePointer<Int>
    private let size: UnsafeMutablePointer<Int>
    private let total: UnsafeMutablePointer<UInt32>
    private let symbolCapacity: Int
    private let tableCapacity: Int
    private var tables = 0
    private var used = 0

    /// Room for `tables` tables of `symbols` symbols in all.
    init(tables: Int, symbols: Int) {
        symbolCapacity = symbols
        tableCapacity = tables
        freq = .allocate(capacity: symbols)
        start = .allocate(capacity: tables)
        size = .allocate(capacity: tables)
        total = .allocate(capacity: tables)
    }

    deinit {
        freq.deallocate()
        start.deallocate()
        size.deallocate()
        total.deallocate()
    }

    /// Adds a table of `symbols` symbols; returns its index.
    func add(symbols: Int) -> Int {
        precondition(tables < tableCapacity && used + symbols <= symbolCapacity, "frequency tables sized too small")
        (freq + used).initialize(repeating: 1, count: symbols)
        start[tables] = used
        size[tables] = symbols
        total[tables] = UInt32(symbols)
        used += symbols
        tables += 1
        return tables - 1
    }

    @inline(__always) func encode(_ symbol: Int, table t: Int, into e: inout RangeEncoder) {
        let p = freq + start[t]
        var c: UInt32 = 0
        for i in 0..<symbol { c &+= p[i] }
        e.encode(cumulative: c, frequency: p[symbol], total: total[t])
        update(p, symbol, table: t)
    }

    @inline(__always) func decode(table t: Int, from d: inout RangeDecoder) -> Int {
        let n = size[t]
        let p = freq + start[t]
        let r = d.scale(total: total[t])
        let v = d.value
        // r·total ≤ range, so no product overflows; the last symbol also takes any value past
        // r·total (only damaged data gets there).
        var c: UInt32 = 0, s = 0
        while s < n - 1 && r &* (c &+ p[s]) <= v { c &+= p[s]; s += 1 }
        d.consume(cumulative: c, frequency: p[s])
        update(p, s, table: t)
        return s
    }

    @inline(__always) private func update(_ p: UnsafeMutablePointer<UInt32>, _ symbol: Int, table t: Int) {
        p[symbol] &+= Self.increment
        total[t] &+= Self.increment
        if total[t] > Self.limit {
            var sum: UInt32 = 0
            for i in 0..<size[t] { p[i] = (p[i] + 1) >> 1; sum &+= p[i] }
            total[t] = sum
        }
    }
}

/// Adaptive probabilities of binary decisions, 12-bit, starting at 1/2.
final class BitProbabilities {
    let p: UnsafeMutablePointer<UInt16>
    init(count: Int) {
        p = .allocate(capacity: count)
        p.initialize(repeating: 2048, count: count)
    }
    deinit { p.deallocate() }
}

/// Adaptive coding of unsigned integers in several contexts, an adaptive Elias-gamma code:
/// the bit length b of v (0 for v = 0, so 65 symbols) from a table per context, then, for b ≥ 2,
/// the top min(2, b−1) bits below the leading one as adaptive binary decisions (a two-level bit
/// tree per (context, b): 3 probabilities), then the
/// remaining b−3 bits as they are. Small values thus cost what their frequency says, and large
/// ones (ids) pay for their magnitude class and two leading bits, with the rest uniform.
struct AdaptiveIntegers {
    static let lengthSymbols = 65
    private let tables: FrequencyTables
    private let lengthBase: Int
    private let mantissa: BitProbabilities
    /// Bits below the leading one that are modelled (the rest are raw).
    private let modeledBits: Int

    init(contexts: Int, modeledBits: Int = 2) {
        precondition(contexts >= 1 && (1...8).contains(modeledBits))
        self.modeledBits = modeledBits
        tables = FrequencyTables(tables: contexts, symbols: contexts * Self.lengthSymbols)
        var first = -1
        for _ in 0..<contexts {
            let t = tables.add(symbols: Self.lengthSymbols)
            if first < 0 { first = t }
        }
        lengthBase = first
        mantissa = BitProbabilities(count: contexts * Self.lengthSymbols << modeledBits)
    }

    @inline(__always) func encode(_ v: UInt64, context: Int, into e: inout RangeEncoder) {
        let b = 64 - v.leadingZeroBitCount
        tables.encode(b, table: lengthBase + context, into: &e)
        guard b >= 2 else { return }
        let m = b - 1
        let top = min(modeledBits, m)
        let rest = m - top
        let tree = mantissa.p + ((context * Self.lengthSymbols + b) << modeledBits)
        var node = 1
        for i in 1...top {
            let bit = Int((v >> UInt64(m - i)) & 1)
            e.encodeBit(bit, probability: &tree[node])
            node = node << 1 | bit
        }
        if rest > 32 { e.writeRawBits(v >> 32, count: rest - 32) }
        if rest > 0 { e.writeRawBits(v, count: min(rest, 32)) }
    }

    @inline(__always) func decode(context: Int, from d: inout RangeDecoder) -> UInt64 {
        let b = tables.decode(table: lengthBase + context, from: &d)
        guard b >= 2 else { return UInt64(b) }
        let m = b - 1
        let top = min(modeledBits, m)
        let tree = mantissa.p + ((context * Self.lengthSymbols + b) << modeledBits)
        var node = 1
        for _ in 0..<top { node = node << 1 | d.decodeBit(probability: &tree[node]) }
        var v = UInt64(node)
        let rest = m - top
        if rest > 32 { v = v << UInt64(rest - 32) | d.readRawBits(count: rest - 32) }
        if rest > 0 { v = v << UInt64(min(rest, 32)) | d.readRawBits(count: min(rest, 32)) }
        return v
    }
}
