"""Stage 02: tokenizers.

The Llama 2 base rebuilt offline, Japanese SentencePiece training, the Swallow-style merge, exact HF export and
tokenization-efficiency metrics. The stage notebook (02_tokenizer) and its Make target come in a later change.
"""
