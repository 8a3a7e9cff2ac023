"""Tests for swallowlib.corpus.decode: legacy Japanese encodings decode exactly, bad bytes are counted skips.

Run: .venv/bin/pytest tests/test_decode.py -q
"""

from __future__ import annotations

import codecs
import os
from collections import Counter

import pytest

from swallowlib.corpus.decode import (
    MAX_LINE_CHARS,
    clean_text,
    decode_bytes,
    decode_document,
    looks_japanese,
    split_long_lines,
)

JA = ("これは日本語のテキストです。文字コードの判定をテストします。カタカナも漢字も入っています。"
      "「括弧」や、読点も含まれます。")


@pytest.mark.parametrize(("encoding", "expected"), [
    ("shift_jis", {"cp932", "shift_jis"}),
    ("cp932", {"cp932", "shift_jis"}),
    ("euc_jp", {"euc_jp"}),
    ("iso2022_jp", {"iso2022_jp"}),
    ("utf-8", {"utf-8"}),
])
def test_japanese_encodings_round_trip(encoding: str, expected: set[str]) -> None:
    text, status = decode_bytes(JA.encode(encoding))
    assert text == JA
    assert status in expected


def test_cp932_extensions_decode() -> None:
    s = "①番の項目は㈱が担当します。これは丸数字と株の字を含む文章です。"  # NEC row 13, not in plain Shift_JIS
    text, status = decode_bytes(s.encode("cp932"))
    assert (text, status) == (s, "cp932")


def test_boms() -> None:
    assert decode_bytes(codecs.BOM_UTF8 + JA.encode()) == (JA, "utf-8-sig")
    assert decode_bytes(JA.encode("utf-16")) == (JA, "utf-16")


@pytest.mark.parametrize("encoding", ["shift_jis", "euc_jp", "iso2022_jp", "utf-8"])
def test_corrupt_japanese_is_skipped_not_mojibake(encoding: str) -> None:
    data = JA.encode(encoding)
    corrupt = data[:11] + b"\xff\x81" + data[11:]
    text, status = decode_bytes(corrupt)
    assert text is None and status == "undecodable"


def test_wrong_guess_never_returned() -> None:
    # EUC-JP bytes are also decodable as cp932 (as half-width katakana soup): that reading must be refused
    data = JA.encode("euc_jp")
    wrong = data.decode("cp932", errors="replace")
    assert not looks_japanese(wrong)
    assert decode_bytes(data)[0] == JA


def test_looks_japanese_rejects_mojibake() -> None:
    assert looks_japanese(JA)
    assert not looks_japanese(JA.encode("utf-8").decode("cp932", errors="replace"))
    assert not looks_japanese(JA.encode("shift_jis").decode("latin-1"))
    assert not looks_japanese("plain ascii")


def test_western_fallback_and_its_limits() -> None:
    s = "Voila, a cafe: d\xe9j\xe0 vu, na\xefve r\xe9sum\xe9 \u2014 the end."
    assert decode_bytes(s.encode("cp1252")) == (s, "cp1252")
    # UTF-8 with one corrupt byte must not be read as cp1252 ("Ã©" mojibake)
    assert decode_bytes(s.encode("utf-8") + b" \xff") == (None, "undecodable")


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"  \n\t\n", "empty"),
    (b"some text\x00with a NUL", "nul-bytes"),
    (bytes(range(1, 9)) * 200, "binary"),
    (b"\xff\xfa\xfb\xfc\xfd" * 50, "undecodable"),
])
def test_skip_reasons(data: bytes, reason: str) -> None:
    assert decode_bytes(data) == (None, reason)


def test_random_bytes_never_decode_to_text() -> None:
    rng = __import__("random").Random(0)
    for _ in range(20):
        data = bytes(rng.randrange(128, 256) for _ in range(300))
        text, status = decode_bytes(data)
        assert text is None or looks_japanese(text), status


def test_iso2022_escape_in_utf8_terminal_text_is_left_alone() -> None:
    assert decode_bytes(b"reset \x1b(B\x1b[m done") == ("reset \x1b(B\x1b[m done", "utf-8")


def test_clean_text() -> None:
    raw = "\ufeffa\r\nb\rc\x0bd\x07e\x1b[0m  \n\n\n\n\tindented\u2028next\u00a0 \n\n\n"
    assert clean_text(raw) == "a\nb\nc\nde[0m\n\n\tindented\nnext"
    assert clean_text("x\n\n\ny") == "x\n\ny"
    assert clean_text("全角\u3000スペースは残す") == "全角\u3000スペースは残す"


def test_split_long_lines_japanese_is_lossless() -> None:
    sentence = "日本語の長い文章がここに続きます。"
    line = sentence * (2_000_000 // len(sentence))  # a ~2 MB single line
    text, n = split_long_lines(line)
    assert n == 1 and text is not None
    parts = text.split("\n")
    assert len(parts) > 1 and all(len(p) <= MAX_LINE_CHARS for p in parts)
    assert "".join(parts) == line
    assert all(p.endswith("。") for p in parts)


def test_split_long_lines_english_and_short_text() -> None:
    line = "This is a sentence. " * 20
    text, n = split_long_lines(line.strip(), max_chars=100)
    assert n == 1 and text is not None
    assert all(len(p) <= 100 for p in text.split("\n"))
    assert " ".join(text.split("\n")) == line.strip()
    assert split_long_lines("short\nlines", max_chars=100) == ("short\nlines", 0)


def test_decode_document_guards_enormous_lines() -> None:
    notes: Counter[str] = Counter()
    text, status = decode_document(("日本語の文です。" * 250_000).encode("utf-8"), notes=notes)
    assert status == "utf-8" and text is not None
    assert max(len(line) for line in text.split("\n")) <= MAX_LINE_CHARS
    assert notes["long-line-split"] == 1
    # 2 MB without a sentence end: minified code or base64, not prose
    assert decode_document(b"A" * 2_000_000) == (None, "long-line")
    assert decode_document(os.urandom(64).hex().encode() * 40_000) == (None, "long-line")


def test_decode_document_cleans_and_reports_encoding() -> None:
    text, status = decode_document(("最初の段落です。\r\n\r\n\r\n\r\n次の段落です。").encode("euc_jp"))
    assert (text, status) == ("最初の段落です。\n\n次の段落です。", "euc_jp")
    # all-kanji text without kana is too little evidence for a legacy encoding: skipped, not guessed
    assert decode_document("第一段落。".encode("euc_jp")) == (None, "undecodable")
    assert decode_document(b"\x07\x07\n") == (None, "binary")
    assert decode_document("\ufeff \n\u2028".encode()) == (None, "empty")
