"""The reachable-only expansion (swallowlib.tokenizer.continued): continued BPE merges on top of a base model.

Run: .venv/bin/pytest tests/test_tokenizer_continued.py -q
"""

from __future__ import annotations

import pytest
import sentencepiece as spm

from swallowlib.tokenizer import continued
from swallowlib.tokenizer.merge import CONTROL, WS, classify_reachability, is_japanese_char, load_proto, merge_models
from tests.samples import BATTERY, EN, JA, JA_HELDOUT
from tests.samples import spm_processor as _sp
from tests.samples import train_spm as _train

N_NEW = 120


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("continued")
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    out = d / "continued.model"
    rep = continued.extend_model(base, JA * 5, out, N_NEW, progress=False)
    return base, out, rep


def test_base_entries_identical_and_pieces_appended_in_order(models):
    base, out, rep = models
    b, m = load_proto(base), load_proto(out)
    assert [p.SerializeToString() for p in m.pieces[: len(b.pieces)]] == [p.SerializeToString() for p in b.pieces]
    new = m.pieces[len(b.pieces) : len(b.pieces) + rep.added]
    assert [p.piece for p in new] == rep.pieces and rep.added == N_NEW == rep.added_chars + rep.added_merges
    min_base = min(p.score for p in b.pieces)
    scores = [p.score for p in new]
    assert all(s < min_base for s in scores) and scores == sorted(scores, reverse=True) and len(set(scores)) == N_NEW
    base_set = {p.piece for p in b.pieces}
    for p in rep.pieces:
        assert p not in base_set
        body = p[1:] if p.startswith(WS) else p
        assert body and all(is_japanese_char(c) for c in body), p  # "▁" only as a prefix, never digits
    pad = m.pieces[len(b.pieces) + rep.added :]
    assert all(p.type == CONTROL for p in pad) and len(m.pieces) % 8 == 0 == rep.final_size % 8


def test_every_piece_reachable(models):
    _, out, rep = models
    assert rep.unreachable == 0
    assert classify_reachability(out, rep.pieces) == {}
    sp = _sp(out)
    # Every merge is emitted on the training text, or is an intermediate step of a later merge (BPE's "ァイ" on
    # the way to "ファイル").
    emitted = {sp.id_to_piece(i) for ids in sp.encode(JA) for i in ids}
    merges = [p for p in rep.pieces if len(p) > 1]
    assert merges
    for k, piece in enumerate(merges):
        assert piece in emitted or any(piece in later for later in merges[k + 1 :]), piece


def test_english_and_battery_identical(models):
    base, out, _ = models
    a, b = _sp(base), _sp(out)
    for text in BATTERY:
        assert a.encode(text) == b.encode(text), text


def test_round_trip(models):
    _, out, _ = models
    sp = _sp(out)
    for text in JA + JA_HELDOUT + BATTERY + ["日本語とEnglishの混在 😀\t\t  ", "\n\n改行\n"]:
        if WS in text:  # a literal "▁" decodes to a space in any SentencePiece model, base included
            continue
        assert sp.decode(sp.encode(text)) == text, text


def test_simulated_savings_equal_sentencepiece(models):
    """The trainer's own bookkeeping predicts exactly how many tokens SentencePiece saves on the training lines."""
    base, out, rep = models
    a, b = _sp(base), _sp(out)
    before = sum(map(len, a.encode(JA * 5)))
    after = sum(map(len, b.encode(JA * 5)))
    assert rep.train_tokens_before - rep.train_tokens_after == before - after > 0
    assert continued.learn_pieces(base, JA * 5, N_NEW, progress=False).pieces == rep.pieces  # deterministic


def test_greedy_prefers_saving_more(tmp_path):
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    # "猫" appears 30 times, as a byte-fallback character (3 tokens each): making it a piece saves 60 tokens.
    rep = continued.learn_pieces(base, ["猫" * 3] * 10 + ["犬"], 1, progress=False)
    assert rep.pieces == ["猫"]
    rep = continued.learn_pieces(base, ["猫" * 3] * 10 + ["犬"], 3, progress=False)
    assert rep.pieces[:2] == ["猫", "猫猫"] and rep.pieces[2] in {"▁猫猫", "猫猫猫"}  # 10 each


def test_forced_chars_first_and_counted(tmp_path):
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    rep = continued.learn_pieces(base, JA, 10, forced_chars=["ゐ", "ゑ", "a"], progress=False)
    assert rep.pieces[:2] == ["ゐ", "ゑ"] and rep.forced_chars == 2 and rep.added == 10  # "a" is in the base


def test_japanese_runs_split_at_non_japanese(tmp_path):
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    runs = continued.japanese_runs(base, ["日本 is 日本語 ok", "x12３４日"])
    assert runs[(WS, "日", "本")] == 1 and runs[(WS, "日", "本", "語")] == 1
    assert all(not any(c.isdigit() for s in r for c in s) for r in runs)  # digits never join a run
    assert (("日",) in runs) and not any(r == (WS,) for r in runs)


def test_more_compression_than_naive_merge_at_equal_size(tmp_path):
    """At the same number of added pieces, fewer tokens than the naive merge on the text both were trained on.

    (Twelve sentences are too few to measure generalisation; the stage compares the two on held-out text.)
    """
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    extra = _train(JA * 20, 700, normalization_rule_name="nmt_nfkc")
    naive = merge_models(base, extra, tmp_path / "naive.model", pad_to=1)
    rep = continued.extend_model(base, JA * 20, tmp_path / "cont.model", naive.added, pad_to=1, progress=False)
    assert rep.added == naive.added
    a = spm.SentencePieceProcessor(model_file=str(tmp_path / "naive.model"))
    b = spm.SentencePieceProcessor(model_file=str(tmp_path / "cont.model"))
    assert sum(map(len, b.encode(JA))) < sum(map(len, a.encode(JA)))


def test_bad_input(tmp_path):
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    with pytest.raises(ValueError, match="n_pieces"):
        continued.learn_pieces(base, JA, -1)
    with pytest.raises(ValueError, match="pad_to"):
        continued.extend_model(base, JA, tmp_path / "x.model", 5, pad_to=0)
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        continued.learn_pieces(b"garbage", JA, 5)
    assert not (tmp_path / "x.model").exists()
