import ChorusTensor
import Foundation

/// How the next token is drawn from the logits.
public struct SamplingParameters: Sendable, Codable, Equatable {
    /// Softmax temperature; 0 means greedy (argmax).
    public var temperature: Float = 1
    /// Nucleus mass: keep the smallest set of most likely tokens whose probability reaches p.
    public var topP: Float = 1
    /// Keep only the k most likely tokens (0 = no limit).
    public var topK: Int = 0

    /// Defaults: plain sampling from the model's distribution (T = 1, no filtering).
    public init(temperature: Float = 1, topP: Float = 1, topK: Int = 0) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
    }

    /// Throws a message naming the bad field.
    public func validate() throws {
        if !(temperature >= 0) || !temperature.isFinite { throw SamplingError.invalid("temperature must be >= 0, got \(temperature)") }
        if !(topP > 0 && topP <= 1) { throw SamplingError.invalid("top-p must be in (0, 1], got \(topP)") }
        if topK < 0 { throw SamplingError.invalid("top-k must be >= 0, got \(topK)") }
    }
}

/// A sampling parameter out of range.
public enum SamplingError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case let .invalid(s) = self { return s }; return "" }
}

/// Picks a token from one row of logits (length V). `work` is caller scratch of at least V
/// floats and V indices so the hot loop does not allocate.
///
/// Order as in HF/vLLM: temperature, then top-k, then top-p, then a draw from the renormalised
/// distribution. Temperature 0 is greedy (lowest id among ties).
public func sampleToken(logits: UnsafePointer<Float>, vocab V: Int, params: SamplingParameters,
                        rng: inout ChorusRNG, work: UnsafeMutablePointer<Float>,
                        order: UnsafeMutablePointer<Int32>) -> Int {
    if params.temperature == 0 {
        var best = 0
        for j in 1..<V where logits[j] > logits[best] { best = j }
        return best
    }
    let invT = 1 / params.temperature
    for j in 0..<V { work[j] = logits[j] * invT }
    softmaxRowInPlace(work, count: V)
    let needsFilter = (params.topK > 0 && params.topK < V) || params.topP < 1
    if !needsFilter {
        let u = rng.uniformDouble()
        var acc = 0.0
        for j in 0..<V {
            acc += Double(work[j])
            if u < acc { return j }
        }
        return V - 1
    }
    // Sort token ids by probability, descending (ties: lower id first) and cut.
    for j in 0..<V { order[j] = Int32(j) }
    var buf = UnsafeMutableBufferPointer(start: order, count: V)
    buf.sort { a, b in
        let pa = work[Int(a)], pb = work[Int(b)]
        return pa > pb || (pa == pb && a < b)
    }
    var keep = V
    if params.topK > 0 { keep = min(keep, params.topK) }
    if params.topP < 1 {
        var cum: Float = 0
        for i in 0..<keep {
            cum += work[Int(order[i])]
            if cum >= params.topP { keep = i + 1; break }
        }
    }
    var total = 0.0
    for i in 0..<keep { total += Double(work[Int(order[i])]) }
    let u = rng.uniformDouble() * total
    var acc = 0.0
    for i in 0..<keep {
        acc += Double(work[Int(order[i])])
        if u < acc { return Int(order[i]) }
    }
    return Int(order[keep - 1])
}

/// The output of sampling one continuation.
public struct Generation: Sendable {
    /// Prompt plus sampled ids.
    public var tokens: [Int]
    /// log p(token | prefix) of each sampled token under the model itself (temperature 1, no
    /// filtering), so it can be compared with a later full forward pass.
    public var logprobs: [Float]
    /// The number of prompt tokens at the front of `tokens`.
    public var promptLength: Int
}

extension TransformerModel {
    /// Samples continuations of several prompts together with KV caches: one prefill forward
    /// over all prompts, then one batched decode step per new token.
    ///
    /// Each sequence draws from its own generator `ChorusRNG(seed: seeds[i])`, so its result
    /// does not depend on what else is in the batch. A sequence stops at `maxTokens` or after
    /// emitting a token in `stopTokens`.
    public func generate(prompts: [[Int]], maxTokens: Int, params: SamplingParameters, seeds: [UInt64],
                         stopTokens: Set<Int> = [], workspace ws: ForwardWorkspace = ForwardWorkspace()) throws -> [Generation] {
        try params.validate()
        precondition(seeds.count == prompts.count)
        let V = config.vocabSize
        var rngs = seeds.map { ChorusRNG(seed: $0) }
        var gens = prompts.map { Generation(tokens: $0, logprobs: [], promptLength: $0.count) }
        if maxTokens <= 0 { return gens }
        let caches = prompts.map { KVCache(config: config, capacity: $0.count + maxTokens) }
        let scratch = makeHeadScratch()
        let work = Tensor(shape: [V])
        var order = [Int32](repeating: 0, count: V)
        var active = Array(prompts.indices)
        var segments = zip(prompts, caches).map { Segment(tokens: $0.0, cache: $0.1) }
        for _ in 0..<maxTokens {
            if active.isEmpty { break }
            let hidden = try forwardHidden(segments, workspace: ws)
            // The last row of each segment predicts its next token.
            var rows: [Int] = [], r = 0
            for s in segments { r += s.tokens.count; rows.append(r - 1) }
            var next: [Int] = []
            order.withUnsafeMutableBufferPointer { ob in
                headChunks(hidden: hidden, rows: rows, scratch: scratch) { s0, m, logits, _ in
                    for i in 0..<m {
                        let seq = active[s0 + i]
                        let row = logits + i * V
                        let tok = sampleToken(logits: row, vocab: V, params: params, rng: &rngs[seq],
                                              work: work.data, order: ob.baseAddress!)
                        let st = rowStats(row, count: V)
                        gens[seq].tokens.append(tok)
                        gens[seq].logprobs.append(row[tok] - st.logSumExp)
                        next.append(tok)
                    }
                }
            }
            var nextActive: [Int] = [], nextSegments: [Segment] = []
            for (i, seq) in active.enumerated() where !stopTokens.contains(next[i]) && gens[seq].logprobs.count < maxTokens {
                nextActive.append(seq)
                nextSegments.append(Segment(tokens: [next[i]], cache: caches[seq]))
            }
            active = nextActive
            segments = nextSegments
        }
        return gens
    }
}
