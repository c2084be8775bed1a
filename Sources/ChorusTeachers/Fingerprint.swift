import ChorusCache
import ChorusModel
import Foundation

/// Teacher fingerprints (`ChorusCache.TeacherFingerprint`, SHA-256) over everything that
/// decides a teacher's scores.
///
/// A checkpoint's covers config.json and every weights file (model.safetensors, or the index
/// and the shards it names, in name order) plus its kind; a self-teacher's adds its privileged
/// template. Equal fingerprints give equal scores for equal contexts, which is what the
/// content-addressed score cache needs. The same files and strings given to
/// `chorus cache fingerprint --file … --string …` print the same hex.
public enum Fingerprints {
    /// The files of a model directory that enter its fingerprint, in order.
    public static func modelFiles(directory: URL) throws -> [URL] {
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var files = [directory.appendingPathComponent("config.json")]
        if FileManager.default.fileExists(atPath: index.path) {
            let shards = try CheckpointFiles(directory: directory).files.map { URL(fileURLWithPath: $0.path) }
            files.append(index)
            files += shards.sorted { $0.lastPathComponent < $1.lastPathComponent }
        } else {
            files.append(directory.appendingPathComponent("model.safetensors"))
        }
        return files
    }

    /// The fingerprint of a model directory with identifying strings (kind, template); `memo`
    /// answers it without reading the weights when no file changed since it was last computed.
    public static func checkpoint(directory: URL, strings: [String], memo: FingerprintMemo? = nil) throws -> TeacherFingerprint {
        let files = try modelFiles(directory: directory)
        if let memo { return try memo.fingerprint(files: files, strings: strings) }
        return try TeacherFingerprint.make(files: files, strings: strings)
    }

    /// The fingerprint of in-memory parameters (a model without files) and strings.
    public static func parameters(_ model: TransformerModel, strings: [String]) -> TeacherFingerprint {
        var h = SHA256()
        h.update(Array("chorus-teacher-fingerprint-parameters-v1".utf8))
        for s in strings { h.update(Array("\(s.utf8.count):\(s)".utf8)) }
        if let cfg = try? JSONSerialization.data(withJSONObject: model.config.jsonObject(), options: [.sortedKeys]) {
            h.update(Array(cfg))
        }
        h.update(UnsafeRawBufferPointer(start: model.parameters.data, count: model.layout.totalCount * 4))
        return TeacherFingerprint(bytes: h.finalize())
    }
}
