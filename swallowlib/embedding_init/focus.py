"""FOCUS-style initialisation weights: a small auxiliary embedding space trained here, and sparsemax over similarities.

FOCUS (Dobler & de Melo, 2023) initialises a new token as a convex combination of the source-model embeddings of the
*overlapping* tokens (tokens in both vocabularies), weighted by how similar the new token is to each of them in an
auxiliary static embedding space trained on target-language text tokenized with the new tokenizer. FOCUS trains
fastText for that space; no fastText is in our stack, so the space here is the classic count-based equivalent:
positive PMI of windowed co-occurrence counts (1/distance weighting, context-distribution smoothing 0.75) reduced by a
truncated SVD (``scipy.sparse.linalg.svds``). Weights are ``sparsemax(cos / temperature)`` over the overlapping tokens,
so most are exactly zero.

For us every base piece is "overlapping" (the expanded vocabulary extends the base); only those seen at least
``min_count`` times in the Japanese text, and not control/unknown pieces, take part.

    python -m swallowlib.embedding_init.focus EXPANDED.model JA_LINES.txt BASE_SIZE   # print a few neighbourhoods
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sps
import sentencepiece as spm
from scipy.sparse.linalg import svds

from swallowlib.tokenizer.merge import CONTROL, UNKNOWN, load_proto

log = logging.getLogger(__name__)


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``z`` onto the probability simplex (Martins & Astudillo, 2016); sparse, sums to 1.

    Hand-written: ten lines, and no maintained NumPy implementation is in the stack.

    >>> sparsemax(np.array([2.0, 1.0, -1.0])).tolist()
    [1.0, 0.0, 0.0]
    >>> sparsemax(np.array([0.9, 0.2, 0.0])).round(2).tolist()
    [0.85, 0.15, 0.0]
    """
    zs = np.sort(z)[::-1]
    cums = np.cumsum(zs)
    k = np.arange(1, len(z) + 1)
    support = 1 + k * zs > cums
    kz = k[support][-1]
    tau = (cums[kz - 1] - 1) / kz
    return np.maximum(z - tau, 0.0)


def aux_embeddings(
    docs: Sequence[Sequence[int]], vocab_size: int, *, dim: int = 64, window: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors [vocab_size, dim], counts [vocab_size])``: PPMI-SVD token vectors (unit rows) from id sequences."""
    ids = [np.asarray(d, dtype=np.int64) for d in docs if len(d) > 1]
    counts = np.bincount(np.concatenate(ids) if ids else np.zeros(0, np.int64), minlength=vocab_size)
    rows, cols, vals = [], [], []
    for d in ids:
        for k in range(1, window + 1):
            if len(d) > k:
                rows += [d[:-k], d[k:]]
                cols += [d[k:], d[:-k]]
                vals += [np.full(len(d) - k, 1.0 / k)] * 2
    if not rows:
        raise ValueError("no co-occurrences: the text for the auxiliary embeddings is empty")
    c = sps.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(vocab_size, vocab_size)
    ).tocsr()
    c.sum_duplicates()
    total = c.sum()
    row = np.asarray(c.sum(1)).ravel()
    ctx = np.asarray(c.sum(0)).ravel() ** 0.75
    ctx = ctx / ctx.sum()
    coo = c.tocoo()
    pmi = np.log(coo.data / total) - np.log(row[coo.row] / total) - np.log(ctx[coo.col])
    keep = pmi > 0
    ppmi = sps.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=c.shape)
    k = min(dim, min(ppmi.shape) - 1)
    u, s, _ = svds(ppmi.astype(np.float64), k=k, random_state=seed)
    vec = (u * np.sqrt(s)).astype(np.float32)
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = np.divide(vec, norm, out=np.zeros_like(vec), where=norm > 0)
    return vec, counts


def focus_weights(
    expanded_tokenizer: Path | str,
    lines: Sequence[str],
    old_size: int,
    *,
    dim: int = 64,
    window: int = 4,
    min_count: int = 3,
    temperature: float = 0.1,
    seed: int = 0,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per new id seen ``min_count`` times in ``lines``: (overlapping base ids, sparsemax weights summing to 1)."""
    proto = load_proto(expanded_tokenizer)
    sp = spm.SentencePieceProcessor(model_file=str(expanded_tokenizer))
    vec, counts = aux_embeddings(sp.encode(list(lines)), len(proto.pieces), dim=dim, window=window, seed=seed)
    special = {i for i, p in enumerate(proto.pieces) if p.type in (CONTROL, UNKNOWN)}
    overlap = np.array([i for i in range(old_size) if counts[i] >= min_count and i not in special], dtype=np.int64)
    if len(overlap) == 0:
        raise ValueError("no base token occurs in the Japanese text: FOCUS has nothing to combine")
    out = {}
    for i in range(old_size, len(proto.pieces)):
        if counts[i] < min_count or i in special:
            continue
        sims = vec[overlap] @ vec[i]
        w = sparsemax(sims.astype(np.float64) / temperature)
        nz = w > 0
        out[i] = (overlap[nz], w[nz])
    log.info("focus: %d of %d new tokens have weights (%d overlapping)", len(out), len(proto.pieces) - old_size,
             len(overlap))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    model, lines, old = Path(argv[0]), Path(argv[1]).read_text(encoding="utf-8").splitlines(), int(argv[2])
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for i, (ids, w) in list(focus_weights(model, lines, old).items())[:20]:
        top = sorted(zip(w, ids, strict=True), reverse=True)[:5]
        print(sp.id_to_piece(i), "<-", ", ".join(f"{sp.id_to_piece(int(j))}:{x:.2f}" for x, j in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
