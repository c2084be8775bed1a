// Placeholder: the byte-level BPE tokenizer lands with issue B.
