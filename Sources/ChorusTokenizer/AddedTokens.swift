/// One entry of tokenizer.json's `added_tokens`.
struct AddedToken {
    var id: Int
    var content: String
    /// Only matched when not inside a word (no alphanumeric character on either side).
    var singleWord = false
    /// Swallows whitespace on its left / right into the match.
    var lstrip = false
    var rstrip = false
    /// Matched in the normalized text (true) or in the raw text before normalization (false).
    var normalized = false
    var special = false

    /// The JSON object HF writes for an added token (same key order).
    var json: JSONValue {
        .object([
            ("id", .number(String(id))), ("content", .string(content)),
            ("single_word", .bool(singleWord)), ("lstrip", .bool(lstrip)), ("rstrip", .bool(rstrip)),
            ("normalized", .bool(normalized)), ("special", .bool(special)),
        ])
    }

    /// Parses an `added_tokens[k]` object; `field` names it for errors.
    init(json: JSONValue, field: String) throws(TokenizerError) {
        guard let id = json["id"]?.intValue, id >= 0, id < Int(Int32.max) else {
            throw .invalidField(field: field + ".id", reason: "expected a non-negative integer")
        }
        guard let content = json["content"]?.stringValue else { throw .missingField(field: field + ".content") }
        guard !content.isEmpty else { throw .invalidField(field: field + ".content", reason: "empty token") }
        self.id = id
        self.content = content
        special = try optionalBool(json, "special", field: field) ?? false
        singleWord = try optionalBool(json, "single_word", field: field) ?? false
        lstrip = try optionalBool(json, "lstrip", field: field) ?? false
        rstrip = try optionalBool(json, "rstrip", field: field) ?? false
        // HF's AddedToken::from(content, special) defaults `normalized` to !special.
        normalized = try optionalBool(json, "normalized", field: field) ?? !special
    }

    init(id: Int, content: String, special: Bool) {
        self.id = id
        self.content = content
        self.special = special
        self.normalized = !special
    }
}

/// A piece of text after added-token extraction: either an added token's id or a byte range
/// of plain text still to be normalized / pre-tokenized.
enum Segment {
    case token(Int)
    case text(Range<Int>)
}

/// Finds added tokens in text the way HF's `AddedVocabulary::find_matches` does: Aho-Corasick
/// leftmost-longest over bytes, then the `single_word`, `lstrip` and `rstrip` rules.
struct AddedTokenMatcher {
    /// Per first byte: (pattern bytes, token) with longer patterns first.
    private var byFirstByte: [[([UInt8], AddedToken)]] = Array(repeating: [], count: 256)
    private(set) var isEmpty = true

    /// `patterns` pairs each token with the bytes to look for (its content, normalized for the
    /// normalized set).
    init(_ patterns: [([UInt8], AddedToken)]) {
        for (bytes, token) in patterns where !bytes.isEmpty {
            byFirstByte[Int(bytes[0])].append((bytes, token))
            isEmpty = false
        }
        for b in 0..<256 where byFirstByte[b].count > 1 {
            // Longest first; equal lengths keep insertion order (the earlier pattern wins).
            let indexed = byFirstByte[b].enumerated().sorted {
                $0.element.0.count != $1.element.0.count ? $0.element.0.count > $1.element.0.count : $0.offset < $1.offset
            }
            byFirstByte[b] = indexed.map { $0.element }
        }
    }

    /// Splits `text[range]` into added tokens and the plain text between them.
    func split(_ text: [UInt8], _ range: Range<Int>) -> [Segment] {
        if isEmpty || range.isEmpty { return range.isEmpty ? [] : [.text(range)] }
        var out: [Segment] = []
        var startOffset = range.lowerBound
        var i = range.lowerBound
        while i < range.upperBound {
            var found: ([UInt8], AddedToken)?
            for candidate in byFirstByte[Int(text[i])] {
                let p = candidate.0
                if i + p.count <= range.upperBound, text[i..<i + p.count].elementsEqual(p) { found = candidate; break }
            }
            guard let (pattern, token) = found else { i += 1; continue }
            var start = i
            var stop = i + pattern.count
            i = stop  // non-overlapping: the search resumes after this match even if discarded
            if token.singleWord {
                let startSpace = start == range.lowerBound || !endsWithWord(text, range.lowerBound, start)
                let stopSpace = stop == range.upperBound || !startsWithWord(text, stop, range.upperBound)
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                // The previous match may already own those spaces.
                start = max(leftmostSpaceAtEnd(text, range.lowerBound, start), startOffset)
            }
            if token.rstrip {
                // The search still resumes at the match end, as in HF: a token starting inside
                // the stripped spaces is found too (both tokens are emitted).
                stop = rightmostSpaceAtStart(text, stop, range.upperBound)
            }
            if startOffset < start { out.append(.text(startOffset..<start)) }
            out.append(.token(token.id))
            startOffset = max(startOffset, stop)
        }
        if startOffset < range.upperBound { out.append(.text(startOffset..<range.upperBound)) }
        return out
    }
}

// Helpers over UTF-8 bytes mirroring the Rust `regex` crate's Unicode `\w` and `\s`, which HF
// uses for single_word (`\w$`, `^\w`) and lstrip/rstrip (`\s*$`, `^\s*`).

/// Decodes the scalar that ends just before byte `end` (walking back over continuation bytes).
private func scalarBefore(_ text: [UInt8], _ lower: Int, _ end: Int) -> (Unicode.Scalar, Int)? {
    guard end > lower else { return nil }
    var s = end - 1
    while s > lower, text[s] & 0xC0 == 0x80 { s -= 1 }
    return (decodeScalar(text, s), s)
}

private func decodeScalar(_ text: [UInt8], _ i: Int) -> Unicode.Scalar {
    var it = text[i...].makeIterator()
    var decoder = UTF8()
    if case let .scalarValue(v) = decoder.decode(&it) { return v }
    return "\u{FFFD}"
}

/// `\w`: Alphabetic, marks, decimal digits, connector punctuation, joiners (UTS #18 word).
private func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
    let p = s.properties
    switch p.generalCategory {
    case .decimalNumber, .nonspacingMark, .spacingMark, .enclosingMark, .connectorPunctuation: return true
    default: return p.isAlphabetic || p.isJoinControl
    }
}

private func endsWithWord(_ text: [UInt8], _ lower: Int, _ end: Int) -> Bool {
    guard let (s, _) = scalarBefore(text, lower, end) else { return false }
    return isWordCharacter(s)
}

private func startsWithWord(_ text: [UInt8], _ start: Int, _ upper: Int) -> Bool {
    guard start < upper else { return false }
    return isWordCharacter(decodeScalar(text, start))
}

/// Start of the whitespace run that ends at `end` (HF `space_leftmost_at_end`).
private func leftmostSpaceAtEnd(_ text: [UInt8], _ lower: Int, _ end: Int) -> Int {
    var e = end
    while let (s, start) = scalarBefore(text, lower, e), s.properties.isWhitespace { e = start }
    return e
}

/// End of the whitespace run that starts at `start` (HF `space_rightmost_at_start`).
private func rightmostSpaceAtStart(_ text: [UInt8], _ start: Int, _ upper: Int) -> Int {
    var i = start
    while i < upper {
        let s = decodeScalar(text, i)
        guard s.properties.isWhitespace else { break }
        i += s.utf8.count
    }
    return i
}
