import ChorusTensor
import Foundation
import XCTest

/// The 16-bit few-rows route of `gemm` (`bHalf`: packed bf16 / f16 weights, the AVX-512 Swift
/// SIMD kernel) against a double-precision product of the same rounded weights, its portable
/// f32 fallback, and its independence of batch size and thread count.
final class HalfKernelTests: XCTestCase {
    override func tearDown() {
        HalfKernel.enabled = true
        super.tearDown()
    }

    /// Random W (n, k) rounded to `format`: the f32 copy (what `b` is on a sampling copy) and the
    /// packed matrix.
    func weights(n: Int, k: Int, format: HalfFormat, rng: inout ChorusRNG, scale: Float = 0.05) -> ([Float], HalfMatrix) {
        let raw = (0..<(n * k)).map { _ in rng.normal() * scale }
        let rounded = raw.map { format == .bf16 ? HalfConversion.bf16ToFloat(HalfConversion.floatToBF16($0))
                                                : HalfConversion.f16ToFloat(HalfConversion.floatToF16($0)) }
        let h = HalfMatrix(rows: n, cols: k, format: format)
        raw.withUnsafeBufferPointer { h.pack(from: $0.baseAddress!, ld: k) }
        return (rounded, h)
    }

    /// Packing rounds to nearest even, as `HalfConversion`, and `value` reads back every element
    /// (padding of the last panel included in the layout, not in the shape).
    func testPackRoundsAndReadsBack() {
        var rng = ChorusRNG(seed: 3)
        for format in [HalfFormat.bf16, .f16] {
            for (n, k) in [(1, 1), (33, 7), (64, 5), (70, 3)] {
                let (rounded, h) = weights(n: n, k: k, format: format, rng: &rng)
                XCTAssertTrue(h.allFinite)
                XCTAssertEqual(h.panels, (n + 31) / 32)
                for r in 0..<n { for c in 0..<k { XCTAssertEqual(h.value(row: r, col: c), rounded[r * k + c], "\(format) \(n)x\(k) (\(r), \(c))") } }
            }
        }
        // Subnormal and extreme f16 values round-trip exactly.
        let xs: [Float] = [6e-8, -3e-6, 6.1e-5, 65504, -65504, 0, -0.0, 1e-9]
        let h = HalfMatrix(rows: xs.count, cols: 1, format: .f16)
        xs.withUnsafeBufferPointer { h.pack(from: $0.baseAddress!, ld: 1) }
        for (i, x) in xs.enumerated() { XCTAssertEqual(h.value(row: i, col: 0), HalfConversion.f16ToFloat(HalfConversion.floatToF16(x))) }
    }

    /// C = alpha·A·Wᵀ + beta·C over odd shapes (N not a multiple of the 32-wide panel, K odd,
    /// M = 1 ... 65 across the 8/4/1-row tiles), against the double-precision product of the
    /// rounded weights. Tolerance: an f32 fused multiply-add chain over K terms errs by at most
    /// about K·2^-24·Σ|a·w| (plus the final scaling), so |c − ref| <= (K + 4)·2^-24·(|alpha|·Σ|a·w| + |beta·c0|).
    func testProductMatchesDoubleReference() {
        // On a CPU with the instructions (the development machine) the kernel is what runs here.
        XCTAssertEqual(HalfKernel.active, CPUFeatures.hasKernelInstructions)
        var rng = ChorusRNG(seed: 9)
        let shapes: [(n: Int, k: Int)] = [(1, 1), (17, 3), (32, 64), (33, 37), (70, 129), (100, 512)]
        for format in [HalfFormat.bf16, .f16] {
            for (n, k) in shapes {
                let (w, h) = weights(n: n, k: k, format: format, rng: &rng)
                for m in [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 31, 33, 63, 64, 65] {
                    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (-2, 0.25)] {
                        check(m: m, n: n, k: k, w: w, h: h, alpha: alpha, beta: beta, rng: &rng, "\(format) m \(m) n \(n) k \(k) α \(alpha) β \(beta)")
                    }
                }
            }
        }
    }

    func check(m: Int, n: Int, k: Int, w: [Float], h: HalfMatrix, alpha: Float, beta: Float, rng: inout ChorusRNG, _ what: String) {
        let lda = k + 3, ldc = n + 5   // strided operands, as a head inside a fused buffer
        let a = (0..<(m * lda)).map { _ in rng.normal() }
        let c0 = (0..<(m * ldc)).map { _ in rng.normal() }
        var c = c0
        c.withUnsafeMutableBufferPointer { cp in
            gemm(.none, .transpose, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: w, ldb: k, beta: beta,
                 c: cp.baseAddress!, ldc: ldc, bHalf: h)
        }
        var bad = 0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, mag = 0.0
                for p in 0..<k { let t = Double(a[i * lda + p]) * Double(w[j * k + p]); s += t; mag += abs(t) }
                let ref = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                let tol = Double(k + 4) * 0x1p-24 * (abs(Double(alpha)) * mag + abs(Double(beta) * Double(c0[i * ldc + j]))) + 1e-30
                if abs(Double(c[i * ldc + j]) - ref) > tol { bad += 1; if bad < 4 { XCTFail("\(what) (\(i), \(j)): \(c[i * ldc + j]) vs \(ref) ± \(tol)") } }
            }
            // Padding columns between rows are untouched.
            for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], what) }
        }
    }

    /// A row's result does not depend on the other rows in the product (the batch) nor on how
    /// many threads split the panels: bit for bit.
    func testBatchAndThreadIndependence() {
        var rng = ChorusRNG(seed: 4)
        let n = 200, k = 96
        for format in [HalfFormat.bf16, .f16] {
            let (w, h) = weights(n: n, k: k, format: format, rng: &rng)
            let m = 300   // more than the kernel's 256-row block
            let a = (0..<(m * k)).map { _ in rng.normal() }
            func product(rows: Int, from: Int = 0) -> [Float] {
                var c = [Float](repeating: 0, count: rows * n)
                c.withUnsafeMutableBufferPointer { cp in
                    gemm(.none, .transpose, m: rows, n: n, k: k, a: Array(a[(from * k)...]), lda: k, b: w, ldb: k, c: cp.baseAddress!, ldc: n, bHalf: h)
                }
                return c
            }
            let all = product(rows: m)
            for (from, rows) in [(0, 1), (5, 3), (8, 8), (20, 44), (63, 1), (250, 50)] {
                XCTAssertEqual(product(rows: rows, from: from), Array(all[(from * n)..<((from + rows) * n)]), "\(format) rows \(from)..<\(from + rows)")
            }
            let threads = Parallel.threads
            for t in [1, 2, 3] {
                Parallel.configure(threads: t)
                XCTAssertEqual(product(rows: m), all, "\(format) \(t) threads")
            }
            Parallel.configure(threads: threads)
        }
    }

    /// The portable path (kernel disabled, or a CPU without AVX-512/FMA) multiplies the f32
    /// copy of the same rounded weights: the plain gemm result exactly, close to the kernel's.
    func testFallbackIsThePlainF32Product() {
        var rng = ChorusRNG(seed: 5)
        let m = 8, n = 70, k = 129
        let (w, h) = weights(n: n, k: k, format: .bf16, rng: &rng)
        let a = (0..<(m * k)).map { _ in rng.normal() }
        func product(_ half: HalfMatrix?) -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            c.withUnsafeMutableBufferPointer { cp in
                gemm(.none, .transpose, m: m, n: n, k: k, a: a, lda: k, b: w, ldb: k, c: cp.baseAddress!, ldc: n, bHalf: half)
            }
            return c
        }
        let plain = product(nil), kernel = product(h)
        HalfKernel.enabled = false
        XCTAssertFalse(HalfKernel.active)
        XCTAssertEqual(product(h), plain)
        HalfKernel.enabled = true
        for (x, y) in zip(kernel, plain) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(y))) }
        // More rows than the kernel's limit: the f32 path as well.
        let limit = HalfKernel.maxRows
        HalfKernel.maxRows = 16
        defer { HalfKernel.maxRows = limit }
        let rows = 17
        let big = (0..<(rows * k)).map { _ in rng.normal() }
        var viaHalf = [Float](repeating: 0, count: rows * n), viaF32 = viaHalf
        viaHalf.withUnsafeMutableBufferPointer { cp in
            gemm(.none, .transpose, m: rows, n: n, k: k, a: big, lda: k, b: w, ldb: k, c: cp.baseAddress!, ldc: n, bHalf: h)
        }
        viaF32.withUnsafeMutableBufferPointer { cp in
            gemm(.none, .transpose, m: rows, n: n, k: k, a: big, lda: k, b: w, ldb: k, c: cp.baseAddress!, ldc: n)
        }
        XCTAssertEqual(viaHalf, viaF32)
    }

    /// An f16 matrix holding an infinity (a weight above 65504) is flagged and multiplied on the
    /// f32 path, which propagates it as f32 arithmetic does.
    func testNonFiniteF16FallsBack() {
        let k = 4, n = 3
        var raw: [Float] = [1, 2, 3, 4, 1e6, 0, 0, 0, 0.5, 0.5, 0.5, 0.5]
        let h = HalfMatrix(rows: n, cols: k, format: .f16)
        raw.withUnsafeBufferPointer { h.pack(from: $0.baseAddress!, ld: k) }
        XCTAssertFalse(h.allFinite)
        XCTAssertEqual(h.value(row: 1, col: 0), .infinity)
        raw = raw.map { HalfConversion.f16ToFloat(HalfConversion.floatToF16($0)) }
        let a: [Float] = [1, 1, 1, 1]
        var c = [Float](repeating: 0, count: n)
        c.withUnsafeMutableBufferPointer { cp in
            gemm(.none, .transpose, m: 1, n: n, k: k, a: a, lda: k, b: raw, ldb: k, c: cp.baseAddress!, ldc: n, bHalf: h)
        }
        XCTAssertEqual(c, [10, .infinity, 2])
    }
}
