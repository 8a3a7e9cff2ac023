"""Run lm-evaluation-harness over every checkpoint of every configured run and collect one tidy results table.

Each checkpoint's lm-eval JSON goes to ``runs/<p>/eval/results/<run>/<checkpoint>.json`` (with the task fingerprint,
so a checkpoint already evaluated on the same tasks is skipped); a checkpoint that fails leaves
``<checkpoint>.error.json`` and the others go on. :func:`collect` turns the JSONs into ``results.csv`` /
``results.parquet`` with columns run, checkpoint, step, tokens, task, metric, value, stderr. The stderr of the local
tasks' corpus-level scores (bits per byte, chrF, BLEU), which lm-eval leaves "N/A", is bootstrapped there from the
per-document items stored in the JSON's samples, so results on disk gain it without re-evaluating the model.

    python -m swallowlib.eval --config configs/tiny.yaml [--run cpt-ve] [--checkpoint DIR]
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from swallowlib import paths
from swallowlib.config import Config, EvalConfig, to_dict
from swallowlib.eval import metrics
from swallowlib.eval.tasks import PREFIX, build_tasks, lm_eval_names
from swallowlib.provenance import provenance, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["run", "checkpoint", "step", "tokens", "task", "metric", "value", "stderr"]
#: A model's embedding rows may exceed its tokenizer by padding (to a multiple of 8, …), never by this much.
MAX_PAD_ROWS = 64


class CheckpointError(ValueError):
    """A checkpoint directory cannot be evaluated; the message names the directory and what is wrong."""


@dataclass(frozen=True)
class Checkpoint:
    """One HF model directory to evaluate, with the tokenizer directory it is read with."""

    run: str
    name: str  # step-00000098 or final
    path: Path
    tokenizer: Path
    step: int | None
    tokens: int | None
    last: bool = True  # the run's last checkpoint gets every task; earlier milestones eval.milestone_tasks


def _vocab_size(model_dir: Path) -> int:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    size = cfg.get("vocab_size", cfg.get("text_config", {}).get("vocab_size"))
    if not isinstance(size, int):
        raise CheckpointError(f"{model_dir / 'config.json'}: no integer vocab_size")
    return size


def _has_tokenizer(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() or (d / "tokenizer.model").is_file()


def _tokenizer_len(d: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(d))


def check_checkpoint(model_dir: Path, profile: str | None = None) -> Path:
    """Validate an HF checkpoint directory and return its tokenizer directory (one clear error otherwise).

    A directory without tokenizer files borrows the profile's ``tokenizer/base`` or ``tokenizer/expanded``, the one
    whose size fits the embedding matrix.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: checkpoint directory not found")
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"{model_dir}: missing config.json (expected an HF model directory)")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("pytorch_model*.bin")):
        raise CheckpointError(f"{model_dir}: missing model weights (expected model.safetensors)")
    vocab = _vocab_size(model_dir)
    candidates = [model_dir]
    if not _has_tokenizer(model_dir):
        if profile is None:
            raise CheckpointError(f"{model_dir}: missing tokenizer files (tokenizer.json or tokenizer.model)")
        root = paths.run_dir(profile) / "tokenizer"
        candidates = [root / n for n in ("base", "expanded") if _has_tokenizer(root / n)]
        if not candidates:
            raise CheckpointError(f"{model_dir}: missing tokenizer files, and {root} has no base/expanded tokenizer")
    sizes = []
    for tok_dir in candidates:
        n = _tokenizer_len(tok_dir)
        sizes.append(n)
        if n <= vocab < n + MAX_PAD_ROWS:
            if tok_dir != model_dir:
                log.warning("%s has no tokenizer files: using %s (%d pieces, embedding %d rows)",
                            model_dir, tok_dir, n, vocab)
            return tok_dir
    raise CheckpointError(
        f"{model_dir}: tokenizer size {' / '.join(map(str, sizes))} does not match the embedding size {vocab} "
        f"(expected a tokenizer of at most {vocab} and more than {vocab - MAX_PAD_ROWS} pieces)"
    )


def _state(d: Path) -> dict:
    try:
        return json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _start_weights(cfg: Config, run: str) -> Path | None:
    """The directory a continued run started from (``run:`` / ``init:`` / a path / a Hub id), or None (scratch).

    A Hub id (GPU profiles: ``cpt-nve`` starts from the pretrained base itself) is resolved to its local snapshot —
    downloaded if the profile is online, from the HF cache otherwise — so the base model is the curve's 0-token point
    (the paper's "Llama 2" column).
    """
    from swallowlib.train.job import get_run, resolve_init

    try:
        init = resolve_init(cfg, run, get_run(cfg, run))
    except Exception as e:  # the start is gone (e.g. stage 03 rebuilt): the run's own checkpoints still count
        log.warning("run %s: its start weights cannot be resolved (%s); no step-0 point", run, e)
        return None
    if init == "scratch":
        return None
    if Path(init).is_dir():
        return Path(init)
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "tokenizer.model"]
        return Path(snapshot_download(init, allow_patterns=patterns, local_files_only=cfg.offline))
    except Exception as e:  # offline and not cached, gated, or no network: the run's own checkpoints still count
        log.warning("run %s: start weights %s not available locally (%s); no step-0 point", run, init, e)
        return None


def discover(cfg: Config, runs: list[str] | None = None) -> list[Checkpoint]:
    """Every milestone (and a final that is not also a milestone) of the configured runs that exist on disk, plus,
    for a run that continued from other weights, those weights as ``step-00000000`` (0 tokens)."""
    runs = runs or cfg.eval.runs or list(cfg.train.runs)
    out = []
    for run in runs:
        rd = paths.run_out_dir(cfg.profile, run)
        dirs = sorted((rd / "milestones").glob("step-*")) if cfg.eval.milestones else []
        final = rd / "final"
        steps = {_state(d).get("step") for d in dirs}
        if final.is_dir() and (not dirs or _state(final).get("step") not in steps):
            dirs.append(final)
        if not dirs:
            log.warning("run %s has no checkpoints under %s: skipped", run, rd)
        start = _start_weights(cfg, run) if dirs else None
        if start is not None:  # step 0: where the curve of a continued run starts
            out.append(Checkpoint(run, "step-00000000", start, start, 0, 0, last=False))
        for k, d in enumerate(dirs):
            st = _state(d)
            out.append(Checkpoint(run, d.name, d, d, st.get("step"), st.get("tokens"), last=k == len(dirs) - 1))
    return out


def task_fingerprint(cfg: Config, task_dir: Path) -> str:
    """A hash of the eval config and the generated task files: a changed task re-evaluates every checkpoint."""
    h = hashlib.sha256(json.dumps(to_dict(cfg.eval), sort_keys=True).encode())
    for f in sorted(task_dir.iterdir()):
        if f.is_file() and f.suffix in (".yaml", ".jsonl", ".py"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    for f in (Path(metrics.__file__), Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()


def _device(cfg: Config) -> str:
    if cfg.eval.device != "auto":
        return cfg.eval.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def task_manager(task_dir: Path | None = None, registry: bool = True):
    """lm-eval's TaskManager: the local tasks in ``task_dir``, plus the installed registry when ``registry``.

    Indexing the registry's ~14,700 task YAMLs costs 5-20 s here, so the offline profiles leave it out.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir) if task_dir else None, include_defaults=registry)


def check_harness_tasks(names: list[str], tm=None) -> None:
    """Raise one error naming the first lm-eval task (or group) that the installed registry does not know."""
    tm = tm or task_manager()
    known = set(tm.all_tasks)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown lm-eval task {unknown[0]!r} (not in the installed lm_eval registry)")


def _task_names(cfg: Config, ck: Checkpoint) -> list[str]:
    """The lm-eval task names a checkpoint gets: the whole offline suite for a run's last, the milestone tasks else."""
    ec = cfg.eval
    return [n for t in (ec.tasks if ck.last else ec.milestone_tasks) for n in lm_eval_names(t)]


def evaluate_checkpoint(ck: Checkpoint, cfg: Config, task_dir: Path, tm=None, *, limit: int | None = None) -> dict:
    """Run lm-eval's ``simple_evaluate`` (greedy, seeded) on one checkpoint; returns lm-eval's results dict."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    ec = cfg.eval
    tasks = _task_names(cfg, ck)
    device = _device(cfg)
    tm = tm or task_manager(task_dir, registry=bool(ec.harness_tasks))
    if ec.harness_tasks:
        check_harness_tasks(list(ec.harness_tasks), tm)
    # The model-token ROUGE reads the checkpoint's tokenizer from here (lm-eval passes no model to metrics).
    os.environ[metrics.TOKENIZER_ENV] = str(ck.tokenizer)
    lm = HFLM(pretrained=str(ck.path), tokenizer=str(ck.tokenizer), device=device, batch_size=ec.batch_size,
              dtype="float32" if device == "cpu" else "auto", add_bos_token=True, trust_remote_code=False)
    seeds = dict(random_seed=ec.seed, numpy_random_seed=ec.seed, torch_random_seed=ec.seed,
                 fewshot_random_seed=ec.seed)
    try:
        res = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm, bootstrap_iters=ec.bootstrap_iters,
                                      log_samples=True, limit=limit, **seeds)
    except AssertionError as e:  # HFLM asserts that a scored continuation fits the context; say which knob
        raise CheckpointError(
            f"{ck.path}: an answer choice or reference is longer than the model's context ({lm.max_length} "
            f"tokens): lower eval.faq_answer_chars / eval.max_chars in {cfg.path or 'the config'}"
        ) from e
    if ec.harness_tasks:  # GPU profiles: the paper's tasks, each with its own shot count
        for name, shots in ec.harness_tasks.items():
            r = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=shots, task_manager=tm,
                                        bootstrap_iters=ec.bootstrap_iters, log_samples=True, limit=limit, **seeds)
            res["results"].update(r["results"])
            res.setdefault("samples", {}).update(r.get("samples", {}))
    return res


def weights_id(d: Path) -> str:
    """What identifies a checkpoint's weights cheaply: its weight files' names, sizes and mtimes + trainer_state.json.

    A retrained run rewrites its checkpoints under the same names; this makes its old results stale instead of
    "already evaluated".
    """
    parts = [json.dumps(_state(d), sort_keys=True)]
    for f in sorted(Path(d).glob("*.safetensors")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _same_weights_key(d: Path) -> tuple | None:
    """(run, step) of a training checkpoint: a run's ``final`` and its last milestone hold the same weights, and a
    continued run's step 0 is its parent's ``final`` — evaluated once, reused for the others."""
    st = _state(d)
    return (st["run"], st["step"]) if "run" in st and "step" in st else None


def result_path(cfg: Config, ck: Checkpoint) -> Path:
    return paths.eval_dir(cfg.profile) / "results" / ck.run / f"{ck.name}.json"


def run_eval(cfg: Config, runs: list[str] | None = None, checkpoints: list[Path] | None = None,
             *, force: bool = False) -> dict:  # fmt: skip
    """Evaluate every checkpoint not yet evaluated on the current tasks; write the table; return a summary.

    ``checkpoints``: explicit checkpoint directories (their run is the directory above ``milestones/``, or
    ``external``), instead of discovering the configured runs'.
    """
    from tqdm.auto import tqdm

    task_dir = build_tasks(cfg)
    fp = task_fingerprint(cfg, task_dir)
    if checkpoints:
        cks = []
        for d in map(Path, checkpoints):
            st = _state(d)
            run = st.get("run") or (d.parent.parent.name if d.parent.name == "milestones" else d.parent.name)
            cks.append(Checkpoint(run, d.name, d, d, st.get("step"), st.get("tokens")))
    else:
        cks = discover(cfg, runs)
    tm = task_manager(task_dir, registry=bool(cfg.eval.harness_tasks))
    done, skipped, failed = [], [], []
    # Weights already evaluated in this call, by (run, step) -> their result file, to reuse for identical weights.
    evaluated: dict[tuple, Path] = {}
    for ck in tqdm(cks, desc="checkpoints", unit="ckpt"):
        out = result_path(cfg, ck)
        err = out.with_suffix(".error.json")
        wid = weights_id(ck.path)
        key = _same_weights_key(ck.path)
        if not force and out.is_file():
            try:
                prev = json.loads(out.read_text(encoding="utf-8"))
                if prev.get("swallow", {}).get("fingerprint") == fp and prev["swallow"].get("weights") == wid:
                    skipped.append(ck)
                    if key is not None:
                        evaluated.setdefault(key, out)
                    continue
            except (json.JSONDecodeError, KeyError):
                pass
        t0 = time.perf_counter()
        try:
            tok = check_checkpoint(ck.path, cfg.profile)
            ck = Checkpoint(ck.run, ck.name, ck.path, tok, ck.step, ck.tokens, ck.last)
            wanted = set(_task_names(cfg, ck)) | set(cfg.eval.harness_tasks)
            same = json.loads(evaluated[key].read_text(encoding="utf-8")) if key in evaluated else None
            if same is not None and wanted <= set(same.get("results", {})):
                res = {k: v for k, v in same.items() if k != "swallow"}  # the same weights: the same numbers
                log.info("%s/%s: same weights as %s/%s, results reused", ck.run, ck.name,
                         same["swallow"]["run"], same["swallow"]["checkpoint"])  # fmt: skip
            else:
                res = evaluate_checkpoint(ck, cfg, task_dir, tm)
        except Exception as e:  # one bad checkpoint must not lose the others' results
            log.exception("%s/%s failed: %s", ck.run, ck.name, e)
            write_json_atomic(err, {"run": ck.run, "checkpoint": ck.name, "path": str(ck.path),
                                    "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
            failed.append((ck, f"{type(e).__name__}: {e}"))
            continue
        wall = time.perf_counter() - t0
        res["swallow"] = {"run": ck.run, "checkpoint": ck.name, "path": str(ck.path), "tokenizer": str(ck.tokenizer),
                          "step": ck.step, "tokens": ck.tokens, "fingerprint": fp, "wall_s": wall,
                          "bootstrap_iters": cfg.eval.bootstrap_iters, "weights": wid}
        _save_json(out, res)
        if key is not None:
            evaluated.setdefault(key, out)
        err.unlink(missing_ok=True)
        done.append((ck, wall))
        log.info("%s/%s evaluated in %.1f s", ck.run, ck.name, wall)
    table = collect(cfg.profile, cfg.eval.bootstrap_iters)
    write_json_atomic(paths.eval_dir(cfg.profile) / "provenance.json", provenance(cfg, "eval", fp))
    return {"evaluated": [(c.run, c.name, w) for c, w in done], "skipped": [(c.run, c.name) for c in skipped],
            "failed": [(c.run, c.name, e) for c, e in failed], "rows": len(table)}


def _save_json(path: Path, res: dict) -> None:
    """lm-eval's results dict as JSON (its samples hold numpy scalars and tuples: default=str keeps them readable)."""
    from lm_eval.utils import handle_non_serializable

    res = {k: v for k, v in res.items() if k != "config"}  # the HFLM object is not data
    write_text_atomic(path, json.dumps(res, ensure_ascii=False, indent=1, default=handle_non_serializable) + "\n")


def corpus_stderr(res: dict, task: str, key: str, iters: int) -> float | None:
    """Bootstrap stderr of a local task's corpus-level metric (``key`` = "metric,filter") from lm-eval's samples.

    The resampling unit is the document: each sample holds the item its ``process_results`` returned for the
    aggregation. None (with a warning) where the samples are missing or do not reproduce the reported value.
    """
    metric, _, flt = key.partition(",")
    meta = res.get("swallow", {})
    where = f"{meta.get('run')}/{meta.get('checkpoint')} {task} {metric}"
    samples = [s for s in res.get("samples", {}).get(task, []) if s.get("filter", flt) == flt and metric in s]
    if not samples:
        log.warning("%s: no per-document samples in the results: no stderr", where)
        return None
    # Document order fixes which documents each seeded resample draws, whatever order lm-eval gathered them in.
    items = [tuple(s[metric]) for s in sorted(samples, key=lambda s: s.get("doc_id", 0))]
    f = metrics.CORPUS_AGGREGATIONS[metric]
    value = res["results"][task][key]
    if not math.isclose(f(items), value, rel_tol=1e-9, abs_tol=1e-12):
        log.warning("%s: the stored samples give %r, the results %r: no stderr", where, f(items), value)
        return None
    return metrics.bootstrap_stderr(f, items, min(iters, metrics.TEXT_MAX_ITERS) if metric in ("chrf", "bleu")
                                    else iters)


def tidy(res: dict, bootstrap_iters: int | None = None) -> list[dict]:
    """Rows (run, checkpoint, step, tokens, task, metric, value, stderr) of one lm-eval results dict.

    ``bootstrap_iters``: resamples for the corpus-level metrics' stderr (0: none); None takes the count the results
    were evaluated with (``swallow.bootstrap_iters``), or the config default for results written before it was kept.
    """
    meta = res.get("swallow", {})
    iters = bootstrap_iters if bootstrap_iters is not None else meta.get("bootstrap_iters", EvalConfig.bootstrap_iters)
    rows = []
    for task, vals in sorted(res.get("results", {}).items()):
        for key, value in sorted(vals.items()):
            if key == "alias" or "_stderr," in key or not isinstance(value, int | float):
                continue
            metric, _, flt = key.partition(",")
            se = vals.get(f"{metric}_stderr,{flt}")
            if (iters > 0 and not isinstance(se, int | float) and task.startswith(PREFIX)
                    and metric in metrics.CORPUS_AGGREGATIONS):
                se = corpus_stderr(res, task, key, iters)
            rows.append({"run": meta.get("run"), "checkpoint": meta.get("checkpoint"), "step": meta.get("step"),
                         "tokens": meta.get("tokens"), "task": task.removeprefix("swallow_"), "metric": metric,
                         "value": float(value), "stderr": float(se) if isinstance(se, int | float) else None})
    return rows


def collect(profile: str, bootstrap_iters: int | None = None, out: Path | None = None):
    """Every checkpoint's lm-eval JSON under ``runs/<p>/eval/results`` as one DataFrame, written as CSV and Parquet
    into ``out`` (default ``runs/<p>/eval``); ``bootstrap_iters`` as in :func:`tidy`."""
    import pandas as pd

    root = paths.eval_dir(profile)
    rows = []
    for f in sorted((root / "results").glob("*/*.json")):
        if f.name.endswith(".error.json"):
            continue
        rows.extend(tidy(json.loads(f.read_text(encoding="utf-8")), bootstrap_iters))
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df = df.astype({"step": "Int64", "tokens": "Int64"})
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.csv", df.to_csv(index=False))
    tmp = out / ".results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / "results.parquet")
    return df
