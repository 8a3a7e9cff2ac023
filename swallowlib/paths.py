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


def executed_notebooks_dir(profile: str) -> Path:
    """Where papermill writes executed notebooks."""
    return run_dir(profile) / "notebooks"


def figures_dir(profile: str) -> Path:
    """Committed figures of a profile (``figures/<profile>/``)."""
    return FIGURES / profile
