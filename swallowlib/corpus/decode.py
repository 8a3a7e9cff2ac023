"""Robust decoding of raw file bytes into clean text, without ever returning mojibake.

Every extractor reads bytes (a man page, an HTML page, a user's own ``.txt``) and passes them through
:func:`decode_document`, which chains three steps:

1. :func:`decode_bytes` — bytes to ``str``. Strict UTF-8 first (with or without a BOM); otherwise the
   Japanese legacy encodings (ISO-2022-JP recognised by its escape sequences, then Shift_JIS/CP932 and EUC-JP
   guessed by ``charset-normalizer`` restricted to those candidates). A guess is accepted only if the bytes
   decode *strictly* with it and the result looks like Japanese (:func:`looks_japanese`); a last fallback
   accepts Windows-1252 for mostly-ASCII Western text. Anything else is a counted skip, never a guess.
2. :func:`clean_text` — newlines normalised, control characters removed, blank-line runs collapsed.
3. :func:`split_long_lines` — the guard against enormous single lines (see there for the policy).

The status string says what happened: an encoding name (``"utf-8"``, ``"utf-8-sig"``, ``"utf-16"``,
``"iso2022_jp"``, ``"cp932"``, ``"shift_jis"``, ``"euc_jp"``, ``"cp1252"``) when text came back, or a skip
reason (``"empty"``, ``"nul-bytes"``, ``"binary"``, ``"undecodable"``, ``"long-line"``) when it did not.

Try it::

    .venv/bin/python -c "from swallowlib.corpus.decode import decode_bytes as d; print(d('nihongo'.encode()))"
"""

from __future__ import annotations

import codecs
import logging
import re
from collections import Counter

import charset_normalizer

log = logging.getLogger(__name__)

#: Skip reasons :func:`decode_bytes` / :func:`decode_document` can return instead of an encoding.
SKIP_REASONS = ("empty", "nul-bytes", "binary", "undecodable", "long-line")

#: Lines longer than this many characters are split at sentence ends (or the document is skipped).
MAX_LINE_CHARS = 100_000

# Candidate legacy encodings. cp932 is Microsoft's superset of Shift_JIS (it adds the NEC/IBM
# rows that real Japanese Windows files use), so it is tried whenever Shift_JIS is.
_JA_CANDIDATES = ["cp932", "shift_jis", "euc_jp", "iso2022_jp"]
# The escapes that switch to JIS X 0208/0212, which any Japanese ISO-2022-JP text contains (ESC ( B alone is
# also a terminal control sequence, so it does not count).
_ISO2022_ESC = re.compile(rb"\x1b\$[@B]|\x1b\$\(D")
# C0 controls that never occur in text (TAB, LF, VT, FF, CR and ESC are allowed; ESC for ISO-2022-JP).
_BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_BINARY_TABLE = bytes.maketrans(b"", b"")


def _is_binary(data: bytes) -> bool:
    """True when more than 1% of the first 64 kB are control bytes no text file contains."""
    sample = data[:65536]
    n_ctrl = len(sample) - len(sample.translate(_BINARY_TABLE, _BINARY_BYTES))
    return n_ctrl > 0.01 * len(sample)


def _char_class(ch: str) -> str:
    o = ord(ch)
    if 0x3041 <= o <= 0x309F:
        return "hiragana"
    if 0x30A0 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF:
        return "katakana"
    if 0xFF61 <= o <= 0xFF9F:
        return "halfwidth-kana"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
        return "kanji"
    if 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF60 or 0xFFE0 <= o <= 0xFFEF:
        return "ja-punct"
    if 0xE000 <= o <= 0xF8FF:
        return "private"
    return "other"


def looks_japanese(text: str) -> bool:
    """Whether a legacy-decoded text is plausible Japanese rather than mojibake.

    Mojibake from a wrong double-byte guess is mostly kanji, half-width katakana, symbols and user-defined
    (private-use) code points, with almost no hiragana; real Japanese prose is ~30-60 % kana. So, over the
    non-ASCII characters: >= 90 % must be Japanese script or punctuation, kana must be >= 15 % of them,
    half-width katakana < 10 % and private-use < 1 %.
    """
    counts: dict[str, int] = {}
    n = 0
    for ch in text:
        if ch < "\x80":
            continue
        n += 1
        c = _char_class(ch)
        counts[c] = counts.get(c, 0) + 1
    if n == 0:
        return False
    kana = counts.get("hiragana", 0) + counts.get("katakana", 0)
    japanese = kana + counts.get("kanji", 0) + counts.get("ja-punct", 0) + counts.get("halfwidth-kana", 0)
    return (
        japanese >= 0.9 * n
        and kana >= 0.15 * n
        and counts.get("halfwidth-kana", 0) < 0.1 * n
        and counts.get("private", 0) < 0.01 * n
    )


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
# What the high bytes of real Western (cp1252/Latin-1) text decode to: accented Latin letters and typographic
# punctuation. Legacy Japanese bytes read as cp1252 give runs of these too, but far denser than in real text.
_WESTERN_OK = set("\u00a0\u00a9\u00ab\u00ae\u00b0\u00b1\u00b7\u00bb\u00bf\u00d7\u00f7"
                  "\u2013\u2014\u2018\u2019\u201c\u201d\u2026\u20ac\u00a3")


def _looks_western(text: str) -> bool:
    """Mostly-ASCII text whose few high characters are Latin letters or common typographic punctuation."""
    high = [c for c in text if c >= "\x80"]
    if not high or len(high) > 0.3 * len(text):
        return False
    ok = sum(1 for c in high if c in _WESTERN_OK or ("\u00c0" <= c <= "\u024f" and c not in "\u00d7\u00f7"))
    return ok >= 0.9 * len(high)


def decode_bytes(data: bytes) -> tuple[str | None, str]:
    """Decode raw bytes; returns ``(text, encoding)`` or ``(None, skip_reason)``.

    Order: empty -> BOMs -> NUL bytes -> binary -> strict UTF-8 -> ISO-2022-JP (escape sequences) ->
    charset-normalizer over cp932/shift_jis/euc_jp, verified by strict decoding and :func:`looks_japanese`
    -> cp1252 for mostly-ASCII Western text -> ``"undecodable"``.
    """
    if not data or not data.strip():
        return None, "empty"
    if data.startswith(codecs.BOM_UTF8):
        text = _strict(data[3:], "utf-8")
        return (text, "utf-8-sig") if text is not None else (None, "undecodable")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = _strict(data, "utf-16")  # the BOM picks the byte order and is consumed
        return (text, "utf-16") if text is not None and "\x00" not in text else (None, "undecodable")
    if b"\x00" in data:
        return None, "nul-bytes"
    if _is_binary(data):
        return None, "binary"
    # ISO-2022-JP is 7-bit, hence also valid UTF-8: recognise its escape sequences before trying UTF-8. Bytes
    # with those escapes that do not decode as ISO-2022-JP are corrupt; no other guess is made for them.
    if _ISO2022_ESC.search(data):
        text = _strict(data, "iso2022_jp")
        if text is not None and looks_japanese(text):
            return text, "iso2022_jp"
        return None, "undecodable"
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    guess = charset_normalizer.from_bytes(data, cp_isolation=_JA_CANDIDATES).best()
    tried = []
    if guess is not None:
        tried.append(guess.encoding)
    # charset-normalizer may pick the wrong member of a family on short inputs; the other candidates are tried
    # after it, but only an unambiguous result (exactly one candidate passes) is accepted then.
    others = [e for e in ("cp932", "euc_jp") if e not in tried]
    for i, enc in enumerate(tried + others):
        text = _strict(data, enc)
        if text is None or not looks_japanese(text):
            continue
        if i < len(tried):
            return text, enc
        rest = [e for e in others if e != enc]
        if not any((t := _strict(data, e)) is not None and looks_japanese(t) for e in rest):
            return text, enc
        break
    # cp1252 only for bytes with no UTF-8 multi-byte sequence in them: UTF-8 with one corrupt byte read as
    # cp1252 would turn every accented letter into mojibake ("Ã©").
    if not _UTF8_MULTIBYTE.search(data):
        text = _strict(data, "cp1252")
        if text is not None and _looks_western(text):
            return text, "cp1252"
    return None, "undecodable"


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
_BLANK_RUN = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """Normalise newlines to ``\\n``, drop control characters except ``\\n``/``\\t`` (and BOMs), strip
    trailing whitespace on every line, collapse any run of blank lines to one (paragraphs are separated by
    exactly one blank line), and strip the whole text."""
    text = _NEWLINES.sub("\n", text)
    text = _CONTROL.sub("", text)
    # per-line rstrip, not a "[ \t]+$" regex: that is quadratic on lines with long inner runs of spaces
    text = "\n".join(line.rstrip(" \t\u00a0") for line in text.split("\n"))
    text = _BLANK_RUN.sub("\n\n", text)
    return text.strip()


# Sentence ends at which an over-long line may be cut: Japanese full stops/marks always, Western ones when
# followed by a space.
_SENTENCE_END = re.compile(r"(?<=[。！？．])|(?<=[.!?])(?= )")


def split_long_lines(text: str, max_chars: int = MAX_LINE_CHARS) -> tuple[str | None, int]:
    """The enormous-line guard. Returns ``(text, n_lines_split)``, or ``(None, 0)`` to skip the document.

    Policy: a line longer than ``max_chars`` is split at sentence ends into lines of at most ``max_chars``
    characters (prose saved as one line per paragraph or per file survives, and later steps that work line by
    line stay bounded). If some stretch of ``max_chars`` characters has no sentence end at all, the line is
    not prose (minified code, base64, a dumped table) and the whole document is skipped (reason
    ``"long-line"``).
    """
    if len(text) <= max_chars or all(len(line) <= max_chars for line in text.split("\n")):
        return text, 0
    out: list[str] = []
    n_split = 0
    for line in text.split("\n"):
        if len(line) <= max_chars:
            out.append(line)
            continue
        n_split += 1
        cuts = [m.start() for m in _SENTENCE_END.finditer(line)] + [len(line)]
        start = prev = 0
        for cut in cuts:
            if cut - start > max_chars:
                if prev == start:  # a single "sentence" longer than the limit
                    return None, 0
                out.append(line[start:prev].strip())
                start = prev
                if cut - start > max_chars:
                    return None, 0
            prev = cut
        out.append(line[start:].strip())
    return "\n".join(out), n_split


def decode_document(
    data: bytes, max_line_chars: int = MAX_LINE_CHARS, notes: Counter[str] | None = None
) -> tuple[str | None, str]:
    """:func:`decode_bytes` + :func:`clean_text` + :func:`split_long_lines`.

    Returns ``(text, encoding)`` or ``(None, skip_reason)``; a text that is empty after cleaning is
    ``"empty"``. ``notes`` (if given) counts ``"long-line-split"`` for every over-long line that was split.
    """
    text, status = decode_bytes(data)
    if text is None:
        return None, status
    text = clean_text(text)
    if not text:
        return None, "empty"
    text, n_split = split_long_lines(text, max_line_chars)
    if text is None:
        return None, "long-line"
    if n_split and notes is not None:
        notes["long-line-split"] += n_split
    return text, status
