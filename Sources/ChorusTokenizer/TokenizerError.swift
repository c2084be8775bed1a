import Foundation

/// Everything that can go wrong while loading, using, training or writing a tokenizer.
///
/// Each case names the file, JSON field or pipeline component at fault, and its
/// `description` is a single line so a command-line tool can print it as is.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read (missing, unreadable); `reason` is the system's message.
    case unreadableFile(path: String, reason: String)
    /// The file could not be written.
    case unwritableFile(path: String, reason: String)
    /// The bytes are not valid JSON; `offset` is the byte offset where parsing failed.
    case malformedJSON(offset: Int, reason: String)
    /// A required field is absent; `field` is a dotted path such as `model.vocab`.
    case missingField(field: String)
    /// A field has the wrong JSON type or an impossible value.
    case invalidField(field: String, reason: String)
    /// A pipeline component (`field` is `normalizer`, `pre_tokenizer`, `model`, `decoder`,
    /// `post_processor`) has a `type` this implementation does not support.
    case unsupportedComponent(field: String, type: String)
    /// A supported component is configured with an option this implementation refuses.
    case unsupportedOption(field: String, option: String, reason: String)
    /// A merge rule names a token (or produces one) that is not in `model.vocab`.
    case mergeTokenNotInVocab(merge: String, token: String)
    /// `decode` was given an id that is neither in the vocabulary nor an added token.
    case unknownId(Int)
    /// The trainer was asked for something it cannot produce.
    case invalidTrainingRequest(reason: String)
    /// Any of the above, raised while loading the file at `path`.
    indirect case inFile(path: String, TokenizerError)

    /// One line naming the file, field or component and what is wrong with it.
    public var description: String {
        let text: String
        switch self {
        case let .unreadableFile(path, reason): text = "cannot read tokenizer file '\(path)': \(reason)"
        case let .unwritableFile(path, reason): text = "cannot write tokenizer file '\(path)': \(reason)"
        case let .malformedJSON(offset, reason): text = "tokenizer.json is not valid JSON at byte \(offset): \(reason)"
        case let .missingField(field): text = "tokenizer.json: missing field '\(field)'"
        case let .invalidField(field, reason): text = "tokenizer.json: invalid field '\(field)': \(reason)"
        case let .unsupportedComponent(field, type): text = "tokenizer.json: unsupported \(field) type '\(type)'"
        case let .unsupportedOption(field, option, reason):
            text = "tokenizer.json: unsupported option '\(option)' in \(field): \(reason)"
        case let .mergeTokenNotInVocab(merge, token):
            text = "tokenizer.json: merge '\(merge)' uses token '\(token)' that is not in model.vocab"
        case let .unknownId(id): text = "token id \(id) is not in the vocabulary"
        case let .invalidTrainingRequest(reason): text = "tokenizer training: \(reason)"
        case let .inFile(path, error): text = "\(path): \(error.description)"
        }
        // Messages embed user strings (paths, tokens); keep the promise of one line.
        return text.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\r", with: "\\r")
    }
}
