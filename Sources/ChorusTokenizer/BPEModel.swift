import Foundation

/// A byte-level BPE model (HF `models.BPE` behind a ByteLevel pre-tokenizer): vocabulary,
/// merge ranks, and the merge loop with a per-word cache.
final class BPEModel: @unchecked Sendable {
    /// Token string -> id, as in `model.vocab`.
    let vocab: [String: Int]
    /// id -> token string, nil for ids the model does not define.
    let tokens: [String?]
    /// Merge table: key `left << 32 | right` (token ids), value `rank << 32 | mergedId`.
    let merges: [UInt64: UInt64]
    /// Id of the single-byte token for each byte, -1 where the vocabulary lacks it.
    let byteIds: [Int32]
    /// `unk_token`'s id, if set and in the vocabulary.
    let unkId: Int?
    let fuseUnk: Bool
    /// `ignore_merges`: a word that is itself a vocabulary entry is emitted whole; the map is
    /// keyed by the raw bytes of every vocabulary entry (nil when the option is off).
    let wholeWordIds: [ArraySlice<UInt8>: Int]?

    /// Caches the ids of recently seen words. Bounded: once full, new words are not cached
    /// (HF does the same), so memory stays fixed however much text is encoded.
    private var cache: [WordKey: [Int32]] = [:]
    private let cacheCapacity = 100_000
    private let cacheLock = NSLock()

    /// Parses `model` (type `BPE`) using `alphabet` to map bytes to vocabulary strings.
    init(json: JSONValue, alphabet: ByteLevelAlphabet) throws(TokenizerError) {
        let f = "model"
        if let type = json["type"]?.stringValue, type != "BPE" {
            throw .unsupportedComponent(field: f, type: type)
        }
        if json["type"] == nil, json["merges"] == nil {
            // Untyped models are BPE only if they have merges; anything else is a guess.
            throw .missingField(field: f + ".type")
        }
        if let dropout = json["dropout"]?.nonNull {
            // Dropout makes encoding random; 0 is the same as none.
            guard case let .number(d) = dropout, Double(d) == 0 else {
                throw .unsupportedOption(field: f, option: "dropout", reason: "BPE dropout is random; only null or 0 is supported")
            }
        }
        if try optionalBool(json, "byte_fallback", field: f) == true {
            throw .unsupportedOption(field: f, option: "byte_fallback", reason: "byte fallback is not supported")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = json[key]?.nonNull {
                guard let s = v.stringValue else { throw .invalidField(field: "\(f).\(key)", reason: "expected a string") }
                if !s.isEmpty { throw .unsupportedOption(field: f, option: key, reason: "only null or \"\" is supported") }
            }
        }
        fuseUnk = try optionalBool(json, "fuse_unk", field: f) ?? false
        let ignoreMerges = try optionalBool(json, "ignore_merges", field: f) ?? false

        guard let vocabJSON = json["vocab"] else { throw .missingField(field: f + ".vocab") }
        guard let members = vocabJSON.objectValue else { throw .invalidField(field: f + ".vocab", reason: "expected an object") }
        var vocab = [String: Int](minimumCapacity: members.count)
        var maxId = -1
        for (token, idJSON) in members {
            guard let id = idJSON.intValue, id >= 0, id < Int(Int32.max) else {
                throw .invalidField(field: "\(f).vocab.\(token)", reason: "expected a non-negative integer id")
            }
            vocab[token] = id
            maxId = max(maxId, id)
        }
        // Two tokens with one id would decode by dictionary order (HF inverts its HashMap just
        // as arbitrarily): refused, naming both, in file order so the message is stable.
        var tokens = [String?](repeating: nil, count: maxId + 1)
        for (token, _) in members {
            guard let id = vocab[token], tokens[id] != token else { continue }
            if let other = tokens[id] {
                throw .invalidField(field: "\(f).vocab.\(token)", reason: "id \(id) is also the id of '\(other)'; every token needs its own id")
            }
            tokens[id] = token
        }
        self.vocab = vocab
        self.tokens = tokens

        if let unk = json["unk_token"]?.nonNull {
            guard let s = unk.stringValue else { throw .invalidField(field: f + ".unk_token", reason: "expected a string") }
            unkId = vocab[s]
        } else {
            unkId = nil
        }

        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if let id = vocab[String(Character(alphabet.scalarForByte[b]))] { byteIds[b] = Int32(id) }
        }
        self.byteIds = byteIds

        guard let mergesJSON = json["merges"]?.nonNull?.arrayValue ?? (json["merges"]?.nonNull == nil ? [] : nil) else {
            throw .invalidField(field: f + ".merges", reason: "expected an array")
        }
        var merges = [UInt64: UInt64](minimumCapacity: mergesJSON.count)
        for (rank, m) in mergesJSON.enumerated() {
            let left: String, right: String
            if let s = m.stringValue {
                // Legacy format "a b": exactly two space-separated parts.
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw .invalidField(field: "\(f).merges[\(rank)]", reason: "expected \"left right\", got \"\(s)\"")
                }
                left = String(parts[0]); right = String(parts[1])
            } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                left = a; right = b
            } else {
                throw .invalidField(field: "\(f).merges[\(rank)]", reason: "expected \"a b\" or [\"a\", \"b\"]")
            }
            let name = "\(left) \(right)"
            guard let l = vocab[left] else { throw .mergeTokenNotInVocab(merge: name, token: left) }
            guard let r = vocab[right] else { throw .mergeTokenNotInVocab(merge: name, token: right) }
            guard let n = vocab[left + right] else { throw .mergeTokenNotInVocab(merge: name, token: left + right) }
            // A repeated pair keeps its last rank, as HF's HashMap collect does.
            merges[UInt64(l) << 32 | UInt64(r)] = UInt64(rank) << 32 | UInt64(n)
        }
        self.merges = merges

        if ignoreMerges {
            var whole = [ArraySlice<UInt8>: Int]()
            for (token, id) in vocab {
                if let bytes = alphabet.decode(token) { whole[bytes[...]] = id }
            }
            wholeWordIds = whole
        } else {
            wholeWordIds = nil
        }
    }

    /// Appends the ids of one pre-tokenized word (raw bytes) to `out`.
    func tokenize(_ word: ArraySlice<UInt8>, into out: inout [Int]) {
        if word.isEmpty { return }
        if let whole = wholeWordIds, let id = whole[word] {
            out.append(id)
            return
        }
        if word.count == 1 {
            appendSymbols([byteIds[Int(word.first!)]], into: &out)
            return
        }
        let cacheable = word.count <= 256
        if cacheable {
            cacheLock.lock()
            let hit = cache[WordKey(word)]
            cacheLock.unlock()
            if let hit {
                for id in hit { out.append(Int(id)) }
                return
            }
        }
        let ids = mergeWord(word)
        appendSymbols(ids, into: &out)
        if cacheable {
            cacheLock.lock()
            if cache.count < cacheCapacity { cache[WordKey(ArraySlice(Array(word)))] = ids }
            cacheLock.unlock()
        }
    }

    /// Appends merged symbols, mapping missing byte tokens (-1) to `unk_token` (fused if
    /// `fuse_unk`), or dropping them when there is no unknown token, as HF's BPE does.
    private func appendSymbols(_ ids: [Int32], into out: inout [Int]) {
        var lastWasUnk = false
        for id in ids {
            if id >= 0 {
                out.append(Int(id))
                lastWasUnk = false
            } else if let unk = unkId {
                if !(fuseUnk && lastWasUnk) { out.append(unk) }
                lastWasUnk = true
            }
        }
    }

    /// HF `Word::merge_all`: a min-heap of candidate merges ordered by (rank, position) —
    /// lowest rank first, leftmost on ties — with stale entries skipped when popped.
    func mergeWord(_ word: ArraySlice<UInt8>) -> [Int32] {
        let n = word.count
        var sym = [Int32](repeating: 0, count: n)   // token id per symbol
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for (k, b) in word.enumerated() {
            sym[k] = byteIds[Int(b)]
            prev[k] = Int32(k - 1)
            next[k] = k + 1 < n ? Int32(k + 1) : -1
        }
        var heap = MergeHeap()
        for k in 0..<n - 1 {
            if sym[k] >= 0, sym[k + 1] >= 0, let m = merges[UInt64(UInt32(sym[k])) << 32 | UInt64(UInt32(sym[k + 1]))] {
                heap.push(MergeCandidate(rank: UInt32(m >> 32), pos: Int32(k), newId: Int32(truncatingIfNeeded: m)))
            }
        }
        while let top = heap.pop() {
            let p = Int(top.pos)
            guard alive[p], next[p] >= 0 else { continue }
            let q = Int(next[p])
            // Skip if the pair at p changed since this candidate was pushed.
            guard sym[p] >= 0, sym[q] >= 0,
                  let m = merges[UInt64(UInt32(sym[p])) << 32 | UInt64(UInt32(sym[q]))],
                  Int32(truncatingIfNeeded: m) == top.newId else { continue }
            sym[p] = top.newId
            alive[q] = false
            next[p] = next[q]
            if next[q] >= 0 { prev[Int(next[q])] = Int32(p) }
            if prev[p] >= 0 {
                let l = Int(prev[p])
                if sym[l] >= 0, let m2 = merges[UInt64(UInt32(sym[l])) << 32 | UInt64(UInt32(sym[p]))] {
                    heap.push(MergeCandidate(rank: UInt32(m2 >> 32), pos: Int32(l), newId: Int32(truncatingIfNeeded: m2)))
                }
            }
            if next[p] >= 0 {
                let r = Int(next[p])
                if sym[r] >= 0, let m2 = merges[UInt64(UInt32(sym[p])) << 32 | UInt64(UInt32(sym[r]))] {
                    heap.push(MergeCandidate(rank: UInt32(m2 >> 32), pos: Int32(p), newId: Int32(truncatingIfNeeded: m2)))
                }
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var k = 0
        while k >= 0, k < n {
            out.append(sym[k])
            k = Int(next[k])
        }
        return out
    }
}

/// A word's bytes as a dictionary key, hashed in one call rather than byte by byte.
struct WordKey: Hashable {
    let bytes: ArraySlice<UInt8>
    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    static func == (a: WordKey, b: WordKey) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        if a.bytes.isEmpty { return true }
        return a.bytes.withUnsafeBytes { x in
            b.bytes.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }
}

/// A pending merge of the symbol at `pos` with its right neighbour.
struct MergeCandidate {
    var rank: UInt32
    var pos: Int32
    var newId: Int32
    /// Heap order: lower rank first, then leftmost position.
    @inline(__always) var key: UInt64 { UInt64(rank) << 32 | UInt64(UInt32(pos)) }
}

/// A binary min-heap of merge candidates keyed by (rank, position).
struct MergeHeap {
    private var items: [MergeCandidate] = []

    mutating func push(_ c: MergeCandidate) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].key <= items[i].key { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var i = 0
        let n = items.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n, items[l].key < items[m].key { m = l }
            if r < n, items[r].key < items[m].key { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return first
    }
}
