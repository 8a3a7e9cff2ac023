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
    assert cfg.path.endswith(f"{profile}.yaml")


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


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("corpus: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_defaults_are_swallow_thresholds():
    f = QualityFilters()
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
