"""Every filesystem location the project uses, in one place.

Nothing else in the project spells out a path: notebooks, Make and the library ask this module.

>>> from swallowlib import paths
>>> paths.run_dir("tiny").name
'tiny'
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the directory holding ``pyproject.toml``).
ROOT = Path(__file__).resolve().parent.parent

CONFIGS = ROOT / "configs"
NOTEBOOKS = ROOT / "notebooks"
FIGURES = ROOT / "figures"

#: Downloaded source archives (``.deb``, wheels, sdists, npm tarballs, apt indices); shared by all profiles.
#: ``SWALLOW_DATA`` moves it (e.g. to a larger disk).
DATA = Path(os.environ.get("SWALLOW_DATA", ROOT / "data"))
ARCHIVES = DATA / "archives"

#: Everything a run produces; ``SWALLOW_RUNS`` moves it.
RUNS = Path(os.environ.get("SWALLOW_RUNS", ROOT / "runs"))


def config_path(profile: str) -> Path:
    """``configs/<profile>.yaml``."""
    return CONFIGS / f"{profile}.yaml"


def run_dir(profile: str) -> Path:
    """``runs/<profile>/``: the root of everything one profile produces."""
    return RUNS / profile


def corpus_dir(profile: str) -> Path:
    """Stage 01 outputs: datasets, eval sets, manifest, data card, report tables."""
    return run_dir(profile) / "corpus"


def corpus_split_dir(profile: str, dataset: str, split: str) -> Path:
    """``runs/<profile>/corpus/<dataset>/<split>/``: one split as Parquet shards (``dataset``: ja, en, parallel)."""
    return corpus_dir(profile) / dataset / split


def corpus_split_files(profile: str, dataset: str, split: str) -> list[Path]:
    """The Parquet shards of one corpus split, in shard order (an empty split has none).

    A split that stage 01 has not written raises ``FileNotFoundError`` naming the directory and the command.
    """
    d = corpus_split_dir(profile, dataset, split)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: missing corpus split (build it with `make corpus PROFILE={profile}`)")
    return sorted(d.glob("*.parquet"))


def executed_notebooks_dir(profile: str) -> Path:
    """Where papermill writes executed notebooks."""
    return run_dir(profile) / "notebooks"


def figures_dir(profile: str) -> Path:
    """Committed figures of a profile (``figures/<profile>/``)."""
    return FIGURES / profile


def embedding_init_dir(profile: str) -> Path:
    """Stage 03 outputs: one resized HF model directory per initialisation method (``<dir>/<method>/``)."""
    return run_dir(profile) / "embedding_init"


def train_dir(profile: str) -> Path:
    """Stage 04 outputs: one directory per training run, plus the shared tokenised-data cache."""
    return run_dir(profile) / "train"


def run_out_dir(profile: str, run: str) -> Path:
    """``runs/<profile>/train/<run>/``: a run's checkpoints, milestones, final model, metrics and provenance."""
    return train_dir(profile) / run


def token_cache_dir(profile: str) -> Path:
    """Tokenised, packed training data, shared by the runs of a profile (keyed by tokenizer + corpus fingerprint)."""
    return train_dir(profile) / "_cache"


def eval_dir(profile: str) -> Path:
    """Stage 05 outputs: generated lm-eval tasks (``tasks/``), lm-eval JSON per checkpoint, the tidy results table."""
    return run_dir(profile) / "eval"


def machine_dir() -> Path:
    """Facts measured once about this machine (e.g. its fp32 matmul peak for MFU), shared by all profiles."""
    return RUNS / "_machine"


def analysis_dir(profile: str) -> Path:
    """Stage 06 outputs: the findings table (CSV/Markdown/JSON) and the tables behind the study's figures."""
    return run_dir(profile) / "analysis"


def report_dir(profile: str) -> Path:
    """``make report``: the HTML report of the executed notebooks (``index.html`` + one page per notebook)."""
    return run_dir(profile) / "report"
