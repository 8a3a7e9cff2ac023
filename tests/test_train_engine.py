"""The training loop's cadence (log rows, milestones, resume checkpoints, ``max_steps``) and how a profile's
``train.*`` settings reach a :class:`~swallowlib.train.job.Job` (by name, with each run's overrides)."""

import dataclasses
import json

import pytest

from swallowlib import plan
from swallowlib.config import ModelConfig, OptimizerConfig, RunConfig, load_config
from swallowlib.train import checkpoint, engine, mfu
from swallowlib.train import model as modeling
from swallowlib.train.data import Mixture, synthetic_source
from swallowlib.train.job import SETTINGS, Job, resolve_precision, run_settings
from tests.train_helpers import use_runs

TOY = ModelConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64,
                  max_position_embeddings=64)  # fmt: skip
VOCAB, SEQ = 64, 8


def test_every_shared_setting_reaches_the_job_by_name():
    """A Job field named like a train.* setting is filled from it; a rename on either side would silently leave
    the Job's default, so the set is pinned here."""
    assert set(SETTINGS) == {
        "seq_len", "micro_batch_size", "batch_size", "optimizer", "precision", "compile", "peft",
        "embedding_warmup_steps", "checkpoint_fractions", "save_every_steps", "keep_last", "log_every_steps", "fsdp",
        "activation_checkpointing",
    }  # fmt: skip
    cfg = load_config("configs/tiny.yaml")
    tc = cfg.train
    plain = run_settings(cfg, RunConfig(tokens=1000))
    assert {k: plain[k] for k in ("seq_len", "batch_size", "save_every_steps", "keep_last", "compile")} == {
        "seq_len": tc.seq_len, "batch_size": tc.batch_size, "save_every_steps": tc.save_every_steps,
        "keep_last": tc.keep_last, "compile": tc.compile,
    }  # fmt: skip
    assert plain["optimizer"] == tc.optimizer and plain["seed"] == cfg.seed and plain["peft"] is None
    assert plain["checkpoint_fractions"] == tc.checkpoint_fractions
    assert plain["precision"] == resolve_precision(tc.precision) != "auto"
    # every key is a Job field: build_job passes them straight through
    assert set(plain) <= {f.name for f in dataclasses.fields(Job)}


def test_a_runs_own_values_override_the_shared_settings():
    cfg = load_config("configs/tiny.yaml")
    rc = RunConfig(tokens=1000, lr=0.5, warmup_steps=3, seed=7, embedding_warmup_steps=4, checkpoint_fractions=[1.0],
                   peft=True)  # fmt: skip
    s = run_settings(cfg, rc)
    assert (s["optimizer"].lr, s["optimizer"].warmup_steps) == (0.5, 3)
    assert s["optimizer"].weight_decay == cfg.train.optimizer.weight_decay  # not overridden: shared
    assert (s["seed"], s["embedding_warmup_steps"], s["checkpoint_fractions"]) == (7, 4, [1.0])
    assert s["peft"] == cfg.train.peft


@pytest.mark.parametrize("total", [1, 3, 10, 391])
def test_the_engine_and_the_plan_place_milestones_alike(total):
    for fractions in ([0.25, 0.5, 0.75, 1.0], [1.0], [0.01, 0.02, 1.0], [0.5, 0.5]):
        assert engine.milestone_steps(fractions, total) == plan.milestone_steps(fractions, total)


def _job(out, steps: int, **kw) -> Job:
    src = synthetic_source(steps * 2 * SEQ * 4, VOCAB, SEQ, seed=0)
    return Job(
        name="cadence", out_dir=out, data=Mixture({"en": src}, {"en": 1.0}, seed=0), tokens=steps * 2 * SEQ,
        seq_len=SEQ, micro_batch_size=2, batch_size=2, optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
        model_init="scratch", model_config=modeling.llama_config(TOY, VOCAB), tokenizer_size=VOCAB,
        precision="fp32", progress=False, **kw,
    )  # fmt: skip


def test_log_rows_milestones_and_checkpoints_follow_their_settings(tmp_path, monkeypatch):
    """10 steps, a row every 3 (and at milestones and the end), milestones at 1/2 and the end, a checkpoint every
    4 (and at the end), the last 2 kept; a launch with max_steps=0 trains nothing and saves nothing."""
    monkeypatch.setattr(mfu, "peak", lambda *a: {"flops": 1e18, "kind": "fake", "source": "fake", "reps": 1})
    out = tmp_path / "out"
    kw = dict(log_every_steps=3, checkpoint_fractions=[0.5, 1.0], save_every_steps=4, keep_last=2)
    with use_runs(tmp_path / "runs"):
        idle = engine.train(_job(out, 10, **kw), max_steps=0)
        assert (idle["start_step"], idle["end_step"], idle["completed"]) == (0, 0, False)
        assert not checkpoint.list_checkpoints(out / "checkpoints")
        summary = engine.train(_job(out, 10, **kw))
        again = engine.train(_job(out, 10, **kw))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [3, 5, 6, 9, 10]
    assert [r["step"] for r in rows if r.get("event") == "milestone"] == [5, 10]
    assert all("valid_loss_en" not in r for r in rows)  # no validation data: a milestone row without losses
    assert sorted(p.name for p in (out / "milestones").iterdir()) == ["step-00000005", "step-00000010"]
    assert [s for s, _ in checkpoint.list_checkpoints(out / "checkpoints")] == [8, 10]
    assert (summary["start_step"], summary["end_step"], summary["completed"]) == (0, 10, True)
    assert summary["tokens"] == 10 * 2 * SEQ and summary["final_loss"] == rows[-2]["loss"]
    final = json.loads((out / "final" / "trainer_state.json").read_text())
    assert final["end_step"] == 10 and final["fraction"] == 1.0
    assert again["skipped"] and again["end_step"] == 10
