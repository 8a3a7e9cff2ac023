"""Keep evaluation text out of training: find eval texts that occur, exactly or nearly, in training text.

:func:`find_contamination` labels each eval text ``"exact"``, ``"near"`` or ``None`` (clean):

- **exact**: after normalisation (NFKC, whitespace runs -> one space, trimmed), the whole eval text, or any of its
  sentences / lines of at least ``cfg.min_chars`` characters, is a substring of some normalised training text.
  An eval text shorter than ``cfg.min_chars`` is exact only when it equals a whole training paragraph, line or
  sentence (a short string like "はい" is inside everything).
- **near**: character 5-gram Jaccard >= ``cfg.near_dup_jaccard`` with some training paragraph, line or sentence.

Why hand-written: datatrove's decontamination (``NGramsDecontIndexer``/``NGramsDecontFilter``) needs lighteval
and removes *training* documents that share a word n-gram, and its MinHash index stages
(``MinhashDedupBuckets(index_folder=…, only_dedup_in_index=True)``) report which training document matched but
not *which* index entry; here we need a verdict per *eval* text. Both directions stream the training side once:

- exact: every eval segment is indexed by the hash of its first ``min_chars`` characters; each training chunk's
  rolling ``min_chars``-gram hashes (numpy) are looked up in that small table and hits are verified with
  ``str.startswith``. Cost is linear in training characters, independent of the number of eval texts.
- near: MinHash LSH for candidates, exact Jaccard to confirm. Signatures are one-permutation MinHash (Li et al.
  2012: each shingle hash goes to one of 128 bins by its top bits, a bin keeps its minimum) with rotation
  densification for empty bins (Shrivastava & Li 2014), so a signature costs one pass over the shingles instead of
  one pass per hash function. 32 bands of 4 bins: a pair becomes a candidate with probability
  1 - (1 - J^4)^32, i.e. 0.9998 at J = 0.7, 0.23 at J = 0.3. Only the eval signatures' band keys are indexed;
  training units (paragraphs, lines, sentences; each distinct unit once) are hashed in numpy batches, looked up,
  and every candidate pair is verified with the exact Jaccard of the two 5-gram sets. Units whose size cannot
  reach the threshold (fewer than t·min|A| shingles, or more than 1/t times the longest eval text's characters)
  are skipped before hashing.

    python -m swallowlib.corpus.decontam EVAL.txt TRAIN.txt    # one text per line in EVAL, TRAIN as one text
"""

from __future__ import annotations

import logging
import math
import sys
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swallowlib.config import DecontamConfig
from swallowlib.corpus.filters import _codepoints, _mix64, _ngram_hashes, lines, paragraphs, sentences

log = logging.getLogger(__name__)

SHINGLE = 5  # character n-gram size of the near-duplicate check
BINS = 128  # one-permutation MinHash: bins per signature (the top 7 bits of a shingle hash pick its bin)
ROWS = 4  # LSH: bins per band; BINS // ROWS = 32 bands
CHUNK_CHARS = 2_000_000  # training characters hashed per numpy batch (exact check)
NEAR_CHUNK_CHARS = 1_000_000  # unit characters per batch (near check; bounds the n_units × 128 signature arrays)
SEEN_UNITS_MAX = 250_000  # distinct training units remembered to skip repeats (a cache: ~20 MB at most)
BITMAP_BITS = 22  # prefilter: 4M-bit table of anchor hash prefixes, so most lookups never reach searchsorted


def normalise(text: str) -> str:
    """NFKC, whitespace runs collapsed to one space, trimmed (NUL removed: it separates texts internally)."""
    return _collapse(unicodedata.normalize("NFKC", text))


def _collapse(text: str) -> str:
    # str.split() (C, Unicode whitespace as str.isspace) is ~10x faster than re.sub for this
    return " ".join(text.replace("\x00", "").split())


def _units(nfkc_text: str) -> set[str]:
    """Normalised paragraphs, lines and sentences of an already NFKC-normalised text."""
    out = {_collapse(p) for p in paragraphs(nfkc_text)}
    out.update(_collapse(s) for s in lines(nfkc_text))
    out.update(_collapse(s) for s in sentences(nfkc_text))
    out.discard("")
    return out


def _hashes(s: str, n: int) -> np.ndarray:
    return _ngram_hashes(_codepoints(s).astype(np.uint64), n)


class _HashTable:
    """Sorted unique uint64 keys with a bitmap prefilter on their top bits, for vectorised membership lookups."""

    def __init__(self, keys: np.ndarray):
        self.keys = np.unique(keys)
        self.shift = np.uint64(64 - BITMAP_BITS)
        self.bitmap = np.zeros(1 << BITMAP_BITS, dtype=bool)
        self.bitmap[(self.keys >> self.shift).astype(np.int64)] = True

    def lookup(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``h`` whose value is a key, their indices in ``self.keys``)."""
        if len(self.keys) == 0 or len(h) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        pos = np.flatnonzero(self.bitmap[(h >> self.shift).astype(np.int64)])
        idx = np.searchsorted(self.keys, h[pos])
        idx[idx == len(self.keys)] = 0
        ok = self.keys[idx] == h[pos]
        return pos[ok], idx[ok]


@dataclass
class _ExactIndex:
    """Eval segments keyed by the hash of their first ``k`` characters."""

    k: int
    segments: dict[int, list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, eval_idx: int, seg: str) -> None:
        key = int(_hashes(seg[: self.k], self.k)[0])
        self.segments.setdefault(key, []).append((eval_idx, seg))

    def table(self) -> _HashTable:
        return _HashTable(np.fromiter(self.segments, dtype=np.uint64, count=len(self.segments)))


class Scanner:
    """Streams training text and marks contaminated eval texts."""

    def __init__(self, eval_texts: list[str], cfg: DecontamConfig):
        self.cfg = cfg
        self.n = len(eval_texts)
        self.labels: list[str | None] = [None] * self.n
        self.k = max(1, cfg.min_chars)
        exact = _ExactIndex(self.k)
        self.short: dict[str, list[int]] = {}  # eval texts shorter than k: matched as whole units
        self.eval_sets: list[np.ndarray] = []
        for i, raw in enumerate(eval_texts):
            nfkc = unicodedata.normalize("NFKC", raw) if isinstance(raw, str) else ""
            norm = normalise(nfkc)
            shingles = np.unique(_hashes(norm, SHINGLE)) if norm else np.zeros(0, dtype=np.uint64)
            self.eval_sets.append(shingles)
            if not norm:
                continue
            if len(norm) < self.k:
                self.short.setdefault(norm, []).append(i)
            else:
                segs = {norm} | {normalise(s) for s in lines(nfkc)} | {normalise(s) for s in sentences(nfkc)}
                for seg in segs:
                    if len(seg) >= self.k:
                        exact.add(i, seg)
        self.exact = exact
        self.exact_table = exact.table()
        # band key -> eval texts (CSR arrays), for the eval texts that have shingles
        has = np.flatnonzero([len(x) > 0 for x in self.eval_sets]) if self.n else np.zeros(0, dtype=np.int64)
        if len(has):
            hv = np.concatenate([self.eval_sets[i] for i in has])
            owner = np.repeat(np.arange(len(has)), [len(self.eval_sets[i]) for i in has])
            bands = _band_keys(_oph_signatures(hv, owner, len(has)))
            keys = bands.ravel()
            owners = np.repeat(has, bands.shape[1])
        else:
            keys, owners = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, owners = keys[order], owners[order]
        self.band_table = _HashTable(keys)
        self.band_start = np.searchsorted(keys, self.band_table.keys, side="left")
        self.band_end = np.searchsorted(keys, self.band_table.keys, side="right")
        self.band_owners = owners
        self.eval_sizes = np.array([len(x) for x in self.eval_sets], dtype=np.int64)
        sizes = [len(x) for x in self.eval_sets if len(x)]
        max_chars = max((len(normalise(x)) for x in eval_texts if isinstance(x, str)), default=0)
        t = cfg.near_dup_jaccard
        self.unit_min = math.ceil(t * min(sizes)) if sizes else 1
        # exact lower bound (a unit has at most len - 4 distinct shingles); the upper bound is on characters, since
        # distinct shingles are only known after hashing: a unit more than 1/t times longer than every eval text
        # could only match if it were far more repetitive than its twin
        self.unit_max = math.floor(max_chars / t) if sizes else 0
        self._exact_buf: list[str] = []
        self._exact_chars = 0
        self._near_buf: list[str] = []
        self._near_chars = 0
        self._seen_units: set[int] = set()  # hashes of units already queued: repeated boilerplate is checked once
        self.candidates = 0
        self.train_texts = 0
        self.train_chars = 0
        self.skipped = 0

    # -- feeding -------------------------------------------------------------------------------------------------

    def add(self, text: object) -> None:
        if self.n == 0:
            return
        if not isinstance(text, str):
            self.skipped += 1
            return
        self.train_texts += 1
        self.train_chars += len(text)
        nfkc = unicodedata.normalize("NFKC", text)
        norm = _collapse(nfkc)
        self._exact_buf.append(norm)
        self._exact_chars += len(norm) + 1
        if self._exact_chars >= CHUNK_CHARS:
            self._flush_exact()
        if not self.short and not len(self.band_table.keys):
            return
        for u in _units(nfkc):
            key = hash(u)
            if key in self._seen_units:
                continue
            if len(self._seen_units) >= SEEN_UNITS_MAX:  # a cache, not an index: bounded whatever the corpus size
                self._seen_units.clear()
            self._seen_units.add(key)
            if self.short and u in self.short:
                for i in self.short[u]:
                    self.labels[i] = "exact"
            if self.unit_min <= len(u) - SHINGLE + 1 and len(u) <= self.unit_max:
                self._near_buf.append(u)
                self._near_chars += len(u) + 1
        if self._near_chars >= NEAR_CHUNK_CHARS:
            self._flush_exact()  # first, so eval texts found verbatim skip the near-duplicate verification
            self._flush_near()

    def finish(self) -> list[str | None]:
        self._flush_exact()
        self._flush_near()
        return self.labels

    # -- exact ---------------------------------------------------------------------------------------------------

    def _flush_exact(self) -> None:
        if not self._exact_buf:
            return
        chunk = "\x00".join(self._exact_buf)
        self._exact_buf, self._exact_chars = [], 0
        h = _hashes(chunk, self.k)
        pos, idx = self.exact_table.lookup(h)
        keys = self.exact_table.keys
        for p, j in zip(pos.tolist(), idx.tolist(), strict=True):
            for i, seg in self.exact.segments[int(keys[j])]:
                if self.labels[i] != "exact" and chunk.startswith(seg, p):
                    self.labels[i] = "exact"

    # -- near ----------------------------------------------------------------------------------------------------

    def _flush_near(self) -> None:
        if not self._near_buf:
            return
        units = self._near_buf
        self._near_buf, self._near_chars = [], 0
        chunk = "\x00".join(units)
        h = _hashes(chunk, SHINGLE)
        # unit id of every shingle position; positions that straddle a separator are dropped
        lengths = np.fromiter(map(len, units), dtype=np.int64, count=len(units))
        starts = np.concatenate(([0], np.cumsum(lengths + 1)[:-1]))
        nsh = np.maximum(lengths - SHINGLE + 1, 0)
        unit_of = np.repeat(np.arange(len(units)), nsh)
        offset = np.repeat(starts, nsh) + (np.arange(nsh.sum()) - np.repeat(np.cumsum(nsh) - nsh, nsh))
        hv = h[offset]
        # one signature per unit; band keys looked up in the eval table; (unit, eval) candidate pairs
        bands = _band_keys(_oph_signatures(hv, unit_of, len(units)))
        pos, idx = self.band_table.lookup(bands.ravel())
        if len(pos) == 0:
            return
        pu = pos // bands.shape[1]
        counts = self.band_end[idx] - self.band_start[idx]
        rep_u = np.repeat(pu, counts)
        rep_e = self.band_owners[np.repeat(self.band_start[idx], counts) + _ranges(counts)]
        pairs = np.unique(rep_u * self.n + rep_e)
        cu, ce = np.divmod(pairs, self.n)
        unit_first = np.concatenate(([0], np.cumsum(nsh)[:-1]))
        t = self.cfg.near_dup_jaccard
        # |B| <= nsh[u] distinct shingles: the unit cannot reach t if nsh[u] < t·|A|
        ok = nsh[cu] >= t * self.eval_sizes[ce]
        self.candidates += int(ok.sum())
        for u, e in zip(cu[ok].tolist(), ce[ok].tolist(), strict=True):
            if self.labels[e] is not None:
                continue
            a = self.eval_sets[e]
            b = np.unique(hv[unit_first[u] : unit_first[u] + nsh[u]])
            if not (t * len(a) <= len(b) <= len(a) / t):
                continue
            inter = len(np.intersect1d(a, b, assume_unique=True))
            if inter / (len(a) + len(b) - inter) >= t:
                self.labels[e] = "near"


_VAL_BITS = np.uint64(57)  # 128 bins = the top 7 bits; the low 57 bits are the value kept per bin
_VAL_MASK = np.uint64((1 << 57) - 1)
_EMPTY = np.uint64(2**64 - 1)


def _oph_signatures(hv: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """One-permutation MinHash signatures (n × BINS) of the shingle hashes ``hv`` grouped by ``owner``.

    Empty bins take the value of the next non-empty bin to the right (circularly) plus distance × 2^57 (rotation
    densification), so equal sets always get equal signatures and similar sets agree bin by bin with
    probability ≈ J. Owners without shingles get an all-empty row.
    """
    sig = np.full(n * BINS, _EMPTY, dtype=np.uint64)
    np.minimum.at(sig, owner * BINS + (hv >> _VAL_BITS).astype(np.int64), hv & _VAL_MASK)
    sig = sig.reshape(n, BINS)
    empty = sig == _EMPTY
    if empty.any():
        col = np.arange(BINS)
        nxt = np.where(empty, 2 * BINS, col)  # index of a non-empty bin, else "none"
        nxt = np.concatenate([nxt, np.where(empty, 2 * BINS, col + BINS)], axis=1)
        nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1][:, :BINS]
        full_empty = nxt >= 2 * BINS
        nxt = np.where(full_empty, col, nxt)
        dist = (nxt - col).astype(np.uint64)
        src = np.take_along_axis(sig, nxt % BINS, axis=1)
        with np.errstate(over="ignore"):
            sig = np.where(empty & ~full_empty, src + dist * np.uint64(1 << 57), sig)
    return sig


def _band_keys(sig: np.ndarray) -> np.ndarray:
    """One 64-bit key per band (band index mixed in), shape (n, BINS // ROWS).

    Band b holds bins b, b + 32, b + 64, b + 96: densification copies a value into the empty bins to its left, so
    adjacent bins of a sparse signature are correlated and would make one shared shingle fill a whole band.
    """
    n, nb = sig.shape[0], BINS // ROWS
    v = sig.reshape(n, ROWS, nb)
    key = _mix64(np.arange(nb, dtype=np.uint64)[None, :] + np.zeros((n, 1), dtype=np.uint64))
    for r in range(ROWS):
        key = _mix64(key ^ v[:, r, :])
    return key


def _ranges(counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(c)`` for each c in counts."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def worst(a: list[str | None] | None, b: list[str | None] | None) -> list[str | None] | None:
    """Labels of the same eval texts from two scans of different training text, merged: exact > near > clean.

    >>> worst([None, "near", "near"], ["near", None, "exact"])
    ['near', 'near', 'exact']
    """
    if a is None or b is None:
        return b if a is None else a
    rank = {None: 0, "near": 1, "exact": 2}
    return [x if rank[x] >= rank[y] else y for x, y in zip(a, b, strict=True)]


def find_contamination(eval_texts: list[str], train_texts: Iterable[str], cfg: DecontamConfig) -> list[str | None]:
    """For each eval text: ``"exact"``, ``"near"`` or ``None`` (see the module docstring for the definitions).

    ``train_texts`` is consumed once (a generator over a large corpus is fine). Non-string training items are
    skipped and counted in the log.
    """
    t0 = time.perf_counter()
    scanner = Scanner(list(eval_texts), cfg)
    for text in train_texts:
        scanner.add(text)
    labels = scanner.finish()
    dt = time.perf_counter() - t0
    log.info(
        "decontam: %d eval texts vs %d training texts (%d chars) in %.1fs: %d exact, %d near (%d candidate pairs)%s",
        len(labels),
        scanner.train_texts,
        scanner.train_chars,
        dt,
        labels.count("exact"),
        labels.count("near"),
        scanner.candidates,
        f", {scanner.skipped} non-text training items skipped" if scanner.skipped else "",
    )
    return labels


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    _evals = Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()
    _labels = find_contamination(_evals, [Path(sys.argv[2]).read_text(encoding="utf-8")], DecontamConfig())
    for _label, _text in zip(_labels, _evals, strict=True):
        print(f"{_label or 'clean':6s} {_text[:100]}")
