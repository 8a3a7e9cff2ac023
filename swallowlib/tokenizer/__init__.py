"""Stage 02: tokenizers — the Llama 2 base, a Japanese SentencePiece model, the Swallow-style merge, HF export and efficiency metrics."""
