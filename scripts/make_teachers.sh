#!/usr/bin/env bash
# make teachers: rebuild the bundled teacher ladder under teachers/ from nothing but chorus.
#
#   1. data: chorus tasks generate (add3 for the teachers; rev:0.95 + add3:0.05 for the student, so that
#      its rev skill is well settled long before addition starts to click)
#   2. one tokenizer for every model: chorus tokenizer train on the prompts + answers
#   3. chorus sft with schedules/ladder/sft-*.toml (checkpoints every 100 steps)
#   4. the checkpoint of each run named below, saved as bf16 by chorus convert, and the pool
#      manifest teachers/pool.toml
#
# Learning here has a sharp phase transition (a model sits near 0% for a while, then climbs to
# ~100% within a few hundred steps), so the ladder is picked from each run's checkpoints, not
# by step count: the picks below were read off `chorus eval` of every checkpoint (the table in
# teachers/README.md). Training is deterministic (seed, one thread), so the same steps give the
# same models.
set -euo pipefail
BIN="${1:?usage: make_teachers.sh PATH/TO/chorus}"
cd "$(dirname "$0")/.."
W=runs/teachers
mkdir -p "$W"

# Checkpoint picked from each run (see above).
STUDENT_STEP=${STUDENT_STEP:-1000}   # add3 just above zero, rev saturated
T1_STEP=${T1_STEP:-1800}             # each teacher: a point on its own transition that keeps
T2_STEP=${T2_STEP:-3000}             # the ladder strictly increasing (t2's run only starts to
T3_STEP=${T3_STEP:-2000}             # click at its last steps)
T4_STEP=${T4_STEP:-1400}

echo "== 1. data =="
"$BIN" tasks generate --benchmark add3 --split train --count 60000 --seed 1 --output "$W/add3.jsonl"
"$BIN" tasks generate --benchmark rev:0.95 --benchmark add3:0.05 --split train --count 100000 --seed 2 --output "$W/student.jsonl"

echo "== 2. tokenizer (one for the whole ladder) =="
cat "$W/add3.jsonl" "$W/student.jsonl" | sed -E 's/^\{"prompt":"([^"]*)","completion":"([^"]*)".*$/\1\2/' > "$W/corpus.txt"
"$BIN" tokenizer train --input "$W/corpus.txt" --vocab-size 259 --special-token "<|endoftext|>" --output "$W/tokenizer.json"

echo "== 3. supervised training (two at a time) =="
run() { [ -d "$W/$1/final" ] || "$BIN" sft "schedules/ladder/sft-$1.toml" --quiet; echo "trained $1"; }
run student & run t1 & wait
run t2 & run t3 & wait
run t4

if [ "${SWEEP:-0}" = 1 ]; then
  echo "== sweep: mean@8 of every checkpoint (for picking) =="
  for r in student t1 t2 t3 t4; do
    for c in "$W/$r"/checkpoints/step-*; do
      echo "$r $(basename "$c") $("$BIN" eval --model "$c" --benchmark add3 --benchmark rev --k 8 --temperature 1 --max-tokens 6)"
    done
  done
  exit 0
fi

echo "== 4. bf16 copies of the picked checkpoints, and the pool =="
pick() { "$BIN" convert --model "$W/$1/checkpoints/step-$(printf %08d "$2")" --output "teachers/$1" --dtype bf16 --force >/dev/null; echo "teachers/$1 <- $1 step $2"; }
pick student "$STUDENT_STEP"; pick t1 "$T1_STEP"; pick t2 "$T2_STEP"; pick t3 "$T3_STEP"; pick t4 "$T4_STEP"
echo "wrote teachers/student teachers/t1..t4 (pool: teachers/pool.toml)"
