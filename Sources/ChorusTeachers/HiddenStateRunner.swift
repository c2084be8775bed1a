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
    /// Upper bound on the tokens of one `forwardHidden` call (activation memory).
    public var maxBatchTokens = 4096
    let workspace = ForwardWorkspace()
    /// The LM-head scratch every `TeacherForward` of this runner shares (one per runner rather
    /// than one per group: a step's groups made ~40 MB of zero-filled scratch each step).
    var headScratch: Tensor?
    /// Largest rows × V of log-softmax rows one forward call precomputes for all its groups
    /// (default 16M floats, 64 MiB): a training step's few hundred rows then take a few
    /// LM-head products of up to `TransformerModel.headChunk` rows instead of one small product
    /// per response (each of which packed the whole head matrix again). Over the budget (a
    /// large vocabulary) the head runs on demand per response, as before; 0 turns it off.
    public var headBudgetFloats = 16 << 20
    /// The precomputed log-softmax rows (N_all, V) and entropies (N_all) of the last call, and
    /// its number: a `TeacherForward` of an older call no longer reads them.
    var headRows = Tensor(shape: [0]), headEntropy = Tensor(shape: [0])
    private(set) var generation = 0

    public init() {}

    /// One prompt group's input: a shared prefix and the continuations that follow it.
    public struct Group {
        public var prefix: [Int]
        public var continuations: [[Int]]
        public init(prefix: [Int], continuations: [[Int]]) {
            self.prefix = prefix
            self.continuations = continuations
        }
    }

    /// Hidden rows of `model` for every continuation token: row t of continuation r is the
    /// final hidden state at the token before it (the last prefix token for t = 0).
    public func forward(model: TransformerModel, prefix: [Int], continuations: [[Int]], teacher: String) throws -> TeacherForward {
        try forward(model: model, groups: [Group(prefix: prefix, continuations: continuations)], teacher: teacher)[0]
    }

    /// The hidden rows of several prompt groups (one `TeacherForward` each), computed in as few
    /// forwards as the token and KV budgets allow: every group's prefix is prefilled in one
    /// batch, then every continuation of every group runs from its fork of its group's cache in
    /// another. Small models are far from the gemm peak at the ~30 rows of one group; a step's
    /// hundreds of rows together are not. Results equal one-group calls up to float summation
    /// order inside the gemm (the rows of one sequence never mix with another's).
    public func forward(model: TransformerModel, groups: [Group], teacher: String) throws -> [TeacherForward] {
        let V = model.config.vocabSize, C = model.config.hiddenSize
        for g in groups {
            if g.prefix.isEmpty { throw TeacherError.emptyPrompt(teacher: teacher) }
            for t in g.prefix where t < 0 || t >= V { throw TeacherError.tokenOutOfRange(teacher: teacher, token: t, vocabSize: V) }
            for r in g.continuations {
                for t in r where t < 0 || t >= V { throw TeacherError.tokenOutOfRange(teacher: teacher, token: t, vocabSize: V) }
            }
        }
        // Output rows of every group in one tensor, group after group, continuation after
        // continuation: offsets[g][r] is the first row of continuation r of group g.
        var offsets: [[Int]] = [], groupRows: [Int] = [], total = 0
        for g in groups {
            groupRows.append(total)
            offsets.append(g.continuations.map { c in defer { total += c.count }; return total })
        }
        let all = Tensor(shape: [max(total, 1), C])
        all.reshape([total, C])
        let out = all.data

        if sharePrefix {
            let bytesPerPosition = 2 * model.config.numLayers * model.config.numKVHeads * model.config.headDim * 4
            // Work items: (group, continuation or nil for the prefix, tokens, KV positions).
            // Batches are cut at the token and KV budgets; caches (forks) are made only when their
            // batch runs, so the KV memory alive at once stays under the budget.
            struct Item { var group: Int; var response: Int?; var tokens: [Int]; var capacity: Int; var cache: () -> KVCache }
            func run(_ items: [Item], place: (Item, UnsafeMutablePointer<Float>) -> Void) throws {
                var batch: [Item] = [], tokens = 0, bytes = 0
                func flush() throws {
                    if batch.isEmpty { return }
                    let h = try model.forwardHidden(batch.map { PackedSequence(tokens: $0.tokens, cache: $0.cache()) }, workspace: workspace)
                    var row = 0
                    for it in batch { place(it, h + row * C); row += it.tokens.count }
                    batch = []; tokens = 0; bytes = 0
                }
                for it in items {
                    let b = it.capacity * bytesPerPosition
                    if !batch.isEmpty && (tokens + it.tokens.count > maxBatchTokens || bytes + b > kvBudgetBytes) { try flush() }
                    batch.append(it); tokens += it.tokens.count; bytes += b
                }
                try flush()
            }
            // 1. Every prefix once; its last row predicts each continuation's first token.
            let prefixCaches = groups.map { KVCache(config: model.config, capacity: $0.prefix.count) }
            try run(groups.indices.map { gi in Item(group: gi, response: nil, tokens: groups[gi].prefix, capacity: groups[gi].prefix.count) { prefixCaches[gi] } }) { it, h in
                let g = groups[it.group], last = h + (g.prefix.count - 1) * C
                for (r, c) in g.continuations.enumerated() where !c.isEmpty {
                    (out + offsets[it.group][r] * C).update(from: last, count: C)
                }
            }
            // 2. Continuations of more than one token: tokens 0..<n-1 from a fork of the prefix.
            var items: [Item] = []
            for (gi, g) in groups.enumerated() {
                for (r, c) in g.continuations.enumerated() where c.count > 1 {
                    let capacity = g.prefix.count + c.count - 1, source = prefixCaches[gi]
                    items.append(Item(group: gi, response: r, tokens: Array(c[0..<(c.count - 1)]), capacity: capacity) {
                        source.fork(capacity: capacity)
                    })
                }
            }
            try run(items) { it, h in
                (out + (offsets[it.group][it.response!] + 1) * C).update(from: h, count: it.tokens.count * C)
            }
        } else {
            for (gi, g) in groups.enumerated() {
                for (r, c) in g.continuations.enumerated() where !c.isEmpty {
                    let ctx = g.prefix + c[0..<(c.count - 1)]
                    let h = try model.forwardHidden([PackedSequence(tokens: ctx)], workspace: workspace)
                    (out + offsets[gi][r] * C).update(from: h + (g.prefix.count - 1) * C, count: c.count * C)
                }
            }
        }
        let need = TransformerModel.headChunk * (C + V)
        if headScratch.map({ $0.capacity < need }) ?? true { headScratch = model.makeHeadScratch() }
        let scratch = headScratch!
        generation += 1
        var precomputed: (runner: HiddenStateRunner, generation: Int)?
        if total > 0 && total * V <= headBudgetFloats {
            precomputeHead(model: model, hidden: out, rows: total, scratch: scratch)
            precomputed = (self, generation)
        }
        return groups.indices.map { gi in
            TeacherForward(model: model, hidden: all, firstRow: groupRows[gi], lengths: groups[gi].continuations.map(\.count),
                           targets: groups[gi].continuations.flatMap { $0 }, scratch: scratch, precomputed: precomputed)
        }
    }

    /// Log-softmax rows and entropies of hidden rows 0 ..< rows into `headRows` /
    /// `headEntropy`: the values `TransformerModel.score` gives (x − logsumexp of the logits,
    /// their entropy), `headChunk` rows per LM-head product.
    func precomputeHead(model: TransformerModel, hidden: UnsafePointer<Float>, rows: Int, scratch: Tensor) {
        let V = model.config.vocabSize
        grow(&headRows, to: rows * V)
        grow(&headEntropy, to: rows)
        let lp = headRows.data, ent = headEntropy.data
        model.headChunks(hidden: hidden, rows: Array(0..<rows), scratch: scratch) { s, m, logits, _ in
            parallelFor(m, costPerItem: V * 4) { a, b in
                for i in a..<b {
                    let row = logits + i * V, dst = lp + (s + i) * V
                    let st = rowStats(row, count: V)
                    ent[s + i] = st.entropy
                    var j = 0
                    while j + 8 <= V { storeVec(loadVec(row + j) - st.logSumExp, dst + j); j += 8 }
                    while j < V { dst[j] = row[j] - st.logSumExp; j += 1 }
                }
            }
        }
    }
}

/// Grows `t` to at least `n` floats (by half again, so repeated growth is amortised).
func grow(_ t: inout Tensor, to n: Int) {
    if t.capacity < n { t = Tensor(shape: [max(n, t.capacity * 3 / 2)]) }
}
