"""Resize a model to the expanded vocabulary and initialise the new rows (input embeddings *and* the untied LM head).

Methods (``METHODS``):

* ``mean-of-pieces`` (Swallow): a new token's row is the mean of the rows of the pieces the *base* tokenizer splits the
  token's surface string into (often byte-fallback pieces, for kanji the base lacks);
* ``hf-mean``: transformers' ``resize_token_embeddings(..., mean_resizing=True)`` - rows drawn from a normal with the
  mean and covariance of the old rows;
* ``random``: the model's own initializer (``normal(0, initializer_range)``), what ``mean_resizing=False`` gives;
* ``focus`` (FOCUS, Dobler & de Melo 2023, adapted): a weighted combination of the old rows of *overlapping* tokens
  (tokens of the base vocabulary that also occur in Japanese text), weights = sparsemax of the cosine similarities
  between the new token and those tokens in a small auxiliary embedding space trained here on the Japanese training
  text tokenized with the expanded tokenizer (see :mod:`swallowlib.embedding_init.focus`).

Every method leaves the old rows bit-for-bit as they were, so on text the base tokenizer handles identically the
logits over the old ids are unchanged (tested). ``CONTROL`` padding pieces (never produced by the tokenizer) get the
mean of all old rows under every method except ``random``/``hf-mean``, which treat them like any new row.

    python -m swallowlib.embedding_init.methods MODEL_DIR BASE.model EXPANDED.model METHOD OUT_DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from swallowlib.tokenizer.merge import CONTROL, _analysis_proto, _processor, load_proto

log = logging.getLogger(__name__)

METHODS = ("mean-of-pieces", "hf-mean", "random", "focus")


class InitError(ValueError):
    """The model, tokenizers or method do not fit together; the message is one line."""


def check_compatible(model, base_tokenizer: Path | str, expanded_tokenizer: Path | str) -> tuple[int, int]:
    """``(old_size, new_size)`` after checking that the model and the two SentencePiece models fit together."""
    old = model.get_input_embeddings().num_embeddings
    base = load_proto(base_tokenizer)
    exp = load_proto(expanded_tokenizer)
    if len(base.pieces) != old:
        raise InitError(
            f"{base_tokenizer}: the base tokenizer has {len(base.pieces)} pieces but the model's vocabulary is {old}"
        )
    if len(exp.pieces) < old:
        raise InitError(
            f"{expanded_tokenizer}: {len(exp.pieces)} pieces is smaller than the model's vocabulary ({old}); "
            "resizing may only add rows"
        )
    for i, (a, b) in enumerate(zip(base.pieces, exp.pieces, strict=False)):
        if a.piece != b.piece:
            raise InitError(
                f"{expanded_tokenizer}: piece {i} is {b.piece!r} but the base has {a.piece!r}; "
                "the expanded tokenizer must extend the base"
            )
    if model.get_output_embeddings() is not None and model.config.tie_word_embeddings:
        raise InitError("the model ties input and output embeddings; Swallow's models (and ours) are untied")
    return old, len(exp.pieces)


def base_split(base_tokenizer: Path | str, expanded_tokenizer: Path | str, old_size: int) -> dict[int, list[int]]:
    """For every new NORMAL piece id: the base ids its surface string is split into (no dummy prefix, as is).

    >>> base_split("base.model", "expanded.model", 8000)[8000]  # doctest: +SKIP
    [3, 232, 150, 168]   # "▁" + the three UTF-8 bytes of a kanji the base lacks
    """
    sp = _processor(_analysis_proto(load_proto(base_tokenizer)))
    exp = load_proto(expanded_tokenizer)
    new = [(i, p.piece) for i, p in enumerate(exp.pieces) if i >= old_size and p.type != CONTROL]
    ids = sp.encode([piece for _, piece in new]) if new else []
    return {i: x for (i, _), x in zip(new, ids, strict=True)}


def _rows(model) -> list[torch.Tensor]:
    """The weight matrices whose rows are per-token: input embeddings and the (untied) output layer."""
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not mats[0]:
        mats.append(out.weight)
    return mats


@torch.no_grad()
def resize_and_init(
    model,
    base_tokenizer: Path | str,
    expanded_tokenizer: Path | str,
    method: str,
    *,
    seed: int = 0,
    focus_weights: Callable[[int, int], dict[int, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> dict:
    """Resize ``model`` in place to the expanded vocabulary and initialise the new rows with ``method``.

    ``focus_weights(old_size, new_size)`` returns, per new id, ``(overlap ids, weights)`` (see focus.py); required for
    ``focus``. Returns a small record (sizes, method, how many rows fell back and why).
    """
    if method not in METHODS:
        raise InitError(f"unknown init method {method!r}; expected one of {', '.join(METHODS)}")
    if method == "focus" and focus_weights is None:
        raise InitError("method 'focus' needs focus_weights (an auxiliary embedding space)")
    old, new = check_compatible(model, base_tokenizer, expanded_tokenizer)
    before = [m[:old].clone() for m in _rows(model)]
    torch.manual_seed(seed)
    model.resize_token_embeddings(new, mean_resizing=method == "hf-mean")
    info = {"method": method, "old_size": old, "new_size": new, "seed": seed, "fallback_rows": 0}
    if method in ("mean-of-pieces", "focus"):
        splits = base_split(base_tokenizer, expanded_tokenizer, old)
        weights = focus_weights(old, new) if method == "focus" else {}
        for mat, old_rows in zip(_rows(model), before, strict=True):
            mean_all = old_rows.mean(0)
            for i in range(old, new):
                if i in weights:
                    ids, w = weights[i]
                    mat[i] = (torch.as_tensor(w, dtype=mat.dtype)[:, None] * old_rows[torch.as_tensor(ids)]).sum(0)
                elif method == "focus" and i in splits:
                    # FOCUS gives tokens without an auxiliary vector (never seen in the text) a random row: the one
                    # resize_token_embeddings drew, so leave it.
                    continue
                elif i in splits:
                    mat[i] = old_rows[splits[i]].mean(0)
                else:  # CONTROL padding, never produced
                    mat[i] = mean_all
        if method == "focus":
            info["fallback_rows"] = sum(1 for i in splits if i not in weights)
    for mat, old_rows in zip(_rows(model), before, strict=True):
        if not torch.equal(mat[:old], old_rows):  # the invariant every method relies on
            raise AssertionError("resizing changed old embedding rows")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="HF model directory (safetensors)")
    ap.add_argument("base_tokenizer", type=Path)
    ap.add_argument("expanded_tokenizer", type=Path)
    ap.add_argument("method", choices=[m for m in METHODS if m != "focus"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(args.model)
    print(resize_and_init(model, args.base_tokenizer, args.expanded_tokenizer, args.method, seed=args.seed))
    model.save_pretrained(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
