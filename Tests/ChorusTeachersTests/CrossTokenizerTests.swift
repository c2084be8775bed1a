import ChorusCache
import ChorusModel
import ChorusTeachers
import ChorusTensor
import ChorusTokenizer
import ChorusTestSupport
import Foundation
import XCTest

/// Text with multi-byte UTF-8 (2-, 3- and 4-byte characters) that two BPE tokenizers trained
/// on it with different vocabulary sizes split differently.
let crossCorpus: [String] = (0..<24).map { i in
    ["café au lait \(i)", "naïve über straße \(i % 7)", "日本語のテキスト \(i % 5)", "emoji 🎉 ok \(i % 3)",
     "2 + \(i) = \(2 + i)", "größer als \(i)"][i % 6]
}

/// Two BPE tokenizers trained on `crossCorpus` (vocabulary 300 and 420, both with
/// `<|endoftext|>`), the student's and the teacher's.
func crossTokenizers() throws -> (student: Tokenizer, teacher: Tokenizer) {
    (try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: crossCorpus),
     try BPETrainer(vocabSize: 420, specialTokens: ["<|endoftext|>"]).train(texts: crossCorpus))
}

/// The bytes of token ids under a tokenizer.
func bytes(_ ids: ArraySlice<Int>, _ tok: Tokenizer) -> [UInt8] {
    let table = tok.byteTable()!
    return ids.flatMap { Array(table.span($0)) }
}

final class CrossTokenizerTests: XCTestCase {
    func aligner(_ s: Tokenizer, _ t: Tokenizer) throws -> TokenAligner {
        try TokenAligner(teacher: "far", studentTokenizer: s, teacherTokenizer: t,
                         studentEOS: [s.tokenToId("<|endoftext|>")!], teacherEOS: [t.tokenToId("<|endoftext|>")!])
    }

    /// Every chunk spells the same bytes on both sides, chunks tile both sequences, and a
    /// chunk ends at every byte offset that is a boundary of both.
    func checkAlignment(_ studentIds: [Int], _ a: TokenAligner, file: StaticString = #filePath, line: UInt = #line) throws -> ChunkAlignment {
        let (teacherIds, chunks) = try a.align(response: studentIds)
        XCTAssertEqual(chunks.student.map(\.count).reduce(0, +), studentIds.count, file: file, line: line)
        XCTAssertEqual(chunks.teacher.map(\.count).reduce(0, +), teacherIds.count, file: file, line: line)
        var sEnds = Set<Int>(), tEnds = Set<Int>(), at = 0
        for id in studentIds { at += a.studentTokenizer.byteTable()!.length(id); sEnds.insert(at) }
        at = 0
        for id in teacherIds { at += a.teacherTokenizer.byteTable()!.length(id); tEnds.insert(at) }
        var expectEnds = Array(sEnds.intersection(tEnds)).sorted(), gotEnds: [Int] = []
        at = 0
        for c in 0..<chunks.count {
            XCTAssertFalse(chunks.student[c].isEmpty || chunks.teacher[c].isEmpty, file: file, line: line)
            if c > 0 {
                XCTAssertEqual(chunks.student[c].lowerBound, chunks.student[c - 1].upperBound, file: file, line: line)
                XCTAssertEqual(chunks.teacher[c].lowerBound, chunks.teacher[c - 1].upperBound, file: file, line: line)
            }
            let sb = bytes(studentIds[chunks.student[c]], a.studentTokenizer), tb = bytes(teacherIds[chunks.teacher[c]], a.teacherTokenizer)
            XCTAssertEqual(sb, tb, "chunk \(c)", file: file, line: line)
            at += sb.count
            gotEnds.append(at)
        }
        if studentIds.isEmpty { expectEnds = [] }
        XCTAssertEqual(gotEnds, expectEnds, file: file, line: line)
        return chunks
    }

    func testAlignmentOfTwoTrainedTokenizersChunksAtCommonByteBoundaries() throws {
        let (s, t) = try crossTokenizers()
        XCTAssertNotEqual(s.vocabSize, t.vocabSize)
        let a = try aligner(s, t)
        let eos = s.tokenToId("<|endoftext|>")!
        var merged = 0
        for text in crossCorpus.prefix(6) + ["unseen words: Zürich ☃ 𝄞 end"] {
            let ids = s.encode(text, addSpecialTokens: false) + [eos]
            let chunks = try checkAlignment(ids, a)
            XCTAssertEqual(try a.align(response: ids).teacherIds, t.encode(text, addSpecialTokens: false) + [t.tokenToId("<|endoftext|>")!])
            XCTAssertEqual(chunks.student.last, (ids.count - 1)..<ids.count, "EOS is a chunk of its own")
            merged += chunks.student.filter { $0.count > 1 }.count + chunks.teacher.filter { $0.count > 1 }.count
        }
        XCTAssertGreaterThan(merged, 0, "the two tokenizations should differ somewhere")
    }

    func testMultiByteCharactersSplitDifferentlyAlign() throws {
        let (s, t) = try crossTokenizers()
        let a = try aligner(s, t)
        let table = s.byteTable()!
        func byteToken(_ b: UInt8) -> Int { (0..<table.count).first { table.contains($0) && Array(table.span($0)) == [b] }! }
        // "日本" as six single-byte student tokens (a non-canonical split inside both
        // characters) followed by canonical "語"; the teacher merges whole characters.
        let text = "日本語"
        let ids = Array("日本".utf8).map(byteToken) + s.encode("語", addSpecialTokens: false)
        XCTAssertEqual(bytes(ids[...], s), Array(text.utf8))
        let chunks = try checkAlignment(ids, a)
        let teacherIds = try a.align(response: ids).teacherIds
        XCTAssertEqual(teacherIds, t.encode(text, addSpecialTokens: false), "the teacher's tokens are its canonical ones")
        XCTAssertLessThan(teacherIds.count, ids.count)
        // No chunk ends inside a character unless the teacher also splits there.
        XCTAssertTrue(chunks.student.contains { $0.count >= 3 })
        // A response cut inside a character (invalid UTF-8 at the end) still aligns: the
        // teacher spells the stray bytes with its single-byte tokens.
        let cut = s.encode("ok ", addSpecialTokens: false) + Array("日".utf8.prefix(2)).map(byteToken)
        _ = try checkAlignment(cut, a)
    }

    /// Random student token sequences (invalid UTF-8, non-NFC characters, stray special
    /// tokens) always align, chunk bytes equal on both sides.
    func testRandomStudentSequencesAlwaysAlign() throws {
        let (s, t) = try crossTokenizers()
        let a = try aligner(s, t)
        var rng = ChorusRNG(seed: 1)
        for _ in 0..<300 {
            _ = try checkAlignment((0..<(1 + rng.int(below: 12))).map { _ in rng.int(below: s.vocabSize) }, a)
        }
    }

    func testTextTheTeacherCannotEncodeUnknownIdsAndEmptyResponses() throws {
        let (s, t) = try crossTokenizers()
        // The student's bytes are re-tokenized without the teacher's normalizer: a teacher
        // whose NFKC normalizer would rewrite "ﬁ" as "fi" still spells the student's "ﬁ"
        // (the trained tokenizers' NFC would likewise rewrite U+FA9E as U+7235).
        var doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(t.jsonString().utf8)) as? [String: Any])
        doc["normalizer"] = ["type": "NFKC"]
        let nfkc = try Tokenizer(data: try JSONSerialization.data(withJSONObject: doc))
        let a = try aligner(s, nfkc)
        _ = try checkAlignment(s.encode("a ﬁne day \u{FA9E}", addSpecialTokens: false), a)
        // Text the teacher cannot spell: its vocabulary lacks the byte 0x01 ('ā' in byte-level spelling).
        var model = try XCTUnwrap(doc["model"] as? [String: Any])
        var vocab = try XCTUnwrap(model["vocab"] as? [String: Any])
        XCTAssertNotNil(vocab.removeValue(forKey: "\u{0101}"))
        model["vocab"] = vocab
        doc["model"] = model
        doc["normalizer"] = NSNull()
        let holed = try Tokenizer(data: try JSONSerialization.data(withJSONObject: doc))
        assertThrows(try aligner(s, holed).align(response: s.encode("a\u{01}b", addSpecialTokens: false)),
                     containing: ["teacher 'far'", "cannot re-tokenize"])
        XCTAssertNoThrow(try aligner(s, holed).align(response: s.encode("ab", addSpecialTokens: false)))
        let b = try aligner(s, t)
        assertThrows(try b.align(response: [1, 99_999]), containing: ["student token id 99999"])
        let (ids, chunks) = try b.align(response: [])
        XCTAssertEqual(ids, [])
        XCTAssertEqual(chunks.count, 0)
        // A student special token the teacher lacks (not EOS) is refused by name.
        let s2 = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>", "<|sep|>"]).train(texts: crossCorpus)
        let c = try TokenAligner(teacher: "far", studentTokenizer: s2, teacherTokenizer: t)
        assertThrows(try c.align(response: [s2.tokenToId("<|sep|>")!]), containing: ["'<|sep|>'", "teacher 'far'"])
    }

    /// A student model, a teacher model with another tokenizer, and a pool over the teacher.
    func crossSetup(teacherSeed: UInt64 = 21) throws -> (s: Tokenizer, t: Tokenizer, teacher: TransformerModel, pool: TeacherPool) {
        let (s, t) = try crossTokenizers()
        let teacher = tinyModel(seed: teacherSeed, vocab: t.vocabSize)
        let x = CrossTokenizerTeacher(inner: CheckpointTeacher(name: "far", model: teacher), aligner: try aligner(s, t))
        return (s, t, teacher, try TeacherPool(teachers: [x], studentVocabularySize: s.vocabSize))
    }

    func testChunkLogprobsAreSumsOfTheTeachersTokenLogprobs() throws {
        let (s, t, teacher, pool) = try crossSetup()
        let eos = s.tokenToId("<|endoftext|>")!
        let prompt = "2 + 3 ="
        let responses = [s.encode(" 5 café 日本語", addSpecialTokens: false) + [eos], s.encode("naïve", addSpecialTokens: false), []]
        let group = ScoringGroup(prompt: s.encode(prompt), responses: responses, promptText: prompt)
        let refs = try pool.score([group], aggregator: try pool.makeAggregator(name: "arithmetic"), progress: 0)[0]
        let a = try aligner(s, t)
        for (r, resp) in responses.enumerated() {
            let ref = refs[r]
            let chunks = try XCTUnwrap(ref.chunks)
            let (tIds, al) = try a.align(response: resp)
            XCTAssertEqual(chunks, al.student)
            if resp.isEmpty { XCTAssertEqual(ref.logprobs, []); continue }
            // Independent path: the teacher scores its own context + response in one forward.
            let ctx = t.encode(prompt)
            let lp = try teacher.scoreSequence(ctx + tIds, from: ctx.count).dropFirst(ctx.count).map { $0!.logprob }
            for (c, sr) in chunks.enumerated() {
                let want = al.teacher[c].reduce(0.0) { $0 + Double(lp[$1]) }
                XCTAssertEqual(Double(ref.logprobs[sr.upperBound - 1]), want, accuracy: 1e-4, "response \(r) chunk \(c)")
                XCTAssertEqual(Double(ref.teacherLogprobs[0]![sr.upperBound - 1]), want, accuracy: 1e-4)
                for t in sr.dropLast() { XCTAssertEqual(ref.logprobs[t], 0) }
            }
            XCTAssertTrue(ref.entropy.allSatisfy(\.isNaN))
            XCTAssertTrue(al.teacher.contains { $0.count != 1 } || al.student.contains { $0.count != 1 })
        }
    }

    func testMixedPoolAggregatesChunkLogprobs() throws {
        let (s, t) = try crossTokenizers()
        let near = CheckpointTeacher(name: "near", model: tinyModel(seed: 5, vocab: s.vocabSize))
        let far = CrossTokenizerTeacher(inner: CheckpointTeacher(name: "far", model: tinyModel(seed: 6, vocab: t.vocabSize)),
                                        aligner: try aligner(s, t))
        let pool = try TeacherPool(teachers: [near, far], weights: [0.25, 0.75])
        XCTAssertEqual(pool.vocabularySize, s.vocabSize)
        XCTAssertEqual(pool.crossVocabularyTeachers, [1])
        let resp = s.encode("größer als 7 🎉", addSpecialTokens: false)
        let group = ScoringGroup(prompt: s.encode("x"), responses: [resp])
        let nearLp = try near.score(ScoringGroup(prompt: s.encode("x"), responses: [resp]))[0].positions.map(\.logprob)
        for (name, space) in [("arithmetic", MixtureSpace.probability), ("geometric", .logarithm)] {
            let ref = try pool.score([group], aggregator: try pool.makeAggregator(name: name), progress: 0)[0][0]
            let chunks = try XCTUnwrap(ref.chunks)
            for c in chunks {
                let last = c.upperBound - 1
                let lNear = c.reduce(0.0) { $0 + Double(nearLp[$1]) }
                XCTAssertEqual(Double(ref.teacherLogprobs[0]![last]), lNear, accuracy: 1e-4)
                let lFar = Double(ref.teacherLogprobs[1]![last])
                let want = space == .probability ? Foundation.log(0.25 * Foundation.exp(lNear) + 0.75 * Foundation.exp(lFar))
                    : 0.25 * lNear + 0.75 * lFar
                XCTAssertEqual(Double(ref.logprobs[last]), want, accuracy: 1e-4, name)
            }
        }
        // Routing one group to the same-vocabulary teacher scores it per token, exactly.
        let hard = try pool.makeAggregator(name: "hard-switch")
        let early = try pool.score([group], aggregator: hard, progress: 0)[0][0]
        XCTAssertNil(early.chunks)
        XCTAssertLessThan(maxAbsDiff(early.logprobs, nearLp), 1e-5)
        XCTAssertFalse(early.entropy.contains { $0.isNaN })
        XCTAssertNotNil(try pool.score([group], aggregator: hard, progress: 1)[0][0].chunks)
        // Random and control-token routing work unchanged.
        for name in ["random", "control-token", "soft-switch"] {
            XCTAssertNoThrow(try pool.score([group], aggregator: try pool.makeAggregator(name: name), progress: 0.5))
        }
    }

    func testFullDistributionsAreRefusedByNameForACrossTokenizerTeacher() throws {
        let (_, _, _, pool) = try crossSetup()
        let (s, _) = try crossTokenizers()
        let group = ScoringGroup(prompt: s.encode("x"), responses: [s.encode("ok", addSpecialTokens: false)])
        assertThrows(try pool.score([group], aggregator: try pool.makeAggregator(name: "arithmetic"), progress: 0, keepDistribution: true),
                     containing: ["full-vocabulary", "teacher 'far'"])
        XCTAssertThrowsError(try pool.requireSharedVocabulary(for: "top-k aggregation")) { e in
            XCTAssertEqual(e as? PoolError, .needsSharedVocabulary(feature: "top-k aggregation", teacher: "far"))
        }
    }

    func testChatTemplateRendersTheTeachersPrompt() throws {
        let (s, t) = try crossTokenizers()
        let x = CrossTokenizerTeacher(inner: CheckpointTeacher(name: "far", model: tinyModel(seed: 2, vocab: t.vocabSize)),
                                      aligner: try aligner(s, t), template: try ChatTemplate("Q: {prompt}\nA:<|endoftext|>", teacher: "far"))
        let g = try x.translate(ScoringGroup(prompt: s.encode("2 + 3 ="), responses: [s.encode(" 5", addSpecialTokens: false)]))
        XCTAssertEqual(g.group.prompt, t.encode("Q: 2 + 3 =\nA:<|endoftext|>"))
        XCTAssertEqual(g.group.prompt.last, t.tokenToId("<|endoftext|>"), "special tokens in the template are recognised")
        // The prompt text, when given, is used as is.
        let h = try x.translate(ScoringGroup(prompt: [0], responses: [[]], promptText: "héllo"))
        XCTAssertEqual(h.group.prompt, t.encode("Q: héllo\nA:<|endoftext|>"))
        assertThrows(try ChatTemplate("no placeholder", teacher: "far"), containing: ["{prompt}", "far"])
    }

    func testTheCacheKeysACrossTeachersScoresByItsOwnTokens() throws {
        let (s, t, _, pool) = try crossSetup()
        let dir = temporaryDirectory(self)
        let store = try ScoreCacheStore(directory: dir)
        pool.store = store
        let prompt = "2 + 3 ="
        let resp = s.encode(" 5 naïve", addSpecialTokens: false)
        let group = ScoringGroup(prompt: s.encode(prompt), responses: [resp], promptText: prompt)
        let agg = try pool.makeAggregator(name: "arithmetic")
        let cold = try pool.score([group], aggregator: agg, progress: 0)[0][0]
        XCTAssertEqual(store.hitsAndMisses()["far"]?.misses, 1)
        let warm = try pool.score([group], aggregator: agg, progress: 0)[0][0]
        XCTAssertEqual(store.hitsAndMisses()["far"]?.hits, 1)
        XCTAssertEqual(warm.chunks, cold.chunks)
        XCTAssertEqual(try maxAbsDiff(warm.logprobs, cold.logprobs), 0, accuracy: 1e-3)
        // The record is under the teacher's own context and response ids.
        let fp = try pool.teachers[0].fingerprint()
        let ctx = t.encode(prompt), own = t.encode(" 5 naïve", addSpecialTokens: false)
        XCTAssertEqual(store.lookup(teacher: "far", fingerprint: fp, topK: pool.cacheTopK, context: ctx, response: own)?.count, own.count)
        XCTAssertNil(store.lookup(teacher: "far", fingerprint: fp, topK: pool.cacheTopK, context: s.encode(prompt), response: resp))
    }

    func testManifestAndLoading() throws {
        let tmp = temporaryDirectory(self)
        let (s, t) = try crossTokenizers()
        func save(_ name: String, _ tok: Tokenizer?, seed: UInt64) throws -> URL {
            let d = tmp.appendingPathComponent(name)
            let m = tinyModel(seed: seed, vocab: (tok ?? t).vocabSize)
            m.setSpecialTokenIds(eos: [(tok ?? t).tokenToId("<|endoftext|>")!])
            try m.save(directory: d)
            if let tok { try tok.write(to: d.appendingPathComponent("tokenizer.json")) }
            return d
        }
        _ = try save("student", s, seed: 1)
        _ = try save("near", s, seed: 2)
        _ = try save("far", t, seed: 3)
        _ = try save("bare", nil, seed: 4)
        func pool(_ body: String) throws -> TeacherPool {
            let url = tmp.appendingPathComponent("pool-\(UUID().uuidString).toml")
            try ("student = \"student\"\n" + body).write(to: url, atomically: true, encoding: .utf8)
            return try TeacherPool.load(manifest: url)
        }
        let p = try pool("""
        [[teacher]]
        name = "near"
        path = "near"
        cross_tokenizer = true
        [[teacher]]
        name = "far"
        path = "far"
        cross_tokenizer = true
        chat_template = "Q: {prompt}\\nA:"
        """)
        XCTAssertEqual(p.crossVocabularyTeachers, [1], "a teacher with the student's tokenizer content stays on the exact path")
        XCTAssertTrue(p.teachers[0] is CheckpointTeacher)
        XCTAssertEqual((p.teachers[1] as? CrossTokenizerTeacher)?.template?.text, "Q: {prompt}\nA:")
        XCTAssertEqual(p.vocabularySize, s.vocabSize)
        // `chorus score` over the pool lists the chunks (response positions) of the cross teacher.
        let manifest = tmp.appendingPathComponent("cli.toml")
        try "student = \"student\"\n[[teacher]]\nname = \"far\"\npath = \"far\"\ncross_tokenizer = true\n"
            .write(to: manifest, atomically: true, encoding: .utf8)
        let ids = s.encode("2 + 3 =") + s.encode(" 5 naïve café", addSpecialTokens: false)
        let (status, out, err) = try runChorus(["score", "--pool", manifest.path, "--aggregator", "arithmetic", "--prompt-length",
                                                String(s.encode("2 + 3 =").count), "--tokens", ids.map(String.init).joined(separator: ",")])
        XCTAssertEqual(status, 0, err)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        let chunks = try XCTUnwrap(o["chunks"] as? [[Int]], out)
        XCTAssertEqual(chunks.first?.first, s.encode("2 + 3 =").count)
        XCTAssertEqual(chunks.last?.last, ids.count)
        // Without cross_tokenizer the shared-vocabulary check refuses the teacher, as before.
        assertThrows(try pool("[[teacher]]\nname = \"far\"\npath = \"far\"\n"), containing: ["vocabulary mismatch"])
        assertThrows(try pool("[[teacher]]\nname = \"bare\"\npath = \"bare\"\ncross_tokenizer = true\n"),
                     containing: ["teacher[0].path ('bare')", "tokenizer.json", "not found"])
        assertThrows(try pool("[[teacher]]\nname = \"far\"\npath = \"far\"\nchat_template = \"{prompt}\"\n"),
                     containing: ["chat_template", "cross_tokenizer = true"])
        assertThrows(try pool("[[teacher]]\nname = \"far\"\npath = \"far\"\ncross_tokenizer = true\nchat_template = \"x\"\n"),
                     containing: ["chat_template", "{prompt}"])
        assertThrows(try pool("[[teacher]]\nname = \"s\"\nkind = \"self\"\nprivileged = \"{prompt}\"\ncross_tokenizer = true\n"),
                     containing: ["cross_tokenizer", "checkpoint"])
    }
}

