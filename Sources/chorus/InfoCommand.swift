import ArgumentParser
import ChorusCore
import ChorusModel
import ChorusTeachers
import Foundation

/// `chorus info`: describe a model directory or a teacher pool (JSON), without loading weights.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model directory or a teacher pool and check it (JSON; weights are not loaded).",
        discussion: """
        --model DIR: architecture, parameter count, dtypes on disk (from the safetensors \\
        headers), vocabulary size of config.json and of tokenizer.json, special tokens, context \\
        length, tied embeddings, and checks that the weights match the config and that the \\
        tokenizer agrees with it (vocab size, bos/eos/pad ids). --pool FILE: the same for the \\
        student and each local teacher, a remote teacher's manifest entry (the server is not \\
        contacted), and the pool checks (a student where self-teachers need one, one shared \\
        vocabulary). The JSON is printed either way; the exit status is 1 when a check fails \\
        ("ok": false). A directory that cannot be described (no config.json, a corrupt \\
        safetensors file, no tokenizer.json) is an error naming the file.
        """)

    @Option(help: "A Hugging Face model directory (config.json, safetensors, tokenizer.json).")
    var model: String?

    @Option(help: "A teacher pool manifest (TOML).")
    var pool: String?

    @Option(help: "With --pool: the student model directory (overrides the manifest's `student`).")
    var student: String?

    func validate() throws {
        if (model == nil) == (pool == nil) { throw ValidationError("give exactly one of --model and --pool") }
        if student != nil && pool == nil { throw ValidationError("--student goes with --pool") }
    }

    func run() throws {
        let ok: Bool
        if let model {
            let info = try ModelInfo.inspect(directory: URL(fileURLWithPath: model))
            emit(info.json)
            ok = info.ok
        } else {
            let info = try PoolInfo.inspect(manifest: URL(fileURLWithPath: pool!),
                                            student: student.map { URL(fileURLWithPath: $0).standardizedFileURL })
            emit(info.json)
            ok = info.ok
        }
        if !ok {
            FileHandle.standardError.write(Data("Error: a check failed (see \"checks\" in the output)\n".utf8))
            throw ExitCode(1)
        }
    }
}
