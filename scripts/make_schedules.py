#!/usr/bin/env python3
"""Writes the variant recipes under schedules/ from schedules/default.toml.

Each variant is default.toml with a few keys changed (marked "<- differs from default.toml"),
its paths rewritten for its directory and its own header. Tune default.toml, then run
`python3 scripts/make_schedules.py` so every variant follows. ChorusTrainingTests
(ScheduleTests) loads and validates every file under schedules/.
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHED = os.path.join(ROOT, "schedules")
PATH_KEYS = {("model", "init"), ("teachers", "pool"), ("output", "dir")}

# Curricula (schedules/curricula/): a [curriculum] table appended verbatim (docs/curricula.md).
# The bundled ladder is t1..t4, weakest first.
WARMUP_LADDER = """
[curriculum]
space = "arithmetic"
transition = "linear"

[[curriculum.stage]]          # warm-up: t1 alone until p = 0.2
at = 0.2
weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }

[[curriculum.stage]]          # then up the ladder, each teacher blended into the next
at = 0.4
weights = { t1 = 0, t2 = 1, t3 = 0, t4 = 0 }

[[curriculum.stage]]
at = 0.6
weights = { t1 = 0, t2 = 0, t3 = 1, t4 = 0 }

[[curriculum.stage]]          # t4 alone from p = 0.8 to the end
at = 0.8
weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 1 }
"""

THREE_STAGE = """
[curriculum]
space = "arithmetic"
transition = "linear"

[[curriculum.stage]]          # t1 alone until p = 0.15
at = 0.15
weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }

[[curriculum.stage]]          # t2 and t3 in equal parts at p = 0.5
at = 0.5
weights = { t1 = 0, t2 = 1, t3 = 1, t4 = 0 }

[[curriculum.stage]]          # t4 alone from p = 0.85
at = 0.85
weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 1 }
"""

FLOOR = """
[curriculum]
space = "arithmetic"
transition = "step"

[[curriculum.stage]]          # t1 alone for the first quarter
at = 0.0
weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }

[[curriculum.stage]]          # then the ladder takes 80%, t1 keeps 20% to the end
at = 0.25
weights = { t1 = 0.2, t2 = 0.8, t3 = 0, t4 = 0 }

[[curriculum.stage]]
at = 0.5
weights = { t1 = 0.2, t2 = 0, t3 = 0.8, t4 = 0 }

[[curriculum.stage]]
at = 0.75
weights = { t1 = 0.2, t2 = 0, t3 = 0, t4 = 0.8 }
"""

# (file, header lines, {section: {key: value or None to delete}}[, text appended]); output.dir
# is derived.
VARIANTS = [
    ("aggregators/arithmetic.toml", ["Aggregator arithmetic: log pi_ref = log sum_k w_k pi_k (the probability-space mean,",
                                     "uniform weights; per-teacher `weight` in the pool manifest changes them). Same as default.toml."], {}),
    ("aggregators/geometric.toml", ["Aggregator geometric: the normalised weighted mean of the teachers' log-probs",
                                    "(a product of experts: tokens any teacher rules out are ruled out)."],
     {"teachers": {"aggregator": '"geometric"'}}),
    ("aggregators/hard-switch.toml", ["Aggregator hard-switch: a curriculum, one teacher at a time, weakest first. With 4",
                                      "teachers, 3 boundaries in training progress p: t1 until p = 0.2, t2 until 0.45,",
                                      "t3 until 0.7, then t4 (omit `boundaries` for equal stages 0.25/0.5/0.75)."],
     {"teachers": {"aggregator": '"hard-switch"', "boundaries": "[0.2, 0.45, 0.7]"}}),
    ("aggregators/soft-switch.toml", ["Aggregator soft-switch: a smooth curriculum, pi_ref = (1 - l) pi_j + l pi_{j+1} with",
                                      "x = p (K - 1), j = floor(x), l = x - j (neighbouring teachers blended as training goes);",
                                      "soft_switch_log_space = true blends log-probs instead."],
     {"teachers": {"aggregator": '"soft-switch"', "soft_switch_log_space": "false"}}),
    ("aggregators/control-token.toml", ["Aggregator control-token: each prompt group is routed to one teacher (the batch split",
                                        "evenly) and the student's prompt starts with <|teacher-k|> (k = 0 for t1 .. 3 for t4);",
                                        "the tokens are added to the student's vocabulary at the start of the run (the pool",
                                        "needs nothing extra). Evaluation prompts start with the strongest teacher's token."],
     {"teachers": {"aggregator": '"control-token"'}, "objective": {"full_vocabulary": "false"}}),
    ("aggregators/random.toml", ["Aggregator random: each prompt group gets one teacher drawn uniformly from a generator",
                                 "seeded with train.seed."],
     {"teachers": {"aggregator": '"random"'}}),
    ("self-teacher.toml", ["Self-distillation: the only teacher is the student itself, shown the answer before",
                           "the prompt (pools/self.toml: \"{answer} {prompt}\"). self_teacher = \"frozen\"",
                           "scores with the initial student; \"follow\" scores with the current one."],
     {"teachers": {"pool": '"pools/self.toml"', "self_teacher": '"frozen"'}}),
    ("objectives/reverse-kl.toml", ["Divergence reverse-kl (k1): token weight A = -log r, r = pi_student / pi_ref, minimising",
                                    "KL(student || reference): mode-seeking, the sampled-token estimate (default.toml uses the full vocabulary)."],
     {"objective": {"full_vocabulary": "false"}}),
    ("objectives/forward-kl.toml", ["Divergence forward-kl: A = 1/r, minimising KL(reference || student): mass-covering."],
     {"objective": {"divergence": '"forward-kl"'}}),
    ("objectives/jensen-shannon.toml", ["Divergence jensen-shannon: A = -1/2 log(2r / (1 + r)); bounded, between the two KLs."],
     {"objective": {"divergence": '"jensen-shannon"'}}),
    ("objectives/hellinger.toml", ["Divergence hellinger: A = r^(-1/2) - 1 (squared Hellinger distance)."],
     {"objective": {"divergence": '"hellinger"'}}),
    ("objectives/tsallis.toml", ["Divergence tsallis with alpha = 0.5: A = -alpha r^(alpha-1) / (alpha - 1); alpha -> 1 is the",
                                 "reverse KL (alpha = 1 itself is refused)."],
     {"objective": {"divergence": '"tsallis"', "tsallis_alpha": "0.5"}}),
    ("objectives/naive-k3.toml", ["Divergence naive-k3: A = -(1/r - 1 + log r), the k3 KL estimate used as a weight. An",
                                  "ablation only: it is a biased gradient (compare with reverse-kl.toml)."],
     {"objective": {"divergence": '"naive-k3"', "full_vocabulary": "false"}}),
    ("objectives/full-vocabulary.toml", ["Reverse KL computed exactly over the whole vocabulary at each sampled prefix (a dense",
                                         "objective from the teachers' full distributions) instead of the sampled-token estimate. Same as default.toml."], {}),
    # The three corrections sample from bf16 weights, so there is a rollout/learner mismatch to
    # correct; they differ from each other in correction.mode only.
    ("corrections/mask.toml", ["Correction mask (MIS/IcePop): a token whose learner/rollout ratio rho lies outside",
                               "[lo, hi] gets no gradient; inside, its weight is rho (default.toml's mode). Rollouts",
                               "sample from a bf16 copy of the student, so the ratio is not 1 (compare corrections/*)."],
     {"rollout": {"precision": '"bf16"'}}),
    ("corrections/truncate.toml", ["Correction truncate (TIS): every token is weighted by rho clamped to [lo, hi].",
                                   "Rollouts sample from a bf16 copy of the student (compare corrections/*)."],
     {"correction": {"mode": '"truncate"'}, "rollout": {"precision": '"bf16"'}}),
    ("corrections/none.toml", ["Correction none: rollout and learner log-probs are assumed equal (no IS weight) although",
                               "rollouts sample from a bf16 copy of the student (compare corrections/*)."],
     {"correction": {"mode": '"none"', "lo": None, "hi": None}, "rollout": {"precision": '"bf16"'}}),
    ("filters/kl.toml", ["Filter kl: keep only the response tokens whose |log r| lies in the top half of the batch",
                         "(percentiles [0.5, 1]): train where student and reference disagree most."],
     {"filter": {"by": '"kl"', "min": "0.5", "max": "1.0"}}),
    ("filters/student-entropy.toml", ["Filter student-entropy: keep the tokens whose student entropy is in the top 80% of",
                                      "the batch (percentiles [0.2, 1]): skip tokens the student is already sure of."],
     {"filter": {"by": '"student-entropy"', "min": "0.2", "max": "1.0"}}),
    ("filters/teacher-entropy.toml", ["Filter teacher-entropy: keep the tokens whose reference entropy is in the lowest 80%",
                                      "of the batch (percentiles [0, 0.8]): skip tokens the teachers are unsure of."],
     {"filter": {"by": '"teacher-entropy"', "min": "0.0", "max": "0.8"}}),
    ("curricula/warmup-ladder.toml", ["Curriculum: a warm-up on the weakest teacher, then the ladder. t1 alone until",
                                      "p = 0.2, then each teacher blended linearly into the next (t2 at 0.4, t3 at 0.6),",
                                      "t4 alone from 0.8. The [curriculum] table makes the aggregator \"curriculum\"."],
     {"teachers": {"aggregator": '"curriculum"'}}, WARMUP_LADDER),
    ("curricula/three-stage.toml", ["Curriculum: a three-stage blend t1 -> t2 + t3 -> t4. t1 alone until p = 0.15,",
                                    "blended linearly into an equal mix of t2 and t3 at 0.5, then into t4, alone",
                                    "from 0.85 to the end."],
     {"teachers": {"aggregator": '"curriculum"'}}, THREE_STAGE),
    ("curricula/floor.toml", ["Curriculum: keep a floor of the weakest teacher. t1 alone for the first quarter, then",
                              "t2, t3 and t4 in turn (step transitions at 0.25, 0.5, 0.75), each mixed with 20% of t1",
                              "to the end (probability space: the reference keeps a fifth of t1's mass)."],
     {"teachers": {"aggregator": '"curriculum"'}}, FLOOR),
]


def parse(text):
    """default.toml as [(section, [(key, value)])], header comments dropped."""
    sections, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^\[([a-z_]+)\]$", s)
        if m:
            cur = (m.group(1), [])
            sections.append(cur)
            continue
        k, v = s.split("=", 1)
        cur[1].append((k.strip(), v.strip()))
    return sections


def render(sections, name, header, changes, tail=""):
    depth = name.count("/")
    stem = name[:-len(".toml")]
    out = ["# " + h for h in header]
    out += ["# Otherwise as schedules/default.toml (the demo recipe); paths are relative to this file.",
            "# Run: chorus train schedules/" + name]
    changes = {s: dict(kv) for s, kv in changes.items()}
    changes.setdefault("output", {})["dir"] = '"%s"' % ("../" * (depth + 1) + "runs/" + stem)
    seen = set()
    for sec, kvs in sections + [(s, []) for s in changes if s not in [x[0] for x in sections]]:
        out += ["", "[%s]" % sec]
        for k, v in kvs:
            seen.add((sec, k))
            new = changes.get(sec, {}).get(k, v)
            if new is None:
                continue
            if (sec, k) in PATH_KEYS and k in changes.get(sec, {}) and sec != "output":
                out.append("%s = %s  # <- differs from default.toml" % (k, new))
                continue
            if (sec, k) in PATH_KEYS:
                new = '"' + "../" * depth + new.strip('"') + '"' if sec != "output" else new
            mark = "  # <- differs from default.toml" if k in changes.get(sec, {}) and new != v and sec != "output" else ""
            out.append("%s = %s%s" % (k, new, mark))
        for k, v in changes.get(sec, {}).items():
            if (sec, k) not in seen and v is not None:
                out.append("%s = %s  # <- differs from default.toml" % (k, v))
    return "\n".join(out) + "\n" + tail


def main():
    with open(os.path.join(SCHED, "default.toml")) as f:
        sections = parse(f.read())
    for name, header, changes, *tail in VARIANTS:
        path = os.path.join(SCHED, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(render(sections, name, header, changes, *tail))
        print("wrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
