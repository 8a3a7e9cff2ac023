"""Training data: tokenisation into token shards (the stream a direct tokenizer call gives, for any workers and shard
size; uint16/uint32; a proportional prefix under a token cap; the cache reused, killed builds cleaned), the sharded
stream view, packing (EOS per document, fixed windows, nothing lost), and the mixture schedule — a pure function of
(seed, k) with exact per-block token ratios."""

import itertools
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from swallowlib.tokenizer.export import load_hf
from swallowlib.train import data as tdata
from tests.train_helpers import PROFILE, use_runs, write_config, write_split


def _src(name, n_tokens, L=8, offset=0):
    return tdata.PackedSource(name, (np.arange(n_tokens) + offset).astype(np.int32), L)


@pytest.mark.parametrize(
    "ratios, block, counts",
    [
        ({"ja": 0.9, "en": 0.1}, 10, {"ja": 9, "en": 1}),
        ({"ja": 0.81, "en": 0.1, "parallel": 0.09}, 100, {"ja": 81, "en": 10, "parallel": 9}),
        ({"en": 1.0}, 1, {"en": 1}),
        ({"ja": 1 / 3, "en": 2 / 3}, 3, {"ja": 1, "en": 2}),
        ({"ja": 0.5, "en": 0.5, "parallel": 0.0}, 2, {"ja": 1, "en": 1}),
    ],
)
def test_block_counts(ratios, block, counts):
    assert tdata.block_counts(ratios) == (block, counts)


def test_block_counts_rounds_to_the_block_size():
    B, counts = tdata.block_counts({"ja": 0.123457, "en": 0.876543})
    assert B <= 10_000 and sum(counts.values()) == B
    assert abs(counts["ja"] / B - 0.123457) < 1e-4


def test_packed_source_windows_overlap_by_one_token():
    s = _src("x", 8 * 5 + 3)
    assert s.n_sequences == 5
    seqs = s.get(np.arange(5))
    assert seqs.shape == (5, 9)
    # Targets (positions 1..L) of consecutive windows tile the stream: every token is predicted exactly once.
    assert np.array_equal(np.concatenate([q[1:] for q in seqs]), np.arange(1, 41))


def test_mixture_is_a_pure_function_of_seed_and_k():
    sources = {"ja": _src("ja", 8 * 50 + 1), "en": _src("en", 8 * 7 + 1, offset=10_000)}
    a = tdata.Mixture(sources, {"ja": 0.9, "en": 0.1}, seed=3)
    ks = list(range(200))
    forward = [a.locate(k) for k in ks]
    fresh = tdata.Mixture(sources, {"ja": 0.9, "en": 0.1}, seed=3)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(ks)
    assert {int(k): fresh.locate(int(k)) for k in shuffled} == dict(zip(ks, forward, strict=True))
    assert np.array_equal(a.batch([5, 77, 150]), fresh.batch([5, 77, 150]))
    other = tdata.Mixture(sources, {"ja": 0.9, "en": 0.1}, seed=4)
    assert [other.locate(k) for k in ks] != forward


def test_an_offset_mixture_reads_on_where_the_unshifted_one_stops():
    """A continuation (``skip_tokens``) sees the sequences after its parent's, not the parent's again."""
    sources = {"ja": _src("ja", 8 * 50 + 1), "en": _src("en", 8 * 7 + 1, offset=10_000)}
    parent = tdata.Mixture(sources, {"ja": 0.9, "en": 0.1}, seed=3)
    cont = tdata.Mixture(sources, {"ja": 0.9, "en": 0.1}, seed=3, offset=40)
    assert np.array_equal(cont.batch(range(0, 30)), parent.batch(range(40, 70)))
    assert not np.array_equal(cont.batch(range(0, 8)), parent.batch(range(0, 8)))


def test_mixture_ratios_are_exact_per_block_and_epochs_cover_each_source():
    sources = {"ja": _src("ja", 8 * 40 + 1), "en": _src("en", 8 * 6 + 1), "parallel": _src("parallel", 8 * 9 + 1)}
    m = tdata.Mixture(sources, {"ja": 0.81, "en": 0.1, "parallel": 0.09}, seed=0)
    assert m.block == 100 and m.share() == {"ja": 0.81, "en": 0.1, "parallel": 0.09}
    located = [m.locate(k) for k in range(300)]
    for b in range(3):
        names = [n for n, _ in located[b * 100 : (b + 1) * 100]]
        assert (names.count("ja"), names.count("en"), names.count("parallel")) == (81, 10, 9)
    en = [i for n, i in located if n == "en"]  # 30 draws from 6 sequences: 5 full epochs, each a permutation
    for e in range(5):
        assert sorted(en[e * 6 : (e + 1) * 6]) == list(range(6))
    assert en[:6] != en[6:12]  # a fresh order per epoch


def test_step_layout_gives_the_same_global_batch_for_any_split():
    one = [set(tdata.step_indices(s, a, 0, 1, 4, 2)) for s in range(3) for a in range(2)]
    two = [set(tdata.step_indices(s, 0, r, 2, 4, 1)) for s in range(3) for r in range(2)]
    assert [one[2 * s] | one[2 * s + 1] for s in range(3)] == [two[2 * s] | two[2 * s + 1] for s in range(3)]
    assert set().union(*one) == set(range(24))


def test_a_source_shorter_than_one_sequence_is_a_clear_error():
    with pytest.raises(tdata.DataError, match="fewer than one sequence"):
        tdata.Mixture({"en": _src("en", 5)}, {"en": 1.0}, seed=0)


def _split(tree, dataset, split):
    return sorted((tree["runs"] / PROFILE / "corpus" / dataset / split).glob("*.parquet"))


def _reference(files, tok):
    """What a direct tokenizer call gives: ``[BOS] ids [EOS]`` per document, concatenated in file then row order."""
    texts = [t for f in files for t in pd.read_parquet(f)["text"]]
    return [i for t in texts for i in tok(t, add_special_tokens=True)["input_ids"] + [tok.eos_token_id]]


def test_tokenise_pack_and_cache(tree, tmp_path, monkeypatch):
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "base"
    tok = load_hf(tok_dir)
    files = _split(tree, "ja", "train")
    assert len(files) == 2  # the helper writes this split in two shards: reading several files is exercised
    kw = dict(seq_len=16, cache_dir=tmp_path, eos_id=tok.eos_token_id, vocab_size=len(tok))
    src = tdata.load_packed(files, tok_dir, **kw)
    stream = np.asarray(src.stream)
    assert src.name == "ja" and src.docs == 60 and stream.dtype == np.uint16 and src.whole
    assert stream.tolist() == _reference(files, tok)
    assert (stream == tok.eos_token_id).sum() == 60 and (stream == tok.bos_token_id).sum() == 60
    index = json.loads((tmp_path / src.entry / "index.json").read_text())
    assert [f["rows"] for f in index["files"]] == [20, 40] and index["tokens"] == len(stream)
    assert sum(s["docs"] for s in index["shards"]) == 60

    def boom(*a, **k):
        raise AssertionError("tokenised again instead of reading the cache")

    monkeypatch.setattr(tdata, "_tokenise_task", boom)
    monkeypatch.setattr(tdata, "_build_entry", boom)
    monkeypatch.setattr(tdata, "file_sha256", boom)  # the shards' hashes are remembered too
    again = tdata.load_packed(files, tok_dir, **{**kw, "seq_len": 8, "shard_tokens": 5, "num_proc": 2})
    assert np.array_equal(np.asarray(again.stream), stream) and again.seq_len == 8
    # A split directory names the same files.
    assert tdata.load_packed(files[0].parent, tok_dir, **kw).entry == src.entry


def test_stream_is_the_same_for_any_workers_and_shard_size(tree, tmp_path, monkeypatch):
    """Worker processes (spawned), tasks of a few rows and shards of a few tokens: the same stream, in corpus order."""
    monkeypatch.setattr(tdata, "POOL_MIN_BYTES", 0)  # the test split is small: start the workers anyway
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "base"
    tok = load_hf(tok_dir)
    files = _split(tree, "ja", "train")
    kw = dict(seq_len=16, eos_id=tok.eos_token_id, vocab_size=len(tok))
    ref = _reference(files, tok)
    for i, (num_proc, shard_tokens, rows_per_task) in enumerate([(1, 1 << 24, 1 << 15), (2, 1000, 7), (1, 257, 3)]):
        src = tdata.load_packed(
            files, tok_dir, cache_dir=tmp_path / str(i), num_proc=num_proc, shard_tokens=shard_tokens,
            rows_per_task=rows_per_task, **kw,
        )  # fmt: skip
        assert np.asarray(src.stream).tolist() == ref, (num_proc, shard_tokens)
        sizes = [len(np.load(f, mmap_mode="r")) for f in src.stream.files]
        assert max(sizes) <= shard_tokens and sum(sizes) == len(ref)
    assert len(src.stream.files) > 2


def test_parallel_pairs_become_one_document_per_direction(tree, tmp_path):
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "expanded"
    tok = load_hf(tok_dir)
    templates = ["English: {en}\nJapanese: {ja}", "Japanese: {ja}\nEnglish: {en}"]
    src = tdata.load_packed(
        _split(tree, "parallel", "valid"), tok_dir, seq_len=16, cache_dir=tmp_path, eos_id=tok.eos_token_id,
        vocab_size=len(tok), templates=templates,
    )  # fmt: skip
    assert src.docs == 2 * 12 and src.name == "parallel"
    docs = tok.decode(np.asarray(src.stream).tolist()).split(tok.eos_token)
    assert docs[0].replace(tok.bos_token, "").strip().startswith("English:") and "\nJapanese:" in docs[0]
    assert docs[1].replace(tok.bos_token, "").strip().startswith("Japanese:") and "\nEnglish:" in docs[1]
    pairs = pd.read_parquet(_split(tree, "parallel", "valid")[0])
    first = [t.format(en=pairs["en"][0], ja=pairs["ja"][0]) for t in templates]
    want = [i for t in first for i in tok(t)["input_ids"] + [tok.eos_token_id]]
    assert np.asarray(src.stream[: len(want)]).tolist() == want


class _FakeTokenizer:
    """One id per character, ``base + ord(c) % 1000``, after BOS 1: known token counts, and ids as large as wanted."""

    def __init__(self, base: int):
        self.base = base

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[1] + [self.base + ord(c) % 1000 for c in t] for t in texts]}


def _fake(tmp_path, monkeypatch, base=10):
    tok_dir = tmp_path / f"fake-tokenizer-{base}"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "tokenizer.json").write_text(f"fake {base}")  # what the cache key fingerprints
    monkeypatch.setitem(tdata._TOKENIZERS, str(tok_dir), _FakeTokenizer(base))
    return tok_dir


def _write(d, *files):
    return write_split(d, [pd.DataFrame({"id": range(len(t)), "text": list(t)}) for t in files])


def test_token_ids_beyond_uint16_are_stored_as_uint32(tmp_path, monkeypatch):
    tok_dir = _fake(tmp_path, monkeypatch, base=70_000)
    files = _write(tmp_path / "corpus" / "ja" / "train", ["ab", "c"], ["de"])
    kw = dict(seq_len=2, cache_dir=tmp_path / "cache", eos_id=2)
    src = tdata.load_packed(files, tok_dir, vocab_size=71_000, shard_tokens=4, **kw)
    stream = np.asarray(src.stream)
    assert stream.dtype == np.uint32 and src.stream.dtype == np.uint32
    b = 70_000
    assert stream.tolist() == [1, b + 97, b + 98, 2, 1, b + 99, 2, 1, b + 100, b + 101, 2]
    assert src.get(np.array([1])).tolist() == [[b + 98, 2, 1]]  # a window across shard boundaries
    with pytest.raises(tdata.DataError, match="does not fit uint16"):  # a vocabulary size smaller than the ids
        tdata.load_packed(files, tok_dir, vocab_size=65_536, **kw)
    assert tdata.token_dtype(65_536) == np.uint16 and tdata.token_dtype(65_537) == np.uint32


def test_sharded_stream_slices_across_shard_boundaries(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 1, 0, 7, 3, 12]  # a zero-length shard is skipped
    parts = [rng.integers(0, 60_000, n).astype(np.uint16) for n in lengths]
    files = []
    for i, a in enumerate(parts):
        files.append(tmp_path / f"{i}.npy")
        np.save(files[-1], a)
    whole = np.concatenate(parts)
    s = tdata.ShardedStream(files, lengths, np.uint16)
    assert len(s) == len(whole) == 28 and s.shape == (28,)
    for a in range(-3, 30):
        for b in range(a, 31):
            assert np.array_equal(s[a:b], whole[a:b]), (a, b)
    assert s[4] == whole[4] and s[-1] == whole[-1] and s[5] == whole[5]
    assert np.array_equal(np.asarray(s), whole) and s[:].dtype == np.uint16
    with pytest.raises(IndexError):
        s[28]
    with pytest.raises(TypeError):
        s[::2]
    empty = tdata.ShardedStream([], [], np.uint16)
    assert len(empty) == 0 and empty[0:5].shape == (0,)
    np.save(files[0], parts[0][:3])  # a shard that no longer matches the index: a clear error
    with pytest.raises(tdata.DataError, match="damaged token cache entry"):
        tdata.ShardedStream(files, lengths, np.uint16)[0:2]


def test_mixture_over_shards_is_the_mixture_over_the_array(tmp_path):
    """The schedule only sees len() and windows: tiny shards give the batches of one array, so resume stays exact."""
    whole = (np.arange(8 * 40 + 3) % 1000).astype(np.uint16)
    cuts = [0, 9, 10, 50, 51, 200, len(whole)]
    files = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        files.append(tmp_path / f"{i}.npy")
        np.save(files[-1], whole[a:b])
    sharded = tdata.ShardedStream(files, np.diff(cuts), np.uint16)
    plain = tdata.Mixture({"ja": tdata.PackedSource("ja", whole, 8), "en": _src("en", 8 * 5 + 1)}, RATIOS, seed=1)
    shard = tdata.Mixture({"ja": tdata.PackedSource("ja", sharded, 8), "en": _src("en", 8 * 5 + 1)}, RATIOS, seed=1)
    ks = list(range(0, 300, 7)) + [299, 17, 3]
    assert np.array_equal(plain.batch(ks), shard.batch(ks))
    assert np.array_equal(tdata.eval_sequences(plain.sources[0], 5), tdata.eval_sequences(shard.sources[0], 5))


RATIOS = {"ja": 0.75, "en": 0.25}


def test_max_tokens_takes_a_proportional_prefix_of_every_file(tmp_path, monkeypatch):
    """By hand: the fake tokenizer gives len(text) + 2 tokens per document (BOS, one per character, EOS).

    File A holds 4 of the 10 rows, B 6: with max_tokens=20 their quotas are 8 and 12 tokens. A takes rows of 5 and 4
    tokens (before the second it has 5 < 8; then 9 >= 8: stop), B rows of 4, 3 and 7 (0, 4, 7 < 12; then 14: stop).
    """
    tok_dir = _fake(tmp_path, monkeypatch)
    a, b = ["aaa", "bb", "c", "dddd"], ["xx", "y", "zzzzz", "w", "v", "u"]
    files = _write(tmp_path / "corpus" / "ja" / "train", a, b)
    kw = dict(seq_len=4, eos_id=2, vocab_size=2000)

    def ids(t):
        return [1] + [10 + ord(c) for c in t] + [2]

    for batch_rows in (1, 2, 256):  # the prefix does not depend on how rows are batched
        src = tdata.load_packed(files, tok_dir, cache_dir=tmp_path / f"c{batch_rows}", max_tokens=20,
                                batch_rows=batch_rows, **kw)  # fmt: skip
        want = [i for t in ("aaa", "bb", "xx", "y", "zzzzz") for i in ids(t)]
        assert np.asarray(src.stream).tolist() == want and len(want) == 9 + 14
        assert (src.docs, src.rows_used, src.rows_total, src.max_tokens, src.whole) == (5, 5, 10, 20, False)
        assert src.chars == len("aaabbxxyzzzzz")
    index = json.loads((tmp_path / "c1" / src.entry / "index.json").read_text())
    assert [(f["rows_used"], f["tokens"]) for f in index["files"]] == [(2, 9), (3, 14)]
    whole = tdata.load_packed(files, tok_dir, cache_dir=tmp_path / "c1", **kw)
    big = tdata.load_packed(files, tok_dir, cache_dir=tmp_path / "c1", max_tokens=10_000, **kw)
    assert whole.entry != src.entry != big.entry  # the cap is part of the key
    assert np.array_equal(np.asarray(big.stream), np.asarray(whole.stream)) and big.whole and whole.whole
    assert len(whole.stream) == sum(len(t) + 2 for t in a + b)


def test_a_rewritten_shard_is_tokenised_again(tmp_path, monkeypatch):
    tok_dir = _fake(tmp_path, monkeypatch)
    d = tmp_path / "corpus" / "en" / "train"
    kw = dict(seq_len=2, cache_dir=tmp_path / "cache", eos_id=2, vocab_size=2000)
    first = tdata.load_packed(_write(d, ["ab"]), tok_dir, **kw)
    second = tdata.load_packed(_write(d, ["abc"]), tok_dir, **kw)  # same path, new content
    assert second.entry != first.entry and len(second.stream) == len(first.stream) + 1


def test_empty_split_and_missing_cache(tmp_path, monkeypatch):
    tok_dir = _fake(tmp_path, monkeypatch)
    kw = dict(seq_len=4, cache_dir=tmp_path / "cache", eos_id=2, vocab_size=2000)
    src = tdata.load_packed([], tok_dir, name="en", **kw)  # an empty split: no shards at all
    assert len(src.stream) == 0 and src.n_sequences == 0 and src.docs == 0
    assert tdata.eval_sequences(src, 4).shape == (0, 5)
    with pytest.raises(tdata.DataError, match="fewer than one sequence"):
        tdata.Mixture({"en": src}, {"en": 1.0}, seed=0)
    files = _write(tmp_path / "corpus" / "en" / "valid", ["ab"])
    with pytest.raises(tdata.DataError, match=r"en/valid: not tokenised yet .* prepare it first: make it so"):
        tdata.load_packed(files, tok_dir, build=False, hint="make it so", **kw)


def test_a_killed_build_is_cleaned_up(tmp_path, monkeypatch):
    tok_dir = _fake(tmp_path, monkeypatch)
    files = _write(tmp_path / "corpus" / "en" / "train", ["ab", "cd"])
    cache = tmp_path / "cache"
    kw = dict(seq_len=2, cache_dir=cache, eos_id=2, vocab_size=2000)
    first = tdata.load_packed(files, tok_dir, **kw)
    entry = cache / first.entry
    want = np.asarray(first.stream)
    shutil.rmtree(entry)
    junk = cache / f".tmp-{first.entry}"  # what a build killed half-way leaves: shards, a partial shard, no index
    junk.mkdir()
    (junk / "00000-00000.npy").write_bytes(b"half")
    (junk / ".00000-00001.npy.tmp").write_bytes(b"partial")
    again = tdata.load_packed(files, tok_dir, **kw)
    assert np.array_equal(np.asarray(again.stream), want) and not junk.exists()
    assert sorted(p.name for p in entry.iterdir()) == ["00000-00000.npy", "index.json"]
    other = cache / ".tmp-someone-else"  # nobody holds its lock: stale
    other.mkdir()
    (cache / ".x.npy.tmp").write_bytes(b"")
    tdata.clear_stale_tmp(cache)
    assert not other.exists() and not (cache / ".x.npy.tmp").exists() and (entry / "index.json").is_file()


def test_job_caps_training_splits_by_the_run_budget(tree, tmp_path):
    """train.data_margin: the run's training split is tokenised as far as it reads it x the margin (validation whole),
    and provenance records the cap and what the run reads."""
    from swallowlib.config import ConfigError, load_config
    from swallowlib.train.job import build_job, source_budgets

    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"] / PROFILE / "corpus", runs / PROFILE / "corpus")
    shutil.copytree(tree["runs"] / PROFILE / "tokenizer", runs / PROFILE / "tokenizer")
    config = write_config(tree["config"], tmp_path / "m.yaml", lambda d: d["train"].update(data_margin=1.25))
    cfg = load_config(config)
    rc = cfg.train.runs["cpt"]  # ja 0.9, en 0.1 of 8 steps x 4 sequences of 32 tokens
    budgets = source_budgets(cfg, rc)
    # 32 sequences = 3 blocks of 10 + 2: ja at most 27 + 2, en at most 3 + 1 sequences
    assert budgets == {"ja": {"drawn": 29 * 32 + 1, "max_tokens": math.ceil((29 * 32 + 1) * 1.25)},
                       "en": {"drawn": 4 * 32 + 1, "max_tokens": math.ceil((4 * 32 + 1) * 1.25)}}  # fmt: skip
    with use_runs(runs):
        job = build_job(load_config(config), "base", progress=False)
    data = job.provenance["resolved"]["data"]["en"]
    assert data["max_tokens"] == math.ceil((16 * 4 * 32 + 1) * 1.25) and data["drawn"] == 16 * 4 * 32 + 1
    assert data["rows_used"] < data["rows_total"] == 60 and not data["whole_split"]
    assert data["max_tokens"] <= data["tokens"] and data["sequences"] * 32 >= data["drawn"] - 1
    assert len(job.eval_data["en"]) == 2
    with pytest.raises(ConfigError, match=r"train\.data_margin: expected null \(whole splits\) or a factor >= 1\.0"):
        load_config(write_config(tree["config"], tmp_path / "b.yaml", lambda d: d["train"].update(data_margin=0.9)))
    assert load_config(tree["config"]).train.data_margin is None  # the default: whole splits


def test_eval_sequences_are_fixed():
    s = _src("x", 8 * 20 + 1)
    a, b = tdata.eval_sequences(s, 4), tdata.eval_sequences(s, 4)
    assert a.shape == (4, 9) and np.array_equal(a, b)
    assert tdata.eval_sequences(s, 0).shape == (0, 9)
