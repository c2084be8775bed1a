import ChorusCore
import Foundation

/// A Hugging Face `tokenizer.json` byte-level BPE tokenizer (GPT-2, Qwen2/Qwen3, Llama-3 style)
/// that encodes and decodes exactly as the Python `tokenizers` library does.
///
/// Pipeline (HF `TokenizerImpl::encode`): added tokens that are not `normalized` are split out
/// of the raw text -> each remaining piece is normalized -> `normalized` added tokens are split
/// out -> pre-tokenizer (Split / ByteLevel) -> BPE model -> post-processor.
///
/// Supported: model `BPE` (both merges formats, `ignore_merges`, `unk_token`/`fuse_unk`);
/// normalizers `NFC`, `NFD`, `NFKC`, `NFKD`, `Sequence`, null; pre-tokenizers `ByteLevel`
/// (which must come last), `Split` (any behaviour, `invert`; regex or literal pattern) and
/// `Sequence`; post-processors `ByteLevel`, `TemplateProcessing` (single sequence) and
/// `Sequence`; decoders `ByteLevel` and null. Every other component or option is refused with
/// a `TokenizerError` naming it.
///
/// Thread safety: `encode`, `decode` and the lookups may run concurrently; `addSpecialTokens`
/// must not run concurrently with any other call.
public final class Tokenizer: @unchecked Sendable {
    /// The document as loaded (or built by the trainer), kept so `write(to:)` preserves every
    /// field it does not change.
    private var document: JSONValue
    private let alphabet = ByteLevelAlphabet()
    private let model: BPEModel
    private let normalizer: Normalizer?
    private let steps: [PreTokenizerStep]
    private let postProcessor: PostProcessor
    private let decoder: DecoderKind

    private var addedTokens: [AddedToken] = []
    private var addedIndexById: [Int: Int] = [:]
    private var addedIndexByContent: [String: Int] = [:]
    /// Tokens matched in the raw text (`normalized: false`) and in normalized text.
    private var rawMatcher = AddedTokenMatcher([])
    private var normalizedMatcher = AddedTokenMatcher([])

    /// Loads a tokenizer.json file; errors name the file when it cannot be read.
    public convenience init(contentsOf url: URL) throws(TokenizerError) {
        let data: Data
        do {
            data = try InputFile.read(url.path)
        } catch {
            throw TokenizerError.unreadableFile(path: url.path, reason: (error as? InputFileError)?.problem ?? Self.shortReason(error))
        }
        do {
            try self.init(data: data)
        } catch {
            throw .inFile(path: url.path, error)
        }
    }

    /// Parses tokenizer.json bytes.
    public convenience init(data: Data) throws(TokenizerError) {
        try self.init(document: try JSONParser.parse(data))
    }

    /// Builds the pipeline from a parsed document, refusing unsupported components by name.
    init(document: JSONValue) throws(TokenizerError) {
        guard document.objectValue != nil else {
            throw .invalidField(field: "(root)", reason: "expected a JSON object")
        }
        self.document = document
        for key in ["truncation", "padding"] where document[key]?.nonNull != nil {
            throw .unsupportedOption(field: "(root)", option: key, reason: "only null is supported")
        }
        guard let modelJSON = document["model"] else { throw .missingField(field: "model") }
        model = try BPEModel(json: modelJSON, alphabet: alphabet)
        normalizer = try Normalizer.parse(document["normalizer"], field: "normalizer")

        var steps: [PreTokenizerStep] = []
        if let pre = document["pre_tokenizer"]?.nonNull {
            try PreTokenizerStep.parse(pre, field: "pre_tokenizer", into: &steps)
        }
        // The model's alphabet is bytes: ByteLevel must produce them, and nothing may run after
        // it (a later step would see byte-level characters, which no supported file does).
        let byteLevelSteps = steps.indices.filter { if case .byteLevel = steps[$0] { return true } else { return false } }
        guard byteLevelSteps == [steps.count - 1] else {
            throw .unsupportedOption(field: "pre_tokenizer", option: "ByteLevel",
                                     reason: "exactly one ByteLevel pre-tokenizer, last in the sequence, is required for byte-level BPE")
        }
        self.steps = steps
        postProcessor = try PostProcessor.parse(document["post_processor"], field: "post_processor")
        decoder = try DecoderKind.parse(document["decoder"], field: "decoder")

        if let list = document["added_tokens"]?.nonNull {
            guard let items = list.arrayValue else { throw .invalidField(field: "added_tokens", reason: "expected an array") }
            for (k, item) in items.enumerated() {
                let token = try AddedToken(json: item, field: "added_tokens[\(k)]")
                if addedIndexByContent[token.content] != nil { continue }  // HF keeps the first
                try Self.checkAddedTokenId(token, field: "added_tokens[\(k)]", model: model,
                                           other: addedIndexById[token.id].map { addedTokens[$0].content })
                addedIndexById[token.id] = addedTokens.count
                addedIndexByContent[token.content] = addedTokens.count
                addedTokens.append(token)
            }
        }
        rebuildMatchers()
    }

    /// HF tokenizers does not take an added token's id from the file: it gives the token the
    /// vocabulary id of its content, or a new id past the vocabulary (and warns). An entry whose
    /// id is another token's would therefore encode differently here and in HF: refused.
    private static func checkAddedTokenId(_ token: AddedToken, field: String, model: BPEModel, other: String?) throws(TokenizerError) {
        let id = token.id
        if id < model.tokens.count, let existing = model.tokens[id], existing != token.content {
            throw .invalidField(field: field + ".id", reason: "id \(id) of added token '\(token.content)' is the vocabulary's '\(existing)'; Hugging Face would give the token another id")
        }
        if let vocabId = model.vocab[token.content], vocabId != id {
            throw .invalidField(field: field + ".id", reason: "added token '\(token.content)' has id \(id) but is vocabulary id \(vocabId); Hugging Face uses \(vocabId)")
        }
        if let other, other != token.content {
            throw .invalidField(field: field + ".id", reason: "id \(id) of added token '\(token.content)' is also the added token '\(other)'")
        }
    }

    private static func shortReason(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription ?? ns.localizedDescription
    }

    /// HF matches special tokens before normal ones only through this split: non-normalized
    /// tokens are matched in the raw text, normalized ones in normalized text (their content
    /// normalized the same way).
    private func rebuildMatchers() {
        var raw: [([UInt8], AddedToken)] = []
        var norm: [([UInt8], AddedToken)] = []
        // HF orders special tokens before the other added tokens when building its automata.
        let ordered = addedTokens.filter { $0.special } + addedTokens.filter { !$0.special }
        for t in ordered {
            if t.normalized {
                let bytes = Array(t.content.utf8)
                norm.append((normalizer?.apply(bytes) ?? bytes, t))
            } else {
                raw.append((Array(t.content.utf8), t))
            }
        }
        rawMatcher = AddedTokenMatcher(raw)
        normalizedMatcher = AddedTokenMatcher(norm)
    }

    // MARK: Vocabulary

    /// One more than the largest id, counting added tokens: the embedding rows a model needs.
    /// (Equals HF's `get_vocab_size(with_added_tokens=True)` when ids are contiguous.)
    public var vocabSize: Int {
        max(model.tokens.count, (addedTokens.map(\.id).max() ?? -1) + 1)
    }

    /// The id of `token` (an added token or a vocabulary entry, in byte-level spelling).
    public func tokenToId(_ token: String) -> Int? {
        if let k = addedIndexByContent[token] { return addedTokens[k].id }
        return model.vocab[token]
    }

    /// The token string for `id` (added token content, or the byte-level vocabulary entry).
    public func idToToken(_ id: Int) -> String? {
        if let k = addedIndexById[id] { return addedTokens[k].content }
        guard id >= 0, id < model.tokens.count else { return nil }
        return model.tokens[id]
    }

    /// The ids of the special added tokens (e.g. `<|endoftext|>`), sorted.
    public var specialTokenIds: [Int] {
        addedTokens.filter(\.special).map(\.id).sorted()
    }

    /// The added tokens (tokenizer.json `added_tokens`, plus any added since loading), by id.
    public var addedTokenEntries: [AddedTokenEntry] {
        addedTokens.map { AddedTokenEntry(id: $0.id, content: $0.content, special: $0.special) }.sorted { $0.id < $1.id }
    }

    // MARK: Encoding

    /// Encodes `text` like HF `Tokenizer.encode(text).ids` with `add_special_tokens=True`:
    /// special tokens written in the text are recognised, and the post-processor's template
    /// (e.g. Llama-3's `<|begin_of_text|>`) is applied. No BOS/EOS is added otherwise.
    public func encode(_ text: String) -> [Int] {
        encode(text, addSpecialTokens: true)
    }

    /// Encodes `text`; with `addSpecialTokens` false the post-processor's template (BOS/EOS of
    /// `TemplateProcessing`) is left out, as HF's `encode(text, add_special_tokens=False)`.
    /// Special tokens written in the text are still recognised.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var out: [Int] = []
        encodeText(Array(text.utf8), addSpecialTokens: addSpecialTokens, into: &out)
        return out
    }

    /// Encodes raw bytes so that the tokens spell exactly those bytes (what aligns another
    /// tokenizer's tokens to these by byte offsets): the normalizer is not applied (NFC text,
    /// the common case, is unchanged by an NFC normalizer anyway), nor the post-processor's
    /// template; the bytes need not be valid UTF-8 (a response cut inside a character): each
    /// maximal valid stretch is encoded as text, and each byte of an invalid stretch as its
    /// own byte-level token. Returns nil when such a byte has no single-byte token.
    public func encode(bytes: [UInt8]) -> [Int]? {
        var out: [Int] = []
        var start = 0, i = 0
        var it = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        while true {
            switch parser.parseScalar(from: &it) {
            case let .valid(s):
                i += s.count
            case let .error(length):
                if start < i { encodeText(Array(bytes[start..<i]), addSpecialTokens: false, normalize: false, into: &out) }
                for b in bytes[i..<(i + length)] {
                    guard let id = model.vocab[alphabet.encode(CollectionOfOne(b))] else { return nil }
                    out.append(id)
                }
                i += length
                start = i
            case .emptyInput:
                if start < i { encodeText(Array(bytes[start..<i]), addSpecialTokens: false, normalize: false, into: &out) }
                return out
            }
        }
    }

    /// The bytes each token id contributes to a decode (`decode` concatenates them), as one
    /// flat table: what aligns two tokenizations of one text by byte offsets. Nil unless the
    /// decoder is ByteLevel (a decoder that joins tokens with spaces has no such spans).
    public func byteTable() -> TokenByteTable? {
        guard case .byteLevel = decoder else { return nil }
        var bytes: [UInt8] = [], offsets: [Int] = [0], special: [Bool] = []
        let n = vocabSize
        offsets.reserveCapacity(n + 1)
        special.reserveCapacity(n)
        for id in 0..<n {
            if let k = addedIndexById[id] {
                bytes += Array(addedTokens[k].content.utf8)
                special.append(addedTokens[k].special)
            } else if id < model.tokens.count, let t = model.tokens[id] {
                bytes += alphabet.decode(t) ?? Array(t.utf8)
                special.append(false)
            } else {
                special.append(false)
            }
            offsets.append(bytes.count)
        }
        return TokenByteTable(bytes: bytes, offsets: offsets, special: special, known: (0..<n).map { idToToken($0) != nil })
    }

    /// The encoding pipeline over UTF-8 bytes, appending to `out`.
    private func encodeText(_ bytes: [UInt8], addSpecialTokens: Bool, normalize: Bool = true, into out: inout [Int]) {
        if addSpecialTokens { out += postProcessor.prefix }
        for segment in rawMatcher.split(bytes, 0..<bytes.count) {
            switch segment {
            case let .token(id): out.append(id)
            case let .text(range):
                var piece = Array(bytes[range])
                if normalize, let normalizer { piece = normalizer.apply(piece) }
                for inner in normalizedMatcher.split(piece, 0..<piece.count) {
                    switch inner {
                    case let .token(id): out.append(id)
                    case let .text(r): preTokenize(piece, r, step: 0, into: &out)
                    }
                }
            }
        }
        if addSpecialTokens { out += postProcessor.suffix }
    }

    /// Runs pre-tokenizer step `step` on `text[range]` and the model on the resulting words.
    private func preTokenize(_ text: [UInt8], _ range: Range<Int>, step: Int, into out: inout [Int]) {
        switch steps[step] {
        case let .split(pattern, behavior, invert):
            let pieces = text.withUnsafeBufferPointer {
                splitPieces($0, range, pattern: pattern, behavior: behavior, invert: invert)
            }
            for p in pieces { preTokenize(text, p, step: step + 1, into: &out) }
        case let .byteLevel(addPrefixSpace, useRegex):
            if range.isEmpty { return }
            if addPrefixSpace, text[range.lowerBound] != 0x20 {
                let spaced = [0x20] + text[range]
                byteLevelWords(spaced, 0..<spaced.count, useRegex: useRegex, into: &out)
            } else {
                byteLevelWords(text, range, useRegex: useRegex, into: &out)
            }
        }
    }

    private func byteLevelWords(_ text: [UInt8], _ range: Range<Int>, useRegex: Bool, into out: inout [Int]) {
        guard useRegex else {
            model.tokenize(text[range], into: &out)
            return
        }
        // ByteLevel's regex split is Isolated: matches and the gaps between them are words.
        var prev = range.lowerBound
        text.withUnsafeBufferPointer { p in
            SplitPattern.gpt2.forEachMatch(in: p, range) { m in
                if prev < m.lowerBound { model.tokenize(text[prev..<m.lowerBound], into: &out) }
                model.tokenize(text[m], into: &out)
                prev = m.upperBound
            }
        }
        if prev < range.upperBound { model.tokenize(text[prev..<range.upperBound], into: &out) }
    }

    // MARK: Decoding

    /// Decodes ids like HF `Tokenizer.decode(ids, skip_special_tokens=...)`: the tokens' bytes
    /// are concatenated and read as UTF-8, invalid sequences becoming U+FFFD. Unlike HF (which
    /// drops them silently), an id that names no token is an error.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if let k = addedIndexById[id] {
                if skipSpecialTokens, addedTokens[k].special { continue }
                tokens.append(addedTokens[k].content)
            } else if id >= 0, id < model.tokens.count, let t = model.tokens[id] {
                tokens.append(t)
            } else {
                throw .unknownId(id)
            }
        }
        switch decoder {
        case .none:
            return tokens.joined(separator: " ")
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                // A token outside the byte alphabet (e.g. an added "a b") contributes its UTF-8.
                bytes += alphabet.decode(t) ?? Array(t.utf8)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    // MARK: Special tokens

    /// Adds special tokens (e.g. `<|teacher-0|>`), matched in text from now on and never split.
    /// A new token gets the next id after the current largest; a token that already exists
    /// keeps its id (a plain vocabulary entry becomes a special added token with its id).
    /// Returns the ids in the order given. Throws for an empty token string.
    @discardableResult
    public func addSpecialTokens(_ tokens: [String]) throws(TokenizerError) -> [Int] {
        var ids: [Int] = []
        for content in tokens {
            guard !content.isEmpty else {
                throw .invalidField(field: "added_tokens", reason: "a special token cannot be empty")
            }
            if let k = addedIndexByContent[content] {
                ids.append(addedTokens[k].id)
                continue
            }
            let id = model.vocab[content] ?? vocabSize
            let token = AddedToken(id: id, content: content, special: true)
            addedIndexById[id] = addedTokens.count
            addedIndexByContent[content] = addedTokens.count
            addedTokens.append(token)
            ids.append(id)
        }
        document.set("added_tokens", .array(addedTokens.map(\.json)))
        rebuildMatchers()
        return ids
    }

    // MARK: Writing

    /// The tokenizer.json text (HF's pretty layout), including tokens added since loading.
    public func jsonString() -> String {
        document.serialized()
    }

    /// Writes tokenizer.json to `url`, loadable by HF `tokenizers` and by `init(contentsOf:)`.
    public func write(to url: URL) throws(TokenizerError) {
        do {
            try Data(jsonString().utf8).write(to: url, options: .atomic)
        } catch {
            throw TokenizerError.unwritableFile(path: url.path, reason: Self.shortReason(error))
        }
    }
}

/// One entry of a tokenizer's added tokens, as `chorus info` lists them.
public struct AddedTokenEntry: Sendable, Equatable {
    /// The token id.
    public let id: Int
    /// The token text, e.g. `<|im_end|>`.
    public let content: String
    /// Whether it is a special token (skipped by `decode(_:skipSpecialTokens: true)`).
    public let special: Bool
    public init(id: Int, content: String, special: Bool) {
        self.id = id
        self.content = content
        self.special = special
    }
}

/// The bytes of every token id of a byte-level tokenizer, flat: token `id` decodes to
/// `bytes[offsets[id] ..< offsets[id + 1]]` (an added token to its UTF-8 content). Built once
/// per tokenizer (`Tokenizer.byteTable()`), so byte spans of a token sequence are lookups.
public struct TokenByteTable: Sendable {
    /// All tokens' bytes, concatenated in id order.
    public let bytes: [UInt8]
    /// (V + 1) offsets into `bytes`.
    public let offsets: [Int]
    /// Whether id is a special added token (V).
    public let special: [Bool]
    /// Whether id names a token at all (V).
    public let known: [Bool]

    /// Number of ids V.
    public var count: Int { special.count }
    /// Whether `id` is in [0, V) and names a token.
    public func contains(_ id: Int) -> Bool { id >= 0 && id < count && known[id] }
    /// Byte length of token `id` (which must be `contains(id)`).
    public func length(_ id: Int) -> Int { offsets[id + 1] - offsets[id] }
    /// The bytes of token `id`.
    public func span(_ id: Int) -> ArraySlice<UInt8> { bytes[offsets[id]..<offsets[id + 1]] }
}
