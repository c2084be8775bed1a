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
        if !(temperature >= 0) || !temperature.isFinite { throw SamplingError.invalid("temperature must be a finite number >= 0, got \(temperature)") }
        if !(topP > 0 && topP <= 1) { throw SamplingError.invalid("top-p must be in (0, 1], got \(topP)") }
        if topK < 0 { throw SamplingError.invalid("top-k must be >= 0, got \(topK)") }
    }
}

/// A sampling parameter out of range.
public enum SamplingError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case let .invalid(s) = self { return s }; return "" }
}

/// A drawn token and its log-probability under the distribution it was drawn from (after
/// temperature, top-k and top-p; 0 for greedy): what a rollout-correction ratio divides by.
public struct SampledToken: Sendable, Equatable {
    public var id: Int
    public var logprob: Float
}

/// Picks a token from one row of logits (length V). `work` is caller scratch of at least V
/// floats and V indices so the hot loop does not allocate.
///
/// Order as in HF/vLLM: temperature, then top-k, then top-p, then a draw from the renormalised
/// distribution. Temperature 0 is greedy (lowest id among ties).
public func sampleToken(logits: UnsafePointer<Float>, vocab V: Int, params: SamplingParameters,
                        rng: inout ChorusRNG, work: UnsafeMutablePointer<Float>,
                        order: UnsafeMutablePointer<Int32>) -> SampledToken {
    // A temperature so small that 1/T overflows Float (T < ~3e-39) is the greedy limit.
    let invT = 1 / params.temperature
    if params.temperature == 0 || !invT.isFinite {
        var best = 0
        for j in 1..<V where logits[j] > logits[best] { best = j }
        return SampledToken(id: best, logprob: 0)
    }
    var scaledFinite = true
    for j in 0..<V { work[j] = logits[j] * invT; scaledFinite = scaledFinite && work[j].isFinite }
    if !scaledFinite {
        // Logits × 1/T overflowed (tiny T): scale the gaps to the maximum instead, which are
        // <= 0 and at worst -inf (probability 0), never inf - inf = NaN.
        var m = logits[0]
        for j in 1..<V { m = max(m, logits[j]) }
        for j in 0..<V { work[j] = logits[j] == m ? 0 : (logits[j] - m) * invT }
    }
    softmaxRowInPlace(work, count: V)
    let needsFilter = (params.topK > 0 && params.topK < V) || params.topP < 1
    if !needsFilter {
        let u = rng.uniformDouble()
        var acc = 0.0
        for j in 0..<V {
            acc += Double(work[j])
            if u < acc { return SampledToken(id: j, logprob: Foundation.log(work[j])) }
        }
        return SampledToken(id: V - 1, logprob: Foundation.log(work[V - 1]))
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
    var pick = Int(order[keep - 1])
    for i in 0..<keep {
        acc += Double(work[Int(order[i])])
        if u < acc { pick = Int(order[i]); break }
    }
    return SampledToken(id: pick, logprob: Float(Foundation.log(Double(work[pick]) / total)))
}

/// The output of sampling one continuation.
public struct Generation: Sendable {
    /// Prompt plus sampled ids.
    public var tokens: [Int]
    /// log p(token | prefix) of each sampled token under the model itself (temperature 1, no
    /// filtering), so it can be compared with a later full forward pass.
    public var logprobs: [Float]
    /// log q(token | prefix) under the distribution actually sampled from (temperature, top-k,
    /// top-p applied and renormalised; 0 for greedy).
    public var samplingLogprobs: [Float]
    /// The number of prompt tokens at the front of `tokens`.
    public var promptLength: Int
    /// The sampled ids.
    public var response: ArraySlice<Int> { tokens[promptLength...] }
}

extension TransformerModel {
    /// Samples `samplesPerPrompt` continuations of each prompt, all decoded together with KV
    /// caches: one prefill forward over the prompts, then one batched decode step per new
    /// token. Each prompt is prefilled once; its samples draw their first token from the same
    /// logits and then continue on forks of its cache.
    ///
    /// Results are prompt-major: sample j of prompt i is entry i·samplesPerPrompt + j and draws
    /// from its own generator `ChorusRNG(seed: seeds[that entry])`, so its tokens do not depend
    /// on what else is in the batch. A sequence stops at `maxTokens` or after emitting a token
    /// in `stopTokens`.
    public func generate(prompts: [[Int]], samplesPerPrompt: Int = 1, maxTokens: Int, params: SamplingParameters,
                         seeds: [UInt64], stopTokens: Set<Int> = [],
                         workspace ws: ForwardWorkspace = ForwardWorkspace()) throws -> [Generation] {
        try params.validate()
        try MemoryCheck.generation(config, promptTokens: prompts.reduce(0) { $0 + $1.count }, longestPrompt: prompts.map(\.count).max() ?? 0,
                                   samples: prompts.count * max(1, samplesPerPrompt), maxTokens: maxTokens)
        let G = samplesPerPrompt
        precondition(G >= 1 && seeds.count == prompts.count * G, "one seed per sample")
        let V = config.vocabSize
        var rngs = seeds.map { ChorusRNG(seed: $0) }
        var gens = prompts.flatMap { p in (0..<G).map { _ in Generation(tokens: p, logprobs: [], samplingLogprobs: [], promptLength: p.count) } }
        if maxTokens <= 0 { return gens }
        let promptCaches = prompts.map { KVCache(config: config, capacity: $0.count + maxTokens) }
        let scratch = makeHeadScratch()
        let work = Tensor(shape: [V])
        var order = [Int32](repeating: 0, count: V)
        // Prefill: the last row of each prompt predicts the first token of all its samples.
        var hidden = try forwardHidden(zip(prompts, promptCaches).map { PackedSequence(tokens: $0.0, cache: $0.1) }, workspace: ws)
        var rows: [Int] = [], r = 0
        for p in prompts { r += p.count; rows.append(r - 1) }
        var sources = (0..<prompts.count).map { [Int](($0 * G)..<($0 * G + G)) }   // samples fed by each head row
        var caches = [KVCache?](repeating: nil, count: gens.count)
        for _ in 0..<maxTokens {
            var next: [(sample: Int, token: Int)] = []
            order.withUnsafeMutableBufferPointer { ob in
                headChunks(hidden: hidden, rows: rows, scratch: scratch) { s0, m, logits, _ in
                    for i in 0..<m {
                        let row = logits + i * V
                        let lse = rowStats(row, count: V).logSumExp
                        for sample in sources[s0 + i] {
                            let tok = sampleToken(logits: row, vocab: V, params: params, rng: &rngs[sample],
                                                  work: work.data, order: ob.baseAddress!)
                            gens[sample].tokens.append(tok.id)
                            gens[sample].logprobs.append(row[tok.id] - lse)
                            gens[sample].samplingLogprobs.append(tok.logprob)
                            next.append((sample, tok.id))
                        }
                    }
                }
            }
            // Samples still running continue on their own cache: the first sample of a prompt
            // keeps the prompt's cache, the others get forks of it.
            var batch: [PackedSequence] = []
            sources = []
            for (sample, token) in next where !stopTokens.contains(token) && gens[sample].response.count < maxTokens {
                if caches[sample] == nil {
                    let pc = promptCaches[sample / G]
                    caches[sample] = sample % G == G - 1 ? pc : pc.fork(capacity: pc.capacity)
                }
                batch.append(PackedSequence(tokens: [token], cache: caches[sample]))
                sources.append([sample])
            }
            if batch.isEmpty { break }
            hidden = try forwardHidden(batch, workspace: ws)
            rows = Array(0..<batch.count)
        }
        return gens
    }
}
