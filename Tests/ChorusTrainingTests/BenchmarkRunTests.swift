import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTestSupport
import ChorusTokenizer
import ChorusTraining
import Foundation
import XCTest

/// Built-in benchmarks in run files (`[data] benchmark`, `[eval] benchmarks`) and as `chorus sft`
/// data (`chorus tasks generate`).
final class BenchmarkRunTests: XCTestCase {
    /// A run file whose prompts are add3's train split and whose eval rows hold the prompt
    /// file, add3 and max3, keyed by name in that order.
    func testBenchmarkPromptsAndEvalRows() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 2, extra: """

        [eval]
        data = "prompts.jsonl"
        benchmarks = ["add3", "max3"]
        every = 2
        k = 2
        problems = 3
        max_tokens = 4
        """)
        let text = try String(contentsOf: runFile, encoding: .utf8).replacingOccurrences(of: "prompts = \"prompts.jsonl\"", with: "benchmark = \"add3\"")
        try text.write(to: runFile, atomically: true, encoding: .utf8)
        let cfg = try OnPolicyConfig(contentsOf: runFile)
        XCTAssertNil(cfg.prompts)
        XCTAssertEqual(cfg.benchmark, "add3")
        XCTAssertEqual(cfg.eval?.benchmarks, ["add3", "max3"])
        let trainer = try OnPolicyTrainer(config: cfg)
        trainer.showProgress = false
        // steps × prompts_per_step problems of add3's train split, drawn with train.seed.
        XCTAssertEqual(trainer.prompts.map(\.prompt), try Benchmark.named("add3").problems(split: .train, count: 2 * 4, seed: 3).map(\.prompt))
        XCTAssertEqual(trainer.evaluators.map(\.dataset.name), ["prompts", "add3", "max3"])
        try trainer.train()
        let evals = try metricsRows(dir).filter { $0["eval"] != nil }
        XCTAssertEqual(evals.map { $0["step"] as? Int }, [0, 2])
        let raw = try String(contentsOf: dir.appendingPathComponent("out/metrics.jsonl"), encoding: .utf8)
        for line in raw.split(separator: "\n") where line.contains("\"eval\"") {
            XCTAssertTrue(line.contains("\"eval\":{\"prompts\":{"), String(line))
            let e = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["eval"] as? [String: [String: Any]])
            XCTAssertEqual(Set(e.keys), ["prompts", "add3", "max3"])
            XCTAssertTrue(e.values.allSatisfy { $0["problems"] as? Int == 3 && $0["k"] as? Int == 2 })
        }
        // The step-0 row of add3 is `chorus eval`'s evaluator on the initial student.
        let initial = try TransformerModel.load(directory: dir.appendingPathComponent("student"))
        let r = try Evaluator(dataset: try Benchmark.named("add3").dataset(split: .eval), tokenizer: trainer.tokenizer,
                              options: EvalOptions(k: 2, problems: 3, temperature: 0, maxTokens: 4, seed: 3 ^ 0xE7A1_5EED)).run(model: initial)
        XCTAssertTrue(raw.contains("\"add3\":" + r.summaryJSON), "\(raw)\n\(r.summaryJSON)")
    }

    /// Every misuse of the new keys is an error naming the key.
    func testBenchmarkKeyErrors() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 2)
        let base = try String(contentsOf: runFile, encoding: .utf8)
        func check(_ text: String, _ fragments: [String], line: UInt = #line) {
            XCTAssertThrowsError(try OnPolicyConfig(text: text, file: "run.toml", base: dir), line: line) { e in
                for f in fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", line: line) }
            }
        }
        let noPrompts = base.replacingOccurrences(of: "prompts = \"prompts.jsonl\"", with: "")
        check(base.replacingOccurrences(of: "prompts = \"prompts.jsonl\"", with: "prompts = \"prompts.jsonl\"\nbenchmark = \"add3\""),
              ["data.benchmark", "not both"])
        check(noPrompts, ["data.prompts", "missing", "data.benchmark"])
        // The control-token student has routing rows the teachers lack: the exact full-vocabulary
        // KL would be infinite, so the combination is refused naming the key.
        let routed = base.replacingOccurrences(of: "[teachers]", with: "[teachers]\naggregator = \"control-token\"")
        check(routed + "\n[objective]\nfull_vocabulary = true\n", ["full_vocabulary", "control-token"])
        check(noPrompts.replacingOccurrences(of: "[data]", with: "[data]\nbenchmark = \"add5\""), ["data.benchmark", "add5", "add3, add4, max3"])
        check(noPrompts.replacingOccurrences(of: "[data]", with: "[data]\nbenchmark = 3"), ["data.benchmark", "string"])
        check(noPrompts.replacingOccurrences(of: "[data]", with: "[data]\nbenchmark = \"add3\"\nepochs = 2")
                  .replacingOccurrences(of: "steps = 2\n", with: ""), ["data.epochs", "train.steps"])
        let withBench = noPrompts.replacingOccurrences(of: "[data]", with: "[data]\nbenchmark = \"add3\"")
        XCTAssertNoThrow(try OnPolicyConfig(text: withBench, file: "run.toml", base: dir))
        check(withBench + "\n[eval]\nbenchmarks = [\"add3\", \"mul2\"]\n", ["eval.benchmarks", "element 1", "mul2"])
        check(withBench + "\n[eval]\nbenchmarks = \"add3\"\n", ["eval.benchmarks", "array"])
        check(withBench + "\n[eval]\nbenchmarks = [\"add3\", 4]\n", ["eval.benchmarks", "element 1", "string"])
        check(withBench + "\n[eval]\nbenchmarks = [\"max3\", \"max3\"]\n", ["eval.benchmarks", "twice"])
        check(withBench + "\n[eval]\nevery = 2\n", ["eval.data", "missing", "eval.benchmarks"])
        check(withBench + "\n[eval]\ndata = \"x/add3.jsonl\"\nbenchmarks = [\"add3\"]\n", ["eval.data", "rename"])
        let ok = try OnPolicyConfig(text: withBench + "\n[eval]\nbenchmarks = [\"add4\"]\nproblems = 201\n", file: "run.toml", base: dir)
        XCTAssertNil(ok.eval?.data)
        // Asking for more eval problems than the split holds is refused when the trainer is built.
        XCTAssertThrowsError(try OnPolicyTrainer(config: ok)) { e in
            XCTAssertTrue("\(e)".contains("eval.problems = 201") && "\(e)".contains("add4"), "\(e)")
        }
    }

    /// `chorus tasks generate` writes a file that `chorus sft`'s data reader takes as is:
    /// every line becomes an example whose completion tokens decode to the answer (+ EOS),
    /// and a few SFT steps run on it.
    func testGeneratedFileTrainsWithSFT() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 3)
        let data = dir.appendingPathComponent("train.jsonl")
        try FileManager.default.removeItem(at: data)
        let (s, _, e) = try runChorus(["tasks", "generate", "--benchmark", "add3:3", "--benchmark", "max3", "--count", "64",
                                       "--seed", "2", "--output", data.path])
        XCTAssertEqual(s, 0, e)
        let tok = try Tokenizer(contentsOf: dir.appendingPathComponent("tokenizer.json"))
        let eos = try XCTUnwrap(tok.tokenToId("<|endoftext|>"))
        let (examples, dropped) = try loadSFTExamples(files: [data], tokenizer: tok, maxLength: 32, eos: eos)
        XCTAssertEqual(dropped, 0)
        XCTAssertEqual(examples.count, 64)
        let problems = try BenchmarkMixture(specs: ["add3:3", "max3"]).problems(split: .train, count: 64, seed: 2).map(\.problem)
        for (x, p) in zip(examples, problems) {
            XCTAssertEqual(try tok.decode(Array(x.tokens[..<x.promptLength])), p.prompt)
            XCTAssertEqual(try tok.decode(Array(x.tokens[x.promptLength...].dropLast())), p.answer)
            XCTAssertEqual(x.tokens.last, eos)
        }
        let trainer = try SFTTrainer(config: try SFTConfig(contentsOf: runFile))
        trainer.showProgress = false
        XCTAssertNotNil(try trainer.train())
    }
}
