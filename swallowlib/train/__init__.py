"""Stage 04: the training engine (base pre-training and continual pre-training), on ``accelerate``.

    python -m swallowlib.train --config configs/tiny.yaml --run base          # one process
    accelerate launch --config_file configs/accelerate/cpu_multi.yaml -m swallowlib.train --config … --run …

From a notebook (training never runs in the kernel: :func:`launch` starts it as a subprocess and streams its
output), then read the results back:

>>> from swallowlib import train                                   # doctest: +SKIP
>>> train.launch("configs/tiny.yaml", "base")                      # doctest: +SKIP
>>> train.metrics("tiny", "base").tail()                           # doctest: +SKIP
>>> train.report.loss_figure("tiny", ["base", "cpt-ve"])          # doctest: +SKIP

Modules: :mod:`~swallowlib.train.data` (tokenise, pack, deterministic token-ratio mix), :mod:`~swallowlib.train.model`
(Llama, PEFT, FLOPs, HF save), :mod:`~swallowlib.train.optim` (AdamW, schedule), :mod:`~swallowlib.train.checkpoint`
(atomic, verified resume checkpoints), :mod:`~swallowlib.train.engine` (the loop), :mod:`~swallowlib.train.job`
(config -> job), :mod:`~swallowlib.train.mfu` (peak FLOP/s), :mod:`~swallowlib.train.gpu_check`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from swallowlib import paths

ACCELERATE_CONFIGS = paths.CONFIGS / "accelerate"


def accelerate_config(num_processes: int = 1) -> Path:
    """The accelerate launcher config for this machine: ``cpu_1``/``cpu_multi`` without CUDA, ``gpu_1``/``gpu_multi``
    with it (they only start processes: DDP or FSDP is the profile's ``train.fsdp``)."""
    import torch

    if torch.cuda.is_available():
        return ACCELERATE_CONFIGS / ("gpu_1.yaml" if num_processes == 1 else "gpu_multi.yaml")
    return ACCELERATE_CONFIGS / ("cpu_1.yaml" if num_processes == 1 else "cpu_multi.yaml")


def launch_command(
    config_path: str | Path, run: str, num_processes: int = 1, accelerate_config_file: str | Path | None = None,
    extra_args: tuple[str, ...] = (), main_process_port: int | None = None,
) -> list[str]:  # fmt: skip
    """The ``accelerate launch … -m swallowlib.train …`` command line that :func:`launch` runs.

    One process with the default config runs ``python -m swallowlib.train`` directly: the engine configures its
    Accelerator in code (CPU or one GPU, precision), so the launcher would only add its own interpreter start (~4 s
    per run here, 13 runs in the tiny profile).
    """
    train = ["-m", "swallowlib.train", "--config", str(config_path), "--run", run, *extra_args]
    if num_processes == 1 and accelerate_config_file is None:
        return [sys.executable, *train]
    cfg_file = Path(accelerate_config_file) if accelerate_config_file else accelerate_config(num_processes)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg_file)]
    cmd += ["--num_processes", str(num_processes)]
    if main_process_port is not None:
        cmd += ["--main_process_port", str(main_process_port)]
    return [*cmd, *train]


def launch(
    config_path: str | Path, run: str, num_processes: int | None = None, *,
    accelerate_config_file: str | Path | None = None, extra_args: tuple[str, ...] = (), quiet: bool = False,
    env: dict | None = None, main_process_port: int | None = None,
) -> int:  # fmt: skip
    """Run one training run in a subprocess (under ``accelerate launch`` for several processes), streaming its output;
    raises on failure.

    ``num_processes`` defaults to the profile's ``train.processes``. Several processes: the run's data is tokenised
    first by one process (``--prepare``), so no process waits on a collective while another tokenises.
    Re-running resumes a killed run and skips a finished one, so a notebook cell can always call this.
    ``env`` replaces the environment (e.g. ``SWALLOW_RUNS``); ``main_process_port`` avoids a busy default port.
    """
    if num_processes is None:
        from swallowlib.config import load_config

        num_processes = load_config(config_path).train.processes
    env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1")
    if num_processes > 1:
        _stream(launch_command(config_path, run, 1, extra_args=("--prepare",)), run, env, quiet)
    cmd = launch_command(
        config_path, run, num_processes, accelerate_config_file, (*extra_args, "--no-progress"), main_process_port
    )
    return _stream(cmd, run, env, quiet)


def _stream(cmd: list[str], run: str, env: dict, quiet: bool) -> int:
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        cmd, cwd=paths.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if not quiet:
                print(line, end="", flush=True)
        rc = proc.wait()
    if rc != 0:
        errors = [ln for ln in tail if ln.startswith("error:")]
        raise RuntimeError(f"training run {run!r} failed (exit {rc}): {(errors or list(tail) or ['no output'])[-1]}")
    return rc


def metrics(profile: str, run: str):
    """A run's ``metrics.jsonl`` as a DataFrame (training rows and ``event == "milestone"`` validation rows)."""
    import pandas as pd

    path = paths.run_out_dir(profile, run) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics yet (train the run first: swallowlib.train.launch)")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed run
            continue
    df = pd.DataFrame(rows)
    if "event" not in df:
        df["event"] = None
    df["event"] = df["event"].fillna("train")
    df = df.drop(columns=["run"], errors="ignore")  # milestone rows carry it already
    df.insert(0, "run", run)
    return df


def __getattr__(name: str):
    # `swallowlib.train.report` without importing matplotlib for every user of the package.
    if name == "report":
        import importlib

        return importlib.import_module("swallowlib.train.report")
    raise AttributeError(name)
