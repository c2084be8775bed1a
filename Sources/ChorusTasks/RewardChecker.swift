import ChorusTokenizer
import Foundation

/// Scores one sampled completion of a problem. The evaluator decodes the completion (cut at the
/// first EOS) and asks the checker; a task with its own notion of correct (a number parsed out
/// of a longer answer, a unit test, a regular expression) is a new conforming type.
public protocol RewardChecker: Sendable {
    /// A short name for messages ("exact-match").
    var name: String { get }
    /// The problem fields the checker reads; a problem lacking one is refused before any
    /// sampling, naming the file, line and field.
    var requiredFields: [String] { get }
    /// The reward in [0, 1] of `completion` (decoded text, EOS and what follows removed) for
    /// `problem`. A sample counts as correct for best@k when its reward is 1.
    func reward(completion: String, problem: PromptRecord) -> Double
}

/// Reward 1 when the completion, trimmed of surrounding whitespace (newlines included), equals
/// the trimmed `answer`; 0 otherwise. Case and inner whitespace matter.
public struct ExactMatch: RewardChecker {
    public init() {}
    public var name: String { "exact-match" }
    public var requiredFields: [String] { ["answer"] }
    public func reward(completion: String, problem: PromptRecord) -> Double {
        guard let answer = problem.answer else { return 0 }
        return completion.trimmingCharacters(in: .whitespacesAndNewlines) == answer.trimmingCharacters(in: .whitespacesAndNewlines) ? 1 : 0
    }
}

/// The text of a sampled response: the ids up to (not including) the first stop token,
/// decoded with special tokens kept (a stray control token makes an answer wrong rather than
/// vanish). Nil when an id has no text in the tokenizer (a padded vocabulary row): such a
/// completion earns no reward rather than a match made by dropping the id.
public func completionText<C: Collection>(_ response: C, stopTokens: Set<Int>, tokenizer: Tokenizer) -> String? where C.Element == Int {
    let cut = Array(response.prefix { !stopTokens.contains($0) })
    return try? tokenizer.decode(cut)
}
