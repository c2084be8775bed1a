import ChorusConfig
import Foundation

/// Run-file text without its `[curriculum]` table and `[[curriculum.stage]]` entries (every
/// table whose name is `curriculum` or starts with `curriculum.`), the rest unchanged line for
/// line.
///
/// A `[curriculum]` table makes the run's aggregator "curriculum" and another aggregator beside
/// it is refused (docs/curricula.md), so a tool that derives a run with another strategy from a
/// curriculum run file (`chorus compare --aggregators curriculum,arithmetic`) drops the table
/// with this before it sets `teachers.aggregator`. The result is parsed to check that no
/// curriculum key is left and that the text is still TOML (a table header is found by lines
/// that start with `[`, as `applyOverrides` does); it throws a `ConfigFileError` naming `file`
/// otherwise.
public func removingCurriculum(from text: String, file: String) throws -> String {
    var kept: [String] = []
    var inCurriculum = false
    for line in text.components(separatedBy: "\n") {
        let t = line.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("[") {
            // `[name]` or `[[name]]`, maybe followed by a comment.
            var h = t
            if let hash = h.firstIndex(of: "#") { h = String(h[..<hash]) }
            let name = h.trimmingCharacters(in: CharacterSet(charactersIn: "[] \t"))
            inCurriculum = name == "curriculum" || name.hasPrefix("curriculum.")
        }
        if !inCurriculum { kept.append(line) }
    }
    let out = kept.joined(separator: "\n")
    let root = try ConfigTable(string: out, file: file)
    if root.has("curriculum") {
        throw ConfigFileError(file, "could not remove the [curriculum] table from the text (a dotted curriculum.* key outside it?)")
    }
    return out
}
