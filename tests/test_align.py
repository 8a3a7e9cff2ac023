"""Tests for swallowlib.corpus.align on tiny synthetic archives built in tmp_path (no downloads)."""

from __future__ import annotations

import difflib
from pathlib import Path

import polib
import pytest

from swallowlib.corpus import align
from swallowlib.corpus.align import (
    AlignStats,
    align_blocks,
    align_pairs,
    clean_pair,
    html_blocks,
    normalise_text,
    page_key,
    parse_ddtp,
    strip_accelerator,
)
from swallowlib.corpus.sources import CATALOGUE

# Japanese sentences used as translations (kana + kanji, no digits unless the EN has them).
JA = {
    "intro": "このツールは画像を切り抜くために使います。",
    "usage": "ツールボックスからアイコンをクリックしてください。",
    "options": "オプション",
    "more": "詳しい情報はマニュアルを参照してください。",
    "ten": "最大で 10 個のレイヤーを使えます。",
}
EN = {
    "intro": "This tool is used to crop an image.",
    "usage": "Click the icon in the toolbox.",
    "options": "Options",
    "more": "See the manual for more information.",
    "ten": "You can use up to 10 layers.",
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def page(body: str, lang: str = "en") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<html lang="{lang}"><head><title>t</title></head><body>'
            f'<div class="navheader"><table><tr><td>Prev</td><td>Next</td></tr></table></div>{body}'
            '<div class="navfooter"><p>Home</p></div></body></html>')


# ------------------------------------------------------------------------------------------------------------
# Cleaning and small helpers


def test_clean_pair_keeps_a_real_translation():
    assert clean_pair(EN["intro"], JA["intro"]) is None
    assert clean_pair(EN["ten"], JA["ten"]) is None
    assert clean_pair("Options", "オプション") is None
    assert clean_pair("Delete", "削除") is None  # short kanji-only JA is allowed (<= 6 CJK characters)


@pytest.mark.parametrize(
    ("en", "ja", "reason"),
    [
        ("", "テスト", "empty"),
        ("これは日本語です", "これは日本語です", "en_not_latin"),
        ("Important notice about the system", "重要系統通知関連事項", "ja_no_kana"),  # 10 Han chars, no kana
        ("Click the icon in the toolbox.", "Click the icon in the toolbox. です", "ja_low_cjk"),
        ("Click the icon in the toolbox now please.", "はい", "length_ratio"),
        ("OK", "ツールボックスからアイコンをクリックしてください", "length_ratio"),
        ("You can use up to 10 layers.", "最大で 12 個のレイヤーを使えます。", "digits"),
        ("You can use up to ten layers.", "最大で 10 個のレイヤーを使えます。", "digits"),
    ],
)
def test_clean_pair_rejections(en, ja, reason):
    assert clean_pair(en, ja) == reason


def test_clean_pair_digits_ignore_placeholders_and_separators():
    assert clean_pair("Copied %1$s of 1,000 files", "1000 個中 %1$s 個のファイルをコピーしました") is None
    assert clean_pair("Error in {0}: file too large", "{0} のエラー: ファイルが大きすぎます") is None
    # full-width digits count as the same digits
    assert clean_pair("Version 2 is out.", "バージョン ２ が出ました。") is None


def test_normalise_text_joins_wrapped_japanese_but_keeps_latin_spaces():
    assert normalise_text("  これは\n  テストです。 GIMP の\tツール ") == "これはテストです。 GIMP のツール"
    assert normalise_text("a\u200bb  c") == "ab c"


@pytest.mark.parametrize(
    ("rel", "key"),
    [
        ("index.en.html", "index"),
        ("index.ja.html", "index"),
        ("Documentation/notation/pitches.ja.html", "Documentation/notation/pitches"),
        ("mod/core.html.ja.utf8", "mod/core"),
        ("mod/core.html.en", "mod/core"),
        ("en/filters.html", "filters"),
        ("ja-JP/apt.html", "apt"),
        ("gnome-help/files-rename.page", "gnome-help/files-rename"),
    ],
)
def test_page_key(rel, key):
    assert page_key(rel) == key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_File", "File"),
        ("Save ~As", "Save As"),
        ("&Open", "Open"),
        ("ファイル(_F)", "ファイル"),
        ("新規(~N)", "新規"),
        ("__init__", "__init__"),  # identifiers survive
        ("file_name and dir_name", "file_name and dir_name"),
        ("Tom & Jerry", "Tom & Jerry"),
        ("&amp; entity", "&amp; entity"),
    ],
)
def test_strip_accelerator(text, expected):
    assert strip_accelerator(text) == expected


# ------------------------------------------------------------------------------------------------------------
# Block alignment


def test_html_blocks_innermost_and_navigation_skipped():
    markup = page("<h1>T</h1><ul><li><p>a</p></li><li>b</li></ul><div class='para'>c</div>"
                  "<pre>code</pre><div class='toc'><dl><dt>x</dt></dl></div><td>cell</td>")
    blocks = html_blocks(markup)
    assert [(t, x) for t, x, _ in blocks] == [("h1", "T"), ("p", "a"), ("li", "b"), ("div.para", "c"),
                                              ("td", "cell")]


def _blocks(tags_texts):
    return [(t, x, None) for t, x in tags_texts]


def test_align_blocks_zip_when_tags_match():
    en = _blocks([("h1", "A"), ("p", "b")])
    ja = _blocks([("h1", "あ"), ("p", "い")])
    assert align_blocks(en, ja) == ("zip", [(0, 0), (1, 1)])


def test_align_blocks_no_shift_on_repetitive_structure():
    """One extra JA paragraph in a run of identical tags: every other block keeps its partner.

    A plain SequenceMatcher over (tag, digits) keys shifts whole runs here; the scored alignment does not.
    """
    en_texts = [f"Use the {w} command to manage {w} objects in the editor." for w in
                ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")]
    ja_texts = [f"{w} コマンドを使ってエディタの {w} オブジェクトを管理します。" for w in
                ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")]
    en = _blocks([("h2", "Commands 1"), *[("p", t) for t in en_texts]])
    note = "訳注: この節は追加されたものです。"
    ja = _blocks([("h2", "コマンド 1"), ("p", note), *[("p", t) for t in ja_texts]])
    method, links = align_blocks(en, ja)
    assert method == "difflib"
    expected = {0: 0, **{i: i + 1 for i in range(1, 7)}}
    assert dict(links) == expected
    # the naive alignment this replaces really does go wrong on such input (keeps the test honest)
    keys_en = [(t, "") for t, _, _ in en]
    keys_ja = [(t, "") for t, _, _ in ja]
    naive = difflib.SequenceMatcher(None, keys_en, keys_ja, autojunk=False).get_matching_blocks()
    naive_links = {a + k: b + k for a, b, n in naive for k in range(n)}
    assert naive_links != expected


def _gimp_roots(tmp_path: Path) -> dict[str, Path]:
    en_root, ja_root = tmp_path / "gimp-help-en", tmp_path / "gimp-help-ja"
    en_dir = en_root / "usr/share/gimp/2.0/help/en"
    ja_dir = ja_root / "usr/share/gimp/2.0/help/ja"
    # page 1: same structure -> zip
    for lang, d, t in (("en", en_dir, EN), ("ja", ja_dir, JA)):
        write(d / "crop.html", page(f"<h1>{t['options']}</h1><p>{t['intro']}</p>"
                                    f"<ul><li>{t['usage']}</li></ul><p>{t['ten']}</p>"
                                    "<p>Untranslated paragraph here.</p>", lang))
    # page 2: JA has an extra translator's note -> difflib; one duplicate of page 1's pair
    write(en_dir / "sub/more.html", page(f"<h2>{EN['options']}</h2><p>{EN['intro']}</p><p>{EN['more']}</p>"))
    write(ja_dir / "sub/more.html", page(f"<h2>{JA['options']}</h2><p>訳注: これは訳者による注です。</p>"
                                         f"<p>{JA['intro']}</p><p>{JA['more']}</p>", "ja"))
    # page 3: untranslated (no JA page)
    write(en_dir / "lonely.html", page(f"<p>{EN['intro']}</p>"))
    return {"gimp-help-en": en_root, "gimp-help-ja": ja_root}


def test_html_manual_alignment(tmp_path):
    stats = AlignStats()
    pairs = list(align_pairs("gimp-help", _gimp_roots(tmp_path), stats))
    got = {(p.en, p.ja) for p in pairs}
    assert got == {(EN["options"], JA["options"]), (EN["intro"], JA["intro"]), (EN["usage"], JA["usage"]),
                   (EN["ten"], JA["ten"]), (EN["more"], JA["more"])}
    by_text = {p.en: p for p in pairs}
    first = by_text[EN["intro"]]
    assert first.id == "gimp-help/crop#1"
    assert first.group == "gimp-help:crop"
    assert first.meta == {"package": "gimp-help-en", "path": "usr/share/gimp/2.0/help/en/crop.html",
                          "method": "zip"}
    more = by_text[EN["more"]]
    assert more.group == "gimp-help:sub/more" and more.meta["method"] == "difflib"
    assert stats.files_matched == 2 and stats.files_unmatched == 1
    assert stats.rejected["duplicate"] == 2  # options + intro again on page 2
    assert stats.rejected["ja_low_cjk"] == 1  # the untranslated paragraph
    assert stats.pairs_kept == len(pairs) == 5
    assert stats.chars_en == sum(len(p.en) for p in pairs)
    assert len({p.id for p in pairs}) == len(pairs)


def test_ids_are_stable_across_runs(tmp_path):
    roots = _gimp_roots(tmp_path)
    assert [p.to_json() for p in align_pairs("gimp-help", roots)] == [
        p.to_json() for p in align_pairs("gimp-help", roots)]


def test_corrupt_page_is_counted_not_fatal(tmp_path):
    roots = _gimp_roots(tmp_path)
    (roots["gimp-help-ja"] / "usr/share/gimp/2.0/help/ja/crop.html").write_bytes(b"")
    stats = AlignStats()
    pairs = list(align_pairs("gimp-help", roots, stats))
    assert stats.files_failed == 1
    assert {p.group for p in pairs} == {"gimp-help:sub/more"}


def test_libreoffice_pairs_by_id(tmp_path):
    en_root, ja_root = tmp_path / "en", tmp_path / "ja"
    en_page = page(f'<div id="DisplayArea"><h1 id="hd_1">{EN["options"]}</h1><p id="par_2">{EN["intro"]}</p>'
                   f'<p id="par_3">{EN["usage"]}</p><p>no id</p></div>')
    # JA: different order, one id missing, one extra
    ja_page = page(f'<div id="DisplayArea"><p id="par_3">{JA["usage"]}</p><h1 id="hd_1">{JA["options"]}</h1>'
                   f'<p id="par_9">{JA["more"]}</p></div>', "ja")
    write(en_root / "usr/share/libreoffice/help/en-US/text/shared/01/foo.html", en_page)
    write(ja_root / "usr/share/libreoffice/help/ja/text/shared/01/foo.html", ja_page)
    roots = {"libreoffice-help-en-us": en_root, "libreoffice-help-ja": ja_root}
    pairs = list(align_pairs("libreoffice-help", roots))
    assert {(p.en, p.ja) for p in pairs} == {(EN["options"], JA["options"]), (EN["usage"], JA["usage"])}
    assert {p.group for p in pairs} == {"libreoffice-help:text/shared/01/foo"}
    assert {p.meta["method"] for p in pairs} == {"id"}


def test_mallard_pages(tmp_path):
    root = tmp_path / "gnome-user-docs"
    ns = 'xmlns="http://projectmallard.org/1.0/"'

    def mallard(desc, title, p, item, credit):
        return (f'<?xml version="1.0" encoding="utf-8"?>\n<page {ns} type="topic" id="files-rename">'
                f"<info><credit><name>{credit}</name></credit><desc>{desc}</desc></info>"
                f"<title>{title}</title><p>{p}</p><list><item><p>{item}</p></item></list>"
                "<code>ls -l</code></page>")

    write(root / "usr/share/help/C/gnome-help/files-rename.page",
          mallard(EN["more"], EN["options"], EN["intro"], EN["usage"], "Shaun"))
    write(root / "usr/share/help/ja/gnome-help/files-rename.page",
          mallard(JA["more"], JA["options"], JA["intro"], JA["usage"], "翻訳者"))
    pairs = list(align_pairs("gnome-user-docs", {"gnome-user-docs": root}))
    assert [(p.en, p.ja) for p in pairs] == [(EN[k], JA[k]) for k in ("more", "options", "intro", "usage")]
    assert pairs[0].group == "gnome-user-docs:gnome-help/files-rename"
    assert pairs[0].id == "gnome-user-docs/gnome-help/files-rename#0"


# ------------------------------------------------------------------------------------------------------------
# DDTP

DDTP_EN = """Package: foo
Description-md5: aaaa
Description-en: image cropping tool
 This tool is used to crop an image. It supports
 many formats.
 .
 You can use up to 10 layers.

Package: bar
Description-md5: bbbb
Description-en: toolbox helper
 Click the icon in the toolbox.
 .
 See the manual for more information.

Package: lonely
Description-md5: cccc
Description-en: no translation here
 Nothing.
"""

DDTP_JA = """Package: foo
Description-md5: aaaa
Description-ja: 画像切り抜きツール
 このツールは画像を切り抜くために使います。多くの形式
 をサポートします。
 .
 最大で 10 個のレイヤーを
 使えます。

Package: bar
Description-md5: bbbb
Description-ja: ツールボックス補助
 ツールボックスからアイコンをクリックしてください。詳しい情報はマニュアルを参照してください。

Package: stale
Description-md5: dddd
Description-ja: 古い翻訳です
 これは古い説明です。
"""


def _ddtp_roots(tmp_path: Path) -> dict[str, Path]:
    write(tmp_path / "Translation-en" / "Translation-en", DDTP_EN)
    write(tmp_path / "Translation-ja" / "Translation-ja", DDTP_JA)
    return {"Translation-en": tmp_path / "Translation-en", "Translation-ja": tmp_path / "Translation-ja"}


def test_parse_ddtp_paragraphs_and_wrapping(tmp_path):
    roots = _ddtp_roots(tmp_path)
    entries = {e.package: e for e in parse_ddtp(roots["Translation-ja"] / "Translation-ja", "ja")}
    foo = entries["foo"]
    assert foo.md5 == "aaaa" and foo.synopsis == "画像切り抜きツール"
    assert foo.paragraphs == ["このツールは画像を切り抜くために使います。多くの形式をサポートします。",
                              "最大で 10 個のレイヤーを使えます。"]


def test_ddtp_alignment_joins_on_md5(tmp_path):
    stats = AlignStats()
    pairs = list(align_pairs("ddtp", _ddtp_roots(tmp_path), stats))
    got = [(p.id, p.group, p.en, p.ja) for p in pairs]
    assert got == [
        ("ddtp/foo#0", "ddtp:foo", "image cropping tool", "画像切り抜きツール"),
        ("ddtp/foo#1", "ddtp:foo", "This tool is used to crop an image. It supports many formats.",
         "このツールは画像を切り抜くために使います。多くの形式をサポートします。"),
        ("ddtp/foo#2", "ddtp:foo", EN["ten"], JA["ten"]),
        # bar: 2 EN paragraphs vs 1 JA paragraph -> synopsis only
        ("ddtp/bar#0", "ddtp:bar", "toolbox helper", "ツールボックス補助"),
    ]
    assert pairs[0].meta == {"package": "Translation-en", "path": "Translation-en", "method": "md5",
                             "debian_package": "foo"}
    assert stats.files_matched == 2 and stats.files_unmatched == 1  # "stale" has no EN md5


# ------------------------------------------------------------------------------------------------------------
# gettext


def _catalogue() -> polib.POFile:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": "ja",
                   "Plural-Forms": "nplurals=1; plural=0;"}
    po.append(polib.POEntry(msgid="_Open the file", msgstr="ファイルを開く(_O)"))
    po.append(polib.POEntry(msgid="Cannot open %s: permission denied",
                            msgstr="%s を開けません: 権限がありません"))
    po.append(polib.POEntry(msgid="Fuzzy entry here", msgstr="あいまいな訳です", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="Untranslated entry", msgstr=""))
    po.append(polib.POEntry(msgid="%d file deleted", msgid_plural="%d files deleted",
                            msgstr_plural={0: "%d 個のファイルを削除しました"}))
    po.append(polib.POEntry(msgid="First paragraph of the help.\n\nSecond paragraph of the help.",
                            msgstr="ヘルプの最初の段落です。\n\nヘルプの二番目の段落です。"))
    return po


EXPECTED_UI = {
    ("Open the file", "ファイルを開く"),
    ("Cannot open %s: permission denied", "%s を開けません: 権限がありません"),
    ("%d file deleted", "%d 個のファイルを削除しました"),
    ("First paragraph of the help.", "ヘルプの最初の段落です。"),
    ("Second paragraph of the help.", "ヘルプの二番目の段落です。"),
}


def _empty_roots(tmp_path: Path, source: str) -> dict[str, Path]:
    roots = {}
    for archive in CATALOGUE[source].archives:
        roots[archive.name] = tmp_path / archive.name
        roots[archive.name].mkdir(parents=True, exist_ok=True)
    return roots


def test_gettext_po_and_mo_agree(tmp_path):
    roots = _empty_roots(tmp_path, "ui-pypi")
    po = _catalogue()
    sphinx_dir = roots["sphinx"] / "sphinx/locale/ja/LC_MESSAGES"
    sphinx_dir.mkdir(parents=True)
    po.save(str(sphinx_dir / "sphinx.po"))
    po.save_as_mofile(str(sphinx_dir / "sphinx.mo"))  # shadowed by the .po
    deluge_dir = roots["deluge"] / "deluge/i18n/ja/LC_MESSAGES"
    deluge_dir.mkdir(parents=True)
    po.save_as_mofile(str(deluge_dir / "deluge.mo"))
    (roots["mercurial"] / "i18n").mkdir()
    po.save(str(roots["mercurial"] / "i18n/ja.po"))
    po.save(str(roots["mercurial"] / "i18n/fr.po"))  # not Japanese: ignored
    tests_dir = roots["django"] / "tests/i18n/locale/ja/LC_MESSAGES"
    tests_dir.mkdir(parents=True)
    po.save(str(tests_dir / "django.po"))  # test fixture: ignored

    stats = AlignStats()
    pairs = list(align_pairs("ui-pypi", roots, stats))
    assert stats.files_matched == 3  # sphinx.po, deluge.mo, mercurial ja.po
    assert {(p.en, p.ja) for p in pairs} == EXPECTED_UI  # the rest are duplicates
    assert stats.rejected["duplicate"] == 2 * len(EXPECTED_UI)
    # the first catalogue in catalogue order (mercurial's i18n/ja.po) wins the dedup; a language-named .po
    # takes the project name as its domain
    assert {p.meta["package"] for p in pairs} == {"mercurial"}
    assert {p.group for p in pairs} == {"ui-pypi:mercurial"}
    assert {p.id.split("#")[0] for p in pairs} == {"ui-pypi/mercurial/i18n"}
    assert {p.id.split("#")[1] for p in pairs} == {"0", "1", "4", "5.0", "5.1"}  # entry index (.paragraph)
    assert len({p.id for p in pairs}) == len(pairs)

    # the .mo alone gives the same pairs as the .po (round trip; fuzzy entries are not compiled)
    mo_only = {(p.en, p.ja) for p in align_pairs("ui-debian", _debian_roots(tmp_path / "deb", po), None)}
    assert mo_only == EXPECTED_UI


def _debian_roots(tmp_path: Path, po: polib.POFile) -> dict[str, Path]:
    roots = _empty_roots(tmp_path, "ui-debian")
    mo_dir = roots["coreutils"] / "usr/share/locale/ja/LC_MESSAGES"
    mo_dir.mkdir(parents=True)
    po.save_as_mofile(str(mo_dir / "coreutils.mo"))
    return roots


def test_gettext_group_is_domain_and_corrupt_catalogue_skipped(tmp_path):
    roots = _debian_roots(tmp_path, _catalogue())
    lo_dir = roots["libreoffice-l10n-ja"] / "usr/lib/libreoffice/program/resource/ja/LC_MESSAGES"
    lo_dir.mkdir(parents=True)
    (lo_dir / "sc.mo").write_bytes(b"not a catalogue")
    good = (roots["coreutils"] / "usr/share/locale/ja/LC_MESSAGES/coreutils.mo").read_bytes()
    (lo_dir / "sw.mo").write_bytes(good[:30])  # truncated: struct.error inside polib
    stats = AlignStats()
    pairs = list(align_pairs("ui-debian", roots, stats))
    assert stats.files_failed == 2
    assert {p.group for p in pairs} == {"ui-debian:coreutils"}
    assert {p.meta["path"] for p in pairs} == {"usr/share/locale/ja/LC_MESSAGES/coreutils.mo"}


# ------------------------------------------------------------------------------------------------------------
# Dispatch


def test_unknown_source_and_missing_archive(tmp_path):
    with pytest.raises(ValueError, match="no aligner"):
        list(align_pairs("manpages-ja", {}))
    with pytest.raises(FileNotFoundError, match="gimp-help-ja"):
        list(align_pairs("gimp-help", {"gimp-help-en": tmp_path}))


def test_every_parallel_catalogue_source_has_an_aligner():
    parallel = {name for name, src in CATALOGUE.items() if src.parallel}
    assert parallel == set(align.ALIGNERS)
    for name, layout in align.MANUALS.items():
        archives = {a.name for a in CATALOGUE[name].archives}
        assert {layout.en.archive, layout.side("ja").archive} <= archives


def test_pair_groups_equal_document_groups(tmp_path):
    """A pair's group is the group extraction gives the EN and the JA document of the same page."""
    from swallowlib.corpus.extract import extract_documents

    en_root, ja_root = tmp_path / "lilypond-doc-html", tmp_path / "lilypond-doc-html-ja"
    base = "usr/share/doc/lilypond/html/Documentation/notation"
    body = {lang: f"<h1>{t['options']}</h1><p>{t['intro']}</p><p>{t['more']}</p>" for lang, t in
            (("en", EN), ("ja", JA))}
    write(en_root / base / "pitches.html", page(body["en"]))
    write(ja_root / base / "pitches.ja.html", page(body["ja"], "ja"))
    write(en_root / base / "pitches.de.html", page(body["en"]))  # another translation in the EN package
    roots = {"lilypond-doc-html": en_root, "lilypond-doc-html-ja": ja_root}
    pairs = list(align_pairs("lilypond-doc", roots))
    assert len(pairs) == 3
    docs = list(extract_documents("lilypond-doc", roots))
    en_groups = {d.group for d in docs if d.lang == "en"}
    ja_groups = {d.group for d in docs if d.lang == "ja"}
    assert {p.group for p in pairs} == {"lilypond-doc:notation/pitches"} == en_groups == ja_groups


def test_untranslated_symlinked_pages_are_skipped(tmp_path):
    root = tmp_path / "apache2-doc"
    manual = root / "usr/share/doc/apache2-doc/manual"
    write(manual / "en/bind.html", page(f"<p>{EN['intro']}</p>"))
    write(manual / "ja/bind.html", page(f"<p>{JA['intro']}</p>", "ja"))
    write(manual / "en/mod/core.html", page(f"<p>{EN['usage']}</p>"))
    (manual / "ja/mod").mkdir(parents=True)
    (manual / "ja/mod/core.html").symlink_to("../../en/mod/core.html")
    stats = AlignStats()
    pairs = list(align_pairs("apache2-doc", {"apache2-doc": root}, stats))
    assert [(p.group, p.en) for p in pairs] == [("apache2-doc:bind", EN["intro"])]
    assert stats.files_matched == 1 and stats.files_unmatched == 1


def test_aligned_pages_are_extracted_pages(tmp_path):
    """Both steps read the one layout table: every aligned page pair is a pair of extracted pages with the same
    page key, and pages the table keeps out of alignment (``not_aligned``) are still extracted."""
    from swallowlib.corpus.extract import extract_documents

    en_root, ja_root = tmp_path / "lilypond-doc-html", tmp_path / "lilypond-doc-html-ja"
    base = "usr/share/doc/lilypond/html/Documentation"
    for rel in ("notation/pitches", "notation/lilypond-index", "learning/tutorial"):
        write(en_root / base / f"{rel}.html", page(f"<p>{EN['intro']}</p>"))
        write(ja_root / base / f"{rel}.ja.html", page(f"<p>{JA['intro']}</p>", "ja"))
    write(en_root / base / "usage/running.html", page(f"<p>{EN['usage']}</p>"))  # untranslated
    write(en_root / base / "internals/grob.html", page(f"<p>{EN['more']}</p>"))  # excluded everywhere
    roots = {"lilypond-doc-html": en_root, "lilypond-doc-html-ja": ja_root}
    stats = AlignStats()
    pages = list(align.manual_pages("lilypond-doc", roots, stats))
    assert [(k, ja is not None) for k, _en, ja in pages] == [
        ("learning/tutorial", True), ("notation/pitches", True), ("usage/running", False)]
    assert stats.files_unmatched == 1
    docs = {(d.lang, d.meta["path"]) for d in extract_documents("lilypond-doc", roots)}
    for _key, en, ja in pages:
        assert ("en", en.relative_to(en_root).as_posix()) in docs
        if ja is not None:
            assert ("ja", ja.relative_to(ja_root).as_posix()) in docs
    assert ("en", f"{base}/notation/lilypond-index.html") in docs
    assert not any("internals" in path for _lang, path in docs)
