import ChorusModel
import ChorusTeachers
import Foundation
import ChorusTestSupport
import XCTest

final class ManifestTests: XCTestCase {
    func manifest(_ text: String) throws -> PoolManifest {
        try PoolManifest(toml: text, file: URL(fileURLWithPath: "/pools/teachers/x.toml"))
    }

    func testParsesTeachersInOrderWithRelativePaths() throws {
        let m = try manifest("""
        student = "../student"
        [[teacher]]
        name = "small"
        path = "demo/small"
        weight = 1
        [[teacher]]
        name = "big"
        path = "/abs/big"
        weight = 3.0
        [[teacher]]
        name = "self"
        kind = "self"
        privileged = "Solution: {answer}\\n{prompt}"
        """)
        XCTAssertEqual(m.teachers.map(\.name), ["small", "big", "self"])
        XCTAssertEqual(m.teachers.map(\.kind), [.checkpoint, .checkpoint, .selfTeacher])
        XCTAssertEqual(m.teachers[0].path?.path, "/pools/teachers/demo/small")
        XCTAssertEqual(m.teachers[1].path?.path, "/abs/big")
        XCTAssertNil(m.teachers[2].path)
        XCTAssertEqual(m.teachers.map(\.weight), [1, 3, 1])
        XCTAssertEqual(m.teachers[2].privileged, "Solution: {answer}\n{prompt}")
        XCTAssertEqual(m.student?.path, "/pools/student")
    }

    func testErrorsNameFileAndField() {
        let cases: [(String, [String])] = [
            ("[[teacher]]\nname = \"a\"\nkind = \"remote\"\npath = \"x\"", ["x.toml", "teacher[0].kind ('a')", "unknown kind", "checkpoint, self"]),
            ("[[teacher]]\nname = \"a\"", ["x.toml", "teacher[0].path ('a')", "missing"]),
            ("[[teacher]]\nname = \"a\"\npath = \"x\"\nweight = -1.5", ["x.toml", "teacher[0].weight ('a')", "-1.5"]),
            ("[[teacher]]\nname = \"a\"\npath = \"x\"\n[[teacher]]\nname = \"a\"\npath = \"y\"", ["x.toml", "teacher[1].name ('a')", "duplicate"]),
            ("[[teacher]]\nname = \"a\"\npath = \"x\"\ntemperature = 2", ["x.toml", "teacher[0].temperature", "unknown key"]),
            ("pool = 1\n[[teacher]]\nname = \"a\"\npath = \"x\"", ["x.toml", "pool", "unknown key"]),
            ("[[teacher]]\npath = \"x\"", ["x.toml", "teacher[0].name", "missing"]),
            ("[[teacher]]\nname = \"s\"\nkind = \"self\"", ["x.toml", "teacher[0].privileged ('s')", "missing"]),
            ("[[teacher]]\nname = \"s\"\nkind = \"self\"\nprivileged = \"no slot\"", ["x.toml", "privileged", "{prompt}"]),
            ("[[teacher]]\nname = \"a\"\npath = \"x\"\nprivileged = \"{prompt}\"", ["x.toml", "privileged", "only allowed for kind"]),
            ("[[teacher]]\nname = \"a\"\npath = \"x\"\nweight = 0", ["x.toml", "weight", "all weights are 0"]),
            ("student = 3\n[[teacher]]\nname = \"a\"\npath = \"x\"", ["x.toml", "student"]),
            ("", ["x.toml", "teacher", "no [[teacher]]"]),
            ("[[teacher]\nname = 1", ["x.toml", "TOML syntax error", "line 1"]),
        ]
        for (text, frags) in cases { assertThrows(try manifest(text), containing: frags) }
    }

    func testMissingFileAndMissingModelDirectory() throws {
        assertThrows(try PoolManifest.load(contentsOf: URL(fileURLWithPath: "/nonexistent/p.toml")), containing: ["/nonexistent/p.toml"])
        let dir = temporaryDirectory(self)
        let f = dir.appendingPathComponent("p.toml")
        try "[[teacher]]\nname = \"a\"\npath = \"nowhere\"\n".write(to: f, atomically: true, encoding: .utf8)
        assertThrows(try TeacherPool.load(manifest: f), containing: ["p.toml", "teacher[0].path ('a')", "nowhere", "not found"])
        try "[[teacher]]\nname = \"s\"\nkind = \"self\"\nprivileged = \"{prompt}\"\n".write(to: f, atomically: true, encoding: .utf8)
        assertThrows(try TeacherPool.load(manifest: f), containing: ["p.toml", "'s'", "no student", "--student"])
    }
}

final class VocabularyTests: XCTestCase {
    func testTokenMismatchNamesTokenAndFiles() throws {
        let dir = temporaryDirectory(self)
        var toks = tokenNames(64)
        try writeModel(dir.appendingPathComponent("small"), seed: 1)
        toks[17] = "zz"
        try writeModel(dir.appendingPathComponent("big"), seed: 2, tokens: toks)
        let f = dir.appendingPathComponent("pool.toml")
        try "[[teacher]]\nname = \"small\"\npath = \"small\"\n[[teacher]]\nname = \"big\"\npath = \"big\"\n".write(to: f, atomically: true, encoding: .utf8)
        assertThrows(try TeacherPool.load(manifest: f),
                     containing: ["token id 17", "'t17'", "'zz'", "small/tokenizer.json", "big/tokenizer.json"])
    }

    func testConfigVocabSizeMismatch() throws {
        let dir = temporaryDirectory(self)
        try writeModel(dir.appendingPathComponent("a"), seed: 1, vocab: 64)
        try writeModel(dir.appendingPathComponent("b"), seed: 2, vocab: 72, tokens: tokenNames(64))
        let f = dir.appendingPathComponent("pool.toml")
        try "[[teacher]]\nname = \"a\"\npath = \"a\"\n[[teacher]]\nname = \"b\"\npath = \"b\"\n".write(to: f, atomically: true, encoding: .utf8)
        assertThrows(try TeacherPool.load(manifest: f), containing: ["vocab_size 64", "a/config.json", "72", "b/config.json"])
    }

    func testControlTokensAreExceptedAndStudentMayAddRows() throws {
        let dir = temporaryDirectory(self)
        try writeModel(dir.appendingPathComponent("a"), seed: 1)
        try writeModel(dir.appendingPathComponent("b"), seed: 2)
        // The student has the same 64 tokens plus <|teacher-0|>, <|teacher-1|> at 64, 65.
        let st = dir.appendingPathComponent("student")
        let s = tinyModel(seed: 3).addingVocabularyRows(2)
        try s.save(directory: st)
        try writeTokenizer(st, tokens: tokenNames(64), added: [(64, "<|teacher-0|>"), (65, "<|teacher-1|>")])
        let f = dir.appendingPathComponent("pool.toml")
        try "student = \"student\"\n[[teacher]]\nname = \"a\"\npath = \"a\"\n[[teacher]]\nname = \"b\"\npath = \"b\"\n".write(to: f, atomically: true, encoding: .utf8)
        let pool = try TeacherPool.load(manifest: f)
        XCTAssertEqual(pool.controlTokenIds(), [64, 65])
        XCTAssertEqual(pool.names, ["a", "b"])
        // A student token differing from the teachers' is still refused.
        try writeTokenizer(st, tokens: tokenNames(63) + ["other"], added: [(64, "<|teacher-0|>"), (65, "<|teacher-1|>")])
        assertThrows(try TeacherPool.load(manifest: f), containing: ["token id 63", "'other'", "student/tokenizer.json"])
        // Extra student rows that are not control tokens are a size mismatch.
        try writeTokenizer(st, tokens: tokenNames(64), added: [(64, "<|teacher-0|>")])
        assertThrows(try TeacherPool.load(manifest: f), containing: ["vocab_size", "student/config.json"])
    }

    /// The vocabulary check reads each tokenizer.json once (a path named twice is one file)
    /// and returns what it read, keyed by path; the pool's student vocabulary is that same
    /// table, not a second parse that could differ.
    func testVocabularyCheckReturnsEachFileItRead() throws {
        let dir = temporaryDirectory(self)
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        try writeModel(a, seed: 1)
        try writeModel(b, seed: 2)
        let read = try VocabularyCheck.check([
            .init(directory: a, vocabSize: 64, isStudent: false), .init(directory: b, vocabSize: 64, isStudent: false),
            .init(directory: dir.appendingPathComponent("b/../a"), vocabSize: 64, isStudent: true),
        ])
        let tokA = a.appendingPathComponent("tokenizer.json"), tokB = b.appendingPathComponent("tokenizer.json")
        XCTAssertEqual(Set(read.keys), [tokA.standardizedFileURL.path, tokB.standardizedFileURL.path])
        XCTAssertEqual(read[tokA.standardizedFileURL.path], try TokenVocabulary(contentsOf: tokA))
        XCTAssertEqual(read[tokA.standardizedFileURL.path]?.tokens.count, 64)
        let f = try writePoolManifest(dir.appendingPathComponent("pool.toml"), student: "a", teachers: [["name": "b", "path": "b"]])
        XCTAssertEqual(try TeacherPool.load(manifest: f).studentVocabulary, read[tokA.standardizedFileURL.path])
    }

    func testPoolFromManifestWithSelfTeacherScores() throws {
        let dir = temporaryDirectory(self)
        let small = try writeModel(dir.appendingPathComponent("small"), seed: 1)
        let student = try writeModel(dir.appendingPathComponent("student"), seed: 4)
        let f = try writePoolManifest(dir.appendingPathComponent("pool.toml"), student: "student", teachers: [
            ["name": "small", "path": "small", "weight": 1],
            ["name": "self", "kind": "self", "weight": 3, "privileged": "Answer {answer}: {prompt}"],
        ])
        let enc = CharEncoder(vocab: 64)
        let pool = try TeacherPool.load(manifest: f, encoderLoader: { _ in enc })
        XCTAssertEqual(pool.weights, [0.25, 0.75])
        var g = sampleGroup()
        g.privileged = ["answer": "9"]
        let out = try pool.score([g], aggregator: pool.makeAggregator(name: "arithmetic"), progress: 0)[0]
        let ctx = enc.encode("Answer 9: ") + g.prompt
        for (r, resp) in g.responses.enumerated() {
            let a = try small.scoreSequence(g.prompt + resp, from: g.prompt.count).compactMap { $0?.logprob }
            let b = try student.scoreSequence(ctx + resp, from: ctx.count).compactMap { $0?.logprob }
            XCTAssertLessThan(maxDiff(out[r].teacherLogprobs[0]!, a), 1e-4)
            XCTAssertLessThan(maxDiff(out[r].teacherLogprobs[1]!, b), 1e-4)
            for t in resp.indices {
                XCTAssertEqual(Foundation.exp(Double(out[r].logprobs[t])), 0.25 * Foundation.exp(Double(a[t])) + 0.75 * Foundation.exp(Double(b[t])), accuracy: 1e-5)
            }
        }
        // The live student: the self-teacher follows its weights and is not cacheable.
        let live = tinyModel(seed: 4)
        let p2 = try TeacherPool.load(manifest: f, student: StudentSource(directory: dir.appendingPathComponent("student"), liveModel: live),
                                      encoderLoader: { _ in enc })
        XCTAssertFalse(p2.teachers[1].isCacheable)
        XCTAssertTrue((p2.teachers[1] as! SelfTeacher).model === live)
    }
}
