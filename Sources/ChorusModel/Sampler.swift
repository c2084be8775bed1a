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
    // Sort all token ids by probability, descending (ties: lower id first), cut, draw.
    for j in 0..<V { order[j] = Int32(j) }
    let keep = nucleusCut(work: work, order: order, count: V,
                          topK: params.topK > 0 ? min(params.topK, V) : V, topP: params.topP)
    return drawKept(work: work, order: order, keep: keep, rng: &rng)
}

/// A drawn token with both log-probabilities a rollout records.
public struct RowSample: Sendable, Equatable {
    /// The token and its log-probability under the distribution it was drawn from.
    public var token: SampledToken
    /// log p(token | prefix) under the model itself (temperature 1, no filtering).
    public var modelLogprob: Float
}

/// The rollout engine's sampler: the same draw as `sampleToken` (same token, same sampling
/// log-prob, bit for bit, for the same generator state) plus the model log-prob
/// `logits[id] − logsumexp(logits)`, in fewer passes over the row.
///
/// `sampleToken` (the reference) scales a copy by 1/T, softmaxes it in three passes and, when
/// top-k or top-p is set, sorts all V ids; the model log-prob then needs `rowStats`, two more
/// passes with exponentials. Here the scaling is fused into the max and exp passes (the same
/// float operations, so the same values), at T = 1 the model's logsumexp is the sampling one,
/// and top-k / top-p sort only the candidates at or above a probability threshold whose mass
/// already reaches top-p (or whose count reaches top-k): every token outside has a lower
/// probability than every candidate, so the sorted candidates are the prefix of the full order
/// the reference cuts. When rounding leaves the cut outside the candidates, it falls back to
/// the full sort. `work` and `order` are caller scratch of V floats and V indices.
public func sampleTokenFused(logits x: UnsafePointer<Float>, vocab V: Int, params: SamplingParameters,
                             rng: inout ChorusRNG, work: UnsafeMutablePointer<Float>,
                             order: UnsafeMutablePointer<Int32>) -> RowSample {
    if params.temperature == 0 {
        var best = 0
        for j in 1..<V where x[j] > x[best] { best = j }
        return RowSample(token: SampledToken(id: best, logprob: 0), modelLogprob: x[best] - logSumExp(x, count: V))
    }
    let invT = 1 / params.temperature
    // Max of x·(1/T), then e = exp(x·(1/T) − max) and their sum, as softmaxRowInPlace on the
    // scaled copy computes them. The same pass keeps the minimum: a tiny T can make x·(1/T)
    // overflow, and the reference sampler owns that limit (greedy when 1/T itself overflows,
    // gaps to the max otherwise), so such rows go to it without a pass of their own.
    var mv = FloatVec(repeating: -.infinity), nv = FloatVec(repeating: .infinity)
    var j = 0
    while j + 8 <= V {
        let v = loadVec(x + j) * invT
        mv.replace(with: v, where: v .> mv); nv.replace(with: v, where: v .< nv); j += 8
    }
    var m = mv.max(), n = nv.min()
    while j < V { m = Swift.max(m, x[j] * invT); n = Swift.min(n, x[j] * invT); j += 1 }
    if !invT.isFinite || !m.isFinite || !n.isFinite {
        let s = sampleToken(logits: x, vocab: V, params: params, rng: &rng, work: work, order: order)
        return RowSample(token: s, modelLogprob: x[s.id] - logSumExp(x, count: V))
    }
    var sv = FloatVec()
    j = 0
    while j + 8 <= V { let e = vexp(loadVec(x + j) * invT - m); storeVec(e, work + j); sv += e; j += 8 }
    var sum = sv.sum()
    while j < V { let e = sexp(x[j] * invT - m); work[j] = e; sum += e; j += 1 }
    let inv = 1 / sum
    let modelLSE = invT == 1 ? m + Foundation.log(sum) : logSumExp(x, count: V)
    let needsFilter = (params.topK > 0 && params.topK < V) || params.topP < 1
    if !needsFilter {
        let u = rng.uniformDouble()
        var acc = 0.0
        for j in 0..<V {
            let p = work[j] * inv
            acc += Double(p)
            if u < acc { return RowSample(token: SampledToken(id: j, logprob: Foundation.log(p)), modelLogprob: x[j] - modelLSE) }
        }
        let p = work[V - 1] * inv
        return RowSample(token: SampledToken(id: V - 1, logprob: Foundation.log(p)), modelLogprob: x[V - 1] - modelLSE)
    }
    j = 0
    while j + 8 <= V { storeVec(loadVec(work + j) * inv, work + j); j += 8 }
    while j < V { work[j] *= inv; j += 1 }
    let topK = params.topK > 0 ? Swift.min(params.topK, V) : V
    // Candidates: ids with p >= pmax·2^-s for the first s whose set has enough mass or count.
    let pmax = inv   // the argmax has e = exp(0) = 1 (any value would do: it only sets the threshold)
    var count = V
    var shift: Float = 1 / 16
    while shift > 1e-12 {
        let t = pmax * shift
        var c = 0, mass: Float = 0
        for j in 0..<V where work[j] >= t { c += 1; mass += work[j] }
        if c >= topK || mass >= Swift.min(1, params.topP + 1e-3) || c == V { count = c; break }
        shift *= 1 / 16
    }
    var keep = 0
    if count < V {
        let t = pmax * shift
        var c = 0
        for j in 0..<V where work[j] >= t { order[c] = Int32(j); c += 1 }
        keep = nucleusCut(work: work, order: order, count: c, topK: topK, topP: params.topP)
    }
    if keep == 0 {   // the cut is not inside the candidates: the reference's full sort
        for j in 0..<V { order[j] = Int32(j) }
        keep = nucleusCut(work: work, order: order, count: V, topK: topK, topP: params.topP)
    }
    let token = drawKept(work: work, order: order, keep: keep, rng: &rng)
    return RowSample(token: token, modelLogprob: x[token.id] - modelLSE)
}

/// Sorts `order[0..<count]` by probability, descending (ties: lower id first), and returns
/// how many of them top-k / top-p keep, or 0 when `count` is a strict subset of the vocabulary
/// too small to hold the cut (the caller then sorts everything). `topK` is in 1...V (V when
/// top-k is off). The one top-k / top-p cut of both samplers: with `count` = V (the reference
/// sampler) it never returns 0.
func nucleusCut(work: UnsafeMutablePointer<Float>, order: UnsafeMutablePointer<Int32>, count: Int,
                topK: Int, topP: Float) -> Int {
    var buf = UnsafeMutableBufferPointer(start: order, count: count)
    buf.sort { a, b in
        let pa = work[Int(a)], pb = work[Int(b)]
        return pa > pb || (pa == pb && a < b)
    }
    var keep = Swift.min(topK, count)
    var reached = keep == topK
    if topP < 1 {
        var cum: Float = 0
        for i in 0..<keep {
            cum += work[Int(order[i])]
            if cum >= topP { keep = i + 1; reached = true; break }
        }
    }
    return reached ? keep : 0
}

/// Draws one of the `keep` most likely ids `order[0..<keep]` in proportion to its probability
/// `work[id]`, renormalised over the kept ones (in Double, as HF's renormalised draw): the last
/// step of both samplers. Returns the id and its log-probability under the renormalised
/// distribution. One uniform draw from `rng`; allocates nothing.
@inline(__always)
func drawKept(work: UnsafeMutablePointer<Float>, order: UnsafeMutablePointer<Int32>, keep: Int,
              rng: inout ChorusRNG) -> SampledToken {
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

/// log Σ exp(x) over one row, as `rowStats` computes it (without the entropy).
@inline(__always)
func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Float { rowStats(x, count: n).logSumExp }

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
    /// on what else is in the batch (nor on the thread count: rows are sampled in parallel, each
    /// with its own generator). A sequence stops at `maxTokens` or after emitting a token in
    /// `stopTokens`. Tokens in `suppressTokens` are never drawn: their logits are set to −∞
    /// before sampling, so the draw and its log-probs come from the renormalised rest (the
    /// control-token student's `<|teacher-k|>` ids, which route prompts and which no teacher can
    /// score in a response).
    ///
    /// The decode loop allocates nothing per token: the step's tokens, caches and draws live in
    /// arrays reused across steps, and `forwardDecode` runs the body on them directly.
    /// `generateReference` is the plain loop this one is tested against (same tokens, same
    /// log-probs).
    public func generate(prompts: [[Int]], samplesPerPrompt: Int = 1, maxTokens: Int, params: SamplingParameters,
                         seeds: [UInt64], stopTokens: Set<Int> = [], suppressTokens: [Int] = [],
                         workspace ws: ForwardWorkspace = ForwardWorkspace()) throws -> [Generation] {
        try params.validate()
        if let bad = suppressTokens.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw SamplingError.invalid("suppressed token id \(bad) is outside the vocabulary [0, \(config.vocabSize))")
        }
        try MemoryCheck.generation(config, promptTokens: prompts.reduce(0) { $0 + $1.count }, longestPrompt: prompts.map(\.count).max() ?? 0,
                                   samples: prompts.count * max(1, samplesPerPrompt), maxTokens: maxTokens)
        let G = samplesPerPrompt
        precondition(G >= 1 && seeds.count == prompts.count * G, "one seed per sample")
        let V = config.vocabSize
        var rngs = seeds.map { ChorusRNG(seed: $0) }
        var gens = prompts.flatMap { p in
            (0..<G).map { _ in
                var g = Generation(tokens: p, logprobs: [], samplingLogprobs: [], promptLength: p.count)
                g.tokens.reserveCapacity(p.count + max(0, maxTokens))
                g.logprobs.reserveCapacity(max(0, maxTokens)); g.samplingLogprobs.reserveCapacity(max(0, maxTokens))
                return g
            }
        }
        if maxTokens <= 0 { return gens }
        let promptCaches = prompts.map { KVCache(config: config, capacity: $0.count + maxTokens) }
        let scratch = makeHeadScratch()
        let workers = Parallel.threads
        let work = Tensor(shape: [workers, V])
        var order = [Int32](repeating: 0, count: workers * V)
        var draws = [RowSample](repeating: RowSample(token: SampledToken(id: 0, logprob: 0), modelLogprob: 0), count: gens.count)
        // Prefill: the last row of each prompt predicts the first token of all its samples.
        var hidden = try forwardHidden(zip(prompts, promptCaches).map { PackedSequence(tokens: $0.0, cache: $0.1) }, workspace: ws)
        var rows: [Int] = [], r = 0
        for p in prompts { r += p.count; rows.append(r - 1) }
        // Head row i feeds samples active[i·fan ..< i·fan + fan]: all G of a prompt at the first
        // step, then one each.
        var active = Array(0..<gens.count), fan = G
        var stepTokens: [Int] = [], stepCaches: [KVCache] = []
        stepTokens.reserveCapacity(gens.count); stepCaches.reserveCapacity(gens.count)
        var caches = [KVCache?](repeating: nil, count: gens.count)
        for _ in 0..<maxTokens {
            rngs.withUnsafeMutableBufferPointer { rb in
                draws.withUnsafeMutableBufferPointer { db in
                    order.withUnsafeMutableBufferPointer { ob in
                        let rp = rb.baseAddress!, dp = db.baseAddress!, op = ob.baseAddress!
                        headChunks(hidden: hidden, rows: rows, scratch: scratch) { s0, m, logits, _ in
                            parallelChunks(m, workers: min(workers, m), costPerItem: V * 8) { w, lo, hi in
                                for i in lo..<hi {
                                    for t in suppressTokens { logits[i * V + t] = -.infinity }
                                    for a in ((s0 + i) * fan)..<((s0 + i + 1) * fan) {
                                        let sample = active[a]
                                        dp[sample] = sampleTokenFused(logits: logits + i * V, vocab: V, params: params, rng: &rp[sample],
                                                                      work: work.data + w * V, order: op + w * V)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Samples still running continue on their own cache: the first sample of a prompt
            // keeps the prompt's cache, the others get forks of it.
            stepTokens.removeAll(keepingCapacity: true); stepCaches.removeAll(keepingCapacity: true)
            var kept = 0
            for a in active.indices {
                let sample = active[a], d = draws[sample]
                gens[sample].tokens.append(d.token.id)
                gens[sample].logprobs.append(d.modelLogprob)
                gens[sample].samplingLogprobs.append(d.token.logprob)
                if stopTokens.contains(d.token.id) || gens[sample].response.count >= maxTokens { continue }
                if caches[sample] == nil {
                    let pc = promptCaches[sample / G]
                    caches[sample] = sample % G == G - 1 ? pc : pc.fork(capacity: pc.capacity)
                }
                stepTokens.append(d.token.id); stepCaches.append(caches[sample]!)
                active[kept] = sample; kept += 1
            }
            active.removeLast(active.count - kept)
            fan = 1
            if active.isEmpty { break }
            hidden = try forwardDecode(tokens: stepTokens, caches: stepCaches, workspace: ws)
            // The decode rows are 0..<count (the prefill's were the prompts' last rows).
            if rows.count != active.count || rows.last != active.count - 1 { rows = Array(0..<active.count) }
        }
        return gens
    }

    /// The reference decode loop `generate` is tested against: one `PackedSequence` per
    /// running sample per step through `forwardHidden`, `sampleToken` for the draw and
    /// `rowStats` for the model log-prob, serially. Same contract and results as `generate`.
    public func generateReference(prompts: [[Int]], samplesPerPrompt: Int = 1, maxTokens: Int, params: SamplingParameters,
                         seeds: [UInt64], stopTokens: Set<Int> = [], suppressTokens: [Int] = [],
                         workspace ws: ForwardWorkspace = ForwardWorkspace()) throws -> [Generation] {
        try params.validate()
        if let bad = suppressTokens.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw SamplingError.invalid("suppressed token id \(bad) is outside the vocabulary [0, \(config.vocabSize))")
        }
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
                        for t in suppressTokens { row[t] = -.infinity }
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
