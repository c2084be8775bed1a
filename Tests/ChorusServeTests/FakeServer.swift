import ChorusModel
import ChorusServe
import ChorusTeachers
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A hand-rolled HTTP/1.1 server on loopback for the client's failure cases: each connection
/// reads one request (head and Content-Length body) and does what `handler` says — answer,
/// drop the connection unanswered (a server killed mid-request), or never answer. Test code
/// only: the product uses swift-nio (`ScoringServer`).
final class FakeServer: @unchecked Sendable {
    /// What one request gets.
    enum Action {
        case answer(Int, Data)
        /// Close the connection without a byte of answer.
        case drop
        /// Keep the connection open and never answer (until the server closes).
        case hang
    }

    let port: Int
    private let fd: Int32
    private let handler: (Int, Data) -> Action
    private let lock = NSLock()
    private var _bodies: [Data] = []
    private var inFlight = 0
    private var _maxInFlight = 0
    private var closed = false

    /// The request bodies received, in arrival order.
    var bodies: [Data] { lock.lock(); defer { lock.unlock() }; return _bodies }
    /// The most requests that were being handled at once.
    var maxInFlight: Int { lock.lock(); defer { lock.unlock() }; return _maxInFlight }

    /// Listens on 127.0.0.1 at a free port; `handler(index, body)` runs on the connection's
    /// own thread (it may sleep to hold the request).
    init(handler: @escaping (Int, Data) -> Action) throws {
        self.handler = handler
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && listen(s, 64) == 0 && getsockname(s, $0, &len) == 0 }
        }
        guard s >= 0, ok else { throw POSIXError(.EADDRNOTAVAIL) }
        fd = s
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    deinit { close() }

    /// Stops accepting; hanging connections are released.
    func close() {
        lock.lock()
        let was = closed
        closed = true
        lock.unlock()
        if !was {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }
    }

    var isClosed: Bool { lock.lock(); defer { lock.unlock() }; return closed }

    private func acceptLoop() {
        while !isClosed {
            let c = accept(fd, nil, nil)
            if c < 0 { if isClosed { return } else { continue } }
            let t = Thread { [self] in serve(c) }
            t.start()
        }
    }

    private func serve(_ c: Int32) {
        defer { Glibc.close(c) }
        guard let body = readRequest(c) else { return }
        lock.lock()
        let index = _bodies.count
        _bodies.append(body)
        inFlight += 1
        _maxInFlight = max(_maxInFlight, inFlight)
        lock.unlock()
        let action = handler(index, body)
        lock.lock(); inFlight -= 1; lock.unlock()
        switch action {
        case .drop: return
        case .hang:
            while !isClosed { usleep(20_000) }
        case let .answer(status, data):
            var out = Data("HTTP/1.1 \(status) X\r\nContent-Type: application/json\r\nContent-Length: \(data.count)\r\nConnection: close\r\n\r\n".utf8)
            out.append(data)
            out.withUnsafeBytes { p in
                var off = 0
                while off < p.count {
                    let n = send(c, p.baseAddress! + off, p.count - off, Int32(MSG_NOSIGNAL))
                    if n <= 0 { return }
                    off += n
                }
            }
        }
    }

    /// The body of one request, nil when the client went away first.
    private func readRequest(_ c: Int32) -> Data? {
        var buf = [UInt8](repeating: 0, count: 65536), data = Data()
        var headEnd: Int?
        var length = 0
        while true {
            if let h = headEnd, data.count >= h + length { return data.subdata(in: h..<(h + length)) }
            let n = recv(c, &buf, buf.count, 0)
            if n <= 0 { return nil }
            data.append(buf, count: n)
            if headEnd == nil, let r = data.range(of: Data("\r\n\r\n".utf8)) {
                headEnd = r.upperBound
                let head = String(decoding: data[..<r.lowerBound], as: UTF8.self).lowercased()
                for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                    length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
        }
    }
}

/// Answers of a real model for the fake server: vLLM's, straight from `CompletionService`,
/// and SGLang's, rewritten from them into `meta_info.input_token_logprobs` /
/// `input_top_logprobs` as SGLang's `/generate` shapes them.
struct ModelAnswers {
    let service: CompletionService
    /// The fake server's connection threads call in at once; a service runs one forward at a
    /// time (`ScoringServer` runs them on `service.queue`), so calls go one by one.
    private let lock = NSLock()

    init(model: TransformerModel, maxLogprobs: Int = 64) {
        service = CompletionService(model: model, options: .init(servedName: "m", maxLogprobs: maxLogprobs))
    }

    /// The vLLM answer to a vLLM request body.
    func vllm(_ body: Data) -> Data {
        lock.lock(); defer { lock.unlock() }
        return service.complete(body: body).body
    }

    /// The SGLang answer to an SGLang request body (input_ids, top_logprobs_num).
    func sglang(_ body: Data) -> Data {
        let req = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        let ids = (req["input_ids"] as? [Any] ?? []).compactMap { RemoteWire.integer($0) }
        let k = RemoteWire.integer(req["top_logprobs_num"]) ?? 0
        let v = vllm(json(["prompt": ids, "prompt_logprobs": k, "max_tokens": 1]))
        let o = (try? JSONSerialization.jsonObject(with: v)) as? [String: Any]
        let pl = ((o?["choices"] as? [[String: Any]])?.first?["prompt_logprobs"] as? [Any]) ?? []
        var tokens: [Any] = [[NSNull(), ids.first ?? 0, NSNull()]], tops: [Any] = [NSNull()]
        for i in 1..<max(1, pl.count) {
            let m = pl[i] as? [String: [String: Any]] ?? [:]
            let entries = m.map { (id: Int($0.key)!, lp: RemoteWire.number($0.value["logprob"])!, rank: RemoteWire.integer($0.value["rank"])!) }
            tokens.append([m[String(ids[i])].flatMap { RemoteWire.number($0["logprob"]) } ?? 0, ids[i], "t\(ids[i])"])
            tops.append(entries.filter { $0.rank <= k }.sorted { $0.rank < $1.rank }.map { [$0.lp, $0.id, NSNull()] as [Any] })
        }
        return json(["text": "", "meta_info": ["id": "x", "prompt_tokens": ids.count, "completion_tokens": 0,
                                               "input_token_logprobs": tokens, "input_top_logprobs": tops,
                                               "output_token_logprobs": [Any](), "output_top_logprobs": [Any]()]])
    }
}
