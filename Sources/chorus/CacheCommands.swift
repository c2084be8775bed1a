import ArgumentParser
import ChorusCache
import Foundation

/// `chorus cache …`: inspect and maintain a teacher-score cache directory. Each subcommand parses,
/// calls one `ScoreCache` entry point and prints its report; errors are one line on stderr and a
/// non-zero exit.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Inspect and maintain a teacher-score cache.",
        subcommands: [CacheStatsCommand.self, CacheVerifyCommand.self, CacheGCCommand.self, CacheExportCommand.self,
                      CacheImportCommand.self, CacheFingerprintCommand.self, CacheStressWriteCommand.self,
                      CacheBenchCommand.self])
}

/// Runs `body`, turning any error into one line on stderr and exit status 1.
private func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        FileHandle.standardError.write(Data("chorus cache: \(describeError(error))\n".utf8))
        throw ExitCode(1)
    }
}

/// One line of sorted-key JSON on stdout.
private func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct CacheStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Records, bytes, bytes per position, ratio to float32 and per-teacher counts (JSON).")

    @OptionGroup var directory: CacheDirectoryArgument
    @Flag(help: "Human-readable text instead of JSON.") var human = false

    func run() throws {
        try reportingErrors {
            let s = try ScoreCache(directory: directory.url, readOnly: true).stats()
            guard human else { return try printJSON(s) }
            print("records \(s.records), positions \(s.positions), record bytes \(s.recordBytes) in \(s.segments) segment(s) of \(s.segmentBytes) bytes")
            print(String(format: "%.2f bytes/position, %.2fx smaller than float32", s.bytesPerPosition, s.ratioToFloat32))
            for (name, t) in s.teachers.sorted(by: { $0.key < $1.key }) {
                print("  \(name): \(t.records) records, \(t.positions) positions, \(t.bytes) bytes")
            }
        }
    }
}

struct CacheVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Decode every record; exit 1 if any is corrupt (torn tails from crashes are reported, exit 0).")

    @OptionGroup var directory: CacheDirectoryArgument

    func run() throws {
        try reportingErrors {
            let report = try ScoreCache(directory: directory.url, readOnly: true).verify()
            for d in report.corrupt {
                FileHandle.standardError.write(Data("corrupt: \(d.segment) @\(d.offset) (\(d.length) bytes)\(d.key.map { " key \($0)" } ?? ""): \(d.detail)\n".utf8))
            }
            for d in report.tornTails {
                FileHandle.standardError.write(Data("torn tail: \(d.segment) @\(d.offset) (\(d.length) bytes): \(d.detail)\n".utf8))
            }
            try printJSON(report)
            if !report.isClean { throw ExitCode(1) }
        }
    }
}

struct CacheGCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Evict least recently used records until the cache fits in --max-bytes.")

    @OptionGroup var directory: CacheDirectoryArgument
    @Option(help: "Size limit for the record data, in bytes.") var maxBytes: Int

    func validate() throws {
        guard maxBytes >= 0 else { throw ValidationError("--max-bytes must be non-negative") }
    }

    func run() throws {
        try reportingErrors {
            // gc maintains an existing cache; a mistyped path must not become a new empty one.
            _ = try ScoreCache(directory: directory.url, readOnly: true)
            try printJSON(try ScoreCache(directory: directory.url).gc(maxBytes: maxBytes))
        }
    }
}

struct CacheExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write every record as JSONL (docs/cache-format.md) to stdout or --output.")

    @OptionGroup var directory: CacheDirectoryArgument
    @Option(help: "Output file (default: standard output); must not exist unless --force.") var output: String?
    @Flag(help: "Replace an existing --output file.") var force = false

    func run() throws {
        try reportingErrors {
            if let output {
                // Never inside the cache (a segment truncated while it is read loses the cache),
                // and never over an existing file unless asked.
                if OutputSafety.ancestry(output).contains(where: { id in OutputSafety.identity(directory.url.path).map { $0 == id } ?? false }) {
                    throw CLIError("--output \(output) is inside the cache directory \(directory.url.path); write the export elsewhere")
                }
                if OutputSafety.identity(output) != nil && !force {
                    throw CLIError("--output \(output) already exists; pass --force to replace it")
                }
            }
            let cache = try ScoreCache(directory: directory.url, readOnly: true)
            let report = try output.map { try cache.export(to: URL(fileURLWithPath: $0)) }
                ?? cache.export(toFileDescriptor: 1)
            FileHandle.standardError.write(Data("exported \(report.records) record(s)\n".utf8))
            if report.corrupt > 0 {
                FileHandle.standardError.write(Data("chorus cache: \(report.corrupt) corrupt record(s) not exported\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

struct CacheImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Store the scores of a JSONL file (docs/cache-format.md).")

    @OptionGroup var directory: CacheDirectoryArgument
    @Argument(help: "JSONL file, one scored sequence per line.") var file: String

    func run() throws {
        try reportingErrors {
            let cache = try ScoreCache(directory: directory.url)
            try printJSON(try cache.importJSONL(from: URL(fileURLWithPath: file)))
        }
    }
}

struct CacheFingerprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fingerprint",
        abstract: "Print the teacher fingerprint (SHA-256 hex) of files (weights, config) and strings (privileged context).")

    @Option(name: .customLong("file"), help: "A file to hash (repeatable; order matters).") var files: [String] = []
    @Option(name: .customLong("string"), help: "A string to hash (repeatable; order matters).") var strings: [String] = []

    func run() throws {
        try reportingErrors {
            print(try TeacherFingerprint.make(files: files.map { URL(fileURLWithPath: $0) }, strings: strings).hex)
        }
    }
}

/// Test support: stores `CacheStress` items one by one and prints "stored I" after each store
/// returns, so a test that kill -9s this process knows which records must have survived.
struct CacheStressWriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress-write", abstract: "Write deterministic test records (for crash tests).",
        shouldDisplay: false)

    @OptionGroup var directory: CacheDirectoryArgument
    @Option(help: "Number of records.") var count: Int
    @Option(help: "Stream seed.") var seed: UInt64 = 1
    @Option(help: "Index of the first record.") var first: Int = 0
    @Option(help: "Segment size limit (small values exercise rollover).") var segmentBytes: Int = 64 << 20
    @Option(help: "Append frames in pieces of this many bytes (0: whole), so a kill lands mid-frame.") var chunkBytes: Int = 0
    @Option(help: "Pause between pieces, microseconds.") var chunkPauseUs: UInt32 = 200

    func run() throws {
        try reportingErrors {
            let cache = try ScoreCache(directory: directory.url, maxSegmentBytes: segmentBytes)
            if chunkBytes > 0 { cache.debugAppendChunks = (chunkBytes, chunkPauseUs) }
            for i in first..<(first + count) {
                let item = CacheStress.item(seed: seed, index: i)
                try cache.store(item.key, item.record, teacher: item.teacher)
                print("stored \(i)")
                fflush(stdout)
            }
        }
    }
}

/// Prints `CacheBenchmark.run()` as JSON (the lead wires the same function into `chorus bench`).
struct CacheBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Codec size and speed on synthetic scores (JSON).", shouldDisplay: false)

    func run() throws {
        try printJSON(CacheBenchmark.run())
    }
}
