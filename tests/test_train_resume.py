"""Exact resume and bad input: a run SIGKILLed at any moment and started again ends bitwise identical to an
uninterrupted one (CPU); a corrupted latest checkpoint falls back to the previous one; every kind of bad input is
one clear error."""

import json
import logging
import shutil
import signal
import subprocess

import pytest

from swallowlib import paths
from swallowlib.config import ConfigError
from swallowlib.train import checkpoint
from swallowlib.train.__main__ import main as cli
from swallowlib.train.engine import TrainError
from tests.train_helpers import PROFILE, env, sigkill_when, train_cmd, train_inprocess, use_runs, write_config


def _two_identical_runs(d):
    # 60 steps of the tiny model: long enough that the kill lands mid-run, short enough for a test.
    run = {"init": "scratch", "tokenizer": "base", "mix": {"ja": 0.5, "en": 0.5}, "tokens": 60 * 128}
    d["train"]["runs"] = {"a": dict(run), "b": dict(run)}
    d["train"]["save_every_steps"] = 5
    d["train"]["checkpoint_fractions"] = [0.25, 1.0]


@pytest.mark.slow
def test_sigkill_then_rerun_is_bitwise_identical(tree, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"] / PROFILE / "corpus", runs / PROFILE / "corpus")
    shutil.copytree(tree["runs"] / PROFILE / "tokenizer", runs / PROFILE / "tokenizer")
    config = write_config(tree["config"], tmp_path / "k.yaml", _two_identical_runs)
    out_a, out_b = runs / PROFILE / "train" / "a", runs / PROFILE / "train" / "b"
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    # Logs go to files: a pipe nobody reads until the end would stall a chatty child.
    kw = dict(env=env(runs), cwd=paths.ROOT, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with log_a.open("w") as fa, log_b.open("w") as fb:
        a = subprocess.Popen(train_cmd(config, "a"), stdout=fa, **kw)  # the uninterrupted run, alongside
        b = subprocess.Popen(train_cmd(config, "b"), stdout=fb, **kw)
    try:
        sigkill_when(b, lambda: bool(checkpoint.list_checkpoints(out_b / "checkpoints")), log=log_b)
    except BaseException:
        a.kill()
        a.wait()
        raise
    assert b.returncode == -signal.SIGKILL, log_b.read_text()[-2000:]
    assert not (out_b / "final").exists(), "the kill came too late to test anything"
    killed_at = checkpoint.list_checkpoints(out_b / "checkpoints")
    assert killed_at and killed_at[-1][0] < 60
    again = subprocess.run(train_cmd(config, "b"), env=env(runs), cwd=paths.ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from step-" in again.stderr
    assert a.wait() == 0, log_a.read_text()[-2000:]
    for rel in ("final/model.safetensors", "milestones/step-00000015/model.safetensors"):
        assert (out_a / rel).read_bytes() == (out_b / rel).read_bytes(), rel
    # The metrics of the killed attempt beyond the checkpoint were dropped: one row per logged step.
    rows = [json.loads(x) for x in (out_b / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "event" not in r]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 60
    assert [r["step"] for r in rows if "event" in r] == [15, 60]


def _copy_tree(tree, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"], runs, ignore=shutil.ignore_patterns("_cache"))
    return runs


def test_corrupted_latest_checkpoint_falls_back(tree, tmp_path, caplog):
    runs = _copy_tree(tree, tmp_path)
    out = runs / PROFILE / "train" / "base"
    shutil.rmtree(out)
    s = train_inprocess(tree["config"], "base", runs, max_steps=10)  # checkpoints at 4 and 8; killed at 10
    assert not s["completed"]
    ck = checkpoint.list_checkpoints(out / "checkpoints")
    assert [step for step, _ in ck] == [4, 8]
    f = ck[-1][1] / "state" / "__0_0.distcp"  # the process's model + optimizer shard
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        s = train_inprocess(tree["config"], "base", runs)
    assert s["start_step"] == 4 and s["completed"]
    assert "step-00000008 is corrupted" in caplog.text and "falling back" in caplog.text
    ref = tree["runs"] / PROFILE / "train" / "base" / "final" / "model.safetensors"
    assert (out / "final" / "model.safetensors").read_bytes() == ref.read_bytes()


def test_every_checkpoint_corrupted_is_an_error(tree, tmp_path):
    runs = _copy_tree(tree, tmp_path)
    out = runs / PROFILE / "train" / "base"
    shutil.rmtree(out)
    train_inprocess(tree["config"], "base", runs, max_steps=6)
    for _, p in checkpoint.list_checkpoints(out / "checkpoints"):
        (p / "state" / "__0_0.distcp").write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="every checkpoint is corrupted"):
        train_inprocess(tree["config"], "base", runs)


def test_a_different_config_or_vocabulary_is_refused(tree, tmp_path):
    runs = _copy_tree(tree, tmp_path)
    lr = write_config(tree["config"], tmp_path / "lr.yaml", lambda d: d["train"]["optimizer"].update(lr=1e-2))
    with pytest.raises(TrainError, match=r"different configuration \(differs in: optimizer\)"):
        train_inprocess(lr, "base", runs)
    vocab = write_config(
        tree["config"], tmp_path / "v.yaml", lambda d: d["train"]["runs"]["base"].update(tokenizer="expanded")
    )
    with pytest.raises(TrainError, match="vocabulary of 300, this run's tokenizer has 520"):
        train_inprocess(vocab, "base", runs)


def test_restart_if_changed_trains_again(tree, tmp_path, capsys):
    """What the pipeline passes: a run dir of a different identity is replaced, not refused (and not reused)."""
    runs = _copy_tree(tree, tmp_path)
    lr = write_config(tree["config"], tmp_path / "lr.yaml", lambda d: d["train"]["optimizer"].update(lr=1e-2))
    with use_runs(runs):
        rc = cli(["--config", str(lr), "--run", "base", "--no-progress", "--restart-if-changed"])
    assert rc == 0
    state = json.loads((runs / PROFILE / "train" / "base" / "final" / "trainer_state.json").read_text())
    assert state["completed"] and not state.get("skipped") and state["start_step"] == 0
    s = train_inprocess(lr, "base", runs)  # same identity now: finished, so skipped
    assert s["skipped"]


def test_a_finished_run_is_skipped(tree):
    s = train_inprocess(tree["config"], "base", tree["runs"])
    assert s["skipped"] and s["completed"]


def _cli(config, run, runs, capsys):
    with use_runs(runs):
        rc = cli(["--config", str(config), "--run", run, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_bad_input_is_one_clear_error(tree, tmp_path, capsys):
    runs = tree["runs"]
    rc, err = _cli(tree["config"], "nope", runs, capsys)
    assert rc == 2 and "train.runs: no run named 'nope' (known: base, cpt, ve)" in err
    nope = write_config(
        tree["config"], tmp_path / "n.yaml", lambda d: d["train"]["runs"]["ve"].update(init="init:no-such-method")
    )
    rc, err = _cli(nope, "ve", runs, capsys)  # stage 03 has not written this initialisation
    assert rc == 2 and "embedding_init/no-such-method: missing" in err and "stage 03" in err
    empty = tmp_path / "runs"
    (empty / PROFILE / "tokenizer").mkdir(parents=True)
    shutil.copytree(runs / PROFILE / "tokenizer" / "base", empty / PROFILE / "tokenizer" / "base")
    rc, err = _cli(tree["config"], "base", empty, capsys)
    assert rc == 2 and "corpus/en/train: missing corpus split" in err and f"make corpus PROFILE={PROFILE}" in err
    rc, err = _cli(tree["config"], "cpt", empty, capsys)  # its init run has not been trained here
    assert rc == 2 and "train/base/final: run 'base'" in err and "train it first" in err
    shutil.rmtree(empty / PROFILE / "tokenizer" / "base")
    rc, err = _cli(tree["config"], "base", empty, capsys)
    assert rc == 2 and "no base tokenizer" in err and f"make tokenizer PROFILE={PROFILE}" in err


def test_config_errors_name_the_key(tree, tmp_path):
    from swallowlib.config import load_config

    bad = write_config(tree["config"], tmp_path / "b.yaml", lambda d: d["train"]["runs"]["cpt"].update(init="run:x"))
    with pytest.raises(ConfigError, match=r"train\.runs\.cpt\.init: no run named 'x'"):
        load_config(bad)


def test_a_finished_run_split_over_other_processes_stands(tmp_path):
    """A finished run trained with the same global batch on another process count (16 GPUs over two nodes, opened
    again from one) is the same training: no error, so --restart-if-changed never deletes it. A killed one, or a
    different global batch, is still refused."""
    from swallowlib.train.engine import check_run_dir

    fields = {"tokens": 100, "world_size": 16, "micro_batch_size": 4, "grad_accum": 16, "seq_len": 8}
    out = tmp_path / "run"
    (out / "checkpoints" / "step-00000001").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"fields": fields}))
    one_process = {**fields, "world_size": 1, "grad_accum": 256}
    with pytest.raises(TrainError, match="written by 16 process"):  # killed: needs its own RNG states and shards
        check_run_dir(out, one_process)
    (out / "final").mkdir()
    (out / "final" / "trainer_state.json").write_text(json.dumps({"step": 1, "completed": True}))
    check_run_dir(out, one_process)  # finished: stands
    with pytest.raises(TrainError, match="this launch has 1"):  # a different global batch: another training
        check_run_dir(out, {**fields, "world_size": 1})
    with pytest.raises(TrainError, match="differs in: grad_accum, tokens, world_size"):
        check_run_dir(out, {**one_process, "tokens": 200})
