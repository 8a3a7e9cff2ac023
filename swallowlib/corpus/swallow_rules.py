"""The ``swallow-v1`` quality rules: Swallow Corpus Version 1's released definitions and decisions, exactly.

Source of every definition and threshold here: the Swallow corpus code, https://github.com/swallow-llm/swallow-corpus
(MIT), ``quality.py`` (the statistics and ``apply_v1``) and ``ngword.py`` (the NG-word fraction), run on Python 3.
This module is a separate implementation of those definitions (vectorised, and defined where the released code
raises); ``benchmarks/bench_rule_agreement.py`` compares its keep/drop decisions with the released file's, document
by document. The other rule set, ``technical``, lives in :mod:`swallowlib.corpus.filters` (Gopher-style units,
adapted to technical documentation); ``QualityFilters.rule_set`` selects one.

**Text.** The rules read the text exactly as extracted: nothing is normalised first (Swallow rewrites punctuation
only after filtering). When a profile NFKC-normalises Japanese, :func:`~swallowlib.corpus.filters.run_quality_pipeline`
does it *after* these rules.

**Units.**

- *line*: a piece of ``text.split("\\n")``. Blank lines are lines; ``"\\r"`` and other whitespace stay in the line.
- *sentence*: inside one line, every match of ``[^。．！？!?]+[。．！？!?]?``: a run of characters other than the six
  terminators, plus at most one terminator. A terminator that follows no character of its line, or follows another
  terminator, belongs to no sentence (``"本当！？"`` is one sentence, ``"本当！"``). A line without a terminator is one
  sentence (spaces included); a blank line has none. Length = characters, terminator and whitespace included.
- *paragraph*: one per line, the concatenation of that line's sentences, i.e. the line without the stray terminators
  above (``""`` for a blank line). Swallow calls these paragraphs; the config's ``*_line_*`` thresholds apply to them.
- *n-gram*: ``n`` consecutive characters of the whole text, line breaks included (``len(text) - n + 1`` of them).
- *Japanese letters*: hiragana U+3041–3096, katakana U+30A1–30FA (not the long-vowel mark ー U+30FC, nor the middle dot
  ・ U+30FB), kanji (々 〇 〻, U+3400–9FFF, U+F900–FAFF), kuten ``。．！？`` and tōten ``、，`` (full-width only).
  The released kanji pattern also has a UTF-16 surrogate pair (high U+D840–D87F then low U+DC00–DFFF) for the
  ideographs outside the BMP; on Python 3 a ``str`` holds such a character as one code point, never as a surrogate
  pair, so **characters outside the BMP (e.g. 𠀋 U+2000B) are not Japanese letters**. Only the pair itself (two lone
  surrogate code points, which a decoder never produces) counts, as one letter, as it does in the released code.

**Statistics and rules**, in the released order (a document is dropped by the first rule that fires; every
fraction is 0.0 when its denominator is 0):

========================  ======================================================================  ==============
rule (threshold key)      statistic                                                               drops when
========================  ======================================================================  ==============
ng_word_frac              characters of NG-word matches (leftmost-longest, case-sensitive,         >= 0.05
(max_ng_word_char_frac)   non-overlapping) / Japanese letters (released: a separate step, first)
min_chars (min_chars)     ``len(text)``, all characters                                            < 400
dup_line_frac             Σ over distinct paragraphs (count − 1) / paragraphs                      > 0.30
dup_sentence_frac         the same over sentences                                                  > 0.30
dup_line_char_frac        Σ len(p) × (count(p) − 1) / Σ len over all paragraphs                    > 0.20
dup_sentence_char_frac    the same over sentences                                                  > 0.20
top_{n}gram_char_frac     count of the most frequent n-gram / n-grams, n = 2, 3, 4                 > .20 .18 .16
dup_{n}gram_char_frac     distinct n-grams occurring more than once / distinct n-grams, n = 5…10   > .15 … .10
hiragana_frac             hiragana / Japanese letters                                              < 0.2
katakana_frac             katakana / Japanese letters                                              > 0.5
japanese_frac             Japanese letters / ``len(text)`` (whitespace counts)                     < 0.5
min_japanese_chars        Japanese letters                                                         < 400
avg_sentence_len          mean sentence length (0 without sentences)                               < 20 or > 90
max_sentence_len          longest sentence (0 without sentences)                                   > 200
ellipsis_frac             sentences whose whitespace-stripped text ends in ``・`` or ``…`` /         > 0.2
                          sentences
========================  ======================================================================  ==============

(The "character" n-gram rules count n-grams, not the characters they cover; the names follow the released code.)

**Where the released code raises.** It fails on a text shorter than 4 characters (no n-gram to take the most
frequent of) and on a text with no sentence at all (the maximum of nothing). Here both statistics are 0.0; with the
released thresholds such a document is dropped anyway (``min_chars`` or ``avg_sentence_len``), and the agreement
benchmark counts these documents apart.

**Worked example.** ``text = "今日は晴れ。明日も晴れ！！\\n今日は晴れ。\\n\\nそして…\\n"`` (27 characters):

- lines: ``今日は晴れ。明日も晴れ！！``, ``今日は晴れ。``, ``""``, ``そして…``, ``""`` (the final ``\\n`` ends a
  fifth, blank line);
- sentences: ``今日は晴れ。`` ``明日も晴れ！`` | ``今日は晴れ。`` | — | ``そして…`` | — (the second ``！`` is in none);
- paragraphs: ``今日は晴れ。明日も晴れ！`` (12), ``今日は晴れ。`` (6), ``""``, ``そして…`` (4), ``""``;
- dup_line_frac = 1/5 = 0.2 (the second blank line) and dup_line_char_frac = 0/22 = 0 (blank lines weigh nothing);
- dup_sentence_frac = 1/4 = 0.25; dup_sentence_char_frac = 6/22 ≈ 0.273 (sentences 6 + 6 + 6 + 4 = 22 characters);
- top_2gram_char_frac = 3/26 ≈ 0.115 (晴れ ×3 among 26 bigrams);
- dup_5gram_char_frac = 2/21 ≈ 0.095 (今日は晴れ and 日は晴れ。 repeat, of 21 distinct 5-grams among 23);
- Japanese letters 22 = 9 kanji + 9 hiragana + 4 kuten (… and the four ``\\n`` are not): hiragana_frac = 9/22 ≈ 0.409,
  katakana_frac = 0, japanese_frac = 22/27 ≈ 0.815;
- avg_sentence_len = 22/4 = 5.5, max_sentence_len = 6, ellipsis_frac = 1/4 (``そして…``).

Decision: dropped by ``min_chars`` (27 < 400), the first rule that fires (after ``ng_word_frac`` = 0).

    python -m swallowlib.corpus.swallow_rules some.txt     # every statistic of a file and the first rule that fires
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from swallowlib.config import QualityFilters
from swallowlib.corpus.filters import DEFAULT_NG_WORDS, Rule

# ---------------------------------------------------------------------------------------------------------------
# Units

TERMINATORS = "。．！？!?"
_SENTENCE = re.compile(f"[^{TERMINATORS}]+[{TERMINATORS}]?")
ELLIPSIS_ENDINGS = ("・", "…")


def lines(text: str) -> list[str]:
    """``text.split("\\n")``: blank lines included, nothing stripped."""
    return text.split("\n")


def line_sentences(line: str) -> list[str]:
    """The sentences of one line (see the module docstring)."""
    return _SENTENCE.findall(line)


def sentences(text: str) -> list[str]:
    """Every line's sentences, in order."""
    return [s for line in lines(text) for s in line_sentences(line)]


def paragraphs(text: str) -> list[str]:
    """One paragraph per line: the concatenation of its sentences."""
    return ["".join(line_sentences(line)) for line in lines(text)]


# ---------------------------------------------------------------------------------------------------------------
# Character classes (counted on the code points, so whole documents are counted in a few numpy passes)

_KANJI_SINGLES = (0x3005, 0x3007, 0x303B)  # 々 〇 〻
_KUTEN = tuple(map(ord, "。．！？"))
_TOTEN = tuple(map(ord, "、，"))


def _codepoints(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate code point stays one element, as it is one character of the str
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _between(cp: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (cp >= lo) & (cp <= hi)


def letter_counts(text: str) -> dict[str, int]:
    """Hiragana, katakana, kanji, kuten and tōten in ``text``, and their sum ``japanese``."""
    cp = _codepoints(text)
    kanji = _between(cp, 0x3400, 0x9FFF) | _between(cp, 0xF900, 0xFAFF) | np.isin(cp, _KANJI_SINGLES)
    # a high surrogate followed by a low one (only reachable through lone surrogates in a str): one letter
    pairs = int((_between(cp[:-1], 0xD840, 0xD87F) & _between(cp[1:], 0xDC00, 0xDFFF)).sum()) if len(cp) else 0
    c = {
        "hiragana": int(_between(cp, 0x3041, 0x3096).sum()),
        "katakana": int(_between(cp, 0x30A1, 0x30FA).sum()),
        "kanji": int(kanji.sum()) + pairs,
        "kuten": int(np.isin(cp, _KUTEN).sum()),
        "toten": int(np.isin(cp, _TOTEN).sum()),
    }
    c["japanese"] = sum(c.values())
    return c


# ---------------------------------------------------------------------------------------------------------------
# Character n-grams, counted exactly: each n-gram gets the rank of its (n-1)-gram prefix combined with the rank of
# its last character, so equal n-grams get equal ids without hashing (no collisions).


def ngram_counts(text: str, max_n: int) -> dict[int, np.ndarray]:
    """``{n: occurrence count of every distinct character n-gram}`` for n = 1 … ``max_n``."""
    cp = _codepoints(text)
    out: dict[int, np.ndarray] = {}
    if len(cp) == 0:
        return {n: np.zeros(0, dtype=np.int64) for n in range(1, max_n + 1)}
    _, char_id, counts = np.unique(cp, return_inverse=True, return_counts=True)
    char_id = char_id.astype(np.int64)
    out[1] = counts
    ids, width = char_id, int(char_id.max()) + 1
    for n in range(2, max_n + 1):
        m = len(cp) - n + 1
        if m <= 0:
            out[n] = np.zeros(0, dtype=np.int64)
            continue
        key = ids[:m] * width + char_id[n - 1 : n - 1 + m]  # < len(text) × distinct characters: fits in int64
        _, ids, counts = np.unique(key, return_inverse=True, return_counts=True)
        out[n] = counts
    return out


# ---------------------------------------------------------------------------------------------------------------
# One document's pieces, computed once and shared by the rule steps that run on it one after another


def _duplicates(items: list[str]) -> tuple[int, int, int]:
    """(items repeating an earlier one, characters in those repeats, characters in all items)."""
    repeats = repeated_chars = total_chars = 0
    for item, count in Counter(items).items():
        repeats += count - 1
        repeated_chars += len(item) * (count - 1)
        total_chars += len(item) * count
    return repeats, repeated_chars, total_chars


class _Doc:
    def __init__(self, text: str):
        self.text = text
        self._ngrams: dict[int, np.ndarray] = {}

    @cached_property
    def split(self) -> tuple[list[str], list[str]]:
        """(paragraphs, sentences) from one pass over the lines."""
        paras: list[str] = []
        sents: list[str] = []
        for line in lines(self.text):
            found = line_sentences(line)
            sents.extend(found)
            paras.append("".join(found))
        return paras, sents

    @cached_property
    def letters(self) -> dict[str, int]:
        return letter_counts(self.text)

    def ngrams(self, n: int) -> np.ndarray:
        if n not in self._ngrams:
            self._ngrams.update(ngram_counts(self.text, max(n, 10)))
        return self._ngrams[n]


@lru_cache(maxsize=1)
def _doc(text: str) -> _Doc:
    """The last document's shared pieces: the rules of one document read the same lines, sentences and n-grams."""
    return _Doc(text)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Statistics (pure functions, text -> float)


def num_chars(text: str) -> float:
    """All characters (``len``), whitespace included."""
    return float(len(text))


def dup_line_frac(text: str) -> float:
    """Paragraphs (one per line) repeating an earlier one / paragraphs."""
    paras = _doc(text).split[0]
    return _ratio(_duplicates(paras)[0], len(paras))


def dup_sentence_frac(text: str) -> float:
    """Sentences repeating an earlier one / sentences."""
    sents = _doc(text).split[1]
    return _ratio(_duplicates(sents)[0], len(sents))


def dup_line_char_frac(text: str) -> float:
    """Characters of repeated paragraphs (each repeat after the first) / characters of all paragraphs."""
    _, dup, total = _duplicates(_doc(text).split[0])
    return _ratio(dup, total)


def dup_sentence_char_frac(text: str) -> float:
    """Characters of repeated sentences (each repeat after the first) / characters of all sentences."""
    _, dup, total = _duplicates(_doc(text).split[1])
    return _ratio(dup, total)


def top_ngram_frac(text: str, n: int) -> float:
    """Occurrences of the most frequent character n-gram / all n-gram occurrences (0 below n characters)."""
    counts = _doc(text).ngrams(n)
    return _ratio(int(counts.max()), int(counts.sum())) if len(counts) else 0.0


def dup_ngram_frac(text: str, n: int) -> float:
    """Distinct character n-grams occurring more than once / distinct n-grams."""
    counts = _doc(text).ngrams(n)
    return _ratio(int((counts > 1).sum()), len(counts))


def japanese_chars(text: str) -> float:
    """Japanese letters (hiragana, katakana, kanji, kuten, tōten)."""
    return float(_doc(text).letters["japanese"])


def hiragana_frac(text: str) -> float:
    """Hiragana / Japanese letters."""
    c = _doc(text).letters
    return _ratio(c["hiragana"], c["japanese"])


def katakana_frac(text: str) -> float:
    """Katakana / Japanese letters."""
    c = _doc(text).letters
    return _ratio(c["katakana"], c["japanese"])


def japanese_frac(text: str) -> float:
    """Japanese letters / all characters (whitespace included)."""
    return _ratio(_doc(text).letters["japanese"], len(text))


def avg_sentence_len(text: str) -> float:
    """Mean sentence length in characters."""
    sents = _doc(text).split[1]
    return _ratio(sum(map(len, sents)), len(sents))


def max_sentence_len(text: str) -> float:
    """Longest sentence in characters (0 without sentences)."""
    sents = _doc(text).split[1]
    return float(max(map(len, sents), default=0))


def ellipsis_frac(text: str) -> float:
    """Sentences ending in ・ or … (trailing whitespace aside) / sentences."""
    sents = _doc(text).split[1]
    return _ratio(sum(s.strip().endswith(ELLIPSIS_ENDINGS) for s in sents), len(sents))


def ng_word_chars(text: str, words: Iterable[str]) -> int:
    """Characters of the NG-word matches: scanning left to right, the longest word starting at a position is taken
    and the scan resumes after it; a position where no word starts is skipped. Exact, case-sensitive matching."""
    longest: dict[int, int] = {}  # start -> longest word starting there
    for w in set(words):
        if not w:
            continue
        i = text.find(w)
        while i >= 0:
            if len(w) > longest.get(i, 0):
                longest[i] = len(w)
            i = text.find(w, i + 1)
    covered, resume = 0, 0
    for start in sorted(longest):
        if start >= resume:
            covered += longest[start]
            resume = start + longest[start]
    return covered


def ng_word_frac(text: str, words: Iterable[str] | None = None) -> float:
    """NG-word characters / Japanese letters (``words``: the built-in list of :mod:`~swallowlib.corpus.filters`)."""
    return _ratio(ng_word_chars(text, DEFAULT_NG_WORDS if words is None else words), _doc(text).letters["japanese"])


def statistics(text: str, ns: Iterable[int] = range(2, 11), ng_words: Iterable[str] | None = None) -> dict[str, float]:
    """Every statistic of ``text``, by rule name (top n-grams for n < 5, duplicate n-grams for n >= 5 of ``ns``)."""
    out = {
        "ng_word_frac": ng_word_frac(text, ng_words),
        "min_chars": num_chars(text),
        "dup_line_frac": dup_line_frac(text),
        "dup_sentence_frac": dup_sentence_frac(text),
        "dup_line_char_frac": dup_line_char_frac(text),
        "dup_sentence_char_frac": dup_sentence_char_frac(text),
    }
    for n in ns:
        if n < 5:
            out[f"top_{n}gram_char_frac"] = top_ngram_frac(text, n)
    for n in ns:
        if n >= 5:
            out[f"dup_{n}gram_char_frac"] = dup_ngram_frac(text, n)
    out.update(
        hiragana_frac=hiragana_frac(text),
        katakana_frac=katakana_frac(text),
        japanese_frac=japanese_frac(text),
        min_japanese_chars=japanese_chars(text),
        avg_sentence_len=avg_sentence_len(text),
        max_sentence_len=max_sentence_len(text),
        ellipsis_frac=ellipsis_frac(text),
    )
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rules


def _bind(fn, n: int):
    def stat(text: str) -> float:
        return fn(text, n)

    stat.__name__ = f"{fn.__name__}_{n}"
    return stat


def quality_rules(cfg: QualityFilters) -> list[Rule]:
    """The enabled ``swallow-v1`` rules of ``cfg`` in the released order (NG words first, as the released annotator
    applies its NG-word step before the quality rules). ``None`` disables a rule; a ``{}`` n-gram mapping disables
    those rules."""
    assert cfg.rule_set == "swallow-v1", cfg.rule_set
    words = tuple(cfg.ng_words) if cfg.ng_words else DEFAULT_NG_WORDS

    def ng(text: str) -> float:
        return ng_word_frac(text, words)

    ng.__name__ = "ng_word_frac"
    rules = [
        Rule("ng_word_frac", ng, max=cfg.max_ng_word_char_frac, max_inclusive=True),
        Rule("min_chars", num_chars, min=cfg.min_chars),
        Rule("dup_line_frac", dup_line_frac, max=cfg.max_dup_line_frac),
        Rule("dup_sentence_frac", dup_sentence_frac, max=cfg.max_dup_sentence_frac),
        Rule("dup_line_char_frac", dup_line_char_frac, max=cfg.max_dup_line_char_frac),
        Rule("dup_sentence_char_frac", dup_sentence_char_frac, max=cfg.max_dup_sentence_char_frac),
    ]
    for n, t in sorted(cfg.max_top_ngram_char_frac.items()):
        rules.append(Rule(f"top_{n}gram_char_frac", _bind(top_ngram_frac, n), max=t))
    for n, t in sorted(cfg.max_dup_ngram_char_frac.items()):
        rules.append(Rule(f"dup_{n}gram_char_frac", _bind(dup_ngram_frac, n), max=t))
    rules += [
        Rule("hiragana_frac", hiragana_frac, min=cfg.min_hiragana_frac),
        Rule("katakana_frac", katakana_frac, max=cfg.max_katakana_frac),
        Rule("japanese_frac", japanese_frac, min=cfg.min_japanese_frac),
        Rule("min_japanese_chars", japanese_chars, min=cfg.min_japanese_chars),
        Rule("avg_sentence_len", avg_sentence_len, min=cfg.min_avg_sentence_chars, max=cfg.max_avg_sentence_chars),
        Rule("max_sentence_len", max_sentence_len, max=cfg.max_sentence_chars),
        Rule("ellipsis_frac", ellipsis_frac, max=cfg.max_ellipsis_sentence_frac),
    ]
    return [r for r in rules if r.min is not None or r.max is not None]


if __name__ == "__main__":  # pragma: no cover
    _text = Path(sys.argv[1]).read_text(encoding="utf-8")
    _cfg = QualityFilters()
    for _rule in quality_rules(_cfg):
        _v = _rule.stat(_text)
        print(f"{_rule.name:24s} {_v:12.4f}{'  <- drops' if _rule.drops(_v) else ''}")
