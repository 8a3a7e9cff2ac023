"""swallowlib.corpus.shards: streaming a column over Parquet shards and the seeded reservoir sample.

Run: .venv/bin/python -m pytest tests/test_shards.py -q
"""

from __future__ import annotations

import doctest
import itertools
import logging
import random
from collections import Counter
from math import comb

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swallowlib import paths
from swallowlib.corpus import shards
from swallowlib.corpus.shards import iter_column, reservoir_sample, sample_lines, sample_texts


def _write_shards(d, texts, cuts, column="text"):
    """``texts`` written as consecutive shards ``00000.parquet``… cut before the indices in ``cuts``."""
    d.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, len(texts)]
    files = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        f = d / f"{i:05d}.parquet"
        pq.write_table(pa.table({"id": list(range(a, b)), column: pa.array(texts[a:b], pa.string())}), f)
        files.append(f)
    return files


def test_module_doctests():
    assert doctest.testmod(shards).failed == 0


def test_reservoir_returns_a_small_population_whole_and_in_order():
    items = [f"x{i}" for i in range(7)]
    for seed in range(5):
        assert reservoir_sample(items, 7, seed) == items
        assert reservoir_sample(iter(items), 100, seed) == items
    assert reservoir_sample([], 3, 0) == []
    assert reservoir_sample(items, 0, 0) == []
    with pytest.raises(ValueError, match="non-negative"):
        reservoir_sample(items, -1, 0)


def test_reservoir_known_answer():
    # Algorithm R, k = 3 over 0..5, seed 1. Draws for items 3, 4, 5: randrange(4), randrange(5), randrange(6).
    rng = random.Random(1)
    draws = [rng.randrange(i + 1) for i in (3, 4, 5)]
    assert draws == [1, 4, 0]
    # 3 replaces slot 1 -> [0, 3, 2]; 4 draws 4 >= 3, dropped; 5 replaces slot 0 -> [5, 3, 2]; stream order:
    assert reservoir_sample(range(6), 3, seed=1) == [2, 3, 5]
    assert reservoir_sample(range(6), 3, seed=1) == reservoir_sample(list(range(6)), 3, seed=1)


def test_reservoir_sample_is_a_subset_in_stream_order():
    items = list(range(1000))
    for seed in range(10):
        s = reservoir_sample(items, 50, seed)
        assert len(s) == len(set(s)) == 50 and s == sorted(s)
    assert reservoir_sample(items, 50, 1) != reservoir_sample(items, 50, 2)


def test_reservoir_is_uniform():
    """Every item is kept with probability k/n and every k-subset turns up (deterministic: fixed seeds)."""
    n, k, trials = 8, 3, 4000
    kept: Counter[int] = Counter()
    subsets: Counter[tuple[int, ...]] = Counter()
    for seed in range(trials):
        s = reservoir_sample(range(n), k, seed)
        kept.update(s)
        subsets[tuple(s)] += 1
    for i in range(n):
        # expected 1500 each; the standard deviation is about 31, so the bound is loose (about 5 sigma)
        assert abs(kept[i] / trials - k / n) < 0.04, (i, kept[i])
    assert len(subsets) == comb(n, k)
    expected = trials / comb(n, k)  # about 71 each
    assert all(0.4 * expected < c < 1.8 * expected for c in subsets.values()), subsets


def test_iter_column_streams_shards_in_order_and_skips_nulls(tmp_path, caplog):
    texts = ["a", None, "b", "", "c", None, "d"]
    files = _write_shards(tmp_path / "s", texts, [2, 5])
    with caplog.at_level(logging.WARNING, logger="swallowlib.corpus.shards"):
        for batch_rows in (1, 2, 1000):
            assert list(iter_column(files, batch_rows=batch_rows)) == ["a", "b", "", "c", "d"]
    warnings = [r for r in caplog.records if "skipped 2 null" in r.getMessage()]
    assert len(warnings) == 3  # once per pass, not once per null or per shard
    assert list(iter_column(files, column="id")) == []  # integers are not text: all skipped
    assert list(iter_column([])) == []


def test_iter_column_missing_column_is_a_clear_error(tmp_path):
    files = _write_shards(tmp_path / "s", ["a"], [])
    with pytest.raises(KeyError, match=r"00000\.parquet: no column 'ja' \(it has id, text\)"):
        list(iter_column(files, column="ja"))
    with pytest.raises(ValueError, match="batch_rows"):
        list(iter_column(files, batch_rows=0))


def test_samples_do_not_depend_on_sharding_or_batch_rows(tmp_path):
    rng = random.Random(0)
    texts = [
        "\n".join(f"doc{d} line{i}" + ("" if rng.random() < 0.8 else "\n  \n") for i in range(rng.randrange(1, 6)))
        for d in range(300)
    ]
    one = _write_shards(tmp_path / "one", texts, [])
    many = _write_shards(tmp_path / "many", texts, [1, 2, 50, 50, 173, 299])  # includes an empty shard
    all_lines = [ln for t in texts for ln in t.splitlines() if ln.strip()]
    for seed in (0, 7):
        ref_lines = sample_lines(one, 40, seed)
        ref_docs = sample_texts(one, 25, seed)
        assert ref_lines == reservoir_sample(all_lines, 40, seed)
        assert ref_docs == reservoir_sample(texts, 25, seed)
        for files, batch_rows in ((one, 1), (one, 7), (many, 1), (many, 3), (many, 10_000)):
            assert sample_lines(files, 40, seed, batch_rows=batch_rows) == ref_lines
            assert sample_texts(files, 25, seed, batch_rows=batch_rows) == ref_docs
    assert sample_lines(many, 10**6, 0) == all_lines  # fewer lines than asked for: all of them, in order


def test_sample_lines_and_texts_skip_blanks(tmp_path):
    texts = ["one\n\n  two  \n", "   ", "three", "\n"]
    files = _write_shards(tmp_path / "s", texts, [1])
    assert sample_lines(files, 10, 0) == ["one", "  two  ", "three"]
    assert sample_texts(files, 10, 0) == ["one\n\n  two  \n", "three"]


def test_one_side_of_the_pairs(tmp_path):
    d = tmp_path / "parallel"
    d.mkdir()
    pq.write_table(pa.table({"en": ["hello", "bye"], "ja": ["こんにちは", "さようなら"]}), d / "00000.parquet")
    assert sample_texts(sorted(d.glob("*.parquet")), 5, 0, column="ja") == ["こんにちは", "さようなら"]


def test_corpus_split_files_layout(tmp_path, monkeypatch):
    """The split directory the consumers read: shards in file-name order, an empty split, a missing one."""
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    d = paths.corpus_split_dir("p", "ja", "test")
    _write_shards(d, ["b0", "b1", "a0"], [2])  # 00000 holds b0 b1, 00001 holds a0
    assert sample_texts(paths.corpus_split_files("p", "ja", "test"), 5, 0) == ["b0", "b1", "a0"]
    paths.corpus_split_dir("p", "ja", "valid").mkdir()
    assert sample_lines(paths.corpus_split_files("p", "ja", "valid"), 5, 0) == []
    with pytest.raises(FileNotFoundError, match="missing corpus split"):
        paths.corpus_split_files("p", "en", "test")
