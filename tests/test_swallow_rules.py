"""The ``swallow-v1`` rule set (swallowlib.corpus.swallow_rules): every unit, statistic and decision on hand-made
Japanese documents whose values are derived by hand in the comments, the edge cases of the released definitions,
the rule order, and the quality pipeline reading the text before NFKC.

Where the older ``technical`` definitions (swallowlib.corpus.filters) give another value on the same text, the
comment says so: these tests fail if a definition is changed back to that variant."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from swallowlib.config import ExecutorConfig, QualityFilters
from swallowlib.corpus import filters as F
from swallowlib.corpus import swallow_rules as SR

V1 = QualityFilters()
RULES = {r.name: r for r in SR.quality_rules(V1)}

# A web-like page: 11 lines, no blank line, 14 distinct sentences; it passes every swallow-v1 rule.
CLEAN = "\n".join(
    [
        "今日は朝から雨が降っていたので、図書館で静かに本を読んで過ごしました。"
        "駅前の新しいパン屋では、焼きたてのクロワッサンが人気を集めているそうです。",
        "祖母が育てているトマトは、夏になると甘くて赤い実をたくさんつけます。",
        "週末には友人と一緒に山へ出かけ、きれいな景色を眺めながら弁当を食べました。",
        "この町の川沿いの道は、春になると桜が咲いて多くの人が散歩に訪れます。",
        "新しい言葉を覚えるためには、毎日少しずつ声に出して練習することが大切です。"
        "子どもたちは公園で鬼ごっこをして、夕方まで元気に走り回っていました。",
        "冷蔵庫に残っていた野菜を使って、温かいスープを作ってみることにしました。",
        "彼は長い旅から戻ると、見てきた国々の話を家族に楽しそうに聞かせてくれた。",
        "古い写真を整理していたら、小学生のころの懐かしい運動会の写真が出てきました。",
        "静かな夜に窓を開けると、遠くで虫の鳴く声がかすかに聞こえてきます。"
        "来月の発表に向けて、資料の構成をもう一度見直しておこうと考えています。",
        "海辺の小さな宿では、地元で取れた魚を使った料理を味わうことができました。",
        "忙しい毎日の中でも、好きな音楽を聴く時間は心を落ち着かせてくれます。",
    ]
)


def only(**kw) -> QualityFilters:
    """swallow-v1 with every rule off except the given thresholds."""
    off = dict.fromkeys(
        "min_chars max_dup_line_frac max_dup_sentence_frac max_dup_line_char_frac max_dup_sentence_char_frac "
        "min_hiragana_frac max_katakana_frac min_japanese_frac min_japanese_chars min_avg_sentence_chars "
        "max_avg_sentence_chars max_sentence_chars max_ellipsis_sentence_frac max_ng_word_char_frac".split()
    )
    return QualityFilters(**{**off, "max_top_ngram_char_frac": {}, "max_dup_ngram_char_frac": {}, **kw})


# ---------------------------------------------------------------------------------------------------------------
# units


def test_lines_keep_blank_lines_and_carriage_returns() -> None:
    # split at "\n" only: a trailing "\n" ends one more (blank) line, "\r" stays in its line, nothing is stripped
    assert SR.lines("あ\n\n い\r\n") == ["あ", "", " い\r", ""]
    assert SR.lines("") == [""]  # one blank line (technical: no lines at all)


def test_sentences_split_inside_lines() -> None:
    # a run of non-terminators plus at most ONE terminator; a second terminator follows no character: in no sentence
    assert SR.line_sentences("本当？！次。v1.2 is out.") == ["本当？", "次。", "v1.2 is out."]  # technical: 本当？！
    assert SR.line_sentences("Hi! Ok?") == ["Hi!", " Ok?"]  # ASCII ! ? end sentences; whitespace is kept
    assert SR.line_sentences("  終わらない文") == ["  終わらない文"]  # no terminator: the whole line, spaces too
    assert SR.line_sentences("。！？") == [] and SR.line_sentences("") == []  # nothing precedes the terminators
    assert SR.line_sentences("。始まり。") == ["始まり。"]  # the leading 。 is in no sentence
    assert SR.line_sentences("全角．半角.") == ["全角．", "半角."]  # ．is a terminator; "." is not...
    assert SR.line_sentences("a.b.") == ["a.b."]  # ...so "." never splits (technical: after ". ")
    # sentences never cross a line break, and blank lines contribute none
    assert SR.sentences("一。二\n\n三") == ["一。", "二", "三"]


def test_paragraphs_are_lines_without_stray_terminators() -> None:
    # one paragraph per line (blank ones included): the line's sentences joined
    assert SR.paragraphs("はい！？\n\nいいえ。。") == ["はい！", "", "いいえ。"]
    # technical: blank-line separated blocks -> ["はい！？", "いいえ。。"]
    assert F.paragraphs("はい！？\n\nいいえ。。") == ["はい！？", "いいえ。。"]


# ---------------------------------------------------------------------------------------------------------------
# duplicate lines (paragraphs) and sentences


def test_duplicate_lines_count_blank_lines() -> None:
    text = "あ\nい\nあ\n\n"
    # lines: あ, い, あ, "", "" -> 5; repeated beyond the first: one あ, one "" -> 2/5 = 0.4 (technical: 1/3)
    assert SR.dup_line_frac(text) == 0.4
    # characters: the repeated あ (1) over all lines 1 + 1 + 1 + 0 + 0 = 3 -> 1/3 (blank lines weigh nothing)
    assert SR.dup_line_char_frac(text) == pytest.approx(1 / 3)
    # a page laid out with blank lines between its 3 paragraphs: 5 lines, the second blank repeats -> 1/5
    assert SR.dup_line_frac("一段落目\n\n二段落目\n\n三段落目") == pytest.approx(1 / 5)
    assert F.dup_line_frac("一段落目\n\n二段落目\n\n三段落目") == 0.0  # technical: blank lines are no lines


def test_duplicate_paragraphs_compare_the_joined_sentences() -> None:
    # "はい！？" and "はい！" are the same paragraph (the ？ is in no sentence): 1 repeat of 2 lines -> 1/2;
    # characters: 3 repeated / 3 + 3 = 1/2
    assert SR.dup_line_frac("はい！？\nはい！") == 0.5
    assert SR.dup_line_char_frac("はい！？\nはい！") == 0.5


def test_duplicate_sentences() -> None:
    text = "同じ文です。別の文。同じ文です。"
    # sentences: 同じ文です。(6) 別の文。(4) 同じ文です。(6): 1 repeat of 3 -> 1/3; characters 6 / 16
    assert SR.dup_sentence_frac(text) == pytest.approx(1 / 3)
    assert SR.dup_sentence_char_frac(text) == pytest.approx(6 / 16)
    # the same sentence on two lines: still a repeated sentence (1/2), and a repeated line (1/2)
    assert SR.dup_sentence_frac("猫。\n猫。") == 0.5 and SR.dup_line_frac("猫。\n猫。") == 0.5


def test_weighted_repeats_count_every_copy_after_the_first() -> None:
    # lines ああああ ×3 and い: 2 repeats of 4 lines -> 0.5; characters 2 × 4 / (3 × 4 + 1) = 8/13
    text = "ああああ\nい\nああああ\nああああ"
    assert SR.dup_line_frac(text) == 0.5
    assert SR.dup_line_char_frac(text) == pytest.approx(8 / 13)


# ---------------------------------------------------------------------------------------------------------------
# character n-grams


def test_top_ngram_fraction_counts_occurrences() -> None:
    # "ababab": 2-grams ab ba ab ba ab -> ab 3 of 5 = 0.6; 3-grams aba bab aba bab -> 2/4; 4-grams abab baba abab -> 2/3
    assert SR.top_ngram_frac("ababab", 2) == 0.6
    assert SR.top_ngram_frac("ababab", 3) == 0.5
    assert SR.top_ngram_frac("ababab", 4) == pytest.approx(2 / 3)
    # line breaks are characters: "ab\nab" -> ab, b\n, \na, ab -> 2/4
    assert SR.top_ngram_frac("ab\nab", 2) == 0.5
    # all 2-grams distinct: 1 of 6
    assert SR.top_ngram_frac("abcdefg", 2) == pytest.approx(1 / 6)
    # Japanese characters are the units (technical: MeCab words): 猫が ×3 among 5 bigrams 猫が が猫 猫が が猫 猫が
    assert SR.top_ngram_frac("猫が猫が猫が", 2) == 0.6
    assert SR.top_ngram_frac("a", 2) == 0.0  # no 2-gram at all (the released code raises here)


def test_duplicate_ngram_fraction_counts_distinct_ngrams() -> None:
    # X + X with X = 10 distinct characters: the n-gram at i equals the one at i + 10, so there are 10 distinct
    # n-grams (n <= 10), of which those starting at 0 … 10 - n occur twice: (11 - n) / 10
    xx = "0123456789" * 2
    assert [SR.dup_ngram_frac(xx, n) for n in range(5, 11)] == pytest.approx([0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    # "abcdeabcde": 5-grams abcde bcdea cdeab deabc eabcd abcde -> 5 distinct, 1 repeated -> 1/5
    # (technical, characters covered by repeats: 5/10)
    assert SR.dup_ngram_frac("abcdeabcde", 5) == 0.2
    # "aaaaaaa": one distinct 5-gram (aaaaa ×3), repeated -> 1/1
    assert SR.dup_ngram_frac("aaaaaaa", 5) == 1.0
    assert SR.dup_ngram_frac("abcd", 5) == 0.0  # no 5-gram


def test_ngram_counts_are_exact() -> None:
    counts = SR.ngram_counts("abcabcab", 3)
    assert sorted(counts[1].tolist()) == [2, 3, 3]  # c ×2, a ×3, b ×3
    assert sorted(counts[2].tolist()) == [2, 2, 3]  # ab bc ca ab bc ca ab: bc ×2, ca ×2, ab ×3
    assert sorted(counts[3].tolist()) == [2, 2, 2]  # abc bca cab abc bca cab
    assert sorted(SR.ngram_counts("abcabca", 3)[3].tolist()) == [1, 2, 2]  # abc bca cab abc bca: cab ×1


# ---------------------------------------------------------------------------------------------------------------
# Japanese letters


def test_japanese_letters_exact_ranges() -> None:
    text = "ひらカタ漢字、。ーゝヽ・ａ \u3000𠀋"
    # 16 characters. Japanese letters: ひ ら (hiragana 2), カ タ (katakana 2), 漢 字 (kanji 2), 、 (toten), 。 (kuten)
    # = 8. Not letters: ー U+30FC and ヽ U+30FD (after U+30FA), ゝ U+309D (after U+3096), ・, ａ, the two spaces, and
    # 𠀋 U+2000B (outside the BMP: one code point, which the released surrogate-pair pattern never matches)
    c = SR.letter_counts(text)
    assert (c["hiragana"], c["katakana"], c["kanji"], c["toten"], c["kuten"], c["japanese"]) == (2, 2, 2, 1, 1, 8)
    assert SR.hiragana_frac(text) == 0.25 and SR.katakana_frac(text) == 0.25  # 2/8 each
    assert SR.japanese_frac(text) == 0.5  # 8/16, whitespace included
    # technical counts ー ゝ ヽ as kana, ・ and 𠀋 as Japanese, over the 14 non-whitespace characters
    assert F.japanese_frac(text) == pytest.approx(13 / 14)


def test_kanji_marks_punctuation_and_ascii() -> None:
    # 々〇〻 are kanji (3); 。．！？ kuten (4); 、， tōten (2); ASCII ! ? are not letters -> 9 of 11
    c = SR.letter_counts("々〇〻。．！？、，!?")
    assert (c["kanji"], c["kuten"], c["toten"], c["japanese"]) == (3, 4, 2, 9)
    assert SR.japanese_frac("々〇〻。．！？、，!?") == pytest.approx(9 / 11)
    assert SR.letter_counts("ｶﾀｶﾅ")["japanese"] == 0  # half-width katakana (U+FF66–FF9F) is not katakana


def test_outside_bmp_kanji_and_surrogate_pairs() -> None:
    assert SR.japanese_chars("𠀋𡈽") == 0.0  # U+2000B, U+2123D: not counted (as the released code on Python 3)
    # the released pattern's surrogate pair, present only as two lone surrogate code points: one letter
    assert SR.japanese_chars("\ud840\udc0b") == 1.0
    assert SR.japanese_chars("\ud840") == 0.0 and SR.japanese_chars("\udc0b\ud840") == 0.0


def test_japanese_fraction_counts_whitespace() -> None:
    # 3 letters over 7 characters (the four line breaks count) -> 3/7 < 0.5 (technical, over non-whitespace: 1.0)
    assert SR.japanese_frac("あいう\n\n\n\n") == pytest.approx(3 / 7)
    assert F.japanese_frac("あいう\n\n\n\n") == 1.0
    assert SR.japanese_frac("あいう\n\n\n") == 0.5  # 3/6
    assert SR.hiragana_frac("abc") == 0.0 and SR.japanese_frac("") == 0.0  # zero denominators


# ---------------------------------------------------------------------------------------------------------------
# sentence lengths and ellipses


def test_sentence_lengths_and_ellipsis() -> None:
    text = "短い。" + "長" * 9 + "。\nそれで…\nand so...\nfin."
    # sentences: 短い。(3) 長×9。(10) それで…(4) "and so..."(9: "." is no terminator) "fin."(4) -> mean 30/5 = 6
    assert SR.avg_sentence_len(text) == 6.0
    assert SR.max_sentence_len(text) == 10.0
    # ending in … or ・ only: それで… -> 1/5 (technical also counts "..." -> 2/5)
    assert SR.ellipsis_frac(text) == 0.2
    assert F.ellipsis_frac(text) == pytest.approx(2 / 5)


def test_ellipsis_after_stripping_whitespace() -> None:
    # sentences: "待って… " (ends in … once stripped), "次・\u3000" (・), "終わり。", "それは…。" (ends in 。) -> 2/4
    assert SR.ellipsis_frac("待って… \n次・\u3000\n終わり。それは…。") == 0.5


def test_no_sentences_and_empty_text() -> None:
    # only line breaks or terminators: no sentence -> mean and maximum 0 (the released code raises on the maximum)
    for text in ("", "\n\n", "。。。"):
        assert SR.avg_sentence_len(text) == 0.0 and SR.max_sentence_len(text) == 0.0
        assert SR.ellipsis_frac(text) == 0.0 and SR.dup_sentence_frac(text) == 0.0
    # the empty text: one blank line, nothing repeated, no n-grams, no letters
    stats = SR.statistics("")
    assert stats["min_chars"] == 0.0 and set(stats.values()) == {0.0}
    assert F.dropped_by("", V1, "ja") == "min_chars"
    assert SR.dup_line_frac("\n\n") == pytest.approx(2 / 3)  # 3 blank lines, 2 repeats


# ---------------------------------------------------------------------------------------------------------------
# NG words


def test_ng_words_leftmost_longest_over_japanese_letters() -> None:
    # scan: at 0 the longest word is あいう (3), resume at 3; いうえ starts inside it and is skipped -> 3
    # (technical merges overlapping matches: あいうえ, 4)
    assert SR.ng_word_chars("あいうえお", ["あい", "あいう", "いうえ"]) == 3
    assert SR.ng_word_chars("PORN porn", ["porn"]) == 4  # exact, case-sensitive
    assert SR.ng_word_chars("pornstar", ["porn"]) == 4  # no word boundaries
    # denominator: Japanese letters (6 of アダルト動画; the space and abc are not letters) -> 6/6
    assert SR.ng_word_frac("アダルト動画 abc", ["アダルト動画"]) == 1.0
    assert SR.ng_word_frac("porn", ["porn"]) == 0.0  # no Japanese letter: 0
    assert RULES["ng_word_frac"].drops(0.05) and not RULES["ng_word_frac"].drops(0.049)  # "< 0.05" keeps


# ---------------------------------------------------------------------------------------------------------------
# the worked example of the module docstring


def test_worked_example() -> None:
    text = "今日は晴れ。明日も晴れ！！\n今日は晴れ。\n\nそして…\n"
    s = SR.statistics(text)
    assert s["min_chars"] == 27
    assert s["dup_line_frac"] == 0.2 and s["dup_line_char_frac"] == 0.0
    assert s["dup_sentence_frac"] == 0.25 and s["dup_sentence_char_frac"] == pytest.approx(6 / 22)
    assert s["top_2gram_char_frac"] == pytest.approx(3 / 26)
    assert s["dup_5gram_char_frac"] == pytest.approx(2 / 21)
    assert s["min_japanese_chars"] == 22 and s["hiragana_frac"] == pytest.approx(9 / 22)
    assert s["katakana_frac"] == 0.0 and s["japanese_frac"] == pytest.approx(22 / 27)
    assert (s["avg_sentence_len"], s["max_sentence_len"], s["ellipsis_frac"]) == (5.5, 6.0, 0.25)
    assert F.dropped_by(text, V1, "ja") == "min_chars"


# ---------------------------------------------------------------------------------------------------------------
# decisions: thresholds, directions, order


def test_rule_order_is_the_released_order() -> None:
    assert [r.name for r in F.quality_rules(V1, "ja")] == [
        "ng_word_frac", "min_chars", "dup_line_frac", "dup_sentence_frac", "dup_line_char_frac",
        "dup_sentence_char_frac", "top_2gram_char_frac", "top_3gram_char_frac", "top_4gram_char_frac",
        *[f"dup_{n}gram_char_frac" for n in range(5, 11)],
        "hiragana_frac", "katakana_frac", "japanese_frac", "min_japanese_chars", "avg_sentence_len",
        "max_sentence_len", "ellipsis_frac",
    ]  # fmt: skip


def test_thresholds_and_directions() -> None:
    def drops(name: str, *values: float) -> list[bool]:
        return [RULES[name].drops(v) for v in values]

    assert drops("min_chars", 399, 400) == [True, False]  # < 400
    assert drops("min_japanese_chars", 399, 400) == [True, False]  # < 400
    for name in ("dup_line_frac", "dup_sentence_frac"):
        assert drops(name, 0.30, 0.3000001) == [False, True]  # > 0.30
    for name in ("dup_line_char_frac", "dup_sentence_char_frac"):
        assert drops(name, 0.20, 0.2000001) == [False, True]
    for n, t in {2: 0.20, 3: 0.18, 4: 0.16}.items():
        assert drops(f"top_{n}gram_char_frac", t, t + 1e-9) == [False, True]
    for n, t in {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}.items():
        assert drops(f"dup_{n}gram_char_frac", t, t + 1e-9) == [False, True]
    assert drops("hiragana_frac", 0.2, 0.1999999) == [False, True]  # < 0.2
    assert drops("katakana_frac", 0.5, 0.5000001) == [False, True]  # > 0.5
    assert drops("japanese_frac", 0.5, 0.4999999) == [False, True]  # < 0.5
    assert drops("avg_sentence_len", 19.99, 20, 90, 90.01) == [True, False, False, True]  # outside [20, 90]
    assert drops("max_sentence_len", 200, 201) == [False, True]  # > 200
    assert drops("ellipsis_frac", 0.2, 0.2000001) == [False, True]  # > 0.2


# For every rule: a config enabling only it, a hand-made text it keeps and one it drops (values derived inline).
X10, X12 = "0123456789", "0123456789ab"
CASES: dict[str, tuple[QualityFilters, str, str]] = {
    "ng_word_frac": (only(max_ng_word_char_frac=0.05, ng_words=["禁止"]),
                     "あ" * 39 + "禁止",  # 2 / 41 ≈ 0.049
                     "あ" * 38 + "禁止"),  # 2 / 40 = 0.05
    "min_chars": (only(min_chars=400), "あ" * 400, "あ" * 399),
    # 7 distinct lines + 3 repeats: 3/10 = 0.3 kept; + 4 repeats: 4/11 dropped
    "dup_line_frac": (only(max_dup_line_frac=0.3), "\n".join("一二三四五六七") + "\n七" * 3,
                      "\n".join("一二三四五六七") + "\n七" * 4),
    # sentences 一。… 七。 + 3 repeats -> 3/10 kept; + 4 -> 4/11 dropped
    "dup_sentence_frac": (only(max_dup_sentence_frac=0.3), "。".join("一二三四五六七") + "。" + "七。" * 3,
                          "。".join("一二三四五六七") + "。" + "七。" * 4),
    # lines ああああ い ああああ: 4 repeated of 9 characters; kept: a 1-character repeat of 1 + 4 + 1 = 6 -> 1/6
    "dup_line_char_frac": (only(max_dup_line_char_frac=0.2), "い\nああああ\nい", "ああああ\nい\nああああ"),
    # sentences 長い長い文です。(8) 短。(2) 長い長い文です。(8): 8/18 dropped; kept: 短。 repeated: 2/18 ≈ 0.11
    "dup_sentence_char_frac": (only(max_dup_sentence_char_frac=0.2), "短。長い長い文です。短。",
                               "長い長い文です。短。長い長い文です。"),
    # abcdefg: every 2-gram once, 1/6 kept; ababab: 3/5 dropped
    "top_2gram_char_frac": (only(max_top_ngram_char_frac={2: 0.2}), "abcdefg", "ababab"),
    # abcdefg: 1/5 = 0.2 > 0.18 would drop, so abcdefghij: 1/8 kept; abcabc: abc 2 of 4 dropped
    "top_3gram_char_frac": (only(max_top_ngram_char_frac={3: 0.18}), "abcdefghij", "abcabc"),
    # 1/7 kept; abcdabcd: abcd 2 of 5 dropped
    "top_4gram_char_frac": (only(max_top_ngram_char_frac={4: 0.16}), "abcdefghij", "abcdabcd"),
    # X10 + X10: (11 - n)/10 -> 0.6 0.5 0.4 0.3 0.2 dropped for n = 5 … 9 and 0.1 kept at n = 10 (not > 0.10);
    # X12 + X12: (13 - 10)/12 = 0.25 dropped at n = 10; kept: all distinct
    **{f"dup_{n}gram_char_frac": (only(max_dup_ngram_char_frac={n: t}), X12, X10 * 2)
       for n, t in {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11}.items()},
    "dup_10gram_char_frac": (only(max_dup_ngram_char_frac={10: 0.10}), X10 * 2, X12 * 2),
    # あカタカナ: 1/5 = 0.2 kept; カタカナ漢字。: 0/7 dropped
    "hiragana_frac": (only(min_hiragana_frac=0.2), "あカタカナ", "カタカナ漢字。"),
    # カタあい: 2/4 = 0.5 kept; カタカナあ: 4/5 dropped
    "katakana_frac": (only(max_katakana_frac=0.5), "カタあい", "カタカナあ"),
    # 3/6 = 0.5 kept; 3/7 dropped (line breaks count)
    "japanese_frac": (only(min_japanese_frac=0.5), "あいう\n\n\n", "あいう\n\n\n\n"),
    # 400 letters kept; 399 letters + 1 ASCII character dropped (min_chars would keep it: 400 characters)
    "min_japanese_chars": (only(min_japanese_chars=400), "あ" * 400, "あ" * 399 + "a"),
    # one sentence of 20 characters kept; 19 dropped
    "avg_sentence_len": (only(min_avg_sentence_chars=20, max_avg_sentence_chars=90),
                         "あ" * 19 + "。", "あ" * 18 + "。"),
    "max_sentence_len": (only(max_sentence_chars=200), "あ" * 200, "あ" * 201),
    # 1 of 5 sentences ends in … -> 0.2 kept; 2 of 3 dropped
    "ellipsis_frac": (only(max_ellipsis_sentence_frac=0.2), "一つ目…\n二つ目。三つ目。四つ目。五つ目。",
                      "一つ目…\n二つ目・\n三つ目。"),
}  # fmt: skip


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_rule_keeps_and_drops(name: str) -> None:
    cfg, keep, drop = CASES[name]
    assert [r.name for r in F.quality_rules(cfg, "ja")] == [name]
    assert F.dropped_by(keep, cfg, "ja") is None
    assert F.dropped_by(drop, cfg, "ja") == name


def test_avg_sentence_len_upper_bound() -> None:
    cfg = only(min_avg_sentence_chars=20, max_avg_sentence_chars=90)
    # a line without a terminator is one sentence: 90 characters kept, 91 dropped
    assert F.dropped_by("あ" * 90, cfg, "ja") is None and F.dropped_by("あ" * 91, cfg, "ja") == "avg_sentence_len"


def test_clean_page_passes_and_blank_line_layout_does_not() -> None:
    assert F.dropped_by(CLEAN, V1, "ja") is None
    # the same page with a blank line after every line: 21 lines, 10 blank, 9 of them repeats -> 9/21 > 0.3
    # (technical: no blank lines, nothing repeated)
    spaced = CLEAN.replace("\n", "\n\n")
    assert SR.dup_line_frac(spaced) == pytest.approx(9 / 21)
    assert F.dropped_by(spaced, V1, "ja") == "dup_line_frac"
    assert F.dropped_by(spaced, QualityFilters(rule_set="technical"), "ja") is None


def test_swallow_v1_is_japanese_only() -> None:
    with pytest.raises(ValueError, match="Japanese text only"):
        F.quality_rules(V1, "en")


# ---------------------------------------------------------------------------------------------------------------
# the pipeline: swallow-v1 reads the text before NFKC


def test_pipeline_runs_swallow_v1_before_nfkc(tmp_path: Path) -> None:
    docs = [
        # 200 × あ，， = 600 characters, all Japanese letters (，is a tōten) -> kept; after NFKC "あ,," -> 1/3 < 0.5
        {"id": "toten", "text": "あ，，" * 200},
        # 300 × ｶﾞ (half-width: no letter) -> 0 < 0.5 dropped; after NFKC ガ × 300 would be all katakana
        {"id": "halfwidth", "text": "ｶﾞ" * 300},
        # 100 × ああｶﾞ: 200 of 400 = 0.5 kept; written NFKC-normalised as ああガ (300 characters)
        {"id": "mixed", "text": "ああｶﾞ" * 100},
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "00000.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    ex = ExecutorConfig(workers=1, tasks=1)
    cfg = only(min_japanese_frac=0.5)
    res = F.run_quality_pipeline(tmp_path / "in", tmp_path / "out", "ja", cfg, True, tmp_path / "work", ex)
    assert (res["rule_set"], res["nfkc"]) == ("swallow-v1", "after rules")
    assert (res["docs_in"], res["docs_out"], res["rules"]["japanese_frac"]["docs"]) == (3, 2, 1)
    # characters: read 600 + 600 + 400 = 1600 = entering the rules; 600 dropped; kept 1000; written 600 + 300
    assert (res["chars_read"], res["chars_in"], res["chars_kept"], res["chars_out"]) == (1600, 1600, 1000, 900)
    assert res["rules"]["japanese_frac"]["chars"] == 600
    out = {json.loads(line)["id"]: json.loads(line)["text"]
           for f in (tmp_path / "out").glob("*.jsonl.gz") for line in gzip.open(f)}  # fmt: skip
    assert out == {"toten": "あ,," * 200, "mixed": "ああガ" * 100}
