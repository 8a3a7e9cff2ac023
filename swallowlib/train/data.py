"""Training data for stage 04: tokenise the stage-01 splits with ``datasets``, pack them into fixed-length sequences
per source, and mix the sources by token ratio with a schedule that is a pure function of ``(seed, k)``.

**Packing.** Every document becomes ``[BOS] ids [EOS]`` (BOS from the tokenizer's post-processor, EOS appended here)
and the documents of one source and split are concatenated, in corpus order, into one token stream. Sequence ``i``
of a source is ``stream[i*L : i*L + L + 1]`` (``L`` = ``seq_len``): the model reads its first ``L`` tokens and
predicts its last ``L``, so every token of the stream is a target exactly once and nothing is padded. The tail
shorter than ``L + 1`` tokens is dropped. A parallel pair becomes one document per template (both directions).

**Mixing.** All training sequences hold ``L`` tokens, so a token ratio is a sequence ratio. The mix is exact per
block: ``B`` is the smallest block size for which every ratio × ``B`` is an integer ``n_s``, and each block of ``B``
consecutive training sequences holds exactly ``n_s`` sequences of source ``s``, in an order shuffled by
``rng(seed, block)``. The ``k``-th training sequence (counted globally over steps, micro-batches and processes) is

    block = k // B,  slot = k % B,  s = slots(block)[slot]
    j = block * n_s + (number of slots of s before `slot` in this block)        # the ordinal within source s
    sequence = perm(seed, s, epoch = j // N_s)[j % N_s]                        # a fresh permutation per pass

so it depends on ``(seed, k)`` only. A resumed run needs nothing but its step count to continue with exactly the
data an uninterrupted run would have seen, whatever was cached or killed in between.

Step layout: optimizer step ``t`` consumes ``k`` in ``[t*G, (t+1)*G)`` with ``G = micro_batch × grad_accum × world``;
process ``r`` takes rows ``(a*world + r)*micro_batch …`` in its ``a``-th micro-batch, so the global batch of a step is
the same for any split of ``G`` into processes and accumulation steps (the DDP test relies on this).

``datasets`` is imported lazily: the GPU check runs this module on synthetic tokens where it is not installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from swallowlib.provenance import write_json_atomic

log = logging.getLogger(__name__)

#: Bump when the packing format changes: old cache entries are then ignored.
CACHE_VERSION = 1
#: The sources a run can mix, in a fixed order (the order matters for the schedule).
SOURCES = ("ja", "en", "parallel")


class DataError(RuntimeError):
    """Training data is missing or unusable; the message names the file and the command that builds it."""


# ---------------------------------------------------------------------------------------------------------------
# Packed sources


@dataclass
class PackedSource:
    """One source's token stream, cut into sequences of ``seq_len + 1`` tokens (stride ``seq_len``)."""

    name: str
    stream: np.ndarray  # 1-D token ids (uint16 or int32; memory-mapped from the cache)
    seq_len: int
    docs: int = 0
    chars: int = 0

    @property
    def n_sequences(self) -> int:
        return max(0, (len(self.stream) - 1) // self.seq_len)

    @property
    def chars_per_token(self) -> float:
        return self.chars / max(1, len(self.stream))

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Sequences ``ids`` as an ``int64`` array of shape ``(len(ids), seq_len + 1)``."""
        L = self.seq_len
        starts = np.asarray(ids, dtype=np.int64) * L
        return np.stack([np.asarray(self.stream[s : s + L + 1], dtype=np.int64) for s in starts])


def synthetic_source(n_tokens: int, vocab_size: int, seq_len: int, seed: int = 0) -> PackedSource:
    """Uniformly random tokens (ids 3 … vocab-1), for throughput checks where no corpus exists (GPU check)."""
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if vocab_size <= 65535 else np.int32
    return PackedSource("synthetic", rng.integers(3, vocab_size, size=n_tokens).astype(dtype), seq_len)


# ---------------------------------------------------------------------------------------------------------------
# Tokenisation (datasets) and the on-disk cache


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tokenizer_fingerprint(tokenizer_dir: Path) -> str:
    """A hash of every file of an HF tokenizer directory (a changed merge or special token changes the ids)."""
    h = hashlib.sha256()
    for p in sorted(Path(tokenizer_dir).iterdir()):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(tokenizer_dir: str):
    # One tokenizer per worker process: `datasets` pickles the function, not a loaded tokenizer.
    if tokenizer_dir not in _TOKENIZERS:
        from swallowlib.tokenizer.export import load_hf

        _TOKENIZERS[tokenizer_dir] = load_hf(Path(tokenizer_dir))
    return _TOKENIZERS[tokenizer_dir]


def _encode_batch(batch: dict, tokenizer_dir: str, eos_id: int, templates: list[str] | None) -> dict:
    """``datasets.map`` function: texts (or rendered parallel pairs) -> token ids with EOS, and character counts."""
    if templates is None:
        texts = batch["text"]
    else:
        texts = [t.format(en=en, ja=ja) for en, ja in zip(batch["en"], batch["ja"], strict=True) for t in templates]
    ids = _tokenizer(tokenizer_dir)(texts, add_special_tokens=True)["input_ids"]
    return {"ids": [x + [eos_id] for x in ids], "chars": [len(t) for t in texts]}


def _stream_from_parquet(
    parquet: Path, tokenizer_dir: Path, eos_id: int, templates: list[str] | None, num_proc: int, vocab_size: int
) -> tuple[np.ndarray, dict]:
    """Tokenise one split with ``datasets`` (batched, ``num_proc`` workers) and flatten it to one stream."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="swallow-tok-") as tmp:
        ds = datasets.Dataset.from_parquet(str(parquet), cache_dir=tmp)
        n_rows = len(ds)
        ds = ds.map(
            _encode_batch,
            batched=True,
            batch_size=256,
            num_proc=num_proc if n_rows >= 4 * num_proc else None,
            remove_columns=ds.column_names,
            fn_kwargs={"tokenizer_dir": str(tokenizer_dir), "eos_id": eos_id, "templates": templates},
            desc=f"tokenise {parquet.parent.name}/{parquet.stem}",
        )
        table = ds.data.table
        # The list column flattened by Arrow is the concatenation of all documents, without a Python loop.
        ids = table.column("ids").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        dtype = np.uint16 if vocab_size <= 65535 else np.int32
        stream = ids.astype(dtype)
        meta = {"docs": len(ds), "tokens": int(len(stream)), "chars": int(np.sum(table.column("chars").to_numpy()))}
        del ds, table
    return stream, meta


def load_packed(
    parquet: Path,
    tokenizer_dir: Path,
    *,
    seq_len: int,
    cache_dir: Path,
    eos_id: int,
    vocab_size: int,
    templates: list[str] | None = None,
    num_proc: int = 1,
    name: str | None = None,
    build: bool = True,
    hint: str = "",
) -> PackedSource:
    """The packed token stream of one corpus split, from the cache or tokenised now (then cached atomically).

    ``build=False``: a missing cache entry is a DataError (``hint`` says how to build it) instead of tokenising here.

    The cache key hashes the parquet file, the tokenizer files, the EOS id, the parallel templates and
    :data:`CACHE_VERSION`; ``seq_len`` is not part of it (the stream is cut at read time).
    """
    parquet = Path(parquet)
    key_src = {
        "version": CACHE_VERSION,
        "parquet": file_sha256(parquet),
        "tokenizer": tokenizer_fingerprint(tokenizer_dir),
        "eos": eos_id,
        "templates": templates,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{parquet.parent.name}-{parquet.stem}-{key}"
    npy, meta_path = Path(cache_dir) / f"{stem}.npy", Path(cache_dir) / f"{stem}.json"
    if not (npy.is_file() and meta_path.is_file()):
        if not build:
            raise DataError(f"{parquet}: not tokenised yet for {Path(tokenizer_dir).name}; prepare it first: {hint}")
        log.info("tokenising %s with %s", parquet, tokenizer_dir)
        stream, meta = _stream_from_parquet(parquet, tokenizer_dir, eos_id, templates, num_proc, vocab_size)
        npy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=npy.parent, prefix=f".{npy.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, stream)
            os.replace(tmp, npy)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        write_json_atomic(meta_path, {**meta, "key": key_src, "parquet_path": str(parquet)})
    meta = json.loads(meta_path.read_text())
    stream = np.load(npy, mmap_mode="r")
    return PackedSource(name or parquet.parent.name, stream, seq_len, docs=meta["docs"], chars=meta["chars"])


def clear_stale_tmp(cache_dir: Path) -> None:
    """Remove temporary files a killed tokenisation left behind (never a finished entry)."""
    for p in Path(cache_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)
    for p in Path(cache_dir).glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# The deterministic mixture


def block_counts(ratios: dict[str, float], max_block: int = 10_000) -> tuple[int, dict[str, int]]:
    """The smallest block size ``B`` (<= ``max_block``) whose per-source counts ``ratio × B`` are integers.

    Ratios that are not multiples of ``1/max_block`` are rounded to the nearest count (largest remainder).
    """
    pos = {s: r for s, r in ratios.items() if r > 0}
    if not pos:
        raise ValueError("a mixture needs at least one source with a positive ratio")
    fracs = {s: Fraction(r).limit_denominator(max_block) for s, r in pos.items()}
    B = 1
    for f in fracs.values():
        B = math.lcm(B, f.denominator)
    if B > max_block:
        B = max_block
    exact = {s: r * B / sum(pos.values()) for s, r in pos.items()}
    counts = {s: int(math.floor(v)) for s, v in exact.items()}
    for s in sorted(exact, key=lambda s: exact[s] - counts[s], reverse=True)[: B - sum(counts.values())]:
        counts[s] += 1
    return B, counts


class Mixture:
    """The training sequence schedule: ``batch(ks)`` returns the sequences for global indices ``ks`` (module doc)."""

    def __init__(self, sources: dict[str, PackedSource], ratios: dict[str, float], seed: int):
        order = [s for s in (*SOURCES, *sorted(ratios)) if s in ratios and ratios[s] > 0]
        self.names = list(dict.fromkeys(order))
        self.sources = [sources[s] for s in self.names]
        for src in self.sources:
            if src.n_sequences == 0:
                raise DataError(
                    f"source {src.name!r} has {len(src.stream)} tokens, fewer than one sequence of "
                    f"{src.seq_len + 1}: use a larger corpus or a smaller train.seq_len"
                )
        self.seed = seed
        self.block, counts = block_counts({s: ratios[s] for s in self.names})
        self.counts = np.array([counts[s] for s in self.names], dtype=np.int64)
        self.seq_len = self.sources[0].seq_len
        # Small memo tables: a step touches one or two blocks and one epoch permutation per source.
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        if b in self._blocks:
            return self._blocks[b]
        slots = np.repeat(np.arange(len(self.names)), self.counts)
        slots = np.random.default_rng([self.seed, 1, b]).permutation(slots)
        rank = np.zeros_like(slots)
        for s in range(len(self.names)):
            pos = np.flatnonzero(slots == s)
            rank[pos] = np.arange(len(pos))
        if len(self._blocks) > 64:
            self._blocks.clear()
        self._blocks[b] = (slots, rank)
        return slots, rank

    def _perm(self, s: int, epoch: int) -> np.ndarray:
        if (s, epoch) not in self._perms:
            if len(self._perms) > 16:
                self._perms.clear()
            n = self.sources[s].n_sequences
            self._perms[(s, epoch)] = np.random.default_rng([self.seed, 2, s, epoch]).permutation(n)
        return self._perms[(s, epoch)]

    def locate(self, k: int) -> tuple[str, int]:
        """``(source name, sequence index within that source)`` of global training sequence ``k``."""
        b, q = divmod(int(k), self.block)
        slots, rank = self._block(b)
        s = int(slots[q])
        j = b * int(self.counts[s]) + int(rank[q])
        n = self.sources[s].n_sequences
        return self.names[s], int(self._perm(s, j // n)[j % n])

    def batch(self, ks) -> np.ndarray:
        """Sequences for the global indices ``ks``: ``int64`` array ``(len(ks), seq_len + 1)``."""
        rows = []
        for k in ks:
            name, i = self.locate(k)
            rows.append(self.sources[self.names.index(name)].get(np.array([i]))[0])
        return np.stack(rows)

    def share(self) -> dict[str, float]:
        """Exact token share of each source (per block)."""
        return {s: float(c) / self.block for s, c in zip(self.names, self.counts, strict=True)}


def step_indices(step: int, micro: int, rank: int, world: int, micro_batch: int, grad_accum: int) -> range:
    """Global sequence indices of one process's ``micro``-th micro-batch of optimizer step ``step``."""
    G = micro_batch * grad_accum * world
    start = step * G + (micro * world + rank) * micro_batch
    return range(start, start + micro_batch)


def eval_sequences(src: PackedSource, n: int) -> np.ndarray:
    """``n`` evenly spaced sequences of a (validation) source, always the same ones."""
    if n <= 0 or src.n_sequences == 0:
        return np.zeros((0, src.seq_len + 1), dtype=np.int64)
    ids = np.unique(np.linspace(0, src.n_sequences - 1, min(n, src.n_sequences)).round().astype(np.int64))
    return src.get(ids)
