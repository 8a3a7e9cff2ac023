"""The extended study's runs, derived from a profile's ``study`` section (``make study``; docs/study.md).

Each is a :class:`~swallowlib.config.RunConfig` built from a run of ``train.runs``, so it shares that run's data mix,
optimizer and milestones and differs in exactly one thing:

==========================  =======================================================================================
run                         differs from its parent in
==========================  =======================================================================================
``<run>-s<k>``              the training seed ``k`` (data order; random init of a scratch run)
``cpt-nve+chars``           cpt-nve's tokenizer plus only the characters of the expansion, mean-of-pieces rows
``cpt-ve-v<f>``             cpt-ve's merge with a Japanese tokenizer of ``f`` x ``tokenizer.ja_vocab`` pieces
``cpt-ve-long`` (and NVE)   continues cpt-ve from its final weights, on the data where it stopped, to ``longer`` x
                            its tokens in all (a new warm-up and cosine over the extra tokens)
``scratch-ve-total``        scratch-ve with the base run's + cpt-ve's tokens (equal *total* tokens)
==========================  =======================================================================================

The tokenizers and start weights of the variant runs are built by :mod:`swallowlib.study` under
``runs/<profile>/study/``; this module only names them, so the training engine can resolve a study run without
importing the study's builders.

>>> sweep_name(0.25), sweep_name(2.0)
('cpt-ve-v0.25', 'cpt-ve-v2')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swallowlib import paths
from swallowlib.config import Config, ConfigError, RunConfig, steps_for_tokens

#: The runs of the default matrix the study derives from.
VE, NVE, SCRATCH, PARA = "cpt-ve", "cpt-nve", "scratch-ve", "cpt-ve-para"
CHARS = "cpt-nve+chars"
LONG_SUFFIX, TOTAL_SUFFIX = "-long", "-total"


def study_dir(profile: str) -> Path:
    return paths.run_dir(profile) / "study"


def variant_dirs(profile: str, variant: str) -> tuple[Path, Path]:
    """(tokenizer directory, start-weights directory) of a study variant (``chars``, ``v0.25``, …)."""
    d = study_dir(profile)
    return d / "tokenizers" / variant, d / "inits" / variant


def sweep_name(factor: float) -> str:
    return f"{VE}-{sweep_variant(factor)}"


def sweep_variant(factor: float) -> str:
    return f"v{factor:g}"


def seed_name(run: str, seed: int) -> str:
    return f"{run}-s{seed}"


def _need(cfg: Config, run: str, why: str) -> RunConfig:
    if run not in cfg.train.runs:
        raise ConfigError(f"{cfg.path}: study.{why} derives from train.runs.{run}, which the profile does not have")
    return cfg.train.runs[run]


def study_runs(cfg: Config) -> dict[str, RunConfig]:
    """Every run of the profile's ``study`` section, by name (empty when the section asks for nothing)."""
    sc, tc = cfg.study, cfg.train
    runs: dict[str, RunConfig] = {}
    for run in sc.seed_runs:
        for k in sc.seeds:
            runs[seed_name(run, k)] = dataclasses.replace(_need(cfg, run, "seed_runs"), seed=k)
    variants = (["chars"] if sc.chars_arm else []) + [sweep_variant(f) for f in sc.vocab_sweep]
    for variant in variants:
        parent = _need(cfg, NVE if variant == "chars" else VE, "chars_arm" if variant == "chars" else "vocab_sweep")
        tok, init = variant_dirs(cfg.profile, variant)
        name = CHARS if variant == "chars" else f"{VE}-{variant}"
        runs[name] = dataclasses.replace(parent, tokenizer=str(tok), init=str(init))
    if sc.longer:
        for run in (VE, NVE):
            rc = _need(cfg, run, "longer")
            done = _tokens_trained(rc.tokens, tc.batch_size, tc.seq_len)
            extra = _tokens_trained(round(rc.tokens * (sc.longer - 1)), tc.batch_size, tc.seq_len)
            runs[run + LONG_SUFFIX] = dataclasses.replace(rc, init=f"run:{run}", tokens=extra, skip_tokens=done)
    if sc.scratch_total:
        base = _need(cfg, cfg.embedding_init.base_run, "scratch_total")
        total = base.tokens + _need(cfg, VE, "scratch_total").tokens
        runs[SCRATCH + TOTAL_SUFFIX] = dataclasses.replace(_need(cfg, SCRATCH, "scratch_total"), tokens=total)
    return runs


def continued_from(name: str) -> str | None:
    """The run a ``-long`` continuation starts from (its tokens add to that run's on a curve), else None."""
    return name.removesuffix(LONG_SUFFIX) if name.endswith(LONG_SUFFIX) else None


def _tokens_trained(tokens: int, batch_size: int, seq_len: int) -> int:
    """The tokens a run of budget ``tokens`` really trains on: whole optimizer steps (the engine rounds up).

    >>> _tokens_trained(400_000, 8, 256)
    401408
    """
    return steps_for_tokens(tokens, batch_size, seq_len) * batch_size * seq_len
