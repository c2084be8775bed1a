import Foundation

// The pipeline stages of a tokenizer.json, each parsed by a factory that switches on the JSON
// `type` and throws `unsupportedComponent` for anything else (never a silent no-op).

// MARK: - Normalizer

/// Unicode normalizers (`NFC`, `NFD`, `NFKC`, `NFKD`) and `Sequence` of them.
indirect enum Normalizer {
    case nfc, nfd, nfkc, nfkd
    case sequence([Normalizer])

    /// Parses `json` (a normalizer object); returns nil for JSON null.
    static func parse(_ json: JSONValue?, field: String) throws(TokenizerError) -> Normalizer? {
        guard let json = json?.nonNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw .missingField(field: field + ".type") }
        switch type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Sequence":
            guard let items = json["normalizers"]?.arrayValue else {
                throw .missingField(field: field + ".normalizers")
            }
            var out: [Normalizer] = []
            for (k, item) in items.enumerated() {
                // A null inside a Sequence is not something HF writes; refuse rather than guess.
                guard let n = try parse(item, field: "\(field).normalizers[\(k)]") else {
                    throw .invalidField(field: "\(field).normalizers[\(k)]", reason: "null normalizer")
                }
                out.append(n)
            }
            return .sequence(out)
        default:
            throw .unsupportedComponent(field: field, type: type)
        }
    }

    /// Normalizes UTF-8 `bytes`.
    func apply(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case let .sequence(items):
            var b = bytes
            for n in items { b = n.apply(b) }
            return b
        case .nfc:
            return nfcQuick(bytes)
        case .nfd:
            if bytes.allSatisfy({ $0 < 0x80 }) { return bytes }
            return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCanonicalMapping.utf8)
        case .nfkc:
            if bytes.allSatisfy({ $0 < 0x80 }) { return bytes }
            return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCompatibilityMapping.utf8)
        case .nfkd:
            if bytes.allSatisfy({ $0 < 0x80 }) { return bytes }
            return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCompatibilityMapping.utf8)
        }
    }
}

/// True for scalars that are NFC_QC=Yes with canonical combining class 0 *and* never the
/// second half of a canonical composition: text made only of these is already NFC, and text
/// can be cut before any of them without changing its NFC form. The ranges were checked with
/// Python's unicodedata (ccc, NFC of the scalar, second parts of two-scalar decompositions,
/// Hangul V/T jamo); they hold the bulk of Latin, Cyrillic, Arabic, CJK, Hangul, kana, emoji.
@inline(__always)
private func isNFCSafeStarter(_ v: UInt32) -> Bool {
    switch v {
    case 0..<0x300, 0x400..<0x483, 0x620..<0x64B, 0x2002..<0x2070, 0x3000..<0x302A, 0x3041..<0x3097,
         0x30A1..<0x30FB, 0x4E00..<0xA000, 0xAC00..<0xD7A4, 0xFE00..<0xFE10, 0xFF01..<0xFFEF, 0x1F000..<0x1FB00:
        return true
    default:
        return false
    }
}

/// NFC of UTF-8 `bytes`, calling Foundation only on the stretches that may change: each
/// stretch runs from the last safe starter before an unsafe scalar up to the next safe starter.
private func nfcQuick(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var copied = 0        // bytes[..<copied] are already in `out` (only once something changed)
    var segmentStart = 0  // start of the current stretch (a safe starter, or 0)
    var unsafeSeen = false
    var changed = false
    var i = 0
    func flush(_ end: Int) {
        guard unsafeSeen else { return }
        let piece = String(decoding: bytes[segmentStart..<end], as: UTF8.self).precomposedStringWithCanonicalMapping
        if !changed {
            out.reserveCapacity(bytes.count)
            changed = true
        }
        out += bytes[copied..<segmentStart]
        out += Array(piece.utf8)
        copied = end
    }
    while i < bytes.count {
        let b0 = UInt32(bytes[i])
        if b0 < 0x80 {
            // ASCII is always a safe starter.
            flush(i); segmentStart = i; unsafeSeen = false
            i += 1
            continue
        }
        let v: UInt32, n: Int
        if b0 < 0xE0 { v = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F); n = 2 }
        else if b0 < 0xF0 { v = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F); n = 3 }
        else {
            v = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F)
            n = 4
        }
        if isNFCSafeStarter(v) {
            flush(i); segmentStart = i; unsafeSeen = false
        } else {
            unsafeSeen = true
        }
        i += n
    }
    flush(bytes.count)
    if !changed { return bytes }
    out += bytes[copied...]
    return out
}

// MARK: - Pre-tokenizer

/// How a `Split` pre-tokenizer treats the matched delimiters (HF `SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// One step of the (flattened) pre-tokenizer pipeline.
enum PreTokenizerStep {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    /// ByteLevel: `addPrefixSpace` prepends " " to each piece not starting with one;
    /// `useRegex` then splits with GPT-2's pattern. (`trim_offsets` only affects offsets.)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)

    /// Parses a pre-tokenizer object and flattens `Sequence`s into `steps`.
    static func parse(_ json: JSONValue, field: String, into steps: inout [PreTokenizerStep]) throws(TokenizerError) {
        guard let type = json["type"]?.stringValue else { throw .missingField(field: field + ".type") }
        switch type {
        case "Sequence":
            guard let items = json["pretokenizers"]?.arrayValue else {
                throw .missingField(field: field + ".pretokenizers")
            }
            for (k, item) in items.enumerated() {
                try parse(item, field: "\(field).pretokenizers[\(k)]", into: &steps)
            }
        case "ByteLevel":
            let addPrefix = try optionalBool(json, "add_prefix_space", field: field) ?? true
            let useRegex = try optionalBool(json, "use_regex", field: field) ?? true
            steps.append(.byteLevel(addPrefixSpace: addPrefix, useRegex: useRegex))
        case "Split":
            guard let patternJSON = json["pattern"] else { throw .missingField(field: field + ".pattern") }
            let pattern: SplitPattern
            if let s = patternJSON["String"]?.stringValue {
                pattern = try SplitPattern(pattern: s, isRegex: false, field: field + ".pattern")
            } else if let r = patternJSON["Regex"]?.stringValue {
                pattern = try SplitPattern(pattern: r, isRegex: true, field: field + ".pattern")
            } else {
                throw .invalidField(field: field + ".pattern", reason: "expected {\"String\": ...} or {\"Regex\": ...}")
            }
            guard let b = json["behavior"]?.stringValue else { throw .missingField(field: field + ".behavior") }
            guard let behavior = SplitBehavior(rawValue: b) else {
                throw .invalidField(field: field + ".behavior", reason: "unknown behavior '\(b)'")
            }
            let invert = try optionalBool(json, "invert", field: field) ?? false
            steps.append(.split(pattern, behavior, invert: invert))
        default:
            throw .unsupportedComponent(field: field, type: type)
        }
    }
}

/// Reads an optional boolean member; a present non-boolean is an error.
func optionalBool(_ json: JSONValue, _ key: String, field: String) throws(TokenizerError) -> Bool? {
    guard let v = json[key]?.nonNull else { return nil }
    guard let b = v.boolValue else { throw .invalidField(field: "\(field).\(key)", reason: "expected true or false") }
    return b
}

/// Applies HF's `NormalizedString::split` to the match list of `pattern` in `text[range]`:
/// returns the pieces to keep, in order (empty pieces dropped, as `PreTokenizedString::split` does).
func splitPieces(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, pattern: SplitPattern,
                 behavior: SplitBehavior, invert: Bool) -> [Range<Int>] {
    if range.isEmpty { return [] }
    // (piece, isMatch) covering the whole range, as `Pattern::find_matches` returns.
    var matches: [(Range<Int>, Bool)] = []
    var prev = range.lowerBound
    pattern.forEachMatch(in: text, range) { m in
        if prev != m.lowerBound { matches.append((prev..<m.lowerBound, invert)) }
        matches.append((m, !invert))
        prev = m.upperBound
    }
    if prev != range.upperBound { matches.append((prev..<range.upperBound, invert)) }

    var out: [Range<Int>] = []
    switch behavior {
    case .isolated:
        out = matches.map { $0.0 }
    case .removed:
        out = matches.filter { !$0.1 }.map { $0.0 }
    case .contiguous:
        var previousMatch = false
        for (r, isMatch) in matches {
            if isMatch == previousMatch, let last = out.last {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
            previousMatch = isMatch
        }
    case .mergedWithPrevious:
        var previousMatch = false
        for (r, isMatch) in matches {
            if isMatch, !previousMatch, let last = out.last {
                out[out.count - 1] = last.lowerBound..<r.upperBound
            } else {
                out.append(r)
            }
            previousMatch = isMatch
        }
    case .mergedWithNext:
        var previousMatch = false
        for (r, isMatch) in matches.reversed() {
            if isMatch, !previousMatch, let last = out.last {
                out[out.count - 1] = r.lowerBound..<last.upperBound
            } else {
                out.append(r)
            }
            previousMatch = isMatch
        }
        out.reverse()
    }
    return out.filter { !$0.isEmpty }
}

// MARK: - Post-processor

/// The ids a post-processor wraps around the encoded sequence (`add_special_tokens=True`).
struct PostProcessor {
    /// Ids to put before and after the sequence, in order.
    var prefix: [Int] = []
    var suffix: [Int] = []

    /// Parses `ByteLevel` (no-op for ids), `TemplateProcessing` and `Sequence` of them.
    static func parse(_ json: JSONValue?, field: String) throws(TokenizerError) -> PostProcessor {
        var p = PostProcessor()
        guard let json = json?.nonNull else { return p }
        try p.add(json, field: field)
        return p
    }

    private mutating func add(_ json: JSONValue, field: String) throws(TokenizerError) {
        guard let type = json["type"]?.stringValue else { throw .missingField(field: field + ".type") }
        switch type {
        case "ByteLevel":
            return  // only adjusts offsets
        case "Sequence":
            guard let items = json["processors"]?.arrayValue else { throw .missingField(field: field + ".processors") }
            for (k, item) in items.enumerated() { try add(item, field: "\(field).processors[\(k)]") }
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else { throw .missingField(field: field + ".single") }
            let specials = json["special_tokens"]
            var seenSequence = false
            var before: [Int] = [], after: [Int] = []
            for (k, piece) in single.enumerated() {
                let pf = "\(field).single[\(k)]"
                if let seq = piece["Sequence"] {
                    guard seq["id"]?.stringValue == "A", !seenSequence else {
                        throw .unsupportedOption(field: field, option: "single", reason: "a single-sequence template must use $A exactly once")
                    }
                    seenSequence = true
                } else if let sp = piece["SpecialToken"] {
                    guard let name = sp["id"]?.stringValue else { throw .missingField(field: pf + ".SpecialToken.id") }
                    guard let entry = specials?[name], let idsJSON = entry["ids"]?.arrayValue else {
                        throw .missingField(field: "\(field).special_tokens.\(name).ids")
                    }
                    var ids: [Int] = []
                    for v in idsJSON {
                        guard let id = v.intValue, id >= 0 else {
                            throw .invalidField(field: "\(field).special_tokens.\(name).ids", reason: "expected non-negative integers")
                        }
                        ids.append(id)
                    }
                    if seenSequence { after += ids } else { before += ids }
                } else {
                    throw .invalidField(field: pf, reason: "expected Sequence or SpecialToken")
                }
            }
            guard seenSequence else {
                throw .unsupportedOption(field: field, option: "single", reason: "template has no $A")
            }
            // Sequence processors run in order; each later template wraps the earlier result.
            prefix = before + prefix
            suffix = suffix + after
        default:
            throw .unsupportedComponent(field: field, type: type)
        }
    }
}

// MARK: - Decoder

/// The decoder stage: `ByteLevel`, or none (tokens joined with spaces, as HF does).
enum DecoderKind {
    case none
    case byteLevel

    static func parse(_ json: JSONValue?, field: String) throws(TokenizerError) -> DecoderKind {
        guard let json = json?.nonNull else { return .none }
        guard let type = json["type"]?.stringValue else { throw .missingField(field: field + ".type") }
        switch type {
        case "ByteLevel": return .byteLevel
        default: throw .unsupportedComponent(field: field, type: type)
        }
    }
}
