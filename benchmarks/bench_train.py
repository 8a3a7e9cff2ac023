"""Stage 04 benchmarks: training throughput of the engine against a plain transformers loop on the profile's model
shape (tiny: d=256, 4 layers, seq 256, batch 8), measured side by side in one process; MFU against this machine's
fp32 matmul peak measured in the same process right before and right after the timed steps (best of 5 on each of
the model's GEMM shapes and a 1024^3 reference, the larger of the two; :mod:`swallowlib.train.mfu`), with the CPU's
theoretical peak as a cross-check; memory growth over steps; the recorded metrics of the profile's finished runs;
and the peak memory of tokenising a split into the token cache at two corpus sizes (it should not grow with the size).

Every MFU row names its peak; an achieved rate above the peak is reported as "> measured peak, peak unreliable",
never as an MFU above 1.

The baseline is what a plain loop does: ``model(input_ids, labels=input_ids)`` (transformers shifts the labels and
computes the loss), ``torch.optim.AdamW`` with its default (per-tensor, non-fused on CPU) implementation, the same
hyper-parameters, clipping and LR schedule, on the same packed batches. The engine variants run
:meth:`swallowlib.train.engine.Trainer.step` — the very step of every training run — eager and with
``torch.compile``. Variants alternate in short rounds so that load from other processes hits them all alike.

Tokens are the profile's real English training split (tokenised into the shared cache when needed), or synthetic
when the corpus/tokenizer are not built. Run: ``python -m swallowlib.bench --profile tiny train``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import psutil
import torch

from swallowlib import paths
from swallowlib.config import load_config
from swallowlib.train import data as tdata
from swallowlib.train import mfu
from swallowlib.train import model as modeling
from swallowlib.train.engine import Job, Trainer, make_accelerator
from swallowlib.train.optim import build_scheduler

PROFILE = os.environ.get("SWALLOW_BENCH_PROFILE", "smoke")
ROUNDS = 8  # alternations of the variants
STEPS_PER_ROUND = 4
GROWTH_STEPS = 60  # steps of the memory-growth check


def _row(bench, variant, metric, value, unit, baseline=False):
    return {
        "benchmark": bench,
        "variant": variant,
        "metric": metric,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "profile": PROFILE,
    }


def _tokens(cfg) -> tuple[tdata.PackedSource, int, str]:
    """(English training sequences, vocabulary size, where they came from)."""
    tc = cfg.train
    tok_dir = paths.run_dir(PROFILE) / "tokenizer" / "base"
    split = paths.corpus_split_dir(PROFILE, "en", "train")
    if (tok_dir / "tokenizer.json").is_file() and any(split.glob("*.parquet")):
        from swallowlib.tokenizer.export import load_hf

        tok = load_hf(tok_dir)
        src = tdata.load_packed(
            split, tok_dir, seq_len=tc.seq_len, cache_dir=paths.token_cache_dir(PROFILE), eos_id=tok.eos_token_id,
            vocab_size=len(tok), num_proc=tc.num_proc, name="en",
        )  # fmt: skip
        return src, len(tok), f"runs/{PROFILE} English training split"
    vocab = 8000
    return tdata.synthetic_source(400 * tc.seq_len * tc.micro_batch_size, vocab, tc.seq_len), vocab, "synthetic"


def bench_throughput() -> list[dict]:
    """Tokens/s and MFU: plain transformers loop (baseline) vs the engine's step, eager and compiled."""
    cfg = load_config(PROFILE)
    tc = cfg.train
    src, vocab, origin = _tokens(cfg)
    mixture = tdata.Mixture({"en": src}, {"en": 1.0}, seed=0)
    model_cfg = modeling.llama_config(tc.model, vocab)
    acc = make_accelerator("fp32")
    tokens_per_step = tc.batch_size * tc.seq_len
    accum = tc.batch_size // tc.micro_batch_size  # one process
    total = 10**6  # the schedule's horizon: long enough that the LR is still near its peak

    def job(compile_: bool) -> Job:
        return Job(
            name="bench", out_dir=Path(tempfile.gettempdir()), data=mixture, tokens=total * tokens_per_step,
            seq_len=tc.seq_len, micro_batch_size=tc.micro_batch_size, batch_size=tc.batch_size,
            optimizer=tc.optimizer, model_init="scratch", model_config=model_cfg, tokenizer_size=vocab,
            precision="fp32", compile=compile_,
        )  # fmt: skip

    # --- baseline: a plain transformers training loop
    base_model = modeling.scratch_model(modeling.llama_config(tc.model, vocab), seed=0)
    base_model.train()
    o = tc.optimizer
    base_opt = torch.optim.AdamW(
        base_model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay
    )
    base_sched = build_scheduler(base_opt, warmup_steps=o.warmup_steps, total_steps=total, min_lr_ratio=o.min_lr_ratio)

    def baseline_step(step: int) -> None:
        for a in range(accum):
            x = torch.from_numpy(mixture.batch(tdata.step_indices(step, a, 0, 1, tc.micro_batch_size, accum)))
            x = x[:, :-1]
            out = base_model(input_ids=x, labels=x)
            (out.loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(base_model.parameters(), o.grad_clip)
        base_opt.step()
        base_sched.step()
        base_opt.zero_grad()

    eager, compiled = Trainer(job(False), acc, total), Trainer(job(True), acc, total)
    variants = {
        "plain transformers loop (labels=, torch AdamW)": baseline_step,
        "engine step, eager (fused AdamW, shifted windows)": eager.step,
        "engine step, torch.compile (forward + loss)": compiled.step,
    }
    warm = {}
    for name, fn in variants.items():  # warm-up (and compilation) outside the timed rounds
        t0 = time.perf_counter()
        fn(0)
        fn(1)
        warm[name] = time.perf_counter() - t0
    # The peak, measured now (after warm-up and compilation, right before the timed rounds) and again right after
    # them; MFU is against the larger. A cached or earlier peak, measured under another load, gave MFUs above 1.
    shapes, what = mfu.peak_shapes(model_cfg, tc.micro_batch_size * tc.seq_len)
    before = mfu.measured_peak(shapes, what=what)
    # Each step is timed; tokens/s comes from the median step time, which a burst of load from another process on
    # this shared machine does not move (the mean is reported too, for comparison).
    times: dict[str, list[float]] = {name: [] for name in variants}
    step = 2
    for _ in range(ROUNDS):
        for name, fn in variants.items():
            for i in range(STEPS_PER_ROUND):
                t0 = time.perf_counter()
                fn(step + i)
                times[name].append(time.perf_counter() - t0)
        step += STEPS_PER_ROUND
    peak = mfu.combine(before, mfu.measured_peak(shapes, what=what))
    theoretical = mfu.theoretical_cpu_peak()
    flops = modeling.flops_per_token(model_cfg, tc.seq_len)
    shape = (
        f"d={tc.model.hidden_size} L={tc.model.num_layers} vocab={vocab} "
        f"batch {tc.micro_batch_size}x{tc.seq_len}, {torch.get_num_threads()} threads"
    )
    rows = [_row("train.throughput", f"setup: {shape}; tokens: {origin}", "steps timed per variant",
                 ROUNDS * STEPS_PER_ROUND, "steps")]  # fmt: skip
    for i, name in enumerate(variants):
        med = sorted(times[name])[len(times[name]) // 2]
        tps, mean_tps = tokens_per_step / med, tokens_per_step * len(times[name]) / sum(times[name])
        rows.append(_row("train.throughput", name, "tokens/s (median step)", tps, "tokens/s", baseline=i == 0))
        rows.append(_row("train.throughput", name, "tokens/s (mean step)", mean_tps, "tokens/s", baseline=i == 0))
        rows.append(_row("train.throughput", name, "model GFLOP/s (median step)", tps * flops / 1e9, "GFLOP/s",
                         baseline=i == 0))  # fmt: skip
        rows.extend(_mfu_rows(name, tps * flops, peak, baseline=i == 0))
    first_two = list(warm.values())
    rows.append(_row("train.throughput", "torch.compile", "compile time (first 2 steps - eager's)",
                     first_two[2] - first_two[1], "s"))  # fmt: skip
    rows.append(_row("train.throughput", mfu.describe(peak), "peak used for MFU", peak["flops"] / 1e9, "GFLOP/s"))
    for when in ("before", "after"):
        rows.append(_row("train.throughput", f"measured best of {peak['reps']}, {when} the timed steps",
                         "peak", peak[when] / 1e9, "GFLOP/s"))  # fmt: skip
    if theoretical is not None:
        rows.append(_row("train.throughput", f"cross-check, not used: {mfu.cross_check(peak, theoretical)}",
                         "theoretical peak", theoretical["flops"] / 1e9, "GFLOP/s"))  # fmt: skip
    rows.append(_row("train.throughput", "model FLOPs per token (6N + 12 L d T)", "FLOPs", flops, "FLOP/token"))

    # --- memory: the compiled engine alone for GROWTH_STEPS more steps; RSS at step 10 vs the last
    proc = psutil.Process()
    rss = {}
    for i in range(GROWTH_STEPS):
        compiled.step(step + i)
        if i + 1 in (10, GROWTH_STEPS):
            rss[i + 1] = proc.memory_info().rss / 2**20
    rows.append(_row("train.memory", "engine, compiled", "RSS after 10 steps", rss[10], "MB"))
    rows.append(_row("train.memory", "engine, compiled", f"RSS after {GROWTH_STEPS} steps", rss[GROWTH_STEPS], "MB"))
    rows.append(_row("train.memory", "engine, compiled", f"growth steps 10 -> {GROWTH_STEPS}",
                     rss[GROWTH_STEPS] - rss[10], "MB"))  # fmt: skip
    return rows


def _mfu_rows(variant: str, achieved: float, peak: dict, baseline: bool = False) -> list[dict]:
    """The MFU row of one variant: a fraction of the named peak (at most 1), or, when the achieved rate is above
    the peak, a row saying so (no number; its own metric, so the table's ratio to the baseline skips it)."""
    value = mfu.utilisation(achieved, peak["flops"])
    if value is None:
        return [_row("train.throughput", variant, f"MFU (median step): {mfu.OVER_PEAK}", "n/a",
                     f"achieved = {achieved / peak['flops']:.2f} x the {mfu.describe(peak)}")]  # fmt: skip
    return [_row("train.throughput", variant, "MFU (median step)", value, f"fraction of the {mfu.describe(peak)}",
                 baseline=baseline)]  # fmt: skip


def _median(rows: list[dict], key: str) -> float:
    return sorted(r[key] for r in rows)[len(rows) // 2] if rows else float("nan")


def _median_mfu(rows: list[dict]) -> float | str:
    """Median of the logged MFUs; a null MFU (above the run's peak) ranks above every number."""
    vals = sorted(float("inf") if r.get("mfu") is None else r["mfu"] for r in rows)
    if not vals:
        return float("nan")
    med = vals[len(vals) // 2]
    return med if med <= 1 else mfu.OVER_PEAK


def bench_runs() -> list[dict]:
    """The profile's finished training runs, from their own metrics (wall time, tokens/s, MFU, peak RSS)."""
    rows = []
    root = paths.train_dir(PROFILE)
    if not root.is_dir():
        return rows
    for run_dir in sorted(p for p in root.iterdir() if (p / "final" / "trainer_state.json").is_file()):
        state = json.loads((run_dir / "final" / "trainer_state.json").read_text())
        ms = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        tr = [r for r in ms if "event" not in r][1:]  # the first interval holds start-up and compilation
        name = f"run {run_dir.name} ({state['total_steps']} steps, {state['tokens']:,} tokens)"
        rows.append(_row("train.runs", name, "training wall time", state["elapsed_s"], "s"))
        rows.append(_row("train.runs", name, "median tokens/s", _median(tr, "tokens_per_s"), "tokens/s"))
        prov_path = run_dir / "provenance.json"
        pk = json.loads(prov_path.read_text()).get("peak_flops_per_device", {}) if prov_path.is_file() else {}
        of = f"fraction of the {mfu.describe(pk)}" if "source" in pk else "fraction of an unrecorded peak"
        rows.append(_row("train.runs", name, "median MFU", _median_mfu(tr), of))
        rows.append(_row("train.runs", name, "final train loss", state["final_loss"], "nats/token"))
        rows.append(
            _row(
                "train.runs", name, "peak RSS of the run", max(r["peak_rss_mb"] for r in ms if "peak_rss_mb" in r), "MB"
            )
        )
    return rows


_TOKENISE = """
import json, resource, sys, time
from pathlib import Path
from swallowlib.train import data as tdata
from swallowlib.tokenizer.export import load_hf
split, tok_dir, cache = (Path(a) for a in sys.argv[1:4])
tok = load_hf(tok_dir)
t = time.perf_counter()
src = tdata.load_packed(split, tok_dir, seq_len=256, cache_dir=cache, eos_id=tok.eos_token_id, vocab_size=len(tok))
print(json.dumps({"tokens": len(src.stream), "s": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_tokenise() -> list[dict]:
    """Peak RSS and tokens/s of tokenising a synthetic English split into token shards, at 1x and 4x the documents,
    each in a fresh process (the profile's base tokenizer; nothing when it is not built)."""
    import random
    import subprocess
    import sys

    import pandas as pd

    tok_dir = paths.run_dir(PROFILE) / "tokenizer" / "base"
    if not (tok_dir / "tokenizer.json").is_file():
        return []
    rng = random.Random(0)
    words = [w for w in Path(__file__).read_text().split() if w.isalpha()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tokenise-") as tmp:
        for scale in (1, 4):
            split = Path(tmp) / f"x{scale}" / "en" / "train"
            split.mkdir(parents=True)
            for shard in range(2 * scale):  # 2 shards of 10,000 documents of ~150 words per 1x
                docs = [" ".join(rng.choices(words, k=150)) for _ in range(10_000)]
                pd.DataFrame({"id": range(len(docs)), "text": docs}).to_parquet(split / f"{shard:05d}.parquet")
            out = subprocess.run([sys.executable, "-c", _TOKENISE, str(split), str(tok_dir), str(Path(tmp) / "cache")],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            name = f"{scale}x: {20_000 * scale:,} documents, {r['tokens']:,} tokens"
            rows.append(_row("train.tokenise", name, "peak RSS", r["peak_mb"], "MB"))
            rows.append(_row("train.tokenise", name, "tokens/s", r["tokens"] / r["s"], "tokens/s"))
    return rows


BENCHMARKS = [bench_throughput, bench_runs, bench_tokenise]
