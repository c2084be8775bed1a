import ChorusCore
import Foundation

/// What the tokens of `chorus inspect` are coloured by.
public enum TokenColoring: String, CaseIterable, Sendable {
    /// |log r_t| = |log π_θ(y_t) − log π_ref(y_t)| (the `filter.by = "kl"` score; per chunk
    /// when the response was scored per chunk).
    case kl
    /// The student's entropy at the position.
    case studentEntropy = "student-entropy"
    /// The reference's entropy at the position.
    case referenceEntropy = "reference-entropy"

    var title: String {
        switch self {
        case .kl: return "per-token KL |log π_θ − log π_ref|"
        case .studentEntropy: return "student entropy (nats)"
        case .referenceEntropy: return "reference entropy (nats)"
        }
    }
}

/// The token view of `chorus inspect` (docs/report.md): one rollout's response with each token
/// coloured by a per-token score (a toggle switches between the three `TokenColoring`s), the
/// tokens the correction masked or the filter dropped marked, every score on hover, and the
/// "virtual rollout": at each student prefix the reference's top-1 token beside the student's.
/// One self-contained HTML file (inline CSS and a few lines of JavaScript for the toggle; the
/// colours of `coloring` are also written inline, so the page reads without scripts).
public enum TokenPage {
    /// The head marker that tells `ReportInputs.checkOutput` a file is such a page.
    public static let generatorMarker = "<meta name=\"generator\" content=\"chorus inspect\">"

    /// Writes the page of `record` atomically to `url`.
    /// - Parameters:
    ///   - record: the sample (`RolloutLog.read(run:step:)[sample]`).
    ///   - run: the run directory (shown in the header).
    ///   - samples: how many samples the step has (shown as "sample i of n").
    ///   - coloring: the colouring selected when the page opens.
    public static func write(record: RolloutRecord, run: String, samples: Int, coloring: TokenColoring, to url: URL) throws {
        try AtomicFile.write(Data(render(record: record, run: run, samples: samples, coloring: coloring).utf8), to: url)
    }

    /// The per-token values of `coloring` (T), NaN where unknown.
    public static func values(_ r: RolloutRecord, _ coloring: TokenColoring) -> [Double] {
        switch coloring {
        case .kl: return klValues(r)
        case .studentEntropy: return r.studentEntropy.map(Double.init)
        case .referenceEntropy: return r.referenceEntropy.map(Double.init)
        }
    }

    /// |log r_t| per token; for a chunked response every token of chunk c carries |log r_c|.
    static func klValues(_ r: RolloutRecord) -> [Double] {
        guard let chunks = r.chunks else { return zip(r.learnerLogprob, r.referenceLogprob).map { abs(Double($0) - Double($1)) } }
        var out = [Double](repeating: .nan, count: r.length)
        for c in chunks where c.count == 2 && c[0] >= 0 && c[0] < c[1] && c[1] <= r.length {
            var s = 0.0, ref = 0.0
            for t in c[0]..<c[1] { s += Double(r.learnerLogprob[t]); ref += Double(r.referenceLogprob[t]) }
            for t in c[0]..<c[1] { out[t] = abs(s - ref) }
        }
        return out
    }

    /// The largest finite value (0 when none): the top of the colour scale.
    static func scaleMax(_ v: [Double]) -> Double { v.filter(\.isFinite).max().map { max($0, 1e-12) } ?? 1 }

    /// A YlOrRd-like sequential colour for t in [0, 1] (light yellow → orange → dark red).
    static func color(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(255, 255, 204), (253, 141, 60), (189, 0, 38)]
        let x = min(max(t, 0), 1) * 2
        let i = min(Int(x), 1), u = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        return String(format: "rgb(%d,%d,%d)", Int(a.0 + (b.0 - a.0) * u), Int(a.1 + (b.1 - a.1) * u), Int(a.2 + (b.2 - a.2) * u))
    }

    static func style(_ v: Double, max m: Double) -> String {
        guard v.isFinite else { return "background:#e0e0e0" }
        let t = v / m
        return "background:\(color(t))" + (t > 0.7 ? ";color:#fff" : "")
    }

    /// A number for hover text and tables.
    static func num(_ v: Double) -> String { v.isFinite ? String(format: "%.3f", v) : (v.isNaN ? "n/a" : (v > 0 ? "+inf" : "-inf")) }
    static func num(_ v: Float) -> String { num(Double(v)) }

    /// A token's text with whitespace made visible (tables and hover text).
    static func visible(_ s: String) -> String {
        if s.isEmpty { return "∅" }
        return s.replacingOccurrences(of: " ", with: "␣").replacingOccurrences(of: "\n", with: "⏎").replacingOccurrences(of: "\t", with: "⇥")
    }

    /// The page's HTML (what `write` writes).
    public static func render(record r: RolloutRecord, run: String, samples: Int, coloring: TokenColoring) -> String {
        let esc = ComparisonReport.escape
        let all = TokenColoring.allCases
        let vals = all.map { values(r, $0) }
        let maxes = vals.map(scaleMax)
        let sel = all.firstIndex(of: coloring)!
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\(generatorMarker)"
        h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        h += "<title>\(esc("step \(r.step) sample \(r.sample) — chorus inspect"))</title><style>\(css)</style></head><body>\n"
        h += "<h1>Rollout: step \(r.step), sample \(r.sample) of \(samples)</h1>\n"
        h += "<p class=\"meta\">run <code>\(esc(run))</code> · prompt group \(r.group) · \(r.length) response token\(r.length == 1 ? "" : "s")"
        if let rw = r.reward { h += " · reward <b>\(num(rw))</b>" }
        if let a = r.answer { h += " · answer <code>\(esc(a))</code>" }
        h += "</p>\n<p class=\"meta\">teachers: " + r.teachers.indices.map { k in
            "\(esc(r.teachers[k])) (weight \(k < r.teacherWeights.count ? num(r.teacherWeights[k]) : "n/a")\(r.teacherLogprobs[k] == nil ? ", not scored" : ""))"
        }.joined(separator: ", ") + "</p>\n"
        h += "<h2>Prompt</h2>\n<pre class=\"prompt\">\(esc(r.prompt))</pre>\n"
        if let c = r.completion { h += "<p class=\"meta\">completion (up to the stop token): <code>\(esc(c))</code></p>\n" }

        // The coloured response.
        h += "<h2>Response</h2>\n<div class=\"controls\" id=\"coloring\">colour by: "
        for (i, c) in all.enumerated() {
            h += "<label><input type=\"radio\" name=\"coloring\" value=\"\(i)\"\(i == sel ? " checked" : "")> \(esc(c.title))</label>"
        }
        h += "</div>\n<div class=\"scale\"><span id=\"scale-min\">0</span><span class=\"bar\"></span><span id=\"scale-max\">\(num(maxes[sel]))</span>"
        h += " <span class=\"key masked-key\">masked by the correction</span> <span class=\"key filtered-key\">dropped by the filter</span>"
        h += " <span class=\"key na-key\">value n/a</span></div>\n"
        h += "<div class=\"tokens\" id=\"tokens\" data-max=\"\(maxes.map { String($0) }.joined(separator: " "))\">"
        let kl = vals[0]
        for t in 0..<r.length {
            var cls = "tok"
            if r.masked[t] { cls += " masked" } else if !r.kept[t] { cls += " filtered" }
            let data = vals.enumerated().map { " data-v\($0.offset)=\"\($0.element[t].isFinite ? String($0.element[t]) : "nan")\"" }.joined()
            h += "<span class=\"\(cls)\" style=\"\(style(vals[sel][t], max: maxes[sel]))\"\(data) title=\"\(esc(hover(r, t, kl: kl[t])))\">"
            h += esc(r.tokens[t].isEmpty ? "∅" : r.tokens[t]) + "</span>"
        }
        h += "</div>\n"

        // The virtual rollout.
        h += "<h2>Virtual rollout</h2>\n"
        if let top = r.referenceTop1, let topText = r.referenceTop1Tokens, let topLp = r.referenceTop1Logprob {
            let agree = (0..<r.length).filter { top[$0] == r.responseIds[$0] }.count
            h += "<p class=\"meta\">At every prefix of the student's response, the token the reference (the aggregated teachers) "
                + "ranks first, beside the token the student sampled. The reference's top-1 agrees with the student at "
                + "<b>\(agree) of \(r.length)</b> positions. Each row continues the <i>student's</i> prefix, so the virtual "
                + "rollout is the teacher's one-step advice from every state the student reached, not a rollout of the teacher.</p>\n"
            h += "<div class=\"pair\"><div><div class=\"cap\">student</div><div class=\"flow\">" + (0..<r.length).map { t in
                "<span class=\"vt\(top[t] == r.responseIds[t] ? "" : " diff")\">\(esc(r.tokens[t].isEmpty ? "∅" : r.tokens[t]))</span>"
            }.joined() + "</div></div><div><div class=\"cap\">reference top-1</div><div class=\"flow\" id=\"virtual\">" + (0..<r.length).map { t in
                "<span class=\"vt\(top[t] == r.responseIds[t] ? "" : " diff")\">\(esc(topText[t].isEmpty ? "∅" : topText[t]))</span>"
            }.joined() + "</div></div></div>\n"
            h += "<table class=\"virtual\" id=\"virtual-table\"><thead><tr><th>t</th><th>student token</th><th>log π_θ</th><th>log π_ref(student token)</th>"
                + "<th>reference top-1</th><th>log π_ref(top-1)</th>"
                + r.teachers.map { "<th>log π \(esc($0))</th>" }.joined() + "</tr></thead><tbody>"
            for t in 0..<r.length {
                let same = top[t] == r.responseIds[t]
                h += "<tr class=\"\(same ? "same" : "diff")\"><td>\(t)</td><td><code>\(esc(visible(r.tokens[t])))</code></td>"
                    + "<td>\(num(r.learnerLogprob[t]))</td><td>\(num(r.referenceLogprob[t]))</td>"
                    + "<td><code>\(esc(visible(topText[t])))</code>\(same ? "" : " ≠")</td><td>\(num(topLp[t]))</td>"
                    + r.teacherLogprobs.map { "<td>\($0.map { num($0[t]) } ?? "—")</td>" }.joined() + "</tr>"
            }
            h += "</tbody></table>\n"
        } else {
            h += "<p class=\"unavailable\" id=\"virtual-unavailable\">The virtual rollout is not available for this rollout: "
                + (r.chunks != nil
                   ? "a cross-tokenizer teacher scored it per chunk, so the reference has no distribution over the student's vocabulary at each position (docs/cross-tokenizer.md)."
                   : "the rollouts file has no reference top-1 tokens (written by an older Chorus).") + "</p>\n"
        }
        h += "<script>\(script)</script>\n</body></html>\n"
        return h
    }

    /// The hover text of token t: the token, the student's and the reference's scores, each teacher's log-prob.
    static func hover(_ r: RolloutRecord, _ t: Int, kl: Double) -> String {
        var lines = ["t=\(t) · \"\(visible(r.tokens[t]))\" (id \(r.responseIds[t]))",
                     "student: log π_θ \(num(r.learnerLogprob[t])) (rollout \(num(r.rolloutLogprob[t]))) · entropy \(num(r.studentEntropy[t]))",
                     "reference: log π_ref \(num(r.referenceLogprob[t])) · entropy \(num(r.referenceEntropy[t]))"]
        if let top = r.referenceTop1, let text = r.referenceTop1Tokens, let lp = r.referenceTop1Logprob {
            lines.append("reference top-1: \"\(visible(text[t]))\" (id \(top[t])) log π_ref \(num(lp[t]))")
        }
        for (k, name) in r.teachers.enumerated() {
            lines.append("teacher \(name): " + (r.teacherLogprobs[k].map { "log π \(num($0[t]))" } ?? "not scored"))
        }
        lines.append("|log r| \(num(kl)) · loss weight \(num(r.weight[t]))")
        lines.append(r.masked[t] ? "masked by the rollout correction" : r.kept[t] ? "kept" : "dropped by the token filter")
        return lines.joined(separator: "\n")
    }

    static let css = """
    body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1b1b;background:#fff;max-width:1200px}
    h1{font-size:1.4em;margin:0 0 6px}h2{font-size:1.1em;margin:20px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
    .meta{color:#444;font-size:.92em}.prompt{background:#f6f6f6;padding:8px;white-space:pre-wrap;border-radius:4px}
    .controls label{margin-right:14px;font-size:.92em}
    .scale{display:flex;align-items:center;gap:6px;font-size:.85em;margin:8px 0;flex-wrap:wrap}
    .scale .bar{display:inline-block;width:160px;height:12px;background:linear-gradient(to right,rgb(255,255,204),rgb(253,141,60),rgb(189,0,38));border:1px solid #aaa}
    .key{padding:1px 6px;margin-left:10px}
    .tokens{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:15px;line-height:2.1;white-space:pre-wrap;word-break:break-all;border:1px solid #e3e3e3;padding:10px;border-radius:4px}
    .tok{padding:2px 1px;margin:0 1px;border-radius:2px;box-shadow:inset 0 0 0 1px rgba(0,0,0,.12);cursor:default}
    .tok.masked,.masked-key{text-decoration:line-through;outline:2px solid #222;outline-offset:-1px}
    .tok.filtered,.filtered-key{opacity:.45;border-bottom:2px dotted #333}
    .na-key{background:#e0e0e0}
    .pair{display:grid;grid-template-columns:1fr;gap:6px;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:14px}
    .pair .cap{font-family:system-ui,sans-serif;font-size:.8em;color:#666}
    .flow{white-space:pre-wrap;word-break:break-all;border:1px solid #e3e3e3;padding:6px;border-radius:4px;line-height:1.9}
    .vt{padding:1px 1px;margin:0 1px;box-shadow:inset 0 0 0 1px rgba(0,0,0,.1)}.vt.diff{background:#fdd0a2;outline:1px solid #e6550d}
    table.virtual{border-collapse:collapse;font-size:.85em;margin-top:10px}
    table.virtual th,table.virtual td{border:1px solid #ddd;padding:2px 7px;text-align:left;font-variant-numeric:tabular-nums}
    table.virtual th{background:#f3f3f3}table.virtual tr.diff td{background:#fff1e3}
    .unavailable{background:#fff4d6;border:1px solid #e0c060;padding:8px;border-radius:4px}
    """

    /// The colouring toggle: recolours every token from its data-vN value and the scale's maximum.
    static let script = """
    (function(){var box=document.getElementById('tokens');if(!box)return;var maxes=box.getAttribute('data-max').split(' ').map(Number);
    var stops=[[255,255,204],[253,141,60],[189,0,38]];
    function col(t){var x=Math.min(Math.max(t,0),1)*2;var i=Math.min(Math.floor(x),1);var u=x-i;var a=stops[i],b=stops[i+1];
    return 'rgb('+Math.floor(a[0]+(b[0]-a[0])*u)+','+Math.floor(a[1]+(b[1]-a[1])*u)+','+Math.floor(a[2]+(b[2]-a[2])*u)+')';}
    function paint(k){var m=maxes[k];var toks=box.querySelectorAll('.tok');for(var i=0;i<toks.length;i++){var v=parseFloat(toks[i].getAttribute('data-v'+k));
    if(isNaN(v)){toks[i].style.background='#e0e0e0';toks[i].style.color='';continue;}var t=v/m;toks[i].style.background=col(t);toks[i].style.color=t>0.7?'#fff':'';}
    document.getElementById('scale-max').textContent=m.toFixed(3);}
    var radios=document.querySelectorAll('input[name=coloring]');for(var j=0;j<radios.length;j++){radios[j].addEventListener('change',function(e){paint(Number(e.target.value));});}})();
    """
}
