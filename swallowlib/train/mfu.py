"""The peak FLOP/s that model FLOPs utilisation (MFU) is measured against.

- CPU: measured — the best of a few 2048³ fp32 matmuls with this process's thread count (docs/environment.md), cached
  in ``runs/_machine/peak_flops.json`` per CPU model, thread count and torch version, since it takes a few seconds.
- GPU: the dense bf16 peak of the card from its datasheet (table below, matched on ``torch.cuda.get_device_name``);
  a card not in the table is measured with an 8192³ bf16 matmul.

MFU = tokens/s × FLOPs/token (``swallowlib.train.model.flops_per_token``) / (peak per device × devices).

    python -m swallowlib.train.mfu              # print this machine's peak (measured once, then cached)
    python -m swallowlib.train.mfu --refresh    # measure the CPU again (e.g. it was measured under load)
"""

from __future__ import annotations

import json
import logging
import platform
import time

import torch

from swallowlib import paths
from swallowlib.provenance import write_json_atomic

log = logging.getLogger(__name__)

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


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_matmul(n: int, dtype: torch.dtype, device: str, reps: int = 5) -> float:
    """Best FLOP/s of ``reps`` n×n×n matmuls after one warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype, generator=None)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def cpu_peak(refresh: bool = False) -> dict:
    """``{"flops", "source", …}`` for fp32 matmul on this CPU with the current thread count (measured, cached)."""
    key = f"{_cpu_model()}|threads={torch.get_num_threads()}|torch={torch.__version__}"
    cache = paths.machine_dir() / "peak_flops.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    if key in known and not refresh:
        return known[key]
    # The RNG state must not move: a peak measured mid-run would change the data a resumed run sees otherwise.
    with torch.random.fork_rng(devices=[]):
        flops = measure_matmul(2048, torch.float32, "cpu")
    entry = {"flops": flops, "source": "measured: 2048^3 fp32 matmul, best of 5", "key": key}
    known[key] = entry
    try:
        write_json_atomic(cache, known)
    except OSError as e:  # a read-only runs/ only costs a re-measurement next time
        log.warning("could not cache the CPU peak in %s: %s", cache, e)
    return entry


def gpu_peak(device_index: int = 0) -> dict:
    """The bf16 dense peak of a CUDA device from :data:`GPU_BF16_PEAK`, or measured when the card is unknown."""
    name = torch.cuda.get_device_name(device_index)
    for pattern, flops in GPU_BF16_PEAK:
        if pattern in name:
            return {"flops": flops, "source": f"datasheet bf16 dense peak ({pattern})", "key": name}
    with torch.random.fork_rng(devices=[device_index]):
        flops = measure_matmul(8192, torch.bfloat16, "cuda")
    return {"flops": flops, "source": "measured: 8192^3 bf16 matmul, best of 5", "key": name}


def peak(device_type: str) -> dict:
    """Peak FLOP/s of one device of this machine for the precision the engine uses there."""
    return gpu_peak() if device_type == "cuda" else cpu_peak()


if __name__ == "__main__":
    import sys

    if torch.cuda.is_available():
        print(json.dumps(gpu_peak(), indent=1))
    else:
        print(json.dumps(cpu_peak(refresh="--refresh" in sys.argv[1:]), indent=1))
