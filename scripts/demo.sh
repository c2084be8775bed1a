#!/usr/bin/env bash
# make demo: the end-to-end example. The full multi-teacher distillation demo arrives with the
# trainer; until then this runs a SMALLER example, and says so: it scores and samples with a
# bundled tiny checkpoint and measures inference throughput on a built-in shape.
set -euo pipefail
BIN="${1:?usage: demo.sh PATH/TO/chorus}"
cd "$(dirname "$0")/.."
MODEL=Tests/ChorusModelTests/Fixtures/models/qwen3_tied_f32
echo "== NOTE: smaller end-to-end example (the distillation demo is not built yet) =="
echo "== score a sequence with a tiny Qwen3 checkpoint =="
"$BIN" logprobs --model "$MODEL" --tokens 5,17,3,42,7 --top-k 3
echo "== sample 16 tokens (seed 1, temperature 0.8, top-p 0.95) =="
"$BIN" sample --model "$MODEL" --tokens 5,17,3 --max-tokens 16 --temperature 0.8 --top-p 0.95 --seed 1
echo "== inference throughput, built-in qwen3-10m shape =="
"$BIN" bench --shape qwen3-10m --batch 2 --seq 128 --json
