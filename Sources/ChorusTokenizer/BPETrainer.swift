import ChorusCore
import Foundation

/// Trains a byte-level BPE tokenizer in the Qwen2 layout: NFC normalizer, Split with the Qwen2
/// regex (Isolated) then ByteLevel (no prefix space, no regex), ByteLevel decoder and
/// post-processor.
///
/// Ids: the special tokens first (0..<k, in the order given), then the 256 byte symbols in byte
/// order, then one id per merge. Each step merges the most frequent adjacent pair of symbols,
/// counted over all pre-tokenized words of the corpus (special tokens written in the text are
/// cut out first); ties go to the pair with the smaller (left id, right id). The result is a
/// pure function of the corpus bytes and the settings, so training twice gives the same file.
public struct BPETrainer: Sendable {
    /// Final vocabulary size including the 256 byte symbols and the special tokens.
    public var vocabSize: Int
    /// Special tokens (e.g. `<|endoftext|>`), given the first ids.
    public var specialTokens: [String]
    /// Pairs seen fewer times than this are never merged (training may stop below `vocabSize`).
    public var minFrequency: Int

    /// - Parameters: see the properties; `vocabSize` must be at least 256 + specials.
    public init(vocabSize: Int, specialTokens: [String] = [], minFrequency: Int = 2) {
        self.vocabSize = vocabSize
        self.specialTokens = specialTokens
        self.minFrequency = minFrequency
    }

    /// Trains on the concatenated contents of UTF-8 text files.
    public func train(files: [URL]) throws(TokenizerError) -> Tokenizer {
        var texts: [String] = []
        for url in files {
            let data: Data
            do { data = try InputFile.read(url.path) } catch {
                throw TokenizerError.unreadableFile(path: url.path, reason: (error as? InputFileError)?.problem ?? "\(error)")
            }
            do { texts.append(try UTF8Text.decode(data, source: url.path)) } catch {
                throw TokenizerError.invalidTrainingRequest(reason: "\(error)")
            }
        }
        if texts.allSatisfy({ $0.isEmpty }) {
            throw TokenizerError.invalidTrainingRequest(reason: "no text to train on: \(files.map(\.path).joined(separator: ", ")) \(files.count == 1 ? "is" : "are") empty")
        }
        return try train(texts: texts)
    }

    /// Trains on in-memory texts (each one is pre-tokenized on its own).
    public func train(texts: [String]) throws(TokenizerError) -> Tokenizer {
        let k = specialTokens.count
        guard Set(specialTokens).count == k, !specialTokens.contains("") else {
            throw .invalidTrainingRequest(reason: "special tokens must be distinct and non-empty")
        }
        guard vocabSize >= 256 + k else {
            throw .invalidTrainingRequest(reason: "vocab size \(vocabSize) is below 256 byte symbols + \(k) special tokens")
        }
        guard minFrequency >= 1 else { throw .invalidTrainingRequest(reason: "min frequency must be at least 1") }
        guard texts.contains(where: { !$0.isEmpty }) else { throw .invalidTrainingRequest(reason: "no text to train on (the input is empty)") }

        let wordCounts = countWords(texts)
        // Sorted so that nothing below depends on dictionary order.
        let sortedWords = wordCounts.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        var words: [[Int32]] = sortedWords.map { w in w.key.map { Int32(k) + Int32($0) } }
        let counts: [Int] = sortedWords.map { $0.value }

        var tokenBytes: [[UInt8]] = specialTokens.map { Array($0.utf8) } + (0..<256).map { [UInt8($0)] }
        var idForBytes: [[UInt8]: Int32] = [:]
        for b in 0..<256 { idForBytes[[UInt8(b)]] = Int32(k + b) }
        var merges: [(Int32, Int32)] = []

        @inline(__always) func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: Set<Int>] = [:]
        for (w, symbols) in words.enumerated() where symbols.count > 1 {
            for j in 0..<symbols.count - 1 {
                let p = key(symbols[j], symbols[j + 1])
                pairCounts[p, default: 0] += counts[w]
                pairWords[p, default: []].insert(w)
            }
        }
        var heap = PairHeap()
        for (p, c) in pairCounts { heap.push(count: c, pair: p) }

        while tokenBytes.count < vocabSize, let top = heap.pop() {
            let current = pairCounts[top.pair] ?? 0
            if current != top.count {
                // Stale entry (counts only fall for existing pairs): requeue at its true count.
                if current > 0 { heap.push(count: current, pair: top.pair) }
                continue
            }
            if current < minFrequency { break }
            let a = Int32(truncatingIfNeeded: top.pair >> 32), b = Int32(truncatingIfNeeded: top.pair)
            let merged = tokenBytes[Int(a)] + tokenBytes[Int(b)]
            let newId: Int32
            if let existing = idForBytes[merged] {
                newId = existing  // (ab)c and a(bc) spell the same token: reuse its id
            } else {
                newId = Int32(tokenBytes.count)
                tokenBytes.append(merged)
                idForBytes[merged] = newId
            }
            merges.append((a, b))

            var touched: Set<UInt64> = []
            for w in (pairWords[top.pair] ?? []).sorted() {
                let old = words[w]
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var j = 0
                var changed = false
                while j < old.count {
                    if j + 1 < old.count, old[j] == a, old[j + 1] == b {
                        new.append(newId); j += 2; changed = true
                    } else {
                        new.append(old[j]); j += 1
                    }
                }
                guard changed else { continue }
                let c = counts[w]
                for j in 0..<old.count - 1 { pairCounts[key(old[j], old[j + 1])]! -= c }
                for j in 0..<max(new.count - 1, 0) {
                    let p = key(new[j], new[j + 1])
                    pairCounts[p, default: 0] += c
                    if new[j] == newId || new[j + 1] == newId {
                        pairWords[p, default: []].insert(w)
                        touched.insert(p)
                    }
                }
                words[w] = new
            }
            pairCounts[top.pair] = nil
            pairWords[top.pair] = nil
            for p in touched.sorted() {
                if let c = pairCounts[p], c > 0 { heap.push(count: c, pair: p) }
            }
        }

        return try Tokenizer(document: document(tokenBytes: tokenBytes, merges: merges))
    }

    /// Pre-tokenizes like the trained tokenizer will (specials cut out, NFC, Qwen2 split) and
    /// counts each word's raw bytes.
    private func countWords(_ texts: [String]) -> [ArraySlice<UInt8>: Int] {
        let specials = AddedTokenMatcher(specialTokens.enumerated().map { i, s in
            (Array(s.utf8), AddedToken(id: i, content: s, special: true))
        })
        var counts: [ArraySlice<UInt8>: Int] = [:]
        for text in texts {
            let bytes = Array(text.utf8)
            for case let .text(range) in specials.split(bytes, 0..<bytes.count) {
                let piece = Normalizer.nfc.apply(Array(bytes[range]))
                piece.withUnsafeBufferPointer { p in
                    for r in splitPieces(p, 0..<p.count, pattern: .qwen2, behavior: .isolated, invert: false) {
                        counts[ArraySlice(Array(piece[r])), default: 0] += 1
                    }
                }
            }
        }
        return counts
    }

    /// The tokenizer.json document for the trained vocabulary, in HF's layout.
    private func document(tokenBytes: [[UInt8]], merges: [(Int32, Int32)]) -> JSONValue {
        let alphabet = ByteLevelAlphabet()
        let k = specialTokens.count
        func spelling(_ id: Int) -> String {
            id < k ? specialTokens[id] : alphabet.encode(tokenBytes[id])
        }
        let byteLevel: JSONValue = .object([
            ("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)),
            ("trim_offsets", .bool(false)), ("use_regex", .bool(false)),
        ])
        let vocab: JSONValue = .object(tokenBytes.indices.map { (spelling($0), .number(String($0))) })
        let mergeList: JSONValue = .array(merges.map { .array([.string(spelling(Int($0.0))), .string(spelling(Int($0.1)))]) })
        return .object([
            ("version", .string("1.0")),
            ("truncation", .null),
            ("padding", .null),
            ("added_tokens", .array(specialTokens.enumerated().map { AddedToken(id: $0, content: $1, special: true).json })),
            ("normalizer", .object([("type", .string("NFC"))])),
            ("pre_tokenizer", .object([
                ("type", .string("Sequence")),
                ("pretokenizers", .array([
                    .object([
                        ("type", .string("Split")),
                        ("pattern", .object([("Regex", .string(KnownPattern.qwen2))])),
                        ("behavior", .string("Isolated")),
                        ("invert", .bool(false)),
                    ]),
                    byteLevel,
                ])),
            ])),
            ("post_processor", byteLevel),
            ("decoder", byteLevel),
            ("model", .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null),
                ("continuing_subword_prefix", .null), ("end_of_word_suffix", .null),
                ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)), ("ignore_merges", .bool(false)),
                ("vocab", vocab), ("merges", mergeList),
            ])),
        ])
    }
}

/// A max-heap of (count, pair): highest count first, then the smaller pair key.
private struct PairHeap {
    private var items: [(count: Int, pair: UInt64)] = []

    private static func before(_ x: (count: Int, pair: UInt64), _ y: (count: Int, pair: UInt64)) -> Bool {
        x.count != y.count ? x.count > y.count : x.pair < y.pair
    }

    mutating func push(count: Int, pair: UInt64) {
        items.append((count, pair))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !Self.before(items[i], items[parent]) { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> (count: Int, pair: UInt64)? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, Self.before(items[l], items[m]) { m = l }
            if r < items.count, Self.before(items[r], items[m]) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return first
    }
}
