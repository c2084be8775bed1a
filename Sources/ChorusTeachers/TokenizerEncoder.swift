import Foundation

/// Loads the text encoder of self-teacher templates from a tokenizer.json.
///
/// Interim: `ChorusTokenizer.Tokenizer` has not landed on main yet, so loading throws; pass
/// an `encoderLoader` to `TeacherPool.load` meanwhile. (Replaced by the tokenizer on merge.)
public enum TokenizerEncoder {
    public static func load(_ url: URL) throws -> TextEncoder {
        throw TeacherError.tokenizerUnavailable(teacher: url.deletingLastPathComponent().lastPathComponent,
                                                reason: "the tokenizer module is not available in this build")
    }
}
