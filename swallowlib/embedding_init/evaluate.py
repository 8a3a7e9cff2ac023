"""Bits per character of a causal LM on held-out documents: the tokenizer-independent way to compare vocabularies.

Each document is encoded as ``BOS text EOS`` and cut into windows of ``seq_len`` tokens that overlap by one token, so
every token after the BOS is predicted exactly once, with up to ``seq_len - 1`` tokens of context. The total negative
log-likelihood (in bits) is divided by the number of characters plus one per document (for the EOS): a tokenizer that
needs more tokens for the same text is not rewarded for it. (Stage 05 computes bits per *byte* through lm-eval; this
is the quick in-process measure stage 03 needs before and right after resizing.)

    python -m swallowlib.embedding_init.evaluate MODEL_DIR TOKENIZER_DIR TEXT_FILE   # one document per line
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F


def _windows(ids: list[int], seq_len: int) -> list[list[int]]:
    """Windows of at most ``seq_len`` tokens overlapping by one: every token but the first is a target once."""
    step = seq_len - 1
    return [ids[s : s + seq_len] for s in range(0, max(len(ids) - 1, 1), step)]


@torch.inference_mode()
def bits_per_char(
    model, tokenizer, texts: Sequence[str], *, seq_len: int = 256, batch_size: int = 8, device: str | None = None
) -> dict:
    """``{"bpc", "bits", "chars", "tokens", "docs"}`` of ``model`` on ``texts`` (``tokenizer``: an HF tokenizer).

    On a CUDA device the forward runs under bf16 autocast over the model's own (fp32) weights; the log-probabilities
    are taken in fp32.

    >>> bits_per_char(model, tok, ["こんにちは"])["bpc"]  # doctest: +SKIP
    4.12
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    texts = [t for t in texts if t]
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    windows: list[list[int]] = []
    tokens = 0
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        full = [bos, *ids, eos]
        tokens += len(full) - 1
        windows.extend(_windows(full, seq_len))
    windows.sort(key=len)  # similar lengths together: less padding
    bits = 0.0
    for s in range(0, len(windows), batch_size):
        batch = windows[s : s + batch_size]
        n = max(map(len, batch))
        x = torch.full((len(batch), n), 0, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for r, w in enumerate(batch):
            x[r, : len(w)] = torch.tensor(w)
            mask[r, : len(w)] = 1
        x, mask = x.to(device), mask.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
            logits = model(input_ids=x, attention_mask=mask).logits.float()
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="none")
        bits += float((nll * mask[:, 1:].reshape(-1)).sum()) / math.log(2)
    model.train(was_training)
    chars = sum(len(t) + 1 for t in texts)
    return {"bpc": bits / chars if chars else float("nan"), "bits": bits, "chars": chars, "tokens": tokens,
            "docs": len(texts)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    from transformers import AutoModelForCausalLM

    from swallowlib.tokenizer.export import load_hf

    model = AutoModelForCausalLM.from_pretrained(argv[0])
    texts = Path(argv[2]).read_text(encoding="utf-8").splitlines()
    print(bits_per_char(model, load_hf(Path(argv[1])), texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
