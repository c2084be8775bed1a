#!/usr/bin/env python3
"""Generates the gradient and optimizer parity fixtures for ChorusTrainingTests.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers safetensors
    /tmp/venv/bin/python Tests/ChorusTrainingTests/Fixtures/make_fixtures.py

For each tiny random model (llama untied, qwen2 tied with q/k/v bias, qwen3 untied with q/k
norm and explicit head_dim; all with GQA; each family again at the production head_dim 64, and
qwen3 at head_dim 128, where the SIMD branches of the RoPE and attention kernels run) it writes `models/<name>/` (HF directory, float32) and
`models/<name>/grads.safetensors` with:
  seq_0, seq_1          the two training sequences (different lengths, as float)
  w_0, w_1              per-position weights w_t for predicting token t+1 (last one 0)
  loss                  L = -sum_t w_t log p(x_{t+1} | x_<=t) over both sequences
  grad.<param name>     dL/dparam for every parameter (HF names)
and `models/<name>/adamw.safetensors` for 10 AdamW steps on the mean cross-entropy of the two
sequences: lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices only, global
grad-norm clip 1.0, linear warm-up 3 steps then cosine to 10% over the 10 steps:
  losses (10), grad_norms (10, before clipping), lrs (10), final.<param name>.
"""
import math
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
V = 64

MODELS = [
    ("llama_untied", LlamaForCausalLM, LlamaConfig, dict(tie_word_embeddings=False)),
    ("qwen2_tied_bias", Qwen2ForCausalLM, Qwen2Config, dict(tie_word_embeddings=True)),
    ("qwen3_untied_qknorm", Qwen3ForCausalLM, Qwen3Config, dict(tie_word_embeddings=False, head_dim=12)),
    # Production head sizes (appended, so the models above keep their seeds and bytes).
    ("llama_hd64", LlamaForCausalLM, LlamaConfig,
     dict(tie_word_embeddings=False, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
          num_hidden_layers=1, intermediate_size=32)),
    ("qwen2_hd64_tied_bias", Qwen2ForCausalLM, Qwen2Config,
     dict(tie_word_embeddings=True, hidden_size=128, num_attention_heads=2, num_key_value_heads=1,
          num_hidden_layers=1, intermediate_size=32)),
    ("qwen3_hd64_qknorm", Qwen3ForCausalLM, Qwen3Config,
     dict(tie_word_embeddings=False, hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
          head_dim=64, num_hidden_layers=2, intermediate_size=32)),
    ("qwen3_hd128_qknorm", Qwen3ForCausalLM, Qwen3Config,
     dict(tie_word_embeddings=True, hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
          head_dim=128, num_hidden_layers=1, intermediate_size=32)),
]

SEQS = [[3, 17, 5, 60, 22, 22, 9, 41, 0, 63, 7, 12], [8, 1, 44, 30, 30, 2, 19]]

LR, BETAS, EPS, WD, CLIP, WARMUP, STEPS, MIN_RATIO = 1e-2, (0.9, 0.95), 1e-8, 0.1, 1.0, 3, 10, 0.1


def lr_lambda(step):
    if step < WARMUP:
        return (step + 1) / WARMUP
    prog = (step - WARMUP) / max(1, STEPS - WARMUP)
    return MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * prog))


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def seq_logprobs(model, seq):
    ids = torch.tensor([seq])
    logits = model(input_ids=ids).logits[0]
    lp = torch.log_softmax(logits.float(), dim=-1)
    return lp[:-1].gather(1, ids[0, 1:, None])[:, 0]   # (T-1,)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    for i, (name, cls, cfg_cls, extra) in enumerate(MODELS):
        kw = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6, rope_theta=10000.0)
        kw.update(extra)
        model = cls(cfg_cls(**kw))
        randomize(model, 2000 + i)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        gen = os.path.join(d, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)
        model = cls.from_pretrained(d, dtype=torch.float32)
        model.train()   # dropout is 0 in these configs

        # 1) Gradients of a token-weighted loss with positive, negative and zero weights.
        g = torch.Generator().manual_seed(77 + i)
        out = {}
        loss = 0
        for j, seq in enumerate(SEQS):
            w = torch.randn(len(seq) - 1, generator=g)
            w[1] = 0.0
            loss = loss - (w * seq_logprobs(model, seq)).sum()
            out[f"seq_{j}"] = torch.tensor(seq, dtype=torch.float32)
            out[f"w_{j}"] = torch.cat([w, torch.zeros(1)])
        model.zero_grad()
        loss.backward()
        out["loss"] = loss.detach().reshape(1)
        for pname, p in model.named_parameters():
            out["grad." + pname] = p.grad.detach().clone().contiguous()
        save_file(out, os.path.join(d, "grads.safetensors"))

        # 2) Ten AdamW steps on the mean cross-entropy.
        model.zero_grad()
        decay = [p for n_, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n_, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=LR, betas=BETAS, eps=EPS)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        ntok = sum(len(s) - 1 for s in SEQS)
        losses, norms, lrs = [], [], []
        for step in range(STEPS):
            opt.zero_grad()
            l = -sum(seq_logprobs(model, s).sum() for s in SEQS) / ntok
            l.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            losses.append(l.item()); norms.append(norm.item()); lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        res = {"losses": torch.tensor(losses), "grad_norms": torch.tensor(norms), "lrs": torch.tensor(lrs)}
        for pname, p in model.named_parameters():
            res["final." + pname] = p.detach().clone().contiguous()
        save_file(res, os.path.join(d, "adamw.safetensors"))
        print(name, "loss", loss.item(), "adamw losses", [round(x, 4) for x in losses])


if __name__ == "__main__":
    main()
