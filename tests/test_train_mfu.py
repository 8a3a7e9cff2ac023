"""MFU (swallowlib.train.mfu): the peak is the best of N samples (max over samples, shapes, before/after), MFU is at
most 1 by construction (above the peak: no number, "> measured peak, peak unreliable"), every printed MFU names its
peak, the FLOPs-per-token formula has a hand-derived known answer, and the engine logs and records the same peak.
Fakes stand in for the timer and the matmul: nothing here asserts a timing."""

import importlib.util
import json

import pytest
import torch

from swallowlib import paths
from swallowlib.config import ModelConfig, OptimizerConfig
from swallowlib.train import mfu
from swallowlib.train import model as modeling
from tests.train_helpers import use_runs

# The toy model of the known answers: d=32, 2 layers, 4 heads of 8 (no GQA), SwiGLU 64, vocabulary 100, untied.
TOY = ModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64)
VOCAB, SEQ = 100, 64


def _toy_config():
    return modeling.llama_config(TOY, VOCAB)


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)


# --- the peak: best of N ------------------------------------------------------------------------------------------


def test_time_matmul_reports_every_sample_from_the_timer():
    flops = 2.0 * 4 * 5 * 6
    # warm-up 0 -> 1 s (>= MIN_SAMPLE_S: one matmul per sample), then samples of 2 s, 1 s, 4 s
    ticks = iter([0.0, 1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 8.0])
    calls = []
    rates = mfu.time_matmul((4, 5, 6), reps=3, timer=lambda: next(ticks), run=lambda: calls.append(1))
    assert rates == [flops / 2, flops / 1, flops / 4]
    assert len(calls) == 1 + 3  # the warm-up, then one per sample


def test_short_matmuls_are_repeated_within_a_sample():
    # warm-up of MIN_SAMPLE_S / 4: each sample runs the matmul 4 times, and its rate counts all 4
    ticks = iter([0.0, mfu.MIN_SAMPLE_S / 4, 10.0, 10.0 + 4e-3])
    calls = []
    rates = mfu.time_matmul((2, 2, 2), reps=1, timer=lambda: next(ticks), run=lambda: calls.append(1))
    assert len(calls) == 1 + 4
    assert rates == [pytest.approx(4 * 16 / 4e-3)]


def test_the_peak_is_the_best_sample_of_the_best_shape(two_threads):
    samples = {(64, 32, 100): [50e9, 104.2e9, 75e9, 90e9, 10e9], (64, 32, 32): [120e9 * 0.5, 80e9, 1e9, 2e9, 3e9]}
    seen = []

    def sampler(shape):
        seen.append(shape)
        return samples[shape]

    p = mfu.measured_peak(list(samples), reps=5, sampler=sampler, what="the model's 2 GEMM shapes")
    assert seen == list(samples)  # every shape measured, once, in the given order
    assert p["flops"] == 104.2e9  # max over samples and shapes, not a mean or the last one
    assert p["per_shape"] == {"64x32x100": 104.2e9, "64x32x32": 80e9}
    assert p["shape"] == [64, 32, 100] and p["reps"] == 5 and p["threads"] == 2 and p["kind"] == "measured"
    assert mfu.describe(p) == (
        "peak: measured best of 5, 64x32x100 fp32 matmul (best of the model's 2 GEMM shapes), 2 threads, 104.2 GFLOP/s"
    )


def test_before_and_after_combine_to_the_larger(two_threads):
    before = mfu.measured_peak([(8, 8, 8)], sampler=lambda s: [80e9])
    after = mfu.measured_peak([(8, 8, 8)], sampler=lambda s: [90e9, 85e9])
    p = mfu.combine(before, after)
    assert p["flops"] == 90e9 and (p["before"], p["after"]) == (80e9, 90e9)
    assert mfu.describe(p) == (
        "peak: measured best of 5 before + 5 after the timed steps (max: after), 8x8x8 fp32 matmul, 2 threads, "
        "90.0 GFLOP/s"
    )
    assert mfu.combine(after, before)["flops"] == 90e9


def test_gemm_shapes_are_the_models_linear_layers_forward_and_backward():
    # tokens T=256; linears d->d (q, k, v, o), d->I, I->d, d->V; each as (T, in, out), (T, out, in), (out, T, in)
    T = 256
    expected = {
        (T, 32, 32), (32, T, 32),  # q, k, v, o: forward = input gradient
        (T, 32, 64), (T, 64, 32), (64, T, 32), (32, T, 64),  # gate/up and down
        (T, 32, 100), (T, 100, 32), (100, T, 32),  # LM head
    }  # fmt: skip
    shapes = mfu.gemm_shapes(_toy_config(), T)
    assert set(shapes) == expected and len(shapes) == len(expected)
    flops = [m * k * n for m, k, n in shapes]
    assert flops == sorted(flops, reverse=True)  # largest first
    big = mfu.gemm_shapes(modeling.llama_config(ModelConfig(), 32000), 8 * 2048)
    assert max(max(s) for s in big) == mfu.MAX_DIM  # capped so that measuring stays cheap


def test_the_peak_shapes_include_a_reference_so_a_tiny_model_cannot_outrun_them(two_threads):
    shapes, what = mfu.peak_shapes(_toy_config(), 256)
    assert shapes == [*mfu.gemm_shapes(_toy_config(), 256), mfu.REFERENCE_SHAPE]
    assert what == "the model's 9 GEMM shapes and a 1024x1024x1024 reference"
    rates = {s: [1e9] for s in shapes} | {mfu.REFERENCE_SHAPE: [3e9, 70e9]}
    p = mfu.measured_peak(shapes, sampler=rates.get, what=what)
    assert p["flops"] == 70e9 and mfu.describe(p) == (
        "peak: measured best of 5, 1024x1024x1024 fp32 matmul (best of the model's 9 GEMM shapes and a "
        "1024x1024x1024 reference), 2 threads, 70.0 GFLOP/s"
    )


def test_a_real_measurement_moves_no_global_rng_state():
    state = torch.random.get_rng_state()
    p = mfu.measured_peak([(16, 16, 16)], reps=2)
    assert p["flops"] > 0 and torch.equal(state, torch.random.get_rng_state())


# --- MFU: at most 1, and named -------------------------------------------------------------------------------------


@pytest.mark.parametrize("peak", [1.0, 82.8e9, 101.9e9, 989e12])
def test_mfu_is_never_above_one(peak):
    for frac in (0.0, 1e-6, 0.3, 0.999999, 1.0):
        value = mfu.utilisation(frac * peak, peak)
        assert value is not None and 0 <= value <= 1
    for frac in (1.000001, 1.085, 1.23, 10.0):  # achieved above the peak: no MFU at all, never a clamped 1.0
        assert mfu.utilisation(frac * peak, peak) is None
    with pytest.raises(ValueError):
        mfu.utilisation(1.0, 0.0)


def test_printed_mfu_names_its_peak(two_threads):
    p = mfu.measured_peak([(2048, 256, 2048)], sampler=lambda s: [100e9])
    named = "peak: measured best of 5, 2048x256x2048 fp32 matmul, 2 threads, 100.0 GFLOP/s"
    assert mfu.format_mfu(mfu.utilisation(42e9, p["flops"]), 42e9, p) == f"MFU 42.0% ({named})"
    assert mfu.format_mfu(mfu.utilisation(110e9, p["flops"]), 110e9, p) == (
        f"MFU > measured peak, peak unreliable (achieved 110.0 GFLOP/s = 1.10 x the {named})"
    )
    sheet = {"flops": 989e12, "kind": "datasheet", "source": "datasheet bf16 dense peak (H100)"}
    assert mfu.describe(sheet) == "peak: datasheet bf16 dense peak (H100), 989.0 TFLOP/s"
    assert mfu.format_mfu(None, 1000e12, sheet).startswith("MFU > datasheet peak, peak unreliable")


# --- the theoretical cross-check ---------------------------------------------------------------------------------


def _cpuinfo(vendor, family, flags, mhz=2596.138, cores=2, processors=2):
    one = (
        "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: X\ncpu MHz\t\t: {mhz}\n"
        "physical id\t: 0\ncpu cores\t: {cores}\nflags\t\t: {flags}\n\n"
    )
    return "".join(
        one.format(i=i, vendor=vendor, family=family, mhz=mhz, cores=cores, flags=flags) for i in range(processors)
    )


def test_theoretical_peak_from_cpuinfo():
    zen4 = _cpuinfo("AuthenticAMD", 25, "fpu fma avx avx2 avx512f avx512bw")
    t = mfu.theoretical_cpu_peak(zen4, threads=2)
    assert t["flops"] == pytest.approx(2 * 2596.138e6 * 32)  # 2 FMA pipes x 8 fp32 lanes (256-bit) x 2
    assert t["source"].startswith("theoretical estimate: 2 cores x 2596 MHz x 32 fp32 FLOP/cycle")
    assert mfu.theoretical_cpu_peak(zen4, threads=1)["flops"] == pytest.approx(2596.138e6 * 32)
    intel = _cpuinfo("GenuineIntel", 6, "fma avx2 avx512f", mhz=2000.0, cores=4, processors=8)  # 4 cores, SMT
    assert mfu.theoretical_cpu_peak(intel, threads=8)["flops"] == pytest.approx(4 * 2000e6 * 64)
    avx2 = _cpuinfo("GenuineIntel", 6, "fma avx avx2", mhz=3000.0, cores=1, processors=1)
    assert mfu.theoretical_cpu_peak(avx2, threads=4)["flops"] == pytest.approx(3000e6 * 32)
    assert mfu.theoretical_cpu_peak(_cpuinfo("GenuineIntel", 6, "sse2 avx"), threads=2) is None
    assert mfu.theoretical_cpu_peak("no cpu here", threads=2) is None
    measured = {"flops": 0.5 * t["flops"]}
    assert mfu.cross_check(measured, t).endswith("measured = 50% of it")
    assert "not a bound" in mfu.cross_check({"flops": 2 * t["flops"]}, t)


# --- FLOPs per token: the known answer -------------------------------------------------------------------------------


def test_flops_per_token_known_answer():
    """By hand, for the toy model at seq_len T=64:

    matmul weights per layer: q, k, v, o 4 x 32x32 = 4,096; gate, up, down 3 x 32x64 = 6,144; so 10,240 x 2 layers
    = 20,480, + LM head 100x32 = 3,200 -> 23,680. RMSNorm scales: 2 x 32 per layer + 32 final = 160. N (every
    parameter but the input embedding, whose lookup is no matmul) = 23,840 — the LM head counted once.
    6N = 143,040 (forward 2N, backward 4N). Attention: QK^T and AV, 2·T·d each per token and layer, x3 for the
    backward: 12·L·d·T = 12·2·32·64 = 49,152 (the full T x T square, as PaLM). Total 192,192 FLOPs per token.
    """
    cfg = _toy_config()
    assert modeling.flops_per_token(cfg, SEQ) == 192_192
    m = modeling.scratch_model(cfg, seed=0)
    assert modeling.count_params(m) == {"total": 27_040, "trainable": 27_040, "non_embedding": 23_840}
    # An independent count: torch's FlopCounterMode over one forward and backward with eager attention (plain
    # matmuls, full square, so counted). It sees the matmuls only: 6 x 23,680 + 49,152 = 191,232, i.e. the formula
    # minus the 6 x 160 of the norm scales (counted by the 6N convention, 0.5% here, 0.04% in the tiny profile):
    # nothing is double counted and the embedding lookup is not counted as a matmul.
    from torch.utils.flop_counter import FlopCounterMode

    m.config._attn_implementation = "eager"
    x = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fc:
        m(input_ids=x).logits.sum().backward()
    assert fc.get_total_flops() / SEQ == 191_232 == 192_192 - 6 * 160


# --- the engine and the benchmark use it ---------------------------------------------------------------------------


def _engine_run(tmp_path, monkeypatch, peak_flops: float) -> tuple[list[dict], dict]:
    from swallowlib.train.data import Mixture, synthetic_source
    from swallowlib.train.engine import Job, make_accelerator, train

    seen = {}

    def fake_peak(device_type, config, tokens):
        seen["args"] = (device_type, config.hidden_size, tokens)
        return {"flops": peak_flops, "kind": "measured", "source": "measured best of 5, fake", "reps": 5}

    monkeypatch.setattr(mfu, "peak", fake_peak)
    seq, micro, steps = 16, 2, 4
    src = synthetic_source(steps * micro * seq + seq + 1, VOCAB, seq, seed=0)
    job = Job(
        name="mfu", out_dir=tmp_path / "out", data=Mixture({"en": src}, {"en": 1.0}, seed=0),
        tokens=steps * micro * seq, seq_len=seq, micro_batch_size=micro, batch_size=micro,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1), model_init="scratch",
        model_config=modeling.llama_config(TOY, VOCAB), tokenizer_size=VOCAB, precision="fp32",
        checkpoint_fractions=[1.0], save_every_steps=steps, log_every_steps=1, progress=False,
    )  # fmt: skip
    with use_runs(tmp_path / "runs"):
        train(job, make_accelerator("fp32", cpu=True))
    assert seen["args"] == ("cpu", 32, micro * seq)  # the model's shapes at one micro-batch
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    return [r for r in rows if "mfu" in r], prov


def test_engine_logs_mfu_against_the_recorded_peak(tmp_path, monkeypatch):
    rows, prov = _engine_run(tmp_path / "a", monkeypatch, peak_flops=1e18)  # far above anything a CPU reaches
    assert prov["peak_flops_per_device"]["source"] == "measured best of 5, fake"
    assert rows and all(0 < r["mfu"] <= 1 and "mfu_note" not in r for r in rows)
    rows, _ = _engine_run(tmp_path / "b", monkeypatch, peak_flops=1.0)  # 1 FLOP/s: every row is above it
    assert rows and all(r["mfu"] is None for r in rows)
    assert all(r["mfu_note"].startswith(f"MFU {mfu.OVER_PEAK} (achieved ") for r in rows)
    assert all("peak: measured best of 5, fake, 0.0 GFLOP/s" in r["mfu_note"] for r in rows)


def _bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", paths.ROOT / "benchmarks" / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_rows_name_the_peak_and_never_exceed_one(two_threads):
    bench = _bench_train()
    p = mfu.measured_peak([(2048, 256, 2048)], sampler=lambda s: [100e9])
    (ok,) = bench._mfu_rows("engine", 50e9, p, baseline=True)
    assert ok["metric"] == "MFU (median step)" and ok["value"] == 0.5 and ok["baseline"]
    assert ok["unit"] == f"fraction of the {mfu.describe(p)}"
    (over,) = bench._mfu_rows("engine", 123e9, p, baseline=True)
    assert over["value"] == "n/a" and over["metric"] == f"MFU (median step): {mfu.OVER_PEAK}"
    assert not over["baseline"]  # so the table never divides by it
    assert over["unit"] == f"achieved = 1.23 x the {mfu.describe(p)}"
    assert bench._median_mfu([{"mfu": 0.2}, {"mfu": 0.3}, {"mfu": None}]) == 0.3
    assert bench._median_mfu([{"mfu": 0.2}, {"mfu": None}, {"mfu": None}]) == mfu.OVER_PEAK
    assert bench._median_mfu([{"mfu": 1.2}]) == mfu.OVER_PEAK  # a run logged before the fix


def test_report_median_mfu_ranks_unreliable_rows_above_the_peak():
    import pandas as pd

    from swallowlib.train import report

    assert report._median_mfu(pd.Series([0.2, 0.3, None])) == 0.3
    assert pd.isna(report._median_mfu(pd.Series([0.2, None, None])))
    assert pd.isna(report._median_mfu(pd.Series([1.085, 1.23, 1.1])))  # an old run's MFUs above 1: no median
