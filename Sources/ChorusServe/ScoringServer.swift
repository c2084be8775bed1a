import ChorusModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The HTTP/1.1 transport of `chorus serve` (swift-nio): reads requests with a bounded body,
/// answers routing, auth and errors on the network threads, and runs completions one at a
/// time on the service's queue, so a slow forward never blocks `/health` or other clients.
public final class ScoringServer {
    public let service: CompletionService
    let group: MultiThreadedEventLoopGroup
    let channel: Channel

    /// The port the server listens on (the one chosen by the system when started with 0).
    public var port: Int { channel.localAddress?.port ?? 0 }

    /// Starts listening on host:port (0: any free port); throws when the address is taken or
    /// invalid.
    public static func start(service: CompletionService, host: String, port: Int, threads: Int = 2) throws -> ScoringServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
                    channel.pipeline.addHandler(HTTPHandler(service: service))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
        do {
            let channel = try bootstrap.bind(host: host, port: port).wait()
            return ScoringServer(service: service, group: group, channel: channel)
        } catch {
            try? group.syncShutdownGracefully()
            throw ServeError.cannotListen(address: "\(host):\(port)", reason: "\(error)")
        }
    }

    init(service: CompletionService, group: MultiThreadedEventLoopGroup, channel: Channel) {
        self.service = service
        self.group = group
        self.channel = channel
    }

    /// Blocks until the server is closed.
    public func wait() throws { try channel.closeFuture.wait() }

    private let closeLock = NSLock()
    private var closed = false

    /// Stops listening, closes every connection and stops the network threads. A second call
    /// does nothing (waiting on a channel of a stopped event loop would never return).
    public func close() {
        closeLock.lock()
        defer { closeLock.unlock() }
        if closed { return }
        closed = true
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Errors starting a server.
public enum ServeError: Error, CustomStringConvertible {
    case cannotListen(address: String, reason: String)
    /// `--shape` of `--bench` names no built-in shape.
    case unknownShape(String)
    public var description: String {
        switch self {
        case let .unknownShape(s):
            return "--shape: unknown shape '\(s)' (valid: \(BuiltinShape.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .cannotListen(a, r): return "cannot listen on \(a): \(r.replacingOccurrences(of: "\n", with: " "))"
        }
    }
}

/// One connection's requests: head, body up to the cap, end -> answer.
final class HTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let service: CompletionService
    var head: HTTPRequestHead?
    var body = ByteBuffer()
    /// The body went over the cap: the rest is discarded and the answer is 413.
    var overflow = false

    init(service: CompletionService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(h):
            head = h
            body.clear()
            overflow = false
            if let n = h.headers.first(name: "content-length").flatMap(Int.init), n > service.options.maxBodyBytes {
                overflow = true
                // A client waiting for 100-continue has not sent the body: answer now.
                if h.headers.first(name: "expect")?.lowercased() == "100-continue" {
                    respond(context, service.tooLarge(), keepAlive: false)
                    head = nil
                }
            }
        case var .body(part):
            guard !overflow else { return }
            if body.readableBytes + part.readableBytes > service.options.maxBodyBytes {
                overflow = true
                body.clear()
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let h = head else { return }
            head = nil
            if overflow {
                respond(context, service.tooLarge(), keepAlive: false)
                return
            }
            let keepAlive = h.isKeepAlive
            if let r = service.route(method: h.method.rawValue, path: h.uri, authorization: h.headers.first(name: "authorization")) {
                respond(context, r, keepAlive: keepAlive, headOnly: h.method == .HEAD)
                return
            }
            guard service.admit() else {
                respond(context, service.busy(), keepAlive: keepAlive)
                return
            }
            let data = Data(body.readableBytesView)
            body.clear()
            let loop = context.eventLoop, bound = NIOLoopBound((self, context), eventLoop: loop)
            let service = self.service
            service.queue.async {
                let r = service.complete(body: data)
                service.release()
                loop.execute {
                    let (handler, ctx) = bound.value
                    handler.respond(ctx, r, keepAlive: keepAlive)
                }
            }
        }
    }

    func respond(_ context: ChannelHandlerContext, _ r: CompletionService.Response, keepAlive: Bool, headOnly: Bool = false) {
        var headers = HTTPHeaders()
        if !r.body.isEmpty { headers.add(name: "content-type", value: "application/json") }
        headers.add(name: "content-length", value: "\(r.body.count)")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: r.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !headOnly && !r.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: r.body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in ctx.value.close(promise: nil) }
        }
    }
}
