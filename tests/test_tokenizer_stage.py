"""Stage 02 end to end on a small local corpus: tokenizers trained, merged, exported; invariants hold; bad config
values are clear errors; the stage is skipped when nothing changed."""

import json
import random

import pandas as pd
import pytest
import yaml

from swallowlib import paths
from swallowlib.config import ConfigError, load_config
from swallowlib.corpus import pipeline
from swallowlib.tokenizer import stage
from tests.samples import EN_SENTENCES, JA_SENTENCES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    rng = random.Random(1)
    for lang, pool, sep, n in (("ja", JA_SENTENCES, "", 20), ("en", EN_SENTENCES, " ", 15)):
        d = tmp / lang
        d.mkdir()
        for i in range(40):
            picked = rng.sample(pool, n)  # no sentence twice in a document (the repetition rules would fire)
            paras = [sep.join(picked[k : k + 4]) for k in range(0, n, 4)]
            (d / f"doc{i:02d}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    cfg = {
        "profile": "pytest-tok",
        "corpus": {
            "sources": [],
            "local": [
                {"name": "mine-ja", "path": str(tmp / "ja"), "language": "ja", "licence": "CC0 (test)"},
                {"name": "mine-en", "path": str(tmp / "en"), "language": "en", "licence": "CC0 (test)"},
            ],
            "filters": {  # technical: these pages separate paragraphs with blank lines, which swallow-v1 drops
                "ja": {"rule_set": "technical", "max_dup_ngram_char_frac": {}, "max_top_ngram_char_frac": {}},
                "en": {
                    "rule_set": "technical",
                    "max_dup_ngram_char_frac": {},
                    "max_top_ngram_char_frac": {},
                    "min_avg_sentence_chars": None,
                    "max_avg_sentence_chars": None,
                },
            },
            "dedup": {"enabled": False},
            "split": {"valid": 0.2, "test": 0.2},
            "executor": {"kind": "local", "workers": 1, "tasks": 1},
        },
        "tokenizer": {
            "base_vocab": 400,
            "ja_vocab": 600,
            "analysis_llama2": False,
            "analysis_mistral": False,
            "coverage": False,
            "out_of_domain": False,
            "eval_max_docs": 20,
        },
    }
    p = tmp / "pytest-tok.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    old_runs = paths.RUNS
    paths.RUNS = tmp / "runs"  # keep the test's outputs out of the repository's runs/
    try:
        c = load_config(p)
        pipeline.build_corpus(c)
        out = stage.build_tokenizers(c)
        yield {"cfg_path": p, "out": out}
    finally:
        paths.RUNS = old_runs


def test_outputs_and_invariants(built):
    out = built["out"]
    for f in (
        "base/tokenizer.json",
        "expanded/tokenizer.json",
        "ja.model",
        "merge.json",
        "invariants.json",
        "efficiency.csv",
        "provenance.json",
    ):
        assert (out / f).is_file(), f
    merge = json.loads((out / "merge.json").read_text())["expanded"]
    assert merge["final_size"] % 8 == 0 and merge["added"] > 0
    inv = json.loads((out / "invariants.json").read_text())
    e = inv["expanded"]
    assert e["english_lines_identical"] == e["english_lines"] > 0
    assert e["japanese_round_trips"] == e["japanese_lines"] > 0
    assert inv["hf=expanded"]["id_mismatches"] == 0 and inv["hf=expanded"]["decode_mismatches"] == 0


def test_expansion_shortens_japanese_and_leaves_english(built):
    df = pd.read_csv(built["out"] / "efficiency.csv").set_index(["tokenizer", "domain"])
    ja = "ja: held-out manuals (test split)"
    en = "en: held-out (test split)"
    assert df.loc[("expanded", ja), "tokens"] < 0.7 * df.loc[("base", ja), "tokens"]
    assert df.loc[("expanded", en), "tokens"] == df.loc[("base", en), "tokens"]
    assert df.loc[("base", ja), "tokens_ratio"] == 1.0


def test_up_to_date_and_bad_values(built, tmp_path):
    cfg = load_config(built["cfg_path"])
    old = paths.RUNS
    paths.RUNS = built["out"].parent.parent
    try:
        assert stage.is_up_to_date(cfg)
    finally:
        paths.RUNS = old
    data = yaml.safe_load(built["cfg_path"].read_text())
    data["tokenizer"]["ja_vocab"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError, match="tokenizer.ja_vocab"):
        load_config(bad)
