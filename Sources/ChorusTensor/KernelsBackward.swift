import Foundation

// Backward passes of the kernels in Kernels.swift. Gradients accumulate (+=) into the input
// and weight gradients, never assign, so shared parameters (tied embeddings) and residual
// branches add up naturally.

/// RMSNorm backward. y = x·r·w with r = (mean(x²) + eps)^(-1/2):
/// dw += Σ_rows dy·x·r;  dx += r·(dy·w) − r³/C · x · Σ_j(dy_j·w_j·x_j).
///
/// dinp, inp, dout are (N, C) (row strides ldIn / ldOut); weight and dweight are (C);
/// rstd (N) is what the forward saved. `dweight` is accumulated per worker then reduced so
/// the result does not depend on scheduling.
public func rmsNormBackward(
    _ dinp: UnsafeMutablePointer<Float>, _ dweight: UnsafeMutablePointer<Float>,
    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    _ rstd: UnsafePointer<Float>, rows n: Int, cols c: Int, ldIn: Int? = nil, ldOut: Int? = nil,
    partials: UnsafeMutablePointer<Float>
) {
    let li = ldIn ?? c, lo = ldOut ?? c
    let workers = max(1, min(Parallel.threads, n))
    partials.update(repeating: 0, count: workers * c)
    parallelChunks(n, workers: workers, costPerItem: c * 6) { w, a, b in
        let dw = partials + w * c
        for r in a..<b {
            let x = inp + r * li, dy = dout + r * lo, dx = dinp + r * li
            let s = rstd[r]
            var dotv = FloatVec()
            var j = 0
            while j + 8 <= c { dotv += loadVec(dy + j) * loadVec(weight + j) * loadVec(x + j); j += 8 }
            var dot = dotv.sum()
            while j < c { dot += dy[j] * weight[j] * x[j]; j += 1 }
            let k = s * s * s * dot / Float(c)
            j = 0
            while j + 8 <= c {
                let xv = loadVec(x + j), dyv = loadVec(dy + j)
                storeVec(loadVec(dx + j) + s * dyv * loadVec(weight + j) - k * xv, dx + j)
                storeVec(loadVec(dw + j) + dyv * xv * s, dw + j)
                j += 8
            }
            while j < c {
                dx[j] += s * dy[j] * weight[j] - k * x[j]
                dw[j] += dy[j] * x[j] * s
                j += 1
            }
        }
    }
    for w in 0..<workers { addInPlace(dweight, partials + w * c, count: c) }
}

/// Backward of `qkNormForward`: the RMSNorm backward per head. dinp (N, ld) accumulates into
/// the q and k columns only; the two weight gradients accumulate. partials: scratch of
/// `Parallel.threads`·d floats.
public func qkNormBackward(
    _ dinp: UnsafeMutablePointer<Float>, dqWeight: UnsafeMutablePointer<Float>, dkWeight: UnsafeMutablePointer<Float>,
    _ dout: UnsafePointer<Float>, _ inp: UnsafePointer<Float>, _ rstd: UnsafePointer<Float>,
    qWeight: UnsafePointer<Float>, kWeight: UnsafePointer<Float>,
    rows n: Int, ld: Int, qHeads: Int, kvHeads: Int, headDim d: Int, partials: UnsafeMutablePointer<Float>
) {
    for h in 0..<(qHeads + kvHeads) {
        let q = h < qHeads
        rmsNormBackward(dinp + h * d, q ? dqWeight : dkWeight, dout + h * d, inp + h * d, q ? qWeight : kWeight,
                        rstd + h * n, rows: n, cols: d, ldIn: ld, ldOut: ld, partials: partials)
    }
}

/// SwiGLU backward: a = silu(g)·u  ⇒  du = da·silu(g),  dg = da·u·σ(g)·(1 + g·(1 − σ(g))).
///
/// dgu and gu are (N, 2I) (gate columns first); dact is (N, I). dgu is *assigned* (it is a
/// fresh intermediate, not a parameter gradient).
public func swigluBackward(_ dgu: UnsafeMutablePointer<Float>, _ dact: UnsafePointer<Float>,
                           _ gu: UnsafePointer<Float>, rows n: Int, hidden i: Int) {
    parallelFor(n, costPerItem: i * 10) { lo, hi in
        for r in lo..<hi {
            let g = gu + r * 2 * i, u = g + i, da = dact + r * i
            let dg = dgu + r * 2 * i, du = dg + i
            var j = 0
            while j + 8 <= i {
                let gv = loadVec(g + j), uv = loadVec(u + j), dav = loadVec(da + j)
                let sig = 1 / (1 + vexp(-gv))
                let s = gv * sig
                storeVec(dav * s, du + j)
                storeVec(dav * uv * sig * (1 + gv * (1 - sig)), dg + j)
                j += 8
            }
            while j < i {
                let sig = 1 / (1 + Foundation.exp(-g[j]))
                du[j] = da[j] * g[j] * sig
                dg[j] = da[j] * u[j] * sig * (1 + g[j] * (1 - sig))
                j += 1
            }
        }
    }
}

/// RoPE backward, in place on the gradient: the transpose of the rotation is the rotation by
/// −angle, dx1 = dy1·cos + dy2·sin,  dx2 = dy2·cos − dy1·sin.
public func ropeBackward(
    _ dx: UnsafeMutablePointer<Float>, rows: Int, ld: Int, heads: Int, headDim d: Int,
    positions pos: UnsafePointer<Int32>, table: RopeTable
) {
    ropeRotate(dx, rows: rows, ld: ld, heads: heads, headDim: d, positions: pos, table: table, inverse: true)
}

/// Column sums of an (N, C) matrix accumulated into out (C): bias gradients.
public func addColumnSums(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows n: Int, cols c: Int, ld: Int? = nil) {
    let l = ld ?? c
    for r in 0..<n { addInPlace(out, x + r * l, count: c) }
}
