"""Tests for swallowlib.corpus.evalmaterial on tiny synthetic Debian FAQ pages and DDTP indices."""

from __future__ import annotations

from pathlib import Path

import pytest

from swallowlib.corpus.evalmaterial import ddtp_synopsis, faq_qa


def section(anchor: str, title: str, body: str, nested: str = "") -> str:
    return (f'<div class="section"><div class="titlepage"><div><div><h2 class="title"><a id="{anchor}"></a>'
            f"{title}</h2></div></div></div>{body}{nested}</div>")


def faq_page(lang: str, sections: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<html lang="{lang}"><head><title>FAQ</title></head>'
            "<body>"
            '<div class="navheader"><table><tr><th>Chapter 1</th></tr></table></div>'
            f'<div class="chapter"><div class="titlepage"><h1 class="title">Chapter 1. Basics</h1></div>'
            '<div class="toc"><dl><dt>1.1. What is this FAQ?</dt></dl></div>'
            f"{sections}</div></body></html>")


EN_PAGE = faq_page("en", "".join([
    section("whatisfaq", "1.1. What is this FAQ?",
            "<p>This document answers\nquestions.</p><ul><li><p>It is short.</p></li></ul>",
            nested=section("sub", "1.1.1. Is there more?", "<p>Yes, there is more.</p>")),
    section("history", "1.2. History", "<p>Not a question.</p>"),
    section("pronounce", "1.3. How does one pronounce Debian?", "<p>Deb-ee-an.</p>"),
]))
JA_PAGE = faq_page("ja", "".join([
    section("whatisfaq", "1.1. この FAQ は何?",
            "<p>この文書は疑問に\n答えます。</p><ul><li><p>短いです。</p></li></ul>",
            nested=section("sub", "1.1.1. もっとありますか？", "<p>はい、あります。</p>")),
    section("history", "1.2. 歴史", "<p>質問ではありません。</p>"),
    section("pronounce", "1.3. Debian はどう発音しますか?", "<p>デビアン。</p>"),
]))


def _faq_roots(tmp_path: Path) -> dict[str, Path]:
    en_dir = tmp_path / "debian-faq/usr/share/doc/debian/FAQ"
    ja_dir = tmp_path / "debian-faq-ja/usr/share/doc/debian/FAQ/ja"
    en_dir.mkdir(parents=True)
    ja_dir.mkdir(parents=True)
    (en_dir / "basic-defs.en.html").write_text(EN_PAGE, encoding="utf-8")
    (en_dir / "basic-defs.html").symlink_to("basic-defs.en.html")  # the package's language-neutral link
    (ja_dir / "basic-defs.ja.html").write_text(JA_PAGE, encoding="utf-8")
    (en_dir / "broken.en.html").write_bytes(b"")  # unparsable: skipped
    return {"debian-faq": tmp_path / "debian-faq", "debian-faq-ja": tmp_path / "debian-faq-ja"}


def test_faq_questions_and_answers(tmp_path):
    items = list(faq_qa(_faq_roots(tmp_path)))
    en = {i["id"]: i for i in items if i["lang"] == "en"}
    ja = {i["id"]: i for i in items if i["lang"] == "ja"}
    assert list(en) == ["debian-faq/en/basic-defs#whatisfaq", "debian-faq/en/basic-defs#sub",
                        "debian-faq/en/basic-defs#pronounce"]
    assert [k.replace("/ja/", "/en/") for k in ja] == list(en)  # EN and JA ids differ only in the language
    first = en["debian-faq/en/basic-defs#whatisfaq"]
    assert first == {"id": "debian-faq/en/basic-defs#whatisfaq", "lang": "en",
                     "question": "What is this FAQ?",
                     "answer": "This document answers questions.\nIt is short.",
                     "group": "debian-faq:basic-defs"}
    # the nested question is its own item and not part of its parent's answer; full-width ？ counts
    assert ja["debian-faq/ja/basic-defs#sub"]["question"] == "もっとありますか？"
    assert ja["debian-faq/ja/basic-defs#whatisfaq"]["answer"] == "この文書は疑問に答えます。\n短いです。"
    assert ja["debian-faq/ja/basic-defs#pronounce"]["answer"] == "デビアン。"
    assert {i["group"] for i in items} == {"debian-faq:basic-defs"}


def test_faq_one_language_and_missing_package(tmp_path):
    roots = _faq_roots(tmp_path)
    assert {i["lang"] for i in faq_qa(roots, ("ja",))} == {"ja"}
    with pytest.raises(FileNotFoundError):
        list(faq_qa({"debian-faq": tmp_path / "nowhere", "debian-faq-ja": tmp_path / "nowhere"}, ("en",)))


DDTP_EN = """Package: foo
Description-md5: aaaa
Description-en: image cropping tool
 This tool crops images in many formats. It is fast and small, and it has
 a simple command line.
 .
 Features:
  * batch mode
  * previews

Package: foo-dbg
Description-md5: bbbb
Description-en: image cropping tool - debug symbols
 This tool crops images in many formats. It is fast and small, and it has
 a simple command line.
 .
 Features:
  * batch mode
  * previews

Package: tiny
Description-md5: cccc
Description-en: too short
 Just one short sentence without much to say here at all.

Package: onesentence
Description-md5: dddd
Description-en: long but single sentence
 This description is long enough in characters but it is only one single sentence
 without any full stop in the middle of it at all
"""

DDTP_JA = """Package: foo
Description-md5: aaaa
Description-ja: 画像切り抜きツール
 このツールは多くの形式の画像を切り抜きます。高速で小さく、簡単なコマンド
 ラインを持っています。

Package: tiny
Description-md5: cccc
Description-ja: 短すぎる
 短い説明です。
"""


def test_ddtp_synopsis(tmp_path):
    (tmp_path / "Translation-en").mkdir()
    (tmp_path / "Translation-ja").mkdir()
    (tmp_path / "Translation-en/Translation-en").write_text(DDTP_EN, encoding="utf-8")
    (tmp_path / "Translation-ja/Translation-ja").write_text(DDTP_JA, encoding="utf-8")
    roots = {"Translation-en": tmp_path / "Translation-en", "Translation-ja": tmp_path / "Translation-ja"}

    en = list(ddtp_synopsis(roots, "en"))
    assert en == [{
        "id": "ddtp-synopsis/en/foo", "lang": "en", "package": "foo", "group": "ddtp:foo",
        "synopsis": "image cropping tool",
        "description": "This tool crops images in many formats. It is fast and small, and it has a simple "
                       "command line.\n\nFeatures:\n* batch mode\n* previews",
    }]  # foo-dbg repeats foo's description; tiny is too short; onesentence has one sentence

    ja = list(ddtp_synopsis(roots, "ja"))
    assert [(i["package"], i["synopsis"]) for i in ja] == [("foo", "画像切り抜きツール")]
    assert ja[0]["description"] == ("このツールは多くの形式の画像を切り抜きます。"
                                     "高速で小さく、簡単なコマンドラインを持っています。")

    with pytest.raises(FileNotFoundError):
        list(ddtp_synopsis({}, "en"))
