import Foundation

/// What `chorus report` and `chorus inspect` are pointed at: run directories, grouped, and the
/// output file they may write.
public enum ReportInputs {
    /// Whether `url` is a run directory: a directory holding metrics.jsonl, run.json or run.toml.
    public static func isRunDirectory(_ url: URL) -> Bool {
        ["metrics.jsonl", "run.json", "run.toml"].contains { FileManager.default.fileExists(atPath: url.appendingPathComponent($0).path) }
    }

    /// The groups of `chorus report PATH...`, in argument order:
    /// - a run directory is a group of one, labelled by its name;
    /// - a directory whose `seed-N` subdirectories are runs is one group (its name, the seeds in
    ///   numeric order);
    /// - otherwise each subdirectory that is a run, or holds `seed-N` runs, is a group: pointed at
    ///   a `chorus compare` output (OUTPUT/LABEL/seed-N/) this gives one group per label.
    /// `explicit` groups (`--group NAME=DIR,DIR`) come first, each directory a run.
    /// Repeated labels get their parent directory's name in front.
    /// - Throws: `ReportError.notRuns` naming a path that is missing, not a directory or holds no runs.
    public static func groups(paths: [URL], explicit: [ReportGroup] = []) throws -> [ReportGroup] {
        // Each group with the directory that named it (for disambiguating repeated labels).
        var out: [(group: ReportGroup, source: URL?)] = explicit.map { ($0, nil) }
        for g in explicit {
            for d in g.runDirectories where !isDirectory(d) {
                throw ReportError.notRuns(d.path, "no such directory (in --group \(g.label))")
            }
        }
        for p in paths {
            guard isDirectory(p) else { throw ReportError.notRuns(p.path, "no such directory") }
            if isRunDirectory(p) { out.append((ReportGroup(label: name(p), runDirectories: [p]), p)); continue }
            let seeds = seedRuns(p)
            if !seeds.isEmpty { out.append((ReportGroup(label: name(p), runDirectories: seeds), p)); continue }
            var found: [(group: ReportGroup, source: URL?)] = []
            for c in subdirectories(p) {
                if isRunDirectory(c) {
                    found.append((ReportGroup(label: name(c), runDirectories: [c]), c))
                } else {
                    let s = seedRuns(c)
                    if !s.isEmpty { found.append((ReportGroup(label: name(c), runDirectories: s), c)) }
                }
            }
            if found.isEmpty {
                throw ReportError.notRuns(p.path, "not a run directory (no metrics.jsonl, run.json or run.toml) and holds no runs (run directories or LABEL/seed-N/ runs)")
            }
            out += found
        }
        // Disambiguate repeated labels with the parent directory ("a/out", "b/out").
        let counts = Dictionary(out.map { ($0.group.label, 1) }, uniquingKeysWith: +)
        for i in out.indices where counts[out[i].group.label]! > 1 {
            if let src = out[i].source { out[i].group.label = name(src.deletingLastPathComponent()) + "/" + out[i].group.label }
        }
        return out.map(\.group)
    }

    /// Parses `--group NAME=DIR1,DIR2`.
    public static func parseGroup(_ text: String) throws -> ReportGroup {
        guard let eq = text.firstIndex(of: "=") else { throw ReportError.badGroup("'\(text)': expected NAME=DIR[,DIR...]") }
        let label = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
        let dirs = text[text.index(after: eq)...].split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if label.isEmpty { throw ReportError.badGroup("'\(text)': the group name is empty") }
        if dirs.isEmpty { throw ReportError.badGroup("'\(text)': no run directories after '='") }
        return ReportGroup(label: label, runDirectories: dirs.map { URL(fileURLWithPath: $0, isDirectory: true) })
    }

    /// Refuses an output path that must not be written: a directory, a path inside one of the
    /// `runs` (the trainer's files), a missing parent directory, or an existing file that is not
    /// a page Chorus wrote (it lacks `ComparisonReport.generatorMarker` or the inspect page's).
    public static func checkOutput(_ url: URL, runs: [URL]) throws {
        let fm = FileManager.default
        let parent = url.deletingLastPathComponent()
        guard isDirectory(parent) else { throw ReportError.badOutput(url.path, "the directory \(parent.path) does not exist") }
        let target = parent.resolvingSymlinksInPath().appendingPathComponent(url.lastPathComponent).standardizedFileURL.path
        for r in runs {
            let root = r.resolvingSymlinksInPath().standardizedFileURL.path
            if target == root || target.hasPrefix(root.hasSuffix("/") ? root : root + "/") {
                throw ReportError.badOutput(url.path, "is inside the run directory \(r.path) (its files belong to the trainer); write the page elsewhere with --output")
            }
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDir) {
            if isDir.boolValue { throw ReportError.badOutput(url.path, "is a directory; give a file name with --output") }
            let head = (try? FileHandle(forReadingFrom: url)).flatMap { h -> Data? in defer { try? h.close() }; return try? h.read(upToCount: 4096) } ?? Data()
            let text = String(decoding: head, as: UTF8.self)
            if !text.contains(ComparisonReport.generatorMarker) && !text.contains(TokenPage.generatorMarker) {
                throw ReportError.badOutput(url.path, "exists and is not a page written by chorus; refusing to overwrite it (remove it or choose another --output)")
            }
        }
    }

    static func isDirectory(_ url: URL) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &d) && d.boolValue
    }

    static func name(_ url: URL) -> String {
        let n = url.standardizedFileURL.lastPathComponent
        return n.isEmpty || n == "/" ? url.path : n
    }

    static func subdirectories(_ url: URL) -> [URL] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        return names.map { url.appendingPathComponent($0, isDirectory: true) }.filter(isDirectory)
    }

    /// The `seed-N` subdirectories of `url` that are runs, by N.
    static func seedRuns(_ url: URL) -> [URL] {
        subdirectories(url).compactMap { c -> (Int, URL)? in
            let n = c.lastPathComponent
            guard n.hasPrefix("seed-"), let k = Int(n.dropFirst(5)), isRunDirectory(c) else { return nil }
            return (k, c)
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
