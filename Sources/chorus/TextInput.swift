import ArgumentParser
import ChorusCore
import ChorusTokenizer
import Foundation

/// The input sequence of `chorus sample`, `logprobs` and `score`: token ids (`--tokens`) or
/// text (`--text`, `--text-file`) that the model's tokenizer.json encodes. Exactly one is given.
struct SequenceInput: ParsableArguments {
    @Option(help: "Comma-separated token ids, e.g. 5,17,3.")
    var tokens: String?

    @Option(help: "Text, encoded with the model's tokenizer.json (special tokens written in it, e.g. <|im_start|>, are recognised).")
    var text: String?

    @Option(name: .customLong("text-file"), help: "A UTF-8 text file (at most 16 MiB), encoded like --text; read as is, a final newline included.")
    var textFile: String?

    /// The largest --text-file read (a prompt, not a corpus: anything larger is a mistake).
    static let maxTextFileBytes = 16 << 20

    func validate() throws {
        let given = [tokens != nil, text != nil, textFile != nil].filter { $0 }.count
        if given != 1 {
            throw ValidationError(given == 0 ? "give the sequence with --tokens, --text or --text-file"
                                             : "give only one of --tokens, --text and --text-file")
        }
    }

    /// Whether the sequence is text (then the output gains text fields).
    var isText: Bool { tokens == nil }

    /// The text of --text or --text-file; an empty text is an error naming where it came from.
    func readText() throws -> String {
        if let text {
            if text.isEmpty { throw CLIError("--text is empty; give the text to encode") }
            return text
        }
        guard let path = textFile else { throw CLIError("no --text or --text-file given") }
        let data = try InputFile.read(path, limit: Self.maxTextFileBytes)
        let s = try UTF8Text.decode(data, source: path)
        if s.isEmpty { throw CLIError("--text-file \(path) is empty; give a file holding the text to encode") }
        return s
    }

    /// The token ids: parsed from --tokens, or the text encoded with `tokenizer()` (called only
    /// for text, so --tokens never needs a tokenizer.json). Returns the tokenizer when used.
    func resolve(tokenizer: () throws -> Tokenizer) throws -> (ids: [Int], tokenizer: Tokenizer?) {
        if let tokens { return (try parseTokenList(tokens), nil) }
        let text = try readText()
        let tok = try tokenizer()
        let ids = tok.encode(text)
        if ids.isEmpty { throw CLIError("\(textFile.map { "--text-file \($0)" } ?? "--text") encodes to no tokens") }
        return (ids, tok)
    }
}

/// Text fields of the JSON output of a text-mode command.
enum TextOutput {
    /// The text of `ids` as HF `decode` gives it (special tokens kept). Ids with no token (the
    /// padding rows some checkpoints have past the tokenizer's ids) are left out.
    static func text(_ ids: [Int], _ tok: Tokenizer) -> String {
        (try? tok.decode(ids.filter { tok.idToToken($0) != nil })) ?? ""
    }

    /// Per id, the decoded text of that token alone (a token holding part of a multi-byte
    /// character shows U+FFFD, as HF `decode([id])` does); null for an id with no token.
    static func tokenStrings(_ ids: [Int], _ tok: Tokenizer) -> String {
        JSONText.array(ids.map { id in (try? tok.decode([id])).map(JSONText.string) ?? "null" })
    }
}
