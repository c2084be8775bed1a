import ChorusModel
import Foundation

/// The id -> token table of a tokenizer.json (model vocabulary plus added tokens), read
/// directly from the JSON so the check does not depend on the tokenizer pipeline.
public struct TokenVocabulary: Sendable, Equatable {
    /// The file it was read from.
    public let file: String
    /// tokens[id], nil for ids with no token.
    public let tokens: [String?]

    public init(file: String, tokens: [String?]) {
        self.file = file
        self.tokens = tokens
    }

    /// Reads `model.vocab` (a {token: id} object, or a list of [token, score] pairs) and
    /// `added_tokens` ([{id, content}]) of a tokenizer.json.
    public init(contentsOf url: URL) throws {
        file = url.path
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw VocabularyError.unreadable(file: url.path, reason: "file not found or unreadable")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw VocabularyError.unreadable(file: url.path, reason: "not a JSON object")
        }
        var pairs: [(Int, String)] = []
        if let model = obj["model"] as? [String: Any] {
            if let v = model["vocab"] as? [String: Any] {
                for (tok, idv) in v {
                    guard let id = (idv as? NSNumber)?.intValue else { throw VocabularyError.unreadable(file: url.path, reason: "model.vocab['\(tok)'] is not an id") }
                    pairs.append((id, tok))
                }
            } else if let v = model["vocab"] as? [Any] {
                for (id, e) in v.enumerated() {
                    guard let pair = e as? [Any], let tok = pair.first as? String else {
                        throw VocabularyError.unreadable(file: url.path, reason: "model.vocab[\(id)] is not a [token, score] pair")
                    }
                    pairs.append((id, tok))
                }
            } else {
                throw VocabularyError.unreadable(file: url.path, reason: "no model.vocab")
            }
        } else {
            throw VocabularyError.unreadable(file: url.path, reason: "no 'model' object")
        }
        for a in (obj["added_tokens"] as? [[String: Any]]) ?? [] {
            guard let id = (a["id"] as? NSNumber)?.intValue, let tok = a["content"] as? String else {
                throw VocabularyError.unreadable(file: url.path, reason: "an added_tokens entry lacks id or content")
            }
            pairs.append((id, tok))
        }
        let n = (pairs.map(\.0).max() ?? -1) + 1
        var t = [String?](repeating: nil, count: n)
        for (id, tok) in pairs where id >= 0 { t[id] = tok }
        tokens = t
    }

    /// Ids of control tokens `<|teacher-N|>`.
    public var controlTokenIds: [Int] { tokens.indices.filter { tokens[$0].map(isControlTokenName) ?? false } }

    /// The id of a token, if present.
    public func id(of token: String) -> Int? { tokens.firstIndex(of: token) }
}

/// Errors from the pool's vocabulary check.
public enum VocabularyError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case tokenMismatch(id: Int, token: String?, file: String, otherToken: String?, otherFile: String)
    case sizeMismatch(file: String, vocabSize: Int, otherFile: String, otherVocabSize: Int)
    case missingTokenizer(file: String, otherFile: String)

    public var description: String {
        func show(_ t: String?) -> String { t.map { "'\($0)'" } ?? "(no token)" }
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read tokenizer: \(r)"
        case let .tokenMismatch(id, a, fa, b, fb):
            return "vocabulary mismatch at token id \(id): \(show(a)) in \(fa) but \(show(b)) in \(fb)"
        case let .sizeMismatch(fa, a, fb, b):
            return "vocabulary mismatch: vocab_size \(a) in \(fa) but \(b) in \(fb)"
        case let .missingTokenizer(f, other):
            return "cannot check the vocabulary: \(f) is missing but \(other) exists"
        }
    }
}

/// The shared-vocabulary rule of a pool: every teacher and the student must give the same
/// id to the same token, and the teachers must have one config vocab_size V.
///
/// Control tokens `<|teacher-N|>` are ignored on both sides (the student adds them), and the
/// student's vocab_size may exceed V by rows holding control tokens only. When no model has
/// a tokenizer.json only vocab_size is compared; when some have one, all must.
public enum VocabularyCheck {
    /// A model directory to check: its config.json vocab_size and tokenizer.json (if any).
    public struct Member {
        public var directory: URL
        public var vocabSize: Int
        public var isStudent: Bool
        /// The tokenizer file when it is not `directory/tokenizer.json` (a remote teacher's).
        public var tokenizerFile: URL?
        public init(directory: URL, vocabSize: Int, isStudent: Bool, tokenizerFile: URL? = nil) {
            self.directory = directory
            self.vocabSize = vocabSize
            self.isStudent = isStudent
            self.tokenizerFile = tokenizerFile
        }
        var config: String { directory.appendingPathComponent("config.json").path }
        var tokenizer: URL { tokenizerFile ?? directory.appendingPathComponent("tokenizer.json") }
    }

    /// Throws `VocabularyError` naming the first differing token (lowest id) and the files.
    /// Returns the vocabularies it read, keyed by the standardized path of their tokenizer.json,
    /// so the caller need not parse a file again (each file is read once).
    @discardableResult
    public static func check(_ members: [Member]) throws -> [String: TokenVocabulary] {
        var seen = Set<String>()
        let ms = members.filter { seen.insert($0.tokenizer.standardizedFileURL.path).inserted }
        guard let first = ms.first else { return [:] }
        let fm = FileManager.default
        let have = ms.filter { fm.fileExists(atPath: $0.tokenizer.path) }
        if !have.isEmpty, let lacking = ms.first(where: { !fm.fileExists(atPath: $0.tokenizer.path) }) {
            throw VocabularyError.missingTokenizer(file: lacking.tokenizer.path, otherFile: have[0].tokenizer.path)
        }
        let vocabs = try have.map { try TokenVocabulary(contentsOf: $0.tokenizer) }
        // Tokens must agree id by id.
        if let ref = vocabs.first {
            for other in vocabs.dropFirst() { try compare(ref, other) }
        }
        // Teachers share one V; the student may add control-token rows beyond it.
        let teachers = ms.filter { !$0.isStudent }
        let ref = teachers.first ?? first
        let vocabOf = Dictionary(zip(have.map(\.directory.path), vocabs), uniquingKeysWith: { a, _ in a })
        for m in ms where m.vocabSize != ref.vocabSize {
            if m.isStudent, m.vocabSize > ref.vocabSize, let v = vocabOf[m.directory.path],
               (ref.vocabSize..<m.vocabSize).allSatisfy({ $0 < v.tokens.count && (v.tokens[$0].map(isControlTokenName) ?? false) }) {
                continue
            }
            throw VocabularyError.sizeMismatch(file: ref.config, vocabSize: ref.vocabSize, otherFile: m.config, otherVocabSize: m.vocabSize)
        }
        return Dictionary(zip(have.map(\.tokenizer.standardizedFileURL.path), vocabs), uniquingKeysWith: { a, _ in a })
    }

    /// Compares two vocabularies id by id, skipping control tokens.
    public static func compare(_ a: TokenVocabulary, _ b: TokenVocabulary) throws {
        for id in 0..<max(a.tokens.count, b.tokens.count) {
            let ta = id < a.tokens.count ? a.tokens[id] : nil
            let tb = id < b.tokens.count ? b.tokens[id] : nil
            if ta == tb { continue }
            if (ta.map(isControlTokenName) ?? true) && (tb.map(isControlTokenName) ?? true) { continue }
            throw VocabularyError.tokenMismatch(id: id, token: ta, file: a.file, otherToken: tb, otherFile: b.file)
        }
    }
}
