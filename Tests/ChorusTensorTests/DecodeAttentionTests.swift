import ChorusTensor
import Foundation
import XCTest

/// The decode-step attention (one query per sequence, `singleQueryAttention`) against the
/// blocked BLAS path that training and prefill use (taken when the log-partitions are asked for).
final class DecodeAttentionTests: XCTestCase {
    override func tearDown() {
        HalfKernel.enabled = true
        super.tearDown()
    }

    /// Both implementations: ChorusKernels' AVX-512/FMA products (D a multiple of 16, on a CPU
    /// that has them) and the portable 8-lane Swift (kernel disabled, or D = 12, 5).
    func testSingleQueryMatchesBlockedPath() {
        for enabled in [true, false] {
            HalfKernel.enabled = enabled
            check()
        }
    }

    func check() {
        var rng = ChorusRNG(seed: 17)
        for (H, HK, D) in [(8, 4, 64), (4, 4, 16), (6, 2, 12), (3, 1, 5), (4, 1, 80)] {
            let shape = AttentionShape(heads: H, kvHeads: HK, headDim: D)
            let kvDim = HK * D, ldq = H * D + 2 * kvDim + 3
            let lengths = [1, 2, 9, 80, 33]   // keys already cached before the new query
            let seqCount = lengths.count
            let q = (0..<(seqCount * ldq)).map { _ in rng.normal() }
            let caches = lengths.map { n in (0..<((n + 1) * kvDim * 2)).map { _ in rng.normal() } }
            var storage = caches
            let seqs: [AttentionSequence] = (0..<seqCount).map { s in
                storage[s].withUnsafeMutableBufferPointer { b in
                    AttentionSequence(row: s, count: 1, start: lengths[s], keys: b.baseAddress!, values: b.baseAddress! + (lengths[s] + 1) * kvDim, ld: kvDim)
                }
            }
            let maxKV = lengths.max()! + 1
            let scratch = Tensor(shape: [shape.forwardScratch(maxKeys: maxKV)])
            let ldo = H * D + 1
            var fast = [Float](repeating: 7, count: seqCount * ldo), blocked = fast
            var lse = [Float](repeating: 0, count: seqCount * H)
            withExtendedLifetime(storage) {
                fast.withUnsafeMutableBufferPointer { o in
                    attentionForward(o.baseAddress!, ldo: ldo, nil, q: q, ldq: ldq, sequences: seqs, shape: shape, scratch: scratch.data)
                }
                blocked.withUnsafeMutableBufferPointer { o in
                    lse.withUnsafeMutableBufferPointer { l in
                        attentionForward(o.baseAddress!, ldo: ldo, l.baseAddress!, q: q, ldq: ldq, sequences: seqs, shape: shape, scratch: scratch.data)
                    }
                }
            }
            // Outputs are convex combinations of unit-normal values: agree to f32 rounding.
            for i in 0..<fast.count { XCTAssertEqual(fast[i], blocked[i], accuracy: 2e-5, "H \(H) HK \(HK) D \(D) kernel \(HalfKernel.active) at \(i)") }
            for s in 0..<seqCount { XCTAssertEqual(fast[s * ldo + H * D], 7, "the padding column is untouched") }
            // Thread count does not change the result.
            let threads = Parallel.threads
            Parallel.configure(threads: 1)
            var serial = [Float](repeating: 7, count: seqCount * ldo)
            withExtendedLifetime(storage) {
                serial.withUnsafeMutableBufferPointer { o in
                    attentionForward(o.baseAddress!, ldo: ldo, nil, q: q, ldq: ldq, sequences: seqs, shape: shape, scratch: scratch.data)
                }
            }
            Parallel.configure(threads: threads)
            XCTAssertEqual(serial, fast)
        }
    }
}
