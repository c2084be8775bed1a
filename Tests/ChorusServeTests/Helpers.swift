import ChorusModel
import ChorusServe
import ChorusTeachers
import Foundation
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A tiny Qwen3-shaped model (fast in debug builds); `maxPositions` bounds the context.
func tinyModel(seed: UInt64, vocab: Int = 64, std: Float = 0.5, maxPositions: Int = 256) -> TransformerModel {
    let cfg = ModelConfig(family: .qwen3, vocabSize: vocab, hiddenSize: 32, intermediateSize: 64, numLayers: 2,
                          numHeads: 2, numKVHeads: 1, headDim: 16, tieWordEmbeddings: false, maxPositionEmbeddings: maxPositions)
    let m = TransformerModel(config: cfg)
    m.initializeRandom(seed: seed, std: std)
    return m
}

/// Writes a minimal tokenizer.json (BPE, no merges) with tokens t0, t1, … (id = index).
func writeTokenizer(_ dir: URL, vocab: Int) throws {
    var v: [String: Int] = [:]
    for i in 0..<vocab { v["t\(i)"] = i }
    let obj: [String: Any] = ["version": "1.0", "model": ["type": "BPE", "vocab": v, "merges": [String]()], "added_tokens": [Any]()]
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: dir.appendingPathComponent("tokenizer.json"))
}

/// Saves `model` with a tokenizer into dir and returns dir.
@discardableResult
func saveModel(_ model: TransformerModel, _ dir: URL) throws -> URL {
    try model.save(directory: dir)
    try writeTokenizer(dir, vocab: model.config.vocabSize)
    return dir
}

/// A server on a free loopback port over the checkpoint in `dir`, closed at the end of the test.
func startServer(_ test: XCTestCase, directory dir: URL, options: CompletionService.Options? = nil) throws -> ScoringServer {
    let o = options ?? CompletionService.Options(servedName: "m")
    let server = try ScoringServer.start(service: try CompletionService(directory: dir, options: o), host: "127.0.0.1", port: 0)
    test.addTeardownBlock { server.close() }
    return server
}

/// A remote spec for a server on loopback.
func loopbackSpec(port: Int, tokenizer: URL, topK: Int = 20, model: String? = "m", apiKeyEnvironment: String? = nil,
                  timeout: Double = 30, retries: Int = 2) -> RemoteSpec {
    RemoteSpec(url: "http://127.0.0.1:\(port)", model: model, tokenizer: tokenizer, apiKeyEnvironment: apiKeyEnvironment, topK: topK,
               timeout: timeout, retries: retries, concurrency: 4)
}

/// One raw HTTP exchange: (status, JSON object or nil).
func request(port: Int, method: String = "POST", path: String = "/v1/completions", body: Data? = nil,
             headers: [String: String] = [:]) throws -> (Int, [String: Any]?) {
    var req = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: 30)
    req.httpMethod = method
    req.httpBody = body
    for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
    if body != nil { req.setValue("application/json", forHTTPHeaderField: "Content-Type") }
    final class Box: @unchecked Sendable { var status = -1; var data = Data(); var error: Error? }
    let box = Box(), done = DispatchSemaphore(value: 0)
    URLSession.shared.dataTask(with: req) { d, r, e in
        box.status = (r as? HTTPURLResponse)?.statusCode ?? -1
        box.data = d ?? Data()
        box.error = e
        done.signal()
    }.resume()
    done.wait()
    if let e = box.error { throw e }
    return (box.status, try? JSONSerialization.jsonObject(with: box.data) as? [String: Any])
}

/// A JSON body.
func json(_ o: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: o) }

/// A fixed group: prompt and three responses of different lengths (one a single token).
func sampleGroup(index: Int = 0, vocab: Int = 64) -> ScoringGroup {
    ScoringGroup(prompt: [1, 5, 9, 13, 2].map { $0 % vocab },
                 responses: [[7, 3, 60, 22, 8, 8, 41], [30], [4, 4, 19]].map { $0.map { $0 % vocab } }, index: index)
}
