import ChorusModel
import ChorusTensor
import ChorusTraining
import ChorusTestSupport
import Foundation
import XCTest

enum TrainingFixtures {
    static var models: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures/models") }
    /// Head dims 8 and 12 (the scalar tails of the RoPE and attention kernels), then every
    /// family at the production head_dim 64 and qwen3 at 128 (their SIMD branches).
    static let names = ["llama_untied", "qwen2_tied_bias", "qwen3_untied_qknorm",
                        "llama_hd64", "qwen2_hd64_tied_bias", "qwen3_hd64_qknorm", "qwen3_hd128_qknorm"]
    static func model(_ n: String) -> URL { models.appendingPathComponent(n) }

    /// The two sequences (the first token as the prompt, the rest as the response) and their
    /// weights per response token. The fixture stores one weight per row (row r predicts token
    /// r+1); the last row predicts nothing and must weigh 0.
    static func batch(_ f: SafeTensorsFile) throws -> ([TrainingSequence], [[Float]]) {
        var seqs: [TrainingSequence] = [], w: [[Float]] = []
        for j in 0..<2 {
            let tokens = try f.readArray("seq_\(j)").map { Int($0) }
            let rowWeights = try f.readArray("w_\(j)")
            XCTAssertEqual(rowWeights.count, tokens.count)
            XCTAssertEqual(rowWeights.last, 0, "the last row has no target")
            seqs.append(TrainingSequence(tokens: tokens, promptLength: 1))
            w.append(Array(rowWeights.dropLast()))
        }
        if seqs.contains(where: { $0.tokens.count < 2 }) || w.map(\.count) != seqs.map(\.responseLength)
            || !w.joined().contains(where: { $0 != 0 }) {
            throw FixtureError.noCases(f.path)
        }
        return (seqs, w)
    }
}

/// Gradients of whole models against PyTorch, and each op against finite differences.
final class GradientTests: XCTestCase {
    /// Every parameter's gradient of L = −Σ w_t log p matches PyTorch (fixtures). Tolerance:
    /// |Δ| <= 1e-4 + 1e-3·max|g| per tensor.
    func testWholeModelGradientsMatchPyTorch() throws {
        for name in TrainingFixtures.names {
            let model = try TransformerModel.load(directory: TrainingFixtures.model(name))
            let f = try SafeTensorsFile(path: TrainingFixtures.model(name).appendingPathComponent("grads.safetensors").path)
            let (seqs, w) = try TrainingFixtures.batch(f)
            let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
            _ = try model.trainingForward(seqs, tape: tape)
            let loss = model.trainingBackward(TokenObjective(weights: w), tape: tape, grads: grads)
            XCTAssertEqual(loss, Double(try f.readArray("loss")[0]), accuracy: 1e-4 * max(1, abs(loss)), name)
            for e in model.layout.entries where !(model.config.tieWordEmbeddings && e.name == "lm_head.weight") {
                let expected = try f.readArray("grad." + e.name)
                let got = Array(UnsafeBufferPointer(start: grads.data + e.offset, count: e.count))
                let scale = expected.map(abs).max() ?? 0
                let d = maxAbsDiff(got, expected)
                XCTAssertLessThanOrEqual(d, 1e-4 + 1e-3 * scale, "\(name) \(e.name): max |Δ| \(d), max |g| \(scale)")
            }
        }
    }

    /// Central finite differences on a sample of coordinates of every tensor of a model
    /// (weights, norms, biases, q/k norms, embeddings, head). Relative tolerance 2e-2 of the
    /// tensor's gradient scale (float32 loss, eps 1e-2).
    func testWholeModelGradientsMatchFiniteDifferences() throws {
        for name in TrainingFixtures.names {
            let model = try TransformerModel.load(directory: TrainingFixtures.model(name))
            let f = try SafeTensorsFile(path: TrainingFixtures.model(name).appendingPathComponent("grads.safetensors").path)
            let (seqs, w) = try TrainingFixtures.batch(f)
            let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
            _ = try model.trainingForward(seqs, tape: tape)
            model.trainingBackward(TokenObjective(weights: w), tape: tape, grads: grads)
            func loss() throws -> Double {
                let lp = try model.trainingForward(seqs, tape: tape).logprobs
                guard lp.map(\.count) == w.map(\.count) else { throw FixtureError.noCases("\(name): \(lp.map(\.count)) log-probs for \(w.map(\.count)) weights") }
                return -zip(lp.joined(), w.joined()).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            var rng = ChorusRNG(seed: 5)
            for e in model.layout.entries {
                var scale: Float = 0
                for i in 0..<e.count { scale = max(scale, abs(grads[e.offset + i])) }
                for _ in 0..<3 {
                    let i = e.offset + rng.int(below: e.count)
                    let old = model.parameters[i], h: Float = 1e-2
                    model.parameters[i] = old + h; let lp = try loss()
                    model.parameters[i] = old - h; let lm = try loss()
                    model.parameters[i] = old
                    let fd = (lp - lm) / Double(2 * h)
                    XCTAssertEqual(Double(grads[i]), fd, accuracy: 2e-2 * Double(max(scale, 1e-2)), "\(name) \(e.name)[\(i - e.offset)]")
                }
            }
        }
    }

    /// Ten AdamW steps (warm-up + cosine, clipping, decay on matrices) reproduce PyTorch's
    /// losses, pre-clip gradient norms, learning rates and final parameters.
    func testTenAdamWStepsMatchPyTorch() throws {
        for name in TrainingFixtures.names {
            let model = try TransformerModel.load(directory: TrainingFixtures.model(name))
            let f = try SafeTensorsFile(path: TrainingFixtures.model(name).appendingPathComponent("adamw.safetensors").path)
            let g = try SafeTensorsFile(path: TrainingFixtures.model(name).appendingPathComponent("grads.safetensors").path)
            let (seqs, _) = try TrainingFixtures.batch(g)
            let losses = try f.readArray("losses"), norms = try f.readArray("grad_norms"), lrs = try f.readArray("lrs")
            XCTAssertEqual([losses.count, norms.count, lrs.count], [10, 10, 10], name)
            if losses.count != 10 || norms.count != 10 || lrs.count != 10 { continue }
            let opt = AdamW(model: model, config: AdamWConfig(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1))
            let schedule = LRSchedule.cosine(warmup: 3, minRatio: 0.1)
            let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
            let ntok = seqs.reduce(0) { $0 + $1.responseLength }
            let w = seqs.map { [Float](repeating: 1 / Float(ntok), count: $0.responseLength) }
            for step in 0..<10 {
                grads.zero()
                _ = try model.trainingForward(seqs, tape: tape)
                let loss = model.trainingBackward(TokenObjective(weights: w), tape: tape, grads: grads)
                let norm = clipGradientNorm(grads, maxNorm: 1.0)
                let lr = schedule.rate(step: step, total: 10, peak: 1e-2)
                XCTAssertEqual(loss, Double(losses[step]), accuracy: 2e-4 * max(1, Double(losses[step])), "\(name) step \(step) loss")
                XCTAssertEqual(norm, Double(norms[step]), accuracy: 1e-3 * Double(norms[step]), "\(name) step \(step) grad norm")
                XCTAssertEqual(lr, Double(lrs[step]), accuracy: 1e-9)
                opt.update(parameters: model.parameters, gradients: grads, lr: Float(lr))
            }
            for e in model.layout.entries where !(model.config.tieWordEmbeddings && e.name == "lm_head.weight") {
                let expected = try f.readArray("final." + e.name)
                let got = Array(UnsafeBufferPointer(start: model.parameters.data + e.offset, count: e.count))
                let d = maxAbsDiff(got, expected)
                XCTAssertLessThan(d, 2e-3, "\(name) \(e.name) after 10 steps: max |Δ| \(d)")
            }
        }
    }
}

/// Kernel backward passes against finite differences of a random linear functional
/// J = Σ c_i y_i of their outputs (computed in Double).
final class OpBackwardTests: XCTestCase {
    func fdCheck(_ n: Int, _ analytic: [Float], h: Float = 1e-3, tol: Double = 2e-3,
                 _ f: (Int, Float) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        for i in 0..<n {
            let fd = (f(i, h) - f(i, -h)) / Double(2 * h)
            XCTAssertEqual(Double(analytic[i]), fd, accuracy: tol * max(1, abs(fd)), "coordinate \(i)", file: file, line: line)
        }
    }

    func testRMSNormBackward() {
        var rng = ChorusRNG(seed: 1)
        let rows = 3, c = 13
        var x = (0..<(rows * c)).map { _ in rng.normal() }, w = (0..<c).map { _ in 1 + rng.normal() * 0.3 }
        let cw = (0..<(rows * c)).map { _ in rng.normal() }
        func J(_ x: [Float], _ w: [Float]) -> Double {
            var y = [Float](repeating: 0, count: rows * c)
            rmsNormForward(&y, nil, x, w, rows: rows, cols: c, eps: 1e-6)
            return zip(y, cw).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var y = [Float](repeating: 0, count: rows * c), rstd = [Float](repeating: 0, count: rows)
        rmsNormForward(&y, &rstd, x, w, rows: rows, cols: c, eps: 1e-6)
        var dx = [Float](repeating: 0, count: rows * c), dw = [Float](repeating: 0, count: c)
        var partials = [Float](repeating: 0, count: 8 * c)
        rmsNormBackward(&dx, &dw, cw, x, w, rstd, rows: rows, cols: c, partials: &partials)
        fdCheck(rows * c, dx) { i, h in var xx = x; xx[i] += h; return J(xx, w) }
        fdCheck(c, dw) { i, h in var ww = w; ww[i] += h; return J(x, ww) }
        x[0] = 0  // keep the compiler honest about mutation
    }

    func testSwiGLUBackward() {
        var rng = ChorusRNG(seed: 2)
        let rows = 2, i = 11
        let gu = (0..<(rows * 2 * i)).map { _ in rng.normal() * 2 }
        let cw = (0..<(rows * i)).map { _ in rng.normal() }
        func J(_ gu: [Float]) -> Double {
            var a = [Float](repeating: 0, count: rows * i)
            swigluForward(&a, gu, rows: rows, hidden: i)
            return zip(a, cw).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        var dgu = [Float](repeating: 0, count: rows * 2 * i)
        swigluBackward(&dgu, cw, gu, rows: rows, hidden: i)
        fdCheck(rows * 2 * i, dgu) { k, h in var g = gu; g[k] += h; return J(g) }
    }

    /// RoPE backward at head_dim 8 (scalar tail only), 16 and 24 (one SIMD block, then a tail)
    /// and the production 64 and 128 (SIMD only), at positions spread over the table.
    func testRopeBackward() {
        var rng = ChorusRNG(seed: 3)
        for d in [8, 16, 24, 64, 128] {
            let heads = 2, rows = 3, ld = heads * d
            let table = RopeTable(headDim: d, theta: 10_000, positions: 300)
            var pos: [Int32] = [0, 3, 257]
            let x = (0..<(rows * ld)).map { _ in rng.normal() }, cw = (0..<(rows * ld)).map { _ in rng.normal() }
            func J(_ x: [Float]) -> Double {
                var y = x
                ropeForward(&y, rows: rows, ld: ld, heads: heads, headDim: d, positions: &pos, table: table)
                return zip(y, cw).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            }
            var dx = cw
            ropeBackward(&dx, rows: rows, ld: ld, heads: heads, headDim: d, positions: &pos, table: table)
            XCTAssertEqual(dx.count, rows * ld)
            fdCheck(rows * ld, dx) { k, h in var xx = x; xx[k] += h; return J(xx) }
        }
    }
}

/// Accumulating micro-batches gives the gradient of the whole batch.
final class AccumulationTests: XCTestCase {
    func testMicroBatchesSumToTheBatchGradient() throws {
        let model = try TransformerModel.load(directory: TrainingFixtures.model("qwen3_untied_qknorm"))
        let f = try SafeTensorsFile(path: TrainingFixtures.model("qwen3_untied_qknorm").appendingPathComponent("grads.safetensors").path)
        let (seqs, w) = try TrainingFixtures.batch(f)
        let tape = TrainingTape()
        let whole = Tensor(shape: [model.parameters.count]), parts = Tensor(shape: [model.parameters.count])
        _ = try model.trainingForward(seqs, tape: tape)
        let l1 = model.trainingBackward(TokenObjective(weights: w), tape: tape, grads: whole)
        var l2 = 0.0
        for (s, ws) in zip(seqs, w) {
            _ = try model.trainingForward([s], tape: tape)
            l2 += model.trainingBackward(TokenObjective(weights: [ws]), tape: tape, grads: parts)
        }
        XCTAssertEqual(l1, l2, accuracy: 1e-5 * abs(l1))
        let scale = whole.array.map(abs).max()!
        XCTAssertLessThan(maxAbsDiff(whole.array, parts.array), 1e-5 * scale)
    }
}
