/// The two products of a decode step's attention for one (sequence, KV head), compiled with
/// AVX-512F + FMA like the rest of ChorusKernels (callers check `CPUFeatures` first): the
/// scores of the `group` query heads that share the KV head against every cached key, and the
/// probability-weighted sum of the values. The softmax between them is ChorusTensor's.
/// Head dimensions must be multiples of 16. Each value is one fixed chain of fused
/// multiply-adds, so results do not depend on the batch or the thread count.

/// scores[g·n + t] = scale · q_g · k_t for g < group, t < n. q holds the group's heads D apart;
/// key t is at keys + t·ld.
public func oneQueryScores(group: Int, d D: Int, q: UnsafePointer<Float>, keys: UnsafePointer<Float>, ld: Int,
                           count n: Int, scale: Float, scores: UnsafeMutablePointer<Float>) {
    for g in 0..<group {
        let qg = q + g * D, row = scores + g * n
        var t = 0
        // Four keys at a time: four independent chains.
        while t + 4 <= n {
            let k0 = keys + t * ld, k1 = k0 + ld, k2 = k1 + ld, k3 = k2 + ld
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var d = 0
            while d < D {
                let x = load16(qg + d)
                a0.addProduct(x, load16(k0 + d)); a1.addProduct(x, load16(k1 + d))
                a2.addProduct(x, load16(k2 + d)); a3.addProduct(x, load16(k3 + d))
                d += 16
            }
            row[t] = a0.sum() * scale; row[t + 1] = a1.sum() * scale
            row[t + 2] = a2.sum() * scale; row[t + 3] = a3.sum() * scale
            t += 4
        }
        while t < n {
            let kt = keys + t * ld
            var a = SIMD16<Float>()
            var d = 0
            while d < D { a.addProduct(load16(qg + d), load16(kt + d)); d += 16 }
            row[t] = a.sum() * scale
            t += 1
        }
    }
}

/// out[g·D + d] = Σ_t p[g·n + t] · v_t[d] for g < group (the group's heads D apart in out);
/// value t is at values + t·ld.
public func oneQueryValues(group: Int, d D: Int, p: UnsafePointer<Float>, values: UnsafePointer<Float>, ld: Int,
                           count n: Int, out: UnsafeMutablePointer<Float>) {
    for g in 0..<group {
        let pg = p + g * n, og = out + g * D
        var d = 0
        while d + 64 <= D {   // 64 outputs in four registers per pass over the values
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            for t in 0..<n {
                let w = SIMD16<Float>(repeating: pg[t]), v = values + t * ld + d
                a0.addProduct(w, load16(v)); a1.addProduct(w, load16(v + 16))
                a2.addProduct(w, load16(v + 32)); a3.addProduct(w, load16(v + 48))
            }
            store16(a0, og + d); store16(a1, og + d + 16); store16(a2, og + d + 32); store16(a3, og + d + 48)
            d += 64
        }
        while d < D {
            var a = SIMD16<Float>()
            for t in 0..<n { a.addProduct(SIMD16<Float>(repeating: pg[t]), load16(values + t * ld + d)) }
            store16(a, og + d)
            d += 16
        }
    }
}

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }

@inline(__always)
func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}
