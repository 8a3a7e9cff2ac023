"""From a profile's config and a run name to a training :class:`~swallowlib.train.engine.Job`: resolve the start
weights, the tokenizer, the per-run overrides, and tokenise + pack the stage-01 data (cached) for the mix.

Every missing input is one clear error naming the file and the command that builds it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from swallowlib import matrix, paths
from swallowlib.config import Config, ConfigError, RunConfig, run_checkpoint_fractions, run_optimizer, to_dict
from swallowlib.provenance import fingerprint, provenance
from swallowlib.train import data as tdata
from swallowlib.train import model as modeling
from swallowlib.train.engine import Job, TrainError, resolve_precision, steps_for_tokens

log = logging.getLogger(__name__)

#: The code whose change makes a recorded run "different" in provenance (not in the resume fingerprint).
CODE = sorted(Path(__file__).parent.glob("*.py"))


def get_run(cfg: Config, run: str) -> RunConfig:
    """A run of ``train.runs``, one of the short CPT runs stage 03 derives from ``embedding_init``, or a run of the
    extended study (:func:`swallowlib.matrix.study_runs`)."""
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


def build_job(cfg: Config, run: str, accelerator=None, *, progress: bool = True) -> Job:
    """Resolve ``run`` of ``cfg`` into a Job, tokenising its data first when not cached — by a one-process launch
    only: in a multi-process launch uncached data is an error (``--prepare`` first; :func:`swallowlib.train.launch`
    does it), never a collective timeout while one rank tokenises."""
    rc = get_run(cfg, run)
    tc = cfg.train
    tok_dir = tokenizer_path(cfg, rc.tokenizer)
    init = resolve_init(cfg, run, rc)
    from swallowlib.tokenizer.export import load_hf

    tok = load_hf(tok_dir)
    vocab = len(tok)
    eos = tok.eos_token_id
    if eos is None:
        raise TrainError(f"{tok_dir}: the tokenizer has no EOS token (documents need a separator)")
    new_rows_from = None
    if rc.tokenizer != "base" and rc.peft:  # PEFT trains the rows the base tokenizer does not have
        new_rows_from = len(load_hf(tokenizer_path(cfg, "base")))

    model_config = None
    if init == "scratch":
        if tc.model.pretrained:
            model_config = modeling.pretrained_config(tc.model.pretrained, local_files_only=cfg.offline)
            model_config.vocab_size = vocab
            model_config.use_cache = False
        else:
            model_config = modeling.llama_config(tc.model, vocab, bos_id=tok.bos_token_id or 1, eos_id=eos)

    # --- data: tokenised once per (tokenizer, split, token cap) and cached for every run of the profile. With
    # train.data_margin set, a training split is tokenised only as far as the run reads it (with that margin);
    # validation splits are small and always whole.
    cache = paths.token_cache_dir(cfg.profile)
    budgets = source_budgets(cfg, rc)
    train_src, valid_src = {}, {}
    multi = accelerator is not None and accelerator.num_processes > 1
    hint = f"python -m swallowlib.train --config {cfg.path} --run {run} --prepare"
    for s in budgets:
        templates = list(tc.parallel_template) if s == "parallel" else None
        kw = dict(seq_len=tc.seq_len, cache_dir=cache, eos_id=eos, vocab_size=vocab, templates=templates,
                  num_proc=tc.num_proc, name=s, build=not multi, hint=hint)  # fmt: skip
        train_src[s] = tdata.load_packed(
            corpus_split(cfg, s, "train"), tok_dir, **kw, max_tokens=budgets[s]["max_tokens"]
        )
        if tc.eval_sequences:
            valid_src[s] = tdata.load_packed(corpus_split(cfg, s, "valid"), tok_dir, **kw)
    seed = rc.seed if rc.seed is not None else cfg.seed
    mixture = tdata.Mixture(train_src, rc.mix, seed, offset=_skip(cfg, rc))
    eval_data = {s: tdata.eval_sequences(v, tc.eval_sequences) for s, v in valid_src.items()}
    eval_data = {s: a for s, a in eval_data.items() if len(a)}

    ocfg = run_optimizer(tc, rc)
    identity = {
        "init_identity": _init_identity(init),
        "tokenizer": tdata.tokenizer_fingerprint(tok_dir),
        "data": {s: [len(src.stream), src.docs, src.chars] for s, src in sorted(train_src.items())},
    }
    if mixture.offset:  # only then, so the identity of every run that skips nothing is what it always was
        identity["skip_sequences"] = mixture.offset
    resolved = {
        "run": run,
        "run_config": to_dict(rc),
        "init_resolved": init,
        "tokenizer_dir": str(tok_dir),
        "optimizer": to_dict(ocfg),
        # tokens: the stream tokenised; max_tokens: its cap (None: the whole split); drawn: what the run reads of it.
        "data": {
            s: {
                "docs": src.docs,
                "tokens": int(len(src.stream)),
                "chars": src.chars,
                "sequences": src.n_sequences,
                "max_tokens": src.max_tokens,
                "drawn": budgets[s]["drawn"],
                "rows_used": src.rows_used,
                "rows_total": src.rows_total,
                "whole_split": src.whole,
                "cache_entry": src.entry,
            }
            for s, src in train_src.items()
        },
    }
    prov = provenance(cfg, "train", fingerprint(to_dict(cfg.train), CODE))
    prov["resolved"] = resolved
    from importlib import metadata

    for name in ("peft", "safetensors", "tensorboard"):  # the engine's libraries beyond provenance.TRACKED
        try:
            prov["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            prov["versions"][name] = None
    return Job(
        name=run,
        out_dir=paths.run_out_dir(cfg.profile, run),
        data=mixture,
        tokens=rc.tokens,
        seq_len=tc.seq_len,
        micro_batch_size=tc.micro_batch_size,
        batch_size=tc.batch_size,
        fsdp=tc.fsdp,
        activation_checkpointing=tc.activation_checkpointing,
        optimizer=ocfg,
        model_init=init,
        model_config=model_config,
        tokenizer_size=vocab,
        tokenizer_dir=tok_dir,
        new_rows_from=new_rows_from,
        precision=resolve_precision(tc.precision),
        compile=tc.compile,
        peft=tc.peft if rc.peft else None,
        embedding_warmup_steps=(
            rc.embedding_warmup_steps if rc.embedding_warmup_steps is not None else tc.embedding_warmup_steps
        ),
        checkpoint_fractions=run_checkpoint_fractions(tc, rc),
        save_every_steps=tc.save_every_steps,
        keep_last=tc.keep_last,
        log_every_steps=tc.log_every_steps,
        seed=seed,
        eval_data=eval_data,
        ja_chars_per_token=train_src["ja"].chars_per_token if "ja" in train_src else None,
        local_files_only=cfg.offline,
        identity=identity,
        provenance=prov,
        progress=progress,
    )
