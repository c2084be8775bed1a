#!/usr/bin/env python3
"""Hugging Face `generate` sampling throughput, the baseline for `chorus bench --rollout`.

    python3 -m venv /work/venv && /work/venv/bin/pip install torch transformers
    /work/venv/bin/python scripts/bench_hf_generate.py --shape qwen3-23m --batch 8 --threads 2

(the CPU-only torch wheel is enough: `pip install torch --index-url .../whl/cpu`, or a local
wheel). torch's OpenMP workers spin-wait for each other: with other jobs on the cores its
numbers fall several-fold (measured at batch 8, 2 threads: ~600 tok/s at load 2.6 from this
script alone, 60-180 at load 4), far more than Chorus'. Compare runs taken at the same load,
interleaved, and write the load next to them.

Same measurement as Chorus' `rollout_tokens_per_s`: B random 16-token prompts, 64 sampled
tokens each (do_sample, temperature 1, top-p 1, no top-k; min_new_tokens = 64 so EOS never
ends a row early), float32, random init of the same Qwen3 shape (`bench_pytorch.py`'s table)
or `--model DIR`, a checkpoint loaded with its weights, `torch.set_num_threads(--threads)`. The whole `generate`
call is timed (prefill included, as in Chorus); tokens/s counts sampled tokens only.
Prints one JSON object.
"""
import argparse
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pytorch import SHAPES, timed  # noqa: E402  (one table of shapes for both scripts)


def build(a):
    """The model: a built-in shape with random init (as `chorus bench --shape`) or a checkpoint."""
    torch.manual_seed(0)
    if a.model:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
        cfg = model.config
    else:
        cfg = Qwen3Config(vocab_size=8192, head_dim=64, tie_word_embeddings=True, rope_theta=1e6,
                          attn_implementation="sdpa", **SHAPES[a.shape])
        model = Qwen3ForCausalLM(cfg)
    return model.float().eval(), cfg.vocab_size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen3-23m", choices=sorted(SHAPES))
    ap.add_argument("--model", help="a Hugging Face model directory (its weights, as `chorus bench --model`)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens per row")
    ap.add_argument("--tokens", type=int, default=64, help="sampled tokens per row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, vocab = build(a)
    ids = torch.randint(0, vocab, (a.batch, a.prompt))
    mask = torch.ones_like(ids)

    def run():
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0,
                                 top_k=0, max_new_tokens=a.tokens, min_new_tokens=a.tokens, pad_token_id=0)
        assert out.shape == (a.batch, a.prompt + a.tokens), out.shape

    t = timed(run, min_seconds=a.min_seconds)
    print(json.dumps({"framework": f"transformers {__import__('transformers').__version__} / torch {torch.__version__}",
                      "shape": a.model or a.shape, "batch": a.batch, "prompt": a.prompt, "tokens": a.tokens,
                      "threads": a.threads, "seconds_per_generate": round(t, 4),
                      "rollout_tokens_per_s": round(a.batch * a.tokens / t, 2)}))


if __name__ == "__main__":
    main()
