import ChorusCore
import ChorusTasks
import ChorusTestSupport
import Foundation
import XCTest

/// The built-in benchmarks: exact formats, determinism, disjoint splits, mixtures and their errors.
final class BenchmarkTests: XCTestCase {
    /// Parses "a+b=" or "max a b=" back into its operands (nil when the format is off).
    func operands(_ prompt: String, _ name: String) -> (Int, Int)? {
        guard prompt.hasSuffix("=") else { return nil }
        let body = prompt.dropLast()
        let parts: [Substring]
        if name == "max3" {
            guard body.hasPrefix("max ") else { return nil }
            parts = body.dropFirst(4).split(separator: " ", omittingEmptySubsequences: false)
        } else {
            parts = body.split(separator: "+", omittingEmptySubsequences: false)
        }
        guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), String(a) == parts[0], String(b) == parts[1] else { return nil }
        return (a, b)
    }

    /// Every problem of every split parses back to operands in range, and its answer is
    /// recomputed independently: reversed digits of the sum for add3/add4, max for max3.
    func testFormatsAndAnswers() throws {
        XCTAssertEqual(Benchmark.names, ["add3", "add4", "max3", "rev"])
        XCTAssertEqual(Benchmark.all.map(\.role), [.inDistribution, .outOfDistribution, .retention, .retention])
        for b in Benchmark.all where b.name != "rev" {
            let range = b.name == "add4" ? 1000...9999 : 100...999
            var seenLow = false, seenHigh = false
            for p in try b.problems(split: .eval) + b.problems(split: .train, count: 3000, seed: 11) {
                let (x, y) = try XCTUnwrap(operands(p.prompt, b.name), "\(b.name): bad prompt \(p.prompt)")
                XCTAssertTrue(range.contains(x) && range.contains(y), p.prompt)
                seenLow = seenLow || x < range.lowerBound + 100
                seenHigh = seenHigh || y > range.upperBound - 100
                if b.name == "max3" {
                    XCTAssertEqual(p.answer, "\(x > y ? x : y)", p.prompt)
                } else {
                    // Reversed digits, recomputed by long addition from the least significant digit.
                    var digits = "", carry = 0, u = x, v = y
                    while u > 0 || v > 0 || carry > 0 {
                        let s = u % 10 + v % 10 + carry
                        digits.append(Character(String(s % 10))); carry = s / 10; u /= 10; v /= 10
                    }
                    XCTAssertEqual(p.answer, digits, p.prompt)
                }
            }
            XCTAssertTrue(seenLow && seenHigh, "\(b.name): operands should span \(range)")
        }
        // rev: "rev w=" with w of 3...5 letters a...z; the answer is w backwards; every length
        // and both ends of the alphabet occur.
        var lengths = Set<Int>(), letters = Set<Character>()
        let rev = try Benchmark.named("rev")
        for p in try rev.problems(split: .eval) + rev.problems(split: .train, count: 3000, seed: 11) {
            XCTAssertTrue(p.prompt.hasPrefix("rev ") && p.prompt.hasSuffix("="), p.prompt)
            let w = p.prompt.dropFirst(4).dropLast()
            XCTAssertTrue((3...5).contains(w.count) && w.allSatisfy { ("a"..."z").contains($0) }, p.prompt)
            XCTAssertEqual(p.answer, String(w.reversed()), p.prompt)
            lengths.insert(w.count); letters.formUnion(w)
        }
        XCTAssertEqual(lengths, [3, 4, 5])
        XCTAssertTrue(letters.contains("a") && letters.contains("z"))
        // The worked form of the brief's examples.
        XCTAssertEqual(String(String(237 + 682).reversed()), "919")
        XCTAssertEqual(String(String(967 + 921).reversed()), "8881")
    }

    /// Golden problems: the generators are pinned byte for byte (the teacher ladder was trained
    /// on them); a change to the RNG use or the formats fails here.
    func testGoldenProblems() throws {
        func first2(_ n: String, _ s: Benchmark.Split, seed: UInt64 = 0) throws -> [Problem] {
            try Benchmark.named(n).problems(split: s, count: 2, seed: seed)
        }
        XCTAssertEqual(try first2("add3", .eval), [Problem(prompt: "702+228=", answer: "039"), Problem(prompt: "594+305=", answer: "998")])
        XCTAssertEqual(try first2("add4", .eval), [Problem(prompt: "3665+8620=", answer: "58221"), Problem(prompt: "8025+1771=", answer: "6979")])
        XCTAssertEqual(try first2("max3", .eval), [Problem(prompt: "max 980 723=", answer: "980"), Problem(prompt: "max 253 434=", answer: "434")])
        XCTAssertEqual(try first2("add3", .train, seed: 7), [Problem(prompt: "501+316=", answer: "718"), Problem(prompt: "363+502=", answer: "568")])
        XCTAssertEqual(try first2("add4", .train, seed: 7), [Problem(prompt: "3639+2380=", answer: "9106"), Problem(prompt: "4702+4083=", answer: "5878")])
        XCTAssertEqual(try first2("max3", .train, seed: 7), [Problem(prompt: "max 324 813=", answer: "813"), Problem(prompt: "max 152 304=", answer: "304")])
    }

    /// Same seed, same problems; another seed, other problems; the eval split ignores the seed,
    /// holds `evalSize` distinct prompts, and its first N are a prefix of the whole.
    func testDeterminism() throws {
        for b in Benchmark.all {
            let t1 = try b.problems(split: .train, count: 500, seed: 3), t2 = try b.problems(split: .train, count: 500, seed: 3)
            XCTAssertEqual(t1, t2)
            XCTAssertNotEqual(t1, try b.problems(split: .train, count: 500, seed: 4))
            XCTAssertEqual(Array(t1.prefix(100)), try b.problems(split: .train, count: 100, seed: 3), "a shorter request is a prefix")
            let e = try b.problems(split: .eval, seed: 1)
            XCTAssertEqual(e, try b.problems(split: .eval, seed: 99))
            XCTAssertEqual(e.count, b.evalSize)
            XCTAssertEqual(Set(e.map(\.prompt)).count, b.evalSize, "eval prompts are distinct")
            XCTAssertEqual(try b.problems(split: .eval, count: 10), Array(e.prefix(10)))
            let d = try b.dataset(split: .eval, count: 5)
            XCTAssertEqual(d.name, b.name)
            XCTAssertEqual(d.records.map(\.prompt), e.prefix(5).map(\.prompt))
            XCTAssertEqual(d.records.map(\.answer), e.prefix(5).map(\.answer))
            XCTAssertEqual(d.records.map(\.line), [1, 2, 3, 4, 5])
        }
        // Different benchmarks' eval splits are drawn from different seeds.
        XCTAssertNotEqual(Benchmark.nameSeed("add3"), Benchmark.nameSeed("max3"))
    }

    /// The train stream never yields an eval prompt: on a benchmark of 12 possible problems
    /// with 5 held out (a stream without the exclusion would hit them at once), and on add3.
    func testTrainSplitExcludesEvalPrompts() throws {
        let tiny = Benchmark(name: "tiny", description: "x", role: .inDistribution, evalSize: 5) { rng in
            let a = rng.int(below: 12)
            return Problem(prompt: "p\(a)", answer: "\(a)")
        }
        let eval = Set(tiny.evalProblems.map(\.prompt))
        XCTAssertEqual(eval.count, 5)
        let train = try tiny.problems(split: .train, count: 2000, seed: 1)
        XCTAssertTrue(eval.isDisjoint(with: train.map(\.prompt)))
        XCTAssertEqual(Set(train.map(\.prompt)).count, 7, "every other problem still appears")
        for b in Benchmark.all {
            let e = Set(try b.problems(split: .eval).map(\.prompt))
            XCTAssertTrue(e.isDisjoint(with: try b.problems(split: .train, count: 20_000, seed: 5).map(\.prompt)), b.name)
        }
    }

    /// Mixture proportions follow the weights (3:1 within a few points over 4000), a zero
    /// weight contributes nothing, problems interleave, and a mixture of one is that benchmark.
    func testMixtureWeights() throws {
        let m = try BenchmarkMixture(specs: ["add3:3", "max3", "add4:0"])
        let ps = try m.problems(split: .train, count: 4000, seed: 2)
        let add3 = ps.filter { $0.benchmark == "add3" }.count, max3 = ps.filter { $0.benchmark == "max3" }.count
        XCTAssertEqual(add3 + max3, 4000)
        XCTAssertEqual(Double(add3) / 4000, 0.75, accuracy: 0.03)
        XCTAssertTrue(ps.prefix(40).contains { $0.benchmark == "max3" } && ps.prefix(40).contains { $0.benchmark == "add3" }, "interleaved")
        // Each component's problems are its own train stream, in order.
        XCTAssertEqual(ps.filter { $0.benchmark == "max3" }.map(\.problem), try Benchmark.named("max3").problems(split: .train, count: max3, seed: 2))
        XCTAssertEqual(try m.problems(split: .train, count: 4000, seed: 2).map(\.problem), ps.map(\.problem))
        let one = try BenchmarkMixture(specs: ["add4"])
        XCTAssertEqual(try one.problems(split: .train, count: 50, seed: 9).map(\.problem), try Benchmark.named("add4").problems(split: .train, count: 50, seed: 9))
        XCTAssertEqual(try one.problems(split: .eval, count: 200, seed: 9).map(\.problem), try Benchmark.named("add4").problems(split: .eval))
        // An eval mixture walks each eval split in order.
        let ev = try BenchmarkMixture(specs: ["add3", "max3"]).problems(split: .eval, count: 300, seed: 1)
        XCTAssertEqual(ev.filter { $0.benchmark == "add3" }.map(\.problem), Array(try Benchmark.named("add3").problems(split: .eval).prefix(ev.filter { $0.benchmark == "add3" }.count)))
        // JSONL lines: prompt, completion = answer.
        let text = String(decoding: try one.jsonl(split: .eval, count: 2, seed: 0), as: UTF8.self)
        XCTAssertEqual(text, "{\"prompt\":\"3665+8620=\",\"completion\":\"58221\",\"answer\":\"58221\"}\n{\"prompt\":\"8025+1771=\",\"completion\":\"6979\",\"answer\":\"6979\"}\n")
    }

    /// Every bad argument is a one-line error naming it.
    func testHostileArguments() throws {
        assertThrows(try Benchmark.named("add5"), containing: ["'add5'", "add3, add4, max3, rev"])
        assertThrows(try BenchmarkMixture(specs: ["ADD3"]), containing: ["'ADD3'", "known"])
        assertThrows(try BenchmarkMixture(specs: ["add3:x"]), containing: ["add3:x", "'x' is not a number"])
        assertThrows(try BenchmarkMixture(specs: [":2"]), containing: ["':2'", "no name"])
        assertThrows(try BenchmarkMixture(specs: ["add3:-1"]), containing: ["add3", "finite number >= 0", "-1"])
        assertThrows(try BenchmarkMixture(specs: ["add3:nan"]), containing: ["add3", "finite"])
        assertThrows(try BenchmarkMixture(specs: ["add3:inf"]), containing: ["add3", "finite"])
        assertThrows(try BenchmarkMixture(specs: ["add3:0", "max3:0"]), containing: ["all zero", "add3, max3"])
        assertThrows(try BenchmarkMixture(specs: ["add3", "add3:2"]), containing: ["'add3' given twice"])
        assertThrows(try BenchmarkMixture(specs: []), containing: ["no benchmark"])
        let m = try BenchmarkMixture(specs: ["add3"])
        assertThrows(try m.problems(split: .train, count: 0, seed: 0), containing: ["count", "got 0"])
        assertThrows(try m.problems(split: .train, count: Benchmark.maxCount + 1, seed: 0), containing: ["count", "\(Benchmark.maxCount + 1)"])
        assertThrows(try m.problems(split: .eval, count: 201, seed: 0), containing: ["add3", "200 problems", "201"])
        assertThrows(try Benchmark.named("max3").problems(split: .eval, count: 201), containing: ["max3", "201"])
        assertThrows(try Benchmark.named("max3").problems(split: .train, count: -5), containing: ["got -5"])
        assertThrows(try Benchmark.named("max3").problems(split: .train), containing: ["count"])
    }

    /// `chorus tasks list` and `chorus tasks generate`: the JSON, the file, the summary and
    /// the one-line errors (nothing written on error).
    func testTasksCLI() throws {
        let dir = temporaryDirectory(self)
        let (s0, list, e0) = try runChorus(["tasks", "list"])
        XCTAssertEqual(s0, 0, e0)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["name"] as? String }, ["add3", "add4", "max3", "rev"])
        XCTAssertEqual(rows.map { $0["role"] as? String }, ["in-distribution", "out-of-distribution", "retention", "retention"])
        XCTAssertEqual(rows.map { $0["eval_size"] as? Int }, [200, 200, 200, 200])
        XCTAssertTrue(rows.allSatisfy { ($0["description"] as? String)?.isEmpty == false })

        let out = dir.appendingPathComponent("mix.jsonl")
        let args = ["tasks", "generate", "--benchmark", "add3:3", "--benchmark", "max3", "--count", "400", "--seed", "4", "--output", out.path]
        let (s1, o1, e1) = try runChorus(args)
        XCTAssertEqual(s1, 0, e1)
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(o1.utf8)) as? [String: Any])
        XCTAssertEqual(summary["count"] as? Int, 400)
        XCTAssertEqual(summary["split"] as? String, "train")
        let counts = try XCTUnwrap(summary["benchmarks"] as? [String: Int])
        XCTAssertEqual(counts.values.reduce(0, +), 400)
        let bytes = try Data(contentsOf: out)
        XCTAssertEqual(Array(bytes), try BenchmarkMixture(specs: ["add3:3", "max3"]).jsonl(split: .train, count: 400, seed: 4))
        let d = try PromptDataset(contentsOf: out)
        XCTAssertEqual(d.count, 400)
        XCTAssertEqual(d.records.filter { $0.prompt.hasPrefix("max ") }.count, counts["max3"])
        XCTAssertTrue(d.records.allSatisfy { $0.answer == $0.fields["completion"] })

        let eval = dir.appendingPathComponent("eval.jsonl")
        let (s2, _, e2) = try runChorus(["tasks", "generate", "--benchmark", "max3", "--split", "eval", "--count", "200", "--output", eval.path])
        XCTAssertEqual(s2, 0, e2)
        XCTAssertEqual(try PromptDataset(contentsOf: eval).records.map(\.prompt), try Benchmark.named("max3").problems(split: .eval).map(\.prompt))

        let bad = dir.appendingPathComponent("bad.jsonl").path
        for (extra, fragments) in [
            (["--benchmark", "add9", "--count", "3"], ["unknown benchmark 'add9'", "add3, add4, max3"]),
            (["--benchmark", "add3:-2", "--count", "3"], ["--benchmark", "add3", ">= 0"]),
            (["--benchmark", "add3:abc", "--count", "3"], ["--benchmark", "'abc' is not a number"]),
            (["--benchmark", "add3:0", "--count", "3"], ["all zero"]),
            (["--benchmark", "add3", "--count", "0"], ["--count", "got 0"]),
            (["--benchmark", "add3", "--count", "-3"], ["--count", "got -3"]),
            (["--benchmark", "add3", "--count", "20000000"], ["--count", "20000000"]),
            (["--benchmark", "add3", "--count", "3", "--split", "test"], ["--split", "'test'"]),
            (["--benchmark", "add3", "--count", "201", "--split", "eval"], ["add3", "200 problems", "201"]),
            (["--count", "3"], ["--benchmark", "at least one"]),
        ] {
            let (s, o, e) = try runChorus(["tasks", "generate", "--output", bad] + extra)
            XCTAssertNotEqual(s, 0, "\(extra)")
            XCTAssertEqual(o, "")
            for f in fragments { XCTAssertTrue(e.contains(f), "\(extra): '\(e)' lacks '\(f)'") }
            XCTAssertEqual(e.split(separator: "\n").count, 1, e)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
        let missing = dir.appendingPathComponent("no/such/dir/x.jsonl").path
        let (s3, _, e3) = try runChorus(["tasks", "generate", "--benchmark", "add3", "--count", "3", "--output", missing])
        XCTAssertNotEqual(s3, 0)
        XCTAssertTrue(e3.contains(missing) && e3.contains("does not exist"), e3)
        let (s4, _, e4) = try runChorus(["tasks", "generate", "--benchmark", "add3", "--count", "3", "--output", dir.path])
        XCTAssertNotEqual(s4, 0)
        XCTAssertTrue(e4.contains("is a directory"), e4)
    }

    /// `chorus eval --benchmark` (repeatable, beside --data): one JSON object keyed by file stem
    /// and benchmark name, equal to the in-process evaluator on the benchmark's eval split;
    /// `--list` prints `tasks list`; bad names and counts are one-line errors.
    func testEvalBenchmarkCLI() throws {
        let t = try TinyTask(self)
        let data = try t.writeData("mine.jsonl", answers: ["1", "2", "3", "4", "5", "6"])
        let (s, out, err) = try runChorus(["eval", "--model", t.modelDir.path, "--data", data.path, "--benchmark", "add3",
                                           "--benchmark", "max3", "--k", "2", "--problems", "3", "--max-tokens", "4", "--seed", "3"])
        XCTAssertEqual(s, 0, err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: [String: Any]])
        XCTAssertEqual(Set(obj.keys), ["mine", "add3", "max3"])
        XCTAssertTrue(out.hasPrefix("{\"mine\":"), "--data first: \(out)")
        let opts = EvalOptions(k: 2, problems: 3, maxTokens: 4, seed: 3)
        for name in ["add3", "max3"] {
            let inner = try XCTUnwrap(obj[name])
            XCTAssertEqual(inner["problems"] as? Int, 3)
            XCTAssertEqual(inner["k"] as? Int, 2)
            let r = try Evaluator(dataset: try Benchmark.named(name).dataset(split: .eval), tokenizer: t.tokenizer, options: opts).run(model: t.model)
            XCTAssertEqual(out.contains("\"\(name)\":\(r.summaryJSON)"), true, "\(name): \(out) vs \(r.summaryJSON)")
        }
        let (sl, list, el) = try runChorus(["eval", "--list"])
        XCTAssertEqual(sl, 0, el)
        XCTAssertEqual(list, try runChorus(["tasks", "list"]).1)

        let dup = try t.writeData("add3.jsonl", answers: ["1", "2", "3", "4", "5", "6"])
        for (args, fragments) in [
            (["--benchmark", "add7"], ["unknown benchmark 'add7'", "add3, add4, max3"]),
            (["--benchmark", "add3", "--problems", "201"], ["add3", "200 problems", "201"]),
            (["--benchmark", "add3", "--data", dup.path], ["'add3'", "give each once"]),
            ([String](), ["--data", "--benchmark"]),
        ] {
            let (st, o, e) = try runChorus(["eval", "--model", t.modelDir.path] + args)
            XCTAssertNotEqual(st, 0, "\(args)")
            XCTAssertEqual(o, "")
            for f in fragments { XCTAssertTrue(e.contains(f), "\(args): '\(e)' lacks '\(f)'") }
            XCTAssertEqual(e.split(separator: "\n").count, 1, e)
        }
        let (sm, _, em) = try runChorus(["eval", "--benchmark", "add3"])
        XCTAssertNotEqual(sm, 0)
        XCTAssertTrue(em.contains("--model"), em)
    }
}
