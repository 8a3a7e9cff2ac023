"""Tests for swallowlib.tokenizer.coverage: kana/jōyō coverage list, coverage pieces, out-of-domain texts.

Hermetic: the KANJIDIC2 db is a tiny SQLite file with jamdict's schema, the SentencePiece models are trained here.
"""

from __future__ import annotations

import io
import lzma
import sqlite3
from pathlib import Path

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from swallowlib.tokenizer import coverage as cov
from swallowlib.tokenizer.merge import merge_models

# --------------------------------------------------------------------------------------------------------------
# Fixtures

SCHEMA = """
CREATE TABLE character (
       ID INTEGER PRIMARY KEY AUTOINCREMENT,
       literal TEXT NOT NULL,
       stroke_count INTEGER,
       grade TEXT,
       freq TEXT,
       jlpt TEXT
);
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
"""
ROWS = [
    ("日", 4, "1", "1", "4"),
    ("亜", 7, "8", "1509", "1"),
    ("唖", 10, None, None, None),  # not graded: not jōyō
    ("丑", 4, "9", None, None),  # jinmeiyō
    ("ab", 1, "2", None, None),  # corrupt literal: skipped, not fatal
    ("日", 4, "1", None, None),  # duplicate
    ("頰", 16, "8", None, None),  # jōyō form of 頬: the common form 頬 is added too
    ("頬", 16, None, None, None),
]


def make_db(path: Path, rows=ROWS) -> Path:
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.executemany("INSERT INTO character (literal, stroke_count, grade, freq, jlpt) VALUES (?,?,?,?,?)", rows)
    con.commit()
    con.close()
    return path


EN = [
    "The quick brown fox jumps over the lazy dog.",
    "Install the package with apt-get install and read the manual page.",
    "A tokenizer splits text into pieces; byte fallback covers unknown characters.",
    "Numbers like 12345 are split into digits, and whitespace is kept.",
] * 30
JA = [
    "日本語の文章をトークンに分割します。",
    "このパッケージはマニュアルを提供します。",
    "東京は日本の首都であり、多くの人が住んでいます。",
    "ファイルを開いて設定を変更してください。",
    "漢字とひらがなとカタカナを使います。",
] * 30


def train(lines: list[str], vocab: int) -> bytes:
    buf = io.BytesIO()
    spm.set_random_generator_seed(0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab,
        byte_fallback=True, character_coverage=1.0, num_threads=1, minloglevel=2,
        normalization_rule_name="identity", split_digits=True,
    )  # fmt: skip
    return buf.getvalue()


@pytest.fixture(scope="module")
def en_model() -> bytes:
    return train(EN, 420)


@pytest.fixture(scope="module")
def ja_model() -> bytes:
    return train(JA, 400)


def proc(model: bytes | Path) -> spm.SentencePieceProcessor:
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return spm.SentencePieceProcessor(model_proto=data)


# --------------------------------------------------------------------------------------------------------------
# Coverage characters


def test_kana_set():
    kana = cov.kana_characters()
    assert len(kana) == len(set(kana)) == 86 + 5 + 96 + 16  # hiragana, ゛゜ゝゞゟ, katakana block, phonetic ext.
    for ch in "あぁゔゕゖーゝゞヽヾヿ・ァヴヵヶㇰㇿ":
        assert ch in kana, ch
    for ch in "ｱｰ\u3099\u309a亜a":  # half-width, combining marks, kanji, ASCII
        assert ch not in kana, ch
    assert kana == sorted(kana)


def test_coverage_characters_from_tiny_db(tmp_path):
    db = make_db(tmp_path / "jamdict.db")
    chars = cov.coverage_characters(db_path=db, cache_dir=tmp_path / "derived")
    kana = cov.kana_characters()
    # code point order; ungraded, jinmeiyō, corrupt and duplicate rows left out
    assert chars == kana + ["亜", "日", "頬", "頰"]
    # cached: the db is no longer needed, the same list comes back
    db.unlink()
    assert cov.coverage_characters(db_path=db, cache_dir=tmp_path / "derived") == chars
    assert len(list((tmp_path / "derived").glob("*.txt"))) == 1


def test_coverage_characters_xz_and_grades(tmp_path):
    plain = make_db(tmp_path / "jamdict.db")
    xz = tmp_path / "jamdict.db.xz"
    xz.write_bytes(lzma.compress(plain.read_bytes()))
    chars = cov.coverage_characters(db_path=xz, cache_dir=tmp_path / "c1", grades=cov.JOYO_GRADES + (9,))
    assert chars[-5:] == ["丑", "亜", "日", "頬", "頰"]
    kanji, counts = cov.read_kanjidic_grades(xz, cov.JOYO_GRADES)
    assert kanji == ["亜", "日", "頰"]
    assert counts == {"skipped": 1, "duplicates": 1, "grade_1": 1, "grade_8": 2}
    # without grade 8 no variant form is added
    assert cov.coverage_characters(db_path=xz, cache_dir=tmp_path / "c2", grades=(1,))[-1] == "日"


def test_malformed_cache_is_rebuilt(tmp_path):
    db = make_db(tmp_path / "jamdict.db")
    first = cov.coverage_characters(db_path=db, cache_dir=tmp_path)
    cache = next(tmp_path.glob("coverage-*.txt"))
    cache.write_text("not one char per line\n")
    assert cov.coverage_characters(db_path=db, cache_dir=tmp_path) == first


# --------------------------------------------------------------------------------------------------------------
# Coverage pieces


def test_add_coverage_pieces_absent_kanji_becomes_one_piece(tmp_path, en_model, ja_model):
    before = proc(ja_model)
    assert before.piece_to_id("鬱") == before.unk_id()
    pieces = [p for p in before.encode("鬱", out_type=str) if p != "▁"]
    assert pieces == ["<0xE9>", "<0xAC>", "<0xB1>"]

    chars = cov.kana_characters() + ["日", "鬱", "亜"]
    out = tmp_path / "cov.model"
    counts = cov.add_coverage_pieces(ja_model, chars, out)
    have = {p.piece for p in sp_pb2.ModelProto.FromString(ja_model).pieces}
    n_present = sum(c in have for c in chars)
    assert counts["present"] == n_present > 0
    assert counts["added"] == len(chars) - n_present
    assert counts["final_size"] == counts["base_size"] + counts["added"]

    after = proc(out)
    assert [p for p in after.encode("鬱", out_type=str) if p != "▁"] == ["鬱"]
    for ch in chars:  # every coverage character is now a piece; none needs byte fallback
        assert after.piece_to_id(ch) != after.unk_id()
        assert not any(p.startswith("<0x") for p in after.encode("の" + ch + "の", out_type=str)), ch

    # base pieces untouched, new ones NORMAL and scored below every base piece, strictly decreasing
    base = sp_pb2.ModelProto.FromString(ja_model)
    new = sp_pb2.ModelProto.FromString(out.read_bytes())
    assert [(p.piece, p.score, p.type) for p in new.pieces[: len(base.pieces)]] == [
        (p.piece, p.score, p.type) for p in base.pieces
    ]
    added = new.pieces[len(base.pieces) :]
    assert all(p.type == sp_pb2.ModelProto.SentencePiece.NORMAL for p in added)
    scores = [p.score for p in added]
    assert max(scores) < min(p.score for p in base.pieces)
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert new.trainer_spec.vocab_size == len(new.pieces)

    # text made of characters the model already had segments exactly as before
    for line in JA[:5]:
        assert after.encode(line) == before.encode(line)

    # idempotent
    again = cov.add_coverage_pieces(out, chars, tmp_path / "cov2.model")
    assert again["added"] == 0 and again["present"] == len(chars)


def test_english_ids_unchanged_after_merge_and_coverage(tmp_path, en_model, ja_model):
    merged = tmp_path / "merged.model"
    merge_models(en_model, ja_model, merged, pad_to=1)
    withcov = tmp_path / "withcov.model"
    cov.add_coverage_pieces(merged, cov.kana_characters() + ["鬱", "亜", "日"], withcov)
    base, after = proc(en_model), proc(withcov)
    texts = EN[:4] + ["Mixed ASCII: $x = y^2 + 3; print('ok') -> 42", "Café naïve résumé"]
    for t in texts:
        assert after.encode(t) == base.encode(t)
    # padding is done after, by the caller (merge with nothing new, pad_to=8)
    final = tmp_path / "final.model"
    rep = merge_models(withcov, withcov, final, pad_to=8)
    assert rep.added == 0 and rep.final_size % 8 == 0
    assert proc(final).encode("鬱の字") == after.encode("鬱の字")


def test_order_of_merge_and_coverage_gives_same_segmentation(tmp_path, en_model, ja_model):
    chars = cov.kana_characters() + ["鬱", "亜", "日", "東", "京"]
    a1, a2 = tmp_path / "a1.model", tmp_path / "a2.model"
    merge_models(en_model, ja_model, a1, pad_to=1)
    cov.add_coverage_pieces(a1, chars, a2)
    b1, b2 = tmp_path / "b1.model", tmp_path / "b2.model"
    cov.add_coverage_pieces(en_model, chars, b1)
    merge_models(b1, ja_model, b2, pad_to=1)
    pa, pb = proc(a2), proc(b2)
    for t in JA[:5] + ["鬱蒼とした森でヰヱを見た。", "亜種のヴァイオリン", "Hello 東京!"]:
        assert pa.encode(t, out_type=str) == pb.encode(t, out_type=str)


def test_add_coverage_pieces_bad_input(tmp_path, ja_model):
    with pytest.raises(ValueError):
        cov.add_coverage_pieces(b"definitely not a model", ["あ"], tmp_path / "x.model")
    assert not (tmp_path / "x.model").exists()
    counts = cov.add_coverage_pieces(ja_model, ["ab", "", " ", "鬱", "鬱"], tmp_path / "y.model")
    assert counts["invalid"] == 3 and counts["duplicates"] == 1 and counts["added"] == 1


def test_missing_characters(ja_model):
    assert cov.missing_characters(ja_model, ["日", "鬱"]) == ["鬱"]


# --------------------------------------------------------------------------------------------------------------
# Out-of-domain Japanese


def _put(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def test_out_of_domain_japanese_from_fixture_roots(tmp_path, caplog):
    lit, tut, ess = tmp_path / "lit", tmp_path / "tut", tmp_path / "ess"
    rashomon = (
        "This file was derived from\nhttp://www.gutenberg.org/cache/epub/1982/pg1982.txt\n--------\n"
        "羅生門\n\n芥川龍之介\n\n"
        "\u3000或日の暮方の事である。一人の下人が、羅生門の下で雨や\nみを待っていた。\n"
        "\u3000何故かと云うと、\n"
    )
    _put(lit, cov.OOD_SOURCES["literature"].member_glob, rashomon.encode())
    _put(tut, "usr/share/vim/vim90/tutor/tutor.ja.utf-8", "Vim へようこそ\r\n".encode())
    _put(ess, cov.OOD_SOURCES["essay"].member_glob, "Python の開発は".encode() + b"\xff\n")
    texts = cov.out_of_domain_japanese(roots={"literature": lit, "tutorial": tut, "essay": ess})
    assert set(texts) == {"literature", "tutorial", "essay"}
    assert texts["literature"] == (
        "羅生門\n\n芥川龍之介\n\n\u3000或日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。\n"
        "\u3000何故かと云うと、\n"
    )
    assert texts["tutorial"] == "Vim へようこそ\n"
    assert texts["essay"].startswith("Python の開発は") and "\ufffd" in texts["essay"]  # replaced, not fatal


def test_out_of_domain_missing_file_is_left_out(tmp_path, caplog):
    texts = cov.out_of_domain_japanese(["tutorial"], roots={"tutorial": tmp_path})
    assert texts == {}
    assert "unavailable" in caplog.text


def test_sources_table_is_complete():
    for name, src in cov.OOD_SOURCES.items():
        assert src.licence and src.archive.kind == "deb" and src.member_glob, name
