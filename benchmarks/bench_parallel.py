"""Stage 04 across processes: the same run trained by one process (the baseline), by two gloo processes with DDP, and
by two with FSDP2 + activation checkpointing, at the same global batch, on the profile's real data and model shape,
through ``swallowlib.train.launch`` (what notebook 04 calls). Prints, per variant: tokens/s, the largest loss
difference from the baseline over the logged steps, the largest relative L2 difference of the final weights, and the
peak resident memory summed over the launch's whole process tree.

On a CPU, throughput says little about a GPU node (gloo on shared cores); what this measures is agreement, and what
sharding costs in time and memory against replication. Run after ``make smoke`` (or ``make tokenizer``) of the
profile: ``python -m swallowlib.bench --profile smoke parallel``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from safetensors.torch import load_file

from swallowlib import paths, train
from swallowlib.config import load_config
from swallowlib.procmem import TreePeak

PROFILE = os.environ.get("SWALLOW_BENCH_PROFILE", "smoke")
STEPS = 40


def _row(variant, metric, value, unit, baseline=False):
    return {"benchmark": "parallel", "variant": variant, "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "profile": PROFILE}  # fmt: skip


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "event" not in r and "loss" in r}


def bench_fsdp_vs_one_process() -> list[dict]:
    cfg = load_config(PROFILE)
    tc = cfg.train
    src = paths.run_dir(PROFILE)
    for part in ("corpus", "tokenizer"):
        if not (src / part).is_dir():
            raise FileNotFoundError(f"{src / part}: missing; build it first: make tokenizer PROFILE={PROFILE}")
    work = Path(tempfile.mkdtemp(prefix="swallow-bench-parallel-"))
    runs = work / "runs"
    for part in ("corpus", "tokenizer"):
        (runs / PROFILE).mkdir(parents=True, exist_ok=True)
        os.symlink(src / part, runs / PROFILE / part)
    batch = 2 * tc.micro_batch_size  # divides over 1 and 2 processes
    run = {"init": "scratch", "tokenizer": "base", "mix": {"ja": 0.5, "en": 0.5}, "tokens": STEPS * batch * tc.seq_len}
    data = yaml.safe_load(Path(cfg.path).read_text())
    data["train"].update(batch_size=batch, save_every_steps=STEPS, log_every_steps=1, checkpoint_fractions=[1.0],
                         runs={"one": run, "ddp": run, "fsdp": run})  # fmt: skip
    data.setdefault("eval", {})["runs"] = None  # the profile's own runs are not in this config
    config = work / f"{PROFILE}.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    fsdp_data = copy.deepcopy(data)
    fsdp_data["train"].update(fsdp=True, activation_checkpointing=True)
    fsdp_config = work / "fsdp" / f"{PROFILE}.yaml"
    fsdp_config.parent.mkdir()
    fsdp_config.write_text(yaml.safe_dump(fsdp_data, sort_keys=False), encoding="utf-8")
    env = dict(os.environ, SWALLOW_RUNS=str(runs))
    rows = []
    try:
        variants = [("one", config, 1), ("ddp", config, 2), ("fsdp", fsdp_config, 2)]
        peaks = {}
        for name, c, n in variants:
            train.launch(c, name, n, env=env, quiet=True, extra_args=("--prepare",))  # tokenising is not timed
            with TreePeak() as tp:
                train.launch(c, name, n, env=env, quiet=True)
            # This process only waits on the launch, so what the tree gained is the launcher and its workers.
            peaks[name] = tp.peak_mb - tp.baseline_mb
        out = {name: runs / PROFILE / "train" / name for name, _, _ in variants}
        base_loss, base_w = _losses(out["one"]), load_file(out["one"] / "final" / "model.safetensors")
        for name, _, _ in variants:
            summary = json.loads((out[name] / "final" / "trainer_state.json").read_text())
            label = {"one": "1 process", "ddp": "2 processes, DDP", "fsdp": "2 processes, FSDP2 + checkpointing"}[name]
            is_base = name == "one"
            rows.append(_row(label, "tokens/s", summary["tokens_per_s"], "tokens/s", is_base))
            rows.append(_row(label, "peak memory, process tree", peaks[name], "MB", is_base))
            loss = _losses(out[name])
            dl = max(abs(loss[s] - base_loss[s]) for s in base_loss)
            w = load_file(out[name] / "final" / "model.safetensors")
            dw = max(float((w[k].float() - base_w[k].float()).norm() / base_w[k].float().norm().clamp_min(1e-12))
                     for k in base_w)  # fmt: skip
            rows.append(_row(label, "max |loss - 1 process|", dl, "nats"))
            rows.append(_row(label, "max relative L2 weight difference", dw, "ratio"))
            rows.append(_row(label, "final loss", summary["final_loss"], "nats"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


BENCHMARKS = [bench_fsdp_vs_one_process]
