import ChorusModel
import ChorusTensor
import Foundation

/// Runs a model over a shared prefix and several continuations and returns the final hidden
/// state that predicts each continuation token (a `TeacherForward`; the LM head runs later, on
/// demand). It holds the forward's options and workspace, not the model.
///
/// With `sharePrefix` the prefix is prefilled once into a KV cache; each continuation then
/// runs from its own fork of that cache, so the prefix costs one forward however many
/// responses the group has. Without it every context is run in full (the reference path the
/// tests compare against). Forks are batched so their KV memory stays under `kvBudgetBytes`.
public final class HiddenStateRunner {
    /// Share the prefix across continuations (default true).
    public var sharePrefix = true
    /// Upper bound on the KV-cache bytes of one batch of forks.
    public var kvBudgetBytes = 1 << 30
    let workspace = ForwardWorkspace()

    public init() {}

    /// Hidden rows of `model` for every continuation token: row t of continuation r is the
    /// final hidden state at the token before it (the last prefix token for t = 0).
    public func forward(model: TransformerModel, prefix: [Int], continuations: [[Int]], teacher: String) throws -> TeacherForward {
        let V = model.config.vocabSize, C = model.config.hiddenSize
        if prefix.isEmpty { throw TeacherError.emptyPrompt(teacher: teacher) }
        for t in prefix where t < 0 || t >= V { throw TeacherError.tokenOutOfRange(teacher: teacher, token: t, vocabSize: V) }
        for r in continuations {
            for t in r where t < 0 || t >= V { throw TeacherError.tokenOutOfRange(teacher: teacher, token: t, vocabSize: V) }
        }
        let lengths = continuations.map(\.count)
        let total = lengths.reduce(0, +)
        let hidden = Tensor(shape: [max(total, 1), C])
        hidden.reshape([total, C])
        var offsets: [Int] = [], s = 0
        for n in lengths { offsets.append(s); s += n }
        let P = prefix.count

        if sharePrefix {
            let cache = KVCache(config: model.config, capacity: P)
            let h = try model.forwardHidden([PackedSequence(tokens: prefix, cache: cache)], workspace: workspace)
            let last = Array(UnsafeBufferPointer(start: h + (P - 1) * C, count: C))
            for (r, n) in lengths.enumerated() where n > 0 {
                (hidden.data + offsets[r] * C).update(from: last, count: C)
            }
            // Continuations of more than one token need a forward over tokens 0..<n-1.
            let bytesPerPosition = 2 * model.config.numLayers * model.config.numKVHeads * model.config.headDim * 4
            var batch: [Int] = [], batchBytes = 0
            func flush() throws {
                if batch.isEmpty { return }
                let segs = batch.map { r in
                    PackedSequence(tokens: Array(continuations[r][0..<(lengths[r] - 1)]), cache: cache.fork(capacity: P + lengths[r] - 1))
                }
                let h = try model.forwardHidden(segs, workspace: workspace)
                var row = 0
                for r in batch {
                    let m = lengths[r] - 1
                    (hidden.data + (offsets[r] + 1) * C).update(from: h + row * C, count: m * C)
                    row += m
                }
                batch = []
                batchBytes = 0
            }
            for r in continuations.indices where lengths[r] > 1 {
                let b = (P + lengths[r] - 1) * bytesPerPosition
                if !batch.isEmpty && batchBytes + b > kvBudgetBytes { try flush() }
                batch.append(r)
                batchBytes += b
            }
            try flush()
        } else {
            for r in continuations.indices where lengths[r] > 0 {
                let ctx = prefix + continuations[r][0..<(lengths[r] - 1)]
                let h = try model.forwardHidden([PackedSequence(tokens: ctx)], workspace: workspace)
                (hidden.data + offsets[r] * C).update(from: h + (P - 1) * C, count: lengths[r] * C)
            }
        }
        return TeacherForward(model: model, hidden: hidden, lengths: lengths, targets: continuations.flatMap { $0 })
    }
}
