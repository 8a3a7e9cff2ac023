"""Training data: packing (EOS per document, fixed windows, nothing lost), the `datasets` tokenisation cache, and
the mixture schedule — a pure function of (seed, k) with exact per-block token ratios."""

import numpy as np
import pytest

from swallowlib.tokenizer.export import load_hf
from swallowlib.train import data as tdata
from tests.train_helpers import PROFILE, shared_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return shared_tree(tmp_path_factory)


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


def test_tokenise_pack_and_cache(tree, tmp_path, monkeypatch):
    corpus = tree["runs"] / PROFILE / "corpus"
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "base"
    tok = load_hf(tok_dir)
    kw = dict(seq_len=16, cache_dir=tmp_path, eos_id=tok.eos_token_id, vocab_size=len(tok))
    src = tdata.load_packed(corpus / "en" / "train.parquet", tok_dir, **kw)
    stream = np.asarray(src.stream)
    assert src.docs == 60 and stream.dtype == np.uint16
    assert (stream == tok.eos_token_id).sum() == 60 and stream[-1] == tok.eos_token_id  # EOS closes every doc
    assert (stream == tok.bos_token_id).sum() == 60 and stream[0] == tok.bos_token_id  # BOS from the tokenizer
    import pandas as pd

    first = pd.read_parquet(corpus / "en" / "train.parquet")["text"][0]
    first_ids = tok(first)["input_ids"] + [tok.eos_token_id]
    assert stream[: len(first_ids)].tolist() == first_ids

    def boom(*a, **k):
        raise AssertionError("tokenised again instead of reading the cache")

    monkeypatch.setattr(tdata, "_stream_from_parquet", boom)
    again = tdata.load_packed(corpus / "en" / "train.parquet", tok_dir, **{**kw, "seq_len": 8})
    assert np.array_equal(np.asarray(again.stream), stream) and again.seq_len == 8


def test_parallel_pairs_become_one_document_per_direction(tree, tmp_path):
    corpus = tree["runs"] / PROFILE / "corpus"
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "expanded"
    tok = load_hf(tok_dir)
    templates = ["English: {en}\nJapanese: {ja}", "Japanese: {ja}\nEnglish: {en}"]
    src = tdata.load_packed(
        corpus / "parallel" / "valid.parquet", tok_dir, seq_len=16, cache_dir=tmp_path, eos_id=tok.eos_token_id,
        vocab_size=len(tok), templates=templates,
    )  # fmt: skip
    assert src.docs == 2 * 12
    docs = tok.decode(np.asarray(src.stream).tolist()).split(tok.eos_token)
    assert docs[0].replace(tok.bos_token, "").strip().startswith("English:") and "\nJapanese:" in docs[0]
    assert docs[1].replace(tok.bos_token, "").strip().startswith("Japanese:") and "\nEnglish:" in docs[1]


def test_parallel_tokenisation_matches_one_process(tree, tmp_path):
    """num_proc workers must give the same stream, in corpus order."""
    corpus = tree["runs"] / PROFILE / "corpus"
    tok_dir = tree["runs"] / PROFILE / "tokenizer" / "base"
    tok = load_hf(tok_dir)
    kw = dict(seq_len=16, eos_id=tok.eos_token_id, vocab_size=len(tok))
    one = tdata.load_packed(corpus / "ja" / "train.parquet", tok_dir, cache_dir=tmp_path / "a", num_proc=1, **kw)
    two = tdata.load_packed(corpus / "ja" / "train.parquet", tok_dir, cache_dir=tmp_path / "b", num_proc=2, **kw)
    assert np.array_equal(np.asarray(one.stream), np.asarray(two.stream))


def test_eval_sequences_are_fixed():
    s = _src("x", 8 * 20 + 1)
    a, b = tdata.eval_sequences(s, 4), tdata.eval_sequences(s, 4)
    assert a.shape == (4, 9) and np.array_equal(a, b)
    assert tdata.eval_sequences(s, 0).shape == (0, 9)
