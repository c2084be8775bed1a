import ChorusCache
import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// A tiny Qwen3-shaped config (fast enough for debug-build tests).
func tinyConfig(vocab: Int = 64) -> ModelConfig {
    ModelConfig(family: .qwen3, vocabSize: vocab, hiddenSize: 32, intermediateSize: 64, numLayers: 2,
                numHeads: 2, numKVHeads: 1, headDim: 16, tieWordEmbeddings: false)
}

/// A random tiny model; std 0.5 makes the distributions far from uniform.
func tinyModel(seed: UInt64, vocab: Int = 64) -> TransformerModel {
    let m = TransformerModel(config: tinyConfig(vocab: vocab))
    m.initializeRandom(seed: seed, std: 0.5)
    return m
}

/// Token strings t0, t1, … for a vocabulary of V.
func tokenNames(_ V: Int) -> [String] { (0..<V).map { "t\($0)" } }

/// Writes a minimal tokenizer.json (BPE, no merges) with the given tokens (id = index) and
/// added tokens (id, content).
func writeTokenizer(_ dir: URL, tokens: [String], added: [(Int, String)] = []) throws {
    var vocab: [String: Int] = [:]
    for (i, t) in tokens.enumerated() { vocab[t] = i }
    let obj: [String: Any] = [
        "version": "1.0",
        "model": ["type": "BPE", "vocab": vocab, "merges": [String]()],
        "added_tokens": added.map { ["id": $0.0, "content": $0.1, "special": true] },
    ]
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: dir.appendingPathComponent("tokenizer.json"))
}

/// Saves a random tiny model (config.json + model.safetensors + tokenizer.json) into dir.
@discardableResult
func writeModel(_ dir: URL, seed: UInt64, vocab: Int = 64, tokens: [String]? = nil) throws -> TransformerModel {
    let m = tinyModel(seed: seed, vocab: vocab)
    try m.save(directory: dir)
    try writeTokenizer(dir, tokens: tokens ?? tokenNames(vocab))
    return m
}

/// Encodes text as one id per character (mod V): enough to test template splicing.
final class CharEncoder: TextEncoder {
    let V: Int
    init(vocab: Int) { V = vocab }
    func encode(_ text: String) -> [Int] { text.unicodeScalars.map { Int($0.value) % V } }
}

/// A teacher wrapper that records every context it is asked to score.
final class RecordingTeacher: LocalTeacher {
    let inner: CheckpointTeacher
    var seenPrompts: [[Int]] = []
    init(_ t: CheckpointTeacher) { inner = t }
    var name: String { inner.name }
    var vocabularySize: Int { inner.vocabularySize }
    var isCacheable: Bool { true }
    func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint { try inner.fingerprint(memo: memo) }
    func context(for g: ScoringGroup) throws -> [Int] { g.prompt }
    func forward(_ g: ScoringGroup) throws -> TeacherForward {
        seenPrompts.append(g.prompt)
        return try inner.forward(g)
    }
}

/// Three in-memory teachers with distinct random weights, and a pool over them.
func tinyPool(_ K: Int = 3, vocab: Int = 64, weights: [Double]? = nil) throws -> TeacherPool {
    let ts: [any Teacher] = (0..<K).map { CheckpointTeacher(name: "t\($0)", model: tinyModel(seed: UInt64(10 + $0), vocab: vocab)) }
    return try TeacherPool(teachers: ts, weights: weights)
}

/// A fixed group: prompt and three responses of different lengths (one a single token).
func sampleGroup(index: Int = 0) -> ScoringGroup {
    ScoringGroup(prompt: [1, 5, 9, 13, 2], responses: [[7, 3, 60, 22, 8, 8, 41], [30], [4, 4, 19]], index: index)
}
