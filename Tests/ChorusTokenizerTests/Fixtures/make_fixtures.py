#!/usr/bin/env python3
"""Generates the tokenizer fixtures for ChorusTokenizerTests with HF `tokenizers` (0.23.3).

Run from this directory with the venv's Python. Order:

  1. python make_fixtures.py
       writes train_corpus.txt, trains three small BPE tokenizers with HF `tokenizers`
       (qwen2.json, llama3.json, gpt2.json) and records golden.json: for every case text,
       HF's ids (add_special_tokens=True) and decode(ids) with and without skipping specials.
  2. swift build --product chorus   (in the package root)
  3. python make_fixtures.py --chorus ../../../.build/debug/chorus
       additionally runs the Swift trainer:
         chorus tokenizer train --input train_corpus.txt --vocab-size 700
                                --special-token '<|endoftext|>' --special-token '<|im_start|>'
                                --special-token '<|im_end|>' --output swift_trained.json --force
       then loads swift_trained.json in HF `tokenizers` and records HF's ids for the same case
       texts in swift_trained_golden.json. The Swift tests retrain from train_corpus.txt, check
       the file is byte-identical and that Swift's ids equal HF's.

Step 1 also writes bpe_reference.json, the independent reference for the Swift BPE trainer:
HF `BpeTrainer`'s merges for the Qwen2 layout Chorus trains (same normalizer, pre-tokenizer,
byte alphabet, special tokens, vocab size and min frequency), each corpus given as one text:
  "plain":   a printable-ASCII corpus without whitespace, where HF's id order (byte-level
             characters by code point) and Chorus's (bytes) agree, so the merges must be equal;
  "natural": train_corpus.txt (spaces, newlines, Unicode), where the two orders differ for
             whitespace and non-ASCII bytes, so ties may legitimately be broken differently;
             it also holds HF's pre-tokenized words with their counts, for the property test
             of the merge rule (each merge is the most frequent pair, ties documented).

Everything is deterministic (fixed seeds, no network).
"""
import json
import random
import subprocess
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

PROSE = [
    "The quick brown fox jumps over the lazy dog. It's what they'd said: we'll see, you're right, I've been there, I'm sure.",
    "SHE'S HERE. THEY'LL COME. WE'D KNOW. Don't panic; it isn't over until it's over.",
    "In 1969, 3 astronauts flew 384,400 km; the mission cost $25.4 billion (about 1/3 of 1% of GDP).",
    "Distillation transfers knowledge from several teachers to one student model, token by token.",
    "Call me at +1-555-0100 or email ops@example.com before 23:59 on 2024-12-31.",
]
CODE = [
    "def add(a, b):\n    return a + b\n\n\nif __name__ == \"__main__\":\n    print(add(2, 3))\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += x[i] * y[i];\n}\n",
    "func greet(_ name: String) -> String {\n    return \"Hello, \\(name)!\"\n}\n",
    "{\"ids\": [1, 2, 3], \"text\": \"a\\nb\", \"ok\": true}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;\r\n",
    "    if x:\r\n        y = [i**2 for i in range(10)]  # squares\r\n",
]
INTL = [
    "机器学习是人工智能的一个分支。我们用多个教师模型蒸馏学生模型。",
    "東京は日本の首都です。カタカナとひらがなも使います。",
    "한국어 문장도 포함됩니다. 안녕하세요!",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "مرحبا بالعالم، هذا نص عربي.",
    "हिन्दी में लिखा गया वाक्य, संयुक्ताक्षर सहित।",
    "Ελληνικά: Καλημέρα κόσμε. Ünïcödé façade naïve café résumé.",
]
EMOJI = [
    "Family: 👨‍👩‍👧‍👦, flags 🇺🇸🇯🇵, thumbs 👍🏽, heart ❤️, rocket 🚀!",
    "emoji in words: code🔥fast and 😀😃😄 in a row",
]


def training_corpus():
    rng = random.Random(1234)
    parts = []
    for _ in range(12):
        for group in (PROSE, CODE, INTL, EMOJI):
            parts.extend(group)
        parts.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 9))) for _ in range(12)))
        parts.append("\t".join(rng.choice(["alpha", "beta", "gamma", "  ", "delta  "]) for _ in range(10)))
    rng.shuffle(parts)
    return "\n".join(parts) + "\n"


def case_texts():
    fixed = [
        "",
        " ",
        "hello",
        "Hello world",
        " leading space",
        "trailing spaces   ",
        "tabs\tand\t\ttrailing tab\t",
        "multiple   spaces    between     words",
        "line1\nline2\n\nline4\n",
        "windows\r\nline\r\n\r\nends\r\n",
        "mixed \n \t \r\n  end",
        "   \n\n   ",
        "digits 1234567890 and 0.000001 and 3,141,592,653",
        "12345678901234567890123",
        "It's I'LL we'Ve they'RE 'd 's 't x'ſ y'ſt",
        "don't 'quoted' ''double'' '",
        "机器学习是人工智能的一个分支。",
        "東京タワー 🗼 と富士山 🗻",
        "👨‍👩‍👧‍👦 family 👩🏽‍💻 coder 🏳️‍🌈 flag",
        "cafe\u0301 vs café, A\u030a vs Å, e\u0301\u0302 stacked",
        "\u1100\u1161\u11a8 jamo",
        "nbsp\u00a0here, ideographic\u3000space, nel\u0085x, ls\u2028ps\u2029end",
        "vt\x0bff\x0cfs\x1cus\x1f",
        "<|endoftext|>",
        "Hi<|endoftext|>there",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>",
        "text <|im_start|> spaced <|im_end|> specials",
        "<|begin_of_text|>already there",
        "a <mask> b<mask>c  <mask>",
        "xyzzy is a word but notxyzzy and xyzzyfoo are not; xyzzy.",
        "fake <|endoftext special <|im_end",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛 and ①②③ and Ⅻ",
        "Ǆ ǅ ǆ titlecase, ß ẞ, İ ı",
        "\u0300leading combining",
        "@@@ ### $$$ %%% ^^^ &&& *** ((( )))\n!!!\n",
        "   ...   ---   ",
        "(\U00018D9C've: a Unicode 17 letter is unassigned to HF's Oniguruma (Unicode 16)",
        "Unicode 16: \U0001E5D0\U0001E5D1 \U0001E5F1\U0001E5F2",
        "x ]] ]] y ]]\t ]]z",
        "x" * 300,
        " ".join(["word"] * 50),
    ]
    fixed += PROSE + CODE + INTL + EMOJI
    # Random strings over a palette of character classes (seeded).
    rng = random.Random(42)
    palette = list("abcXYZ019 '\t\n\r.,!?-_()[]{}\"") + [
        "  ", "\r\n", "'s", "'LL", "é", "e\u0301", "ß", "中", "文", "日本", "한", "ü", "Ω", "٣", "¾",
        "😀", "👍🏽", "\u200d", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b", "ſ", "<|endoftext|>",
        "<|im_start|>", "<mask>", "xyzzy", "١٢٣", "Ⅷ", "\U0001F1FA\U0001F1F8", "\u0301",
    ]
    for _ in range(120):
        n = rng.randint(1, 40)
        fixed.append("".join(rng.choice(palette) for _ in range(n)))
    return fixed


def record(tok, texts):
    rows = []
    for t in texts:
        ids = tok.encode(t).ids
        rows.append({
            "text": t,
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return rows


def train(tok, corpus, vocab_size, special):
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus.splitlines(keepends=True), trainer)


def make_qwen2(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    train(tok, corpus, 1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return tok


def make_llama3(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    train(tok, corpus, 1000, ["<|begin_of_text|>", "<|end_of_text|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    # Llama-3 files use the legacy "a b" merges format and ignore_merges=true.
    doc = json.loads(tok.to_str())
    doc["model"]["merges"] = [f"{a} {b}" for a, b in doc["model"]["merges"]]
    doc["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))


def make_gpt2(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    train(tok, corpus, 900, ["<|endoftext|>"])
    # Added tokens exercising lstrip / rstrip / single_word / normalized.
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False)])
    tok.add_tokens([AddedToken("xyzzy", single_word=True, normalized=True),
                    AddedToken(" ]]", rstrip=True, normalized=False)])
    return tok


def plain_corpus():
    rng = random.Random(99)
    syll = ["ka", "ri", "to", "ne", "su", "mo", "la", "pe", "di", "zu", "qua", "xo"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(60)]
    seps = [",", ";", ".", "-", "+", "/", ":", "(", ")", "!", "?", "="]
    return "".join(rng.choice(words) + rng.choice(seps) for _ in range(2500))


def bpe_reference(corpus, vocab_size, special, min_frequency, with_words):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([corpus], trainer)
    doc = json.loads(tok.to_str())
    out = {"vocab_size": vocab_size, "min_frequency": min_frequency, "special_tokens": special,
           "hf_vocab_size": tok.get_vocab_size(), "merges": [[a, b] for a, b in doc["model"]["merges"]]}
    if with_words:
        counts = {}
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(corpus)):
            counts[piece] = counts.get(piece, 0) + 1
        out["words"] = sorted([w, c] for w, c in counts.items())
    else:
        out["corpus"] = corpus
    return out


def save(tok, name):
    # Compact JSON keeps the fixtures small; Chorus reads either layout.
    with open(name, "w", encoding="utf-8") as f:
        f.write(tok.to_str(pretty=False))


def main():
    corpus = training_corpus()
    with open("train_corpus.txt", "w", encoding="utf-8", newline="") as f:
        f.write(corpus)
    texts = case_texts()
    golden = {}
    for name, make in (("qwen2", make_qwen2), ("llama3", make_llama3), ("gpt2", make_gpt2)):
        tok = make(corpus)
        save(tok, f"{name}.json")
        tok = Tokenizer.from_file(f"{name}.json")  # record with exactly what is committed
        golden[name] = record(tok, texts)
    with open("golden.json", "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
    ref = {"plain": bpe_reference(plain_corpus(), 420, ["<|endoftext|>"], 2, False),
           "natural": bpe_reference(corpus, 700, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 2, True)}
    with open("bpe_reference.json", "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))

    if "--chorus" in sys.argv:
        chorus = sys.argv[sys.argv.index("--chorus") + 1]
        subprocess.run([chorus, "tokenizer", "train", "--input", "train_corpus.txt", "--vocab-size", "700",
                        "--special-token", "<|endoftext|>", "--special-token", "<|im_start|>",
                        "--special-token", "<|im_end|>", "--output", "swift_trained.json", "--force"], check=True)
        tok = Tokenizer.from_file("swift_trained.json")
        with open("swift_trained_golden.json", "w", encoding="utf-8") as f:
            json.dump(record(tok, texts), f, ensure_ascii=False, separators=(",", ":"))
    print("ok", {k: len(v) for k, v in golden.items()})


if __name__ == "__main__":
    main()
