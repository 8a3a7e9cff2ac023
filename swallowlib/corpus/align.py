"""English–Japanese parallel alignment of the catalogue's parallel sources into :class:`Pair` records.

One entry point, :func:`align_pairs`, dispatches on the catalogue source name (``swallowlib.corpus.sources``):

* ``libreoffice-help`` — the EN and JA help pages share element ids, so blocks are paired by (page, ``id``)
  (method ``"id"``).
* HTML manuals (``gimp-help``, ``groonga-doc``, ``lilypond-doc``, ``debian-reference``, ``maint-guide``,
  ``developers-reference``, ``debian-handbook``, ``installation-guide``, ``apache2-doc``, ``debian-faq``):
  for each EN/JA page pair the innermost block elements (p, li, dt, dd, td, th, h1-h6, ``div.para`` ...) are
  taken in order; they are zipped when the tag sequences match (``"zip"``), else aligned on (tag,
  digits-in-text) keys with :class:`difflib.SequenceMatcher` anchors and a scored monotone alignment between
  them (``"difflib"``, see :func:`align_blocks`). Where each package keeps its pages is in
  :data:`swallowlib.corpus.sources.MANUALS`, shared with extraction; EN and JA pages are paired by page key.
* ``gnome-user-docs``: Mallard ``.page`` XML, ``<desc>``/``<p>``/``<title>``/``<item>`` blocks (zip/difflib).
* ``ddtp`` — the ``Translation-en``/``Translation-ja`` indices joined on ``Description-md5``; the synopses are
  paired, and the long-description paragraphs when both sides have as many (``"md5"``).
* ``ui-debian`` / ``ui-pypi`` — gettext catalogues (``.mo``/``.po``, via polib): msgid ↔ msgstr, fuzzy and
  untranslated entries skipped, plural entries paired on the singular, accelerators stripped (``"gettext"``).

Every candidate goes through :func:`clean_pair` (the rules measured in docs/data_sources.md) and an exact
dedup within the source. Conventions other modules rely on:

* ``Pair.id`` = ``f"{source}/{page key}#{index}"``, unique and stable; the index is the position of the EN
  block (or catalogue entry) *before* cleaning, so changing a cleaning threshold renumbers nothing.
* ``Pair.group`` (the split unit) = ``f"{source}:{page key}"`` for manuals (:func:`page_key`: the page path
  relative to the language root, language markers and extension removed; identical for the EN and JA page,
  and for the monolingual documents cut from them), ``ddtp:<package>`` for DDTP, ``<source>:<domain>`` for
  gettext (catalogues with the same domain name share a group: the conservative choice for the split).
* ``Pair.meta`` = ``{"package": archive name, "path": EN-side path inside that archive, "method": …}``.

Run on unpacked archives (one directory per archive name, as the fetch step lays them out)::

    python -m swallowlib.corpus.align ROOTS_DIR [SOURCE ...]      # prints per-source statistics
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html
import polib

from swallowlib.corpus import extract
from swallowlib.corpus.decode import decode_bytes
from swallowlib.corpus.records import Pair
from swallowlib.corpus.sources import CATALOGUE, ManualLayout
from swallowlib.corpus.sources import MANUALS as SOURCE_MANUALS

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class AlignStats:
    """What one (or several) :func:`align_pairs` runs saw, kept and rejected."""

    files_matched: int = 0  # EN/JA page pairs, joined DDTP stanzas, or catalogues read
    files_unmatched: int = 0  # units on one side only (untranslated page, JA stanza without an EN md5, ...)
    files_failed: int = 0  # unreadable or unparsable files (skipped, logged)
    pairs_seen: int = 0  # candidate pairs before cleaning
    pairs_kept: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> pairs
    kept_by_method: Counter = field(default_factory=Counter)  # method -> pairs
    seen_by_method: Counter = field(default_factory=Counter)
    chars_en: int = 0  # characters of the kept pairs
    chars_ja: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for tables and JSON)."""
        return {
            "files_matched": self.files_matched, "files_unmatched": self.files_unmatched,
            "files_failed": self.files_failed, "pairs_seen": self.pairs_seen, "pairs_kept": self.pairs_kept,
            "rejected": dict(self.rejected), "kept_by_method": dict(self.kept_by_method),
            "seen_by_method": dict(self.seen_by_method), "chars_en": self.chars_en, "chars_ja": self.chars_ja,
        }


# ------------------------------------------------------------------------------------------------------------
# Text normalisation and pair cleaning

# Characters counted as "Japanese script" (CJK): kana, Han, the prolonged-sound mark, CJK punctuation and
# full-width forms.
_CJK_CLASS = (r"\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
              r"\uf900-\ufaff\uff00-\uffef")
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_KANA_RE = re.compile(r"[\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK_CLASS}])\\s+(?=[{_CJK_CLASS}])")
_WS_RE = re.compile(r"\s+")
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_LATIN_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
_DIGITS_RE = re.compile(r"\d+")
_THOUSANDS_RE = re.compile(r"(?<=\d)[,，](?=\d{3}(?!\d))")
# printf/format placeholders (%s, %1$d, %(name)s, {0}, {name!r:>10}, %1, $(ARG1)): their digits are positions,
# not content, so the digit check ignores them; the placeholders themselves are kept verbatim on both sides.
_PLACEHOLDER_RE = re.compile(
    r"%(?:\d+\$)?[-+ #0']*\d*(?:\.\d+)?(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcspnm]"
    r"|%\(\w+\)[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]"
    r"|\{\w*(?:\.\w+)*(?:![rsa])?(?::[^{}]*)?\}"
    r"|%\d+|\$\(\w+\)|\$\d+"
)

#: Reasons :func:`clean_pair` can return (plus ``"duplicate"``, counted by the aligners).
REJECT_REASONS = ("empty", "en_not_latin", "ja_no_kana", "ja_low_cjk", "length_ratio", "digits")
#: Reasons the aligners add: exact duplicates within a source, and failed alignment sanity checks.
ALIGNER_REASONS = ("duplicate", "misaligned")


def normalise_text(text: str) -> str:
    """Collapse whitespace; drop the spaces that line wrapping leaves between two Japanese characters."""
    text = _INVISIBLE_RE.sub("", text)
    text = _WS_RE.sub(" ", text).strip()
    return _SPACE_BETWEEN_CJK.sub("", text)


def _digit_runs(text: str) -> Counter:
    text = unicodedata.normalize("NFKC", _PLACEHOLDER_RE.sub(" ", text))
    return Counter(_DIGITS_RE.findall(_THOUSANDS_RE.sub("", text)))


def clean_pair(en: str, ja: str) -> str | None:
    """Return why an (already normalised) pair is rejected, or ``None`` to keep it.

    Rules (docs/data_sources.md): the EN side is Latin script; the JA side has kana (or is at most 6 CJK
    characters) and is at least 20 % CJK; ``len(ja) / len(en)`` is in [0.1, 2]; the digit runs match.
    """
    if not en or not ja:
        return "empty"
    letters = [c for c in en if c.isalpha()]
    latin = sum(1 for c in letters if _LATIN_RE.match(c))
    if latin == 0 or latin < 0.9 * len(letters):
        return "en_not_latin"
    n_cjk = len(_CJK_RE.findall(ja))
    if not _KANA_RE.search(ja) and n_cjk > 6:
        return "ja_no_kana"
    visible = len(ja) - ja.count(" ")
    if n_cjk < 0.2 * visible:
        return "ja_low_cjk"
    if not 0.1 <= len(ja) / len(en) <= 2.0:
        return "length_ratio"
    if _digit_runs(en) != _digit_runs(ja):
        return "digits"
    return None


_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z_\\-]{2,}")


def latin_tokens_agree(en: str, ja: str) -> bool:
    """Alignment sanity check: Latin-script words kept in the JA text (commands, names) occur in the EN.

    False when the JA side has at least two such words and fewer than a third of them are in the EN side.
    Applied to structurally aligned (``"difflib"``) pairs only, where it catches blocks paired one off.
    """
    ja_tokens = set(_TOKEN_RE.findall(ja))
    if len(ja_tokens) < 2:
        return True
    return len(ja_tokens & set(_TOKEN_RE.findall(en))) >= len(ja_tokens) / 3


class _Collector:
    """Normalises, cleans and dedups candidate pairs of one source, and keeps the statistics."""

    def __init__(self, source: str, stats: AlignStats):
        self.source = source
        self.stats = stats
        self.seen: set[tuple[str, str]] = set()

    def make(self, en: str, ja: str, *, key: str, index: int | str, group: str, package: str, path: str,
             method: str) -> Pair | None:
        st = self.stats
        st.pairs_seen += 1
        st.seen_by_method[method] += 1
        en, ja = normalise_text(en), normalise_text(ja)
        reason = clean_pair(en, ja)
        if reason is None and method == "difflib" and not latin_tokens_agree(en, ja):
            reason = "misaligned"
        if reason is None:
            if (en, ja) in self.seen:
                reason = "duplicate"
            else:
                self.seen.add((en, ja))
        if reason is not None:
            st.rejected[reason] += 1
            return None
        st.pairs_kept += 1
        st.kept_by_method[method] += 1
        st.chars_en += len(en)
        st.chars_ja += len(ja)
        return Pair(id=f"{self.source}/{key}#{index}", en=en, ja=ja, source=self.source, group=group,
                    meta={"package": package, "path": path, "method": method})


# ------------------------------------------------------------------------------------------------------------
# Page keys and the per-package layout of the manuals

# The page key (language directories, language/charset suffixes and the extension removed) is extract's, so a
# pair's group is by construction the group of the documents cut from the same page.
page_key = extract.page_key


#: The bilingual manuals: where their EN and JA pages live (the one table, shared with extraction).
MANUALS: dict[str, ManualLayout] = {name: m for name, m in SOURCE_MANUALS.items() if m.ja is not None}


def manual_pages(source: str, roots: dict[str, Path], stats: AlignStats | None = None
                 ) -> Iterator[tuple[str, Path, Path | None]]:
    """Yield ``(page key, EN path, JA path or None)`` for each aligned EN page of a manual source, in sorted
    order: the pages of :data:`MANUALS` (as extraction reads them, less ``not_aligned``), paired by page key.

    The JA path is ``None`` when the page is untranslated (no JA page with that key; a JA symlink, which is how
    apache2-doc marks an untranslated page, does not count).
    """
    layout = MANUALS[source]
    ja_by_key: dict[str, Path] = {}
    for ja_path, rel in layout.pages("ja", roots[layout.side("ja").archive]):
        if ja_path.is_file() and not ja_path.is_symlink():
            ja_by_key.setdefault(page_key(rel), ja_path)
    for en_path, rel in layout.pages("en", roots[layout.en.archive]):
        if not en_path.is_file() or en_path.is_symlink() or not layout.is_aligned(rel):
            continue
        key = page_key(rel)
        ja_path = ja_by_key.get(key)
        if ja_path is None and stats is not None:
            stats.files_unmatched += 1
        yield key, en_path, ja_path


# ------------------------------------------------------------------------------------------------------------
# HTML / XML block extraction

_BLOCK_TAGS = {"p", "li", "dt", "dd", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "caption", "figcaption"}
_BLOCK_DIV_CLASSES = {"para", "formalpara", "simpara"}
_SKIP_TAGS = {"script", "style", "noscript", "nav", "header", "footer", "head", "pre", "template"}
_SKIP_CLASSES = {
    "navheader", "navfooter", "toc", "tocframe", "nav_table", "sphinxsidebar", "sphinxsidebarwrapper",
    "related", "bd-sidebar", "bd-sidebar-primary", "bd-sidebar-secondary", "bd-toc", "prev-next-area",
    "prev-next-footer", "footer", "headerlink", "permalink", "index-label", "howtogetheader", "toplang",
    "bottomlang", "highlight",
}
# Navigation containers marked by id rather than class (LilyPond's tocframe/footer, Sphinx sidebars).
_SKIP_IDS = {"tocframe", "footer", "sidebar", "navigation", "search", "highlighting-settings", "quickbar",
             "page-header", "page-footer", "Contents", "Index", "Bookmarks"}
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_NS_RE = re.compile(r"^\{[^}]*\}")


def read_markup(path: Path) -> str:
    """Decode an HTML/XML file the way extraction does (:func:`swallowlib.corpus.decode.decode_bytes`: UTF-8,
    ISO-2022-JP, then a verified charset guess); ``ValueError`` when it cannot be decoded."""
    text, status = decode_bytes(path.read_bytes())
    if text is None:
        raise ValueError(f"{status} file {path}")
    # lxml refuses str input that still carries an encoding declaration.
    return _XML_DECL_RE.sub("", text, count=1)


def _classes(el: Any) -> set[str]:
    return set((el.get("class") or "").split())


def _local(tag: Any) -> str:
    return _NS_RE.sub("", tag) if isinstance(tag, str) else ""


def _is_block(el: Any) -> bool:
    tag = _local(el.tag)
    return tag in _BLOCK_TAGS or (tag == "div" and bool(_classes(el) & _BLOCK_DIV_CLASSES))


def _skipped(el: Any) -> bool:
    return _local(el.tag) in _SKIP_TAGS or bool(_classes(el) & _SKIP_CLASSES) or el.get("id") in _SKIP_IDS


def _text_of(el: Any) -> str:
    """Text of an element without its skipped descendants (e.g. a ``¶`` header link)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if node.text and isinstance(node.tag, str):
            parts.append(node.text)
        for child in node:
            if isinstance(child.tag, str) and not _skipped(child):
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(el)
    return "".join(parts)


def html_blocks(markup: str) -> list[tuple[str, str, str | None]]:
    """The innermost block elements of an HTML page, in document order, as ``(tag, text, id)``.

    Navigation, tables of contents, scripts and code (``pre``) are skipped; blocks with no text are dropped.
    """
    root = lxml.html.document_fromstring(_XML_DECL_RE.sub("", markup, count=1))
    body = root.find("body")
    return element_blocks(body if body is not None else root)


def element_blocks(element: Any) -> list[tuple[str, str, str | None]]:
    """:func:`html_blocks` of one parsed lxml element (the element itself counts when it is a block)."""
    out: list[tuple[str, str, str | None]] = []

    def walk(el: Any) -> bool:
        """Collect blocks under ``el``; return whether ``el`` contains any block."""
        has_block = False
        for child in el:
            if not isinstance(child.tag, str) or _skipped(child):
                continue
            if walk(child):
                has_block = True
        if _is_block(el) and not has_block:
            text = normalise_text(_text_of(el))
            if text:
                tag = _local(el.tag)
                out.append((f"div.{sorted(_classes(el) & _BLOCK_DIV_CLASSES)[0]}" if tag == "div" else tag,
                            text, el.get("id")))
            return True
        return has_block or _is_block(el)

    walk(element)
    return out


_MALLARD_BLOCKS = {"p", "title", "item", "desc", "td", "th", "subtitle"}
# Not walked into: page metadata (except its desc, taken separately), media, code listings, comments.
_MALLARD_SKIP = {"info", "media", "code", "screen", "comment", "synopsis"}
_MALLARD_TEXT_SKIP = {"media", "comment", "credit", "revision", "include"}


def mallard_blocks(markup: str) -> list[tuple[str, str, str | None]]:
    """The page description and innermost ``p``/``title``/``item`` blocks of a Mallard page, as ``(tag, text,
    None)``."""
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True)
    root = lxml.etree.fromstring(markup.encode("utf-8"), parser=parser)
    out: list[tuple[str, str, str | None]] = []

    def text_of(el: Any) -> str:
        parts = [el.text or ""]
        for child in el:
            if isinstance(child.tag, str) and _local(child.tag) not in _MALLARD_TEXT_SKIP:
                parts.append(text_of(child))
            parts.append(child.tail or "")
        return "".join(parts)

    def walk(el: Any) -> bool:
        has_block = False
        for child in el:
            if not isinstance(child.tag, str) or _local(child.tag) in _MALLARD_SKIP:
                continue
            if walk(child):
                has_block = True
        tag = _local(el.tag)
        if tag in _MALLARD_BLOCKS and not has_block:
            text = normalise_text(text_of(el))
            if text:
                out.append((tag, text, None))
            return True
        return has_block or tag in _MALLARD_BLOCKS

    for info in root:
        if _local(info.tag) == "info":
            for desc in info:
                if _local(desc.tag) == "desc" and normalise_text(text_of(desc)):
                    out.append(("desc", normalise_text(text_of(desc)), None))
    walk(root)
    return out


Block = tuple[str, str, str | None]  # (tag, normalised text, element id)


def _digits_key(text: str) -> str:
    return " ".join(_DIGITS_RE.findall(unicodedata.normalize("NFKC", text)))


@dataclass(frozen=True)
class _Features:
    tag: str
    digits: str
    tokens: frozenset[str]
    length: int


def _features(block: Block) -> _Features:
    return _Features(block[0], _digits_key(block[1]), frozenset(_TOKEN_RE.findall(block[1])), len(block[1]))


# JA text is about half as long as its EN source in these manuals (measured: 0.5-0.6 JA chars per EN char).
_JA_EN_RATIO = 0.55
_MIN_LINK_SCORE = 0.25
_MAX_DP_CELLS = 4_000_000


def _link_score(e: _Features, j: _Features) -> float:
    """How plausible it is that JA block ``j`` translates EN block ``e`` (≤ 0: never link them).

    Same tag is required; Latin words kept in the JA text should occur in the EN text; digits should agree;
    the length ratio should be near the usual one (weighted by length, as short headings vary a lot).
    """
    if e.tag != j.tag:
        return -1.0
    score = 0.5
    if j.tokens:
        score += 2 * len(j.tokens & e.tokens) / len(j.tokens) - 1
    if e.digits or j.digits:
        score += 1.0 if e.digits == j.digits else -1.0
    if e.length and j.length:
        score -= min(1.0, e.length / 100) * abs(math.log(j.length / e.length / _JA_EN_RATIO))
    return score


def align_blocks(en: list[Block], ja: list[Block]) -> tuple[str, list[tuple[int, int]]]:
    """Align two block lists; return the method and the aligned ``(en index, ja index)`` pairs.

    ``"zip"`` when the tag sequences are equal. Otherwise ``"difflib"``: blocks keyed by (tag, digits in the
    text) that occur once on each side are anchors, put in order with :class:`difflib.SequenceMatcher`
    (unambiguous on unique keys); the blocks between two anchors are matched by a monotone alignment that
    maximises :func:`_link_score`, and links scoring below ``_MIN_LINK_SCORE`` are dropped.

    Why not SequenceMatcher over all keys: its longest-block-first search pairs repetitive keys
    (``("p", "")``) at the wrong offset: on LilyPond pages whole runs were shifted by ~30 blocks, and outdated
    Apache translations gave one-off shifts. Scoring each link (shared Latin words, digits, length) fixes
    both (measured: share of pairs whose JA Latin words are mostly absent from the EN, 27 % -> 0.1 %).
    """
    if [b[0] for b in en] == [b[0] for b in ja]:
        return "zip", [(i, i) for i in range(len(en))]
    fa = [_features(b) for b in en]
    fb = [_features(b) for b in ja]
    ka = [(f.tag, f.digits) for f in fa]
    kb = [(f.tag, f.digits) for f in fb]
    ca, cb = Counter(ka), Counter(kb)
    unique = {k for k, n in ca.items() if n == 1 and cb.get(k) == 1}
    ua = [i for i, k in enumerate(ka) if k in unique]
    ub = [j for j, k in enumerate(kb) if k in unique]
    matcher = difflib.SequenceMatcher(None, [ka[i] for i in ua], [kb[j] for j in ub], autojunk=False)
    anchors = [(ua[x + k], ub[y + k]) for x, y, size in matcher.get_matching_blocks() for k in range(size)]
    anchors = [(i, j) for i, j in anchors if _link_score(fa[i], fb[j]) >= _MIN_LINK_SCORE]
    pairs: list[tuple[int, int]] = []
    prev_a = prev_b = 0
    for i, j in [*anchors, (len(fa), len(fb))]:
        pairs.extend(_dp_links(fa, fb, prev_a, i, prev_b, j))
        if i < len(fa):
            pairs.append((i, j))
        prev_a, prev_b = i + 1, j + 1
    return "difflib", pairs


def _dp_links(fa: list[_Features], fb: list[_Features], a0: int, a1: int, b0: int, b1: int
              ) -> list[tuple[int, int]]:
    """Monotone links between ``fa[a0:a1]`` and ``fb[b0:b1]`` maximising the summed link score (dynamic
    programming, as in sentence alignment; skipping a block costs nothing)."""
    n, m = a1 - a0, b1 - b0
    if n <= 0 or m <= 0:
        return []
    if n * m > _MAX_DP_CELLS:
        log.warning("alignment gap of %d x %d blocks left unaligned", n, m)
        return []
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for x in range(1, n + 1):
        row, prev, e = best[x], best[x - 1], fa[a0 + x - 1]
        for y in range(1, m + 1):
            v = prev[y] if prev[y] > row[y - 1] else row[y - 1]
            s = _link_score(e, fb[b0 + y - 1])
            if s >= _MIN_LINK_SCORE and prev[y - 1] + s > v:
                v = prev[y - 1] + s
            row[y] = v
    links = []
    x, y = n, m
    while x > 0 and y > 0:
        if best[x][y] == best[x - 1][y]:
            x -= 1
        elif best[x][y] == best[x][y - 1]:
            y -= 1
        else:
            links.append((a0 + x - 1, b0 + y - 1))
            x, y = x - 1, y - 1
    return links[::-1]


# ------------------------------------------------------------------------------------------------------------
# Aligners


def _require(source: str, roots: dict[str, Path], names: Iterable[str]) -> None:
    missing = [n for n in names if n not in roots or not Path(roots[n]).is_dir()]
    if missing:
        raise FileNotFoundError(f"source {source!r}: archive(s) not unpacked: {', '.join(missing)}")


def _align_pages(source: str, roots: dict[str, Path], col: _Collector, kind: str) -> Iterator[Pair]:
    """Manual pages: LibreOffice by element id, Mallard and HTML by zip/difflib."""
    package = MANUALS[source].en.archive
    en_root = roots[package]
    extract = mallard_blocks if kind == "mallard" else html_blocks
    for key, en_path, ja_path in manual_pages(source, roots, col.stats):
        if ja_path is None:
            continue
        try:
            en_blocks = extract(read_markup(en_path))
            ja_blocks = extract(read_markup(ja_path))
        except (OSError, ValueError, RecursionError, lxml.etree.LxmlError) as exc:
            col.stats.files_failed += 1
            log.warning("%s: skipping %s: %s", source, en_path, exc)
            continue
        col.stats.files_matched += 1
        if kind == "id":
            method, links = "id", _pair_by_id(en_blocks, ja_blocks)
        else:
            method, links = align_blocks(en_blocks, ja_blocks)
        rel = en_path.relative_to(en_root).as_posix()
        for i, j in links:
            pair = col.make(en_blocks[i][1], ja_blocks[j][1], key=key, index=i, group=f"{source}:{key}",
                            package=package, path=rel, method=method)
            if pair is not None:
                yield pair


def _pair_by_id(en: list[tuple[str, str, str | None]], ja: list[tuple[str, str, str | None]]
                ) -> list[tuple[int, int]]:
    """Pair blocks carrying the same ``id`` (k-th occurrence with k-th: embedded sections repeat ids)."""
    def index(blocks: list[tuple[str, str, str | None]]) -> dict[tuple[str, int], int]:
        seen: Counter = Counter()
        out = {}
        for i, (_tag, _text, el_id) in enumerate(blocks):
            if el_id:
                out[(el_id, seen[el_id])] = i
                seen[el_id] += 1
        return out

    ja_index = index(ja)
    return [(i, ja_index[k]) for k, i in index(en).items() if k in ja_index]


# --- DDTP ---------------------------------------------------------------------------------------------------

_BULLET_RE = re.compile(r"^\s*(?:[*+\-o•]|\d+[.)])\s")


@dataclass
class DdtpEntry:
    """One stanza of a DDTP ``Translation-<lang>`` index."""

    package: str
    md5: str
    lang: str
    synopsis: str
    paragraphs: list[str]  # long-description paragraphs; list items keep their own lines


def parse_ddtp(path: Path, lang: str) -> Iterator[DdtpEntry]:
    """Parse a ``Translation-<lang>`` index (deb822 stanzas) into :class:`DdtpEntry` records.

    Hand-written because python-debian is not a dependency and the format is three fields: ``Package``,
    ``Description-md5`` and ``Description-<lang>`` (first line the synopsis; continuation lines start with a
    space; a ``" ."`` line is a paragraph break). Malformed stanzas are skipped.
    """
    field_name = f"description-{lang.lower()}"

    def finish(fields: dict[str, str], desc: list[str]) -> DdtpEntry | None:
        if "package" not in fields or "description-md5" not in fields or not desc:
            return None
        paragraphs: list[str] = []
        lines: list[str] = []
        for raw in desc[1:]:
            line = raw[1:] if raw.startswith(" ") else raw
            if line.strip() == ".":
                if lines:
                    paragraphs.append("\n".join(lines))
                lines = []
                continue
            stripped = line.strip()
            if lines and not _BULLET_RE.match(line) and not line.startswith(" "):
                lines[-1] += " " + stripped  # a wrapped line continues the previous one
            else:
                lines.append(stripped)
        if lines:
            paragraphs.append("\n".join(lines))
        paragraphs = [normalise_lines(p) for p in paragraphs if p.strip()]
        return DdtpEntry(fields["package"], fields["description-md5"], lang, normalise_text(desc[0]),
                         paragraphs)

    fields: dict[str, str] = {}
    desc: list[str] = []
    in_desc = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                entry = finish(fields, desc)
                if entry is not None:
                    yield entry
                fields, desc, in_desc = {}, [], False
            elif line[0] in " \t":
                if in_desc:
                    desc.append(line)
            else:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                in_desc = name == field_name
                if in_desc:
                    desc = [value.strip()]
                else:
                    fields[name] = value.strip()
    entry = finish(fields, desc)
    if entry is not None:
        yield entry


def normalise_lines(text: str) -> str:
    """:func:`normalise_text` applied line by line (keeps list items on their own lines)."""
    return "\n".join(t for t in (normalise_text(line) for line in text.split("\n")) if t)


def ddtp_index_path(root: Path, lang: str) -> Path:
    """The decompressed ``Translation-<lang>`` index inside an unpacked DDTP archive directory."""
    root = Path(root)
    if root.is_file():
        return root
    candidates = sorted(root.glob(f"*Translation-{lang}"))
    if not candidates:
        raise FileNotFoundError(f"no Translation-{lang} index under {root}")
    return candidates[0]


def _align_ddtp(roots: dict[str, Path], col: _Collector) -> Iterator[Pair]:
    en_by_md5: dict[str, DdtpEntry] = {}
    en_path = ddtp_index_path(roots["Translation-en"], "en")
    for entry in parse_ddtp(en_path, "en"):
        en_by_md5.setdefault(entry.md5, entry)
    used: Counter = Counter()
    for ja in parse_ddtp(ddtp_index_path(roots["Translation-ja"], "ja"), "ja"):
        en = en_by_md5.get(ja.md5)
        if en is None:
            col.stats.files_unmatched += 1
            continue
        col.stats.files_matched += 1
        used[ja.package] += 1
        key = ja.package if used[ja.package] == 1 else f"{ja.package}@{ja.md5[:8]}"
        links = [(en.synopsis, ja.synopsis)]
        if len(en.paragraphs) == len(ja.paragraphs):
            links += list(zip(en.paragraphs, ja.paragraphs, strict=True))
        for i, (e, j) in enumerate(links):
            pair = col.make(e, j, key=key, index=i, group=f"ddtp:{ja.package}", package="Translation-en",
                            path=en_path.name, method="md5")
            if pair is not None:
                pair.meta["debian_package"] = ja.package
                yield pair


# --- gettext ------------------------------------------------------------------------------------------------

_JA_CODES = {"ja", "ja_JP", "ja-JP", "ja_JP.UTF-8"}
_ACCEL_PAREN_RE = re.compile(r"\s*[(（][_&~][A-Za-z0-9][)）]")
_ACCEL_RE = re.compile(r"(?<![\w&~_])[_&~](?=[^\W_])")
_ENTITY_RE = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")


def strip_accelerator(text: str) -> str:
    """Remove a UI accelerator marker: ``(_F)`` / ``(~N)`` after a Japanese label, or one ``_``/``&``/``~``
    before a letter (``_File``, ``&Open``, ``Save ~As``).

    Only a single unambiguous marker is removed (a text with several candidates, e.g. ``__init__`` or
    ``a_b & c_d``, is left alone) and only in short strings, so identifiers in help texts survive.
    """
    text = _ACCEL_PAREN_RE.sub("", text)
    if len(text) > 100:
        return text
    masked = _ENTITY_RE.sub(lambda m: "#" * len(m.group()), text)
    hits = list(_ACCEL_RE.finditer(masked))
    if len(hits) == 1:
        k = hits[0].start()
        text = text[:k] + text[k + 1:]
    return text


def find_catalogues(root: Path) -> list[Path]:
    """Japanese gettext catalogues in an unpacked archive: ``**/ja/LC_MESSAGES/*.{po,mo}``, ``**/ja.po``.

    A ``.po`` shadows the ``.mo`` compiled from it (same directory and domain); test fixtures are skipped.
    """
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".po", ".mo") or not path.is_file():
            continue
        rel = path.relative_to(root).parts
        if "tests" in rel or "test" in rel:
            continue
        in_lc = len(rel) >= 3 and rel[-2] == "LC_MESSAGES" and rel[-3] in _JA_CODES
        if not in_lc and path.stem not in _JA_CODES:
            continue
        slot = (str(path.parent), path.stem)
        if slot not in found or path.suffix == ".po":
            found[slot] = path
    return sorted(found.values())


def _catalogue_domain(path: Path, archive: str) -> str:
    # i18n/ja.po names the language, not the domain; fall back to the project name.
    return archive if path.stem in _JA_CODES else path.stem


def _split_paragraphs(en: str, ja: str) -> list[tuple[str, str]]:
    """Split a multi-paragraph message (e.g. a help text) when both sides have as many paragraphs."""
    en_p = [p for p in re.split(r"\n\s*\n", en) if p.strip()]
    ja_p = [p for p in re.split(r"\n\s*\n", ja) if p.strip()]
    if len(en_p) > 1 and len(en_p) == len(ja_p):
        return list(zip(en_p, ja_p, strict=True))
    return [(en, ja)]


def catalogue_entries(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(entry index, msgid, msgstr)`` of the translated, non-fuzzy, non-obsolete entries of a catalogue.

    Plural entries give the singular msgid with the first plural msgstr (Japanese has one form).
    """
    cat = polib.mofile(str(path)) if path.suffix == ".mo" else polib.pofile(str(path))
    for i, entry in enumerate(cat):
        if not entry.msgid or entry.obsolete or "fuzzy" in entry.flags:
            continue
        msgstr = entry.msgstr
        if entry.msgid_plural:
            forms = entry.msgstr_plural or {}
            msgstr = forms.get(0) or forms.get("0") or ""
        if msgstr:
            yield i, entry.msgid, msgstr


def _align_gettext(source: str, roots: dict[str, Path], col: _Collector) -> Iterator[Pair]:
    for archive in CATALOGUE[source].archives:
        root = Path(roots[archive.name])
        for path in find_catalogues(root):
            rel = path.relative_to(root).as_posix()
            stem = Path(rel).with_suffix("").as_posix().replace("/LC_MESSAGES/", "/")
            key = f"{archive.name}/{page_key(stem)}"
            domain = _catalogue_domain(path, archive.name)
            try:
                entries = list(catalogue_entries(path))
            except Exception as exc:  # polib raises struct.error, UnicodeDecodeError, OSError, ...
                col.stats.files_failed += 1
                log.warning("%s: skipping catalogue %s: %s", source, path, exc)
                continue
            col.stats.files_matched += 1
            for idx, msgid, msgstr in entries:
                parts = _split_paragraphs(msgid, msgstr)
                for k, (en, ja) in enumerate(parts):
                    index = idx if len(parts) == 1 else f"{idx}.{k}"
                    pair = col.make(strip_accelerator(en), strip_accelerator(ja), key=key, index=index,
                                    group=f"{source}:{domain}", package=archive.name, path=rel,
                                    method="gettext")
                    if pair is not None:
                        yield pair


# ------------------------------------------------------------------------------------------------------------
# Entry point

#: Every source :func:`align_pairs` knows, with its alignment family.
ALIGNERS: dict[str, str] = {
    **{name: {"libreoffice-help": "id", "gnome-user-docs": "mallard"}.get(name, "html") for name in MANUALS},
    "ddtp": "ddtp",
    "ui-debian": "gettext",
    "ui-pypi": "gettext",
}


def align_pairs(source: str, roots: dict[str, Path], stats: AlignStats | None = None) -> Iterator[Pair]:
    """Yield the cleaned, deduplicated EN–JA pairs of one catalogue source.

    ``roots`` maps archive names (``Archive.name``) to their unpacked directories; every archive of the source
    must be there (``FileNotFoundError`` otherwise). ``stats``, when given, is updated as pairs are produced.
    """
    if source not in ALIGNERS:
        raise ValueError(f"no aligner for source {source!r}; known: {', '.join(sorted(ALIGNERS))}")
    roots = {k: Path(v) for k, v in roots.items()}
    _require(source, roots, (a.name for a in CATALOGUE[source].archives))
    col = _Collector(source, stats if stats is not None else AlignStats())
    kind = ALIGNERS[source]
    if kind == "ddtp":
        yield from _align_ddtp(roots, col)
    elif kind == "gettext":
        yield from _align_gettext(source, roots, col)
    else:
        yield from _align_pages(source, roots, col, kind)


def main(argv: list[str] | None = None) -> int:
    """Align every (or the named) parallel source under ROOTS_DIR/<archive name> and print statistics."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    base = Path(args[0])
    roots = {p.name: p for p in base.iterdir() if p.is_dir()}
    for source in args[1:] or list(ALIGNERS):
        stats = AlignStats()
        t0 = time.perf_counter()
        try:
            n = sum(1 for _ in align_pairs(source, roots, stats))
        except FileNotFoundError as exc:
            print(f"{source}: {exc}")
            continue
        print(f"{source}\t{n}\t{time.perf_counter() - t0:.1f}s\t{stats.as_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
