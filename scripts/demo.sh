#!/usr/bin/env bash
# make demo: the end-to-end example.
#
# NOTE: this is the SMALLER interim example. The multi-teacher on-policy distillation demo (the
# main job) is not built yet; this one exercises the pieces that exist, end to end:
#   1. train a byte-level BPE tokenizer on the bundled arithmetic corpus
#   2. train a weak and a stronger Qwen3-shaped model from scratch with `chorus sft`
#   3. answer held-out problems with the KV-cache sampler (greedy) and score a sequence
#   4. score one answer with the teacher pool teachers/demo.toml under all six aggregators
#      (teacher scores cached in a zstd score cache)
#   5. measure throughput on a built-in shape
set -euo pipefail
BIN="${1:?usage: demo.sh PATH/TO/chorus}"
cd "$(dirname "$0")/.."
OUT=runs/demo
rm -rf "$OUT" && mkdir -p "$OUT"
echo "== NOTE: smaller interim end-to-end example (the distillation demo is not built yet) =="

echo "== 1. tokenizer =="
"$BIN" tokenizer train --input schedules/demo/data/corpus.txt --vocab-size 320 \
  --special-token "<|endoftext|>" --output "$OUT/tokenizer.json"
echo "wrote $OUT/tokenizer.json"

echo "== 2. supervised training from scratch: a weak and a stronger model (schedules/demo/) =="
"$BIN" sft schedules/demo/sft-weak.toml
"$BIN" sft schedules/demo/sft-small.toml
MODEL="$OUT/sft-small/final"

echo "== 3. greedy answers to held-out problems =="
ids_of() { "$BIN" tokenize --tokenizer "$OUT/tokenizer.json" --text "$1" | sed -e 's/.*\[//' -e 's/\].*//'; }
EOS=$(ids_of "<|endoftext|>")
correct=0; total=0
while IFS= read -r line; do
  prompt=$(printf '%s' "$line" | sed -e 's/^{"prompt": "//' -e 's/", "completion".*//' -e 's/\\n/\n/g')
  want=$(printf '%s' "$line" | sed -e 's/.*"completion": "//' -e 's/"}$//')
  pids=$(ids_of "$prompt")
  all=$("$BIN" sample --model "$MODEL" --tokens "$pids" --max-tokens 6 --temperature 0 | sed -e 's/.*"tokens":\[//' -e 's/\].*//')
  n=$(( $(printf '%s' "$pids" | tr -cd ',' | wc -c) + 1 ))
  gen=$(printf '%s' "$all" | tr ',' '\n' | tail -n +$((n + 1)) | grep -v "^$EOS\$" | paste -sd, -)
  got=""
  [ -n "$gen" ] && got=$("$BIN" detokenize --tokenizer "$OUT/tokenizer.json" --ids "$gen" | sed -e 's/^{"text":"//' -e 's/"}$//')
  total=$((total + 1)); [ "$got" = "$want" ] && correct=$((correct + 1))
  printf '  %-14s -> %-6s (expected%s)\n' "$(printf '%s' "$prompt" | head -1)" "$got" "$want"
done < <(head -n 12 schedules/demo/data/arith-eval.jsonl)
echo "  exact match: $correct / $total"
echo "  chorus eval, all held-out problems: greedy, then 4 samples each at temperature 1"
"$BIN" eval --model "$MODEL" --data schedules/demo/data/arith-test.jsonl --k 1 --temperature 0 --max-tokens 6
"$BIN" eval --model "$MODEL" --data schedules/demo/data/arith-test.jsonl --k 4 --temperature 1 --max-tokens 6

echo "== score a sequence: log p, entropy, top-3 per position =="
"$BIN" logprobs --model "$MODEL" --tokens "$(ids_of "Q: 12 + 7 =
A: 19")" --top-k 3

echo "== 4. teacher pool teachers/demo.toml: every aggregator on one answer (progress 0.5) =="
SEQ=$(ids_of "Q: 12 + 7 =
A: 19")
PL=$(( $(ids_of "Q: 12 + 7 =
A:" | tr -cd ',' | wc -c) + 1 ))
for agg in arithmetic geometric hard-switch soft-switch control-token random; do
  printf '%-14s ' "$agg"
  "$BIN" score --pool teachers/demo.toml --aggregator "$agg" --progress 0.5 --group 1 \
    --prompt-length "$PL" --privileged answer=19 --cache "$OUT/score-cache" --tokens "$SEQ"
done
"$BIN" cache stats "$OUT/score-cache"

echo "== 5. throughput, built-in qwen3-10m shape =="
"$BIN" bench --shape qwen3-10m --batch 4 --seq 128 --json
