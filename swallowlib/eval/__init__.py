"""Stage 05: evaluation through lm-evaluation-harness, over every checkpoint of every run of a profile.

Offline profiles get local tasks built from the held-out material of stage 01 (:mod:`~swallowlib.eval.tasks`:
bits per byte ja/en, translation en<->ja, FAQ multiple choice, synopsis ROUGE-2 on MeCab words and on model
tokens); GPU profiles add the paper's tasks by their lm-eval registry names (``eval.harness_tasks``).
:mod:`~swallowlib.eval.harness` runs them and writes ``runs/<profile>/eval/results.{csv,parquet}``.

    python -m swallowlib.eval --config configs/tiny.yaml                 # every checkpoint not yet evaluated
    python -m swallowlib.eval --config configs/tiny.yaml --run cpt-ve    # one run
    python -m swallowlib.eval --config configs/tiny.yaml --checkpoint runs/tiny/train/base/final

>>> from swallowlib import eval as ev                                  # doctest: +SKIP
>>> ev.run_eval(load_config("configs/tiny.yaml"))                      # doctest: +SKIP
>>> ev.collect("tiny").head()                                          # doctest: +SKIP
"""

from __future__ import annotations

from swallowlib.eval.harness import CheckpointError, check_checkpoint, collect, discover, run_eval
from swallowlib.eval.tasks import EvalDataError, build_tasks

__all__ = ["CheckpointError", "EvalDataError", "build_tasks", "check_checkpoint", "collect", "discover", "run_eval"]
