import ChorusModel
import ChorusTokenizer
import Foundation

/// Installing the control tokens `<|teacher-k|>` of control-token routing in a student.
public enum ControlTokenInstaller {
    /// Adds `<|teacher-0|>` … `<|teacher-(K−1)|>` to the student's tokenizer (as special
    /// tokens) and makes room for them in the model: ids at or beyond the model's vocab_size
    /// grow the embedding (and untied LM head) to V+K rows, ids inside V (a checkpoint's
    /// padding rows) are reset; either way the control rows start as the mean embedding.
    /// Returns the model to train (a new one when it grew) and the ids, teacher order.
    public static func install(student: TransformerModel, tokenizer: Tokenizer, teacherCount K: Int) throws -> (model: TransformerModel, ids: [Int]) {
        let ids = try tokenizer.addSpecialTokens(controlTokenNames(count: K))
        let V = student.config.vocabSize
        let grow = max(0, (ids.max() ?? -1) + 1 - V)
        let model = grow > 0 ? student.addingVocabularyRows(grow) : student
        let inside = ids.filter { $0 < V }
        if !inside.isEmpty { model.setVocabularyRowsToMean(inside) }
        return (model, ids)
    }
}
