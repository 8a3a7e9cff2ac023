"""Fixtures shared across test modules, and the rule for ``gpu`` tests.

``tree``: the training tests' miniature stage-01/02 tree (tests/train_helpers.py) with the ``base`` run trained once
per session. Modules that need a different tree (the evaluation tests) define their own ``tree``, which shadows this
one; test_train_peft.py extends it.

Markers (declared in pyproject.toml, ``--strict-markers``): plain ``pytest`` is the quick loop; ``make test`` adds the
``slow`` tests (subprocess training, SIGKILL resumes, Make, headless Chromium); ``-m exhaustive`` runs the whole
stage on Ray / Slurm; ``-m gpu`` runs the checks that need a CUDA device and skips them where there is none.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> dict:
    """``{"root", "runs", "config"}``: the test tree with the ``base`` run trained in this process."""
    # conftest loads for every run, a one-file run too: pandas and the tokenizer trainer only when a test asks
    from tests.train_helpers import build_tree, train_inprocess

    root = tmp_path_factory.mktemp("train-tree")
    config = build_tree(root)
    runs = root / "runs"
    train_inprocess(config, "base", runs)
    return {"root": root, "runs": runs, "config": config}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is None:
        return
    import torch  # only for gpu tests: most test modules never import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
