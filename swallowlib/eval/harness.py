"""Run lm-evaluation-harness over every checkpoint of every configured run and collect one tidy results table.

Each checkpoint's lm-eval JSON goes to ``runs/<p>/eval/results/<run>/<checkpoint>.json`` (with the task fingerprint,
so a checkpoint already evaluated on the same tasks is skipped). Every task runs on its own and the file is rewritten
after each one, with each task's status in ``swallow.tasks``: a task that fails is recorded with its error (and a
WARNING in the log) while the others keep their results, and the next run retries only the failed or missing tasks.
A checkpoint that cannot be evaluated at all (no weights, a model that does not load) leaves
``<checkpoint>.error.json`` and the others go on. :func:`collect` turns the JSONs into ``results.csv`` /
``results.parquet`` with columns run, checkpoint, step, tokens, task, metric, value, stderr, and the failures into
``failures.csv`` (run, checkpoint, step, tokens, task, error). The stderr of the local tasks' corpus-level scores
(bits per byte, chrF, BLEU), which lm-eval leaves "N/A", is bootstrapped there from the per-document items stored in
the JSON's samples, so results on disk gain it without re-evaluating the model.

**The bits-per-byte protocol** (the local ``loglikelihood_rolling`` tasks, ``swallow_bpb_*``): a document is scored
as windows of the training context, ``L`` = ``train.seq_len`` tokens *including the conditioning token* (at most the
model's own context), and BOS conditions the first window but is never scored. With ``stream = [BOS] + ids``
(``ids``: the document's pieces, no special tokens) the windows are the model inputs ``stream[0:L]``,
``stream[L:2L]``, … each predicting its next ``L`` tokens, exactly as training cut its packed stream
(``swallowlib.train.data``: sequence ``i`` reads ``stream[i*L : i*L + L]``); the last window is right-aligned to the
document's end (input ``stream[-L-1:-1]``) and scores only the tokens no earlier window scored. The total
log-likelihood is the sum over the ``len(ids)`` scored tokens; bits per byte = -total / ln 2 / UTF-8 bytes. This is
lm-eval's own rolling machinery (``lm_eval.utils.get_rolling_token_windows`` with ``context_len=1``, then
``make_disjoint_window``) run with the HFLM switched, for those tasks only, to ``add_bos_token=False`` (the document
is encoded without BOS; BOS is only the rolling prefix, ``prefix_token_id``) and ``max_length=L``
(:func:`rolling_protocol`). lm-eval's defaults would (1) encode BOS into the document and prefix it with BOS again,
adding log p(BOS | BOS), some −10 nats that belong to zero bytes, to every document, and (2) use the model's
``max_position_embeddings`` as the window, scoring long documents at positions training never reached — a penalty
that grows with the number of tokens, so it falls on the tokenizer that makes more. Every result file records the
protocol (``swallow.bpb_protocol``, and ``window_tokens`` in each rolling task's status). The other tasks (few-shot
generation, multiple choice, the reference log-likelihood of translation) keep BOS at the start of their prompt, as
every training document started with BOS, and the model's full context; the registry's rolling tasks of
``eval.harness_tasks`` keep lm-eval's defaults, as published numbers for them are computed.

    python -m swallowlib.eval --config configs/tiny.yaml [--run cpt-ve] [--checkpoint DIR]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from swallowlib import paths
from swallowlib.config import Config, EvalConfig, to_dict
from swallowlib.eval import metrics
from swallowlib.eval.tasks import PREFIX, build_tasks, is_rolling, lm_eval_names
from swallowlib.provenance import provenance, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["run", "checkpoint", "step", "tokens", "task", "metric", "value", "stderr"]
FAILURE_COLUMNS = ["run", "checkpoint", "step", "tokens", "task", "error"]
#: The ``task`` of a failures row for a checkpoint that could not be evaluated at all.
WHOLE_CHECKPOINT = "(checkpoint)"
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
    h.update(json.dumps(bpb_protocol(cfg), sort_keys=True).encode())  # train.seq_len sets the window
    for f in sorted(task_dir.iterdir()):
        if f.is_file() and f.suffix in (".yaml", ".jsonl", ".py"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    for f in (Path(metrics.__file__), Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()


def bpb_window(cfg: Config) -> int:
    """The bits-per-byte window in tokens, conditioning token included: the training context ``train.seq_len``."""
    return cfg.train.seq_len


def bpb_protocol(cfg: Config) -> dict:
    """How the local bits-per-byte tasks were scored, as recorded in every result file (see the module docstring).

    ``window_tokens``: the configured window; a model whose own context is shorter gets its own (recorded per task,
    ``swallow.tasks[<task>].window_tokens``).
    """
    return {"window_tokens": bpb_window(cfg), "bos": "conditions the first window, not scored",
            "windows": "disjoint, the last right-aligned to the document end (lm-eval rolling, context_len=1)",
            "bytes": "UTF-8 bytes of the document"}  # fmt: skip


@contextlib.contextmanager
def rolling_protocol(lm, window: int):
    """The HFLM ``lm`` set to the bits-per-byte protocol for the duration: documents encoded without BOS (lm-eval
    then puts BOS, its ``prefix_token_id``, before the first window only, as context) and windows of ``window``
    tokens (or the model's context, if shorter). Yields the window used; restores both settings afterwards.

    Two attributes of lm-eval's HFLM (``add_bos_token``, read by ``tok_encode``; ``_max_length``, read by the
    ``max_length`` property) instead of a second model instance: the weights are loaded once. The known-answer
    tests (tests/test_eval_bpb.py) fail if a later lm-eval reads them differently.
    """
    for attr in ("add_bos_token", "_max_length"):
        if not hasattr(lm, attr):
            raise RuntimeError(f"lm-eval's HFLM has no attribute {attr!r}: the bits-per-byte protocol needs updating")
    saved = lm.add_bos_token, lm._max_length
    used = min(window, lm.max_length)
    lm.add_bos_token, lm._max_length = False, used
    try:
        yield used
    finally:
        lm.add_bos_token, lm._max_length = saved


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


#: Hub datasets read by lm-eval 0.4.13 registry tasks that are a loading script (``<name>.py`` at the repository's
#: root, no data files), which the pinned ``datasets`` (>= 4) refuses ("Dataset scripts are no longer supported"),
#: with what to do instead. From the Hub's file listings as last seen (2025-26): offline this list is all there is
#: to go by, so a dataset converted to data files since is still reported; with the network the Hub decides.
SCRIPT_DATASETS: dict[str, str] = {
    "juletxara/mgsm": "every Japanese MGSM task of the registry (ja_leaderboard_mgsm, mgsm_direct_ja, "
                      "mgsm_native_cot_ja, mgsm_en_cot_ja) reads this dataset: drop the task",
    "Rakuten/JGLUE": "no registry task reads another copy of JGLUE: drop the task (or evaluate it with datasets<4)",
    "kumapo/JAQKET": "no registry task reads another copy of JAQKET: drop the task (or evaluate it with datasets<4)",
    "Muennighoff/xwinograd": "its Hub parquet export loads: use a local copy of the task with dataset_kwargs "
                             "{revision: refs/convert/parquet}, or drop the task",
}  # fmt: skip
#: Import name -> pip package, where they differ.
_PIP_NAMES = {"sklearn": "scikit-learn", "yaml": "PyYAML", "Levenshtein": "python-Levenshtein", "cv2": "opencv-python"}
_HUB_METRIC = re.compile(r"""\bevaluate\.load\(\s*["']([\w./-]+)["']""")


def _missing_module(e: BaseException) -> str | None:
    """The module an ImportError chain could not find (lm-eval re-raises it with its own message, name unset)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ModuleNotFoundError) and e.name:
            return e.name
        e = e.__cause__ or e.__context__
    return None


def _functions(obj) -> list:
    """Every callable/class in a resolved task config (its ``!function`` references)."""
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in _functions(v)]
    if isinstance(obj, list | tuple):
        return [f for v in obj for f in _functions(v)]
    return [obj] if callable(obj) else []


def _hub_metrics(cfg: dict) -> list[str]:
    """Metrics a task's own code fetches with ``evaluate.load`` (a script from the Hub, at scoring time)."""
    import inspect

    found = []
    for f in _functions(cfg):
        try:
            src = Path(inspect.getsourcefile(f) or "").read_text(encoding="utf-8")
        except (OSError, TypeError):
            continue
        found += [m for m in _HUB_METRIC.findall(src) if m not in found]
    return found


def _task_problems(name: str, tm, network: bool, seen: set[str]) -> list[str]:
    """What keeps one registry task (or each member of a group/tag) from running; empty when nothing does."""
    import datasets
    from lm_eval.tasks._factory import TaskFactory
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    if name in seen:
        return []
    seen.add(name)
    entry = tm.task_index.get(name)
    if entry is None:
        import lm_eval

        return [f"not a task, group or tag of the installed lm-eval {lm_eval.__version__} (a typo, or a task of "
                "another lm-eval version): fix the name"]  # fmt: skip
    if entry.kind in (Kind.GROUP, Kind.TAG):
        if entry.kind is Kind.TAG:
            members = sorted(n for n, e in tm.task_index.items() if name in e.tags)
        else:
            members = load_yaml(entry.yaml_path, resolve_func=False).get("task", [])
            members = [m for m in (members if isinstance(members, list) else [members]) if isinstance(m, str)]
        return [f"{m}: {p}" for m in members for p in _task_problems(m, tm, network, seen)]
    try:
        # resolving the config imports the task's own modules, as building the task does
        cfg = TaskFactory()._load_full_config(entry)
    except Exception as e:
        mod = _missing_module(e)
        if mod:
            pkg = _PIP_NAMES.get(mod.split(".")[0], mod.split(".")[0])
            return [f"its code needs the package {pkg!r}, which is not installed: add it to pyproject.toml "
                    f"dependencies (pip install {pkg})"]  # fmt: skip
        return [f"its config does not load: {one_line(e)}"]
    cls = cfg.get("class")
    path = cfg.get("dataset_path") or getattr(cls, "DATASET_PATH", None)
    dname = cfg.get("dataset_name") if "dataset_path" in cfg else getattr(cls, "DATASET_NAME", None)
    kwargs = cfg.get("dataset_kwargs") or {}
    problems = []
    script = SCRIPT_DATASETS.get(path) if isinstance(path, str) else None
    if isinstance(path, str) and path not in datasets.packaged_modules._PACKAGED_DATASETS_MODULES:
        if network:
            try:
                datasets.load_dataset_builder(path, dname, **kwargs)
            except Exception as e:
                fix = f": {script}" if script else ""
                problems.append(f"its dataset {path}{f' ({dname})' if dname else ''} does not load "
                                f"({one_line(e, 300)}){fix}")  # fmt: skip
        elif script:
            problems.append(f"its dataset {path} is a loading script, which datasets {datasets.__version__} "
                            f"refuses: {script}")  # fmt: skip
    for metric in _hub_metrics(cfg):
        import evaluate

        try:
            evaluate.load(metric, download_config=datasets.DownloadConfig(local_files_only=not network))
        except Exception as e:
            where = "from the Hub" if network else "in the local cache (offline)"
            problems.append(f"its metric {metric!r} is a script fetched at scoring time (evaluate.load), after "
                            f"every generation, and is not available {where} ({one_line(e, 200)}): run "
                            f"evaluate.load({metric!r}) once online, or drop the task")  # fmt: skip
    return problems


def check_task_loading(names: list[str], tm=None, *, network: bool) -> list[str]:
    """One line per task of ``names`` that cannot run, naming the task and the fix; empty when all can.

    Always (offline, a few seconds): the name is in the installed registry; the task's config resolves, which
    imports its Python modules (a task whose code needs a package that is not installed — ``emoji``/``neologdn``
    for ``ja_leaderboard_xlsum`` — is caught here, not hours into an evaluation); its dataset is not one of the
    known loading-script datasets (:data:`SCRIPT_DATASETS`); a metric its code fetches with ``evaluate.load`` is in
    the local cache. With ``network``: the dataset's builder is resolved on the Hub with the task's
    ``dataset_name`` and ``dataset_kwargs`` (``datasets.load_dataset_builder``: it refuses loading scripts, a missing
    config or repository, without downloading the data), superseding the known list; the metric must be fetchable.

    What offline cannot tell: whether a dataset outside the known list is a script, exists, or is in the local HF
    cache; whether a split named by the task exists. Groups and tags are checked member by member (one line for
    the group). ``tm``: a TaskManager with the registry (default: a new one, 5-20 s to index).
    """
    tm = tm or task_manager()
    out = []
    for name in names:
        problems = _task_problems(name, tm, network, set())
        if problems:
            out.append(f"{name}: {'; '.join(problems)}")
    return out


def _task_names(cfg: Config, ck: Checkpoint) -> list[str]:
    """The lm-eval task names a checkpoint gets: the whole offline suite for a run's last, else the milestone tasks
    that are in the suite (only ``eval.tasks`` are built: a profile that leaves one out leaves it out everywhere)."""
    ec = cfg.eval
    if ck.last:
        return [n for t in ec.tasks for n in lm_eval_names(t)]
    # A reference-only name (translate_en_ja_ref, faq_ja_ref) is the cheap half of a task in the suite.
    return [n for t in ec.milestone_tasks if t.removesuffix("_ref") in ec.tasks
            for n in (lm_eval_names(t) if t in ec.tasks else [PREFIX + t])]


def task_units(cfg: Config, ck: Checkpoint) -> dict[str, int | None]:
    """Each task a checkpoint gets -> its shots (None: the task's own): the local tasks, then ``eval.harness_tasks``.

    A task is the unit that runs, fails and is retried on its own.
    """
    units: dict[str, int | None] = dict.fromkeys(_task_names(cfg, ck))
    units.update(cfg.eval.harness_tasks)
    return units


def one_line(e: BaseException, limit: int = 500) -> str:
    """``Type: message`` on one line (a multi-line message folded), as a failed task is recorded."""
    text = f"{type(e).__name__}: {' '.join(str(e).split())}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _merge(into: dict, r: dict) -> None:
    """One task's lm-eval results dict into a checkpoint's: per-task tables merged, run-level scalars kept first."""
    for k, v in r.items():
        if k == "config":  # the HFLM object is not data
            continue
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            into[k].update(v)
        else:
            into.setdefault(k, v)


def _free_accelerator() -> None:
    """After a failed task: what it held on the GPU (an OOM's activations) must not fail the next one too."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # only a courtesy to the next task
        pass


def evaluate_checkpoint(ck: Checkpoint, cfg: Config, task_dir: Path, tm=None, *, limit: int | None = None,
                        units: dict[str, int | None] | None = None, into: dict | None = None,
                        on_task=None) -> dict:  # fmt: skip
    """Run lm-eval's ``simple_evaluate`` (greedy, seeded) on one checkpoint, one task at a time.

    ``units``: task -> shots to run (default :func:`task_units`). Each task's results are merged into ``into`` (a
    checkpoint's earlier results, to which a retry adds) and its status goes to ``into["tasks"][task]``:
    ``{"status": "ok"}`` or ``{"status": "failed", "error": "Type: message", "traceback": ...}`` — a failing task
    (an unloadable dataset, a missing package, an error in its metric) is logged as a WARNING and the next one runs.
    ``on_task(into)`` is called after each task, so a crash later loses nothing finished. Only a model that does not
    load raises. Returns ``into``.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    ec = cfg.eval
    units = task_units(cfg, ck) if units is None else units
    res = {"results": {}, "samples": {}, "tasks": {}} if into is None else into
    for k in ("results", "samples", "tasks"):
        res.setdefault(k, {})
    device = cfg.eval.resolved_device()
    tm = tm or task_manager(task_dir, registry=bool(ec.harness_tasks))
    known = set(tm.all_tasks)
    # The model-token ROUGE reads the checkpoint's tokenizer from here (lm-eval passes no model to metrics).
    os.environ[metrics.TOKENIZER_ENV] = str(ck.tokenizer)
    # BOS on: every training document started with BOS, so the prompts of the generation, multiple-choice and
    # reference-likelihood tasks do too (as context, never scored), with the model's full context — their prompts
    # are bounded by eval.max_chars / description_chars and the shots. The bits-per-byte tasks switch to their own
    # protocol below (rolling_protocol: BOS as the rolling prefix only, windows of train.seq_len).
    lm = HFLM(pretrained=str(ck.path), tokenizer=str(ck.tokenizer), device=device, batch_size=ec.batch_size,
              dtype="float32" if device == "cpu" else "auto", add_bos_token=True, trust_remote_code=False)
    seeds = dict(random_seed=ec.seed, numpy_random_seed=ec.seed, torch_random_seed=ec.seed,
                 fewshot_random_seed=ec.seed)
    for name, shots in units.items():
        try:
            if name not in known:
                raise ValueError(f"unknown lm-eval task {name!r} (not in the installed lm_eval registry)")
            status: dict = {"status": "ok"}
            try:
                with rolling_protocol(lm, bpb_window(cfg)) if is_rolling(name) else contextlib.nullcontext() as w:
                    r = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=shots, task_manager=tm,
                                                bootstrap_iters=ec.bootstrap_iters, log_samples=True, limit=limit,
                                                **seeds)
                if w is not None:
                    status["window_tokens"] = w
            except AssertionError as e:
                if not name.startswith(PREFIX):
                    raise
                # HFLM asserts that a scored continuation fits the context: say which knob of the local tasks
                raise CheckpointError(
                    f"an answer choice or reference is longer than the model's context ({lm.max_length} tokens): "
                    f"lower eval.faq_answer_chars / eval.max_chars in {cfg.path or 'the config'}"
                ) from e
            if not r or not r.get("results"):
                raise RuntimeError("lm-eval returned no results")
        except Exception as e:  # one task's failure must not cost the checkpoint's other tasks
            err = one_line(e)
            log.warning("%s/%s: task %s FAILED: %s", ck.run, ck.name, name, err)
            res["tasks"][name] = {"status": "failed", "error": err, "traceback": traceback.format_exc()}
            _free_accelerator()
        else:
            _merge(res, r)
            res["tasks"][name] = status
        if on_task is not None:
            on_task(res)
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


def _task_ok(res: dict, name: str) -> bool:
    return res.get("swallow", {}).get("tasks", {}).get(name, {}).get("status") == "ok"


def _previous(out: Path, fp: str, wid: str) -> dict | None:
    """A checkpoint's earlier results, if they were made on the same tasks and the same weights."""
    try:
        prev = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    meta = prev.get("swallow", {}) if isinstance(prev, dict) else {}
    return prev if meta.get("fingerprint") == fp and meta.get("weights") == wid else None


def _drop_stale_failures(res: dict, units: dict) -> bool:
    """Forget failures of tasks a checkpoint no longer gets (a run's last checkpoint that a later one superseded):
    they would never be retried, yet listed as failures forever. True when something was dropped."""
    tasks = res["swallow"].get("tasks", {})
    stale = [n for n, st in tasks.items() if n not in units and st.get("status") != "ok"]
    for n in stale:
        del tasks[n]
    return bool(stale)


def run_eval(cfg: Config, runs: list[str] | None = None, checkpoints: list[Path] | None = None,
             *, force: bool = False) -> dict:  # fmt: skip
    """Evaluate every checkpoint's tasks not yet evaluated on the current tasks; write the tables; return a summary.

    A checkpoint whose every task succeeded on the same tasks and weights is skipped; one with failed or missing tasks
    runs those only (``force``: every task again). ``checkpoints``: explicit checkpoint directories (their run is the
    directory above ``milestones/``, or ``external``), instead of discovering the configured runs'. The summary's
    ``task_failures`` lists (run, checkpoint, task, error) of the tasks that failed in this call.
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
    done, skipped, failed, task_failures = [], [], [], []
    # Weights already evaluated in this call, by (run, step) -> their result file, to reuse for identical weights.
    evaluated: dict[tuple, Path] = {}
    for ck in tqdm(cks, desc="checkpoints", unit="ckpt"):
        out = result_path(cfg, ck)
        err = out.with_suffix(".error.json")
        wid = weights_id(ck.path)
        key = _same_weights_key(ck.path)
        units = task_units(cfg, ck)
        prev = None if force else _previous(out, fp, wid)
        todo = {n: s for n, s in units.items() if prev is None or not _task_ok(prev, n)}
        if not todo:
            if _drop_stale_failures(prev, units):
                _save_json(out, prev)
            skipped.append(ck)
            if key is not None:
                evaluated.setdefault(key, out)
            continue
        if prev is not None:
            log.info("%s/%s: retrying %d failed or missing task(s): %s", ck.run, ck.name, len(todo), ", ".join(todo))
        t0 = time.perf_counter()
        wall0 = prev["swallow"].get("wall_s", 0.0) if prev is not None else 0.0
        meta = {"run": ck.run, "checkpoint": ck.name, "path": str(ck.path), "step": ck.step, "tokens": ck.tokens,
                "fingerprint": fp, "bootstrap_iters": cfg.eval.bootstrap_iters, "weights": wid,
                "bpb_protocol": bpb_protocol(cfg)}

        def save(res: dict, ck=ck, meta=meta, wall0=wall0, t0=t0, out=out) -> None:
            body = {k: v for k, v in res.items() if k != "tasks"}
            body["swallow"] = meta | {"tokenizer": str(ck.tokenizer), "wall_s": wall0 + time.perf_counter() - t0,
                                      "tasks": res["tasks"]}  # fmt: skip
            _save_json(out, body)

        try:
            tok = check_checkpoint(ck.path, cfg.profile)
            ck = Checkpoint(ck.run, ck.name, ck.path, tok, ck.step, ck.tokens, ck.last)
            same = json.loads(evaluated[key].read_text(encoding="utf-8")) if key in evaluated else None
            if same is not None and all(_task_ok(same, n) for n in todo):
                res = {k: v for k, v in same.items() if k != "swallow"}  # the same weights: the same numbers
                res["tasks"] = {n: st for n, st in same["swallow"]["tasks"].items()
                                if n in units or st.get("status") == "ok"}  # fmt: skip
                save(res, ck)
                log.info("%s/%s: same weights as %s/%s, results reused", ck.run, ck.name,
                         same["swallow"]["run"], same["swallow"]["checkpoint"])  # fmt: skip
            else:
                into = {k: v for k, v in prev.items() if k != "swallow"} if prev is not None else None
                if into is not None:
                    _drop_stale_failures(prev, units)
                    into["tasks"] = dict(prev["swallow"].get("tasks", {}))
                res = evaluate_checkpoint(ck, cfg, task_dir, tm, units=todo, into=into,
                                          on_task=lambda r, ck=ck: save(r, ck))  # fmt: skip
                save(res, ck)
        except Exception as e:  # one bad checkpoint must not lose the others' results
            log.exception("%s/%s failed: %s", ck.run, ck.name, e)
            write_json_atomic(err, {"run": ck.run, "checkpoint": ck.name, "path": str(ck.path), "step": ck.step,
                                    "tokens": ck.tokens, "error": one_line(e), "traceback": traceback.format_exc()})
            failed.append((ck, one_line(e)))
            continue
        wall = time.perf_counter() - t0
        err.unlink(missing_ok=True)
        bad = {n: s["error"] for n, s in res["tasks"].items() if n in units and s.get("status") != "ok"}
        task_failures += [(ck.run, ck.name, n, e) for n, e in bad.items()]
        if key is not None and not bad:
            evaluated.setdefault(key, out)
        done.append((ck, wall))
        log.info("%s/%s evaluated in %.1f s%s", ck.run, ck.name, wall, f", {len(bad)} task(s) FAILED" if bad else "")
    table = collect(cfg.profile, cfg.eval.bootstrap_iters)
    write_json_atomic(paths.eval_dir(cfg.profile) / "provenance.json",
                      provenance(cfg, "eval", fp) | {"bpb_protocol": bpb_protocol(cfg)})
    if task_failures:
        log.warning("%d task(s) failed: their scores are missing from the results table; they are retried on the "
                    "next run (listed in %s)", len(task_failures), paths.eval_dir(cfg.profile) / "failures.csv")
    return {"evaluated": [(c.run, c.name, w) for c, w in done], "skipped": [(c.run, c.name) for c in skipped],
            "failed": [(c.run, c.name, e) for c, e in failed], "task_failures": task_failures, "rows": len(table)}


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


def failure_rows(res: dict) -> list[dict]:
    """Rows (run, checkpoint, step, tokens, task, error) of the failed tasks recorded in one checkpoint's results."""
    meta = res.get("swallow", {})
    return [{"run": meta.get("run"), "checkpoint": meta.get("checkpoint"), "step": meta.get("step"),
             "tokens": meta.get("tokens"), "task": task.removeprefix("swallow_"), "error": st.get("error", "")}
            for task, st in sorted(meta.get("tasks", {}).items()) if st.get("status") != "ok"]  # fmt: skip


def collect(profile: str, bootstrap_iters: int | None = None, out: Path | None = None):
    """Every checkpoint's lm-eval JSON under ``runs/<p>/eval/results`` as one DataFrame, written as CSV and Parquet
    into ``out`` (default ``runs/<p>/eval``); ``bootstrap_iters`` as in :func:`tidy`.

    The failures go to ``failures.csv`` beside it (:data:`FAILURE_COLUMNS`, read by ``eval.report.failures``): each
    failed task of a checkpoint, and each checkpoint that could not be evaluated at all (task
    :data:`WHOLE_CHECKPOINT`).
    """
    import pandas as pd

    root = paths.eval_dir(profile)
    rows, failed = [], []
    for f in sorted((root / "results").glob("*/*.json")):
        res = json.loads(f.read_text(encoding="utf-8"))
        if f.name.endswith(".error.json"):
            failed.append({"run": res.get("run"), "checkpoint": res.get("checkpoint"), "step": res.get("step"),
                           "tokens": res.get("tokens"), "task": WHOLE_CHECKPOINT, "error": res.get("error", "")})
            continue
        rows.extend(tidy(res, bootstrap_iters))
        failed.extend(failure_rows(res))
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df = df.astype({"step": "Int64", "tokens": "Int64"})
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.csv", df.to_csv(index=False))
    tmp = out / ".results.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / "results.parquet")
    fails = pd.DataFrame(failed, columns=FAILURE_COLUMNS).astype({"step": "Int64", "tokens": "Int64"})
    write_text_atomic(out / "failures.csv", fails.to_csv(index=False))
    return df

