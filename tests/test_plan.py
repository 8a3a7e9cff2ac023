"""The dry-run plan (swallowlib.plan): both GPU profiles plan every run without the network, the FLOPs / steps /
GPU-hours arithmetic gives known answers, the 7B profile carries the paper's recipe, the GPU profiles' lm-eval tasks
exist in the installed registry, and the CPU profiles plan from what their runs measured."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from swallowlib import paths, plan
from swallowlib.config import load_config
from swallowlib.eval import harness
from tests.train_helpers import use_runs

GPU_PROFILES = ["tinyllama-1.1b", "llama2-7b"]


def _offline_env(runs) -> dict:
    """Offline Hub flags plus proxies that point at a closed local port: any HTTP(S) request fails at once."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in ("NO_PROXY", "HF_ENDPOINT")}
    dead = "http://127.0.0.1:9"
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HTTPS_PROXY=dead,
               HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead, ALL_PROXY=dead, SWALLOW_RUNS=str(runs),
               PYTHONPATH=str(paths.ROOT))  # fmt: skip
    return env


def _all_runs(cfg) -> list[str]:
    from swallowlib.embedding_init.stage import comparison_runs

    return list(cfg.train.runs) + list(comparison_runs(cfg))


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_gpu_profile_plan_prints_every_run_offline(profile, tmp_path):
    """`make reproduce PROFILE=… DRY_RUN=1` (= `python -m swallowlib.plan`) prints every run and a GPU-hour total with
    the network unreachable."""
    config = paths.config_path(profile)
    if shutil.which("make"):
        cmd = ["make", "-s", "--no-print-directory", "reproduce", f"PROFILE={profile}", "DRY_RUN=1",
               f"PY={sys.executable}"]  # fmt: skip
    else:  # what the make target runs
        cmd = [sys.executable, "-m", "swallowlib.plan", "--config", str(config)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=paths.ROOT, env=_offline_env(tmp_path), timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    cfg = load_config(config)
    for run in _all_runs(cfg):
        assert re.search(rf"^  run {re.escape(run)} \[", out, re.M), f"run {run} missing from the plan"
    total = re.search(r"GPU-hours total ([\d,]+) \(H100, MFU 35%\)", out)
    assert total and int(total.group(1).replace(",", "")) > 0, out[-2000:]
    for stage in ("01 corpus", "02 tokenizer", "03 embedding init", "04 pretrain", "05 eval", "06 analysis"):
        assert stage in out
    for hs in cfg.corpus.hub:  # every Hub source with its budget
        assert hs.dataset in out
    assert "Traceback" not in p.stderr
    # every run's memory estimate, checked against the card the profile is sized for
    assert out.count("memory per process (estimate") == len(cfg.train.runs) + 1  # + the first comparison run
    assert f"Memory: every run fits train.device_memory_gib ({cfg.train.device_memory_gib:g} GiB)" in out
    assert "DOES NOT FIT" not in out


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_plan_in_process_opens_no_socket(profile, tmp_path, monkeypatch):
    """plan() and render() with every way to open a connection or resolve a name made to fail."""

    def deny(*args, **kwargs):
        raise AssertionError(f"the plan tried to use the network: {args!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, deny)
    monkeypatch.setattr(socket, "create_connection", deny)
    monkeypatch.setattr(socket, "getaddrinfo", deny)
    with use_runs(tmp_path):
        p = plan.plan(load_config(paths.config_path(profile)))
        text = plan.render(p)
    assert p["totals"]["gpu_hours"] > 0 and "GPU-hours total" in text
    assert {r["name"] for r in p["runs"]} == set(_all_runs(load_config(paths.config_path(profile))))
    for r in p["runs"]:
        m = r["memory"]
        assert m["check"] is None and 0 < m["gib"] < 0.85 * p["memory"]["device_gib"]
        assert set(m["parts_gib"]) == {"weights", "grads", "optimizer", "activations", "logits", "overhead"}
        assert m["gib"] == pytest.approx(sum(m["parts_gib"].values()), abs=0.05)
    assert p["memory"]["not_fitting"] == [] and p["memory"]["headroom"] == 0.15


def test_plan_flags_runs_that_do_not_fit(tmp_path):
    """TinyLlama at 8 x 2,048 tokens per micro-batch without activation checkpointing (the known failure on an 80 GB
    card): the plan marks the runs and repeats check_fits' line for each."""
    src = paths.config_path("tinyllama-1.1b").read_text(encoding="utf-8")
    assert "micro_batch_size: 4\n" in src and "activation_checkpointing: false" in src
    big = tmp_path / "tinyllama-big.yaml"
    big.write_text(src.replace("micro_batch_size: 4\n", "micro_batch_size: 8\n"))
    with use_runs(tmp_path):
        p = plan.plan(load_config(big))
        text = plan.render(p)
    bad = {r["name"]: r["memory"]["check"] for r in p["runs"] if r["memory"]["check"]}
    assert "cpt-ve" in bad and "scratch-ve" in bad
    assert bad["cpt-ve"].startswith("run cpt-ve: ") and "train.activation_checkpointing: true" in bad["cpt-ve"]
    assert p["memory"]["not_fitting"] == list(bad.values())
    assert f"Memory: {len(bad)} run(s) do NOT fit train.device_memory_gib (80 GiB)" in text
    assert "DOES NOT FIT 80 GiB: run cpt-ve: " in text


def test_known_parameter_counts():
    """The architecture table reproduces the published parameter totals."""
    km = plan.KNOWN_MODELS
    assert plan.param_count(km["meta-llama/Llama-2-7b-hf"]) == 6_738_415_616
    assert plan.param_count(km["meta-llama/Llama-2-13b-hf"]) == 13_015_864_320
    assert plan.param_count(km["TinyLlama/TinyLlama_v1.1"]) == 1_100_048_384
    # The paper's expanded vocabulary adds 11,176 rows to both the input embedding and the LM head.
    assert plan.param_count(km["meta-llama/Llama-2-7b-hf"], 43_176) == 6_738_415_616 + 2 * 11_176 * 4096


def test_flops_steps_hours_known_answers():
    arch = plan.KNOWN_MODELS["meta-llama/Llama-2-7b-hf"]
    per_token, per_token_6n = plan.flops_per_token(arch, 32000, 4096)
    n_no_input_embedding = 6_738_415_616 - 32000 * 4096
    assert per_token_6n == 6 * n_no_input_embedding
    assert per_token == 6 * n_no_input_embedding + 12 * 32 * 4096 * 4096  # + attention scores, forward + backward
    assert plan.gpu_hours(3.6e18, 1e15, 0.5) == pytest.approx(2.0)
    assert plan.total_steps(100_000_000_000, 4096, 1024) == 23_842  # ceil(1e11 / 4,194,304)
    assert plan.total_steps(4096, 64, 4) == 16
    assert plan.milestone_steps([0.2, 0.5, 1.0], 10) == {2: 0.2, 5: 0.5, 10: 1.0}
    assert plan.milestone_steps([0.01, 0.02], 10) == {1: 0.01}  # at least step 1; the first fraction wins
    with pytest.raises(plan.PlanError, match="MFU"):
        plan.gpu_hours(1e18, 1e15, 0.0)


def test_plan_hours_follow_the_overrides(tmp_path):
    """GPU-hours = FLOPs / (peak x MFU); --gpus changes the gradient accumulation, the wall-clock and the memory per
    process (FSDP shards over it), not the global batch or the GPU-hours."""
    cfg = load_config(paths.config_path("llama2-7b"))
    with use_runs(tmp_path):
        a = plan.plan(cfg)
        b = plan.plan(cfg, gpu_tflops=312, mfu=0.5, gpus=8)
    ra, rb = (next(r for r in p["runs"] if r["name"] == "cpt-ve") for p in (a, b))
    assert ra["gpu_hours"] == pytest.approx(ra["flops"] / (989e12 * 0.35) / 3600)
    assert ra["wall_hours"] == pytest.approx(ra["gpu_hours"] / 16)
    assert rb["gpu_hours"] == pytest.approx(rb["flops"] / (312e12 * 0.5) / 3600)
    assert rb["global_batch_seqs"] == 1024 and rb["steps"] == 23_842 and rb["wall_hours"] == rb["gpu_hours"] / 8
    assert (ra["grad_accum"], rb["grad_accum"]) == (16, 32)
    ma, mb = ra["memory"], rb["memory"]
    assert (ma["processes"], mb["processes"]) == (16, 8)
    assert mb["parts_gib"]["optimizer"] == pytest.approx(2 * ma["parts_gib"]["optimizer"], abs=0.01)
    assert a["totals"]["gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in a["runs"]))
    with pytest.raises(plan.PlanError, match="--gpu 'TPU9'"):
        plan.plan(cfg, gpu="TPU9")


def test_llama2_7b_is_the_papers_recipe(tmp_path):
    """cpt-ve: 100B tokens, AdamW 0.9/0.95, eps 1e-8, wd 0.1, clip 1, bf16, 1e-4 -> 3.3e-6 cosine, 1,000 warm-up
    steps, 1,024 x 4,096 tokens per step with the 16 processes the profile assumes (docs/study.md)."""
    cfg = load_config(paths.config_path("llama2-7b"))
    o = cfg.train.optimizer
    assert (o.beta1, o.beta2, o.eps, o.weight_decay, o.grad_clip) == (0.9, 0.95, 1e-8, 0.1, 1.0)
    assert cfg.train.precision == "bf16" and cfg.train.model.pretrained == "meta-llama/Llama-2-7b-hf"
    assert cfg.tokenizer.base == "llama2" and cfg.tokenizer.ja_vocab == cfg.tokenizer.analysis_ja_vocab == 16000
    with use_runs(tmp_path):
        p = plan.plan(cfg)
    r = next(r for r in p["runs"] if r["name"] == "cpt-ve")
    assert r["tokens"] == 100_000_000_000 and r["init"] == "init:mean-of-pieces" and r["tokenizer"] == "expanded"
    assert r["mix"] == {"ja": 0.9, "en": 0.1}
    assert (r["lr"], r["min_lr_ratio"], r["warmup_steps"]) == (1e-4, 0.033, 1000)
    assert r["min_lr"] == pytest.approx(3.3e-6)
    assert r["processes"] == 16 and r["global_batch_seqs"] == 1024 and r["seq_len"] == 4096
    assert r["tokens_per_step"] == 1024 * 4096 and r["steps"] == 23_842
    assert [c["fraction"] for c in r["checkpoints"]] == [0.2, 0.4, 0.6, 0.8, 1.0]


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_gpu_profiles_are_hub_profiles(profile):
    cfg = load_config(paths.config_path(profile))
    assert not cfg.offline and cfg.corpus.hub and cfg.train.model.pretrained
    assert {h.language for h in cfg.corpus.hub} == {"ja", "en"} and all(h.licence for h in cfg.corpus.hub)
    assert set(cfg.corpus.eval_sources) and set(cfg.corpus.parallel_sources)  # Debian held-out material kept
    assert "base" not in cfg.train.runs  # the pretrained model is the base


_TM: list = []


def _registry():
    if not _TM:
        _TM.append(harness.task_manager(None, registry=True))
    return _TM[0]


@pytest.mark.parametrize("profile", GPU_PROFILES)
def test_gpu_profiles_harness_tasks_in_registry(profile):
    """Every lm-eval task a GPU profile names exists in the installed registry (offline), with the paper's shots
    where the paper ran the task."""
    tasks = load_config(paths.config_path(profile)).eval.harness_tasks
    harness.check_harness_tasks(list(tasks), _registry())
    # (JGLUE, JAQKET, MGSM and xwinograd_en are left out: their datasets are loading scripts the pinned datasets
    # refuses — the config says so — and none of what stays is one)
    paper = {"ja_leaderboard_xlsum": 1, "ja_leaderboard_xwinograd": 0}
    assert {k: tasks[k] for k in paper} == paper
    for en in ("openbookqa", "triviaqa", "hellaswag", "squadv2", "gsm8k"):
        assert tasks[en] == 8, en  # the Swallow (Llama 2) model cards: English tasks 8-shot
    problems = harness.check_task_loading(list(tasks), _registry(), network=False)
    # squadv2's metric script comes from the Hub at scoring time: only an offline machine without its cache objects
    assert [p for p in problems if not p.startswith("squadv2")] == [], problems


@pytest.mark.parametrize("profile", ["tiny", "smoke"])
def test_cpu_profiles_plan_tokens_and_steps(profile, tmp_path):
    """CPU profiles: tokens and steps, GPU-hours n/a, CPU time n/a until a run of the profile has been measured."""
    cfg = load_config(paths.config_path(profile))
    with use_runs(tmp_path):
        p = plan.plan(cfg)
        text = plan.render(p)
    assert p["device"] == "cpu" and p["totals"]["gpu_hours"] is None and p["totals"]["cpu_hours"] is None
    tc = cfg.train
    base = next(r for r in p["runs"] if r["name"] == "base")
    assert base["steps"] == -(-tc.runs["base"].tokens // (tc.seq_len * tc.batch_size))
    assert base["vocab"] == cfg.tokenizer.base_vocab and base["stage"] == "03 (base)"
    assert "GPU-hours total n/a" in text and "run cpt-ve [stage 04]" in text
    # milestones as the engine saves them: the train-wide fractions, or a run's own (the init comparison: its end only)
    cpt = next(r for r in p["runs"] if r["name"] == "cpt-ve")
    assert [c["fraction"] for c in cpt["checkpoints"]] == tc.checkpoint_fractions
    cmp_runs = [r for r in p["runs"] if r["name"].startswith("init-cmp-")]
    assert cmp_runs and all([c["fraction"] for c in r["checkpoints"]] == [1.0] for r in cmp_runs)
    with use_runs(tmp_path):  # an explicit card makes an estimate for any profile
        assert plan.plan(cfg, gpu="A100")["totals"]["gpu_hours"] > 0


def test_cpu_profile_uses_what_the_runs_and_stages_measured(tmp_path):
    """A finished run's wall time, other runs at the measured throughput, the merged vocabulary, and epochs from
    stage 01's characters and stage 02's characters per token."""
    cfg = load_config(paths.config_path("tiny"))
    prof = tmp_path / "tiny"
    final = prof / "train" / "cpt-ve" / "final"
    final.mkdir(parents=True)
    final.joinpath("trainer_state.json").write_text(json.dumps({"wall_s": 90.0, "tokens_per_s": 4000.0,
                                                                "completed": True}))  # fmt: skip
    (prof / "tokenizer").mkdir(parents=True)
    (prof / "tokenizer" / "merge.json").write_text(json.dumps({"expanded": {"final_size": 11592}}))
    rows = ["tokenizer,domain,lang,chars_per_token"] + [
        f"{t},{lang}: held-out (test split),{lang},{v}"
        for t, lang, v in (("base", "ja", 0.5), ("base", "en", 4.0), ("expanded", "ja", 2.0), ("expanded", "en", 4.0))
    ]  # fmt: skip
    (prof / "tokenizer" / "efficiency.csv").write_text("\n".join(rows) + "\n")
    (prof / "corpus").mkdir()
    (prof / "corpus" / "report.json").write_text(json.dumps({"sizes": {
        "ja": {"train": {"docs": 10, "chars": 4_000_000}}, "en": {"train": {"docs": 10, "chars": 8_000_000}},
        "parallel": {"train": {"pairs": 1000, "chars_en": 400_000, "chars_ja": 200_000}}}}))  # fmt: skip
    with use_runs(tmp_path):
        p = plan.plan(cfg)
        text = plan.render(p)
    runs = {r["name"]: r for r in p["runs"]}
    assert runs["cpt-ve"]["cpu_hours"] == pytest.approx(90.0 / 3600)
    nve = runs["cpt-nve"]
    assert nve["cpu_hours"] == pytest.approx(nve["tokens_trained"] / 4000.0 / 3600)
    assert runs["cpt-ve"]["vocab"] == 11592 and runs["cpt-nve"]["vocab"] == 8000
    # expanded: 4M ja chars / 2.0 = 2M tokens; cpt-ve reads 0.9 x 400k of them
    assert runs["cpt-ve"]["epochs"]["ja"] == pytest.approx(0.9 * 400_000 / 2_000_000)
    assert nve["epochs"]["ja"] == pytest.approx(0.9 * 400_000 / 8_000_000)  # base tokenizer: 0.5 chars per token
    fixed = sum(len(t.replace("{en}", "").replace("{ja}", "")) for t in cfg.train.parallel_template)
    par_tokens = 2 * (400_000 / 4.0 + 200_000 / 2.0) + 1000 * fixed / 4.0
    assert runs["cpt-ve-para"]["epochs"]["parallel"] == pytest.approx(0.09 * 400_000 / par_tokens)
    assert p["totals"]["cpu_hours"] is not None and "measured: the finished run's wall time" in text


def test_unknown_base_model_is_one_clear_error(tmp_path, capsys, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):  # main() sets them: restore after
        monkeypatch.setenv(var, "1")
    src = paths.config_path("tinyllama-1.1b").read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.replace("pretrained: TinyLlama/TinyLlama_v1.1", "pretrained: someone/unknown-7b"))
    with pytest.raises(plan.PlanError, match=r"train.model.pretrained: 'someone/unknown-7b'.*KNOWN_MODELS"):
        plan.plan(load_config(bad))
    assert plan.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "someone/unknown-7b" in err[0]
