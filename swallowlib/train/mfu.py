"""The peak FLOP/s that model FLOPs utilisation (MFU) is measured against, and MFU itself.

MFU = achieved FLOP/s per device / peak FLOP/s per device, where achieved = tokens/s × FLOPs/token
(:func:`swallowlib.train.model.flops_per_token`) / devices.

- CPU: **measured in the same process, right before the timed steps** (the benchmark measures again right after and
  takes the larger): for each distinct matmul shape of the model's linear layers in one training micro-step —
  forward ``tokens × in → out``, input gradient ``tokens × out → in``, weight gradient ``out × tokens → in``, each
  side capped at :data:`MAX_DIM` — and a 1024³ reference (:data:`REFERENCE_SHAPE`: a small model's own shapes
  understate the machine), the best of :data:`REPS` timed samples after a warm-up, in fp32 with this process's
  thread count; the peak is the best rate over all shapes. Nothing is cached: a peak measured at another
  time, under another load, is what once gave MFUs of 1.1–1.2. The CPU's theoretical fp32 peak (cores × clock ×
  FLOPs/cycle from ``/proc/cpuinfo``) is attached as a cross-check only: the clock there is nominal and the FMA
  pipes per core are assumed, so it is an estimate, never the denominator.
- GPU: the dense bf16 peak of the card from its datasheet (table below, matched on ``torch.cuda.get_device_name``);
  a card not in the table is measured with an 8192³ bf16 matmul.

MFU never exceeds 1 by construction (:func:`utilisation`): when the achieved rate is above the peak, the peak (or
the FLOP count, an estimate) is wrong and there is no honest MFU — it is reported as :data:`OVER_PEAK` (``None``
in ``metrics.jsonl``, with ``mfu_note``), never clamped. Every printed MFU names its peak (:func:`describe`).

    python -m swallowlib.train.mfu     # this machine's peak for the tiny profile's model shape, and the cross-check
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable

import torch

log = logging.getLogger(__name__)

#: Timed samples per matmul shape (after one warm-up); the best one counts.
REPS = 5
#: Each side of a measured matmul is capped here, so that measuring costs well under a second on a CPU.
MAX_DIM = 2048
#: A timed sample repeats the matmul until it lasts this long (tiny shapes would otherwise time the timer).
MIN_SAMPLE_S = 2e-3
#: Always measured with the model's shapes: a small model's own GEMMs are too small to show what the machine can do
#: (a d=32 test model outran its best own-shape matmul), and MFU is utilisation of the machine.
REFERENCE_SHAPE = (1024, 1024, 1024)
#: How an MFU above 1 is reported instead of a number.
OVER_PEAK = "> measured peak, peak unreliable"

#: Dense bf16 tensor-core peaks (FLOP/s, no sparsity) from NVIDIA datasheets; first matching substring wins.
GPU_BF16_PEAK = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM5
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)

Shape = tuple[int, int, int]  # (m, k, n): an (m × k) @ (k × n) matmul, 2·m·k·n FLOPs


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rate(value: float) -> str:
    """``104.2 GFLOP/s`` (``TFLOP/s`` from 1e12)."""
    return f"{value / 1e12:.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.1f} GFLOP/s"


def _shape_str(shape: Iterable[int]) -> str:
    return "x".join(str(s) for s in shape)


# ---------------------------------------------------------------------------------------------------------------
# Measured peak


def gemm_shapes(config, tokens: int) -> list[Shape]:
    """Every distinct ``(m, k, n)`` matmul of the linear layers of one micro-step of ``tokens`` tokens (forward,
    input gradient, weight gradient), each side capped at :data:`MAX_DIM`, largest first."""
    d, inter, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    linears = {(d, heads * head_dim), (d, kv * head_dim), (heads * head_dim, d), (d, inter), (inter, d), (d, vocab)}
    shapes = set()
    for i, o in linears:
        for m, k, n in ((tokens, i, o), (tokens, o, i), (o, tokens, i)):
            shapes.add((min(m, MAX_DIM), min(k, MAX_DIM), min(n, MAX_DIM)))
    return sorted(shapes, key=lambda s: (-s[0] * s[1] * s[2], s))


def peak_shapes(config, tokens: int) -> tuple[list[Shape], str]:
    """The shapes a peak is measured on — :func:`gemm_shapes` plus :data:`REFERENCE_SHAPE` — and their description."""
    shapes = gemm_shapes(config, tokens)
    what = f"the model's {len(shapes)} GEMM shapes and a {_shape_str(REFERENCE_SHAPE)} reference"
    return [*shapes, *([REFERENCE_SHAPE] if REFERENCE_SHAPE not in shapes else [])], what


def _torch_matmul(shape: Shape, dtype: torch.dtype, device: str) -> Callable[[], None]:
    m, k, n = shape
    g = torch.Generator(device=device).manual_seed(0)  # a private generator: the global RNG state must not move
    a = torch.randn(m, k, generator=g, device=device, dtype=dtype)
    b = torch.randn(k, n, generator=g, device=device, dtype=dtype)
    c = torch.empty(m, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        torch.mm(a, b, out=c)
        sync()

    return run


def time_matmul(
    shape: Shape,
    reps: int = REPS,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    timer: Callable[[], float] = time.perf_counter,
    run: Callable[[], None] | None = None,
) -> list[float]:
    """FLOP/s of each of ``reps`` timed samples of one matmul shape, after a warm-up; a sample repeats the matmul
    enough times to last about :data:`MIN_SAMPLE_S` (``run`` and ``timer`` are replaceable for tests)."""
    run = run or _torch_matmul(shape, dtype, device)
    flops = 2.0 * shape[0] * shape[1] * shape[2]
    t0 = timer()
    run()  # warm-up (allocation, kernel selection); its time sizes the samples
    inner = max(1, math.ceil(MIN_SAMPLE_S / max(timer() - t0, 1e-9)))
    rates = []
    for _ in range(reps):
        t0 = timer()
        for _ in range(inner):
            run()
        dt = timer() - t0
        rates.append(inner * flops / dt if dt > 0 else 0.0)
    return rates


def measured_peak(
    shapes: list[Shape],
    reps: int = REPS,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    sampler: Callable[[Shape], list[float]] | None = None,
    what: str | None = None,
) -> dict:
    """The best FLOP/s over ``reps`` samples of each shape (best of N, then the best shape), with a source string
    (``what``: how it names the set of shapes).

    ``sampler(shape) -> [FLOP/s per sample]`` defaults to :func:`time_matmul` (replaceable for tests).
    """
    if not shapes:
        raise ValueError("no matmul shapes to measure")
    sampler = sampler or (lambda s: time_matmul(s, reps, dtype=dtype, device=device))
    per_shape = {s: max(sampler(s)) for s in shapes}
    best_shape = max(shapes, key=lambda s: per_shape[s])
    threads = torch.get_num_threads()
    dt = str(dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
    what = what or (f"{len(shapes)} shapes" if len(shapes) > 1 else None)
    which = f" (best of {what})" if what else ""
    return {
        "flops": per_shape[best_shape],
        "kind": "measured",
        "source": f"measured best of {reps}, {_shape_str(best_shape)} {dt} matmul{which}, {threads} threads",
        "shape": list(best_shape),
        "reps": reps,
        "threads": threads,
        "dtype": dt,
        "per_shape": {_shape_str(s): v for s, v in per_shape.items()},
        "key": f"{_cpu_model() if device == 'cpu' else device}|threads={threads}|torch={torch.__version__}",
    }


def combine(before: dict, after: dict) -> dict:
    """The larger of two measured peaks (right before and right after the timed steps), saying so in its source."""
    best = before if before["flops"] >= after["flops"] else after
    which = "before" if best is before else "after"
    return {
        **best,
        "source": best["source"].replace(
            f"measured best of {best['reps']}",
            f"measured best of {before['reps']} before + {after['reps']} after the timed steps (max: {which})",
            1,
        ),
        "before": before["flops"],
        "after": after["flops"],
    }


# ---------------------------------------------------------------------------------------------------------------
# Theoretical CPU peak (cross-check only)


def theoretical_cpu_peak(cpuinfo: str | None = None, threads: int | None = None) -> dict | None:
    """cores × nominal clock × fp32 FLOPs/cycle/core from ``/proc/cpuinfo`` text, or ``None`` when undeterminable.

    FLOPs/cycle/core = 2 (FMA) × fp32 lanes per FMA pipe × 2 pipes (assumed: the pipe count is not in
    ``/proc/cpuinfo``). Lanes: 16 with ``avx512f`` — except AMD family 0x19 (Zen 3/4), which runs 512-bit FMAs on
    256-bit pipes: 8 — 8 with ``avx2`` + ``fma``. Cores: physical cores, at most ``threads``. The clock is
    ``cpu MHz`` (nominal or current; turbo can exceed it), so this is an estimate for cross-checking.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    fields: dict[str, str] = {}
    physical: set[str] = set()
    logical = 0
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            logical += 1
        elif key == "physical id":
            physical.add(value)
        fields.setdefault(key, value)
    flags = set(fields.get("flags", "").split())
    try:
        mhz = float(fields["cpu MHz"])
        family = int(fields.get("cpu family", "0"))
    except (KeyError, ValueError):
        return None
    amd = fields.get("vendor_id") == "AuthenticAMD"
    if "avx512f" in flags and not (amd and family == 0x19):
        lanes, isa = 16, "avx512f"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "avx512f on 256-bit pipes (AMD Zen 3/4)" if "avx512f" in flags else "avx2+fma"
    else:
        return None
    per_socket = int(fields.get("cpu cores", "0") or 0) or logical
    cores = per_socket * max(1, len(physical))
    cores = min(cores, threads if threads is not None else torch.get_num_threads())
    per_cycle = 2 * lanes * 2
    return {
        "flops": cores * mhz * 1e6 * per_cycle,
        "kind": "theoretical",
        "source": f"theoretical estimate: {cores} cores x {mhz:.0f} MHz x {per_cycle} fp32 FLOP/cycle ({isa}, "
        "2 FMA pipes assumed; nominal clock, turbo can exceed it)",
    }


def cross_check(measured: dict, theoretical: dict | None) -> str:
    """One line comparing a measured peak with the theoretical estimate."""
    if theoretical is None:
        return "theoretical fp32 peak: not determinable from /proc/cpuinfo"
    ratio = measured["flops"] / theoretical["flops"]
    verdict = "the estimate is too low (turbo clock?), not a bound" if ratio > 1 else f"measured = {ratio:.0%} of it"
    return f"{theoretical['source']} = {rate(theoretical['flops'])}; {verdict}"


# ---------------------------------------------------------------------------------------------------------------
# GPU, dispatch, MFU


def gpu_peak(device_index: int = 0) -> dict:
    """The bf16 dense peak of a CUDA device from :data:`GPU_BF16_PEAK`, or measured when the card is unknown."""
    name = torch.cuda.get_device_name(device_index)
    for pattern, flops in GPU_BF16_PEAK:
        if pattern in name:
            return {
                "flops": flops,
                "kind": "datasheet",
                "source": f"datasheet bf16 dense peak ({pattern})",
                "key": name,
            }
    with torch.cuda.device(device_index):
        return {**measured_peak([(8192, 8192, 8192)], dtype=torch.bfloat16, device="cuda"), "key": name}


def cpu_peak(config, tokens: int) -> dict:
    """The measured fp32 peak for ``config``'s GEMM shapes at ``tokens`` tokens per micro-step, with the
    theoretical estimate attached as ``theoretical`` (cross-check, not used)."""
    shapes, what = peak_shapes(config, tokens)
    peak = measured_peak(shapes, what=what)
    peak["theoretical"] = theoretical_cpu_peak()
    return peak


def peak(device_type: str, config, tokens: int) -> dict:
    """Peak FLOP/s of one device of this machine for the precision the engine uses there (module docstring)."""
    return gpu_peak() if device_type == "cuda" else cpu_peak(config, tokens)


def utilisation(achieved: float, peak_flops: float) -> float | None:
    """``achieved / peak_flops`` — at most 1 by construction: ``None`` when the achieved rate is above the peak
    (then the peak, or the FLOP estimate, is unreliable: report :data:`OVER_PEAK`, never a clamped 1.0)."""
    if not peak_flops > 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak_flops}")
    return achieved / peak_flops if achieved <= peak_flops else None


def describe(peak: dict) -> str:
    """``peak: measured best of 5, 2048x256x2048 fp32 matmul (…), 2 threads, 104.2 GFLOP/s``."""
    return f"peak: {peak['source']}, {rate(peak['flops'])}"


def format_mfu(value: float | None, achieved: float, peak: dict) -> str:
    """``MFU 42.1% (peak: …)`` or ``MFU > measured peak, peak unreliable (achieved …; peak: …)``."""
    if value is None:
        over = OVER_PEAK if peak.get("kind", "measured") == "measured" else OVER_PEAK.replace("measured", peak["kind"])
        return f"MFU {over} (achieved {rate(achieved)} = {achieved / peak['flops']:.2f} x the {describe(peak)})"
    return f"MFU {value:.1%} ({describe(peak)})"


if __name__ == "__main__":
    from swallowlib.config import ModelConfig
    from swallowlib.train.model import llama_config

    if torch.cuda.is_available():
        print(json.dumps(gpu_peak(), indent=1))
    else:
        tokens = int(os.environ.get("SWALLOW_MFU_TOKENS", 8 * 256))  # the tiny profile's micro-batch
        p = cpu_peak(llama_config(ModelConfig(), 8000), tokens)
        print(json.dumps(p, indent=1))
        print(describe(p))
        print(cross_check(p, p["theoretical"]))
