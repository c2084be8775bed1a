import Foundation
import ChorusTensor
import ChorusTestSupport
import XCTest

/// The command-line contracts of issue A.
final class CLITests: XCTestCase {
    func json(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], "not one JSON object: \(s)")
    }

    func testLogprobsContract() throws {
        let (status, out, err) = try runChorus(["logprobs", "--model", Fixtures.model("qwen2_untied_f32").path, "--tokens", "5,17,3,88", "--top-k", "3"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(out.split(separator: "\n").count, 1)
        let o = try json(out)
        XCTAssertEqual(o["tokens"] as? [Int], [5, 17, 3, 88])
        let lps = try XCTUnwrap(o["logprobs"] as? [Any]), ents = try XCTUnwrap(o["entropy"] as? [Any]), tops = try XCTUnwrap(o["top"] as? [Any])
        XCTAssertEqual(lps.count, 4); XCTAssertEqual(ents.count, 4); XCTAssertEqual(tops.count, 4)
        XCTAssertTrue(lps[0] is NSNull); XCTAssertTrue(ents[0] is NSNull); XCTAssertTrue(tops[0] is NSNull)
        let expected = try Fixtures.expected("qwen2_untied_f32")[0].1  // same model; sequence starts 5,17,3,88
        let V = 96
        for i in 1..<4 {
            let lp = try XCTUnwrap((lps[i] as? NSNumber)?.floatValue)
            XCTAssertEqual(lp, expected[(i - 1) * V + [5, 17, 3, 88][i]], accuracy: 1e-4)
            let top = try XCTUnwrap(tops[i] as? [[NSNumber]])
            XCTAssertEqual(top.count, 3)
            XCTAssertGreaterThanOrEqual(top[0][1].floatValue, top[1][1].floatValue)
            XCTAssertEqual(top[0][1].floatValue, expected[(i - 1) * V + top[0][0].intValue], accuracy: 1e-4)
            XCTAssertGreaterThan(try XCTUnwrap((ents[i] as? NSNumber)?.floatValue), 0)
        }
    }

    func testSampleContract() throws {
        let args = ["sample", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,2,3", "--max-tokens", "6", "--seed", "11", "--top-p", "0.9"]
        let (s1, out1, err1) = try runChorus(args)
        XCTAssertEqual(s1, 0, err1)
        let (_, out2, _) = try runChorus(args)
        XCTAssertEqual(out1, out2, "same seed, same output")
        let o = try json(out1)
        let toks = try XCTUnwrap(o["tokens"] as? [Int]), lps = try XCTUnwrap(o["logprobs"] as? [Double])
        XCTAssertEqual(Array(toks.prefix(3)), [1, 2, 3])
        XCTAssertEqual(toks.count, 9); XCTAssertEqual(lps.count, 6)
        // The sampled tokens' log-probs agree with `chorus logprobs` on the result.
        let (_, lout, _) = try runChorus(["logprobs", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", toks.map(String.init).joined(separator: ",")])
        let full = try XCTUnwrap(try json(lout)["logprobs"] as? [Any])
        for i in 0..<6 { XCTAssertEqual(lps[i], (full[3 + i] as! NSNumber).doubleValue, accuracy: 1e-4) }
    }

    func testBenchContract() throws {
        let (status, out, err) = try runChorus(["bench", "--model", Fixtures.model("qwen3_tied_f32").path, "--batch", "2", "--seq", "16", "--decode-steps", "2", "--json"])
        XCTAssertEqual(status, 0, err)
        let o = try json(out)
        for k in ["forward_tokens_per_s", "forward_gflops", "decode_tokens_per_s"] {
            XCTAssertGreaterThan(try XCTUnwrap((o[k] as? NSNumber)?.doubleValue, k), 0)
        }
    }

    /// `--rollout` adds rollout_tokens_per_s next to the other keys (kept intact); a bad
    /// --sampling-precision is a one-line error naming the flag.
    func testBenchRolloutContract() throws {
        let (status, out, err) = try runChorus(["bench", "--model", Fixtures.model("qwen3_tied_f32").path, "--batch", "2", "--seq", "16",
                                                "--decode-steps", "2", "--no-train", "--rollout", "--sampling-precision", "bf16"])
        XCTAssertEqual(status, 0, err)
        let o = try json(out)
        for k in ["forward_tokens_per_s", "forward_gflops", "decode_tokens_per_s", "rollout_tokens_per_s", "sgemm_gflops"] {
            XCTAssertGreaterThan(try XCTUnwrap((o[k] as? NSNumber)?.doubleValue, k), 0)
        }
        XCTAssertEqual(o["sampling_precision"] as? String, "bf16")
        XCTAssertEqual(o["sampling_kernel"] as? String, HalfKernel.active ? "16-bit avx512" : "f32 (rounded weights)")
        let (bad, _, berr) = try runChorus(["bench", "--rollout", "--sampling-precision", "fp8"])
        XCTAssertNotEqual(bad, 0)
        XCTAssertTrue(berr.contains("--sampling-precision") && berr.contains("fp8"), berr)
    }

    /// Bad input: non-zero exit, one line on stderr naming the problem, no trap.
    func testBadInputIsOneLineError() throws {
        let tmp = temporaryDirectory(self)
        let broken = copyFixture("qwen3_tied_f32", self)
        let w = broken.appendingPathComponent("model.safetensors")
        try Data(try Data(contentsOf: w).prefix(300)).write(to: w)
        let unknown = copyFixture("qwen3_tied_f32", self)
        let cfgURL = unknown.appendingPathComponent("config.json")
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as! [String: Any]
        cfg["model_type"] = "mamba"
        try JSONSerialization.data(withJSONObject: cfg).write(to: cfgURL)
        let cases: [([String], String)] = [
            (["logprobs", "--model", broken.path, "--tokens", "1,2"], "model.safetensors"),
            (["logprobs", "--model", unknown.path, "--tokens", "1,2"], "mamba"),
            (["logprobs", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,96"], "96"),
            (["logprobs", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,x"], "'x'"),
            (["logprobs", "--model", tmp.appendingPathComponent("nope").path, "--tokens", "1,2"], "nope"),
            (["sample", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1", "--max-tokens", "2", "--top-p", "0"], "top-p"),
        ]
        for (args, fragment) in cases {
            let (status, out, err) = try runChorus(args)
            XCTAssertNotEqual(status, 0, "\(args)")
            XCTAssertTrue(out.isEmpty, "no stdout on error: \(out)")
            let lines = err.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "one-line error for \(args): \(err)")
            XCTAssertTrue(err.contains(fragment), "error for \(args) should name '\(fragment)': \(err)")
            XCTAssertLessThan(status, 128, "terminated by a signal: \(args)")
        }
    }
}
