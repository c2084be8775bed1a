#!/usr/bin/env python3
"""Writes the small arithmetic data set used by `make demo` (deterministic; stdlib only).

    python3 scripts/make_demo_data.py

schedules/demo/data/arith-train.jsonl   {"prompt": "Q: 12 + 7 =\\nA:", "completion": " 19"}
schedules/demo/data/arith-eval.jsonl    held-out problems, same form
schedules/demo/data/corpus.txt          the training text, for the demo tokenizer
schedules/demo/data/arith-prompts.jsonl the training problems as on-policy prompts:
                                        {"prompt": "Q: 12 + 7 =\\nA:", "answer": "19"}
schedules/demo/data/arith-test.jsonl    the held-out problems in that form (`chorus eval`)
"""
import json
import os
import random

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schedules", "demo", "data")


def problem(rng):
    op = rng.choice(["+", "-", "*"])
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    if op == "*":
        a, b = rng.randint(0, 12), rng.randint(0, 12)
    if op == "-" and b > a:
        a, b = b, a
    ans = {"+": a + b, "-": a - b, "*": a * b}[op]
    return {"prompt": f"Q: {a} {op} {b} =\nA:", "completion": f" {ans}"}


def main():
    os.makedirs(HERE, exist_ok=True)
    rng = random.Random(1234)
    seen, train, evals = set(), [], []
    while len(train) < 3000 or len(evals) < 200:
        p = problem(rng)
        if p["prompt"] in seen:
            continue
        seen.add(p["prompt"])
        (evals if len(evals) < 200 else train).append(p)
        if len(train) >= 3000 and len(evals) >= 200:
            break
    for name, rows in [("arith-train.jsonl", train[:3000]), ("arith-eval.jsonl", evals)]:
        with open(os.path.join(HERE, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    for name, rows in [("arith-prompts.jsonl", train[:3000]), ("arith-test.jsonl", evals)]:
        with open(os.path.join(HERE, name), "w") as f:
            for r in rows:
                f.write(json.dumps({"prompt": r["prompt"], "answer": r["completion"].strip()}) + "\n")
    with open(os.path.join(HERE, "corpus.txt"), "w") as f:
        for r in train[:3000]:
            f.write(r["prompt"] + r["completion"] + "\n")


if __name__ == "__main__":
    main()
