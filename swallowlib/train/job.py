"""From a profile's config and a run name to a training :class:`Job`: resolve the start weights, the tokenizer, the
per-run overrides, and tokenise + pack the stage-01 data (cached) for the mix.

    >>> from swallowlib.config import load_config
    >>> job = build_job(load_config("configs/tiny.yaml"), "cpt-ve")       # doctest: +SKIP

:class:`Job` is what the engine (:mod:`swallowlib.train.engine`) runs; the GPU check, the tests and the benchmarks
build one directly, on synthetic tokens. Its fields named like a ``train.*`` setting are taken from the profile by
name (:func:`run_settings`), so a new training setting is a field of the Job and its use in the engine.

Every missing input is one clear error naming the file and the command that builds it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swallowlib import matrix, paths
from swallowlib.config import (
    Config,
    ConfigError,
    OptimizerConfig,
    PeftConfig,
    RunConfig,
    TrainConfig,
    run_checkpoint_fractions,
    run_optimizer,
    steps_for_tokens,
    to_dict,
)
from swallowlib.provenance import fingerprint, provenance
from swallowlib.train import data as tdata
from swallowlib.train import model as modeling

log = logging.getLogger(__name__)

#: The code whose change makes a recorded run "different" in provenance (not in the resume fingerprint).
CODE = sorted(Path(__file__).parent.glob("*.py"))


class TrainError(RuntimeError):
    """A run cannot start or continue; the message (one line) says what is wrong and what to do."""


@dataclass
class Job:
    """One fully resolved training run."""

    name: str
    out_dir: Path
    data: tdata.Mixture
    tokens: int  # token budget
    seq_len: int
    micro_batch_size: int
    batch_size: int  # global: sequences per optimizer step, all processes together
    optimizer: OptimizerConfig
    model_init: str  # "scratch" or an HF directory / Hub id
    model_config: Any = None  # an HF config (scratch runs)
    tokenizer_size: int = 0  # the model needs at least this many embedding rows
    tokenizer_dir: Path | None = None  # copied into every saved HF directory
    new_rows_from: int | None = None  # first new-vocabulary id (PEFT trains rows >= this)
    precision: str = "fp32"  # fp32 | bf16
    compile: bool = False
    peft: PeftConfig | None = None  # None: every weight trains
    embedding_warmup_steps: int = 0
    checkpoint_fractions: list[float] = field(default_factory=lambda: [1.0])
    save_every_steps: int = 100
    keep_last: int = 2
    log_every_steps: int = 10
    seed: int = 0
    eval_data: dict[str, np.ndarray] = field(default_factory=dict)
    ja_chars_per_token: float | None = None
    local_files_only: bool = True
    identity: dict = field(default_factory=dict)  # extra fingerprint fields: data, tokenizer, init weights
    provenance: dict = field(default_factory=dict)  # resolved config, versions, git SHA (saved with the run)
    progress: bool = True  # tqdm bar on the main process
    fsdp: bool = False  # FSDP2 full shard (swallowlib.train.parallel); DDP otherwise when on several processes
    activation_checkpointing: bool = False


#: Job fields that are ``train.*`` settings of the same name (:func:`run_settings` copies them).
SETTINGS = tuple(f.name for f in dataclasses.fields(Job) if f.name in {t.name for t in dataclasses.fields(TrainConfig)})


def resolve_precision(precision: str) -> str:
    """``auto`` -> fp32 on CPU, bf16 on a CUDA GPU (docs/study.md: bf16 as the paper; fp32 where bf16 is slow)."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if precision == "bf16" and not torch.cuda.is_available():
        log.warning("bf16 requested without a GPU: CPU autocast to bf16 is slow on most CPUs")
    return precision


def run_settings(cfg: Config, rc: RunConfig) -> dict:
    """The Job's settings of one run: every ``train.*`` setting the Job has a field for, with the run's overrides
    (optimizer, milestones, embedding warm-up, seed), the precision resolved for this machine, and the LoRA settings
    only for a PEFT run."""
    tc = cfg.train
    return {
        **{name: getattr(tc, name) for name in SETTINGS},
        "optimizer": run_optimizer(tc, rc),
        "checkpoint_fractions": run_checkpoint_fractions(tc, rc),
        "embedding_warmup_steps": _own(rc.embedding_warmup_steps, tc.embedding_warmup_steps),
        "seed": _own(rc.seed, cfg.seed),
        "precision": resolve_precision(tc.precision),
        "peft": tc.peft if rc.peft else None,
    }


def _own(run_value, shared):
    """A run's own value of a setting, else the shared one."""
    return run_value if run_value is not None else shared


# ---------------------------------------------------------------------------------------------------------------
# The run's inputs


def get_run(cfg: Config, run: str) -> RunConfig:
    """A run of ``train.runs``, one of the short CPT runs stage 03 derives from ``embedding_init``, or a run of the
    extended study (:func:`swallowlib.matrix.study_runs`)."""
    # Deferred: stage 03's module imports pandas, which a training process (and the GPU check's bare image, which
    # imports this module through the engine) does without.
    from swallowlib.embedding_init.stage import comparison_runs

    derived = {**comparison_runs(cfg), **matrix.study_runs(cfg)}
    runs = {**derived, **cfg.train.runs}
    if run not in runs:
        known = ", ".join(cfg.train.runs) or "none"
        also = " (and stage 03's init-cmp-<method>-s<seed>, and the study's runs)" if derived else ""
        raise ConfigError(f"{cfg.path}: train.runs: no run named {run!r} (known: {known}){also}")
    return runs[run]


def tokenizer_path(cfg: Config, which: str) -> Path:
    """Stage 02's ``base`` or ``expanded`` tokenizer directory, or ``which`` itself when it is a directory."""
    if which not in ("base", "expanded"):
        d = Path(which)
        if not (d / "tokenizer.json").is_file():
            raise TrainError(f"{d}: no tokenizer.json (`make study PROFILE={cfg.profile}` builds it)")
        return d
    d = paths.run_dir(cfg.profile) / "tokenizer" / which
    if not (d / "tokenizer.json").is_file():
        raise TrainError(f"{d}: no {which} tokenizer (build it with `make tokenizer PROFILE={cfg.profile}`)")
    return d


def resolve_init(cfg: Config, name: str, rc: RunConfig) -> str:
    """The directory (or Hub id) a run starts from, or ``scratch``."""
    init = rc.init
    if init == "scratch":
        return init
    if init.startswith("run:"):
        other = init[4:]
        d = paths.run_out_dir(cfg.profile, other) / "final"
        if not (d / "config.json").is_file():
            raise TrainError(
                f"{d}: run {other!r} (the init of {name!r}) has no final model yet; train it first: "
                f"python -m swallowlib.train --config {cfg.path} --run {other}"
            )
        return str(d)
    if init.startswith("init:"):
        d = paths.embedding_init_dir(cfg.profile) / init[5:]
        if not (d / "config.json").is_file():
            raise TrainError(
                f"{d}: missing; it is written by stage 03 (embedding init, method {init[5:]!r}) — run that stage first"
            )
        return str(d)
    p = Path(init)
    if p.exists() or init.startswith((".", "/")):
        if not (p / "config.json").is_file():
            raise TrainError(f"{p}: not an HF model directory (no config.json) — check train.runs.{name}.init")
        return str(p.resolve())
    return init  # a Hub id (offline profiles: only from the local HF cache)


def _init_identity(init: str) -> dict:
    """What identifies the start weights cheaply: the files' names and sizes plus their trainer_state.json."""
    p = Path(init)
    if init == "scratch" or not p.is_dir():
        return {"init": init}
    files = {f.name: f.stat().st_size for f in sorted(p.iterdir()) if f.is_file() and f.name != "trainer_state.json"}
    try:  # which checkpoint of which run (not its timings: a bitwise-identical re-run must still match)
        ts = json.loads((p / "trainer_state.json").read_text())
        # "source": what stage 03 built these weights from (base, tokenizer, method, seed), so a rebuilt init with
        # the same file sizes is still a different start.
        state = {k: ts.get(k) for k in ("run", "step", "tokens", "fraction", "source")}
    except (OSError, json.JSONDecodeError):
        state = None
    return {"init": init, "files": files, "trainer_state": state}


def corpus_split(cfg: Config, source: str, split: str) -> list[Path]:
    """The Parquet shards of one stage-01 split, in stream order (an empty split has none)."""
    try:
        return paths.corpus_split_files(cfg.profile, source, split)
    except FileNotFoundError as e:  # its message names the directory and `make corpus PROFILE=…`
        raise TrainError(str(e)) from None


def source_budgets(cfg: Config, rc: RunConfig) -> dict[str, dict]:
    """Per training source of a run: the stream tokens the run reads from it (``drawn``) and the tokens to tokenise
    (``max_tokens``: ``drawn`` × ``train.data_margin``, or ``None`` = the whole split when no margin is set)."""
    tc = cfg.train
    n_sequences = steps_for_tokens(rc.tokens, tc.batch_size, tc.seq_len) * tc.batch_size + _skip(cfg, rc)
    drawn = tdata.tokens_drawn({s: r for s, r in rc.mix.items() if r > 0}, n_sequences, tc.seq_len)
    margin = tc.data_margin
    return {s: {"drawn": d, "max_tokens": None if margin is None else math.ceil(d * margin)} for s, d in drawn.items()}


def _skip(cfg: Config, rc: RunConfig) -> int:
    """Sequences of the mix a run skips (``skip_tokens``: a continuation reads on where its init run stopped)."""
    if rc.skip_tokens % cfg.train.seq_len:
        raise ConfigError(f"{cfg.path}: skip_tokens {rc.skip_tokens} is not a multiple of train.seq_len")
    return rc.skip_tokens // cfg.train.seq_len


@dataclass(frozen=True)
class Vocabulary:
    """What a run's tokenizer fixes about its model: the size, the BOS and EOS ids, and (PEFT on an expanded
    tokenizer) the first new id, from which the rows train."""

    size: int
    bos_id: int
    eos_id: int
    new_rows_from: int | None


def vocabulary(cfg: Config, rc: RunConfig, tok_dir: Path) -> Vocabulary:
    """The :class:`Vocabulary` of a run whose tokenizer is ``tok_dir``."""
    # Deferred: the tokenizer module imports sentencepiece, which the GPU check's bare image (it imports this module
    # through the engine) may lack.
    from swallowlib.tokenizer.export import load_hf

    tok = load_hf(tok_dir)
    if tok.eos_token_id is None:
        raise TrainError(f"{tok_dir}: the tokenizer has no EOS token (documents need a separator)")
    new_rows_from = None
    if rc.tokenizer != "base" and rc.peft:  # PEFT trains the rows the base tokenizer does not have
        new_rows_from = len(load_hf(tokenizer_path(cfg, "base")))
    return Vocabulary(len(tok), tok.bos_token_id or 1, tok.eos_token_id, new_rows_from)


def scratch_config(cfg: Config, vocab: Vocabulary):
    """The HF config of a run that starts from random weights: ``train.model.pretrained``'s architecture or the
    ``train.model`` sizes, at the run's vocabulary."""
    tc = cfg.train
    if not tc.model.pretrained:
        return modeling.llama_config(tc.model, vocab.size, bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    config = modeling.pretrained_config(tc.model.pretrained, local_files_only=cfg.offline)
    config.vocab_size = vocab.size
    config.use_cache = False
    return config


@dataclass
class RunData:
    """A run's tokenised data: the packed training and validation sources, the budgets they were cut to
    (:func:`source_budgets`), the training mix and the validation sequences scored at milestones."""

    train: dict[str, tdata.PackedSource]
    budgets: dict[str, dict]
    mixture: tdata.Mixture
    eval_data: dict[str, np.ndarray]


def run_data(cfg: Config, run: str, rc: RunConfig, tok_dir: Path, vocab: Vocabulary, *, seed: int,
             build: bool) -> RunData:  # fmt: skip
    """Tokenise (``build``; else only read from the cache) and pack the run's sources.

    Tokenised once per (tokenizer, split, token cap) and cached for every run of the profile. With
    ``train.data_margin`` set, a training split is tokenised only as far as the run reads it (with that margin);
    validation splits are small and always whole.
    """
    tc = cfg.train
    cache = paths.token_cache_dir(cfg.profile)
    budgets = source_budgets(cfg, rc)
    hint = f"python -m swallowlib.train --config {cfg.path} --run {run} --prepare"
    train_src, valid_src = {}, {}
    for s in budgets:
        templates = list(tc.parallel_template) if s == "parallel" else None
        kw = dict(seq_len=tc.seq_len, cache_dir=cache, eos_id=vocab.eos_id, vocab_size=vocab.size,
                  templates=templates, num_proc=tc.num_proc, name=s, build=build, hint=hint)  # fmt: skip
        train_src[s] = tdata.load_packed(
            corpus_split(cfg, s, "train"), tok_dir, **kw, max_tokens=budgets[s]["max_tokens"]
        )
        if tc.eval_sequences:
            valid_src[s] = tdata.load_packed(corpus_split(cfg, s, "valid"), tok_dir, **kw)
    mixture = tdata.Mixture(train_src, rc.mix, seed, offset=_skip(cfg, rc))
    eval_data = {s: tdata.eval_sequences(v, tc.eval_sequences) for s, v in valid_src.items()}
    return RunData(train_src, budgets, mixture, {s: a for s, a in eval_data.items() if len(a)})


def run_identity(init: str, tok_dir: Path, data: RunData) -> dict:
    """The fingerprint fields that only resolving the run knows: the start weights, the tokenizer, the data."""
    identity = {
        "init_identity": _init_identity(init),
        "tokenizer": tdata.tokenizer_fingerprint(tok_dir),
        "data": {s: [len(src.stream), src.docs, src.chars] for s, src in sorted(data.train.items())},
    }
    if data.mixture.offset:  # only then, so the identity of every run that skips nothing is what it always was
        identity["skip_sequences"] = data.mixture.offset
    return identity


def run_provenance(cfg: Config, run: str, rc: RunConfig, init: str, tok_dir: Path, data: RunData,
                   optimizer: OptimizerConfig) -> dict:  # fmt: skip
    """The provenance record of a run: the config, versions and git SHA, and what the run resolved to."""
    resolved = {
        "run": run,
        "run_config": to_dict(rc),
        "init_resolved": init,
        "tokenizer_dir": str(tok_dir),
        "optimizer": to_dict(optimizer),
        # tokens: the stream tokenised; max_tokens: its cap (None: the whole split); drawn: what the run reads of it.
        "data": {
            s: {
                "docs": src.docs,
                "tokens": int(len(src.stream)),
                "chars": src.chars,
                "sequences": src.n_sequences,
                "max_tokens": src.max_tokens,
                "drawn": data.budgets[s]["drawn"],
                "rows_used": src.rows_used,
                "rows_total": src.rows_total,
                "whole_split": src.whole,
                "cache_entry": src.entry,
            }
            for s, src in data.train.items()
        },
    }
    prov = provenance(cfg, "train", fingerprint(to_dict(cfg.train), CODE))
    prov["resolved"] = resolved
    for name in ("peft", "safetensors", "tensorboard"):  # the engine's libraries beyond provenance.TRACKED
        try:
            prov["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            prov["versions"][name] = None
    return prov


def build_job(cfg: Config, run: str, accelerator=None, *, progress: bool = True) -> Job:
    """Resolve ``run`` of ``cfg`` into a Job, tokenising its data first when not cached — by a one-process launch
    only: in a multi-process launch uncached data is an error (``--prepare`` first; :func:`swallowlib.train.launch`
    does it), never a collective timeout while one rank tokenises."""
    rc = get_run(cfg, run)
    settings = run_settings(cfg, rc)
    tok_dir = tokenizer_path(cfg, rc.tokenizer)
    init = resolve_init(cfg, run, rc)
    vocab = vocabulary(cfg, rc, tok_dir)
    model_config = scratch_config(cfg, vocab) if init == "scratch" else None
    multi = accelerator is not None and accelerator.num_processes > 1
    data = run_data(cfg, run, rc, tok_dir, vocab, seed=settings["seed"], build=not multi)
    ja = data.train.get("ja")
    return Job(
        name=run,
        out_dir=paths.run_out_dir(cfg.profile, run),
        data=data.mixture,
        tokens=rc.tokens,
        model_init=init,
        model_config=model_config,
        tokenizer_size=vocab.size,
        tokenizer_dir=tok_dir,
        new_rows_from=vocab.new_rows_from,
        eval_data=data.eval_data,
        ja_chars_per_token=ja.chars_per_token if ja is not None else None,
        local_files_only=cfg.offline,
        identity=run_identity(init, tok_dir, data),
        provenance=run_provenance(cfg, run, rc, init, tok_dir, data, settings["optimizer"]),
        progress=progress,
        **settings,
    )
