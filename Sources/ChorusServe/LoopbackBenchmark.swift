import ChorusCore
import ChorusModel
import ChorusTeachers
import Foundation

/// Scored positions/s of a checkpoint as a local teacher and as a remote (`kind = "vllm"`)
/// teacher behind a `ScoringServer` on loopback, in one process (`chorus serve --bench`).
///
/// Each of `groups` prompt groups has a 1-token prompt and `responses` responses of `length`
/// tokens (seeded random ids). Both teachers score every group with `Teacher.score(_:topK:)`,
/// once to warm up and then timed. The local teacher runs one batched forward per group. The
/// remote one sends one request per response, up to `responses` at a time, and the server runs
/// them one after another. So the gap between the two is the cost of the HTTP round trips, the
/// JSON encoding and decoding, and the lost batching.
public enum LoopbackBenchmark {
    /// Returns ("local_positions_per_s", "remote_positions_per_s", "remote_over_local", and
    /// the largest |Δ log-prob| between the two as "max_abs_logprob_diff").
    /// With `shape`, a random-weight model of that built-in shape is first saved into
    /// `directory`, which must not exist yet.
    public static func run(directory: URL, shape: String? = nil, groups G: Int = 4, responses R: Int = 4, length T: Int = 128,
                           topK k: Int = 20) throws -> [(String, Double)] {
        if let shape {
            guard let s = BuiltinShape(rawValue: shape) else {
                throw ServeError.unknownShape(shape)
            }
            let m = TransformerModel(config: s.config)
            m.initializeRandom(seed: 0)
            try m.save(directory: directory)
        }
        let service = try CompletionService(directory: directory, options: .init(servedName: "bench", maxLogprobs: max(20, k)))
        let server = try ScoringServer.start(service: service, host: "127.0.0.1", port: 0)
        defer { server.close() }
        let local = try CheckpointTeacher(name: "local", directory: directory)
        let V = local.vocabularySize
        let tokenizer = directory.appendingPathComponent("tokenizer.json")
        let remote = try RemoteTeacher(name: "remote", wire: .vllm,
                                       spec: RemoteSpec(url: "http://127.0.0.1:\(server.port)", model: "bench", tokenizer: tokenizer,
                                                        topK: k, timeout: 600, retries: 0, concurrency: R),
                                       vocabularySize: V)
        var rng = ChorusRNG(seed: 7)
        let groups = (0..<G).map { g in
            ScoringGroup(prompt: [Int(rng.next() % UInt64(V))],
                         responses: (0..<R).map { _ in (0..<T).map { _ in Int(rng.next() % UInt64(V)) } }, index: g)
        }
        func timed(_ t: any Teacher) throws -> (Double, [[Float]]) {
            _ = try t.score(groups[0], topK: k)   // warm-up: weights, connections
            let start = DispatchTime.now().uptimeNanoseconds
            var lps: [[Float]] = []
            for g in groups { lps += try t.score(g, topK: k).map { $0.positions.map(\.logprob) } }
            return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, lps)
        }
        let (tl, ll) = try timed(local)
        let (tr, rl) = try timed(remote)
        var diff: Float = 0
        for (a, b) in zip(ll, rl) { for (x, y) in zip(a, b) { diff = max(diff, abs(x - y)) } }
        let positions = Double(G * R * T)
        return [("positions", positions), ("top_k", Double(k)), ("local_positions_per_s", positions / tl),
                ("remote_positions_per_s", positions / tr), ("remote_over_local", tl / tr),
                ("max_abs_logprob_diff", Double(diff))]
    }
}
