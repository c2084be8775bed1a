import ChorusModel
import ChorusTokenizer
import Foundation

extension Tokenizer: TextEncoder {}

/// Loads the text encoder of self-teacher templates: the tokenizer.json of the model.
public enum TokenizerEncoder {
    public static func load(_ url: URL) throws -> TextEncoder {
        try Tokenizer(contentsOf: url)
    }
}
