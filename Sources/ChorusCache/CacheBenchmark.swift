import Foundation

/// Size and speed of the record codec on synthetic but realistic scores (`SyntheticTeacher`
/// defaults: 32k vocabulary, 128-token prompts, 256 scored response positions per context).
///
/// Bytes per position count everything a record takes on disk: frame header, key digest,
/// timestamp, teacher name, fingerprint, options, the whole context's token ids (prompt
/// included) and the scores — divided by the number of scored positions.
/// Throughput is MB (10^6 bytes) of raw float32-equivalent data (`ScoreRecord.rawFloat32Bytes`)
/// per second, encode+compress and decompress+decode respectively, single-threaded.
public enum CacheBenchmark {
    /// Runs the benchmark (a few seconds in a release build) and returns named metrics:
    /// `cache_bytes_per_position_k20`, `_k0`, `_k50`, `_k20_iid` (pessimistic generator),
    /// `cache_ratio_to_float32_k*`, `cache_compress_mb_per_s`, `cache_decompress_mb_per_s`, and
    /// the generator's mean entropy and actual-is-top-1 rate so the data can be judged.
    public static func run() -> [String: Double] {
        var out: [String: Double] = [:]
        let contexts = 24
        do {
            for k in [20, 0, 50] {
                let sample = makeSample(k: k, contexts: contexts, seed: 7)
                let m = try measure(sample)
                out["cache_bytes_per_position_k\(k)"] = m.bytesPerPosition
                out["cache_ratio_to_float32_k\(k)"] = m.ratio
                if k == 20 {
                    out["cache_compress_mb_per_s"] = m.compressMBps
                    out["cache_decompress_mb_per_s"] = m.decompressMBps
                    out["cache_synthetic_mean_entropy_nats"] = sample.meanEntropy
                    out["cache_synthetic_actual_is_top1"] = sample.actualIsTop1
                }
            }
            // The pessimistic generator: independent positions, ids unrelated to frequency.
            let iid = makeSample(k: 20, contexts: contexts, seed: 7, correlation: 0, idJitter: nil)
            out["cache_bytes_per_position_k20_iid"] = try measure(iid).bytesPerPosition
        } catch {
            // The samples are valid by construction; a failure is a codec bug, flagged as a metric
            // rather than a crash so `chorus bench` still reports the rest.
            out["cache_benchmark_failed"] = 1
        }
        return out
    }

    struct Sample {
        var items: [(key: CacheKey, record: ScoreRecord)]
        var meanEntropy: Double
        var actualIsTop1: Double
    }

    struct Measurement {
        var bytesPerPosition: Double
        var ratio: Double
        var compressMBps: Double
        var decompressMBps: Double
    }

    static func makeSample(k: Int, contexts: Int, seed: UInt64, promptLength: Int = 128, responseLength: Int = 256,
                           correlation: Double = 0.6, idJitter: Double? = 1.0) -> Sample {
        var teacher = SyntheticTeacher(seed: seed, correlation: correlation, idJitter: idJitter)
        let fingerprint = TeacherFingerprint(bytes: SHA256.hash(Array("synthetic-teacher".utf8)))
        var items: [(CacheKey, ScoreRecord)] = []
        var entropy = 0.0, top1 = 0.0, n = 0.0
        for _ in 0..<contexts {
            let (tokens, record) = teacher.context(promptLength: promptLength, responseLength: responseLength, k: max(k, 1))
            var rec = record
            for (i, p) in rec.positions.enumerated() {
                entropy += Double(p.entropy)
                if p.topIds.first == tokens[promptLength + i] { top1 += 1 }
                n += 1
                if k == 0 { rec.positions[i].topIds = []; rec.positions[i].topLogprobs = [] }
            }
            let key = CacheKey.make(fingerprint: fingerprint, options: ScoringOptions(topK: k, start: promptLength), tokens: tokens)
            items.append((key, rec))
        }
        return Sample(items: items, meanEntropy: entropy / n, actualIsTop1: top1 / n)
    }

    static func measure(_ sample: Sample, level: Int32 = RecordFrame.defaultLevel) throws -> Measurement {
        var bytes = 0, positions = 0, raw = 0
        var frames: [[UInt8]] = []
        let t0 = Date()
        for (key, record) in sample.items {
            let frame = try RecordFrame.encode(key: key, record: record, teacher: "synthetic", storedAt: 0, level: level)
            frames.append(frame)
            bytes += frame.count
            positions += record.positions.count
            raw += record.rawFloat32Bytes
        }
        let t1 = Date()
        for frame in frames {
            _ = try RecordFrame.decode(frame, from: 0, segment: "benchmark")
        }
        let t2 = Date()
        return Measurement(bytesPerPosition: Double(bytes) / Double(positions),
                           ratio: Double(raw) / Double(bytes),
                           compressMBps: Double(raw) / 1e6 / t1.timeIntervalSince(t0),
                           decompressMBps: Double(raw) / 1e6 / t2.timeIntervalSince(t1))
    }
}
