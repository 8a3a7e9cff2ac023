"""Tests for swallowlib.corpus.executors: the executor factory's contract, and one two-pipeline chain (filter ->
normalise) run to completion on each kind with the local executor's outputs and stats as the reference.

Slurm runs against a fake Slurm on PATH (``sbatch``, ``squeue``, ``scancel``, ``scontrol``, ``srun``): ``sbatch``
records the job script and, in the background, runs every array task of it with the environment Slurm would set,
after the jobs it depends on, so the chain really runs and ``run_pipelines`` waits on real completion markers.
Ray starts a local instance (two CPUs, no dashboard) once for the module and is skipped without the ``ray`` extra.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from datatrove.pipeline.writers import JsonlWriter

from swallowlib.config import ExecutorConfig
from swallowlib.corpus import executors as E
from swallowlib.corpus import filters as F

SLURM_OPTS = {"partition": "debug", "time": "00:10:00", "wait_poll_s": 0.2, "wait_grace_s": 0}

# ---------------------------------------------------------------------------------------------------------------
# The chain under test


def write_inputs(folder: Path) -> None:
    """Four shards; short documents fail min_chars, full-width letters change under NFKC."""
    folder.mkdir(parents=True)
    for s in range(4):
        with gzip.open(folder / f"{s:05d}.jsonl.gz", "wt", encoding="utf-8") as fh:
            for i in range(6):
                text = "短い" if i % 3 == 0 else f"シャード{s}の文書{i}です。ＡＢＣ１２３ を含む、十分に長い本文。"
                fh.write(json.dumps({"id": f"{s}-{i}", "text": text, "metadata": {"shard": s}}) + "\n")


def chain(cfg: ExecutorConfig, inputs: Path, base: Path) -> list[Any]:
    rule = F.Rule("min_chars", F.num_chars, min=20)
    filter_steps = [
        F.SafeJsonlReader(str(inputs)),
        F.QualityRuleFilter(rule, JsonlWriter(str(base / "excluded"))),
        JsonlWriter(str(base / "mid")),
    ]
    normalise_steps = [F.SafeJsonlReader(str(base / "mid")), F.NFKCNormalizer(), JsonlWriter(str(base / "out"))]
    return [
        E.make_executor(filter_steps, cfg, base / "logs" / "1_filter", tasks=3),
        E.make_executor(normalise_steps, cfg, base / "logs" / "2_nfkc", tasks=2),
    ]


def outputs(base: Path) -> dict[str, list[dict]]:
    """Every output shard of the chain, by path relative to ``base``, as its decoded records in file order."""
    return {
        str(f.relative_to(base)): [json.loads(line) for line in gzip.open(f, "rt", encoding="utf-8")]
        for d in ("mid", "out", "excluded")
        for f in sorted((base / d).rglob("*.jsonl.gz"))
    }


def counts(base: Path) -> list[list[tuple[str, dict[str, int]]]]:
    """Per pipeline, per step: the step's counters (no timings), summed over tasks."""
    return [
        [(s["name"], {k: F.metric_total(v) for k, v in s["stats"].items()}) for s in F.read_stats(base / "logs" / p)]
        for p in ("1_filter", "2_nfkc")
    ]


@pytest.fixture
def reference(tmp_path: Path) -> tuple[Path, Path]:
    """(inputs, the chain's results on the local executor)."""
    inputs, base = tmp_path / "in", tmp_path / "local"
    write_inputs(inputs)
    E.run_pipelines(chain(ExecutorConfig(workers=2), inputs, base), ExecutorConfig())
    out = outputs(base)
    assert len(out["out/00000.jsonl.gz"]) + len(out["out/00001.jsonl.gz"]) == 16  # 24 documents, 8 short
    assert all("ABC123" in d["text"] for f, docs in out.items() if f.startswith("out/") for d in docs)
    assert sum(len(v) for f, v in out.items() if f.startswith("excluded/")) == 8
    assert counts(base)[0][0][1]["documents"] == 24
    return inputs, base


# ---------------------------------------------------------------------------------------------------------------
# make_executor


def test_make_executor_local(tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor

    ex = E.make_executor([], ExecutorConfig(workers=4, tasks=3), tmp_path, tasks=2)
    assert isinstance(ex, LocalPipelineExecutor) and ex.tasks == 2 and ex.workers == 2
    assert E.make_executor([], ExecutorConfig(workers=4, tasks=3), tmp_path).tasks == 3


@pytest.mark.parametrize("missing", ["partition", "time"])
def test_make_executor_slurm_names_a_missing_option(tmp_path: Path, missing: str) -> None:
    opts = {k: v for k, v in SLURM_OPTS.items() if k != missing}
    with pytest.raises(ValueError, match=rf"executor\.options\.{missing} is required for kind: slurm"):
        E.make_executor([], ExecutorConfig(kind="slurm", options=opts), tmp_path)


@pytest.mark.parametrize("kind", ["slurm", "ray"])
def test_make_executor_rejects_an_unknown_option(tmp_path: Path, kind: str) -> None:
    with pytest.raises(ValueError, match=r"\['partion'\] are not options"):
        E.make_executor([], ExecutorConfig(kind=kind, options={"partion": "x"}), tmp_path)


def test_make_executor_slurm_defaults(tmp_path: Path) -> None:
    cfg = ExecutorConfig(kind="slurm", workers=8, options=SLURM_OPTS)
    ex = E.make_executor([], cfg, tmp_path / "ja" / "logs", tasks=5)
    assert (ex.tasks, ex.workers, ex.partition, ex.time) == (5, 5, "debug", "00:10:00")
    assert ex.job_name == "swallow-ja-logs"
    assert ex.venv_path == E._current_venv_activate()  # the jobs run in this process's environment
    mine = E.make_executor(
        [], ExecutorConfig(kind="slurm", options={**SLURM_OPTS, "workers": -1, "job_name": "x"}), tmp_path
    )
    assert (mine.workers, mine.job_name) == (-1, "x")


def test_make_executor_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown executor kind"):
        E.make_executor([], ExecutorConfig(kind="dask"), tmp_path)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# local


def test_local_rerun_skips_completed_tasks(reference: tuple[Path, Path]) -> None:
    inputs, base = reference
    before = outputs(base)
    (base / "out" / "00000.jsonl.gz").unlink()  # would come back if the finished pipeline ran again
    E.run_pipelines(chain(ExecutorConfig(), inputs, base), ExecutorConfig())
    assert set(outputs(base)) == set(before) - {"out/00000.jsonl.gz"}


def test_local_failed_task_raises(tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    (tmp_path / "blocked").write_text("a file where the writer wants a folder")
    steps = [F.SafeJsonlReader(str(tmp_path / "in")), JsonlWriter(str(tmp_path / "blocked"))]
    with pytest.raises(Exception):  # noqa: B017 -- the task's own error comes back through the process pool
        E.run_pipelines([E.make_executor(steps, ExecutorConfig(workers=1), tmp_path / "logs")], ExecutorConfig())


def test_chain_of_mixed_kinds_is_refused(tmp_path: Path) -> None:
    local = E.make_executor([], ExecutorConfig(), tmp_path / "a")
    slurm = E.make_executor([], ExecutorConfig(kind="slurm", options=SLURM_OPTS), tmp_path / "b")
    with pytest.raises(ValueError, match="mixes executor kinds"):
        E.run_pipelines([local, slurm])


# ---------------------------------------------------------------------------------------------------------------
# Slurm, against a fake Slurm

FAKE_SLURM = r"""
import json, os, re, subprocess, sys, time
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def jobdir(j):
    return STATE / "jobs" / str(j)


def state(j):
    p = jobdir(j) / "state"
    return p.read_text() if p.exists() else None


def set_state(j, s):
    tmp = jobdir(j) / "state.tmp"
    tmp.write_text(s)
    os.replace(tmp, jobdir(j) / "state")


def log(name, record):
    with open(STATE / f"{name}.log", "a") as f:
        f.write(json.dumps(record) + "\n")


def sbatch(args):
    opts, script = args[:-1], Path(args[-1]).read_text()  # datatrove deletes the script when sbatch returns
    counter = STATE / "next_id"
    jid = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(jid + 1))
    jobdir(jid).mkdir(parents=True)
    (jobdir(jid) / "script.sh").write_text(script)
    (jobdir(jid) / "argv.json").write_text(json.dumps(opts))
    set_state(jid, "PENDING")
    log("sbatch", {"id": jid, "argv": opts})
    if os.environ.get("FAKE_SLURM_HOLD") != "1":
        err = open(jobdir(jid) / "runner.err", "w")
        p = subprocess.Popen([sys.executable, __file__, "_run", str(jid)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        (jobdir(jid) / "pid").write_text(str(p.pid))
    print(f"Submitted batch job {jid}")


def run(jid):
    opts = json.loads((jobdir(jid) / "argv.json").read_text())
    script = (jobdir(jid) / "script.sh").read_text()
    env = dict(os.environ)
    deps = []
    for o in opts:
        if o.startswith("--dependency="):
            deps += [tuple(item.split(":", 1)) for item in o.split("=", 1)[1].split(",")]
        if o.startswith("--export="):
            env.update(kv.split("=", 1) for kv in o.split("=", 1)[1].split(",")[1:])
    for kind, dep in deps:
        while state(dep) not in TERMINAL:
            if state(jid) == "CANCELLED":
                return
            time.sleep(0.05)
        if kind == "afterok" and state(dep) != "COMPLETED":
            set_state(jid, "CANCELLED")  # Slurm would leave it pending on DependencyNeverSatisfied
            return
    if state(jid) == "CANCELLED":
        return
    set_state(jid, "RUNNING")
    sb = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script, re.M))
    last = int(re.fullmatch(r"0-(\d+)(%\d+)?", sb["array"]).group(1))
    ok = True
    for i in range(last + 1):
        if state(jid) == "CANCELLED":
            return
        task_env = {**env, "SLURM_JOB_ID": str(jid), "SLURM_ARRAY_JOB_ID": str(jid), "SLURM_ARRAY_TASK_ID": str(i),
                    "SLURM_NODELIST": "localhost", "SLURM_NODEID": "0"}
        with open(sb["output"].replace("%A", str(jid)).replace("%a", str(i)), "w") as out:
            rc = subprocess.run(["bash", str(jobdir(jid) / "script.sh")], env=task_env, stdout=out,
                                stderr=subprocess.STDOUT).returncode
        ok = ok and rc == 0
    if state(jid) != "CANCELLED":
        set_state(jid, "COMPLETED" if ok else "FAILED")


def squeue(args):
    ids = next(a.split("=", 1)[1] for a in args if a.startswith("--jobs=")).split(",")
    log("squeue", ids)
    if len(ids) == 1 and state(ids[0]) is None:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        sys.exit(1)
    for j in ids:
        if state(j) in ("PENDING", "RUNNING"):
            print(j)


def scancel(args):
    log("scancel", args)
    for j in args:
        if state(j) not in TERMINAL:
            set_state(j, "CANCELLED")


def scontrol(args):
    assert args[:2] == ["show", "hostnames"], args
    print(args[2])


def srun(args):
    log("srun", args)
    if os.environ.get("FAKE_SRUN_EXIT"):
        sys.exit(int(os.environ["FAKE_SRUN_EXIT"]))
    i = 0
    while args[i].startswith("-"):
        i += 2 if args[i] in ("-n", "-N", "-c") else 1
    os.execvp(args[i], args[i:])


{"sbatch": sbatch, "_run": lambda a: run(a[0]), "squeue": squeue, "scancel": scancel, "scontrol": scontrol,
 "srun": srun}[sys.argv[1]](sys.argv[2:])
"""


class FakeSlurm:
    def __init__(self, root: Path):
        self.state = root / "state"
        self.state.mkdir(parents=True)
        self.bin = root / "bin"
        self.bin.mkdir()
        impl = root / "fake_slurm.py"
        impl.write_text(FAKE_SLURM)
        for cmd in ("sbatch", "squeue", "scancel", "scontrol", "srun"):
            (self.bin / cmd).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{impl}" {cmd} "$@"\n')
            (self.bin / cmd).chmod(0o755)

    def calls(self, name: str) -> list[Any]:
        p = self.state / f"{name}.log"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def job(self, jid: Any) -> dict[str, Any]:
        d = self.state / "jobs" / str(jid)
        return {
            "script": (d / "script.sh").read_text(),
            "argv": json.loads((d / "argv.json").read_text()),
            "state": (d / "state").read_text(),
        }

    def settle(self) -> None:
        """Wait for every background job to end (so none writes into a deleted tmp_path); kill what hangs."""
        deadline = time.monotonic() + 120
        for d in sorted((self.state / "jobs").glob("*")) if (self.state / "jobs").is_dir() else []:
            while (d / "state").read_text() in ("PENDING", "RUNNING") and (d / "pid").exists():
                if time.monotonic() > deadline:
                    os.killpg(int((d / "pid").read_text()), signal.SIGKILL)
                    break
                time.sleep(0.05)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = FakeSlurm(tmp_path / "fake-slurm")
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(fake.state))
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "FAKE_SLURM_HOLD", "FAKE_SRUN_EXIT"):
        monkeypatch.delenv(var, raising=False)
    yield fake
    fake.settle()


def test_slurm_chain_runs_to_completion_like_local(
    reference: tuple[Path, Path], tmp_path: Path, fake_slurm: FakeSlurm
) -> None:
    inputs, local = reference
    base = tmp_path / "slurm"
    cfg = ExecutorConfig(kind="slurm", workers=2, options=SLURM_OPTS)
    E.run_pipelines(chain(cfg, inputs, base), cfg)

    assert outputs(base) == outputs(local)
    assert counts(base) == counts(local)
    assert (base / "logs" / "2_nfkc" / "stats.json").is_file()  # merged by run_pipelines, as locally

    fake_slurm.settle()  # the last job's runner may still be recording its end
    first, second = fake_slurm.calls("sbatch")  # one array job per pipeline, no merge-stats jobs
    a, b = fake_slurm.job(first["id"]), fake_slurm.job(second["id"])
    assert "#SBATCH --array=0-2%2" in a["script"] and "#SBATCH --array=0-1%2" in b["script"]
    for job in (a, b):
        assert "#SBATCH --partition=debug" in job["script"] and "#SBATCH --time=00:10:00" in job["script"]
        assert f"source {E._current_venv_activate()}" in job["script"]
        assert job["state"] == "COMPLETED"
    assert f"launch_pickled_pipeline {base / 'logs' / '1_filter' / 'executor.pik'}" in a["script"]
    assert f"launch_pickled_pipeline {base / 'logs' / '2_nfkc' / 'executor.pik'}" in b["script"]
    assert not any(o.startswith("--dependency") for o in first["argv"])
    assert f"--dependency=afterok:{first['id']}" in second["argv"]
    assert len(fake_slurm.calls("srun")) == 5  # one per array task

    # a rerun of the finished chain submits nothing
    E.run_pipelines(chain(cfg, inputs, base), cfg)
    assert len(fake_slurm.calls("sbatch")) == 2


def test_slurm_failed_job_raises_and_cancels_the_rest(
    tmp_path: Path, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inputs(tmp_path / "in")
    monkeypatch.setenv("FAKE_SRUN_EXIT", "1")
    cfg = ExecutorConfig(kind="slurm", options=SLURM_OPTS)
    with pytest.raises(E.PipelineFailed, match=r"left the queue: 3/3 tasks in .*1_filter have no completion marker"):
        E.run_pipelines(chain(cfg, tmp_path / "in", tmp_path / "run"), cfg)
    first, second = fake_slurm.calls("sbatch")
    fake_slurm.settle()
    assert fake_slurm.job(first["id"])["state"] == "FAILED"
    assert fake_slurm.job(second["id"])["state"] == "CANCELLED"


def test_slurm_timeout_names_the_logging_dir_and_cancels(
    tmp_path: Path, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inputs(tmp_path / "in")
    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # submitted, never started
    cfg = ExecutorConfig(kind="slurm", options={**SLURM_OPTS, "wait_timeout_s": 0.5})
    with pytest.raises(E.PipelineFailed, match=r"wait_timeout_s=0.5 s: 3/3 tasks in .*1_filter"):
        E.run_pipelines(chain(cfg, tmp_path / "in", tmp_path / "run"), cfg)
    ids = [str(c["id"]) for c in fake_slurm.calls("sbatch")]
    assert fake_slurm.calls("scancel") == [ids]


@pytest.mark.slurm
def test_real_slurm_chain_runs_like_local(reference: tuple[Path, Path], tmp_path: Path) -> None:
    """On a real cluster (``.ci/slurm-single-node.sh start`` makes one); tmp_path must be visible to its nodes."""
    partition = os.environ.get("SWALLOW_SLURM_PARTITION")
    if not partition:
        pytest.skip("no Slurm cluster: set SWALLOW_SLURM_PARTITION (.ci/slurm-single-node.sh starts one)")
    inputs, local = reference
    base = tmp_path / "real-slurm"
    options = {"partition": partition, "time": "00:10:00", "mem_per_cpu_gb": 1, "wait_poll_s": 1, "wait_timeout_s": 600}
    cfg = ExecutorConfig(kind="slurm", workers=2, options=options)
    E.run_pipelines(chain(cfg, inputs, base), cfg)
    assert outputs(base) == outputs(local)
    assert counts(base) == counts(local)


# ---------------------------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


RAY_OPTS = {"mem_per_cpu_gb": 0.25}  # the placement groups must fit a small, shared machine
# datatrove 0.10.1 places its Ray actors with arguments that Ray 2.60 deprecates
RAY_WARNINGS = "ignore:placement_group:DeprecationWarning"


@pytest.mark.ray
@pytest.mark.filterwarnings(RAY_WARNINGS)
def test_ray_chain_runs_like_local(reference: tuple[Path, Path], tmp_path: Path, ray_cluster: Any) -> None:
    inputs, local = reference
    base = tmp_path / "ray"
    cfg = ExecutorConfig(kind="ray", workers=2, options=RAY_OPTS)
    E.run_pipelines(chain(cfg, inputs, base), cfg)
    assert outputs(base) == outputs(local)
    assert counts(base) == counts(local)


@pytest.mark.ray
@pytest.mark.filterwarnings(RAY_WARNINGS)
def test_ray_failed_task_raises(tmp_path: Path, ray_cluster: Any) -> None:
    write_inputs(tmp_path / "in")
    (tmp_path / "blocked").write_text("a file where the writer wants a folder")
    steps = [F.SafeJsonlReader(str(tmp_path / "in")), JsonlWriter(str(tmp_path / "blocked"))]
    cfg = ExecutorConfig(kind="ray", options=RAY_OPTS)
    with pytest.raises(E.PipelineFailed, match=r"ray: 2/2 tasks in .*logs have no completion marker"):
        E.run_pipelines([E.make_executor(steps, cfg, tmp_path / "logs")], cfg)
