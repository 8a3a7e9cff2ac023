"""Training data for stage 04: tokenise the stage-01 splits into token shards, read each split back as one
memory-mapped token stream, pack it into fixed-length sequences per source, and mix the sources by token ratio with a
schedule that is a pure function of ``(seed, k)``.

Typical use (what :func:`swallowlib.train.job.build_job` does for every source of a run)::

    files = paths.corpus_split_files("tiny", "ja", "train")
    src = load_packed(files, tokenizer_dir, seq_len=256, cache_dir=paths.token_cache_dir("tiny"),
                      eos_id=tok.eos_token_id, vocab_size=len(tok), num_proc=2)
    mixture = Mixture({"ja": src, ...}, {"ja": 0.9, ...}, seed=0)

**Tokenisation.** A split is the list of its Parquet files (stage 01's shards, read in file-name order). Its rows are
streamed with pyarrow, one record batch at a time, and tokenised in batches, one task per file or per
``rows_per_task`` rows of one, by ``num_proc`` spawned worker processes (in this process for a split smaller than
:data:`POOL_MIN_BYTES`). Each task writes its ids into shards ``<task>-<n>.npy`` of at most ``shard_tokens`` tokens
(``uint16`` when the vocabulary fits, else ``uint32``), each written to a temporary name and renamed; a worker holds
one record batch and one shard buffer, so memory does not grow with the corpus. The cache entry
``<cache>/<dataset>-<split>-<key>/`` (the shards and ``index.json``: tokens and documents per shard; rows, documents,
tokens and characters per file) is built in ``.tmp-<entry>`` and renamed into place once complete, under a per-entry
file lock: two processes asking for the same entry tokenise it once, and what a killed build left behind is removed
by the next one. The key hashes the Parquet files (each hash remembered by path, size, mtime and inode:
:func:`split_digests`), the tokenizer files, the EOS id, the parallel templates,
``max_tokens``, the token dtype and :data:`CACHE_VERSION` — not ``num_proc`` nor the shard size, which change nothing
in the stream. :class:`ShardedStream` reads the shards back as one 1-D array: ``len()`` and slices across shard
boundaries, through memory maps.

**Bounded tokenisation.** With ``max_tokens`` set, only a proportional prefix of every file is tokenised: a file
holding ``r`` of the split's ``R`` rows (Parquet metadata) contributes whole rows, in order, while it has fewer than
``max_tokens × r / R`` tokens, so every file overshoots its quota by less than one row (a parallel pair is one row:
both of its documents are kept or neither). A prefix of every file rather than the first files: stage 01's early
shards may hold one source only. The result is a deterministic function of the files, the tokenizer and
``max_tokens``; a budget larger than the split gives the whole split. :func:`tokens_drawn` is what a run reads of each
source; ``swallowlib.train.job`` tokenises that times ``train.data_margin`` (``None``: whole splits).

**Packing.** Every document becomes ``[BOS] ids [EOS]`` (BOS from the tokenizer's post-processor, EOS appended here)
and the documents of one source and split are concatenated, in corpus order (file order, then row order), into one
token stream. Sequence ``i`` of a source is ``stream[i*L : i*L + L + 1]`` (``L`` = ``seq_len``): the model reads its
first ``L`` tokens and predicts its last ``L``, so every token of the stream is a target exactly once and nothing is
padded. The tail shorter than ``L + 1`` tokens is dropped. A parallel pair becomes one document per template (both
directions).

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

pyarrow and the tokenizer are imported lazily: the GPU check runs this module on synthetic tokens
(:func:`synthetic_source`, a plain array) where neither is needed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from swallowlib.provenance import write_json_atomic

log = logging.getLogger(__name__)

#: Bump when the cache format changes: old cache entries are then ignored.
CACHE_VERSION = 2
#: The sources a run can mix, in a fixed order (the order matters for the schedule).
SOURCES = ("ja", "en", "parallel")
#: Tokens per shard (32 MiB of uint16): a 10B-token split is ~600 files.
SHARD_TOKENS = 1 << 24
#: Rows per task when a whole file is tokenised: a large single file still spreads over the workers.
ROWS_PER_TASK = 1 << 15
#: Rows per tokenizer call (and per Parquet record batch).
BATCH_ROWS = 256
#: Splits smaller than this (Parquet bytes) are tokenised in this process: starting workers (spawn, each importing
#: the tokenizer libraries) costs seconds, more than they save on a small split.
POOL_MIN_BYTES = 1 << 26
#: Memory maps a stream keeps open: each holds a file descriptor, and three sources of a 10B-token corpus would hold
#: more shards than the usual limit of 1,024.
MAX_OPEN_SHARDS = 64


class DataError(RuntimeError):
    """Training data is missing or unusable; the message names the file and the command that builds it."""


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id of a ``vocab_size`` vocabulary fits (ids 0 … 65535), else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# ---------------------------------------------------------------------------------------------------------------
# Streams and packed sources


class ShardedStream:
    """Token shards (``.npy`` files, in order) read as one read-only 1-D stream.

    ``len(s)``, ``s[i]`` and ``s[a:b]`` (a fresh array holding only those tokens, read through memory maps, across
    shard boundaries); ``np.asarray(s)`` reads the whole stream (for small ones: tests, inspection).
    """

    ndim = 1

    def __init__(self, files: Sequence[Path], lengths: Sequence[int], dtype):
        if len(files) != len(lengths):
            raise ValueError(f"{len(files)} shard files but {len(lengths)} lengths")
        self.files = [Path(f) for f in files]
        self.dtype = np.dtype(dtype)
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int64)
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def _shard(self, i: int) -> np.ndarray:
        m = self._maps.get(i)
        if m is not None:
            self._maps.move_to_end(i)
            return m
        m = np.load(self.files[i], mmap_mode="r")
        want = int(self.offsets[i + 1] - self.offsets[i])
        if m.ndim != 1 or len(m) != want or m.dtype != self.dtype:
            raise DataError(
                f"{self.files[i]}: {m.dtype}[{len(m)}], the index says {self.dtype}[{want}]: a damaged token "
                f"cache entry; delete {self.files[i].parent} and it is rebuilt"
            )
        if len(self._maps) >= MAX_OPEN_SHARDS:
            self._maps.popitem(last=False)
        self._maps[i] = m
        return m

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                raise TypeError("a token stream is sliced contiguously (step 1)")
            if stop <= start:
                return np.empty(0, dtype=self.dtype)
            first = int(np.searchsorted(self.offsets, start, side="right")) - 1
            last = int(np.searchsorted(self.offsets, stop - 1, side="right")) - 1
            parts = []
            for i in range(first, last + 1):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                if hi > lo:
                    parts.append(self._shard(i)[max(start, lo) - lo : min(stop, hi) - lo])
            return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} out of range for a stream of {n} tokens")
            return self[i : i + 1][0]
        raise TypeError(f"a token stream takes an int or a slice, not {type(key).__name__}")

    def __array__(self, dtype=None, copy=None):
        a = self[0 : len(self)]
        return a if dtype is None else a.astype(dtype)

    def __getstate__(self) -> dict:
        # Open maps are per process: a copy (another process, a pickle) opens its own.
        return {**self.__dict__, "_maps": OrderedDict()}

    def __repr__(self) -> str:
        return f"ShardedStream({len(self)} tokens, {len(self.files)} shards, {self.dtype})"


@dataclass
class PackedSource:
    """One source's token stream, cut into sequences of ``seq_len + 1`` tokens (stride ``seq_len``).

    ``stream``: anything 1-D with ``len()`` and contiguous slices (a :class:`ShardedStream` from the cache, a plain
    array for synthetic tokens). The fields after ``chars`` describe a cached split: the token budget it was cut to
    (``None``: all of it), the rows tokenised of all rows, and the cache entry.
    """

    name: str
    stream: ShardedStream | np.ndarray
    seq_len: int
    docs: int = 0
    chars: int = 0
    max_tokens: int | None = None
    rows_used: int = 0
    rows_total: int = 0
    entry: str | None = None

    @property
    def n_sequences(self) -> int:
        return max(0, (len(self.stream) - 1) // self.seq_len)

    @property
    def chars_per_token(self) -> float:
        return self.chars / max(1, len(self.stream))

    @property
    def whole(self) -> bool:
        """Every row of the split was tokenised."""
        return self.rows_used == self.rows_total

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Sequences ``ids`` as an ``int64`` array of shape ``(len(ids), seq_len + 1)``."""
        L = self.seq_len
        starts = np.asarray(ids, dtype=np.int64) * L
        return np.stack([np.asarray(self.stream[s : s + L + 1], dtype=np.int64) for s in starts])


def synthetic_source(n_tokens: int, vocab_size: int, seq_len: int, seed: int = 0) -> PackedSource:
    """Uniformly random tokens (ids 3 … vocab-1), for throughput checks where no corpus exists (GPU check)."""
    rng = np.random.default_rng(seed)
    stream = rng.integers(3, vocab_size, size=n_tokens).astype(token_dtype(vocab_size))
    return PackedSource("synthetic", stream, seq_len)


# ---------------------------------------------------------------------------------------------------------------
# Tokenisation into shards, and the on-disk cache


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


def split_digests(files: Sequence[Path], cache_dir: Path) -> list[str]:
    """The sha256 of every file, remembered in ``<cache_dir>/.sha256.json`` by path, size, mtime and inode.

    A multi-billion-token split is tens of GB of Parquet: hashed once, not at every start of every process. Stage 01
    writes a shard to a temporary name and renames it, so a rewritten shard has a new inode and mtime.
    """
    memo_path = Path(cache_dir) / ".sha256.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out, changed = [], False
    for f in files:
        st = Path(f).stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        k = str(Path(f).resolve())
        if memo.get(k, {}).get("stamp") != stamp:
            memo[k] = {"stamp": stamp, "sha256": file_sha256(Path(f))}
            changed = True
        out.append(memo[k]["sha256"])
    if changed:
        write_json_atomic(memo_path, memo)
    return out


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(tokenizer_dir: str):
    # One tokenizer per process, loaded on first use: tasks carry the directory, not a loaded tokenizer.
    if tokenizer_dir not in _TOKENIZERS:
        from swallowlib.tokenizer.export import load_hf

        _TOKENIZERS[tokenizer_dir] = load_hf(Path(tokenizer_dir))
    return _TOKENIZERS[tokenizer_dir]


def _row_texts(batch, templates: list[str] | None) -> list[str]:
    """The documents of a record batch, ``k`` per row in row order (``k`` = 1, or one per parallel template)."""
    if templates is None:
        return batch.column("text").to_pylist()
    en, ja = batch.column("en").to_pylist(), batch.column("ja").to_pylist()
    return [t.format(en=e, ja=j) for e, j in zip(en, ja, strict=True) for t in templates]


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())  # the index that names this shard is written after it: never before its data is down
    os.replace(tmp, path)


class _ShardWriter:
    """Ids appended in order, written as ``<prefix>-<NNNNN>.npy`` shards of ``shard_tokens`` (the last one shorter)."""

    def __init__(self, out_dir: Path, prefix: str, shard_tokens: int, dtype: np.dtype):
        self.out_dir, self.prefix, self.size = Path(out_dir), prefix, shard_tokens
        self.buf = np.empty(shard_tokens, dtype=dtype)  # pages are committed only as far as they are filled
        self.fill = 0
        self.written = 0  # tokens of this task in finished shards
        self.ends: dict[int, int] = {}  # shard ordinal -> documents ending in it
        self.shards: list[dict] = []

    def write(self, ids: np.ndarray, doc_lengths: np.ndarray) -> None:
        ends = self.written + self.fill + np.cumsum(doc_lengths)
        for shard, n in zip(*np.unique((ends - 1) // self.size, return_counts=True), strict=True):
            self.ends[int(shard)] = self.ends.get(int(shard), 0) + int(n)
        while len(ids):
            take = min(len(ids), self.size - self.fill)
            self.buf[self.fill : self.fill + take] = ids[:take]
            self.fill += take
            ids = ids[take:]
            if self.fill == self.size:
                self.flush()

    def flush(self) -> None:
        if not self.fill:
            return
        name = f"{self.prefix}-{len(self.shards):05d}.npy"
        _save_npy_atomic(self.out_dir / name, self.buf[: self.fill])
        self.shards.append({"file": name, "tokens": self.fill, "docs": self.ends.get(len(self.shards), 0)})
        self.written += self.fill
        self.fill = 0


def _row_groups(pf, start: int, stop: int) -> tuple[list[int], int]:
    """The row groups of a Parquet file that hold rows ``[start, stop)``, and the index of the first row they hold."""
    groups, first, pos = [], None, 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if pos < stop and pos + n > start:
            groups.append(g)
            first = pos if first is None else first
        pos += n
    return groups, first or 0


def _tokenise_task(task: dict) -> dict:
    """Tokenise rows ``[start, stop)`` of one Parquet file (at most its quota) into shards; returns the counts.

    Runs in a worker process (or in this one): everything it needs is in ``task``.
    """
    import pyarrow.parquet as pq

    tok = _tokenizer(task["tokenizer_dir"])
    templates, eos = task["templates"], task["eos_id"]
    per_row = 1 if templates is None else len(templates)
    dtype = np.dtype(task["dtype"])
    quota = None if task["quota"] is None else Fraction(*task["quota"])
    start, stop = task["start"], task["stop"]
    writer = _ShardWriter(Path(task["out_dir"]), f"{task['id']:05d}", task["shard_tokens"], dtype)
    rows = docs = chars = tokens = 0
    pf = pq.ParquetFile(task["path"])
    groups, pos = _row_groups(pf, start, stop)
    columns = ["text"] if templates is None else ["en", "ja"]
    batches = (
        pf.iter_batches(batch_size=task["batch_rows"], row_groups=groups, columns=columns, use_threads=False)
        if groups else ()
    )  # fmt: skip
    for batch in batches:
        lo, hi = max(0, start - pos), min(batch.num_rows, stop - pos)
        pos += batch.num_rows
        if hi > lo:
            texts = _row_texts(batch.slice(lo, hi - lo), templates)
            ids = tok(texts, add_special_tokens=True)["input_ids"]
            lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
            take = hi - lo
            if quota is not None:  # whole rows while the file is short of its quota (exact, in Python ints)
                row_tokens = lengths.reshape(-1, per_row).sum(axis=1).tolist()
                before = itertools.accumulate(row_tokens[:-1], initial=tokens)
                take = sum(1 for b in before if b * quota.denominator < quota.numerator)
            n_docs = take * per_row
            flat = np.fromiter(
                itertools.chain.from_iterable(x + [eos] for x in ids[:n_docs]), dtype=np.int64,
                count=int(lengths[:n_docs].sum()),
            )  # fmt: skip
            if len(flat) and flat.max() > np.iinfo(dtype).max:
                raise DataError(
                    f"{task['path']}: token id {int(flat.max())} does not fit {dtype}: the vocabulary size given "
                    f"({task['vocab_size']}) is smaller than the tokenizer's ids"
                )
            writer.write(flat.astype(dtype), lengths[:n_docs])
            rows += take
            docs += n_docs
            tokens += len(flat)
            chars += sum(len(t) for t in texts[:n_docs])
            if take < hi - lo:
                break
        if pos >= stop:
            break
    writer.flush()
    return {"id": task["id"], "file": task["file"], "rows": rows, "docs": docs, "tokens": tokens, "chars": chars,
            "shards": writer.shards}  # fmt: skip


def _plan(files: list[Path], max_tokens: int | None, rows_per_task: int) -> tuple[list[dict], list[int]]:
    """The tokenisation tasks of a split, in stream order, and the row count of every file."""
    import pyarrow.parquet as pq

    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    total = sum(rows)
    tasks = []
    for i, (f, r) in enumerate(zip(files, rows, strict=True)):
        if r == 0:
            continue
        if max_tokens is not None:  # one task per file: its quota is counted from its first row
            tasks.append({"file": i, "path": str(f), "start": 0, "stop": r, "quota": (max_tokens * r, total)})
            continue
        for a in range(0, r, rows_per_task):
            tasks.append({"file": i, "path": str(f), "start": a, "stop": min(r, a + rows_per_task), "quota": None})
    for i, t in enumerate(tasks):
        t["id"] = i
    return tasks, rows


def _worker_init() -> None:
    # num_proc workers each running the tokenizer's own thread pool over every core would oversubscribe the machine.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _run_tasks(tasks: list[dict], num_proc: int, label: str) -> Iterator[dict]:
    """Each task's result, in task order: in this process, or in ``num_proc`` spawned workers."""
    if num_proc <= 1 or len(tasks) <= 1:
        yield from map(_tokenise_task, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold CUDA, OpenMP or tokenizer thread pools that a forked child inherits broken.
    ctx = multiprocessing.get_context("spawn")
    workers = min(num_proc, len(tasks))
    log.info("%s: %d tasks on %d worker processes", label, len(tasks), workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as ex:
        yield from ex.map(_tokenise_task, tasks)


def _build_entry(
    files: list[Path], tmp: Path, *, max_tokens: int | None, num_proc: int, rows_per_task: int, common: dict,
    label: str,
) -> dict:  # fmt: skip
    """Tokenise a split into shards under ``tmp``; returns its index (the caller writes it, last)."""
    tasks, rows = _plan(files, max_tokens, rows_per_task)
    for t in tasks:
        t.update(common, out_dir=str(tmp))
    per_file = [{"path": str(f), "rows": r, "rows_used": 0, "docs": 0, "tokens": 0, "chars": 0}
                for f, r in zip(files, rows, strict=True)]  # fmt: skip
    shards = []
    every = max(1, len(tasks) // 20)
    if sum(f.stat().st_size for f in files) < POOL_MIN_BYTES:
        num_proc = 1
    for done, res in enumerate(_run_tasks(tasks, num_proc, label), 1):
        pf = per_file[res["file"]]
        for k in ("docs", "tokens", "chars"):
            pf[k] += res[k]
        pf["rows_used"] += res["rows"]
        shards += res["shards"]
        if done % every == 0 or done == len(tasks):
            log.info("%s: %d/%d tasks, %s tokens", label, done, len(tasks), f"{sum(p['tokens'] for p in per_file):,}")
    return {
        "shards": shards,
        "files": per_file,
        **{k: sum(p[k] for p in per_file) for k in ("rows", "rows_used", "docs", "tokens", "chars")},
        "shard_tokens": common["shard_tokens"],
        "max_tokens": max_tokens,
    }


@contextmanager
def _entry_lock(cache_dir: Path, stem: str):
    """Exclusive, per cache entry, across processes: the second asker waits and then reads the first one's entry."""
    import fcntl

    with open(cache_dir / f".lock-{stem}", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process tokenising %s", stem)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _locked(cache_dir: Path, stem: str) -> bool:
    import fcntl

    lock = cache_dir / f".lock-{stem}"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def clear_stale_tmp(cache_dir: Path, stem: str | None = None) -> None:
    """Remove what killed tokenisations left behind (never a finished entry, nor a build that is running).

    ``stem``: only that entry's build directory (the caller holds its lock, as :func:`load_packed` does). ``None``:
    every build directory no live process holds the lock of, and stray temporary files.
    """
    cache_dir = Path(cache_dir)
    if stem is None:
        for p in cache_dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
    for p in cache_dir.glob(".tmp-*"):
        s = p.name[len(".tmp-") :]
        if (s == stem) if stem is not None else not _locked(cache_dir, s):
            log.info("removing %s (left by a killed tokenisation)", p)
            shutil.rmtree(p, ignore_errors=True)


def _as_files(files: Sequence[Path] | Path) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        p = Path(files)
        return sorted(p.glob("*.parquet")) if p.is_dir() else [p]
    return [Path(f) for f in files]


def load_packed(
    files: Sequence[Path] | Path,
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
    max_tokens: int | None = None,
    shard_tokens: int = SHARD_TOKENS,
    rows_per_task: int = ROWS_PER_TASK,
    batch_rows: int = BATCH_ROWS,
) -> PackedSource:
    """The packed token stream of one corpus split, from the cache or tokenised now (then published atomically).

    ``files``: the split's Parquet files in stream order (``paths.corpus_split_files``; a split directory or one file
    also works). ``max_tokens``: tokenise only a proportional prefix of every file (module doc); ``None``: all of it.
    ``build=False``: a missing cache entry is a DataError (``hint`` says how to build it) instead of tokenising here.
    ``shard_tokens``, ``rows_per_task`` and ``batch_rows`` shape the work, not the stream (they are not in the key);
    ``seq_len`` is not either: the stream is cut at read time.
    """
    files = _as_files(files)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    if shard_tokens < 1 or rows_per_task < 1 or batch_rows < 1:
        raise ValueError("shard_tokens, rows_per_task and batch_rows must be >= 1")
    dataset = files[0].parent.parent.name if files else (name or "split")
    label = f"{dataset}-{files[0].parent.name}" if files else dataset
    where = files[0].parent if files else label
    dtype = token_dtype(vocab_size)
    cache_dir = Path(cache_dir)
    key_src = {
        "version": CACHE_VERSION,
        "files": split_digests(files, cache_dir),
        "tokenizer": tokenizer_fingerprint(tokenizer_dir),
        "eos": eos_id,
        "templates": templates,
        "max_tokens": max_tokens,
        "dtype": dtype.name,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{label}-{key}"
    entry = cache_dir / stem
    if not (entry / "index.json").is_file():
        if not build:
            raise DataError(f"{where}: not tokenised yet for {Path(tokenizer_dir).name}; prepare it first: {hint}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _entry_lock(cache_dir, stem):
            if not (entry / "index.json").is_file():  # not built by whoever held the lock before us
                clear_stale_tmp(cache_dir, stem)
                tmp = cache_dir / f".tmp-{stem}"
                tmp.mkdir()
                cap = f" (at most ~{max_tokens:,} tokens)" if max_tokens is not None else ""
                log.info("tokenising %s (%d files) with %s%s", where, len(files), tokenizer_dir, cap)
                common = {"tokenizer_dir": str(tokenizer_dir), "eos_id": eos_id, "templates": templates,
                          "dtype": dtype.name, "vocab_size": vocab_size, "shard_tokens": shard_tokens,
                          "batch_rows": batch_rows}  # fmt: skip
                index = _build_entry(files, tmp, max_tokens=max_tokens, num_proc=num_proc,
                                     rows_per_task=rows_per_task, common=common, label=label)  # fmt: skip
                index.update(key=key_src, dtype=dtype.name)
                write_json_atomic(tmp / "index.json", index)  # last: a directory without it is not an entry
                shutil.rmtree(entry, ignore_errors=True)  # a damaged entry (no index) would block the rename
                os.replace(tmp, entry)
                log.info("%s: %s tokens, %s documents -> %s", label, f"{index['tokens']:,}", f"{index['docs']:,}",
                         entry)  # fmt: skip
    index = json.loads((entry / "index.json").read_text())
    stream = ShardedStream([entry / s["file"] for s in index["shards"]], [s["tokens"] for s in index["shards"]],
                           index["dtype"])  # fmt: skip
    return PackedSource(
        name or dataset, stream, seq_len, docs=index["docs"], chars=index["chars"], max_tokens=index["max_tokens"],
        rows_used=index["rows_used"], rows_total=index["rows"], entry=entry.name,
    )  # fmt: skip


def tokens_drawn(ratios: dict[str, float], n_sequences: int, seq_len: int) -> dict[str, int]:
    """Per source, the stream tokens that a run of ``n_sequences`` training sequences reads (an upper bound).

    Per block of ``B`` sequences source ``s`` gets ``n_s``; the last, partial block is counted as if ``s`` came first
    in it. ``m`` distinct sequences of a source span ``m × seq_len + 1`` tokens of its stream.
    """
    B, counts = block_counts(ratios)
    full, rest = divmod(n_sequences, B)
    seqs = {s: full * n + min(n, rest) for s, n in counts.items()}
    return {s: m * seq_len + 1 if m else 0 for s, m in seqs.items()}


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

    def __init__(self, sources: dict[str, PackedSource], ratios: dict[str, float], seed: int, offset: int = 0):
        """``offset``: global sequences to skip, so that a run continuing another reads on where that one stopped."""
        self.offset = int(offset)
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
            name, i = self.locate(self.offset + int(k))
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
