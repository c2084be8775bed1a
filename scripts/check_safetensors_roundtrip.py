#!/usr/bin/env python3
"""Checks that safetensors files written by Chorus read back bit-exactly in the Python library.

    swift build && M=Tests/ChorusModelTests/Fixtures/models/qwen2_untied_f32
    .build/debug/chorus convert --model $M --output /tmp/cv32 --force
    .build/debug/chorus convert --model $M --output /tmp/cv16 --dtype bf16 --force
    /tmp/venv/bin/python scripts/check_safetensors_roundtrip.py $M /tmp/cv32 /tmp/cv16
"""
import sys

import torch
from safetensors.torch import load_file

src, f32, bf16 = sys.argv[1:4]
ref = load_file(f"{src}/model.safetensors")
a = load_file(f"{f32}/model.safetensors")
b = load_file(f"{bf16}/model.safetensors")
assert set(ref) == set(a) == set(b), "tensor names differ"
for k in ref:
    assert a[k].dtype == torch.float32 and torch.equal(ref[k].float(), a[k]), f"f32 mismatch in {k}"
    assert b[k].dtype == torch.bfloat16, k
    assert torch.equal(ref[k].float().to(torch.bfloat16).view(torch.int16), b[k].view(torch.int16)), f"bf16 mismatch in {k}"
print(f"ok: {len(ref)} tensors bit-exact (f32) and equal to torch's bf16 rounding")
