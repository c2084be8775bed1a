#!/usr/bin/env bash
# The cross-tokenizer run on the bundled ladder (docs/cross-tokenizer.md, issue L):
#
#   1. a second tokenizer, trained by chorus tokenizer train on the ladder's corpus with another
#      vocabulary size (400 instead of 259)
#   2. teacher t4x: t4's recipe (schedules/ladder/sft-t4x.toml) with that tokenizer
#   3. two OPD runs of the default recipe with the sampled-token objective (the full-vocabulary
#      objective needs one vocabulary): pool t1..t4 (one tokenizer) and pool t1..t3 + t4x
#      (cross_tokenizer = true), same seed
#   4. chorus eval of the student before and of both distilled students after
#
# Needs the ladder's data (make teachers writes runs/teachers/). Outputs under runs/xtok/.
set -euo pipefail
BIN="${1:?usage: xtok_ladder.sh PATH/TO/chorus}"
cd "$(dirname "$0")/.."
W=runs/xtok
T4X_STEP=${T4X_STEP:-1400}
mkdir -p "$W"
[ -f runs/teachers/corpus.txt ] || { echo "run make teachers first (runs/teachers/corpus.txt)" >&2; exit 1; }

echo "== 1. tokenizer (400 tokens) =="
[ -f "$W/tokenizer.json" ] || "$BIN" tokenizer train --input runs/teachers/corpus.txt --vocab-size 400 \
  --special-token "<|endoftext|>" --output "$W/tokenizer.json"

echo "== 2. teacher t4x =="
[ -d "$W/t4x/final" ] || "$BIN" sft schedules/ladder/sft-t4x.toml --quiet
rm -rf "$W/teacher-t4x"
"$BIN" convert --model "$W/t4x/checkpoints/step-$(printf %08d "$T4X_STEP")" --output "$W/teacher-t4x" --dtype bf16 >/dev/null
T=$(cd teachers && pwd)
cat > "$W/pool-same.toml" <<POOL
student = "$T/student"
[[teacher]]
name = "t1"
path = "$T/t1"
[[teacher]]
name = "t2"
path = "$T/t2"
[[teacher]]
name = "t3"
path = "$T/t3"
[[teacher]]
name = "t4"
path = "$T/t4"
POOL
sed -e '/name = "t4"/,$d' "$W/pool-same.toml" > "$W/pool-cross.toml"
cat >> "$W/pool-cross.toml" <<POOL
name = "t4x"
path = "teacher-t4x"
cross_tokenizer = true
POOL

EVAL=(--k 8 --temperature 1 --max-tokens 6 --seed 1 --benchmark add3 --benchmark add4 --benchmark rev)
echo "== 3. teachers and the base student =="
for m in teachers/student teachers/t4 "$W/teacher-t4x"; do echo "$m $("$BIN" eval --model "$m" "${EVAL[@]}")"; done

echo "== 4. OPD, sampled-token reverse KL, same tokenizer vs one cross-tokenizer teacher =="
for p in same cross; do
  rm -rf "$W/opd-$p"
  "$BIN" train schedules/default.toml --set teachers.pool="$PWD/$W/pool-$p.toml" \
    --set objective.full_vocabulary=false --set output.dir="$PWD/$W/opd-$p" --quiet
  echo "opd-$p $("$BIN" eval --model "$W/opd-$p/final" "${EVAL[@]}")"
done
