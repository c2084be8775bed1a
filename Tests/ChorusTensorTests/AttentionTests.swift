import ChorusTensor
import Foundation
import XCTest

/// A tensor holding `values`.
func tensor(_ values: [Float]) -> Tensor {
    let t = Tensor(shape: [values.count])
    t.data.update(from: values, count: values.count)
    return t
}

/// The direct attention kernels (short sequences, narrow heads) against a double-precision
/// reference and against the blocked-gemm path they replace there.
final class AttentionTests: XCTestCase {
    /// One packed batch: queries (N, ldq) with Hq heads then the sequences' own K/V columns,
    /// and per sequence a (start + count, ld) key/value store (a cache when start > 0).
    struct Batch {
        var shape: AttentionShape
        var q: [Float]
        var ldq: Int
        var keys: [[Float]], values: [[Float]]
        var starts: [Int], counts: [Int]
        var rows: Int { counts.reduce(0, +) }
        var ld: Int { shape.kvHeads * shape.headDim }

        init(heads: Int, kvHeads: Int, headDim: Int, starts: [Int], counts: [Int], seed: UInt64) {
            shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim)
            self.starts = starts; self.counts = counts
            var rng = ChorusRNG(seed: seed)
            ldq = heads * headDim + 3   // a wider stride than the heads, as in a fused qkv row
            let n = counts.reduce(0, +)
            q = (0..<(n * ldq)).map { _ in rng.normal() }
            let ld = kvHeads * headDim
            keys = zip(starts, counts).map { s, c in (0..<((s + c) * ld)).map { _ in rng.normal() } }
            values = zip(starts, counts).map { s, c in (0..<((s + c) * ld)).map { _ in rng.normal() } }
        }

        /// Runs `body` with the attention sequences over pointers into this batch's storage.
        func withSequences<R>(_ body: ([AttentionSequence]) -> R) -> R {
            var seqs: [AttentionSequence] = []
            var row = 0
            let k = keys.map(tensor), v = values.map(tensor)
            for i in starts.indices {
                seqs.append(AttentionSequence(row: row, count: counts[i], start: starts[i], keys: k[i].data, values: v[i].data, ld: ld))
                row += counts[i]
            }
            return withExtendedLifetime((k, v)) { body(seqs) }
        }

        /// (out, lse) of `attentionForward` with the direct path allowed up to `directMaxKeys`.
        func forward(directMaxKeys: Int) -> (out: [Float], lse: [Float]) {
            let saved = AttentionShape.directMaxKeys
            AttentionShape.directMaxKeys = directMaxKeys
            defer { AttentionShape.directMaxKeys = saved }
            let ldo = shape.heads * shape.headDim
            var out = [Float](repeating: .nan, count: rows * ldo), lse = [Float](repeating: .nan, count: rows * shape.heads)
            let maxKeys = zip(starts, counts).map { $0 + $1 }.max() ?? 0
            var scratch = [Float](repeating: 0, count: shape.forwardScratch(maxKeys: maxKeys))
            withSequences { seqs in
                attentionForward(&out, ldo: ldo, &lse, q: q, ldq: ldq, sequences: seqs, shape: shape, scratch: &scratch)
            }
            return (out, lse)
        }
    }

    /// Forward: every output and log-partition equals a double-precision softmax attention,
    /// for head widths with and without a full SIMD tail, GQA, caches and one-token decode rows.
    func testDirectForwardMatchesReference() {
        for (headDim, seed) in [(12, 1), (14, 2), (16, 3), (20, 4), (8, 5), (3, 6)] as [(Int, UInt64)] {
            let b = Batch(heads: 4, kvHeads: 2, headDim: headDim, starts: [0, 0, 5, 9, 0], counts: [1, 13, 1, 4, 21], seed: seed)
            let (out, lse) = b.forward(directMaxKeys: 128)
            let H = 4, D = headDim, ldo = H * D, group = 2, ld = b.ld
            var row = 0
            for (s, (start, count)) in zip(b.starts, b.counts).enumerated() {
                for i in 0..<count {
                    for h in 0..<H {
                        let kvh = h / group, valid = start + i + 1
                        var scores = [Double](repeating: 0, count: valid)
                        for j in 0..<valid {
                            var dotp = 0.0
                            for d in 0..<D { dotp += Double(b.q[(row + i) * b.ldq + h * D + d]) * Double(b.keys[s][j * ld + kvh * D + d]) }
                            scores[j] = dotp / Double(D).squareRoot()
                        }
                        let m = scores.max()!
                        let z = scores.reduce(0) { $0 + Foundation.exp($1 - m) }
                        XCTAssertEqual(Double(lse[(row + i) * H + h]), m + Foundation.log(z), accuracy: 1e-5 * max(1, abs(m)), "D \(D) seq \(s) row \(i) head \(h): lse")
                        for d in 0..<D {
                            var o = 0.0
                            for j in 0..<valid { o += Foundation.exp(scores[j] - m) / z * Double(b.values[s][j * ld + kvh * D + d]) }
                            XCTAssertEqual(Double(out[(row + i) * ldo + h * D + d]), o, accuracy: 1e-5, "D \(D) seq \(s) row \(i) head \(h) dim \(d)")
                        }
                    }
                }
                row += count
            }
            // The gemm path gives the same values up to summation order.
            let (gOut, gLse) = b.forward(directMaxKeys: 0)
            XCTAssertLessThan(zip(out, gOut).map { abs($0 - $1) }.max()!, 1e-5, "D \(headDim): direct vs gemm")
            XCTAssertLessThan(zip(lse, gLse).map { abs($0 - $1) }.max()!, 1e-5, "D \(headDim): direct vs gemm lse")
        }
    }

    /// A row's output does not depend on its batch: the last query of a whole sequence equals
    /// the same query run as a one-token decode step over the cached keys, bit for bit.
    func testDirectRowIsIndependentOfItsBatch() {
        let full = Batch(heads: 4, kvHeads: 2, headDim: 14, starts: [0], counts: [11], seed: 9)
        var step = full
        step.starts = [10]; step.counts = [1]
        step.q = Array(full.q[(10 * full.ldq)..<(11 * full.ldq)])
        let a = full.forward(directMaxKeys: 128), b = step.forward(directMaxKeys: 128)
        let ldo = 4 * 14
        XCTAssertEqual(Array(a.out[(10 * ldo)..<(11 * ldo)]), b.out)
        XCTAssertEqual(Array(a.lse[(10 * 4)..<(11 * 4)]), b.lse)
    }

    /// Backward: dQ, dK and dV of the direct kernel equal the blocked-gemm backward (itself
    /// checked against PyTorch by the gradient fixtures), with caches, GQA and odd widths.
    func testDirectBackwardMatchesGemmBackward() {
        for (headDim, seed) in [(12, 11), (14, 12), (16, 13), (20, 14), (5, 15)] as [(Int, UInt64)] {
            let b = Batch(heads: 4, kvHeads: 2, headDim: headDim, starts: [0, 3, 0, 7], counts: [9, 1, 17, 5], seed: seed)
            let H = 4, D = headDim, ldo = H * D, ld = b.ld
            var rng = ChorusRNG(seed: seed + 100)
            let dout = (0..<(b.rows * ldo)).map { _ in rng.normal() }
            func backward(directMaxKeys: Int) -> (dq: [Float], dk: [[Float]], dv: [[Float]]) {
                let (out, lse) = b.forward(directMaxKeys: 0)   // the same forward for both
                let saved = AttentionShape.directMaxKeys
                AttentionShape.directMaxKeys = directMaxKeys
                defer { AttentionShape.directMaxKeys = saved }
                var dq = [Float](repeating: .nan, count: b.rows * b.ldq)
                let dk = b.keys.map { tensor([Float](repeating: 0.25, count: $0.count)) }   // accumulates onto 0.25
                let dv = b.values.map { tensor([Float](repeating: -0.5, count: $0.count)) }
                let maxKeys = zip(b.starts, b.counts).map { $0 + $1 }.max() ?? 0
                var scratch = [Float](repeating: 0, count: b.shape.backwardScratch(maxKeys: maxKeys))
                b.withSequences { seqs in
                    attentionBackward(dq: &dq, dkv: zip(dk, dv).map { ($0.data, $1.data) }, dout: dout, out: out, ldo: ldo, lse: lse,
                                      q: b.q, ldq: b.ldq, sequences: seqs, shape: b.shape, scratch: &scratch)
                }
                return (dq, dk.map(\.array), dv.map(\.array))
            }
            let direct = backward(directMaxKeys: 128), blocked = backward(directMaxKeys: 0)
            // dq: only the query-head columns are written (the rest of each row is untouched).
            for r in 0..<b.rows {
                for c in 0..<(H * D) {
                    XCTAssertEqual(direct.dq[r * b.ldq + c], blocked.dq[r * b.ldq + c], accuracy: 1e-5, "D \(D) dq row \(r) col \(c)")
                }
            }
            for s in b.starts.indices {
                for i in direct.dk[s].indices {
                    XCTAssertEqual(direct.dk[s][i], blocked.dk[s][i], accuracy: 1e-5, "D \(D) dk seq \(s) [\(i)]")
                    XCTAssertEqual(direct.dv[s][i], blocked.dv[s][i], accuracy: 1e-5, "D \(D) dv seq \(s) [\(i)]")
                }
                XCTAssertEqual(direct.dk[s].count, (b.starts[s] + b.counts[s]) * ld)
            }
        }
    }
}
