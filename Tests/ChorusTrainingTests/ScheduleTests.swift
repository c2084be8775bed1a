import ChorusConfig
import ChorusModel
import ChorusTasks
import ChorusTeachers
import ChorusTokenizer
import ChorusTraining
import Foundation
import XCTest

/// Every recipe under schedules/ loads and validates: on-policy run files (`[teachers]`) through
/// `OnPolicyConfig` and their aggregator, pool manifests (`[[teacher]]`) through `PoolManifest`,
/// the rest through `SFTConfig`. Failures name the file.
final class ScheduleTests: XCTestCase {
    /// The repository root (this file is Tests/ChorusTrainingTests/ScheduleTests.swift).
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .standardizedFileURL

    /// Every .toml under schedules/, sorted, as (path relative to the root, URL).
    func scheduleFiles() throws -> [(String, URL)] {
        let dir = root.appendingPathComponent("schedules")
        let e = try XCTUnwrap(FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil))
        return e.compactMap { $0 as? URL }.filter { $0.pathExtension == "toml" }
            .map { (String($0.standardizedFileURL.path.dropFirst(root.path.count + 1)), $0.standardizedFileURL) }
            .sorted { $0.0 < $1.0 }
    }

    /// A small byte-level BPE tokenizer written once per test (stands in for one a recipe builds).
    func standInTokenizer() throws -> URL {
        if let t = tokenizerFile { return t }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-schedules-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let tok = try BPETrainer(vocabSize: 280, specialTokens: ["<|endoftext|>"]).train(texts: ["237+682=919", "max 324 813=813"])
        let url = dir.appendingPathComponent("tokenizer.json")
        try tok.write(to: url)
        tokenizerFile = url
        return url
    }
    var tokenizerFile: URL?

    /// Whether `url` lies inside `dir`.
    func inside(_ url: URL, _ dir: String) -> Bool { url.standardizedFileURL.path.hasPrefix(root.appendingPathComponent(dir).path + "/") }

    func testEveryScheduleLoadsAndTheOptionsAreCovered() throws {
        let files = try scheduleFiles()
        XCTAssertGreaterThanOrEqual(files.count, 20, "schedules/ should hold the recipes")
        // The bundled ladder: checked on disk only once it is committed.
        let ladder = FileManager.default.fileExists(atPath: root.appendingPathComponent("teachers/pool.toml").path)
        var aggregators = Set<String>(), divergences = Set<String>(), corrections = Set<String>(), filters = Set<String>()
        var fullVocabulary = false, selfTeacher = false
        var outputs: [String: String] = [:]
        for (rel, url) in files {
            func check(_ ok: Bool, _ what: String, line: UInt = #line) { XCTAssertTrue(ok, "\(rel): \(what)", line: line) }
            func exists(_ u: URL) -> Bool { FileManager.default.fileExists(atPath: u.path) }
            do {
                let table = try ConfigTable(string: try String(contentsOf: url, encoding: .utf8), file: rel)
                var output: URL?
                if table.has("teacher") {
                    let m = try PoolManifest.load(contentsOf: url)
                    for t in m.teachers { if let p = t.path, ladder || !inside(p, "teachers") { check(exists(p), "teacher \(t.name): \(p.path) does not exist") } }
                } else if table.has("teachers") {
                    let c = try OnPolicyConfig(contentsOf: url)
                    output = c.outputDir
                    check(inside(c.student, "teachers") || inside(c.student, "runs"), "model.init \(c.student.path) is outside teachers/ and runs/")
                    check(inside(c.pool, "teachers") || inside(c.pool, "schedules"), "teachers.pool \(c.pool.path) is outside teachers/ and schedules/")
                    if ladder || !inside(c.pool, "teachers") { check(exists(c.pool), "teachers.pool \(c.pool.path) does not exist") }
                    if ladder && inside(c.student, "teachers") { check(exists(c.student.appendingPathComponent("config.json")), "model.init \(c.student.path) is not a model directory") }
                    // The pool (when present) gives the teacher count; the documented ladder has 4.
                    var teachers = 4
                    // A curriculum's stages name the pool's teachers (t1..t4 for the ladder).
                    var curriculum = try c.curriculum?.resolve(teacherNames: (1...teachers).map { "t\($0)" })
                    if exists(c.pool) {
                        let m = try PoolManifest.load(contentsOf: c.pool)
                        teachers = m.teachers.count
                        curriculum = try c.curriculum(manifest: m)
                        if m.teachers.contains(where: { $0.kind == .selfTeacher }) && table.has("teachers") { selfTeacher = true }
                        for t in m.teachers { if let p = t.path, ladder || !inside(p, "teachers") { check(exists(p), "pool teacher \(t.name): \(p.path) does not exist") } }
                    }
                    let options = AggregatorOptions(boundaries: c.boundaries, softSwitchLogSpace: c.softSwitchLogSpace, seed: c.opt.seed,
                                                    controlTokenIds: Array(1000..<(1000 + teachers)), curriculum: curriculum)
                    _ = try AggregatorFactory.make(name: c.aggregator, teacherCount: teachers, options: options)
                    if c.benchmark != nil { _ = try c.promptDataset() } else if let p = c.prompts { check(exists(p), "data.prompts \(p.path) does not exist") }
                    if c.eval?.data == nil { _ = try c.evalDatasets() }
                    let o = try table.table("objective")
                    aggregators.insert(c.aggregator)
                    divergences.insert(try o?.string("divergence") ?? "reverse-kl")
                    corrections.insert(c.correction.rawValue)
                    if let f = c.filter { filters.insert(f.rawValue) }
                    fullVocabulary = fullVocabulary || c.fullVocabulary
                } else {
                    // A tokenizer that a recipe's earlier step writes (under runs/, or teachers/
                    // before the ladder is committed) is stood in for by a test tokenizer.
                    var text = try String(contentsOf: url, encoding: .utf8)
                    if let tok = try table.table("model")?.string("tokenizer") {
                        let u = tok.hasPrefix("/") ? URL(fileURLWithPath: tok) : url.deletingLastPathComponent().appendingPathComponent(tok)
                        if !exists(u) && (inside(u, "runs") || (!ladder && inside(u, "teachers"))) {
                            text = try applyOverrides(["model.tokenizer=\"\(try standInTokenizer().path)\""], to: text, file: rel)
                        }
                    }
                    output = try SFTConfig(text: text, file: rel, base: url.deletingLastPathComponent()).outputDir
                }
                if let out = output?.standardizedFileURL.path {
                    check(inside(URL(fileURLWithPath: out), "runs"), "output.dir \(out) is outside runs/")
                    if let other = outputs[out] { XCTFail("\(rel): output.dir \(out) is also \(other)'s (a second run would be refused)") }
                    outputs[out] = rel
                }
            } catch {
                XCTFail("\(rel): \(error)")
            }
        }
        XCTAssertEqual(Set(AggregatorFactory.names).subtracting(aggregators), [], "aggregators without a recipe")
        XCTAssertEqual(Set(Divergence.names).subtracting(divergences), [], "divergences without a recipe")
        XCTAssertEqual(Set(CorrectionMode.allCases.map(\.rawValue)).subtracting(corrections), [], "correction modes without a recipe")
        XCTAssertEqual(Set(FilterScore.allCases.map(\.rawValue)).subtracting(filters), [], "filters without a recipe")
        XCTAssertTrue(fullVocabulary, "no recipe with objective.full_vocabulary = true")
        XCTAssertTrue(selfTeacher, "no recipe with a self-teacher")
        XCTAssertGreaterThanOrEqual(files.filter { $0.0.hasPrefix("schedules/curricula/") }.count, 3, "the curriculum examples")
        // default.toml is the demo recipe.
        let d = try OnPolicyConfig(contentsOf: root.appendingPathComponent("schedules/default.toml"))
        XCTAssertEqual(d.student.standardizedFileURL, root.appendingPathComponent("teachers/student"))
        XCTAssertEqual(d.pool.standardizedFileURL, root.appendingPathComponent("teachers/pool.toml"))
        XCTAssertEqual(d.benchmark, "add3")
        XCTAssertEqual(d.eval?.benchmarks, ["add3", "add4", "rev"])
        XCTAssertEqual(d.outputDir.standardizedFileURL, root.appendingPathComponent("runs/demo/opd"))
    }

    /// The walk itself fails on a bad file, naming it (a planted error must not pass).
    func testABadRecipeIsNamed() throws {
        let bad = "[model]\ninit = \"x\"\n[teachers]\npool = \"p.toml\"\naggregator = \"median\"\n[data]\nbenchmark = \"add3\"\n"
        XCTAssertThrowsError(try OnPolicyConfig(text: bad, file: "schedules/bad.toml", base: root)) { e in
            XCTAssertTrue("\(e)".contains("schedules/bad.toml") && "\(e)".contains("teachers.aggregator"), "\(e)")
        }
        // Hard-switch boundaries are checked against the teacher count.
        XCTAssertThrowsError(try AggregatorFactory.make(name: "hard-switch", teacherCount: 4, options: AggregatorOptions(boundaries: [0.5])))
    }

    /// Every on-policy recipe trains: copied beside a stand-in ladder of tiny random models
    /// (teachers/student, teachers/t1..t4, teachers/pool.toml) and run for one small step
    /// (overrides shrink the batch and the evaluation), writing its step and eval rows.
    func testEveryRecipeRunsOneStepOnAStandInLadder() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-recipes-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: work) }
        let teachers = work.appendingPathComponent("teachers")
        try FileManager.default.createDirectory(at: teachers, withIntermediateDirectories: true)
        let texts = try Benchmark.all.flatMap { b in try b.problems(split: .train, count: 40, seed: 1).map { $0.prompt + $0.answer } }
        let tok = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: texts)
        let eos = try XCTUnwrap(tok.tokenToId("<|endoftext|>"))
        for (i, name) in ["student", "t1", "t2", "t3", "t4"].enumerated() {
            let m = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: tok.vocabSize, hiddenSize: 16, intermediateSize: 32,
                                                          numLayers: 1, numHeads: 2, numKVHeads: 1, headDim: 8, ropeTheta: 10_000))
            m.initializeRandom(seed: UInt64(i + 1), std: 0.2)
            m.setSpecialTokenIds(eos: [eos])
            let d = teachers.appendingPathComponent(name)
            try m.save(directory: d)
            try tok.write(to: d.appendingPathComponent("tokenizer.json"))
        }
        try (1...4).map { "[[teacher]]\nname = \"t\($0)\"\npath = \"t\($0)\"\n" }.joined(separator: "\n")
            .write(to: teachers.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
        let small = ["train.steps=1", "rollout.prompts_per_step=2", "rollout.group_size=2", "eval.problems=2", "eval.k=1", "train.threads=1"]
        var ran = 0
        for (rel, url) in try scheduleFiles() {
            let text = try String(contentsOf: url, encoding: .utf8)
            guard try ConfigTable(string: text, file: rel).has("teachers") else { continue }
            let copy = work.appendingPathComponent(rel)
            try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
            try applyOverrides(small, to: text, file: rel).write(to: copy, atomically: true, encoding: .utf8)
            // A recipe's own pool (schedules/pools/...) travels with it.
            let pools = url.deletingLastPathComponent().appendingPathComponent("pools")
            let poolsCopy = copy.deletingLastPathComponent().appendingPathComponent("pools")
            if FileManager.default.fileExists(atPath: pools.path) && !FileManager.default.fileExists(atPath: poolsCopy.path) {
                try FileManager.default.copyItem(at: pools, to: poolsCopy)
            }
            do {
                let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: copy))
                trainer.showProgress = false
                XCTAssertNotNil(try trainer.train(), rel)
                let metrics = try String(contentsOf: trainer.loop.run.url.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
                XCTAssertTrue(metrics.contains("\"add3\":{") && metrics.contains("\"step\":1"), "\(rel): \(metrics)")
                ran += 1
            } catch {
                XCTFail("\(rel): \(error)")
            }
        }
        XCTAssertGreaterThanOrEqual(ran, 20)
    }
}
