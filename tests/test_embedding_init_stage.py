"""Stage 03 plumbing (swallowlib.embedding_init.stage): the derived short-CPT runs and where the inits live.

Run: .venv/bin/pytest tests/test_embedding_init_stage.py -q
"""

from __future__ import annotations

import dataclasses

import pytest

from swallowlib import paths
from swallowlib.config import ConfigError, load_config
from swallowlib.embedding_init import stage
from swallowlib.train.job import get_run


def test_comparison_runs_are_paired_and_resolvable():
    cfg = load_config("smoke")
    runs = stage.comparison_runs(cfg)
    ec = cfg.embedding_init
    assert len(runs) == len(ec.methods) * len(ec.seeds) > 0
    for m in ec.methods:
        for s in ec.seeds:
            rc = runs[f"init-cmp-{m}-s{s}"]
            # the seed fixes the data order: every method sees the same batches for a seed
            assert rc.seed == s and rc.tokenizer == "expanded" and rc.tokens == ec.short_cpt_tokens
            assert rc.init == str(stage.seed_dir(cfg.profile, m, s, cfg.seed))
            assert get_run(cfg, f"init-cmp-{m}-s{s}") == rc  # the training CLI knows them
            assert stage.parse_comparison_run(f"init-cmp-{m}-s{s}") == (m, s)
    assert stage.seed_dir("x", "random", cfg.seed, cfg.seed) == paths.embedding_init_dir("x") / "random"
    with pytest.raises(ConfigError, match="no run named"):
        get_run(cfg, "init-cmp-nonsense-s9")


def test_comparison_disabled_with_zero_tokens():
    cfg = load_config("smoke")
    cfg = dataclasses.replace(cfg, embedding_init=dataclasses.replace(cfg.embedding_init, short_cpt_tokens=0))
    assert stage.comparison_runs(cfg) == {}


def test_unknown_method_is_a_config_error(tmp_path):
    text = paths.config_path("smoke").read_text() + "\nembedding_init:\n  methods: [mean-of-pieces, zeros]\n"
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=r"embedding_init\.methods"):
        load_config(f)


def test_a_rebuilt_init_is_a_different_start_for_the_training_engine(tmp_path):
    """Same files and sizes, different source (e.g. a retrained base): the CPT run identity must change."""
    import json

    from swallowlib.train.job import _init_identity

    d = tmp_path / "init"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 10)
    (d / "trainer_state.json").write_text(json.dumps({"stage": "embedding_init", "source": "aaa"}))
    a = _init_identity(str(d))
    (d / "trainer_state.json").write_text(json.dumps({"stage": "embedding_init", "source": "bbb"}))
    assert _init_identity(str(d)) != a
    # a bitwise-identical re-run with other timings is the same start
    (d / "trainer_state.json").write_text(json.dumps({"source": "bbb", "wall_s": 1.0}))
    b = _init_identity(str(d))
    (d / "trainer_state.json").write_text(json.dumps({"source": "bbb", "wall_s": 2.0}))
    assert _init_identity(str(d)) == b
