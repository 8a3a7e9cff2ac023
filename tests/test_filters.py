"""Tests for swallowlib.corpus.filters: the ``technical`` rule set's unit definitions, every statistic (known
answers), every rule as its own datatrove step, the step order, and the whole quality pipeline on a local executor.
(The ``swallow-v1`` rule set, the default, is tested in test_swallow_rules.py.)"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from datatrove.data import Document as DTDocument

from swallowlib.config import ExecutorConfig, QualityFilters
from swallowlib.corpus import filters as F

# A clean Japanese page (~500 characters, 14 distinct sentences) that passes every default rule.
JA_CLEAN = "\n".join(
    [
        "今日は朝から雨が降っていたので、図書館で静かに本を読んで過ごしました。"
        "駅前の新しいパン屋では、焼きたてのクロワッサンが人気を集めているそうです。",
        "祖母が育てているトマトは、夏になると甘くて赤い実をたくさんつけます。",
        "週末には友人と一緒に山へ出かけ、きれいな景色を眺めながら弁当を食べました。",
        "",
        "この町の川沿いの道は、春になると桜が咲いて多くの人が散歩に訪れます。",
        "新しい言葉を覚えるためには、毎日少しずつ声に出して練習することが大切です。"
        "子どもたちは公園で鬼ごっこをして、夕方まで元気に走り回っていました。",
        "冷蔵庫に残っていた野菜を使って、温かいスープを作ってみることにしました。",
        "彼は長い旅から戻ると、見てきた国々の話を家族に楽しそうに聞かせてくれた。",
        "",
        "古い写真を整理していたら、小学生のころの懐かしい運動会の写真が出てきました。",
        "静かな夜に窓を開けると、遠くで虫の鳴く声がかすかに聞こえてきます。"
        "来月の発表に向けて、資料の構成をもう一度見直しておこうと考えています。",
        "海辺の小さな宿では、地元で取れた魚を使った料理を味わうことができました。",
        "忙しい毎日の中でも、好きな音楽を聴く時間は心を落ち着かせてくれます。",
    ]
)

SENTS = [s for s in F.sentences(JA_CLEAN)]

# The technical rule set at the paper's thresholds (QualityFilters() itself is swallow-v1).
TECH = QualityFilters(rule_set="technical")


def cfg_only(**kw) -> QualityFilters:
    """A config with every rule disabled except the given thresholds."""
    off = {
        f: None
        for f in (
            "min_chars max_dup_line_frac max_dup_para_frac max_dup_line_char_frac max_dup_sentence_char_frac "
            "min_hiragana_frac max_katakana_frac min_japanese_frac min_avg_sentence_chars max_avg_sentence_chars "
            "max_sentence_chars max_ellipsis_sentence_frac max_ng_word_char_frac"
        ).split()
    }
    off.update(max_top_ngram_char_frac={}, max_dup_ngram_char_frac={})
    off.update(kw)
    return QualityFilters(rule_set="technical", **off)


# ---------------------------------------------------------------------------------------------------------------
# units


def test_lines_paragraphs_sentences() -> None:
    text = "  一行目です。二文目！\n\n\t三行目? yes. e.g. done\n四行目…\n \n"
    assert F.lines(text) == ["一行目です。二文目！", "三行目? yes. e.g. done", "四行目…"]
    assert F.paragraphs(text) == ["一行目です。二文目！", "三行目? yes. e.g. done\n四行目…"]
    assert F.sentences(text) == ["一行目です。", "二文目！", "三行目?", "yes.", "e.g.", "done", "四行目…"]
    # a run of terminators stays with its sentence; "." not followed by whitespace does not split
    assert F.sentences("本当？！次。v1.2 is out.") == ["本当？！", "次。", "v1.2 is out."]
    assert F.lines("") == [] and F.paragraphs("\n\n") == [] and F.sentences(" ") == []


def test_ngram_units_english_and_japanese() -> None:
    ids, lens = F.ngram_units("a bb a  ccc", "en")
    assert ids.tolist()[0] == ids.tolist()[2] and len(set(ids.tolist())) == 3
    assert lens.tolist() == [1, 2, 1, 3]
    ids, lens = F.ngram_units("古い写真を整理していたら", "ja")
    assert lens.sum() == len("古い写真を整理していたら")  # MeCab words cover the text, whitespace aside
    assert 4 <= len(ids) <= 10


# ---------------------------------------------------------------------------------------------------------------
# statistics (known answers)


def test_duplicate_line_paragraph_sentence_stats() -> None:
    text = "aaaa\nbb\naaaa\naaaa"
    assert F.dup_line_frac(text) == pytest.approx(2 / 4)
    assert F.dup_line_char_frac(text) == pytest.approx(8 / 14)
    assert F.dup_para_frac("p1\n\np2\n\np1") == pytest.approx(1 / 3)
    assert F.dup_para_frac("p1\nx\n\np1") == 0.0  # "p1\nx" and "p1" are different paragraphs
    assert F.dup_sentence_char_frac("同じ文です。別の文。同じ文です。") == pytest.approx(6 / 16)
    assert F.dup_line_frac("") == 0.0 and F.dup_sentence_char_frac("") == 0.0


def test_top_ngram_char_frac_english() -> None:
    # words a b a b a b c; the top 2-gram "a b" occurs at 0, 2, 4 and covers words 0..5 -> 6 of 7 characters
    assert F.top_ngram_char_frac("a b a b a b c", 2, "en") == pytest.approx(6 / 7)
    # weights are word lengths: "xx y xx y" -> top 2-gram "xx y" (count 2) covers all 6 characters
    assert F.top_ngram_char_frac("xx y xx y", 2, "en") == pytest.approx(1.0)
    assert F.top_ngram_char_frac("one", 2, "en") == 0.0


def test_dup_ngram_char_frac_english() -> None:
    text = "w1 w2 w3 w4 w5 w1 w2 w3 w4 w5"
    assert F.dup_ngram_char_frac(text, 5, "en") == pytest.approx(0.5)  # the second copy only
    assert F.dup_ngram_char_frac(text, 6, "en") == 0.0  # no 6-gram repeats
    assert F.dup_ngram_char_frac("w1 w2 w3 w4 w5 w6", 5, "en") == 0.0
    # overlapping repeats count each character once: 7 × "a" has 3 repeated 5-grams covering words 1..6
    assert F.dup_ngram_char_frac("a a a a a a a", 5, "en") == pytest.approx(6 / 7)


def test_dup_ngram_char_frac_japanese_uses_words() -> None:
    s = "祖母が育てているトマトは、夏になると甘くて赤い実をたくさんつけます。"
    assert F.dup_ngram_char_frac(s, 5, "ja") == 0.0
    assert F.dup_ngram_char_frac(s + "\n" + s, 5, "ja") == pytest.approx(0.5)
    # character units would see "てい" twice; words do not make a repeated 5-gram of this sentence
    assert F.top_ngram_char_frac(s, 2, "ja") < 0.2


def test_character_class_fractions() -> None:
    text = "あいうアイ漢字。 ab"  # 3 hiragana, 2 katakana, 2 kanji, 1 punctuation = 8 Japanese; 10 non-whitespace
    assert F.hiragana_frac(text) == pytest.approx(3 / 8)
    assert F.katakana_frac(text) == pytest.approx(2 / 8)
    assert F.japanese_frac(text) == pytest.approx(8 / 10)
    assert F.hiragana_frac("abc") == 0.0 and F.japanese_frac("") == 0.0
    assert F.katakana_frac("ー・") == pytest.approx(1 / 2)  # ー is katakana, ・ is punctuation


def test_sentence_length_and_ellipsis() -> None:
    text = "短い。" + "長" * 9 + "。\nそれで…\nand so...\nfin."
    # sentences: 短い。(3) 長×9。(10) それで…(4) and so...(9) fin.(4)
    assert F.avg_sentence_len(text) == pytest.approx((3 + 10 + 4 + 9 + 4) / 5)
    assert F.max_sentence_len(text) == 10
    assert F.ellipsis_frac(text) == pytest.approx(2 / 5)
    assert F.avg_sentence_len("") == 0.0 and F.max_sentence_len("") == 0.0


def test_ng_word_frac() -> None:
    assert F.ng_word_frac("porn here") == pytest.approx(4 / 8)
    assert F.ng_word_frac("PORN") == pytest.approx(1.0)  # case-insensitive
    assert F.ng_word_frac("pornstar") == 0.0  # ASCII words match on word boundaries only
    assert F.ng_word_frac("無修正の動画") == pytest.approx(3 / 6)  # Japanese: substring
    assert F.ng_word_frac("analysis of anal", ["anal"]) == pytest.approx(4 / 14)
    assert F.NGWordMatcher(("あい", "いう")).spans("xあいうx") == [(1, 4)]  # overlapping matches merge
    assert F.NGWordMatcher(("ab c", "c d")).spans("xab c d ab c d") == [(4, 7), (8, 14)]  # "xab": no word
    assert F.ng_word_frac("", ["x"]) == 0.0


def test_clean_text_passes_every_default_rule() -> None:
    values = F.rule_values(JA_CLEAN, TECH, "ja")
    fired = [r.name for r in F.quality_rules(TECH, "ja") if r.drops(values[r.name])]
    assert fired == []


# ---------------------------------------------------------------------------------------------------------------
# rules and steps

KATA = "コンピュータシステムプログラムデータベースネットワークサーバーインターフェース"

# For every rule: a config enabling only it, and a text it must drop (JA_CLEAN must pass).
BAD: dict[str, tuple[QualityFilters, str]] = {
    "min_chars": (cfg_only(min_chars=400), JA_CLEAN[:100]),
    "japanese_frac": (cfg_only(min_japanese_frac=0.5), JA_CLEAN + " plain ASCII text" * 60),
    "hiragana_frac": (cfg_only(min_hiragana_frac=0.2), "東京都港区六本木三丁目。" * 5 + KATA * 3),
    "katakana_frac": (cfg_only(max_katakana_frac=0.5), JA_CLEAN[:80] + KATA * 10),
    "ng_word_frac": (cfg_only(max_ng_word_char_frac=0.05), JA_CLEAN + "アダルト動画無修正出会い系" * 5),
    "dup_line_frac": (cfg_only(max_dup_line_frac=0.3), JA_CLEAN + ("\n" + SENTS[0]) * 8),
    "dup_line_char_frac": (cfg_only(max_dup_line_char_frac=0.2), JA_CLEAN + ("\n" + SENTS[1]) * 5),
    "dup_para_frac": (cfg_only(max_dup_para_frac=0.3), JA_CLEAN + ("\n\n" + SENTS[2]) * 8),
    "dup_sentence_char_frac": (cfg_only(max_dup_sentence_char_frac=0.2), JA_CLEAN + SENTS[3] * 5),
    "avg_sentence_len": (cfg_only(min_avg_sentence_chars=20, max_avg_sentence_chars=90), "はい。" * 200),
    "max_sentence_len": (cfg_only(max_sentence_chars=200), JA_CLEAN + "、".join(SENTS).replace("。", "")),
    "ellipsis_frac": (cfg_only(max_ellipsis_sentence_frac=0.2), JA_CLEAN.replace("。", "…")),
    "top_2gram_char_frac": (cfg_only(max_top_ngram_char_frac={2: 0.2}), JA_CLEAN + "猫が" * 200),
    "top_3gram_char_frac": (cfg_only(max_top_ngram_char_frac={3: 0.18}), JA_CLEAN + "猫が好き" * 150),
    "top_4gram_char_frac": (cfg_only(max_top_ngram_char_frac={4: 0.16}), JA_CLEAN + "私の猫が好き" * 100),
    **{
        f"dup_{n}gram_char_frac": (
            cfg_only(max_dup_ngram_char_frac={n: t}),
            JA_CLEAN + "\n" + "".join(SENTS[:4]),
        )
        for n, t in TECH.max_dup_ngram_char_frac.items()
    },
}


def test_every_configured_rule_has_a_case() -> None:
    assert set(BAD) == {r.name for r in F.quality_rules(TECH, "ja")}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_rule_is_its_own_step(name: str, tmp_path: Path) -> None:
    cfg, bad = BAD[name]
    steps = F.quality_steps(cfg, "ja", tmp_path / "excl")
    assert [s.name for s in steps] == [name]
    step = steps[0]
    assert isinstance(step, F.QualityRuleFilter)
    assert step.filter(DTDocument(text=JA_CLEAN, id="clean")) is True
    doc = DTDocument(text=bad, id="bad")
    assert step.filter(doc) == (False, name)
    assert isinstance(doc.metadata["filter_value"], float)
    # through datatrove's run(): the dropped document lands in this rule's exclusion folder
    kept = list(step.run(iter([DTDocument(text=JA_CLEAN, id="c"), DTDocument(text=bad, id="b")])))
    assert [d.id for d in kept] == ["c"]
    rows = [json.loads(line) for f in (tmp_path / "excl" / name).glob("*.jsonl.gz") for line in gzip.open(f)]
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in rows] == [("b", name)]


def test_thresholds_are_strict_except_ng_words() -> None:
    r = F.Rule("x", F.num_chars, min=10, max=20)
    assert [r.drops(v) for v in (9.9, 10, 20, 20.1)] == [True, False, False, True]
    ng = F.Rule("ng", F.num_chars, max=0.05, max_inclusive=True)
    assert ng.drops(0.05) and not ng.drops(0.049)


def test_rule_order_none_disables_and_english_skips_script_rules() -> None:
    names = [r.name for r in F.quality_rules(TECH, "ja")]
    assert names[:5] == ["min_chars", "japanese_frac", "hiragana_frac", "katakana_frac", "ng_word_frac"]
    assert names[-6:] == [f"dup_{n}gram_char_frac" for n in range(5, 11)]
    assert names.index("top_2gram_char_frac") > names.index("ellipsis_frac")
    en = [r.name for r in F.quality_rules(TECH, "en")]
    assert not set(en) & set(F.JAPANESE_ONLY) and len(en) == len(names) - 3
    off = [
        r.name
        for r in F.quality_rules(QualityFilters(rule_set="technical", min_chars=None, max_top_ngram_char_frac={}), "ja")
    ]
    assert "min_chars" not in off and not any(n.startswith("top_") for n in off)
    assert F.quality_rules(cfg_only(), "ja") == []


def test_custom_ng_words_replace_the_builtin_list() -> None:
    rules = {r.name: r for r in F.quality_rules(QualityFilters(rule_set="technical", ng_words=["foobar"]), "en")}
    assert rules["ng_word_frac"].stat("foobar") == 1.0
    assert rules["ng_word_frac"].stat("porn") == 0.0


def test_nfkc_step() -> None:
    out = list(F.NFKCNormalizer().run(iter([DTDocument(text="ＡＢＣ１２３ｶﾀｶﾅ", id="x")])))
    assert out[0].text == "ABC123カタカナ"


def test_filter_survives_a_failing_statistic() -> None:
    def boom(text: str) -> float:
        raise RuntimeError("bad document")

    step = F.QualityRuleFilter(F.Rule("boom", boom, max=1.0))
    assert step.filter(DTDocument(text="x", id="x")) == (False, "error")


# ---------------------------------------------------------------------------------------------------------------
# the whole pipeline


def _write_jsonl(path: Path, rows: list[dict], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        fh.write(extra)


def test_run_quality_pipeline_end_to_end(tmp_path: Path) -> None:
    docs = [
        {"id": "clean", "text": JA_CLEAN.replace("トマト", "ﾄﾏﾄｶﾞ"), "metadata": {"source": "s", "group": "g1"}},
        {"id": "short", "text": "短い文書です。", "metadata": {"source": "s", "group": "g2"}},
        {"id": "kata", "text": JA_CLEAN + KATA * 16, "metadata": {"source": "s", "group": "g3"}},
        {"id": "dupl", "text": JA_CLEAN + ("\n" + SENTS[0]) * 9, "metadata": {"source": "s", "group": "g4"}},
    ]
    _write_jsonl(tmp_path / "in" / "00000.jsonl", docs[:2], extra="{not json\n")
    _write_jsonl(tmp_path / "in" / "00001.jsonl", docs[2:], extra='{"id": "n", "text": 5}\n')
    ex = ExecutorConfig(workers=1, tasks=2)
    res = F.run_quality_pipeline(tmp_path / "in", tmp_path / "out", "ja", TECH, True, tmp_path / "work", ex)
    assert res["docs_in"] == 4 and res["docs_out"] == 1
    assert res["corrupt_lines"] == 2
    assert res["rules"]["min_chars"]["docs"] == 1
    assert res["rules"]["katakana_frac"]["docs"] == 1
    assert res["rules"]["dup_line_frac"]["docs"] == 1
    assert res["rules"]["min_chars"]["examples"][0]["text"] == "短い文書です。"
    assert res["rules"]["min_chars"]["examples"][0]["value"] == 7.0
    # accounting: every document and character entering the rules is either kept or attributed to one rule
    assert res["docs_in"] == res["docs_out"] + sum(r["docs"] for r in res["rules"].values())
    assert res["chars_in"] == res["chars_out"] + sum(r["chars"] for r in res["rules"].values())
    assert res["chars_kept"] == res["chars_out"] and (res["rule_set"], res["nfkc"]) == ("technical", "before rules")
    assert res["chars_read"] == sum(len(d["text"]) for d in docs) and res["chars_in"] < res["chars_read"]
    out = [json.loads(line) for f in sorted((tmp_path / "out").glob("*.jsonl.gz")) for line in gzip.open(f)]
    assert [o["id"] for o in out] == ["clean"]
    assert "トマトガ" in out[0]["text"]  # NFKC applied (half-width ｶﾞ, 2 characters, became ガ)
    assert out[0]["metadata"] == {"source": "s", "group": "g1"}  # metadata passes through untouched
    assert not (tmp_path / "out.tmp").exists()
    # rerun into the same folders: replaced, same answer
    again = F.run_quality_pipeline(tmp_path / "in", tmp_path / "out", "ja", TECH, True, tmp_path / "work", ex)
    assert again == res


def test_pipeline_refuses_overlapping_dirs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="overlaps"):
        F.run_quality_pipeline(
            tmp_path / "in", tmp_path / "out", "ja", TECH, False, tmp_path / "in" / "w", ExecutorConfig()
        )


def test_make_executor_local(tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor

    ex = F.make_executor([], ExecutorConfig(workers=4, tasks=3), tmp_path, tasks=2)
    assert isinstance(ex, LocalPipelineExecutor) and ex.tasks == 2 and ex.workers == 2
