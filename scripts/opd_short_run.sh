#!/usr/bin/env bash
# A short on-policy run on the bundled models with bf16 rollouts and masking: what issue F's
# "done when" asks to see. Prints chorus eval of the base student, the metrics rows of a
# STEPS-step run of schedules/default.toml (rollout.precision = "bf16", correction.mode = "mask"
# as in the recipe, no periodic evaluation), seconds per step split into rollout / scoring /
# update, and chorus eval of the result.
#
#   bash scripts/opd_short_run.sh .build/release/chorus [STEPS]   (default 100; ~20 s)
set -euo pipefail
BIN="${1:?usage: opd_short_run.sh PATH/TO/chorus [STEPS]}"
STEPS="${2:-100}"
cd "$(dirname "$0")/.."
OUT=runs/opd-short
rm -rf "$OUT" "$OUT-tight"
EVAL=(--benchmark add3 --benchmark rev --k 8 --temperature 1 --max-tokens 6 --seed 1)
echo "== before: chorus eval --model teachers/student"
"$BIN" eval --model teachers/student "${EVAL[@]}"
echo "== chorus train schedules/default.toml, $STEPS steps, bf16 rollouts, mask [0.5, 2]"
"$BIN" train schedules/default.toml --quiet --set train.steps="$STEPS" --set eval.every=1000000 \
  --set rollout.precision=bf16 --set output.dir="$(pwd)/$OUT"
echo "== metrics rows (steps 1, $((STEPS / 2)), $STEPS): the fields of DESIGN.md"
python3 - "$OUT/metrics.jsonl" "$STEPS" <<'PY' 2>/dev/null || grep -E '"step":(1|'"$((STEPS / 2))"'|'"$STEPS"'),"progress"' "$OUT/metrics.jsonl"
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' not in l]
n = int(sys.argv[2])
keys = ["step", "loss", "kl_k1", "kl_k3", "student_entropy", "reference_entropy", "ppl_drift", "masked_fraction",
        "is_weight_min", "is_weight_max", "kept_fraction", "grad_norm", "seconds_rollout", "seconds_scoring", "seconds_update", "step_seconds"]
for r in rows:
    if r["step"] in (1, n // 2, n):
        print("  " + ", ".join(f"{k} {r[k]:.4g}" if isinstance(r[k], float) else f"{k} {r[k]}" for k in keys if k in r))
tail = rows[5:] or rows
ms = lambda k: 1000 * statistics.median(r[k] for r in tail)
print(f"  median step {ms('step_seconds'):.1f} ms = rollout {ms('seconds_rollout'):.1f} + scoring {ms('seconds_scoring'):.1f}"
      f" + update {ms('seconds_update'):.1f} (steps 6..{n})")
print(f"  mean ppl_drift {statistics.mean(r['ppl_drift'] for r in rows):.3g}, mean masked_fraction {statistics.mean(r['masked_fraction'] for r in rows):.3g}")
PY
echo "== after: chorus eval --model $OUT/final"
"$BIN" eval --model "$OUT/final" "${EVAL[@]}"
# The bundled student's weights start on the bf16 grid, so its bf16 copy differs only by the
# updates since: importance weights stay within ~[0.9, 1.15] and [0.5, 2] masks nothing. A
# tighter band shows the mask at work on the same run.
echo "== the same run for 40 steps with correction.lo = 0.98, hi = 1.02: masked_fraction every 10 steps"
"$BIN" train schedules/default.toml --quiet --set train.steps=40 --set eval.every=1000000 \
  --set rollout.precision=bf16 --set correction.lo=0.98 --set correction.hi=1.02 --set output.dir="$(pwd)/$OUT-tight" >/dev/null
grep -v '"eval"' "$OUT-tight/metrics.jsonl" | sed -nE 's/.*"step":([0-9]+),.*"ppl_drift":([^,]+),"masked_fraction":([^,]+),.*/  step \1: ppl_drift \2, masked_fraction \3/p' | awk 'NR == 1 || NR % 10 == 0'
