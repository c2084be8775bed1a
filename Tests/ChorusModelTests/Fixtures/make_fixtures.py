#!/usr/bin/env python3
"""Generates the model-parity fixtures for ChorusModelTests.

Run from anywhere with a venv holding torch, transformers and safetensors (from PyPI):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers safetensors
    /tmp/venv/bin/python Tests/ChorusModelTests/Fixtures/make_fixtures.py

For each tiny random model (llama / qwen2 / qwen3; GQA; tied and untied heads; Qwen2 q/k/v
bias; Qwen3 q/k norm with an explicit head_dim; f32, bf16, f16 and sharded files; one llama at
head_dim 64 that also scores a 300-token sequence, past the 256 positions of the RoPE table a
model precomputes) it writes a
Hugging Face directory `models/<name>/` and `models/<name>/expected.safetensors` holding, for
each test sequence i, `tokens_i` (as float) and `logprobs_i`: transformers' log_softmax of the
logits at every position, (T, V), computed in float32 from the weights as stored.
Weights are drawn wider than HF's default init so the distributions are far from uniform.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
V = 96


def common(**kw):
    base = dict(vocab_size=V, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rms_norm_eps=1e-6, rope_theta=10000.0)
    base.update(kw)
    return base


MODELS = [
    # name, family, config kwargs, file dtype, sharded, rewrite rope as top-level rope_theta
    ("llama_untied_f32", "llama", common(tie_word_embeddings=False), torch.float32, False, False),
    ("llama_tied_bias_bf16", "llama", common(tie_word_embeddings=True, attention_bias=True,
                                              num_key_value_heads=4, rope_theta=500000.0), torch.bfloat16, False, True),
    ("qwen2_untied_f32", "qwen2", common(tie_word_embeddings=False, num_key_value_heads=1), torch.float32, False, False),
    ("qwen2_tied_f16", "qwen2", common(tie_word_embeddings=True), torch.float16, False, True),
    ("qwen3_tied_f32", "qwen3", common(tie_word_embeddings=True, head_dim=16), torch.float32, False, False),
    ("qwen3_untied_bf16_sharded", "qwen3", common(tie_word_embeddings=False, head_dim=8, num_hidden_layers=3,
                                                   rope_theta=1000000.0), torch.bfloat16, True, False),
    # Appended, so the models above keep their seeds and bytes.
    ("llama_hd64_long_f32", "llama", common(tie_word_embeddings=False, hidden_size=128, intermediate_size=32,
                                            num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1,
                                            max_position_embeddings=512), torch.float32, False, False),
]

SEQUENCES = [
    [5, 17, 3, 88, 42, 42, 1, 0, 95, 60, 61, 62, 7, 7, 7, 30],
    list(range(1, 71, 1)),   # 70 positions: crosses the 64-row attention block
    [11],
]

# Extra sequences for some models: 300 positions, beyond the precomputed RoPE table (256).
EXTRA_SEQUENCES = {
    "llama_hd64_long_f32": [[(7 * i * i + 3 * i + 1) % V for i in range(300)]],
}


def build(family, kw):
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**kw))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**kw))
    return Qwen3ForCausalLM(Qwen3Config(**kw))


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(1.0 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5 * 1.5)


def main():
    torch.set_num_threads(1)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    for i, (name, family, kw, dtype, sharded, old_rope) in enumerate(MODELS):
        d = os.path.join(OUT, name)
        model = build(family, kw)
        randomize(model, 1000 + i)
        model = model.to(dtype)
        model.save_pretrained(d, safe_serialization=True,
                              max_shard_size="20KB" if sharded else "50GB")
        cfg_path = os.path.join(d, "config.json")
        cfg = json.load(open(cfg_path))
        if old_rope:
            # Older transformers wrote a top-level rope_theta; Chorus must accept both.
            theta = (cfg.pop("rope_parameters", None) or {}).get("rope_theta", kw["rope_theta"])
            cfg["rope_theta"] = theta
            json.dump(cfg, open(cfg_path, "w"), indent=2)
        gen = os.path.join(d, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)
        # Reference: reload as float32 from the stored (possibly rounded) weights.
        ref = type(model).from_pretrained(d, dtype=torch.float32)
        ref.eval()
        tensors = {}
        with torch.no_grad():
            for j, seq in enumerate(SEQUENCES + EXTRA_SEQUENCES.get(name, [])):
                ids = torch.tensor([seq])
                logits = ref(input_ids=ids).logits[0].float()
                tensors[f"tokens_{j}"] = torch.tensor(seq, dtype=torch.float32)
                tensors[f"logprobs_{j}"] = torch.log_softmax(logits, dim=-1).contiguous()
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        print(name, sorted(os.listdir(d)))

    # Reference safetensors files written by the Python library, for the reader/writer tests.
    st = os.path.join(OUT, "st")
    os.makedirs(st, exist_ok=True)
    vals = torch.tensor([0.0, -0.0, 1.0, -1.5, 3.1415927, 1e-30, 65504.0, -2.0 ** -20, 1.0 / 3.0,
                         float("inf"), 123456.789, -7.25], dtype=torch.float32)
    save_file({"a": vals.reshape(3, 4), "b": vals[:5].clone()}, os.path.join(st, "f32.safetensors"))
    save_file({"a": vals.reshape(3, 4).to(torch.bfloat16), "b": vals[:5].to(torch.bfloat16)},
              os.path.join(st, "bf16.safetensors"))
    save_file({"a": vals.reshape(3, 4).to(torch.float16)}, os.path.join(st, "f16.safetensors"))
    # The float32 values after rounding, to check conversions exactly.
    save_file({"bf16_as_f32": vals.to(torch.bfloat16).float(), "f16_as_f32": vals.to(torch.float16).float(),
               "values": vals}, os.path.join(st, "rounded.safetensors"))


if __name__ == "__main__":
    main()
