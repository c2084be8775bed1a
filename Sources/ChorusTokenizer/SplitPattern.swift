import Foundation

/// The split patterns that real tokenizer.json files use, spelled exactly as they appear there.
enum KnownPattern {
    /// GPT-2's pattern, also the one built into the ByteLevel pre-tokenizer (`use_regex`).
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    /// Qwen2 / Qwen2.5 / Qwen3: single digits.
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// Llama-3: digit groups of up to three.
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
}

/// Finds the non-overlapping, leftmost matches of a split pattern in UTF-8 text, as
/// Oniguruma's `find_iter` does in HF tokenizers.
///
/// The three known patterns run on a hand-written matcher (ICU's NSRegularExpression is slow
/// on Linux and needs UTF-16); any other regex falls back to NSRegularExpression, whose syntax
/// and Unicode classes agree with Oniguruma's for the constructs tokenizer files use.
enum SplitPattern {
    case gpt2
    case qwen2
    case llama3
    /// A literal string (`{"String": ...}` in tokenizer.json).
    case literal([UInt8])
    case regex(NSRegularExpression)

    /// Compiles `pattern`; `isRegex` is false for the `String` form. `field` names the JSON
    /// location for error messages.
    init(pattern: String, isRegex: Bool, field: String) throws(TokenizerError) {
        if !isRegex {
            self = .literal(Array(pattern.utf8))
            return
        }
        switch pattern {
        case KnownPattern.gpt2: self = .gpt2
        case KnownPattern.qwen2: self = .qwen2
        case KnownPattern.llama3: self = .llama3
        default:
            do {
                self = .regex(try NSRegularExpression(pattern: pattern, options: []))
            } catch {
                throw .invalidField(field: field, reason: "regex does not compile: \(pattern)")
            }
        }
    }

    /// Calls `body` with the byte range of each match inside `text[range]`, left to right.
    func forEachMatch(in text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        switch self {
        case .gpt2:
            PatternScanner(text: text, end: range.upperBound).forEachMatch(from: range.lowerBound, body) { $0.matchGPT2(at: $1) }
        case .qwen2:
            PatternScanner(text: text, end: range.upperBound).forEachMatch(from: range.lowerBound, body) {
                $0.matchQwen(at: $1, maxDigits: 1)
            }
        case .llama3:
            PatternScanner(text: text, end: range.upperBound).forEachMatch(from: range.lowerBound, body) {
                $0.matchQwen(at: $1, maxDigits: 3)
            }
        case let .literal(needle):
            guard !needle.isEmpty else { return }
            var i = range.lowerBound
            while i + needle.count <= range.upperBound {
                var hit = true
                for k in 0..<needle.count where text[i + k] != needle[k] { hit = false; break }
                if hit {
                    body(i..<i + needle.count)
                    i += needle.count
                } else {
                    i += 1
                }
            }
        case let .regex(re):
            let s = String(decoding: UnsafeBufferPointer(rebasing: text[range]), as: UTF8.self)
            // NSRegularExpression reports UTF-16 offsets; map them back to UTF-8 offsets.
            var utf16ToUTF8: [Int] = []
            utf16ToUTF8.reserveCapacity(range.count + 1)
            var u8 = range.lowerBound
            for scalar in s.unicodeScalars {
                let n16 = scalar.utf16.count
                for _ in 0..<n16 { utf16ToUTF8.append(u8) }
                u8 += scalar.utf8.count
            }
            utf16ToUTF8.append(u8)
            let ns = s as NSString
            for m in re.matches(in: s, options: [], range: NSRange(location: 0, length: ns.length)) {
                let r = m.range
                if r.location == NSNotFound || r.length == 0 { continue }
                body(utf16ToUTF8[r.location]..<utf16ToUTF8[r.location + r.length])
            }
        }
    }
}

/// Character classes the known patterns test, per Unicode scalar.
struct ScalarClass: OptionSet {
    let rawValue: UInt8
    /// `\p{L}`: general category L (Lu, Ll, Lt, Lm, Lo).
    static let letter = ScalarClass(rawValue: 1)
    /// `\p{N}`: general category N (Nd, Nl, No).
    static let number = ScalarClass(rawValue: 2)
    /// `\s`: Oniguruma's Unicode whitespace (U+0009-000D, U+0085, Zs, Zl, Zp) = White_Space.
    static let space = ScalarClass(rawValue: 4)
    /// `[\r\n]`.
    static let newline = ScalarClass(rawValue: 8)

    /// The class of scalar value `v`.
    @inline(__always)
    static func of(_ v: UInt32) -> ScalarClass {
        if v < 0x80 {
            switch v {
            case 0x41...0x5A, 0x61...0x7A: return .letter
            case 0x30...0x39: return .number
            case 0x0A, 0x0D: return [.space, .newline]
            case 0x09, 0x0B, 0x0C, 0x20: return .space
            default: return []
            }
        }
        // Fast paths for large blocks whose classes are fixed (all assigned before Unicode 14):
        // Latin-1 letters, Cyrillic basic letters, kana, CJK unified ideographs, Hangul.
        switch v {
        case 0xC0...0xD6, 0xD8...0xF6, 0xF8...0xFF, 0x410...0x44F, 0x3041...0x3096, 0x30A1...0x30FA,
             0x4E00...0x9FFF, 0xAC00...0xD7A3:
            return .letter
        default: break
        }
        guard let scalar = Unicode.Scalar(v) else { return [] }
        let p = scalar.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return isKnownToOniguruma(p) ? .letter : []
        case .decimalNumber, .letterNumber, .otherNumber:
            return isKnownToOniguruma(p) ? .number : []
        default: return []
        }
    }

    /// HF tokenizers 0.23's Oniguruma has Unicode 16.0 tables; the Swift runtime may know a
    /// newer version. Characters assigned later are unassigned (Cn) to Oniguruma, so they
    /// must not count as letters or numbers here either (checked against HF with U+18D9C).
    @inline(__always)
    private static func isKnownToOniguruma(_ p: Unicode.Scalar.Properties) -> Bool {
        guard let age = p.age else { return false }
        return age.major < 16 || (age.major == 16 && age.minor == 0)
    }
}

/// Hand-written equivalents of the GPT-2 and Qwen2/Llama-3 split regexes, over UTF-8 bytes.
/// Each `match...(at:)` returns the end of the match that Oniguruma's leftmost-first
/// alternation (with backtracking) finds starting exactly at `i`, or nil if none does.
struct PatternScanner {
    let text: UnsafeBufferPointer<UInt8>
    let end: Int

    /// The find-iter loop: a match at `i` is reported and the scan resumes at its end; where
    /// no alternative matches, the scan moves on by one scalar.
    @inline(__always)
    func forEachMatch(from start: Int, _ body: (Range<Int>) -> Void, _ matchAt: (PatternScanner, Int) -> Int?) {
        var i = start
        while i < end {
            if let e = matchAt(self, i) {
                body(i..<e)
                i = e
            } else {
                i += decode(at: i).length
            }
        }
    }

    /// The scalar at byte offset `i` (valid UTF-8, since it came from a Swift String).
    @inline(__always)
    func decode(at i: Int) -> (value: UInt32, length: Int) {
        let b0 = UInt32(text[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(text[i + 1] & 0x3F), 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(text[i + 1] & 0x3F) << 6 | UInt32(text[i + 2] & 0x3F), 3)
        }
        return ((b0 & 0x07) << 18 | UInt32(text[i + 1] & 0x3F) << 12 | UInt32(text[i + 2] & 0x3F) << 6
            | UInt32(text[i + 3] & 0x3F), 4)
    }

    @inline(__always)
    func classAt(_ i: Int) -> (cls: ScalarClass, length: Int) {
        let (v, n) = decode(at: i)
        return (ScalarClass.of(v), n)
    }

    /// End of the run of scalars starting at `i` whose class satisfies `pred` (at most
    /// `limit` scalars); returns `i` if the first one does not.
    @inline(__always)
    func run(from i: Int, limit: Int = .max, _ pred: (ScalarClass) -> Bool) -> Int {
        var j = i
        var count = 0
        while j < end, count < limit {
            let (c, n) = classAt(j)
            if !pred(c) { break }
            j += n
            count += 1
        }
        return j
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d`, optionally case-insensitive (`(?i:...)`, where Unicode
    /// simple case folding also lets U+017F LATIN SMALL LETTER LONG S match `s`).
    @inline(__always)
    func contraction(at i: Int, caseInsensitive: Bool) -> Int? {
        guard text[i] == UInt8(ascii: "'"), i + 1 < end else { return nil }
        @inline(__always) func lower(_ b: UInt8) -> UInt8 {
            caseInsensitive && b >= 0x41 && b <= 0x5A ? b | 0x20 : b
        }
        let c1 = lower(text[i + 1])
        switch c1 {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return i + 2
        case UInt8(ascii: "r"), UInt8(ascii: "v"):
            return i + 2 < end && lower(text[i + 2]) == UInt8(ascii: "e") ? i + 3 : nil
        case UInt8(ascii: "l"):
            return i + 2 < end && lower(text[i + 2]) == UInt8(ascii: "l") ? i + 3 : nil
        case 0xC5 where caseInsensitive:
            // U+017F (ſ) is C5 BF in UTF-8 and case-folds to 's'.
            return i + 2 < end && text[i + 2] == 0xBF ? i + 3 : nil
        default: return nil
        }
    }

    /// The whitespace alternatives shared by all patterns, at a whitespace scalar `i`:
    /// optionally `\s*[\r\n]+` first (Qwen/Llama), then `\s+(?!\S)`, then `\s+`.
    @inline(__always)
    func whitespace(at i: Int, newlineRule: Bool) -> Int {
        var j = i
        var lastStart = i  // start of the last scalar of the run
        var afterNewline = -1  // end of the last [\r\n] in the run
        var count = 0
        while j < end {
            let (c, n) = classAt(j)
            if !c.contains(.space) { break }
            if c.contains(.newline) { afterNewline = j + n }
            lastStart = j
            j += n
            count += 1
        }
        // \s*[\r\n]+ : greedy \s* backtracks to the last CR/LF of the run; [\r\n]+ then takes
        // exactly that one (the run's later scalars are not CR/LF).
        if newlineRule, afterNewline >= 0 { return afterNewline }
        // \s+(?!\S) : the whole run at the end of text, else the run minus its last scalar.
        if j == end || count < 2 { return j }  // (count < 2: falls through to plain \s+)
        return lastStart
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    func matchGPT2(at i: Int) -> Int? {
        if let e = contraction(at: i, caseInsensitive: false) { return e }
        let (c0, n0) = classAt(i)
        // " ?X+" for X in letter, number, other: the optional space is tried first.
        if text[i] == 0x20, i + 1 < end {
            let (c1, _) = classAt(i + 1)
            if c1.contains(.letter) { return run(from: i + 1) { $0.contains(.letter) } }
            if c1.contains(.number) { return run(from: i + 1) { $0.contains(.number) } }
            if c1.isEmpty { return run(from: i + 1) { $0.isEmpty } }
        }
        if c0.contains(.letter) { return run(from: i) { $0.contains(.letter) } }
        if c0.contains(.number) { return run(from: i) { $0.contains(.number) } }
        if c0.isEmpty { return run(from: i) { $0.isEmpty } }
        _ = n0
        return whitespace(at: i, newlineRule: false)
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    func matchQwen(at i: Int, maxDigits: Int) -> Int? {
        if let e = contraction(at: i, caseInsensitive: true) { return e }
        let (c0, n0) = classAt(i)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c0.contains(.letter) { return run(from: i) { $0.contains(.letter) } }
        if !c0.contains(.newline), !c0.contains(.number), i + n0 < end {
            let (c1, _) = classAt(i + n0)
            if c1.contains(.letter) { return run(from: i + n0) { $0.contains(.letter) } }
        }
        // \p{N}{1,maxDigits}
        if c0.contains(.number) { return run(from: i, limit: maxDigits) { $0.contains(.number) } }
        // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        var start = -1
        if c0.isEmpty {
            start = i
        } else if text[i] == 0x20, i + 1 < end, classAt(i + 1).cls.isEmpty {
            start = i + 1
        }
        if start >= 0 {
            let j = run(from: start) { $0.isEmpty }
            var k = j
            while k < end, text[k] == 0x0A || text[k] == 0x0D { k += 1 }
            return k
        }
        return whitespace(at: i, newlineRule: true)
    }
}
