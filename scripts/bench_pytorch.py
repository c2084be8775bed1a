#!/usr/bin/env python3
"""PyTorch (CPU, float32) throughput for the model `chorus bench` measures, for comparison.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers
    /tmp/venv/bin/python scripts/bench_pytorch.py --shape qwen3-23m --batch 4 --seq 256 --threads 2

Forward: logits + log_softmax + the target log-prob and entropy of every position (what
`chorus bench` forward_tokens_per_s does); also the bare forward to logits. Train: forward + backward of the mean cross-entropy
(no optimizer step), like train_tokens_per_s. Prints one JSON object.
"""
import argparse
import json
import time

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

SHAPES = {
    "qwen3-10m": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=10, num_attention_heads=4, num_key_value_heads=2),
    "qwen3-23m": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4),
    "qwen3-50m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=7, num_attention_heads=12, num_key_value_heads=4),
}


def timed(fn, min_seconds=2.0, min_runs=3):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen3-23m", choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=8192, head_dim=64, tie_word_embeddings=True, rope_theta=1e6,
                      attn_implementation="sdpa", **SHAPES[a.shape])
    model = Qwen3ForCausalLM(cfg).float()
    ids = torch.randint(0, 8192, (a.batch, a.seq))
    targets = torch.roll(ids, -1, dims=1)

    def forward():
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits, dim=-1)
            _ = lp.gather(2, targets[..., None])
            _ = -(lp.exp() * lp).sum(-1)

    def forward_logits():
        with torch.no_grad():
            _ = model(input_ids=ids).logits

    def train():
        model.zero_grad(set_to_none=False)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 8192), ids[:, 1:].reshape(-1))
        loss.backward()

    model.eval()
    fwd = timed(forward)
    fwd_logits = timed(forward_logits)
    model.train()
    trn = timed(train)
    n = a.batch * a.seq
    print(json.dumps({"framework": f"torch {torch.__version__}", "shape": a.shape, "batch": a.batch, "seq": a.seq,
                      "threads": a.threads, "forward_tokens_per_s": round(n / fwd, 2),
                      "forward_logits_only_tokens_per_s": round(n / fwd_logits, 2),
                      "train_tokens_per_s": round(n / trn, 2)}))


if __name__ == "__main__":
    main()
