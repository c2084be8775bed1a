#!/usr/bin/env python3
"""Checks `chorus score` against an independent reference: transformers' log-softmax for each
checkpoint teacher of a pool, combined with the aggregator formulas of DESIGN.md in float64.

    /tmp/venv/bin/python scripts/check_score_reference.py teachers/pool.toml \
        --tokens 56,49,51,44,51,51,57,62,49,52,58 --prompt-length 8 --progress 0.3 --group 1

Checkpoint teachers only (no self-teacher); prints the max |difference| per aggregator for the
reference log-probs, the reference entropy and the per-teacher log-probs, and exits non-zero
above --tolerance (default 1e-4). Run `make demo` (or `swift build -c release`) first.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tomllib

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pool")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--prompt-length", type=int, default=1)
    ap.add_argument("--progress", type=float, default=0.0)
    ap.add_argument("--group", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--chorus", default=".build/release/chorus")
    a = ap.parse_args()
    spec = tomllib.load(open(a.pool, "rb"))
    base = os.path.dirname(os.path.abspath(a.pool))
    teachers = spec["teacher"]
    names = [t["name"] for t in teachers]
    w = torch.tensor([float(t.get("weight", 1.0)) for t in teachers], dtype=torch.float64)
    w = w / w.sum()
    toks = [int(x) for x in a.tokens.split(",")]
    L, K, p, grp = a.prompt_length, len(teachers), a.progress, a.group
    lps = []
    for t in teachers:
        m = AutoModelForCausalLM.from_pretrained(os.path.join(base, t["path"]), dtype=torch.float32).eval()
        with torch.no_grad():
            lps.append(torch.log_softmax(m(input_ids=torch.tensor([toks])).logits[0].double(), -1))
    lp = torch.stack(lps)  # (K, T, V)
    rows = list(range(L - 1, len(toks) - 1))
    tgt = torch.tensor(toks[L:])

    def target_and_entropy(ref):
        r = ref[rows]
        return r.gather(1, tgt[:, None])[:, 0].tolist(), (-(r.exp() * r).sum(-1)).tolist()

    refs = {"arithmetic": torch.logsumexp(lp + w.log()[:, None, None], 0)}
    g = (lp * w[:, None, None]).sum(0)
    refs["geometric"] = g - torch.logsumexp(g, -1, keepdim=True)
    refs["hard-switch"] = lp[min(K - 1, int(p * K))]           # equal stages, weakest first
    x = p * (K - 1)
    j = min(int(math.floor(x)), max(K - 2, 0))
    lam = x - j
    if K == 1:
        refs["soft-switch"] = lp[0]
    else:
        mix = [lp[j] + math.log(max(1 - lam, 1e-300)), lp[j + 1] + math.log(max(lam, 1e-300))]
        refs["soft-switch"] = torch.logsumexp(torch.stack(mix), 0)
    refs["control-token"] = lp[grp % K]
    worst = 0.0
    for agg, ref in refs.items():
        cmd = [a.chorus, "score", "--pool", a.pool, "--aggregator", agg, "--progress", str(p), "--group", str(grp),
               "--prompt-length", str(L), "--tokens", a.tokens]
        o = json.loads(subprocess.check_output(cmd))
        lp_ref, h_ref = target_and_entropy(ref)
        d_ref = max(abs(u - v) for u, v in zip(o["reference"], lp_ref))
        d_h = max(abs(u - v) for u, v in zip(o["reference_entropy"], h_ref))
        d_t = max(abs(u - v) for i, n in enumerate(names) for u, v in zip(o["teachers"][n], target_and_entropy(lp[i])[0]))
        worst = max(worst, d_ref, d_h, d_t)
        print(f"{agg:14s} reference {d_ref:.2e}  entropy {d_h:.2e}  teachers {d_t:.2e}  weights {o['weights']}")
    print(f"max |difference| {worst:.2e} (tolerance {a.tolerance})")
    sys.exit(0 if worst <= a.tolerance else 1)


if __name__ == "__main__":
    main()
