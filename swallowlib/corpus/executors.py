"""Run datatrove pipelines to completion on the configured executor: local processes, a Ray cluster or Slurm.

Two calls. :func:`make_executor` turns one pipeline (a list of datatrove steps) plus ``ExecutorConfig`` into a
datatrove executor; :func:`run_pipelines` runs a chain of them in order and returns only when every task of every
pipeline has finished, so the caller can read outputs and ``logging_dir/stats`` next::

    from swallowlib.config import ExecutorConfig
    from swallowlib.corpus.executors import make_executor, run_pipelines

    cfg = ExecutorConfig(kind="slurm", tasks=64, options={"partition": "cpu", "time": "04:00:00"})
    run_pipelines([
        make_executor([reader, signature_step], cfg, work / "logs/1_signatures"),
        make_executor([bucket_step], cfg, work / "logs/2_buckets", tasks=40),
        make_executor([reader2, filter_step, writer], cfg, work / "logs/3_filter"),
    ], cfg)
    # every task of the three pipelines has a completion marker here, or run_pipelines raised PipelineFailed

How each kind runs the chain:

- ``local``: datatrove's multiprocess pool on this machine, one pipeline after the other.
- ``ray``: one pipeline after the other on the Ray cluster that ``ray.init()`` finds (``RAY_ADDRESS``, or a new
  local instance when there is none; a caller may also call ``ray.init`` itself first). Needs the ``ray`` extra:
  ``pip install -e '.[ray]'``. datatrove's Ray executor only logs failed tasks, so they are caught here from the
  missing completion markers.
- ``slurm``: the whole chain is submitted at once as job arrays linked with ``--dependency=afterok``; this process
  then waits, polling each pipeline's completion markers (``logging_dir/completions/<rank:05d>``) and ``squeue``.
  A pipeline whose job left the queue with tasks unfinished (failed, cancelled, out of time) or a chain that
  outlives ``wait_timeout_s`` raises :class:`PipelineFailed` naming the logging directory; the chain's jobs still
  queued are cancelled first (``scancel``), so a rerun does not race them. ``partition`` and ``time`` are required
  options; the jobs activate this process's virtualenv unless ``venv_path``, ``env_command`` or ``condaenv`` is
  given, and ``logging_dir`` must be on a file system the compute nodes share.

``cfg.options`` go to datatrove's executor unchanged (see ``SlurmPipelineExecutor`` / ``RayPipelineExecutor`` in
datatrove 0.10.1 for the keys), except these, which set how :func:`run_pipelines` waits on Slurm:

- ``wait_poll_s`` (default 30): seconds between two looks at the markers and the queue;
- ``wait_timeout_s`` (default none): give up on the chain after this many seconds;
- ``wait_grace_s`` (default 60): how long a job may be gone from the queue before its missing markers count as a
  failure (markers written on a network file system can show up late).

Completed tasks are skipped when the same chain runs again (datatrove's ``skip_completed``), on every kind.
"""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor

from swallowlib.config import ExecutorConfig

log = logging.getLogger(__name__)

# Options that tune the wait in run_pipelines and never reach datatrove.
WAIT_OPTIONS: dict[str, float | None] = {"wait_poll_s": 30.0, "wait_timeout_s": None, "wait_grace_s": 60.0}
SLURM_REQUIRED = {
    "partition": "the Slurm partition to submit to",
    "time": "the time limit of one task, e.g. '04:00:00'",
}


class PipelineFailed(RuntimeError):
    """A pipeline of the chain ended (or was given up on) with tasks that never wrote their completion marker."""


def _executor_options(cfg: ExecutorConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.options.items() if k not in WAIT_OPTIONS}


def _wait_option(cfg: ExecutorConfig | None, key: str) -> float | None:
    value = (cfg.options if cfg is not None else {}).get(key, WAIT_OPTIONS[key])
    return None if value is None else float(value)


def _check_keys(cls: type, opts: dict[str, Any], kind: str) -> None:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "pipeline", "logging_dir", "tasks", "depends"}
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise ValueError(
            f"executor.options {unknown} are not options of datatrove's {cls.__name__} (kind: {kind}); "
            f"accepted: {sorted(accepted | set(WAIT_OPTIONS))}"
        )


def _job_name(logging_dir: Path) -> str:
    # the last two parts ("ja/logs", "logs/2_buckets") tell the stages of one run apart in squeue
    return "swallow-" + "-".join(Path(logging_dir).parts[-2:])


def _current_venv_activate() -> str | None:
    activate = Path(sys.prefix) / "bin" / "activate"
    return str(activate) if sys.prefix != sys.base_prefix and activate.is_file() else None


def make_executor(
    pipeline: list[Any],
    cfg: ExecutorConfig,
    logging_dir: Path,
    tasks: int | None = None,
    depends: Any = None,
    workers: int | None = None,
) -> Any:
    """A datatrove executor for ``pipeline``: ``local`` (multiprocess on this machine), ``slurm`` or ``ray``.

    ``tasks`` overrides ``cfg.tasks`` (some stages need exactly one task, or one per bucket); ``workers`` (else
    ``cfg.workers``) caps how many tasks run at once, never above ``tasks``; ``options.workers`` overrides both
    on Slurm (the array's ``%N``; -1: no cap) and Ray. ``depends`` chains executors of the same kind, though
    :func:`run_pipelines` chains them itself. ``cfg.options`` go to the Slurm/Ray executor unchanged, less the
    ``wait_*`` keys; an unknown key or a missing required Slurm key (``partition``, ``time``) raises ``ValueError``
    naming it. Completed tasks are skipped on rerun; callers that want a fresh run clear ``logging_dir`` first.
    """
    ntasks = tasks or cfg.tasks
    nworkers = min(workers or cfg.workers, ntasks)
    opts = _executor_options(cfg)
    if cfg.kind == "local":
        return LocalPipelineExecutor(
            pipeline, tasks=ntasks, workers=nworkers, logging_dir=str(logging_dir), depends=depends
        )
    if cfg.kind == "slurm":
        _check_keys(_SlurmExecutor, opts, cfg.kind)
        for key, what in SLURM_REQUIRED.items():
            if not opts.get(key):
                raise ValueError(f"executor.options.{key} is required for kind: slurm ({what})")
        opts = {"workers": nworkers, "job_name": _job_name(logging_dir), **opts}
        if not any(opts.get(k) for k in ("venv_path", "env_command", "condaenv")) and _current_venv_activate():
            opts["venv_path"] = _current_venv_activate()
        opts["job_id_retriever"] = _JobIdRecorder(opts.pop("job_id_retriever", None), opts.get("job_id_position", -1))
        return _SlurmExecutor(pipeline, tasks=ntasks, logging_dir=str(logging_dir), depends=depends, **opts)
    if cfg.kind == "ray":
        _check_keys(RayPipelineExecutor, opts, cfg.kind)
        opts = {"workers": nworkers, **opts}
        return RayPipelineExecutor(pipeline, tasks=ntasks, logging_dir=str(logging_dir), depends=depends, **opts)
    raise ValueError(f"unknown executor kind {cfg.kind!r} (local, slurm or ray)")


# ---------------------------------------------------------------------------------------------------------------
# Slurm


class _JobIdRecorder:
    """sbatch output -> job id, remembering every id: past ``max_array_size`` one pipeline is several jobs."""

    def __init__(self, inner: Any = None, position: int = -1):
        self.inner, self.position, self.ids = inner, position, []

    def __call__(self, output: str) -> str:
        job_id = self.inner(output) if self.inner else output.split()[self.position]
        self.ids.append(str(job_id))
        return job_id


class _SlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor without its merge-stats job: :func:`run_pipelines` merges the per-task stats
    itself once every task is done, and a failed chain then leaves no merge job stuck on a dependency."""

    def launch_merge_stats(self) -> None:
        pass


def _job_ids(ex: Any) -> list[str]:
    """The Slurm jobs of one submitted pipeline (none when all its tasks were already done)."""
    if ex.job_id in (None, -1):
        return []
    recorder = ex.job_id_retriever
    return list(recorder.ids) if isinstance(recorder, _JobIdRecorder) and recorder.ids else [str(ex.job_id)]


def _incomplete(ex: Any) -> list[int]:
    return ex.get_incomplete_ranks(skip_completed=True)


def _in_queue(job_ids: list[str]) -> bool | None:
    """Whether any of ``job_ids`` (array tasks included) is still pending or running; None when squeue failed."""
    if not job_ids:
        return False
    try:
        res = subprocess.run(
            ["squeue", "--noheader", "--format=%i", f"--jobs={','.join(job_ids)}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("squeue failed (%s); going on by the completion markers", e)
        return None
    if res.returncode != 0:
        # squeue refuses ids that slurmctld has already purged; that is a job gone, not an error
        if "invalid job id" in res.stderr.lower():
            return False
        log.warning("squeue exited %d: %s", res.returncode, res.stderr.strip())
        return None
    return bool(res.stdout.strip())


def _scancel(job_ids: list[str]) -> None:
    if job_ids:
        log.warning("cancelling the chain's remaining Slurm jobs %s", ", ".join(job_ids))
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, check=False)


def _describe(ex: Any) -> str:
    return f"{ex.job_name} ({ex.logging_dir.path})"


def _failure_hint(ex: Any, missing: list[int]) -> str:
    shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
    where = f"{ex.logging_dir.path}/logs/task_<rank>.log"
    if isinstance(ex, SlurmPipelineExecutor):
        where += f" and the Slurm output in {ex.slurm_logs_folder}"
    return (
        f"{len(missing)}/{ex.world_size} tasks in {ex.logging_dir.path} have no completion marker "
        f"(ranks {shown}); see {where}"
    )


def _submit_slurm(chain: Sequence[Any]) -> None:
    prev = None
    for ex in chain:
        if prev is not None and ex.depends is None and not ex.depends_job_id:
            ex.depends = prev
        # launch_job, not run(): run() would execute a task in place if this process is itself a Slurm array task
        ex.launch_job()
        if ex.job_id == -1:
            log.info("slurm: %s: all %d tasks already done", _describe(ex), ex.world_size)
        else:
            log.info("slurm: submitted %s as job %s (%d tasks)", _describe(ex), ex.job_id, ex.world_size)
        prev = ex


def _wait_slurm(chain: Sequence[Any], poll_s: float, timeout_s: float | None, grace_s: float) -> None:
    start = time.monotonic()
    for i, ex in enumerate(chain):
        ids = _job_ids(ex)
        last, gone_since, polls = None, None, 0
        while missing := _incomplete(ex):
            done = ex.world_size - len(missing)
            now = time.monotonic()
            if done != last or polls % 20 == 0:  # every change, and a heartbeat while nothing changes
                log.info(
                    "slurm: %d/%d pipelines done; %s: %d/%d tasks done (%.0f s)",
                    i,
                    len(chain),
                    _describe(ex),
                    done,
                    ex.world_size,
                    now - start,
                )
                last = done
            queued = _in_queue(ids)
            if queued is False:
                gone_since = gone_since if gone_since is not None else now
                if now - gone_since >= grace_s:
                    _scancel([j for later in chain[i + 1 :] for j in _job_ids(later)])
                    raise PipelineFailed(f"Slurm job {','.join(ids)} left the queue: " + _failure_hint(ex, missing))
            else:
                gone_since = None
            if timeout_s is not None and now - start > timeout_s:
                _scancel([j for later in chain[i:] for j in _job_ids(later)])
                raise PipelineFailed(f"gave up after wait_timeout_s={timeout_s:g} s: " + _failure_hint(ex, missing))
            polls += 1
            time.sleep(poll_s)
        log.info("slurm: %s: all %d tasks done", _describe(ex), ex.world_size)
        _merge_stats(ex)


def _merge_stats(ex: Any) -> None:
    """``logging_dir/stats.json`` summed over every task, as the local executor writes it."""
    from datatrove.utils.stats import PipelineStats

    total = PipelineStats()
    for rank in range(ex.world_size):
        with ex.logging_dir.open(f"stats/{rank:05d}.json", "r") as f:
            total += PipelineStats.from_json(json.load(f))
    with ex.logging_dir.open("stats.json", "wt") as f:
        total.save_to_disk(f)


# ---------------------------------------------------------------------------------------------------------------
# The chain


def _kind(ex: Any) -> str:
    if isinstance(ex, SlurmPipelineExecutor):
        return "slurm"
    if isinstance(ex, LocalPipelineExecutor):
        return "local"
    return "ray" if isinstance(ex, RayPipelineExecutor) else type(ex).__name__


def _ensure_ray() -> None:
    import ray

    if not ray.is_initialized():
        # the cluster RAY_ADDRESS names, else a new local instance that lives as long as this process, so the
        # pipelines of one stage share one start-up
        ray.init()
        log.info("ray: connected, %s", ray.cluster_resources())


def run_pipelines(chain: Sequence[Any], cfg: ExecutorConfig | None = None) -> None:
    """Run the executors of ``chain`` (from :func:`make_executor`) in order, each to completion, then return.

    ``cfg`` supplies the ``wait_*`` options for Slurm (defaults without it). Raises :class:`PipelineFailed` when
    a pipeline ends with tasks that wrote no completion marker, naming its logging directory; a local task that
    raises propagates its exception. All executors of a chain must be of one kind.
    """
    if not chain:
        return
    kinds = {_kind(ex) for ex in chain}
    if len(kinds) != 1:
        raise ValueError(f"a chain mixes executor kinds {sorted(kinds)}")
    kind = kinds.pop()
    if kind == "slurm":
        poll_s = _wait_option(cfg, "wait_poll_s")
        grace_s = _wait_option(cfg, "wait_grace_s")
        _submit_slurm(chain)
        _wait_slurm(chain, poll_s or 0.0, _wait_option(cfg, "wait_timeout_s"), grace_s or 0.0)
        return
    if kind == "ray":
        _ensure_ray()
    for i, ex in enumerate(chain):
        log.info(
            "%s: pipeline %d/%d, %d tasks, logs in %s", kind, i + 1, len(chain), ex.world_size, ex.logging_dir.path
        )
        ex.run()
        if missing := _incomplete(ex):
            raise PipelineFailed(f"{kind}: " + _failure_hint(ex, missing))
