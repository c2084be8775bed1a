import ArgumentParser
import ChorusServe
import Foundation

/// `chorus-serve` (run as `chorus serve`): a checkpoint behind vLLM's prompt-logprobs subset of
/// `/v1/completions`, plus `/v1/models` and `/health`, so it can be a remote teacher.
struct ChorusServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus serve",
        abstract: "Serve a checkpoint's prompt log-probs over HTTP, as vLLM's /v1/completions does.",
        discussion: """
        POST /v1/completions {"prompt": [ids], "prompt_logprobs": k, "max_tokens": 1} answers \
        choices[0].prompt_logprobs (first entry null; per token {id: {logprob, rank, decoded_token}} \
        for the top k and the prompt token). GET /v1/models, GET /health. With --api-key (or \
        CHORUS_API_KEY) every endpoint but /health needs "Authorization: Bearer KEY". Prints \
        {"listening": URL, "model": NAME} on stdout once ready. docs/remote-teachers.md.
        """)

    @Option(help: "Model directory (config.json, safetensors, tokenizer.json).")
    var model: String

    @Option(help: "Address to listen on. Anything but loopback without --api-key prints a warning.")
    var host = "127.0.0.1"

    @Option(help: "Port (0: any free port, printed on stdout).")
    var port = 8000

    @Option(name: .customLong("api-key"), help: "Bearer key every endpoint but /health requires (default: $CHORUS_API_KEY).")
    var apiKey: String?

    @Option(name: .customLong("served-model-name"), help: "The model name requests use (default: the directory's name).")
    var servedModelName: String?

    @Option(name: .customLong("max-logprobs"), help: "The largest prompt_logprobs accepted (vLLM's default: 20).")
    var maxLogprobs = 20

    @Option(name: .customLong("max-body-bytes"), help: "The largest request body; larger ones get 413.")
    var maxBodyBytes = 8 << 20

    @Option(name: .customLong("max-pending"), help: "Completions waiting or running at once; one more gets 429.")
    var maxPending = 64

    @Option(help: "Worker threads for kernels and BLAS (default: all cores).")
    var threads: Int?

    @Option(help: "With --bench and no model directory: a built-in random-weight shape (e.g. qwen3-10m).")
    var shape: String?

    @Flag(help: "Instead of serving: measure scored positions/s of the model as a local teacher and through a loopback server (JSON).")
    var bench = false

    func validate() throws {
        if !(1...65535).contains(port) && port != 0 { throw ValidationError("--port \(port) is outside [0, 65535]") }
        if maxLogprobs < 0 { throw ValidationError("--max-logprobs must be >= 0") }
        if maxBodyBytes < 1 { throw ValidationError("--max-body-bytes must be >= 1") }
        if maxPending < 1 { throw ValidationError("--max-pending must be >= 1") }
        if let k = apiKey, k.isEmpty { throw ValidationError("--api-key is empty") }
    }

    func run() throws {
        configureThreads(threads)
        let dir = URL(fileURLWithPath: model).standardizedFileURL
        var isDir: ObjCBool = false
        guard (bench && shape != nil) || (FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) && isDir.boolValue) else {
            throw ValidationError("--model: model directory '\(dir.path)' not found")
        }
        if bench {
            let pairs = try LoopbackBenchmark.run(directory: dir, shape: shape)
            let text = "{" + pairs.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",") + "}\n"
            FileHandle.standardOutput.write(Data(text.utf8))
            return
        }
        let env = ProcessInfo.processInfo.environment["CHORUS_API_KEY"]
        let key = apiKey ?? (env?.isEmpty == false ? env : nil)
        let name = servedModelName ?? dir.lastPathComponent
        if key == nil && !["127.0.0.1", "::1", "localhost"].contains(host) {
            FileHandle.standardError.write(Data(
                "warning: listening on \(host) without --api-key: anyone who can reach this port can use the model\n".utf8))
        }
        let service = try CompletionService(directory: dir, options: .init(servedName: name, apiKey: key, maxLogprobs: maxLogprobs,
                                                                           maxBodyBytes: maxBodyBytes, maxPending: maxPending))
        let server = try ScoringServer.start(service: service, host: host, port: port)
        let shown = host.contains(":") ? "[\(host)]" : host
        FileHandle.standardOutput.write(Data("{\"listening\":\"http://\(shown):\(server.port)\",\"model\":\(jsonString(name))}\n".utf8))
        try server.wait()
    }
}

ChorusServeCommand.main()
