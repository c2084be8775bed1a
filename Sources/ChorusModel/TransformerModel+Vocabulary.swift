import ChorusTensor

/// Growing and copying a model's vocabulary rows (control tokens such as `<|teacher-k|>`).
extension TransformerModel {
    /// An independent copy of the model (same config, parameters copied): a frozen snapshot.
    public func copy() -> TransformerModel {
        let m = TransformerModel(config: config)
        m.parameters.data.update(from: parameters.data, count: layout.totalCount)
        return m
    }

    /// A copy of the model with `count` more vocabulary rows: V+count rows in the embedding
    /// (and in the LM head when it is untied). The new rows are the mean of the old rows of
    /// the same matrix, so a new token starts as an "average" token. Other parameters are
    /// copied unchanged.
    public func addingVocabularyRows(_ count: Int) -> TransformerModel {
        precondition(count >= 0, "negative row count")
        var c = config
        let V = config.vocabSize, C = config.hiddenSize
        c.vocabSize = V + count
        let m = TransformerModel(config: c)
        for e in m.layout.entries {
            guard let old = layout.entry(named: e.name) else { preconditionFailure("no \(e.name) in source layout") }
            if e.name == "model.embed_tokens.weight" || e.name == "lm_head.weight" {
                m.parameter(e.offset).update(from: parameter(old.offset), count: V * C)
                let mean = TransformerModel.meanRow(parameter(old.offset), rows: V, cols: C)
                for r in V..<(V + count) { (m.parameter(e.offset) + r * C).update(from: mean, count: C) }
            } else {
                m.parameter(e.offset).update(from: parameter(old.offset), count: e.count)
            }
        }
        return m
    }

    /// Overwrites vocabulary rows `ids` of the embedding (and of an untied LM head) with the
    /// mean of the other rows (for control tokens placed in a checkpoint's padding rows).
    public func setVocabularyRowsToMean(_ ids: [Int]) {
        let V = config.vocabSize, C = config.hiddenSize
        precondition(ids.allSatisfy { $0 >= 0 && $0 < V }, "row id outside the vocabulary")
        let chosen = Set(ids)
        let keep = (0..<V).filter { !chosen.contains($0) }
        var mats = [layout.embed]
        if !config.tieWordEmbeddings { mats.append(layout.lmHead) }
        for base in mats {
            var mean = [Float](repeating: 0, count: C)
            for r in keep { for j in 0..<C { mean[j] += parameter(base)[r * C + j] } }
            let inv = 1 / Float(max(1, keep.count))
            for j in 0..<C { mean[j] *= inv }
            for r in chosen { (parameter(base) + r * C).update(from: mean, count: C) }
        }
    }

    /// The mean of `rows` rows of length `cols` (accumulated in Double).
    static func meanRow(_ x: UnsafePointer<Float>, rows: Int, cols: Int) -> [Float] {
        var acc = [Double](repeating: 0, count: cols)
        for r in 0..<rows { for j in 0..<cols { acc[j] += Double(x[r * cols + j]) } }
        return acc.map { Float($0 / Double(max(1, rows))) }
    }
}
