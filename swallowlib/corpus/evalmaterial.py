"""Raw evaluation material inside the offline sources (the pipeline later decontaminates and samples it).

* :func:`faq_qa` — Debian FAQ question/answer pairs, per language: every section title ending in ``?``/``？``
  is a question; the blocks of that section (not of its subsections) are the answer.
* :func:`ddtp_synopsis` — Debian package descriptions as summary-like pairs: the synopsis (the first line)
  summarises the long description; identical descriptions are kept once and short ones are dropped.

Both yield plain dicts. ``group`` is the split unit of the text an item comes from, so held-out evaluation
items and their source text fall on the same side of the split: the FAQ *page* group ``debian-faq:<page key>``
(the group of the FAQ page documents and of the aligned FAQ pairs; a question's EN and JA versions share it,
and their ids share the suffix ``<page key>#<section anchor>``), and ``ddtp:<package>`` for descriptions.

Run on unpacked archives (one directory per archive name)::

    python -m swallowlib.corpus.evalmaterial ROOTS_DIR      # prints counts and a few examples
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.etree
import lxml.html

from swallowlib.corpus.align import (
    MANUALS,
    ddtp_index_path,
    element_blocks,
    normalise_text,
    page_key,
    parse_ddtp,
    read_markup,
)

log = logging.getLogger(__name__)

_QUESTION_END = ("?", "？")
_SECTION_NUMBER_RE = re.compile(r"^\s*(?:\d+\.)+\d*\s*")  # "1.2. " / "12.1 " numbering before a title
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Minimum long-description size for a synopsis pair: English needs two sentences and 80 characters, Japanese
# (denser, and rarely split into many sentences) 40 characters.
MIN_DESCRIPTION_CHARS = {"en": 80, "ja": 40}
MIN_EN_SENTENCES = 2
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)|[。！？]")


def _faq_pages(roots: dict[str, Path], lang: str) -> Iterator[tuple[str, Path]]:
    """``(page key, path)`` of the Debian FAQ pages of one language, sorted (layout from ``sources.MANUALS``)."""
    layout = MANUALS["debian-faq"]
    if lang not in layout.langs:
        raise ValueError(f"unsupported language {lang!r}")
    root = Path(roots[layout.side(lang).archive])
    if not (root / layout.side(lang).root).is_dir():
        raise FileNotFoundError(f"Debian FAQ ({lang}) not found at {root / layout.side(lang).root}")
    for path, rel in layout.pages(lang, root):
        if path.is_file() and not path.is_symlink():
            yield page_key(rel), path


def _has_class(el: Any, name: str) -> bool:
    return name in (el.get("class") or "").split()


def _section_questions(root: Any) -> Iterator[tuple[str, str, str]]:
    """``(anchor, question, answer)`` for each DocBook section whose title ends in a question mark."""
    for section in root.iter("div"):
        if not _has_class(section, "section"):
            continue
        titlepage = next((c for c in section if isinstance(c.tag, str) and _has_class(c, "titlepage")), None)
        if titlepage is None:
            continue
        heading = next((h for h in titlepage.iter() if isinstance(h.tag, str) and h.tag in _HEADINGS), None)
        if heading is None:
            continue
        title = normalise_text(heading.text_content())
        if not title.endswith(_QUESTION_END):
            continue
        question = _SECTION_NUMBER_RE.sub("", title)
        anchor = next((a.get("id") for a in heading.iter("a") if a.get("id")), None)
        anchor = anchor or section.get("id") or ""
        blocks: list[str] = []
        for child in section:
            # The section's own text only: its title and its subsections (other questions) are not the answer.
            if not isinstance(child.tag, str) or child is titlepage or _has_class(child, "section"):
                continue
            blocks.extend(text for _tag, text, _id in element_blocks(child))
        answer = "\n".join(blocks)
        if question and answer:
            yield anchor, question, answer


def faq_qa(roots: dict[str, Path], langs: tuple[str, ...] = ("en", "ja")) -> Iterator[dict[str, str]]:
    """Yield Debian FAQ question/answer pairs: ``{"id", "lang", "question", "answer", "group"}``.

    ``id`` is ``debian-faq/<lang>/<page key>#<section anchor>`` (the EN and JA versions of a question differ
    only in ``<lang>``); ``group`` is the page group ``debian-faq:<page key>``. Unparsable pages are logged
    and skipped.
    """
    for lang in langs:
        for key, path in _faq_pages(roots, lang):
            try:
                root = lxml.html.document_fromstring(read_markup(path))
            except (OSError, ValueError, RecursionError, lxml.etree.LxmlError) as exc:
                log.warning("debian-faq: skipping %s: %s", path, exc)
                continue
            seen: set[str] = set()
            for n, (anchor, question, answer) in enumerate(_section_questions(root)):
                suffix = anchor if anchor and anchor not in seen else f"q{n}"
                seen.add(suffix)
                yield {"id": f"debian-faq/{lang}/{key}#{suffix}", "lang": lang, "question": question,
                       "answer": answer, "group": f"debian-faq:{key}"}


def _long_enough(description: str, lang: str) -> bool:
    if len(description) < MIN_DESCRIPTION_CHARS.get(lang, 40):
        return False
    return lang != "en" or len(_SENTENCE_END_RE.findall(description)) >= MIN_EN_SENTENCES


def ddtp_synopsis(roots: dict[str, Path], lang: str) -> Iterator[dict[str, str]]:
    """Yield synopsis ← long-description pairs of the DDTP ``Translation-<lang>`` index.

    Each item: ``{"id": "ddtp-synopsis/<lang>/<package>", "lang", "package", "group": "ddtp:<package>",
    "synopsis", "description"}``; the description's paragraphs are separated by blank lines. A description
    already seen (many packages share one) is skipped, as are descriptions shorter than
    :data:`MIN_DESCRIPTION_CHARS` (and, for English, with fewer than two sentences).
    """
    archive = f"Translation-{lang}"
    if archive not in roots:
        raise FileNotFoundError(f"DDTP index {archive} not unpacked")
    seen: set[str] = set()
    used: set[str] = set()
    for entry in parse_ddtp(ddtp_index_path(Path(roots[archive]), lang), lang):
        description = "\n\n".join(entry.paragraphs)
        if not entry.synopsis or not _long_enough(description, lang) or description in seen:
            continue
        seen.add(description)
        item_id = f"ddtp-synopsis/{lang}/{entry.package}"
        if item_id in used:  # a package listed twice (two description versions)
            item_id = f"{item_id}@{entry.md5[:8]}"
        used.add(item_id)
        yield {"id": item_id, "lang": lang, "package": entry.package, "group": f"ddtp:{entry.package}",
               "synopsis": entry.synopsis, "description": description}


def main(argv: list[str] | None = None) -> int:
    """Print how much evaluation material ROOTS_DIR/<archive name> holds."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__)
        return 2
    base = Path(args[0])
    roots = {p.name: p for p in base.iterdir() if p.is_dir()}
    for lang in ("en", "ja"):
        items = list(faq_qa(roots, (lang,)))
        print(f"faq_qa {lang}: {len(items)}", items[0] if items else "")
    for lang in ("en", "ja"):
        items = list(ddtp_synopsis(roots, lang))
        print(f"ddtp_synopsis {lang}: {len(items)}", items[0] if items else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
