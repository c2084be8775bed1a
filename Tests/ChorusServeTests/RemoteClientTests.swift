import ChorusCore
import ChorusModel
import ChorusServe
import ChorusTeachers
import ChorusTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The remote teacher's client against a fake server: SGLang's wire, malformed / non-finite /
/// huge answers, which HTTP errors are retried, a server dropping a request mid-way, the bound
/// on requests in flight, and `chorus serve` run as a process.
final class RemoteClientTests: XCTestCase {
    let model = tinyModel(seed: 11)

    func spec(_ port: Int, topK: Int = 20, model: String? = "m", retries: Int = 0, concurrency: Int = 4) -> RemoteSpec {
        RemoteSpec(url: "http://127.0.0.1:\(port)", model: model, tokenizer: URL(fileURLWithPath: "/nonexistent/tokenizer.json"),
                   topK: topK, timeout: 20, retries: retries, concurrency: concurrency)
    }

    func teacher(_ wire: RemoteTeacher.Wire, _ s: RemoteSpec, name: String = "r") throws -> RemoteTeacher {
        let t = try RemoteTeacher(name: name, wire: wire, spec: s, vocabularySize: 64)
        t.backoff = 0.01
        return t
    }

    /// Asserts remote and local scores agree: sampled-token log-probs and the top-k (1e-4).
    func assertSame(_ r: [SequenceScores], _ l: [SequenceScores], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.count, l.count, file: file, line: line)
        for (a, b) in zip(r, l) {
            XCTAssertLessThanOrEqual(maxAbsDiff(a.positions.map(\.logprob), b.positions.map(\.logprob)), 1e-4, file: file, line: line)
            for (p, q) in zip(a.positions, b.positions) {
                XCTAssertEqual(p.topIds, q.topIds, file: file, line: line)
                XCTAssertLessThanOrEqual(maxAbsDiff(p.topLogprobs, q.topLogprobs), 1e-4, file: file, line: line)
            }
        }
    }

    func testSGLangWireMatchesTheLocalTeacher() throws {
        let answers = ModelAnswers(model: model)
        let fake = try FakeServer { _, body in .answer(200, answers.sglang(body)) }
        defer { fake.close() }
        let t = try teacher(.sglang, spec(fake.port, topK: 64, model: nil))
        XCTAssertEqual(t.endpoint.absoluteString, "http://127.0.0.1:\(fake.port)/generate")
        let local = CheckpointTeacher(name: "l", model: model)
        let g = sampleGroup()
        assertSame(try t.score(g, topK: 5), try local.score(g, topK: 5))
        // With k = V the entropy of the rebuilt row is the full row's.
        let re = try t.score(g, topK: 0), le = try local.score(g, topK: 0)
        for (a, b) in zip(re, le) { XCTAssertLessThanOrEqual(maxAbsDiff(a.positions.map(\.entropy), b.positions.map(\.entropy)), 1e-4) }
        // The request is SGLang's documented one.
        // Requests run concurrently, so find the one for the first response rather than
        // assuming it arrived first.
        let bodies = try fake.bodies.map { try XCTUnwrap(try JSONSerialization.jsonObject(with: $0) as? [String: Any]) }
        let req = try XCTUnwrap(bodies.first { ($0["input_ids"] as? [Any])?.compactMap { RemoteWire.integer($0) } == g.prompt + g.responses[0] },
                                "no request carries prompt + first response as input_ids")
        XCTAssertEqual(RemoteWire.integer(req["logprob_start_len"]), 0)
        XCTAssertEqual(RemoteWire.integer(req["top_logprobs_num"]), 64)
        XCTAssertEqual(RemoteWire.integer((req["sampling_params"] as? [String: Any])?["max_new_tokens"]), 0)
        let flag = try XCTUnwrap(req["return_logprob"] as? NSNumber)
        XCTAssertEqual(String(cString: flag.objCType), "c", "return_logprob is a JSON boolean")
        XCTAssertTrue(flag.boolValue)
        XCTAssertNil(req["model"])
    }

    func testMalformedNonFiniteAndHugeAnswersAreOneLineErrorsNamingTeacherAndURL() throws {
        // Prompt [1, 2], response [3]: position 2 is scored; token 4 is the other top entry.
        let good = #"{"choices":[{"prompt_logprobs":[null,{"2":{"logprob":-0.1,"rank":1}},{"3":{"logprob":LP3,"rank":1},"ID4":{"logprob":-1.5,"rank":2}}]}]}"#
        func vllm(_ lp3: String = "-0.5", id4: String = "4") -> Data {
            Data(good.replacingOccurrences(of: "LP3", with: lp3).replacingOccurrences(of: "ID4", with: id4).utf8)
        }
        var huge = Data(repeating: 0x20, count: RemoteTeacher.answerLimit(tokens: 3, topK: 20) + 1)
        huge.append(vllm())
        let cases: [(String, Data, String)] = [
            ("not JSON", Data("<html>bad gateway</html>".utf8), "not JSON"),
            ("NaN (Python's json writes it)", vllm("NaN"), "not JSON"),
            ("positive log-prob", vllm("3.5"), "not a finite value <= 0"),
            ("infinite log-prob", vllm("-1e999"), "malformed answer"),
            ("id outside the vocabulary", vllm(id4: "64"), "outside the vocabulary [0, 64)"),
            ("id not a number", vllm(id4: "x"), "is not {\"logprob\": number"),
            ("no choices", Data(#"{"object":"text_completion"}"#.utf8), "no choices[0]"),
            ("no prompt_logprobs", Data(#"{"choices":[{"text":""}]}"#.utf8), "prompt_logprobs is missing"),
            ("too few entries", Data(#"{"choices":[{"prompt_logprobs":[null]}]}"#.utf8), "1 entries for 3 prompt tokens"),
            ("prompt token absent", vllm().replacingFirst("\"3\":", with: "\"5\":"), "lacks the prompt token 3"),
            ("huge", huge, "over the"),
        ]
        final class Current: @unchecked Sendable { var body = Data() }   // set before each request
        let current = Current()
        let fake = try FakeServer { _, _ in .answer(200, current.body) }
        defer { fake.close() }
        let t = try teacher(.vllm, spec(fake.port, retries: 3))
        let g = ScoringGroup(prompt: [1, 2], responses: [[3]])
        current.body = vllm()
        let ok = try t.score(g, topK: 2)[0].positions[0]
        XCTAssertEqual(ok.logprob, -0.5)
        XCTAssertEqual(ok.topIds, [3, 4])
        for (label, body, fragment) in cases {
            current.body = body
            let before = fake.bodies.count
            assertThrows(try t.score(g), containing: ["teacher 'r'", "http://127.0.0.1:\(fake.port)/v1/completions", "malformed answer", fragment])
            XCTAssertEqual(fake.bodies.count - before, 1, "\(label): a malformed answer is not retried")
        }
        // SGLang's shape, broken.
        let sg = try teacher(.sglang, spec(fake.port, model: nil, retries: 3), name: "s")
        let sgCases: [(Data, String)] = [
            (Data(#"{"text":""}"#.utf8), "no meta_info"),
            (Data(#"{"meta_info":{}}"#.utf8), "is missing"),
            (Data(#"{"meta_info":{"input_token_logprobs":[[null,1],[-0.1,2],[-0.5,7]],"input_top_logprobs":[null,[],[]]}}"#.utf8),
             "is for token 7, the input has 3"),
            (Data(#"{"meta_info":{"input_token_logprobs":[[null,1],[-0.1,2],[-0.5,3]],"input_top_logprobs":[null,[],[["x",4]]]}}"#.utf8),
             "is not [logprob, token_id, ...]"),
            (Data(#"{"meta_info":{"input_token_logprobs":[[null,1],[-0.1,2],[0.5,3]],"input_top_logprobs":[null,[],[]]}}"#.utf8),
             "not a finite value <= 0"),
        ]
        for (body, fragment) in sgCases {
            current.body = body
            assertThrows(try sg.score(g), containing: ["teacher 's'", "/generate", "malformed answer", fragment])
        }
    }

    func testHTTPErrorsAreRetriedOnlyWhenTheyMayPass() throws {
        let answers = ModelAnswers(model: model)
        final class Plan: @unchecked Sendable { var statuses: [Int] = [] }   // set before each request
        let plan = Plan()
        let fake = try FakeServer { i, body in
            let s = i < plan.statuses.count ? plan.statuses[i] : 200
            if s == 200 { return .answer(200, answers.vllm(body)) }
            return .answer(s, Data(#"{"object":"error","message":"boom \#(s)","code":\#(s)}"#.utf8))
        }
        defer { fake.close() }
        let g = sampleGroup()
        let local = try CheckpointTeacher(name: "l", model: model).score(g, topK: 5)
        // 503, 429, 500 then 200: retried, same scores.
        plan.statuses = [503, 429, 500]
        let t = try teacher(.vllm, spec(fake.port, retries: 3, concurrency: 1))
        assertSame(try t.score(g, topK: 5), local)
        XCTAssertEqual(fake.bodies.count, 3 + g.responses.count)
        // 400 is final at once.
        plan.statuses = [Int](repeating: 400, count: 100)
        let n = fake.bodies.count
        assertThrows(try t.score(ScoringGroup(prompt: [1], responses: [[2]])), containing: ["teacher 'r'", "HTTP 400: boom 400"])
        XCTAssertEqual(fake.bodies.count - n, 1)
        // 503 for ever: retries, then the last status.
        plan.statuses = [Int](repeating: 503, count: 1000)
        let m = fake.bodies.count
        assertThrows(try t.score(ScoringGroup(prompt: [1], responses: [[2]])), containing: ["HTTP 503: boom 503"])
        XCTAssertEqual(fake.bodies.count - m, 4)
    }

    func testAServerDroppingARequestMidWayIsSurvivedByRetries() throws {
        let answers = ModelAnswers(model: model)
        // Every other request is read and then dropped unanswered (a server killed mid-request).
        let fake = try FakeServer { i, body in i % 2 == 0 ? .drop : .answer(200, answers.vllm(body)) }
        defer { fake.close() }
        let g = sampleGroup()
        let t = try teacher(.vllm, spec(fake.port, retries: 2, concurrency: 1))
        assertSame(try t.score(g, topK: 5), try CheckpointTeacher(name: "l", model: model).score(g, topK: 5))
        XCTAssertEqual(fake.bodies.count, 2 * g.responses.count)
        // No retries left: a one-line error naming the teacher and URL.
        let always = try FakeServer { _, _ in .drop }
        defer { always.close() }
        let once = try teacher(.vllm, spec(always.port, retries: 1))
        assertThrows(try once.score(g), containing: ["teacher 'r'", "http://127.0.0.1:\(always.port)/v1/completions", "2 attempts"])
    }

    func testRequestsInFlightStayWithinTheLimitAndKeepTheirOrder() throws {
        let answers = ModelAnswers(model: model)
        let fake = try FakeServer { _, body in
            usleep(40_000)   // hold each request so that several overlap
            return .answer(200, answers.vllm(body))
        }
        defer { fake.close() }
        let groups = (0..<4).map { i in ScoringGroup(prompt: [i + 1, 7], responses: [[i, 3, 9], [60 - i], [5, 5, i]], index: i) }
        let t = try teacher(.vllm, spec(fake.port, concurrency: 3))
        let rows = try t.rows(for: groups, topK: 3)
        XCTAssertEqual(fake.bodies.count, 12)
        XCTAssertLessThanOrEqual(fake.maxInFlight, 3)
        XCTAssertGreaterThanOrEqual(fake.maxInFlight, 2, "requests were not sent concurrently")
        let local = CheckpointTeacher(name: "l", model: model)
        for (g, r) in zip(groups, rows) {
            let l = try local.score(g, topK: 3)
            for (i, resp) in g.responses.enumerated() {
                let got = try r.rows(response: i, positions: 0..<resp.count, into: nil)
                XCTAssertLessThanOrEqual(maxAbsDiff(got.map(\.logprob), l[i].positions.map(\.logprob)), 1e-4)
            }
        }
    }

    /// `chorus serve` as a process: listens on a free port, scores as the local teacher, and
    /// a SIGKILL mid-run turns the next request into an "unreachable" error.
    func testChorusServeProcessScoresAsTheLocalTeacher() throws {
        guard let chorus = chorusExecutable() else { return }
        let tmp = temporaryDirectory(self)
        let dir = try saveModel(model, tmp.appendingPathComponent("m"))
        let p = Process()
        p.executableURL = chorus
        p.arguments = ["serve", "--model", dir.path, "--port", "0", "--threads", "1", "--api-key", "k3y"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
        // The first stdout line: {"listening": URL, "model": NAME}.
        var line = Data()
        let deadline = Date().addingTimeInterval(60)
        while !line.contains(0x0A), Date() < deadline {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            line.append(d)
        }
        let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: line.prefix { $0 != 0x0A }) as? [String: Any], "no listening line")
        XCTAssertEqual(o["model"] as? String, "m")
        let url = try XCTUnwrap(o["listening"] as? String)
        let port = try XCTUnwrap(Int(url.split(separator: ":").last!))
        var s = spec(port, topK: 20)
        s.apiKeyEnvironment = "K"
        let t = try RemoteTeacher(name: "r", wire: .vllm, spec: s, vocabularySize: 64, environment: ["K": "k3y"])
        let g = sampleGroup()
        assertSame(try t.score(g, topK: 5), try CheckpointTeacher(name: "l", model: model).score(g, topK: 5))
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        assertThrows(try t.score(g), containing: ["teacher 'r'", "\(url)/v1/completions", "unreachable"])
    }
}

extension Data {
    /// The data with the first occurrence of `a` (UTF-8) replaced by `b`.
    func replacingFirst(_ a: String, with b: String) -> Data {
        guard let r = range(of: Data(a.utf8)) else { return self }
        var d = self
        d.replaceSubrange(r, with: Data(b.utf8))
        return d
    }
}

/// The remote keys of a pool manifest: defaults, resolution and one-line errors.
final class RemoteManifestTests: XCTestCase {
    let file = URL(fileURLWithPath: "/pools/remote.toml")

    func parse(_ body: String) throws -> PoolManifest {
        try PoolManifest(toml: "[[teacher]]\nname = \"big\"\n" + body, file: file)
    }

    func testRemoteKeysAreReadWithDefaults() throws {
        let m = try parse("kind = \"vllm\"\nurl = \"http://gpu:8000/\"\nmodel = \"Q\"\ntokenizer = \"big/tokenizer.json\"\n")
        let r = try XCTUnwrap(m.teachers[0].remote)
        XCTAssertEqual(m.teachers[0].kind, .vllm)
        XCTAssertNil(m.teachers[0].path)
        XCTAssertEqual(r.url, "http://gpu:8000")
        XCTAssertEqual(r.tokenizer.path, "/pools/big/tokenizer.json")
        XCTAssertEqual([r.topK, r.retries, r.concurrency], [20, 4, 8])
        XCTAssertEqual(r.timeout, 120)
        XCTAssertNil(r.apiKeyEnvironment)
        let s = try parse("kind = \"sglang\"\nurl = \"https://gpu\"\ntokenizer = \"/t.json\"\ntop_k = 5\napi_key_env = \"SG_KEY\"\n")
        XCTAssertEqual(s.teachers[0].remote?.model, nil)
        XCTAssertEqual(s.teachers[0].remote?.apiKeyEnvironment, "SG_KEY")
        XCTAssertEqual(s.teachers[0].remote?.topK, 5)
        XCTAssertNil(try parse("path = \"m\"\n").teachers[0].remote)
    }

    func testBadRemoteKeysAreOneLineErrorsNamingTheField() {
        let base = "kind = \"vllm\"\nmodel = \"Q\"\ntokenizer = \"t.json\"\n"
        let cases: [(String, [String])] = [
            (base, ["url", "missing"]),
            (base + "url = \"gpu:8000\"\n", ["url", "not an http(s) base URL"]),
            (base + "url = \"ftp://gpu\"\n", ["url", "not an http(s) base URL"]),
            ("kind = \"vllm\"\nurl = \"http://g\"\ntokenizer = \"t.json\"\n", ["model", "missing"]),
            ("kind = \"vllm\"\nurl = \"http://g\"\nmodel = \"Q\"\n", ["tokenizer", "missing"]),
            (base + "url = \"http://g\"\npath = \"m\"\n", ["path", "not allowed"]),
            (base + "url = \"http://g\"\napi_key_env = \"sk-123 secret\"\n", ["api_key_env", "not an environment variable name"]),
            (base + "url = \"http://g\"\ntop_k = 0\n", ["top_k"]),
            (base + "url = \"http://g\"\nconcurrency = 0\n", ["concurrency"]),
            (base + "url = \"http://g\"\ntimeout = -1\n", ["timeout"]),
            (base + "url = \"http://g\"\nbogus = 1\n", ["bogus"]),
            ("path = \"m\"\nurl = \"http://g\"\n", ["url"]),
            ("kind = \"tgi\"\nurl = \"http://g\"\n", ["unknown kind", "vllm", "sglang"]),
        ]
        for (body, fragments) in cases {
            assertThrows(try parse(body), containing: ["remote.toml"] + fragments)
        }
    }
}
