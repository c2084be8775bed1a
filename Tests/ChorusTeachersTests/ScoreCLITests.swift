import ChorusCache
import ChorusModel
import ChorusTeachers
import ChorusTokenizer
import Foundation
import ChorusTestSupport
import XCTest

/// The `chorus score` contract of issue D.
final class ScoreCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = temporaryDirectory(self)
        try writeModel(dir.appendingPathComponent("a"), seed: 1)
        try writeModel(dir.appendingPathComponent("b"), seed: 2)
        try "[[teacher]]\nname = \"small\"\npath = \"a\"\nweight = 1\n[[teacher]]\nname = \"big\"\npath = \"b\"\nweight = 3\n"
            .write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
        try "[[teacher]]\nname = \"only\"\npath = \"a\"\n".write(to: dir.appendingPathComponent("single.toml"), atomically: true, encoding: .utf8)
    }

    func score(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let (status, out, err) = try runChorus(["score"] + args)
        XCTAssertEqual(status, 0, err, file: file, line: line)
        XCTAssertEqual(out.split(separator: "\n").count, 1, "one JSON line", file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out, file: file, line: line)
    }

    func floats(_ o: [String: Any], _ k: String) throws -> [Double] { try XCTUnwrap(o[k] as? [NSNumber], k).map(\.doubleValue) }
    func teachers(_ o: [String: Any]) throws -> [String: [Double]] {
        try XCTUnwrap(o["teachers"] as? [String: [NSNumber]]).mapValues { $0.map(\.doubleValue) }
    }
    func weights(_ o: [String: Any]) throws -> [String: Double] {
        try XCTUnwrap(o["weights"] as? [String: NSNumber]).mapValues(\.doubleValue)
    }

    func testArithmeticReferenceIsTheMixtureOfTeachers() throws {
        let pool = dir.appendingPathComponent("pool.toml").path
        let o = try score(["--pool", pool, "--aggregator", "arithmetic", "--prompt-length", "2", "--tokens", "5,17,3,40,2,9"])
        XCTAssertEqual(o["positions"] as? [Int], [2, 3, 4, 5])
        let t = try teachers(o), ref = try floats(o, "reference"), ent = try floats(o, "reference_entropy")
        XCTAssertEqual(try weights(o), ["small": 0.25, "big": 0.75])
        XCTAssertEqual(t["small"]?.count, 4); XCTAssertEqual(t["big"]?.count, 4); XCTAssertEqual(ent.count, 4)
        for i in 0..<4 {
            let mix = 0.25 * Foundation.exp(t["small"]![i]) + 0.75 * Foundation.exp(t["big"]![i])
            XCTAssertEqual(ref[i], Foundation.log(mix), accuracy: 1e-5)
            XCTAssertGreaterThan(ent[i], 0)
        }
        // Key order is the contract's.
        let (_, out, _) = try runChorus(["score", "--pool", pool, "--aggregator", "geometric", "--tokens", "5,17,3"])
        let keys = ["\"positions\"", "\"teachers\"", "\"reference\"", "\"reference_entropy\"", "\"weights\""].map { out.range(of: $0)!.lowerBound }
        XCTAssertEqual(keys, keys.sorted())
    }

    func testSingleTeacherPoolEqualsLogprobs() throws {
        let toks = "5,17,3,40,2,9,63,0"
        let o = try score(["--pool", dir.appendingPathComponent("single.toml").path, "--aggregator", "geometric", "--tokens", toks])
        XCTAssertEqual(o["positions"] as? [Int], Array(1...7))
        let (status, lout, err) = try runChorus(["logprobs", "--model", dir.appendingPathComponent("a").path, "--tokens", toks, "--top-k", "0"])
        XCTAssertEqual(status, 0, err)
        let lp = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(lout.utf8)) as? [String: Any])?["logprobs"] as? [Any])
        let ref = try floats(o, "reference"), only = try XCTUnwrap(try teachers(o)["only"])
        XCTAssertEqual(try weights(o), ["only": 1])
        for i in 1...7 {
            let want = try XCTUnwrap(lp[i] as? NSNumber).doubleValue
            XCTAssertEqual(ref[i - 1], want, accuracy: 1e-5)
            XCTAssertEqual(only[i - 1], want, accuracy: 1e-5)
        }
    }

    func testSwitchAndRoutingWeights() throws {
        let pool = dir.appendingPathComponent("pool.toml").path
        let hard = try score(["--pool", pool, "--aggregator", "hard-switch", "--progress", "0.6", "--tokens", "5,17,3,40"])
        XCTAssertEqual(try weights(hard), ["small": 0, "big": 1])
        XCTAssertEqual(try floats(hard, "reference"), try XCTUnwrap(try teachers(hard)["big"]))
        let soft = try score(["--pool", pool, "--aggregator", "soft-switch", "--progress", "0.25", "--tokens", "5,17,3,40"])
        XCTAssertEqual(try weights(soft), ["small": 0.75, "big": 0.25])
        let t = try teachers(soft), ref = try floats(soft, "reference")
        for i in ref.indices {
            XCTAssertEqual(Foundation.exp(ref[i]), 0.75 * Foundation.exp(t["small"]![i]) + 0.25 * Foundation.exp(t["big"]![i]), accuracy: 1e-6)
        }
        // Control token <|teacher-1|> = id 65 (appended after V = 64); group 3 -> teacher 3 mod 2 = 1.
        let ct = try score(["--pool", pool, "--aggregator", "control-token", "--group", "3", "--prompt-length", "2", "--tokens", "65,5,17,3"])
        XCTAssertEqual(try weights(ct), ["small": 0, "big": 1])
        XCTAssertEqual(ct["positions"] as? [Int], [2, 3])
        let (_, lout, _) = try runChorus(["logprobs", "--model", dir.appendingPathComponent("b").path, "--tokens", "5,17,3", "--top-k", "0"])
        let lp = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(lout.utf8)) as? [String: Any])?["logprobs"] as? [Any])
        let cref = try floats(ct, "reference")
        for i in 0..<2 { XCTAssertEqual(cref[i], try XCTUnwrap(lp[i + 1] as? NSNumber).doubleValue, accuracy: 1e-5, "teacher saw the prompt without the control token") }
        let r1 = try score(["--pool", pool, "--aggregator", "random", "--group", "7", "--seed", "3", "--tokens", "5,17,3"])
        let r2 = try score(["--pool", pool, "--aggregator", "random", "--group", "7", "--seed", "3", "--tokens", "5,17,3"])
        XCTAssertEqual(try weights(r1), try weights(r2))
        XCTAssertEqual(try weights(r1).values.sorted(), [0, 1])
    }

    func testCacheRoundTrip() throws {
        let pool = dir.appendingPathComponent("pool.toml").path, cache = dir.appendingPathComponent("cache").path
        let args = ["--pool", pool, "--aggregator", "arithmetic", "--cache", cache, "--prompt-length", "2", "--tokens", "5,17,3,40,2"]
        let a = try score(args), b = try score(args)
        let ra = try floats(a, "reference"), rb = try floats(b, "reference")
        for i in ra.indices { XCTAssertEqual(ra[i], rb[i], accuracy: Double(ScorePrecision.logprobBound) * 2 + 1e-6) }
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: cache).isEmpty)
    }

    func testBadInputIsOneLineError() throws {
        let pool = dir.appendingPathComponent("pool.toml").path
        try writeModel(dir.appendingPathComponent("c"), seed: 3, tokens: tokenNames(40) + ["odd"] + tokenNames(64).suffix(23))
        try "[[teacher]]\nname = \"a\"\npath = \"a\"\n[[teacher]]\nname = \"c\"\npath = \"c\"\n"
            .write(to: dir.appendingPathComponent("mismatch.toml"), atomically: true, encoding: .utf8)
        try "[[teacher]]\nname = \"a\"\npath = \"a\"\ncolour = \"red\"\n".write(to: dir.appendingPathComponent("bad.toml"), atomically: true, encoding: .utf8)
        let cases: [([String], [String])] = [
            (["--pool", pool, "--aggregator", "median", "--tokens", "1,2"], ["median", "arithmetic, geometric"]),
            (["--pool", dir.appendingPathComponent("bad.toml").path, "--aggregator", "arithmetic", "--tokens", "1,2"], ["bad.toml", "colour"]),
            (["--pool", dir.appendingPathComponent("mismatch.toml").path, "--aggregator", "arithmetic", "--tokens", "1,2"],
             ["token id 40", "'t40'", "'odd'", "a/tokenizer.json", "c/tokenizer.json"]),
            (["--pool", pool, "--aggregator", "hard-switch", "--progress", "1.5", "--tokens", "1,2"], ["1.5", "[0, 1]"]),
            (["--pool", pool, "--aggregator", "arithmetic", "--tokens", "1,64"], ["64", "outside the vocabulary"]),
            (["--pool", pool, "--aggregator", "arithmetic", "--tokens", "1,-3"], ["-3"]),
            (["--pool", pool, "--aggregator", "arithmetic", "--tokens", "1,2", "--prompt-length", "2"], ["--prompt-length"]),
            (["--pool", dir.appendingPathComponent("none.toml").path, "--aggregator", "arithmetic", "--tokens", "1,2"], ["none.toml"]),
        ]
        for (args, frags) in cases {
            let (status, out, err) = try runChorus(["score"] + args)
            XCTAssertNotEqual(status, 0, "\(args)")
            XCTAssertLessThan(status, 128, "terminated by a signal: \(args)")
            XCTAssertTrue(out.isEmpty, "no stdout on error: \(out)")
            XCTAssertEqual(err.split(separator: "\n").filter { !$0.isEmpty }.count, 1, "one-line error for \(args): \(err)")
            for f in frags { XCTAssertTrue(err.contains(f), "error for \(args) should contain '\(f)': \(err)") }
        }
    }
}

final class CacheAndControlTokenTests: XCTestCase {
    func testScoreCacheStoreCountsHitsAndMatchesFreshScores() throws {
        let dir = temporaryDirectory(self)
        let pool = try tinyPool(2)
        let store = try ScoreCacheStore(directory: dir.appendingPathComponent("cache"))
        pool.store = store
        let agg = try pool.makeAggregator(name: "arithmetic")
        let g = sampleGroup()
        let fresh = try pool.score([g], aggregator: agg, progress: 0)[0]
        let cached = try pool.score([g], aggregator: agg, progress: 0)[0]
        let bound = Float(ScorePrecision.logprobBound) * 2 + 1e-6
        for (a, b) in zip(fresh, cached) {
            XCTAssertTrue(b.approximate)
            XCTAssertLessThan(maxDiff(a.logprobs, b.logprobs), bound)
        }
        let c = store.hitsAndMisses()
        XCTAssertEqual(c["t0"]?.hits, 3); XCTAssertEqual(c["t0"]?.misses, 1)
        XCTAssertEqual(c["t1"]?.hits, 3); XCTAssertEqual(c["t1"]?.misses, 1)
    }

    func testInstallControlTokensGrowsOrReusesRows() throws {
        let tok = try BPETrainer(vocabSize: 280, specialTokens: ["<|endoftext|>"], minFrequency: 1)
            .train(texts: ["the cat sat on the mat", "a teacher and a student"])
        let n = tok.vocabSize
        // Model rows exactly the tokenizer's size: the control tokens grow the model.
        let m = TransformerModel(config: tinyConfig(vocab: n))
        m.initializeRandom(seed: 1, std: 0.5)
        let (g, ids) = try ControlTokenInstaller.install(student: m, tokenizer: tok, teacherCount: 3)
        XCTAssertEqual(ids, [n, n + 1, n + 2])
        XCTAssertEqual(g.config.vocabSize, n + 3)
        XCTAssertEqual(tok.encode("<|teacher-2|>hi").first, n + 2)
        // Padding rows (V larger than the tokenizer): reused, reset to the mean, no growth.
        let tok2 = try BPETrainer(vocabSize: 280, minFrequency: 1).train(texts: ["the cat sat on the mat"])
        let padded = TransformerModel(config: tinyConfig(vocab: tok2.vocabSize + 8))
        padded.initializeRandom(seed: 2, std: 0.5)
        let (p2, ids2) = try ControlTokenInstaller.install(student: padded, tokenizer: tok2, teacherCount: 2)
        XCTAssertTrue(p2 === padded)
        XCTAssertEqual(ids2, [tok2.vocabSize - 2, tok2.vocabSize - 1].map { $0 })
        let C = 32
        XCTAssertEqual(Array(UnsafeBufferPointer(start: p2.parameter(p2.layout.embed) + ids2[0] * C, count: C)),
                       Array(UnsafeBufferPointer(start: p2.parameter(p2.layout.embed) + ids2[1] * C, count: C)), "both are the mean row")
    }
}
