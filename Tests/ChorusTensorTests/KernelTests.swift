import ChorusTensor
import Foundation
import XCTest

/// Kernels against straightforward double-precision references.
final class KernelTests: XCTestCase {
    func randomArray(_ n: Int, _ rng: inout ChorusRNG, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.normal() * scale } }

    func testGemmAllTransposeCases() {
        // Tiny, and few-rows products over `Gemm.smallProduct` that take the column-blocked
        // decode path (N not a multiple of the block width, one and several workers).
        checkGemm(m: 7, n: 13, k: 9, parallel: true)
        checkGemm(m: 3, n: 1000, k: 300, parallel: true)
        checkGemm(m: 8, n: 517, k: 640, parallel: true)
        checkGemm(m: 8, n: 517, k: 640, parallel: false)   // inside a parallel region: plain sgemm
        let threads = Parallel.threads
        Parallel.configure(threads: 1)   // the few-rows path with one worker
        checkGemm(m: 5, n: 700, k: 333, parallel: true)
        Parallel.configure(threads: threads)
        checkGemm(m: Gemm.smallRows, n: 200, k: 100, parallel: true)
    }

    func checkGemm(m: Int, n: Int, k: Int, parallel: Bool) {
        var rng = ChorusRNG(seed: 1)
        for ta in [Transpose.none, .transpose] {
            for tb in [Transpose.none, .transpose] {
                let a = randomArray(m * k, &rng), b = randomArray(k * n, &rng)
                var c = randomArray(m * n, &rng)
                let c0 = c
                // A stored (m,k) or (k,m); B stored (k,n) or (n,k).
                func A(_ i: Int, _ p: Int) -> Double { Double(ta == .none ? a[i * k + p] : a[p * m + i]) }
                func B(_ p: Int, _ j: Int) -> Double { Double(tb == .none ? b[p * n + j] : b[j * k + p]) }
                c.withUnsafeMutableBufferPointer { cp in
                    gemm(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: ta == .none ? k : m,
                         b: b, ldb: tb == .none ? n : k, beta: 2, c: cp.baseAddress!, ldc: n, parallel: parallel)
                }
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0
                        for p in 0..<k { s += A(i, p) * B(p, j) }
                        XCTAssertEqual(Double(c[i * n + j]), 0.5 * s + 2 * Double(c0[i * n + j]), accuracy: 1e-4 * max(1, Double(k) / 100).squareRoot(), "\(ta) \(tb) m \(m) n \(n) k \(k)")
                    }
                }
            }
        }
    }

    func testVexpAccuracy() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let v = vexp(FloatVec(repeating: x))[0]
            let r = Float(Foundation.exp(Double(x)))
            worst = max(worst, abs(v - r) / r)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 4e-7, "vexp relative error")
        XCTAssertEqual(vexp(FloatVec(repeating: -200))[0], 0, accuracy: 1e-37)
    }

    func testLogSoftmaxAndStats() {
        var rng = ChorusRNG(seed: 2)
        for n in [1, 7, 8, 33, 1000] {
            let x = randomArray(n, &rng, scale: 5)
            var y = x
            y.withUnsafeMutableBufferPointer { logSoftmaxInPlace($0.baseAddress!, rows: 1, cols: n) }
            let m = Double(x.max()!)
            let lse = m + Foundation.log(x.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            var h = 0.0
            for j in 0..<n {
                XCTAssertEqual(Double(y[j]), Double(x[j]) - lse, accuracy: 1e-5)
                let lp = Double(x[j]) - lse
                h -= Foundation.exp(lp) * lp
            }
            let st = x.withUnsafeBufferPointer { rowStats($0.baseAddress!, count: n) }
            XCTAssertEqual(Double(st.logSumExp), lse, accuracy: 1e-5)
            XCTAssertEqual(Double(st.entropy), h, accuracy: 1e-5)
            var s = x
            s.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, rows: 1, cols: n) }
            XCTAssertEqual(Double(s.reduce(0, +)), 1, accuracy: 1e-5)
        }
    }

    func testRMSNormAndSwiGLU() {
        var rng = ChorusRNG(seed: 3)
        let rows = 5, c = 19
        let x = randomArray(rows * c, &rng), w = randomArray(c, &rng)
        var out = [Float](repeating: 0, count: rows * c), rstd = [Float](repeating: 0, count: rows)
        rmsNormForward(&out, &rstd, x, w, rows: rows, cols: c, eps: 1e-6)
        for r in 0..<rows {
            let ms = (0..<c).reduce(0.0) { $0 + Double(x[r * c + $1] * x[r * c + $1]) } / Double(c)
            let s = 1 / (ms + 1e-6).squareRoot()
            XCTAssertEqual(Double(rstd[r]), s, accuracy: 1e-5 * s)
            for j in 0..<c { XCTAssertEqual(Double(out[r * c + j]), Double(x[r * c + j]) * s * Double(w[j]), accuracy: 1e-5) }
        }
        let i = 21
        let gu = randomArray(rows * 2 * i, &rng, scale: 4)
        var act = [Float](repeating: 0, count: rows * i)
        swigluForward(&act, gu, rows: rows, hidden: i)
        for r in 0..<rows {
            for j in 0..<i {
                let g = Double(gu[r * 2 * i + j]), u = Double(gu[r * 2 * i + i + j])
                XCTAssertEqual(Double(act[r * i + j]), g / (1 + Foundation.exp(-g)) * u, accuracy: 1e-5)
            }
        }
    }

    func testRopeRotatesHalves() {
        let d = 8, table = RopeTable(headDim: d, theta: 10_000, positions: 4)
        var x: [Float] = (0..<(2 * d)).map { Float($0) + 1 }
        let orig = x
        var pos: [Int32] = [3]
        ropeForward(&x, rows: 1, ld: 2 * d, heads: 2, headDim: d, positions: &pos, table: table)
        for h in 0..<2 {
            for i in 0..<(d / 2) {
                let a = 3 * Foundation.pow(10_000, -Double(2 * i) / Double(d))
                let x1 = Double(orig[h * d + i]), x2 = Double(orig[h * d + i + d / 2])
                XCTAssertEqual(Double(x[h * d + i]), x1 * Foundation.cos(a) - x2 * Foundation.sin(a), accuracy: 1e-4)
                XCTAssertEqual(Double(x[h * d + i + d / 2]), x2 * Foundation.cos(a) + x1 * Foundation.sin(a), accuracy: 1e-4)
            }
        }
    }

    func testHalfConversionsRoundTrip() {
        for bits in stride(from: 0, through: 0xFFFF, by: 1) {
            let h = UInt16(bits)
            let f = HalfConversion.f16ToFloat(h)
            if f.isNaN { continue }
            XCTAssertEqual(HalfConversion.floatToF16(f), h)
            let b = HalfConversion.bf16ToFloat(h)
            if b.isNaN { continue }
            XCTAssertEqual(HalfConversion.floatToBF16(b), h)
        }
        XCTAssertEqual(HalfConversion.floatToBF16(1.00390625), 0x3F80)  // tie -> even
        XCTAssertEqual(HalfConversion.floatToBF16(1.01171875), 0x3F82)  // tie -> even (up)
        XCTAssertEqual(HalfConversion.f16ToFloat(HalfConversion.floatToF16(70000)), .infinity)
    }

    func testRNGIsSeededAndRestorable() {
        var a = ChorusRNG(seed: 42), b = ChorusRNG(seed: 42), c = ChorusRNG(seed: 43)
        let sa = (0..<10).map { _ in a.next() }
        XCTAssertEqual(sa, (0..<10).map { _ in b.next() })
        XCTAssertNotEqual(sa, (0..<10).map { _ in c.next() })
        let saved = a
        let more = (0..<5).map { _ in a.uniform() }
        var restored = saved
        XCTAssertEqual(more, (0..<5).map { _ in restored.uniform() })
        let data = try! JSONEncoder().encode(saved)
        var decoded = try! JSONDecoder().decode(ChorusRNG.self, from: data)
        XCTAssertEqual(more, (0..<5).map { _ in decoded.uniform() })
        var n = ChorusRNG(seed: 7)
        let xs = (0..<20000).map { _ in Double(n.normal()) }
        let mean = xs.reduce(0, +) / Double(xs.count)
        let varc = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03); XCTAssertEqual(varc, 1, accuracy: 0.05)
    }

    func testParallelForCoversRangeOnce() {
        var hits = [Int](repeating: 0, count: 10_000)
        hits.withUnsafeMutableBufferPointer { hp in
            let p = hp.baseAddress!
            parallelFor(10_000, costPerItem: 100) { a, b in for i in a..<b { p[i] += 1 } }
        }
        XCTAssertTrue(hits.allSatisfy { $0 == 1 })
    }
}
