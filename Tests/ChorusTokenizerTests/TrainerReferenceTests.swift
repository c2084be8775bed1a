import Foundation
import XCTest
@testable import ChorusTokenizer

/// The BPE trainer against an independent reference (Fixtures/bpe_reference.json, written by
/// HF `tokenizers`' BpeTrainer through make_fixtures.py), not against its own earlier output.
final class TrainerReferenceTests: XCTestCase {
    struct Reference {
        let vocabSize: Int, minFrequency: Int, specialTokens: [String], hfVocabSize: Int
        let merges: [[String]]
        let corpus: String?
        let words: [(String, Int)]
    }

    func reference(_ name: String) throws -> Reference {
        let all = try XCTUnwrap(try JSONSerialization.jsonObject(with: try Fixtures.data("bpe_reference.json")) as? [String: Any])
        let r = try XCTUnwrap(all[name] as? [String: Any], "bpe_reference.json lacks '\(name)'")
        let merges = try XCTUnwrap(r["merges"] as? [[String]])
        let words = try ((r["words"] as? [[Any]]) ?? []).map { w -> (String, Int) in
            (try XCTUnwrap(w[0] as? String), try XCTUnwrap(w[1] as? Int))
        }
        let ref = Reference(vocabSize: try XCTUnwrap(r["vocab_size"] as? Int), minFrequency: try XCTUnwrap(r["min_frequency"] as? Int),
                            specialTokens: try XCTUnwrap(r["special_tokens"] as? [String]), hfVocabSize: try XCTUnwrap(r["hf_vocab_size"] as? Int),
                            merges: merges, corpus: r["corpus"] as? String, words: words)
        // An empty reference must fail, not pass.
        XCTAssertGreaterThan(ref.merges.count, 100, name)
        return ref
    }

    /// The trained file's merges, as spellings in the byte-level alphabet.
    func merges(_ tok: Tokenizer) throws -> [[String]] {
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(tok.jsonString().utf8)) as? [String: Any])
        let model = try XCTUnwrap(doc["model"] as? [String: Any])
        return try XCTUnwrap(model["merges"] as? [[String]])
    }

    /// Where HF and Chorus number tokens the same way (printable ASCII, no whitespace), the
    /// merges are identical, in order.
    func testMergesEqualHFBpeTrainerOnPrintableCorpus() throws {
        let ref = try reference("plain")
        let corpus = try XCTUnwrap(ref.corpus)
        let tok = try BPETrainer(vocabSize: ref.vocabSize, specialTokens: ref.specialTokens, minFrequency: ref.minFrequency)
            .train(texts: [corpus])
        XCTAssertEqual(tok.vocabSize, ref.hfVocabSize)
        let ours = try merges(tok)
        XCTAssertEqual(ours.count, ref.merges.count)
        let first = (0..<min(ours.count, ref.merges.count)).first { ours[$0] != ref.merges[$0] }
        XCTAssertNil(first, "first differing merge: \(first.map { "#\($0) \(ours[$0]) vs HF \(ref.merges[$0])" } ?? "")")
    }

    /// On a natural corpus, replaying the merges on HF's pre-tokenized words (counted naively at
    /// every step) shows each merge is the most frequent pair, ties going to the smaller
    /// (left id, right id) as documented, never below min_frequency, and that training stopped
    /// for the documented reason. HF's merges agree up to the first tie, which the two break by
    /// their own id orders (HF numbers the byte alphabet by code point, Chorus by byte value).
    func testEachMergeIsTheMostFrequentPairAndHFDiffersOnlyOnTies() throws {
        let ref = try reference("natural")
        XCTAssertGreaterThan(ref.words.count, 100)
        let tok = try BPETrainer(vocabSize: ref.vocabSize, specialTokens: ref.specialTokens, minFrequency: ref.minFrequency)
            .train(files: [try Fixtures.url("train_corpus.txt")])
        let ours = try merges(tok)
        XCTAssertGreaterThan(ours.count, 100)
        func id(_ s: String) throws -> Int32 { Int32(try XCTUnwrap(tok.tokenToId(s), "no id for \(s.debugDescription)")) }
        // HF's ids: specials, then the byte-level characters by code point, then one per merge.
        let k = ref.specialTokens.count
        let alphabet = Set(ref.words.flatMap { $0.0.unicodeScalars.map { String($0) } } + (0..<256).map { ByteLevelAlphabet().encode([UInt8($0)]) })
        var hfId: [String: Int] = [:]
        for (i, c) in alphabet.sorted(by: { $0.unicodeScalars.first!.value < $1.unicodeScalars.first!.value }).enumerated() { hfId[c] = k + i }
        XCTAssertEqual(hfId.count, 256)

        var spelling: [Int32: String] = [:]
        var words: [([Int32], Int)] = try ref.words.map { w, c in (try w.unicodeScalars.map { try id(String($0)) }, c) }
        for (w, _) in ref.words { for u in w.unicodeScalars { spelling[try id(String(u))] = String(u) } }
        func pairCounts() -> [UInt64: Int] {
            var counts: [UInt64: Int] = [:]
            for (symbols, c) in words where symbols.count > 1 {
                for j in 0..<(symbols.count - 1) { counts[UInt64(UInt32(symbols[j])) << 32 | UInt64(UInt32(symbols[j + 1])), default: 0] += c }
            }
            return counts
        }
        func key(_ m: [String]) throws -> UInt64 { UInt64(UInt32(try id(m[0]))) << 32 | UInt64(UInt32(try id(m[1]))) }
        var divergence: Int?, nextHF = k + 256
        for (step, m) in ours.enumerated() {
            let counts = pairCounts()
            let best = try XCTUnwrap(counts.values.max())
            let chosen = try key(m)
            XCTAssertEqual(counts[chosen], best, "merge #\(step) \(m) is not the most frequent pair")
            XCTAssertEqual(counts.filter { $0.value == best }.keys.min(), chosen, "merge #\(step) \(m): tie not broken by the smaller (left, right) ids")
            XCTAssertGreaterThanOrEqual(best, ref.minFrequency)
            if divergence == nil, step < ref.merges.count, ref.merges[step] != m {
                divergence = step
                // Both are most frequent (a tie), and each is the smallest by its own id order.
                let theirs = ref.merges[step]
                XCTAssertEqual(counts[try key(theirs)], best, "HF's merge #\(step) \(theirs) is not tied with ours \(m)")
                let tied = counts.filter { $0.value == best }.keys.map { p -> [String] in
                    [spelling[Int32(truncatingIfNeeded: p >> 32)]!, spelling[Int32(truncatingIfNeeded: p)]!]
                }
                let hfOrder = tied.map { [hfId[$0[0]]!, hfId[$0[1]]!] }
                XCTAssertEqual(tied[hfOrder.indices.min { hfOrder[$0].lexicographicallyPrecedes(hfOrder[$1]) }!], theirs,
                               "HF's pick is the smallest pair by HF's ids")
            }
            if divergence == nil, hfId[m[0] + m[1]] == nil { hfId[m[0] + m[1]] = nextHF; nextHF += 1 }
            // Apply the merge, left to right without overlaps.
            let a = try id(m[0]), b = try id(m[1]), ab = try id(m[0] + m[1])
            spelling[ab] = m[0] + m[1]
            words = words.map { symbols, c in
                var out: [Int32] = [], j = 0
                while j < symbols.count {
                    if j + 1 < symbols.count, symbols[j] == a, symbols[j + 1] == b { out.append(ab); j += 2 } else { out.append(symbols[j]); j += 1 }
                }
                return (out, c)
            }
        }
        // Training stopped because the vocabulary is full, or no pair reaches min_frequency.
        if tok.vocabSize < ref.vocabSize { XCTAssertLessThan(pairCounts().values.max() ?? 0, ref.minFrequency) }
        else { XCTAssertEqual(tok.vocabSize, ref.vocabSize) }
        if divergence == nil { XCTAssertEqual(ours, ref.merges) }
    }
}
