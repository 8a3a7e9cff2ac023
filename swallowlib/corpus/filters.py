"""The corpus quality filters (docs/study.md) as datatrove pipeline steps, and the ``technical`` rule set.

Two rule sets exist (``QualityFilters.rule_set``):

- ``swallow-v1`` (the default, "the paper's rules"): Swallow Corpus Version 1's released definitions and thresholds,
  exactly; its statistics live in :mod:`swallowlib.corpus.swallow_rules`.
- ``technical`` (this module): the same kinds of rule with Gopher-style units, defined below, which the CPU profiles
  use with thresholds adapted to technical documentation. At the same thresholds the two take different decisions
  (``benchmarks/bench_rule_agreement.py``: the same keep/drop decision on 75 % of the tiny profile's raw Japanese
  documents), mostly through blank lines (lines here, repeated empty paragraphs in swallow-v1), the n-gram units
  (MeCab words and covered characters vs characters) and the Japanese fraction's denominator.

Every rule is (1) a pure statistic ``text -> float`` and (2) its own datatrove filter step
(:class:`QualityRuleFilter`) with its own exclusion writer, so a run can report, per rule, how many documents and
characters it removed and show examples. :func:`quality_steps` builds the steps in the rule set's order;
:func:`run_quality_pipeline` runs JsonlReader -> (NFKC) -> rules -> JsonlWriter on a datatrove executor (NFKC after
the rules for ``swallow-v1``, which reads the text as extracted) and reads the per-rule removal table back from the
exclusion files and ``stats.json``.

:mod:`swallowlib.corpus.executors` runs these pipelines on the configured executor (local, Slurm or Ray).

Definitions of the ``technical`` rule set (the same for Japanese and English text):

- *line*: a piece of ``str.splitlines()``, stripped of surrounding whitespace; blank lines are not lines.
- *paragraph*: a maximal run of consecutive non-blank lines (paragraphs are separated by blank lines), its lines
  stripped and joined with ``"\\n"``.
- *sentence*: lines are split after a run of ``。．！？!?`` and after a ``.`` that is followed by whitespace;
  a line break also ends a sentence (as in Swallow's released code, which splits lines first). Pieces are
  stripped; empty pieces are dropped. Length = characters of the stripped sentence, terminator included.
- *Japanese characters*: hiragana (U+3041–309F), katakana (U+30A0–30FF except the middle dot U+30FB,
  U+31F0–31FF, half-width U+FF66–FF9F), CJK ideographs (U+3400–4DBF, U+4E00–9FFF, U+F900–FAFF,
  U+20000–2FA1F, and 々〆〇〻) and the CJK Symbols and Punctuation block (U+3001–303F, plus ・).
- *hiragana / katakana fraction*: hiragana (katakana) characters / Japanese characters (Swallow's definition:
  the denominator is the Japanese characters, so ASCII in a technical page does not count against it).
- *Japanese fraction*, *NG-word fraction*: over the document's non-whitespace characters (layout whitespace,
  e.g. man-page indentation, should not dilute a fraction).
- *n-gram units* for the repetition rules (Gopher, Rae et al. 2021, Table A1): "words". English words are
  whitespace-separated tokens (as in Gopher); Japanese words are MeCab tokens (fugashi + unidic-lite, whitespace
  dropped), so a Japanese 5-gram spans about as much text as an English one. Measured on manpages-ja (groff
  output): with single *characters* as units the same formulas flag 98% of pages as "duplicate 5-gram > 0.15"
  (Swallow's released count-based variant over characters: 53% of the pages >= 400 characters), with MeCab
  words 30% -- character 5-grams recur in any Japanese text ("ファイル", "する。"), so thresholds tuned on
  English words do not transfer to characters.
  The split depends only on the ``lang`` of the pipeline, and all n-gram rules use the same one.
- *top n-gram character fraction*: characters covered by the occurrences of the most frequent n-gram / all unit
  characters (overlapping occurrences are counted once, so the value is in [0, 1]).
- *duplicate n-gram character fraction*: characters covered by every occurrence of an n-gram after its first /
  all unit characters (again each character at most once).

Run the ``technical`` statistics on a file (``python -m swallowlib.corpus.swallow_rules`` for ``swallow-v1``)::

    python -m swallowlib.corpus.filters some.txt ja
"""

from __future__ import annotations

import gzip
import logging
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from datatrove.data import Document as DTDocument
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from swallowlib.config import ExecutorConfig, QualityFilters
from swallowlib.corpus.executors import make_executor, run_pipelines

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# Units: lines, paragraphs, sentences, n-gram units

# A sentence ends after a run of these, or after "." followed by whitespace.
_SENT_SPLIT = re.compile(r"(?<=[。．！？!?])(?![。．！？!?])|(?<=\.)(?=\s)")
_ELLIPSIS_ENDINGS = ("…", "...", "‥", "・")
_WS = re.compile(r"\s+")


def lines(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [s for s in (line.strip() for line in text.splitlines()) if s]


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of stripped lines, joined with newlines."""
    out: list[str] = []
    cur: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if s:
            cur.append(s)
        elif cur:
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


def sentences(text: str) -> list[str]:
    """Sentences of every line (see the module docstring for the exact rule)."""
    out: list[str] = []
    for line in lines(text):
        out.extend(s for s in (p.strip() for p in _SENT_SPLIT.split(line)) if s)
    return out


def _codepoints(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate in bad input must not crash a filter
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


_WS_CODEPOINTS = np.array(sorted(ord(c) for c in map(chr, range(0x3100)) if c.isspace()), dtype=np.uint32)


_TAGGER: Any = None


def _mecab_words(text: str) -> list[str]:
    global _TAGGER
    if _TAGGER is None:  # created lazily in each worker process: a MeCab tagger cannot be pickled
        import fugashi

        _TAGGER = fugashi.Tagger("-Owakati")
    return _TAGGER.parse(text).split()


def ngram_units(text: str, lang: str) -> tuple[np.ndarray, np.ndarray]:
    """The "words" the n-gram rules count, as (unit ids, unit lengths in characters).

    ``ja``: MeCab tokens (fugashi + unidic-lite); other languages: whitespace-separated tokens. Ids index a
    per-document vocabulary, so equal words get equal ids.
    """
    words = _mecab_words(text) if lang == "ja" else text.split()
    vocab: dict[str, int] = {}
    # id = position of the word's first occurrence; map() keeps the loop in C
    ids = np.fromiter(map(vocab.setdefault, words, range(len(words))), dtype=np.uint64, count=len(words))
    return ids, np.fromiter(map(len, words), dtype=np.int64, count=len(words))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads small ids (code points) over 64 bits before polynomial combination."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


_POLY = np.uint64(0x100000001B3)  # odd multiplier for combining unit hashes into n-gram hashes


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hash of every n-gram of ``ids`` (position i covers ids[i:i+n]); collisions are negligible."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h1 = _mix64(ids)
    h = h1[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h = h * _POLY + h1[k : k + m]
    return h


def _covered(starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """Boolean mask over ``length`` units: covered by an n-gram starting at a True position of ``starts``."""
    c = np.concatenate(([0], np.cumsum(starts, dtype=np.int64)))
    j = np.arange(length)
    hi = np.minimum(j, len(starts) - 1) + 1
    lo = np.maximum(j - n + 1, 0)
    return (c[hi] - c[lo]) > 0


# ---------------------------------------------------------------------------------------------------------------
# Character classes

_KATAKANA_RANGES = ((0x30A0, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_HIRAGANA_RANGES = ((0x3041, 0x309F),)
_KANJI_RANGES = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FA1F),
    (0x3005, 0x3007),  # 々〆〇
    (0x303B, 0x303B),  # 〻
)
_JA_PUNCT_RANGES = ((0x3001, 0x303F), (0x30FB, 0x30FB))


def _in_ranges(cp: np.ndarray, ranges: Iterable[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(len(cp), dtype=bool)
    for lo, hi in ranges:
        mask |= (cp >= lo) & (cp <= hi)
    return mask


# ---------------------------------------------------------------------------------------------------------------
# Per-document analysis, cached so consecutive rule steps on the same document do not recompute shared pieces.


class _Analysis:
    def __init__(self, text: str):
        self.text = text
        self._units: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._mixed: dict[str, np.ndarray] = {}
        self._hashes: dict[tuple[str, int], np.ndarray] = {}

    @cached_property
    def lines(self) -> list[str]:
        return lines(self.text)

    @cached_property
    def paragraphs(self) -> list[str]:
        return paragraphs(self.text)

    @cached_property
    def sentences(self) -> list[str]:
        return sentences(self.text)

    @cached_property
    def codepoints(self) -> np.ndarray:
        return _codepoints(self.text)

    @cached_property
    def char_classes(self) -> dict[str, int]:
        cp = self.codepoints
        hira = int(_in_ranges(cp, _HIRAGANA_RANGES).sum())
        kata = int(_in_ranges(cp, _KATAKANA_RANGES).sum())
        kanji = int(_in_ranges(cp, _KANJI_RANGES).sum())
        punct = int((_in_ranges(cp, _JA_PUNCT_RANGES) & ~_in_ranges(cp, _KANJI_RANGES)).sum())
        nonws = int(len(cp) - np.isin(cp, _WS_CODEPOINTS).sum())
        return {"hiragana": hira, "katakana": kata, "japanese": hira + kata + kanji + punct, "nonws": nonws}

    def units(self, lang: str) -> tuple[np.ndarray, np.ndarray]:
        if lang not in self._units:
            self._units[lang] = ngram_units(self.text, lang)
        return self._units[lang]

    def ngram_hashes(self, lang: str, n: int) -> np.ndarray:
        key = (lang, n)
        if key not in self._hashes:
            ids, _ = self.units(lang)
            prev = self._hashes.get((lang, n - 1))
            if prev is not None and len(prev) > 0 and n > 1:
                # extend the (n-1)-gram hashes by one unit instead of rehashing from scratch
                if lang not in self._mixed:
                    self._mixed[lang] = _mix64(ids)
                with np.errstate(over="ignore"):
                    self._hashes[key] = prev[:-1] * _POLY + self._mixed[lang][n - 1 :]
            else:
                self._hashes[key] = _ngram_hashes(ids, n)
        return self._hashes[key]


@lru_cache(maxsize=1)
def _analysis(text: str) -> _Analysis:
    """The last document's shared pieces: the rules of one document read the same lines, units and hashes."""
    return _Analysis(text)


# ---------------------------------------------------------------------------------------------------------------
# Statistics (pure functions, text -> float)


def _dup_counts(items: list[str]) -> tuple[int, int, int]:
    """(duplicate occurrences beyond the first, characters in them, characters in all items)."""
    counts = Counter(items)
    dup = sum(c - 1 for c in counts.values())
    dup_chars = sum(len(s) * (c - 1) for s, c in counts.items())
    return dup, dup_chars, sum(len(s) * c for s, c in counts.items())


def num_chars(text: str) -> float:
    """All characters of the document (``len``)."""
    return float(len(text))


def dup_line_frac(text: str) -> float:
    """Lines that repeat an earlier line / lines."""
    items = _analysis(text).lines
    return _dup_counts(items)[0] / len(items) if items else 0.0


def dup_para_frac(text: str) -> float:
    """Paragraphs that repeat an earlier paragraph / paragraphs."""
    items = _analysis(text).paragraphs
    return _dup_counts(items)[0] / len(items) if items else 0.0


def dup_line_char_frac(text: str) -> float:
    """Characters in lines that repeat an earlier line / characters in all lines."""
    _, dup_chars, total = _dup_counts(_analysis(text).lines)
    return dup_chars / total if total else 0.0


def dup_sentence_char_frac(text: str) -> float:
    """Characters in sentences that repeat an earlier sentence / characters in all sentences."""
    _, dup_chars, total = _dup_counts(_analysis(text).sentences)
    return dup_chars / total if total else 0.0


def top_ngram_char_frac(text: str, n: int, lang: str = "ja") -> float:
    """Characters covered by the most frequent unit n-gram (ties: the smallest hash) / unit characters."""
    a = _analysis(text)
    ids, weights = a.units(lang)
    h = a.ngram_hashes(lang, n)
    if len(h) == 0:
        return 0.0
    uniq, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    starts = inverse == int(np.argmax(counts))
    return float(weights[_covered(starts, n, len(ids))].sum() / weights.sum())


def dup_ngram_char_frac(text: str, n: int, lang: str = "ja") -> float:
    """Characters covered by repeated occurrences (after the first) of unit n-grams / unit characters."""
    a = _analysis(text)
    ids, weights = a.units(lang)
    h = a.ngram_hashes(lang, n)
    if len(h) == 0:
        return 0.0
    _, first = np.unique(h, return_index=True)
    starts = np.ones(len(h), dtype=bool)
    starts[first] = False
    if not starts.any():
        return 0.0
    return float(weights[_covered(starts, n, len(ids))].sum() / weights.sum())


def hiragana_frac(text: str) -> float:
    """Hiragana / Japanese characters (0 when there are none)."""
    c = _analysis(text).char_classes
    return c["hiragana"] / c["japanese"] if c["japanese"] else 0.0


def katakana_frac(text: str) -> float:
    """Katakana / Japanese characters (0 when there are none)."""
    c = _analysis(text).char_classes
    return c["katakana"] / c["japanese"] if c["japanese"] else 0.0


def japanese_frac(text: str) -> float:
    """Japanese characters / non-whitespace characters."""
    c = _analysis(text).char_classes
    return c["japanese"] / c["nonws"] if c["nonws"] else 0.0


def avg_sentence_len(text: str) -> float:
    """Mean sentence length in characters (0 when there are no sentences)."""
    s = _analysis(text).sentences
    return sum(map(len, s)) / len(s) if s else 0.0


def max_sentence_len(text: str) -> float:
    """Longest sentence in characters."""
    s = _analysis(text).sentences
    return float(max(map(len, s))) if s else 0.0


def ellipsis_frac(text: str) -> float:
    """Sentences ending in an ellipsis (``…``, ``...``, ``‥`` or ``・``) / sentences."""
    s = _analysis(text).sentences
    return sum(x.endswith(_ELLIPSIS_ENDINGS) for x in s) / len(s) if s else 0.0


# Illustrative only: a handful of adult/spam terms so the rule has something to match offline. A real web-scale run
# should supply a curated list through QualityFilters.ng_words. English terms match on word boundaries (so "anal"
# would not hit "analysis" if it were listed); Japanese terms match as substrings.
# fmt: off
DEFAULT_NG_WORDS: tuple[str, ...] = (
    # Japanese
    "アダルト動画", "無修正", "出会い系", "セフレ", "援助交際", "援交", "人妻", "熟女", "巨乳", "風俗嬢",
    "ソープランド", "エロ動画", "エロ画像", "オナニー", "セックス", "中出し", "ライブチャット", "副業で稼",
    "簡単に稼げる", "オンラインカジノ", "闇金",
    # English
    "porn", "porno", "pornography", "xvideos", "hentai", "milf", "camgirl", "escort service", "nude pics",
    "viagra", "cialis", "online casino", "payday loan", "get rich quick", "click here to buy",
)
# fmt: on


@dataclass(frozen=True)
class NGWordMatcher:
    """Case-insensitive NG-word matcher.

    Hand-written with ``str.find`` per word rather than one big regex alternation: Python's ``re`` tries every
    alternative at every position (measured 2.2 s on 6.8M characters for ~40 words; ``str.find`` is a C scan).
    ASCII words must not touch an ASCII letter or digit on either side; other words match as substrings.
    """

    words: tuple[str, ...]

    @cached_property
    def _needles(self) -> list[tuple[str, bool]]:
        return [(w, w.isascii()) for w in sorted({w.strip().lower() for w in self.words if w.strip()})]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Merged (start, end) spans of all matches in ``text``."""
        low = text.lower()
        if len(low) != len(text):  # lower() changed the length (rare ligatures): match on the text itself
            low = text
        hits: list[tuple[int, int]] = []
        for w, ascii_word in self._needles:
            i = low.find(w)
            while i >= 0:
                j = i + len(w)
                if not ascii_word or not (_is_alnum_ascii(low, i - 1) or _is_alnum_ascii(low, j)):
                    hits.append((i, j))
                i = low.find(w, i + 1)
        hits.sort()
        merged: list[tuple[int, int]] = []
        for a, b in hits:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def covered_chars(self, text: str) -> int:
        """Non-whitespace characters inside matches."""
        return sum(len(_WS.sub("", text[a:b])) for a, b in self.spans(text))


def _is_alnum_ascii(s: str, i: int) -> bool:
    return 0 <= i < len(s) and s[i].isascii() and s[i].isalnum()


_DEFAULT_MATCHER = NGWordMatcher(DEFAULT_NG_WORDS)


def ng_word_frac(text: str, ng_words: Iterable[str] | None = None) -> float:
    """Non-whitespace characters inside NG-word matches / non-whitespace characters."""
    matcher = _DEFAULT_MATCHER if ng_words is None else NGWordMatcher(tuple(ng_words))
    nonws = _analysis(text).char_classes["nonws"]
    return matcher.covered_chars(text) / nonws if nonws else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class Rule:
    """One named quality rule: drop a document when ``stat(text)`` is below ``min`` or above ``max``.

    ``max_inclusive`` drops at ``stat == max`` too (the NG-word rule: "≥ 0.05").
    """

    name: str
    stat: Callable[[str], float]
    min: float | None = None
    max: float | None = None
    max_inclusive: bool = False

    def drops(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return True
        if self.max is not None:
            return value >= self.max if self.max_inclusive else value > self.max
        return False


# Rules defined only for Japanese script; skipped for other languages (a hiragana fraction of English is 0/0).
JAPANESE_ONLY = ("japanese_frac", "hiragana_frac", "katakana_frac")


def _bind(fn: Callable[..., float], **kw: Any) -> Callable[[str], float]:
    def stat(text: str) -> float:
        return fn(text, **kw)

    stat.__name__ = fn.__name__
    return stat


def quality_rules(cfg: QualityFilters, lang: str) -> list[Rule]:
    """The enabled rules of ``cfg`` for ``lang``, in pipeline order.

    ``swallow-v1``: :func:`swallowlib.corpus.swallow_rules.quality_rules` (Japanese only; the released order).
    ``technical``, cheap, high-yield rules first: min_chars; japanese_frac, hiragana_frac, katakana_frac (one
    vectorised pass, ``ja`` only); ng_word_frac (one regex scan); dup_line_frac, dup_line_char_frac, dup_para_frac,
    dup_sentence_char_frac; avg_sentence_len, max_sentence_len, ellipsis_frac (share the sentence split);
    top_{2,3,4}gram_char_frac, dup_{5..10}gram_char_frac (n-gram hashing, the most expensive).
    """
    if cfg.rule_set == "swallow-v1":
        if lang != "ja":
            raise ValueError(f"rule_set swallow-v1 is defined for Japanese text only, not {lang!r}; use technical")
        from swallowlib.corpus import swallow_rules  # it imports Rule from here

        return swallow_rules.quality_rules(cfg)
    matcher = NGWordMatcher(tuple(cfg.ng_words)) if cfg.ng_words else _DEFAULT_MATCHER

    def ng(text: str) -> float:
        nonws = _analysis(text).char_classes["nonws"]
        return matcher.covered_chars(text) / nonws if nonws else 0.0

    ng.__name__ = "ng_word_frac"
    rules = [
        Rule("min_chars", num_chars, min=cfg.min_chars),
        Rule("japanese_frac", japanese_frac, min=cfg.min_japanese_frac),
        Rule("hiragana_frac", hiragana_frac, min=cfg.min_hiragana_frac),
        Rule("katakana_frac", katakana_frac, max=cfg.max_katakana_frac),
        Rule("ng_word_frac", ng, max=cfg.max_ng_word_char_frac, max_inclusive=True),
        Rule("dup_line_frac", dup_line_frac, max=cfg.max_dup_line_frac),
        Rule("dup_line_char_frac", dup_line_char_frac, max=cfg.max_dup_line_char_frac),
        Rule("dup_para_frac", dup_para_frac, max=cfg.max_dup_para_frac),
        Rule("dup_sentence_char_frac", dup_sentence_char_frac, max=cfg.max_dup_sentence_char_frac),
        Rule("avg_sentence_len", avg_sentence_len, min=cfg.min_avg_sentence_chars, max=cfg.max_avg_sentence_chars),
        Rule("max_sentence_len", max_sentence_len, max=cfg.max_sentence_chars),
        Rule("ellipsis_frac", ellipsis_frac, max=cfg.max_ellipsis_sentence_frac),
    ]
    for n, t in sorted(cfg.max_top_ngram_char_frac.items()):
        rules.append(Rule(f"top_{n}gram_char_frac", _bind(top_ngram_char_frac, n=n, lang=lang), max=t))
    for n, t in sorted(cfg.max_dup_ngram_char_frac.items()):
        rules.append(Rule(f"dup_{n}gram_char_frac", _bind(dup_ngram_char_frac, n=n, lang=lang), max=t))
    enabled = [r for r in rules if r.min is not None or r.max is not None]
    if lang != "ja":
        skipped = [r.name for r in enabled if r.name in JAPANESE_ONLY]
        if skipped:
            log.info("lang=%s: skipping Japanese-script rules %s", lang, ", ".join(skipped))
        enabled = [r for r in enabled if r.name not in JAPANESE_ONLY]
    return enabled


def rule_values(text: str, cfg: QualityFilters, lang: str) -> dict[str, float]:
    """Every enabled rule's statistic for one text (for notebooks and debugging)."""
    return {r.name: r.stat(text) for r in quality_rules(cfg, lang)}


def dropped_by(text: str, cfg: QualityFilters, lang: str, rules: list[Rule] | None = None) -> str | None:
    """The first rule of ``cfg`` that drops ``text`` (as the pipeline attributes it), or None when it is kept.

    ``rules``: ``quality_rules(cfg, lang)`` built once by a caller that decides many texts."""
    for r in rules if rules is not None else quality_rules(cfg, lang):
        if r.drops(r.stat(text)):
            return r.name
    return None


class QualityRuleFilter(BaseFilter):
    """One quality rule as a datatrove filter; dropped documents carry ``filter_reason`` and ``filter_value``."""

    type = "🔻 - FILTER"

    def __init__(self, rule: Rule, exclusion_writer: JsonlWriter | None = None):
        self.name = rule.name  # before super().__init__: datatrove names the step's stats from it
        super().__init__(exclusion_writer)
        self.rule = rule

    def filter(self, doc: DTDocument) -> bool | tuple[bool, str]:
        try:
            value = self.rule.stat(doc.text)
        except Exception as e:  # bad input must not crash the stage: count it and drop the document
            log.warning("rule %s failed on %s: %s", self.rule.name, doc.id, e)
            self.stat_update("errors")
            doc.metadata["filter_value"] = None
            return False, "error"
        if self.rule.drops(value):
            doc.metadata["filter_value"] = round(float(value), 6)
            return False, self.rule.name
        return True


class NFKCNormalizer(BaseFormatter):
    """Unicode NFKC normalisation of the text (datatrove 0.10.1 only offers it through ftfy, not installed)."""

    name = "NFKC"

    def format(self, text: str) -> str:
        return unicodedata.normalize("NFKC", text)

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in super().run(data, rank, world_size):
            self.update_doc_stats(doc)  # characters after normalisation, for the removal accounting
            yield doc


def quality_steps(cfg: QualityFilters, lang: str, exclusion_dir: Path | None) -> list[PipelineStep]:
    """One :class:`QualityRuleFilter` per enabled rule, in :func:`quality_rules` order.

    With ``exclusion_dir``, rule ``r`` writes what it drops to ``exclusion_dir/r/<rank>.jsonl.gz``.
    """
    steps: list[PipelineStep] = []
    for rule in quality_rules(cfg, lang):
        writer = JsonlWriter(str(exclusion_dir / rule.name)) if exclusion_dir is not None else None
        steps.append(QualityRuleFilter(rule, writer))
    return steps


# ---------------------------------------------------------------------------------------------------------------
# Reading, executors, accounting (shared with swallowlib.corpus.dedup)


class SafeJsonlReader(JsonlReader):
    """JsonlReader that counts (``corrupt_lines`` / ``corrupt_files``) and skips bad input instead of only logging.

    A line is corrupt when it is not JSON, not an object, or its ``text`` is not a string.
    """

    name = "🐿 Jsonl (safe)"

    def __init__(self, data_folder: str, **kwargs: Any):
        kwargs.setdefault("add_file_path", False)  # keep the records' metadata as the upstream stage wrote it
        kwargs.setdefault("glob_pattern", "*.jsonl*")
        super().__init__(data_folder, **kwargs)

    def read_file(self, filepath: str):
        try:
            with self.data_folder.open(filepath, "r", compression=self.compression) as f:
                for li, line in enumerate(f):
                    try:
                        data = orjson.loads(line)
                        if not isinstance(data, dict) or not isinstance(data.get(self.text_key), str):
                            raise ValueError("not a document object")
                        document = self.get_document_from_dict(data, filepath, li)
                    except (orjson.JSONDecodeError, ValueError, TypeError) as e:
                        self.stat_update("corrupt_lines")
                        log.warning("%s:%d: skipped a corrupt line (%s)", filepath, li + 1, e)
                        continue
                    if document is None:  # empty text
                        self.stat_update("empty_docs")
                        continue
                    yield document
        except (OSError, EOFError, UnicodeDecodeError) as e:
            self.stat_update("corrupt_files")
            log.warning("%s: stopped reading a corrupt file (%s)", filepath, e)


def check_apart(*dirs: Path) -> None:
    """Refuse directories that are, contain or lie inside one another: a step's writer would read its own output."""
    res = [Path(d).resolve() for d in dirs]
    for i, a in enumerate(res):
        for b in res[i + 1 :]:
            if a == b or a.is_relative_to(b) or b.is_relative_to(a):
                raise ValueError(f"{a} overlaps {b}; use separate directories")


def metric_total(value: Any) -> int:
    """The ``total`` of one datatrove stats entry (which is a bare number when only the total is set)."""
    if isinstance(value, dict):
        return int(value.get("total", 0))
    return int(value or 0)


def read_stats(logging_dir: Path) -> list[dict[str, Any]]:
    """The per-step stats of every task of a datatrove run, summed (one dict per step).

    Summed from the per-task files (``logging_dir/stats/<rank>.json``), not datatrove's ``stats.json``: after a
    resumed run that file covers only the tasks run by the last attempt.
    """
    from datatrove.utils.stats import PipelineStats

    files = sorted((Path(logging_dir) / "stats").glob("*.json"))
    if not files:
        return []
    total = sum((PipelineStats.from_json(orjson.loads(f.read_bytes())) for f in files), start=PipelineStats())
    return orjson.loads(total.to_json())


def summarise_exclusions(folder: Path, n_examples: int = 3, max_example_chars: int = 300) -> dict[str, Any]:
    """Documents and characters in the exclusion files under ``folder``, with the first few texts as examples."""
    docs = chars = 0
    examples: list[dict[str, Any]] = []
    for f in sorted(folder.glob("*.jsonl*")) if folder.is_dir() else []:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rb") as fh:
            for line in fh:
                try:
                    d = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                text = d.get("text") or ""
                docs += 1
                chars += len(text)
                if len(examples) < n_examples:
                    meta = d.get("metadata") or {}
                    examples.append(
                        {"id": d.get("id"), "value": meta.get("filter_value"), "text": text[:max_example_chars]}
                    )
    return {"docs": docs, "chars": chars, "examples": examples}


# ---------------------------------------------------------------------------------------------------------------
# The whole quality pipeline


def run_quality_pipeline(
    input_dir: Path,
    output_dir: Path,
    lang: str,
    qcfg: QualityFilters,
    nfkc: bool,
    work_dir: Path,
    executor_cfg: ExecutorConfig,
) -> dict[str, Any]:
    """Filter the JSONL shards in ``input_dir`` into ``output_dir`` and return the removal table.

    ``work_dir`` receives datatrove logs (``work_dir/logs``) and one exclusion folder per rule
    (``work_dir/excluded/<rule>/``). A rerun after a kill redoes only the unfinished tasks. Returns::

        {"docs_in", "chars_read", "chars_in", "docs_out", "chars_out", "corrupt_lines", "corrupt_files",
         "rules": {rule: {"docs", "chars", "examples": [{"id", "value", "text"}]}}}

    plus ``rule_set``, ``nfkc`` (``"before rules"``, ``"after rules"`` or None) and ``chars_kept``.

    ``chars_read`` counts the input as read; ``chars_in`` the characters entering the rules; ``chars_kept`` the
    characters the rules kept; ``chars_out`` the characters written. The ``technical`` rules read NFKC-normalised
    text: ``chars_in`` is after NFKC (equal to ``chars_read`` without it) and ``chars_kept == chars_out``. The
    ``swallow-v1`` rules read the text as extracted, so NFKC runs after them: ``chars_in == chars_read`` and
    ``chars_out`` is ``chars_kept`` after NFKC. Per-rule ``chars`` are counted on the text the rules read, so always
    ``chars_in == chars_kept + Σ rules[r].chars`` and ``docs_in == docs_out + Σ rules[r].docs``. A document
    whose statistic raised is dropped by that rule (stats: ``errors``) and counted with it.
    """
    input_dir, output_dir, work = Path(input_dir), Path(output_dir), Path(work_dir)
    check_apart(input_dir, output_dir, work)
    excl = work / "excluded"
    logs = work / "logs"
    nfkc_at = None if not nfkc else "after rules" if qcfg.rule_set == "swallow-v1" else "before rules"
    pipeline: list[PipelineStep] = [SafeJsonlReader(str(input_dir))]
    if nfkc_at == "before rules":
        pipeline.append(NFKCNormalizer())
    steps = quality_steps(qcfg, lang, excl)
    pipeline += steps
    if nfkc_at == "after rules":
        pipeline.append(NFKCNormalizer())
    pipeline.append(JsonlWriter(str(output_dir)))
    # Tasks finished by an earlier, killed run of the same inputs are skipped (their completion markers are in
    # logs/); the caller empties work_dir and output_dir when the inputs change.
    run_pipelines([make_executor(pipeline, executor_cfg, logs)], executor_cfg)

    stats = read_stats(logs)
    reader = stats[0]["stats"] if stats else {}
    writer = stats[-1]["stats"] if stats else {}
    chars_read = metric_total(reader.get("doc_len"))
    chars_in = metric_total(stats[1]["stats"].get("doc_len")) if nfkc_at == "before rules" and stats else chars_read
    # a filter step counts the characters of the documents it forwards: the last rule's count is what the rules kept
    last_rule = stats[len(stats) - 2 - (nfkc_at == "after rules")]["stats"] if steps and stats else None
    out = {
        "rule_set": qcfg.rule_set,
        "nfkc": nfkc_at,
        "docs_in": metric_total(reader.get("documents")),
        "chars_read": chars_read,
        "chars_in": chars_in,
        "chars_kept": metric_total(last_rule.get("doc_len")) if last_rule is not None else chars_in,
        "docs_out": metric_total(writer.get("total")),
        "chars_out": metric_total(writer.get("doc_len")),
        "corrupt_lines": metric_total(reader.get("corrupt_lines")),
        "corrupt_files": metric_total(reader.get("corrupt_files")),
        "rules": {s.name: summarise_exclusions(excl / s.name) for s in steps},
    }
    log.info(
        "quality[%s]: %d -> %d docs, %d -> %d chars",
        lang,
        out["docs_in"],
        out["docs_out"],
        out["chars_in"],
        out["chars_out"],
    )
    return out


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    _text = Path(sys.argv[1]).read_text(encoding="utf-8")
    _lang = sys.argv[2] if len(sys.argv) > 2 else "ja"
    _cfg = QualityFilters(rule_set="technical")
    for _name, _v in rule_values(_text, _cfg, _lang).items():
        print(f"{_name:24s} {_v:10.4f}")
