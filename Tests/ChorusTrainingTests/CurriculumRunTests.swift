import ChorusConfig
import ChorusTeachers
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// A `[curriculum]` in a run file: how it combines with `teachers.aggregator` and a pool
/// manifest's own curriculum, and a real run whose metrics log the stage weights.
final class CurriculumRunTests: XCTestCase {
    /// The tiny OPD setup with a two-teacher pool, weak (the student itself) then strong.
    func setup(steps: Int, curriculum: String, pool extraPool: String = "") throws -> (dir: URL, runFile: URL) {
        let (dir, runFile) = try makeOPDSetup(self, steps: steps, extra: "\n" + curriculum)
        try ("[[teacher]]\nname = \"weak\"\npath = \"student\"\n\n[[teacher]]\nname = \"strong\"\npath = \"teacher\"\n" + extraPool)
            .write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
        return (dir, runFile)
    }

    let halfway = """
        [curriculum]
        transition = "step"
        [[curriculum.stage]]
        at = 0
        weights = { weak = 1, strong = 0 }
        [[curriculum.stage]]
        at = 0.5
        weights = { weak = 1, strong = 3 }
        """

    func manifest(_ dir: URL) throws -> PoolManifest { try PoolManifest.load(contentsOf: dir.appendingPathComponent("pool.toml")) }

    func testCurriculumIsTheAggregator() throws {
        let (dir, runFile) = try setup(steps: 2, curriculum: halfway)
        let c = try OnPolicyConfig(contentsOf: runFile)
        XCTAssertEqual(c.aggregator, "curriculum", "a [curriculum] table makes the aggregator")
        let cur = try XCTUnwrap(try c.curriculum(manifest: try manifest(dir)))
        XCTAssertEqual(cur.weights(at: 0.7), [0.25, 0.75])
        XCTAssertEqual(try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.aggregator=\"curriculum\""]).aggregator, "curriculum")
        // Another aggregator beside it is refused, as are the switch strategies' own keys.
        for name in ["arithmetic", "hard-switch", "soft-switch", "control-token"] {
            assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.aggregator=\"\(name)\""]),
                         containing: [runFile.path, "teachers.aggregator", "\"\(name)\" conflicts with the [curriculum] table"])
        }
        assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.boundaries=[0.5]"]),
                     containing: ["teachers.boundaries", "does not apply to aggregator \"curriculum\""])
        assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.soft_switch_log_space=true"]),
                     containing: ["teachers.soft_switch_log_space", "does not apply"])
        // Table errors name the run file, the stage and the teacher, when read ...
        assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["curriculum.space=\"median\""]),
                     containing: [runFile.path, "curriculum.space"])
        // ... and teacher names when matched to the pool (before any model loads).
        let (dir2, typo) = try setup(steps: 2, curriculum: halfway.replacingOccurrences(of: "strong = 3", with: "strnog = 3"))
        let t = try OnPolicyConfig(contentsOf: typo)
        assertThrows(try t.curriculum(manifest: try manifest(dir2)),
                     containing: [typo.path, "curriculum.stage[1].weights.strnog", "unknown teacher 'strnog'", "weak, strong"])
        assertThrows(try OnPolicyTrainer(config: t), containing: ["curriculum.stage[1].weights.strnog"])
    }

    /// `--set curriculum.stage[N].KEY=V` edits the N-th `[[curriculum.stage]]` (what a sweep of a
    /// stage's `at` needs); an index past the last stage is refused.
    func testOverridesAddressAStage() throws {
        let (dir, runFile) = try setup(steps: 2, curriculum: halfway)
        let c = try OnPolicyConfig(contentsOf: runFile, overrides: ["curriculum.stage[1].at=0.75", "curriculum.stage[0].weights={ weak = 2, strong = 2 }",
                                                                     "curriculum.transition=\"linear\""])
        let cur = try XCTUnwrap(try c.curriculum(manifest: try manifest(dir)))
        XCTAssertEqual(cur.stages.map(\.at), [0, 0.75])
        XCTAssertEqual(cur.stages[0].weights, [0.5, 0.5])
        XCTAssertEqual(cur.transition, .linear)
        // A key the stage lacks is added to that stage only.
        let text = try applyOverrides(["curriculum.stage[0].note=1"], to: try String(contentsOf: runFile, encoding: .utf8), file: "r.toml")
        assertThrows(try OnPolicyConfig(text: text, file: "r.toml", base: dir), containing: ["curriculum.stage[0].note", "unknown key"])
        assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["curriculum.stage[2].at=0.9"]),
                     containing: ["curriculum.stage[2].at=0.9", "has 2 [[curriculum.stage]] tables", "index 2 is out of range"])
        // The bundled examples' stage headers carry comments.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let floor = try OnPolicyConfig(contentsOf: root.appendingPathComponent("schedules/curricula/floor.toml"), overrides: ["curriculum.stage[2].at=0.55"])
        XCTAssertEqual(floor.curriculum?.stages.map(\.at), [0, 0.25, 0.55, 0.75])
    }

    /// A run derived with another aggregator (what `chorus compare` does) drops the table first.
    func testRemovingTheCurriculumForAnotherAggregator() throws {
        let (dir, runFile) = try setup(steps: 2, curriculum: halfway + "\n[[curriculum.stage]]   # a comment\nat = 0.9\nweights = { weak = 0, strong = 1 }\n")
        let text = try String(contentsOf: runFile, encoding: .utf8)
        let plain = try removingCurriculum(from: text, file: runFile.path)
        XCTAssertFalse(plain.contains("curriculum"))
        XCTAssertTrue(plain.contains("[output]") && plain.contains("dir = \"out\""), "the tables after it are kept")
        let from = try XCTUnwrap(text.range(of: "[curriculum]")), to = try XCTUnwrap(text.range(of: "[output]"))
        XCTAssertEqual(plain, String(text[..<from.lowerBound]) + String(text[to.lowerBound...]), "exactly the curriculum lines go")
        let arithmetic = try OnPolicyConfig(text: try applyOverrides(["teachers.aggregator=\"arithmetic\""], to: plain, file: "r.toml"), file: "r.toml", base: dir)
        XCTAssertEqual(arithmetic.aggregator, "arithmetic")
        XCTAssertNil(arithmetic.curriculum)
        // Without removal the derived run is refused; text without a curriculum is unchanged.
        assertThrows(try OnPolicyConfig(text: try applyOverrides(["teachers.aggregator=\"arithmetic\""], to: text, file: "r.toml"), file: "r.toml", base: dir),
                     containing: ["conflicts with the [curriculum] table"])
        XCTAssertEqual(try removingCurriculum(from: plain, file: "r.toml"), plain)
        // A top-level dotted key that defines the table without a header is not silently left behind.
        assertThrows(try removingCurriculum(from: "curriculum.space = \"geometric\"\n[teachers]\npool = \"p\"\n", file: "r.toml"),
                     containing: ["r.toml", "could not remove"])
    }

    func testCurriculumInThePoolManifest() throws {
        let pooled = halfway.replacingOccurrences(of: "transition = \"step\"", with: "transition = \"linear\"")
        // aggregator = "curriculum" without a table: the pool's curriculum.
        let (dir, runFile) = try setup(steps: 2, curriculum: "", pool: pooled)
        let c = try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.aggregator=\"curriculum\""])
        XCTAssertNil(c.curriculum)
        XCTAssertEqual(try c.curriculum(manifest: try manifest(dir))?.transition, .linear)
        // Other aggregators leave the pool's curriculum unused.
        XCTAssertNil(try OnPolicyConfig(contentsOf: runFile).curriculum(manifest: try manifest(dir)))
        // Neither has one: refused, naming the key and the pool.
        let (dir2, bare) = try setup(steps: 2, curriculum: "")
        assertThrows(try OnPolicyConfig(contentsOf: bare, overrides: ["teachers.aggregator=\"curriculum\""]).curriculum(manifest: try manifest(dir2)),
                     containing: [bare.path, "teachers.aggregator", "needs a [curriculum] table", "pool.toml"])
        // Both have one: refused (no edit silently overridden).
        let (dir3, both) = try setup(steps: 2, curriculum: halfway, pool: pooled)
        assertThrows(try OnPolicyConfig(contentsOf: both).curriculum(manifest: try manifest(dir3)),
                     containing: [both.path, "curriculum", "has its own [curriculum]"])
    }

    /// A real run: the weights logged per step follow the stages at p = (step − 1) / steps (the
    /// progress at which the step's references were built).
    func testMetricsLogTheStageWeights() throws {
        for (transition, expected) in [("step", [[1.0, 0], [1, 0], [0.25, 0.75], [0.25, 0.75]]),
                                       ("linear", [[1.0, 0], [0.625, 0.375], [0.25, 0.75], [0.25, 0.75]])] {
            let (dir, runFile) = try setup(steps: 4, curriculum: halfway.replacingOccurrences(of: "\"step\"", with: "\"\(transition)\""))
            let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
            trainer.showProgress = false
            try trainer.train()
            let rows = try metricsRows(dir).filter { $0["eval"] == nil }
            XCTAssertEqual(rows.count, 4)
            for (row, w) in zip(rows, expected) {
                XCTAssertEqual(row["weight/weak"] as? Double ?? .nan, w[0], accuracy: 1e-12, "\(transition) \(row)")
                XCTAssertEqual(row["weight/strong"] as? Double ?? .nan, w[1], accuracy: 1e-12, "\(transition) \(row)")
            }
            // run.json records the stages as used (normalised).
            let runJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("out/run.json"))) as? [String: Any])
            XCTAssertEqual(runJSON["aggregator"] as? String, "curriculum")
            let recorded = try XCTUnwrap(runJSON["curriculum"] as? [String: Any])
            XCTAssertEqual(recorded["transition"] as? String, transition)
            XCTAssertEqual(recorded["space"] as? String, "arithmetic")
            let stages = try XCTUnwrap(recorded["stages"] as? [[String: Any]])
            XCTAssertEqual(stages.map { $0["at"] as? Double }, [0, 0.5])
            XCTAssertEqual(stages[1]["weights"] as? [String: Double], ["weak": 0.25, "strong": 0.75])
        }
    }
}
