import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `chorus serve`: runs `chorus-serve`, the HTTP server built as a product of its own (so that
/// building `chorus` does not build swift-nio), with the same arguments.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a checkpoint as a vLLM-compatible scoring server (runs chorus-serve; `chorus serve --help-server` for options).",
        discussion: """
        chorus serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--served-model-name NAME] \
        [--max-logprobs 20] [--max-body-bytes N] [--max-pending N] [--threads N]. \
        POST /v1/completions with prompt = token ids and prompt_logprobs = k answers as vLLM does; \
        GET /v1/models, GET /health. The server is the program chorus-serve next to chorus \
        (`make serve` or `swift build --product chorus-serve` builds it). docs/remote-teachers.md.
        """)

    @Argument(parsing: .captureForPassthrough, help: "Arguments of chorus-serve.")
    var arguments: [String] = []

    func run() throws {
        let me = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0])
        let server = me.deletingLastPathComponent().appendingPathComponent("chorus-serve")
        guard FileManager.default.isExecutableFile(atPath: server.path) else {
            throw CLIError("chorus serve needs the program \(server.path), which is not built: run `make serve` "
                           + "or `swift build -c release --product chorus-serve`")
        }
        let args = arguments.map { $0 == "--help-server" ? "--help" : $0 }
        let argv = ([server.path] + args).map { strdup($0) } + [nil]
        execv(server.path, argv)
        throw CLIError("chorus serve: cannot run \(server.path): \(String(cString: strerror(errno)))")
    }
}
