"""A miniature stage-01/02 output tree for the training tests: corpus splits (ja, en, parallel) as directories of
Parquet shards, as stage 01 writes them (the Japanese training split in two shards), and two HF tokenizers (an
English "base" and a larger mixed "expanded") under a temporary ``runs/`` directory, plus a profile config with a tiny
model (:func:`build_tree`); tests/conftest.py's ``tree`` fixture builds it once per session and trains its ``base``
run. Also the ways tests start training (in process, as a subprocess, two launches side by side) and wait for it."""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
import yaml

from swallowlib import paths
from swallowlib.tokenizer import base, export
from tests.samples import EN_SENTENCES, JA_SENTENCES

PROFILE = "pytest-train"


def _docs(pool: list[str], n: int, per_doc: int, sep: str, rng: random.Random) -> list[str]:
    return [sep.join(rng.choice(pool) for _ in range(per_doc)) for _ in range(n)]


def write_split(split_dir: Path, frames: list[pd.DataFrame]) -> list[Path]:
    """One corpus split as stage 01 writes it: ``<split_dir>/<NNNNN>.parquet``, one shard per frame, in order."""
    split_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for i, df in enumerate(frames):
        out.append(split_dir / f"{i:05d}.parquet")
        df.reset_index(drop=True).to_parquet(out[-1])
    return out


def build_tree(root: Path) -> Path:
    """``root/runs/<PROFILE>/{corpus,tokenizer}`` and ``root/<PROFILE>.yaml``; returns the config path."""
    rng = random.Random(0)
    runs = root / "runs" / PROFILE
    corpus = runs / "corpus"
    for split, n in (("train", 60), ("valid", 6)):
        for lang, pool, sep in (("ja", JA_SENTENCES, ""), ("en", EN_SENTENCES, " ")):
            texts = _docs(pool, n, 8, sep, rng)
            df = pd.DataFrame({"id": [f"{lang}-{split}-{i}" for i in range(n)], "text": texts, "source": "test",
                               "group": "test", "meta": "{}"})  # fmt: skip
            cuts = (0, n // 3, n) if (lang, split) == ("ja", "train") else (0, n)
            write_split(corpus / lang / split, [df[a:b] for a, b in itertools.pairwise(cuts)])
        k = min(len(JA_SENTENCES), len(EN_SENTENCES))
        pairs = [(EN_SENTENCES[i % k], JA_SENTENCES[i % k]) for i in range(n * 2)]
        df = pd.DataFrame({"id": [f"p-{split}-{i}" for i in range(len(pairs))], "en": [p[0] for p in pairs],
                           "ja": [p[1] for p in pairs], "source": "test", "group": "test", "meta": "{}"})  # fmt: skip
        write_split(corpus / "parallel" / split, [df])
    tok = runs / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    en_lines = _docs(EN_SENTENCES, 300, 3, " ", rng)
    mixed = en_lines + _docs(JA_SENTENCES, 300, 3, "", rng)
    m = base.train_sentencepiece(en_lines, 300, tok / "base_spm", seed=1)
    export.export_hf(m, tok / "base")
    m = base.train_sentencepiece(mixed, 520, tok / "expanded_spm", seed=1)
    export.export_hf(m, tok / "expanded")
    cfg = {
        "profile": PROFILE,
        "seed": 0,
        "corpus": {"sources": []},
        "train": {
            "model": {
                "hidden_size": 32,
                "num_layers": 2,
                "num_heads": 4,
                "intermediate_size": 64,
                "max_position_embeddings": 64,
            },  # fmt: skip
            "seq_len": 32,
            "micro_batch_size": 4,
            "batch_size": 4,
            "optimizer": {"lr": 3e-3, "min_lr_ratio": 0.1, "warmup_steps": 3},
            "checkpoint_fractions": [0.5, 1.0],
            "save_every_steps": 4,
            "keep_last": 2,
            "log_every_steps": 2,
            "eval_sequences": 2,
            "num_proc": 1,
            "runs": {
                "base": {"init": "scratch", "tokenizer": "base", "mix": {"en": 1.0}, "tokens": 16 * 128},
                "cpt": {"init": "run:base", "tokenizer": "base", "mix": {"ja": 0.9, "en": 0.1}, "tokens": 8 * 128},
                "ve": {
                    "init": "init:random",
                    "tokenizer": "expanded",
                    "mix": {"ja": 0.8, "en": 0.1, "parallel": 0.1},
                    "tokens": 8 * 128,
                },  # fmt: skip
            },
        },
    }
    p = root / f"{PROFILE}.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return p


def write_config(src: Path, dst: Path, mutate) -> Path:
    """A copy of the test config with ``mutate(dict)`` applied."""
    d = yaml.safe_load(src.read_text())
    mutate(d)
    dst.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return dst


class use_runs:
    """Point ``paths.RUNS`` at a test tree (in-process calls); subprocesses get ``SWALLOW_RUNS`` from :func:`env`."""

    def __init__(self, runs: Path):
        self.runs = runs

    def __enter__(self):
        self.old = paths.RUNS
        paths.RUNS = self.runs

    def __exit__(self, *exc):
        paths.RUNS = self.old


def env(runs: Path, **extra) -> dict:
    return dict(
        os.environ, SWALLOW_RUNS=str(runs), PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
        PYTHONPATH=str(paths.ROOT), **extra,
    )  # fmt: skip


def train_cmd(config: Path, run: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "swallowlib.train", "--config", str(config), "--run", run, "--no-progress", *args]


def run_train(config: Path, run: str, runs: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(train_cmd(config, run, *args), env=env(runs), capture_output=True, text=True, cwd=paths.ROOT)
    if check and p.returncode != 0:
        raise AssertionError(f"training {run} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_alongside(one: tuple, two: tuple, runs: Path) -> None:
    """``train.launch(*one)`` (one process, in a thread) alongside ``train.launch(*two)`` (several processes, its own
    port): both share the 2 cores, and together they take less time than one after the other."""
    import threading

    from swallowlib import train

    errors = []

    def first():
        try:
            train.launch(*one, env=env(runs), quiet=True)
        except Exception as e:  # noqa: BLE001 - reported by the caller's thread
            errors.append(e)

    t = threading.Thread(target=first)
    t.start()
    train.launch(*two, env=env(runs), quiet=True, main_process_port=free_port())
    t.join()
    assert not errors, errors


def make_expanded_init(runs: Path, method: str = "random") -> Path:
    """A stand-in for stage 03: the base run's final model resized to the expanded tokenizer (new rows random)."""
    import torch
    from transformers import AutoModelForCausalLM

    from swallowlib.tokenizer.export import load_hf

    prof = runs / PROFILE
    out = prof / "embedding_init" / method
    if (out / "config.json").is_file():
        return out
    m = AutoModelForCausalLM.from_pretrained(prof / "train" / "base" / "final", dtype=torch.float32)
    torch.manual_seed(0)
    m.resize_token_embeddings(len(load_hf(prof / "tokenizer" / "expanded")), mean_resizing=False)
    m.save_pretrained(out)
    return out


def train_inprocess(config: Path, run: str, runs: Path, *, max_steps: int | None = None) -> dict:
    """Build and train one run in this process (faster than a subprocess; same code as the CLI)."""
    from swallowlib.config import apply_environment, load_config
    from swallowlib.train.engine import make_accelerator, train
    from swallowlib.train.job import build_job

    with use_runs(runs):
        cfg = load_config(config)
        apply_environment(cfg)
        acc = make_accelerator(cfg.train.precision)
        job = build_job(cfg, run, acc, progress=False)
        return train(job, acc, max_steps=max_steps)


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, timeout: float = 900,
                 log: Path | None = None) -> None:  # fmt: skip
    """Poll ``ready()`` until it holds, then SIGKILL ``proc`` and every process under it (a launcher's workers are not
    in its process group) and wait for them. A run on a loaded machine can take minutes to reach the state a
    test wants to kill it in, so there is no fixed sleep: the timeout only bounds a run that never gets there. If
    ``proc`` exits first or the timeout passes, everything is killed all the same and the test fails, with the tail
    of ``log``."""
    deadline = time.monotonic() + timeout
    problem = None
    while not ready():
        if proc.poll() is not None:
            problem = f"exited with {proc.returncode} before it was ready to be killed"
            break
        if time.monotonic() > deadline:
            problem = f"not ready to be killed after {timeout:.0f} s"
            break
        time.sleep(0.05)
    procs = []
    if proc.returncode is None:  # once reaped, its pid may belong to another process
        try:
            procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()  # Popen reaps its own child: psutil would take its exit status and leave Popen a returncode of 0
    psutil.wait_procs(procs[1:], timeout=60)
    if problem:
        tail = log.read_text(errors="replace")[-3000:] if log and log.is_file() else ""
        raise AssertionError(f"{' '.join(map(str, proc.args))}: {problem}\n{tail}")
