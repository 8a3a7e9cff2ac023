"""FSDP2 on two gloo CPU processes, through the same entry point the GPU profiles use (``swallowlib.train.launch``
with ``train.fsdp: true`` and activation checkpointing): from pretrained weights that only rank 0 loads, it trains
what one process trains at the same global batch,
a SIGKILLed FSDP run resumes from its sharded checkpoint to the weights of an uninterrupted one, and a resume on
another process count is refused with one clear line."""

import json
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from swallowlib import paths, train
from swallowlib.train import checkpoint
from tests.train_helpers import PROFILE, env, free_port, launch_alongside, sigkill_when, write_config

RUN = {"init": "scratch", "tokenizer": "base", "mix": {"ja": 0.5, "en": 0.5}, "tokens": 12 * 256}


def _runs(tree, tmp_path):
    runs = tmp_path / "runs"
    for part in ("corpus", "tokenizer"):
        shutil.copytree(tree["runs"] / PROFILE / part, runs / PROFILE / part)
    return runs


def _config(tree, path, runs: dict, **train):
    def mutate(d):
        d["train"].update(micro_batch_size=4, batch_size=8, runs=runs, **train)

    return write_config(tree["config"], path, mutate)


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "event" not in r}


def _launch_two(config, run, runs, **kw):
    return train.launch(config, run, 2, env=env(runs), quiet=True, main_process_port=free_port(), **kw)


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_one_process(tree, tmp_path):
    """From pretrained weights (the base run's), as GPU profiles start: rank 0 loads them, rank 1 gets its shards."""
    runs = _runs(tree, tmp_path)
    shutil.copytree(tree["runs"] / PROFILE / "train" / "base" / "final", runs / PROFILE / "train" / "base" / "final")
    cpt = {**RUN, "init": str(runs / PROFILE / "train" / "base" / "final")}
    c1 = _config(tree, tmp_path / "one.yaml", {"one": cpt})  # 1 process x 2 micro-batches of 4
    c2 = _config(tree, tmp_path / "two.yaml", {"two": cpt}, fsdp=True, activation_checkpointing=True, processes=2)
    launch_alongside((c1, "one", 1), (c2, "two", None), runs)  # None: the processes of the config (2)
    out1, out2 = runs / PROFILE / "train" / "one", runs / PROFILE / "train" / "two"
    prov = json.loads((out2 / "provenance.json").read_text())
    assert prov["world_size"] == 2 and prov["parallel"] == "fsdp" and prov["activation_checkpointing"]
    assert prov["weights_from_rank0"]  # rank 1 built a meta model and received its shards
    # Each process wrote its own shard of the resume checkpoint.
    ck = checkpoint.list_checkpoints(out2 / "checkpoints")[-1][1]
    assert sorted(p.name for p in (ck / "state").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    state = json.loads((ck / "state.json").read_text())
    assert {"state/__0_0.distcp", "state/__1_0.distcp", "rng-rank0.json", "rng-rank1.json"} <= set(state["files"])
    l1, l2 = _losses(out1), _losses(out2)
    assert list(l1) == list(l2) == [2, 4, 6, 8, 10, 12]
    for s in l1:
        assert l1[s] == pytest.approx(l2[s], rel=1e-5, abs=1e-5), s
    # The milestone is a plain (unsharded) HF model that later stages load as is.
    cfg = json.loads((out2 / "final" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    w1, w2 = load_file(out1 / "final" / "model.safetensors"), load_file(out2 / "final" / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigkilled_fsdp_run_resumes_to_the_uninterrupted_weights(tree, tmp_path):
    runs = _runs(tree, tmp_path)
    long = {**RUN, "tokens": 40 * 256}
    config = _config(
        tree, tmp_path / "k.yaml", {"a": dict(long), "b": dict(long)}, fsdp=True, processes=2, save_every_steps=4
    )
    for run in ("a", "b"):  # tokenise once, before the processes start (what launch() does)
        train.launch(config, run, 1, env=env(runs), quiet=True, extra_args=("--prepare",))
    _launch_two(config, "a", runs)
    out_b = runs / PROFILE / "train" / "b"
    cmd = train.launch_command(config, "b", 2, main_process_port=free_port(), extra_args=("--no-progress",))
    log = tmp_path / "b.log"
    with log.open("w") as fb:
        b = subprocess.Popen(cmd, env=env(runs), cwd=paths.ROOT, stdin=subprocess.DEVNULL, stdout=fb,
                             stderr=subprocess.STDOUT)  # fmt: skip
    # The launcher and both training processes at once, once the first sharded checkpoint is complete.
    sigkill_when(b, lambda: bool(checkpoint.list_checkpoints(out_b / "checkpoints")), log=log)
    assert not (out_b / "final").exists(), "the kill came too late to test anything"
    killed_at = checkpoint.list_checkpoints(out_b / "checkpoints")
    assert killed_at and killed_at[-1][0] < 40
    _launch_two(config, "b", runs)
    s = json.loads((out_b / "final" / "trainer_state.json").read_text())
    assert s["start_step"] == killed_at[-1][0] and s["completed"]
    wa = load_file(runs / PROFILE / "train" / "a" / "final" / "model.safetensors")
    wb = load_file(out_b / "final" / "model.safetensors")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.slow
def test_resume_on_another_process_count_is_refused(tree, tmp_path):
    runs = _runs(tree, tmp_path)
    config = _config(tree, tmp_path / "w.yaml", {"w": {**RUN, "tokens": 20 * 256}}, fsdp=True, processes=2,
                     save_every_steps=4)  # fmt: skip
    _launch_two(config, "w", runs, extra_args=("--max-steps", "5"))
    assert checkpoint.list_checkpoints(runs / PROFILE / "train" / "w" / "checkpoints")
    with pytest.raises(RuntimeError, match=r"written by 2 process\(es\), this launch has 1: resume on 2"):
        train.launch(config, "w", 1, env=env(runs), quiet=True)
