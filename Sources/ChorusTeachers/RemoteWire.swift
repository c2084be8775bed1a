import ChorusCore
import Foundation

/// The request bodies and answer readers of the two remote protocols, kept apart from the
/// HTTP client so each can be tested on fixed answers.
///
/// vLLM (`POST /v1/completions`, also `chorus serve`):
/// `{"model": M, "prompt": [ids], "max_tokens": 1, "prompt_logprobs": k, "temperature": 0}` ->
/// `choices[0].prompt_logprobs`: one entry per prompt token, the first null, each a map from a
/// token id (a string) to `{"logprob", "rank", "decoded_token"}` holding the top k and the
/// prompt token itself (rank > k when it is outside them).
///
/// SGLang (`POST /generate`): `{"input_ids": [ids], "sampling_params": {"max_new_tokens": 0},
/// "return_logprob": true, "logprob_start_len": 0, "top_logprobs_num": k}` ->
/// `meta_info.input_token_logprobs` ([logprob, id, text] per prompt token, the first logprob
/// null) and `meta_info.input_top_logprobs` (per token null or [[logprob, id, text], ...]).
public enum RemoteWire {
    /// Why an answer could not be read (wrapped into `RemoteTeacherError.malformed`).
    public struct Malformed: Error, CustomStringConvertible {
        public let reason: String
        init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// The JSON request body scoring every position of `ids`.
    public static func request(_ wire: RemoteTeacher.Wire, ids: [Int], topK: Int, model: String?) -> [String: Any] {
        switch wire {
        case .vllm:
            var o: [String: Any] = ["prompt": ids, "max_tokens": 1, "prompt_logprobs": topK, "temperature": 0]
            if let m = model { o["model"] = m }
            return o
        case .sglang:
            var o: [String: Any] = ["input_ids": ids, "sampling_params": ["max_new_tokens": 0, "temperature": 0],
                                    "return_logprob": true, "logprob_start_len": 0, "top_logprobs_num": topK]
            if let m = model { o["model"] = m }
            return o
        }
    }

    /// The scores of positions start ..< ids.count read from an answer: the token's log-prob,
    /// the top `topK` entries (highest first, ties lower id first), and the entropy of the row
    /// `TopKApproximation` rebuilds from them.
    public static func parse(_ wire: RemoteTeacher.Wire, _ data: Data, ids: [Int], start: Int, topK: Int,
                             vocabularySize V: Int) throws -> [PositionScore] {
        guard let root = try? JSONSerialization.jsonObject(with: data) else {
            throw Malformed("not JSON (\(data.count) bytes: \(snippet(data)))")
        }
        let entries: [(logprob: Double, known: [Int: Double], ranks: [Int: Int])]
        switch wire {
        case .vllm: entries = try vllmEntries(root, ids: ids, start: start)
        case .sglang: entries = try sglangEntries(root, ids: ids, start: start)
        }
        return try entries.enumerated().map { j, e in
            let target = ids[start + j], at = "position \(start + j)"
            for id in e.known.keys where id < 0 || id >= V {
                throw Malformed("\(at): token id \(id) is outside the vocabulary [0, \(V))")
            }
            for lp in e.known.values + [e.logprob] where !(lp.isFinite && lp <= 1e-4) {
                throw Malformed("\(at): log-prob \(lp) is not a finite value <= 0")
            }
            // The top k: the rank the server gives when it gives one, else the k largest
            // (excluding the prompt token when the server sent it on top of k entries).
            var top = e.known.filter { id, _ in
                if let r = e.ranks[id] { return r <= topK }
                return id != target || e.known.count <= topK
            }.map { ($0.key, $0.value) }
            top.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
            top = Array(top.prefix(topK))
            let s = PositionScore(logprob: Float(e.logprob), entropy: 0, topIds: top.map { Int32($0.0) },
                                  topLogprobs: top.map { Float($0.1) })
            var out = s
            out.entropy = TopKApproximation.entropy(s, target: target, count: V)
            return out
        }
    }

    static func vllmEntries(_ root: Any, ids: [Int], start: Int) throws -> [(logprob: Double, known: [Int: Double], ranks: [Int: Int])] {
        guard let o = root as? [String: Any], let choices = o["choices"] as? [Any], let c0 = choices.first as? [String: Any] else {
            throw Malformed("no choices[0] in \(snippet(root))")
        }
        guard let pl = c0["prompt_logprobs"] as? [Any] else {
            throw Malformed("choices[0].prompt_logprobs is missing or not a list (was prompt_logprobs sent and allowed?)")
        }
        if pl.count != ids.count {
            throw Malformed("choices[0].prompt_logprobs has \(pl.count) entries for \(ids.count) prompt tokens")
        }
        return try (start..<ids.count).map { i in
            guard let m = pl[i] as? [String: Any] else { throw Malformed("choices[0].prompt_logprobs[\(i)] is not an object") }
            var known: [Int: Double] = [:], ranks: [Int: Int] = [:]
            for (k, v) in m {
                guard let id = Int(k), let d = v as? [String: Any], let lp = number(d["logprob"]) else {
                    throw Malformed("choices[0].prompt_logprobs[\(i)][\"\(k)\"] is not {\"logprob\": number, ...} under a token id")
                }
                known[id] = lp
                if let r = number(d["rank"]) { ranks[id] = Int(r) }
            }
            guard let lp = known[ids[i]] else {
                throw Malformed("choices[0].prompt_logprobs[\(i)] lacks the prompt token \(ids[i])")
            }
            return (lp, known, ranks)
        }
    }

    static func sglangEntries(_ root: Any, ids: [Int], start: Int) throws -> [(logprob: Double, known: [Int: Double], ranks: [Int: Int])] {
        let obj = (root as? [Any])?.first ?? root
        guard let o = obj as? [String: Any], let meta = o["meta_info"] as? [String: Any] else {
            throw Malformed("no meta_info in \(snippet(root))")
        }
        guard let tokens = meta["input_token_logprobs"] as? [Any], let tops = meta["input_top_logprobs"] as? [Any] else {
            throw Malformed("meta_info.input_token_logprobs or input_top_logprobs is missing (was return_logprob sent?)")
        }
        if tokens.count != ids.count || tops.count != ids.count {
            throw Malformed("meta_info has \(tokens.count) input_token_logprobs and \(tops.count) input_top_logprobs for \(ids.count) input ids")
        }
        func pair(_ v: Any, _ at: String) throws -> (Double, Int) {
            guard let a = v as? [Any], a.count >= 2, let lp = number(a[0]), let id = integer(a[1]) else {
                throw Malformed("\(at) is not [logprob, token_id, ...]")
            }
            return (lp, id)
        }
        return try (start..<ids.count).map { i in
            let (lp, id) = try pair(tokens[i], "meta_info.input_token_logprobs[\(i)]")
            if id != ids[i] { throw Malformed("meta_info.input_token_logprobs[\(i)] is for token \(id), the input has \(ids[i])") }
            guard let list = tops[i] as? [Any] else { throw Malformed("meta_info.input_top_logprobs[\(i)] is not a list") }
            var known: [Int: Double] = [:]
            for (j, e) in list.enumerated() {
                let (l, u) = try pair(e, "meta_info.input_top_logprobs[\(i)][\(j)]")
                known[u] = l
            }
            var all = known
            all[id] = lp
            var ranks: [Int: Int] = [:]
            for u in known.keys { ranks[u] = 1 }   // every listed entry is inside the top k
            if known[id] == nil { ranks[id] = Int.max }
            return (lp, all, ranks)
        }
    }

    /// A number from `JSONSerialization`; nil for null, strings and booleans. Booleans are told
    /// apart by their NSNumber type code "c" (`v is Bool` is also true for the numbers 0 and 1 on
    /// Linux, which would refuse a log-prob of 0 or a rank of 1).
    public static func number(_ v: Any?) -> Double? {
        if let d = v as? Double, !(v is NSNumber) { return d }
        guard let n = v as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
        return n.doubleValue
    }

    /// An integer from `JSONSerialization` (1 and 1.0 alike); nil for anything else.
    public static func integer(_ v: Any?) -> Int? {
        guard let d = number(v), d.isFinite, d == d.rounded(), abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }

    /// The `message` of an error answer (vLLM, SGLang, FastAPI shapes), or the body's start;
    /// one line, at most 300 characters.
    public static func errorMessage(_ data: Data) -> String {
        var m: String?
        if let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            m = o["message"] as? String ?? (o["error"] as? [String: Any])?["message"] as? String ?? o["error"] as? String
                ?? o["detail"] as? String
        }
        let s = (m ?? String(decoding: data.prefix(300), as: UTF8.self)).replacingOccurrences(of: "\n", with: " ")
        return s.count > 300 ? String(s.prefix(300)) + "…" : s
    }

    static func snippet(_ data: Data) -> String { errorMessage(data).isEmpty ? "empty" : String(errorMessage(data).prefix(120)) }
    static func snippet(_ v: Any) -> String {
        let d = (try? JSONSerialization.data(withJSONObject: v)) ?? Data()
        return String(decoding: d.prefix(120), as: UTF8.self)
    }
}
