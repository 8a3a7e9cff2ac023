"""Read corpus splits as streams: one column over a split's Parquet shards, and seeded samples of it in O(k) memory.

Stage 01 writes each split as a directory of shards (``runs/<profile>/corpus/<dataset>/<split>/<NNNNN>.parquet``;
:func:`swallowlib.paths.corpus_split_files` lists them in shard order). The later stages want a bounded sample of a
split (SentencePiece training lines, held-out documents), never the split itself, so nothing here holds more than
one record batch plus the sample:

- :func:`iter_column` yields one column's strings, shard by shard, batch by batch (nulls and non-strings skipped,
  counted, logged once);
- :func:`reservoir_sample` is a seeded one-pass sample of at most ``k`` items of any iterable;
- :func:`sample_lines` / :func:`sample_texts` sample non-empty lines / non-blank documents of a split.

A sample depends only on the stream of values and the seed: not on how the split is cut into shards, nor on
``batch_rows``. Typical use (the tokenizer stage)::

    from swallowlib import paths
    from swallowlib.corpus import shards

    files = paths.corpus_split_files("tiny", "ja", "train")
    lines = shards.sample_lines(files, 200_000, seed=0)

>>> sample_texts([], 3, seed=0)          # an empty split (no shards) is an empty sample
[]
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Rows per record batch read from a shard: documents can be long (whole manuals), so a batch stays small enough
#: that a few of them never matter next to the sample itself.
BATCH_ROWS = 1024


def iter_column(files: Iterable[str | Path], column: str = "text", batch_rows: int = BATCH_ROWS) -> Iterator[str]:
    """The string values of ``column`` over the Parquet ``files``, in file then row order.

    Nulls and values that are not strings are skipped; how many is logged once, when the stream ends. A shard without
    the column is a ``KeyError`` naming the shard and the columns it has (pyarrow would silently read nothing).
    """
    import pyarrow.parquet as pq

    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    skipped = 0
    for f in files:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if column not in names:
            raise KeyError(f"{f}: no column {column!r} (it has {', '.join(names)})")
        # one thread: pyarrow's threaded reader decodes row groups ahead and holds them
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[column], use_threads=False):
            for v in batch.column(0).to_pylist():
                if isinstance(v, str):
                    yield v
                else:
                    skipped += 1
    if skipped:
        log.warning("corpus shards: skipped %d null or non-string values of column %r", skipped, column)


def reservoir_sample(items: Iterable[T], k: int, seed: int) -> list[T]:
    """A uniform random sample of at most ``k`` of ``items``, in one pass and O(k) memory, in stream order.

    Vitter's Algorithm R with ``random.Random(seed)``: the first ``k`` items fill the reservoir; item ``i`` (0-based)
    after that draws ``j = randrange(i + 1)`` and replaces slot ``j`` when ``j < k``. Every k-subset is then equally
    likely. One draw per item, and the draws depend only on the item's position, so the result is the same however
    the items were batched or sharded. The survivors come back in the order they arrived (a population of at most
    ``k`` comes back whole and unchanged).

    Worked example, k = 2 of ``a b c d e`` with seed 0. The draws for items 2, 3, 4 (``c d e``) are:

    >>> rng = random.Random(0)
    >>> [rng.randrange(i + 1) for i in (2, 3, 4)]
    [1, 3, 0]

    so ``c`` replaces slot 1 (``b``), ``d`` draws 3 >= 2 and is dropped, ``e`` replaces slot 0 (``a``); the
    reservoir holds ``e c``, returned in stream order:

    >>> reservoir_sample("abcde", 2, seed=0)
    ['c', 'e']
    >>> reservoir_sample("abc", 5, seed=0)
    ['a', 'b', 'c']
    """
    if k < 0:
        raise ValueError(f"sample size must be non-negative, got {k}")
    if k == 0:
        return []
    rng = random.Random(seed)
    # (stream position, item): the position puts the survivors back in stream order at the end.
    slots: list[tuple[int, T]] = []
    for i, x in enumerate(items):
        if i < k:
            slots.append((i, x))
        else:
            j = rng.randrange(i + 1)
            if j < k:
                slots[j] = (i, x)
    slots.sort(key=lambda s: s[0])
    return [x for _, x in slots]


def iter_lines(texts: Iterable[str]) -> Iterator[str]:
    """The non-blank lines of ``texts`` (``str.splitlines``; a line of only whitespace is blank), unstripped.

    >>> list(iter_lines(["one\\n\\n two ", "  ", "three"]))
    ['one', ' two ', 'three']
    """
    for t in texts:
        for ln in t.splitlines():
            if ln.strip():
                yield ln


def sample_lines(
    files: Iterable[str | Path], n: int, seed: int, column: str = "text", batch_rows: int = BATCH_ROWS
) -> list[str]:
    """A seeded sample of at most ``n`` non-blank lines of the documents in ``files`` (for SentencePiece)."""
    return reservoir_sample(iter_lines(iter_column(files, column, batch_rows)), n, seed)


def sample_texts(
    files: Iterable[str | Path], n: int, seed: int, column: str = "text", batch_rows: int = BATCH_ROWS
) -> list[str]:
    """A seeded sample of at most ``n`` values of ``column`` (documents, or one side of the pairs) in ``files``.

    Blank values are left out of the population: they carry no text to measure and would only shrink the sample.
    """
    return reservoir_sample((t for t in iter_column(files, column, batch_rows) if t.strip()), n, seed)
