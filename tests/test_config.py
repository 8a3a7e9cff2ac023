"""The typed config: both profiles load; every kind of bad input is one clear error naming the key."""

from pathlib import Path

import pytest
import yaml

from swallowlib import paths
from swallowlib.config import ConfigError, QualityFilters, load_config


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_profiles_load(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile
    assert cfg.corpus.filters["ja"].min_chars == 400
    assert cfg.corpus.filters["ja"].min_hiragana_frac == 0.2
    assert cfg.corpus.filters["en"].min_hiragana_frac is None  # Japanese-only rule is off for English
    assert cfg.corpus.filters["ja"].rule_set == cfg.corpus.filters["en"].rule_set == "technical"
    assert cfg.path.endswith(f"{profile}.yaml")


@pytest.mark.parametrize("profile", ["smoke", "tiny", "rehearsal", "tinyllama-1.1b", "llama2-7b"])
def test_every_profile_names_its_rule_sets(profile):
    """Each profile says which rule set filters each language; the GPU profiles filter Japanese web text with the
    paper's rules (swallow-v1), the CPU profiles technical documentation with the technical set."""
    raw = yaml.safe_load(paths.config_path(profile).read_text())["corpus"]["filters"]
    assert {lang: f["rule_set"] for lang, f in raw.items()} == {
        "ja": "swallow-v1" if profile in ("tinyllama-1.1b", "llama2-7b") else "technical",
        "en": "technical",
    }


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def _base() -> dict:
    return yaml.safe_load(paths.config_path("smoke").read_text())


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda d: d["corpus"].update(bogus=1), "corpus.bogus", "unknown key"),
        (
            lambda d: d["corpus"]["filters"]["ja"].update(min_hirgana_frac=0.1),
            "corpus.filters.ja.min_hirgana_frac",
            "unknown key",
        ),
        (
            lambda d: d["corpus"]["filters"]["ja"].update(min_hiragana_frac=1.5),
            "corpus.filters.ja.min_hiragana_frac",
            "fraction",
        ),
        (
            lambda d: d["corpus"]["filters"]["ja"].update(min_chars="many"),
            "corpus.filters.ja.min_chars",
            "expected",
        ),
        (lambda d: d["corpus"]["filters"]["ja"].update(rule_set="gopher"), "corpus.filters.ja.rule_set", "one of"),
        (  # a threshold the chosen rule set does not use: an error naming the key and the fix
            lambda d: d["corpus"]["filters"].update(ja={"max_dup_para_frac": 0.3}),
            "corpus.filters.ja.max_dup_para_frac",
            "not a threshold of rule_set swallow-v1",
        ),
        (
            lambda d: d["corpus"]["filters"]["ja"].update(min_japanese_chars=300),
            "corpus.filters.ja.min_japanese_chars",
            "set rule_set: swallow-v1",
        ),
        (lambda d: d["corpus"]["filters"]["en"].pop("rule_set"), "corpus.filters.en.rule_set", "Japanese text only"),
        (lambda d: d["corpus"]["dedup"].update(enabled="yes"), "corpus.dedup.enabled", "true or false"),
        (lambda d: d["corpus"]["sources"].append("no-such-source"), "corpus.sources[", "unknown source"),
        (
            lambda d: d["corpus"].update(parallel_sources=["brown2"]),
            "corpus.parallel_sources[0]",
            "unknown source",
        ),
        (
            lambda d: d["corpus"].update(eval_sources=["gimp-help"]),
            "corpus.eval_sources[0]",
            "must also be listed",
        ),
        (lambda d: d["corpus"]["executor"].update(kind="k8s"), "corpus.executor.kind", "one of"),
        (lambda d: d["corpus"]["split"].update(test=0.7), "corpus.split.test", "fraction"),
        (lambda d: d["corpus"].pop("sources"), "corpus.sources", "required key is missing"),
        (
            lambda d: d["corpus"].update(
                local=[{"name": "mine", "path": "x", "language": "fr", "licence": "-"}]
            ),
            "corpus.local[0].language",
            "one of",
        ),
        (
            lambda d: d["corpus"].update(
                hub=[{"name": "w", "dataset": "d/x", "language": "ja", "licence": "-"}]
            ),
            "corpus.hub",
            "offline",
        ),
        (lambda d: d["train"].update(precision="fp16"), "train.precision", "one of"),
        (lambda d: d["train"].update(bogus=1), "train.bogus", "unknown key"),
        (lambda d: d["train"]["model"].update(num_heads=3), "train.model.num_heads", "must divide"),
        (lambda d: d["train"].update(seq_len=4096), "train.seq_len", "max_position_embeddings"),
        (lambda d: d["train"].update(checkpoint_fractions=[0.5, 0.25]), "train.checkpoint_fractions", "increasing"),
        (lambda d: d["train"].update(parallel_template=["EN {en}"]), "train.parallel_template[0]", "{ja}"),
        (lambda d: d["train"]["optimizer"].update(min_lr_ratio=2), "train.optimizer.min_lr_ratio", "fraction"),
        (lambda d: d["train"]["runs"]["base"].update(mix={"en": 0.5}), "train.runs.base.mix", "sum to 1"),
        (lambda d: d["train"]["runs"]["base"].update(mix={"fr": 1.0}), "train.runs.base.mix.fr", "unknown source"),
        (lambda d: d["train"]["runs"]["base"].update(tokens=0), "train.runs.base.tokens", "positive"),
        (lambda d: d["train"]["runs"]["base"].update(tokenizer="ja"), "train.runs.base.tokenizer",
         "base, expanded or a tokenizer directory"),
        (lambda d: d["train"]["runs"]["base"].update(peft=True), "train.runs.base.peft", "scratch"),
        (lambda d: d["train"]["runs"]["base"].update(lr="fast"), "train.runs.base.lr", "expected"),
        (lambda d: d["train"]["runs"]["cpt-nve"].update(init="run:bse"), "train.runs.cpt-nve.init", "no run named"),
        (lambda d: d["train"]["runs"]["base"].update(init="run:base"), "train.runs.base.init", "from itself"),
        (lambda d: d["train"]["runs"].update({"_cache": {"tokens": 1}}), "train.runs._cache", "run name"),
        (lambda d: d["train"]["runs"]["base"].update(checkpoint_fractions=[0.5, 1.5]),
         "train.runs.base.checkpoint_fractions", "increasing"),
        (lambda d: d["train"].update(processes=0), "train.processes", "positive"),
    ],
)
def test_bad_values_name_the_key(tmp_path, mutate, key, words):
    d = _base()
    mutate(d)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, d))
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "x.yaml") in msg
    assert key in msg and words in msg


@pytest.mark.parametrize("profile", ["smoke", "tiny"])
def test_train_section(profile):
    """Both profiles define the whole experiment matrix (docs/study.md) with the paper's optimiser shape (the init-*
    runs are stage 03's paired comparison runs, derived from the embedding_init section)."""
    cfg = load_config(profile)
    t = cfg.train
    assert set(t.runs) == {"base", "cpt-nve", "scratch-ve", "cpt-ve", "cpt-ve-para"}
    assert set(cfg.embedding_init.methods) == {"mean-of-pieces", "hf-mean", "random", "focus"}
    assert len(cfg.embedding_init.seeds) >= 2 and cfg.embedding_init.short_cpt_tokens > 0
    # An English base that has seen at most a little Japanese (tiny: 1 %, as Llama 2 had some), its tokenizer likewise.
    assert t.runs["base"].init == "scratch" and t.runs["base"].mix.get("ja", 0) <= 0.01 < t.runs["base"].mix["en"]
    assert cfg.tokenizer.base_ja_share <= 0.01
    assert t.runs["cpt-nve"].init == "run:base" and t.runs["cpt-nve"].tokenizer == "base"
    assert t.runs["cpt-ve"].init.startswith("init:") and t.runs["cpt-ve"].mix == {"ja": 0.9, "en": 0.1}
    assert set(t.runs["cpt-ve-para"].mix) == {"ja", "en", "parallel"}
    o = t.optimizer
    assert (o.beta1, o.beta2, o.eps, o.weight_decay, o.grad_clip) == (0.9, 0.95, 1e-8, 0.1, 1.0)
    assert t.model.tie_word_embeddings is False and t.checkpoint_fractions[-1] == 1.0
    from swallowlib.embedding_init.stage import comparison_runs

    # the init comparison is scored at its end: one checkpoint, no milestone saves in the short runs
    assert {tuple(rc.checkpoint_fractions) for rc in comparison_runs(cfg).values()} == {(1.0,)}


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("corpus: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_defaults_are_swallow_thresholds():
    f = QualityFilters()
    assert f.rule_set == "swallow-v1"  # the paper's rules: Swallow's released definitions and thresholds
    assert (f.min_chars, f.min_japanese_chars, f.min_hiragana_frac) == (400, 400, 0.2)
    assert (f.max_dup_line_frac, f.max_dup_sentence_frac) == (0.30, 0.30)
    assert (f.max_dup_line_char_frac, f.max_dup_sentence_char_frac, f.max_ng_word_char_frac) == (0.20, 0.20, 0.05)
    assert f.max_top_ngram_char_frac == {2: 0.20, 3: 0.18, 4: 0.16}
    assert f.max_dup_ngram_char_frac == {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    assert (f.max_katakana_frac, f.min_japanese_frac, f.max_sentence_chars) == (0.5, 0.5, 200)
    assert (f.min_avg_sentence_chars, f.max_avg_sentence_chars, f.max_ellipsis_sentence_frac) == (20, 90, 0.2)


def test_environment_yml_matches_pyproject():
    """conda users get the same environment: python 3.11 and a pip install of this project with its pins."""
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python=3.11") for d in deps if isinstance(d, str))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(line.startswith("-e .") for line in pip)


def test_rule_sets_reject_the_other_sets_thresholds():
    assert QualityFilters(rule_set="technical").max_dup_para_frac == 0.30  # the technical set at the paper's numbers
    with pytest.raises(ValueError, match="max_dup_para_frac: not a threshold of rule_set swallow-v1"):
        QualityFilters(max_dup_para_frac=0.5)
    with pytest.raises(ValueError, match="min_japanese_chars: .* set rule_set: swallow-v1"):
        QualityFilters(rule_set="technical", min_japanese_chars=None)
    with pytest.raises(ValueError, match="rule_set: expected one of"):
        QualityFilters(rule_set="gopher")
