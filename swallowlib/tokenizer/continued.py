"""Reachable-only vocabulary expansion: continue the base model's BPE on Japanese text (beyond the paper).

Swallow's merge (:mod:`swallowlib.tokenizer.merge`) appends the pieces of a Japanese tokenizer trained on its own:
those pieces were chosen for *that* tokenizer's segmentation, so some duplicate what the base already does, some are
built from intermediate pieces the base never produces, and, because the Japanese model is NFKC-normalised while the
merged model keeps the base's normaliser, some never match raw text (full-width punctuation, for instance). This
module instead learns the new pieces *on top of the base's own segmentation*, greedily, each one chosen for the
number of training tokens it saves:

1. Encode every Japanese training line with the base model (byte fallback off, so unknown characters stay
   characters). Cut the piece sequence into runs of Japanese-script pieces (an optional leading ``▁`` piece, then
   pieces made only of Japanese characters; see :func:`merge.is_japanese_char`). Digits never join a run, as
   Llama 2's ``split_digits`` demands. Identical runs are counted once with their frequency.
2. Candidates are (a) a character the base lacks — adding it saves ``bytes(c) - 1`` byte-fallback tokens per
   occurrence — and (b) an adjacent pair of in-vocabulary symbols — merging saves one token per occurrence. The best
   candidate (ties broken by the string, so the result is deterministic) is added; pair counts are updated
   incrementally where the merged pair occurs (the classic BPE trainer bookkeeping) and a lazy max-heap holds the
   gains, which only fall except for pairs created by a merge or unlocked by a new character, which are pushed anew.
3. The pieces are appended to the base ``ModelProto`` in the order learned, with merge.py's scores (strictly below
   every base piece, decreasing), so SentencePiece applies them in exactly the learned order after every base merge.

Why hand-written: ``sentencepiece`` and ``tokenizers`` only train from scratch; neither continues an existing BPE
model's merges. Every learned piece is a merge of two symbols the base (or an earlier new piece) produces in real
text, so it is reachable by construction; :func:`merge.classify_reachability` checks it exactly anyway and the
count is reported. Every piece holds a Japanese character, so text without one tokenizes exactly as before (the
argument in merge.py's docstring).

``forced_chars`` (the kana + jōyō coverage set) are added first and count against the budget, so the result can be
compared with the naive merge + coverage at the same number of added pieces.

Run::

    python -m swallowlib.tokenizer.continued BASE.model JA_LINES.txt OUT.model N_PIECES
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from swallowlib.tokenizer.merge import (
    BYTE,
    NORMAL,
    USER_DEFINED,
    WS,
    _new_scores,
    _processor,
    classify_reachability,
    is_japanese_char,
    load_proto,
    merge_models,
)

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1 << 20)
def _is_ja_atom(piece: str) -> bool:
    """A piece that may sit inside a Japanese run: Japanese characters only (no digits), optionally after ``▁``."""
    body = piece[1:] if piece.startswith(WS) else piece
    return bool(body) and all(is_japanese_char(c) and not c.isdigit() for c in body)


def japanese_runs(base_model: Path | str | bytes, lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Runs of Japanese pieces in the base model's segmentation of ``lines``, with their frequencies.

    Unknown characters (the base has no piece, so SentencePiece would fall back to bytes) appear as themselves.

    >>> japanese_runs(model, ["日本語 is ok"])  # doctest: +SKIP
    Counter({('▁', '日', '本', '語'): 1})
    """
    proto = load_proto(base_model)
    sp = _processor(proto)
    byte_ids = {i for i, p in enumerate(proto.pieces) if p.type == BYTE}
    unk_id = sp.unk_id()
    runs: Counter[tuple[str, ...]] = Counter()
    run: list[str] = []

    def close() -> None:
        if any(s != WS for s in run):  # a bare "▁" is kept only as the head of a Japanese run
            runs[tuple(run)] += 1
        run.clear()

    lines = [ln for ln in lines if ln.strip()]
    for start in range(0, len(lines), 2000):
        for enc in sp.encode(lines[start : start + 2000], return_type="proto"):
            for p in enc.pieces:
                if p.id in byte_ids:
                    # A character without a piece becomes its UTF-8 bytes; the last byte piece carries the surface.
                    if not p.surface:
                        continue
                    syms = [WS if c == " " else c for c in p.surface]
                elif p.id == unk_id:
                    syms = [WS if c == " " else c for c in p.surface]
                else:
                    syms = [p.piece]
                for sym in syms:
                    if sym == WS or (sym.startswith(WS) and _is_ja_atom(sym)):
                        close()
                        run.append(sym)
                    elif _is_ja_atom(sym):
                        run.append(sym)
                    else:
                        close()
            close()
    return runs


@dataclass
class ContinuedReport:
    """What :func:`learn_pieces` / :func:`extend_model` did."""

    base_size: int
    requested: int
    added: int
    added_chars: int
    added_merges: int
    forced_chars: int
    train_runs: int
    train_tokens_before: int
    train_tokens_after: int
    unreachable: int = 0
    padding: int = 0
    final_size: int = 0
    pieces: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("pieces")
        return d


def _cost(sym: str, known: set[str]) -> int:
    """Tokens SentencePiece emits for a final symbol: 1 if it is a piece, else one per UTF-8 byte (byte fallback)."""
    return 1 if sym in known else len(sym.encode("utf-8"))


def learn_pieces(
    base_model: Path | str | bytes,
    lines: Iterable[str],
    n_pieces: int,
    *,
    forced_chars: Sequence[str] = (),
    progress: bool = True,
) -> ContinuedReport:
    """Learn ``n_pieces`` new pieces (characters and merges) on top of ``base_model`` from Japanese ``lines``.

    ``forced_chars`` missing from the base are added first (and count). Stops early when no candidate saves a token.
    """
    if n_pieces < 0:
        raise ValueError(f"n_pieces must be >= 0, got {n_pieces}")
    proto = load_proto(base_model)
    known = {p.piece for p in proto.pieces if p.type in (NORMAL, USER_DEFINED)}
    words: list[list[str]] = []
    freqs: list[int] = []
    for run, n in sorted(japanese_runs(proto.SerializeToString(), lines).items()):
        words.append(list(run))
        freqs.append(n)
    tokens_before = sum(f * sum(_cost(s, known) for s in w) for w, f in zip(words, freqs, strict=True))

    pair_count: Counter[tuple[str, str]] = Counter()
    pair_where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    char_count: Counter[str] = Counter()
    char_where: defaultdict[str, set[int]] = defaultdict(set)
    for i, (w, f) in enumerate(zip(words, freqs, strict=True)):
        for s in w:
            if s not in known:
                char_count[s] += f
                char_where[s].add(i)
        for a, b in zip(w, w[1:], strict=False):
            pair_count[(a, b)] += f
            pair_where[(a, b)].add(i)

    added: list[str] = []
    n_chars = n_merges = 0

    def add_char(c: str, unlock: bool = True) -> list[tuple[str, str]]:
        """Make ``c`` a piece; return the pairs it unlocks (when asked: before the heap exists nothing needs it)."""
        known.add(c)
        added.append(c)
        unlocked = set()
        for i in char_where.pop(c, ()) if unlock else ():
            w = words[i]
            for a, b in zip(w, w[1:], strict=False):
                if c in (a, b) and a in known and b in known:
                    unlocked.add((a, b))
        char_count.pop(c, None)
        return sorted(unlocked)

    heap: list[tuple[int, int, str, tuple[str, ...]]] = []

    def push_pair(p: tuple[str, str]) -> None:
        n = pair_count.get(p, 0)
        if n > 0 and p[0] in known and p[1] in known:
            heapq.heappush(heap, (-n, 1, p[0] + p[1], p))

    for c in forced_chars:
        if len(added) >= n_pieces:
            break
        if c not in known:
            add_char(c, unlock=False)
            n_chars += 1
    forced = len(added)
    for c, n in char_count.items():
        heapq.heappush(heap, (-n * (len(c.encode("utf-8")) - 1), 0, c, (c,)))
    for p in pair_count:
        push_pair(p)

    bar = tqdm(total=n_pieces, initial=len(added), desc="continued BPE", unit="piece", disable=not progress)
    while len(added) < n_pieces and heap:
        neg_gain, kind, key, cand = heapq.heappop(heap)
        if kind == 0:  # a character
            c = cand[0]
            if c in known or c not in char_count:
                continue
            for p in add_char(c):
                push_pair(p)
            n_chars += 1
            bar.update()
            continue
        a, b = cand
        n = pair_count.get((a, b), 0)
        if n <= 0 or a not in known or b not in known:
            continue
        if n != -neg_gain:  # stale: re-queue with the current count
            heapq.heappush(heap, (-n, 1, key, cand))
            continue
        new = a + b
        known.add(new)
        added.append(new)
        n_merges += 1
        bar.update()
        touched: set[tuple[str, str]] = set()
        for i in sorted(pair_where.pop((a, b), ())):
            w, f = words[i], freqs[i]
            out: list[str] = []
            j, last = 0, len(w) - 1
            # Left-to-right greedy merge with O(1) count updates per occurrence (the classic BPE trainer
            # bookkeeping): only the pairs touching a merged position change.
            while j <= last:
                if j < last and w[j] == a and w[j + 1] == b:
                    if j > 0:
                        pair_count[(w[j - 1], a)] -= f
                        p = (out[-1], new)
                        pair_count[p] += f
                        pair_where[p].add(i)
                        touched.add(p)
                    if j + 2 <= last and not (j + 3 <= last and w[j + 2] == a and w[j + 3] == b):
                        # (the next merge, if one starts right here, accounts for the pair between the two)
                        pair_count[(b, w[j + 2])] -= f
                        p = (new, w[j + 2])
                        pair_count[p] += f
                        pair_where[p].add(i)
                        touched.add(p)
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
        pair_count.pop((a, b), None)
        for p in sorted(touched):
            push_pair(p)
    bar.close()
    tokens_after = sum(f * sum(_cost(s, known) for s in w) for w, f in zip(words, freqs, strict=True))
    return ContinuedReport(
        base_size=len(proto.pieces), requested=n_pieces, added=len(added), added_chars=n_chars,
        added_merges=n_merges, forced_chars=forced, train_runs=len(words), train_tokens_before=tokens_before,
        train_tokens_after=tokens_after, pieces=added,
    )


def extend_model(
    base_model: Path | str | bytes,
    lines: Iterable[str],
    out: Path | str,
    n_pieces: int,
    *,
    forced_chars: Sequence[str] = (),
    pad_to: int = 8,
    progress: bool = True,
) -> ContinuedReport:
    """Learn ``n_pieces`` pieces (see :func:`learn_pieces`), append them to ``base_model``, pad, write ``out``."""
    if pad_to < 1:
        raise ValueError(f"pad_to must be positive, got {pad_to}")
    rep = learn_pieces(base_model, lines, n_pieces, forced_chars=forced_chars, progress=progress)
    proto = load_proto(base_model)
    min_score = min(p.score for p in proto.pieces)
    for piece, score in zip(rep.pieces, _new_scores(min_score, len(rep.pieces)), strict=True):
        sp_new = proto.pieces.add()
        sp_new.piece, sp_new.score = piece, score
    rep.unreachable = len(classify_reachability(proto, rep.pieces))
    # Padding as merge.py does it (CONTROL pieces never take part in merges); reused rather than re-derived.
    data = proto.SerializeToString()
    padded = merge_models(data, data, out, pad_to=pad_to)
    rep.padding, rep.final_size = padded.padding, padded.final_size
    log.info("continued BPE: %s", rep.summary())
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("lines", type=Path, help="UTF-8 text, one training line per line")
    ap.add_argument("out", type=Path)
    ap.add_argument("n_pieces", type=int, help="pieces to add (characters + merges)")
    ap.add_argument("--pad-to", type=int, default=8)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    lines = args.lines.read_text(encoding="utf-8").splitlines()
    rep = extend_model(args.base, lines, args.out, args.n_pieces, pad_to=args.pad_to)
    print(json.dumps(rep.summary(), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
