#!/usr/bin/env bash
# make demo: on-policy distillation of a weak student from the bundled teacher ladder.
#
#   1. evaluate the base student and each teacher (teachers/) on every benchmark
#   2. chorus train schedules/default.toml: the student samples its own answers to add3
#      problems, the four teachers score them token by token, their mixture is the reference,
#      and the student is updated toward it (progress on stderr)
#   3. evaluate the distilled student the same way and print one table
#
# Benchmarks (chorus tasks list): add3 in-distribution (trained), add4 harder and never seen,
# rev a second skill the student already has and distillation does not train (retention).
set -euo pipefail
BIN="${1:?usage: demo.sh PATH/TO/chorus}"
cd "$(dirname "$0")/.."
RECIPE=${RECIPE:-schedules/default.toml}
OUT=runs/demo
rm -rf "$OUT" && mkdir -p "$OUT"
BENCH=(add3 add4 rev)
EVAL_ARGS=(--k 8 --temperature 1 --max-tokens 6 --seed 1)
for b in "${BENCH[@]}"; do EVAL_ARGS+=(--benchmark "$b"); done

# "NAME": {"mean_at_k": x, "best_at_k": y, ...} -> "x y" for one benchmark of chorus eval's JSON.
field() { printf '%s' "$1" | sed -E "s/.*\"$2\":\{\"mean_at_k\":([0-9.e-]+),\"best_at_k\":([0-9.e-]+).*/\1 \2/"; }
row() {
  local name=$1 json=$2 line
  line=$(printf '%-18s' "$name")
  for b in "${BENCH[@]}"; do
    read -r m k <<<"$(field "$json" "$b")"
    line+=$(awk -v m="$m" -v k="$k" 'BEGIN { printf "  %6.1f %6.1f", 100 * m, 100 * k }')
  done
  printf '%s\n' "$line" >> "$OUT/table.txt"
}

start=$(date +%s)
echo "== 1. the base student and the teacher ladder (mean@8 / best@8 on ${BENCH[*]}) =="
: > "$OUT/table.txt"
for m in student t1 t2 t3 t4; do
  json=$("$BIN" eval --model "teachers/$m" "${EVAL_ARGS[@]}")
  echo "  $m: $json"
  row "$m" "$json"
done

echo "== 2. on-policy distillation: chorus train $RECIPE =="
"$BIN" train "$RECIPE"
# The run directory: the recipe's [output] dir, relative to the recipe's own directory.
RUN=$(sed -nE 's/^dir = "(.*)"$/\1/p' "$RECIPE" | head -n 1)
case "$RUN" in
  "") RUN=runs/demo/opd ;;
  /*) ;;
  *) RUN="$(dirname "$RECIPE")/$RUN" ;;
esac
RUN=$(realpath -m --relative-to=. "$RUN" 2>/dev/null || printf '%s' "$RUN")

echo "== 3. the distilled student =="
json=$("$BIN" eval --model "$RUN/final" "${EVAL_ARGS[@]}")
echo "  distilled: $json"
row "distilled student" "$json"

echo
printf '%-18s' "model"; for b in "${BENCH[@]}"; do printf '  %13s' "$b mean/best@8"; done; echo
cat "$OUT/table.txt"
echo
echo "run directory: $RUN (metrics.jsonl, run.toml, checkpoints, final/)"
echo "demo: $(( $(date +%s) - start )) s after the build"
