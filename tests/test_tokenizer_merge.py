"""Invariants of the Swallow-style vocabulary merge (swallowlib.tokenizer.merge), on tiny models trained here.

Run: .venv/bin/pytest tests/test_tokenizer_merge.py -q
"""

from __future__ import annotations

import random

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib.tokenizer.merge import (
    CONTROL,
    NORMAL,
    classify_reachability,
    is_ascii_piece,
    is_japanese_char,
    load_proto,
    merge_models,
    unreachable_pieces,
)
from tests.samples import BATTERY, EN, JA, JA_HELDOUT
from tests.samples import spm_processor as _sp
from tests.samples import train_spm as _train


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    base = _train(EN * 20, 420, normalization_rule_name="identity")
    extra = _train(JA * 20, 700, normalization_rule_name="nmt_nfkc")
    out = d / "merged.model"
    report = merge_models(base, extra, out)
    return base, extra, out, report


def test_base_entries_byte_identical(models):
    base, _, out, rep = models
    b, m = load_proto(base), load_proto(out.read_bytes())
    assert rep.base_size == len(b.pieces) and rep.first_new_id == len(b.pieces)
    for i, p in enumerate(b.pieces):
        assert m.pieces[i].SerializeToString() == p.SerializeToString(), i
    assert m.normalizer_spec.SerializeToString() == b.normalizer_spec.SerializeToString()
    assert m.trainer_spec.byte_fallback and m.trainer_spec.split_digits
    sb, sm = _sp(base), _sp(out)
    assert all(sb.id_to_piece(i) == sm.id_to_piece(i) for i in range(sb.get_piece_size()))


def test_new_pieces_scores_types_padding(models):
    base, extra, out, rep = models
    b, e, m = load_proto(base), load_proto(extra), load_proto(out)
    new = m.pieces[len(b.pieces): len(b.pieces) + rep.added]
    pad = m.pieces[len(b.pieces) + rep.added:]
    assert rep.added > 50
    min_base = min(p.score for p in b.pieces)
    assert all(p.type == NORMAL and p.score < min_base for p in new)
    assert [p.score for p in new] == sorted((p.score for p in new), reverse=True)  # extra order kept
    order = {p.piece: i for i, p in enumerate(e.pieces)}
    assert [order[p.piece] for p in new] == sorted(order[p.piece] for p in new)
    base_set = {p.piece for p in b.pieces}
    for p in new:
        assert p.piece not in base_set
        assert not is_ascii_piece(p.piece) and any(is_japanese_char(c) for c in p.piece)
    # padding: CONTROL, clearly named, never produced
    assert len(pad) == rep.padding < 8 and all(p.type == CONTROL and p.piece.startswith("<unused_") for p in pad)
    assert len(m.pieces) == rep.final_size and rep.final_size % 8 == 0 and rep.multiple_ok
    assert m.trainer_spec.vocab_size == rep.final_size
    assert len({p.piece for p in m.pieces}) == len(m.pieces)
    assert sum(rep.skipped.values()) + rep.added == rep.extra_size
    assert rep.skipped["ascii"] > 0 and rep.skipped["in_base"] > 0 and rep.skipped["non_normal"] >= 256 + 3


def test_english_and_non_japanese_text_identical(models):
    base, _, out, rep = models
    sb, sm = _sp(base), _sp(out)
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + list("\t\n▁éüßñ→—“”€😀🇯🇵Жλ ") + ["  ", "the", "ing"]
    texts = BATTERY + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(400)]
    new = rep.added_pieces
    for t in texts:
        norm = sm.normalize(t)
        assert not any(p in norm for p in new)  # the precondition of the invariance argument
        assert sb.encode(t) == sm.encode(t), t
        assert all(i < rep.first_new_id for i in sm.encode(t))


def test_scores_distinct_in_float32_below_huge_negative(models, tmp_path):
    """Llama 2 scores its whitespace runs -1e9 (float32 steps of 64 there): new scores must still be distinct."""
    base, extra, _, _ = models
    b = load_proto(base)
    b.pieces[-1].score = -1e9
    rep = merge_models(b.SerializeToString(), extra, tmp_path / "h.model")
    m = load_proto(tmp_path / "h.model")
    scores = [p.score for p in m.pieces[rep.first_new_id: rep.first_new_id + rep.added]]
    assert scores[0] < -1e9 and all(x > y for x, y in zip(scores, scores[1:], strict=False))


def test_ascii_pieces_would_break_english(models, tmp_path):
    """The negative control: without the piece rule English tokenization changes (so the test above can fail)."""
    base, extra, _, _ = models
    out = tmp_path / "all.model"
    rep = merge_models(base, extra, out, exclude_ascii=False, japanese_only=False)
    assert rep.skipped["ascii"] == 0
    sb, sm = _sp(base), _sp(out)
    changed = [t for t in BATTERY if sb.encode(t) != sm.encode(t)]
    assert changed


def test_round_trip_and_japanese_shorter(models):
    base, _, out, _ = models
    sb, sm = _sp(base), _sp(out)
    texts = JA + JA_HELDOUT + BATTERY + [
        "日本語と English の mixed テキスト 123",
        "  全角スペース　と  半角スペース   の並び\t\tタブ",
        "絵文字😀と漢字「鬱」と\x00制御\x07文字\n改行",
        "\n\n先頭の改行",
    ]
    for t in texts:
        if "▁" in t:  # SentencePiece decodes a literal U+2581 as a space, in the base model too
            assert sb.decode(sb.encode(t)) == sm.decode(sm.encode(t)) == t.replace("▁", " ")
            continue
        assert sm.decode(sm.encode(t)) == t, repr(t)
    n_base = sum(len(x) for x in sb.encode(JA_HELDOUT))
    n_merged = sum(len(x) for x in sm.encode(JA_HELDOUT))
    assert n_merged < 0.8 * n_base


def test_unreachable_planted_and_reachable_not_flagged(models, tmp_path):
    base, extra, out, rep = models
    # every new piece actually produced on Japanese text is reported reachable (no false alarm)
    sm = _sp(out)
    used = {sm.id_to_piece(i) for ids in sm.encode(JA + JA_HELDOUT) for i in ids if i >= rep.first_new_id}
    assert used and not used & set(rep.unreachable)
    reachable = [p for p in rep.added_pieces if p not in rep.unreachable]
    assert unreachable_pieces(out, reachable) == []
    # plant pieces whose halves are absent: characters never seen, in no sub-piece of the vocabulary
    e = load_proto(extra)
    for s in ("鬱薔薇", "▁躑躅"):
        e.pieces.add(piece=s, score=-1e4)
    planted = e.SerializeToString()
    rep2 = merge_models(base, planted, tmp_path / "p.model")
    assert {"鬱薔薇", "▁躑躅"} <= set(rep2.unreachable)
    assert classify_reachability(tmp_path / "p.model", ["鬱薔薇"]) == {"鬱薔薇": "no_split"}
    rep3 = merge_models(base, planted, tmp_path / "d.model", drop_unreachable=True)
    m3 = load_proto(tmp_path / "d.model")
    assert "鬱薔薇" not in {p.piece for p in m3.pieces}
    assert rep3.skipped["unreachable"] == len(rep2.unreachable) and rep3.unreachable == rep2.unreachable
    assert rep3.final_size % 8 == 0
    # dropping unreachable pieces changes no segmentation (compare piece strings, ids shift)
    s2, s3 = _sp(tmp_path / "p.model"), _sp(tmp_path / "d.model")
    for t in JA + JA_HELDOUT + ["鬱薔薇 躑躅"]:
        assert s2.encode(t, out_type=str) == s3.encode(t, out_type=str)


def _hand_bpe(pieces: list[tuple[str, float]]) -> bytes:
    m = sp_pb2.ModelProto()
    m.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(pieces) + 3
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    m.pieces.add(piece="<unk>", score=0, type=sp_pb2.ModelProto.SentencePiece.UNKNOWN)
    m.pieces.add(piece="<s>", score=0, type=CONTROL)
    m.pieces.add(piece="</s>", score=0, type=CONTROL)
    for p, s in pieces:
        m.pieces.add(piece=p, score=s)
    return m.SerializeToString()


def test_blocked_piece_known_answer():
    """abcd is buildable as ab+cd, but bc (higher score) always merges first: it is never produced."""
    model = _hand_bpe([("a", -1), ("b", -1), ("c", -1), ("d", -1), ("bc", -2), ("ab", -3), ("cd", -4),
                       ("abcd", -5), ("xyz", -7)])
    assert spm.SentencePieceProcessor(model_proto=model).encode("abcd", out_type=str) == ["a", "bc", "d"]
    got = classify_reachability(model, ["ab", "bc", "cd", "abcd", "xyz"])
    assert got == {"abcd": "blocked", "xyz": "no_split"}
    assert unreachable_pieces(model, ["abcd", "a", "xyz"]) == ["abcd", "xyz"]


def test_merge_known_answer(tmp_path):
    """Two hand-written models whose merge can be worked out on paper (ids, pieces, scores, padding, encodings).

    base:  0 <unk>  1 <s>  2 </s>  3 a -1  4 b -2  5 東 -3  6 京 -4  7 都 -5  8 ab -6     (lowest score -6)
    extra: 東 京 都 (in base), 東京, 東京都, 京都 (new, in this order), ab (in base), ba (ASCII), é (no Japanese)
    merged: 9 東京 -7  10 東京都 -8  11 京都 -9  (one below the lowest base score, then one lower per rank), then
    12..15 <unused_0..3> (CONTROL, score 0) up to 16 = 2 x 8. "東京都": 東+京 (-7) beats 京+都 (-9), then 東京+都."""
    base = _hand_bpe([("a", -1), ("b", -2), ("東", -3), ("京", -4), ("都", -5), ("ab", -6)])
    extra = _hand_bpe([("東", -1), ("京", -1), ("都", -1), ("東京", -2), ("東京都", -3), ("京都", -4), ("ab", -5),
                       ("ba", -6), ("é", -7)])  # fmt: skip
    rep = merge_models(base, extra, tmp_path / "m.model")
    assert (rep.base_size, rep.extra_size, rep.added, rep.first_new_id, rep.min_base_score) == (9, 12, 3, 9, -6.0)
    assert rep.skipped == {"in_base": 4, "non_normal": 3, "ascii": 1, "no_japanese": 1, "unreachable": 0}
    assert (rep.padding, rep.final_size, rep.unreachable, rep.added_pieces) == (4, 16, [], ["東京", "東京都", "京都"])
    m = load_proto(tmp_path / "m.model")
    assert [(p.piece, p.score, p.type) for p in m.pieces[9:]] == [
        ("東京", -7.0, NORMAL), ("東京都", -8.0, NORMAL), ("京都", -9.0, NORMAL),
        ("<unused_0>", 0.0, CONTROL), ("<unused_1>", 0.0, CONTROL), ("<unused_2>", 0.0, CONTROL),
        ("<unused_3>", 0.0, CONTROL),
    ]  # fmt: skip
    assert m.trainer_spec.vocab_size == 16
    sb, sm = _sp(base), _sp(tmp_path / "m.model")
    assert [sm.id_to_piece(i) for i in range(9)] == ["<unk>", "<s>", "</s>", "a", "b", "東", "京", "都", "ab"]
    assert sb.encode("東京都", out_type=str) == ["東", "京", "都"] and sb.encode("東京都") == [5, 6, 7]
    assert sm.encode("東京都", out_type=str) == ["東京都"] and sm.encode("東京都") == [10]
    assert sb.encode("京都東京") == [6, 7, 5, 6] and sm.encode("京都東京", out_type=str) == ["京都", "東京"]
    assert sm.encode("京都東京") == [11, 9] and sm.decode([11, 9]) == "京都東京"
    assert sb.encode("abba") == sm.encode("abba") == [8, 4, 3]  # "ba" was not added: English is untouched


def test_bad_input(models, tmp_path):
    base, extra, _, _ = models
    out = tmp_path / "x.model"
    with pytest.raises(ValueError):
        merge_models(b"not a model \xff\xfe", extra, out)
    with pytest.raises(ValueError):
        merge_models(base, extra, out, pad_to=0)
    unigram = _train(EN * 20, 400, model_type="unigram", normalization_rule_name="identity")
    with pytest.raises(ValueError):
        merge_models(unigram, extra, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
