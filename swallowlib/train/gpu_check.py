"""GPU check of the training engine (``make gpu-check``; never needed by tests or CI): on a CUDA machine, the training
engine's GPU path in one prepared script, each part through the same code as every training run, on synthetic tokens:

1. **Throughput and memory**: a short bf16 run of a TinyLlama-shaped Llama (1.1B parameters: d=2048, 22 layers, 32
   heads, 4 key/value heads, vocabulary 32,000) at the ``tinyllama-1.1b`` profile's micro-batch and sequence length:
   median tokens/s, MFU against the card's bf16 peak (never above 1), and the measured peak GPU memory next to what
   the memory model (:mod:`swallowlib.train.memory`) predicts for it.
2. **Exact resume**: run A trains ``--steps`` steps uninterrupted (checkpoint every ``steps/2``); run B stops after
   ``3/4 · steps`` without saving (what a kill loses), is started again, must resume at ``steps/2`` and end with
   weights equal to A's — bitwise on CPU, within bf16 tolerance on GPU (cuBLAS/flash-attention backward kernels are
   not bitwise deterministic).
3. **FSDP on one GPU**: the same model sharded by FSDP2 (a 1-process group) with activation checkpointing: its first
   losses must match run A's within bf16 tolerance, and its sharded checkpoint must load.

Prints one line per measurement and one final ``PASS``/``FAIL`` line. Budgeted for at most 8 minutes on an H100/H200.

    PYTHONPATH=. python3 -m swallowlib.train.gpu_check              # on the GPU machine, from the repository root
    python -m swallowlib.train.gpu_check --dry-run                  # the same code path, tiny model, CPU, seconds

Imports only torch, transformers, accelerate, safetensors, numpy, tqdm, pyyaml (no ``datasets``, no ``runs/``
outputs), so it runs with ``PYTHONPATH=.`` on a bare GPU image; optional packages (tensorboard, peft) may be missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from swallowlib.config import ModelConfig, OptimizerConfig, load_config
from swallowlib.provenance import versions
from swallowlib.train import checkpoint, memory
from swallowlib.train.data import Mixture, synthetic_source
from swallowlib.train.engine import Job, make_accelerator, train
from swallowlib.train.memory import Arch
from swallowlib.train.model import llama_config

log = logging.getLogger(__name__)

#: Models by name: (sizes, vocabulary, sequence length). ``tinyllama`` takes the tinyllama-1.1b profile's sequence
#: length and micro-batch (see :func:`profile_batch`).
MODELS = {
    "tiny": (ModelConfig(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=172,
                         max_position_embeddings=128), 512, 64),
    "gpt2-small": (ModelConfig(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048,
                               max_position_embeddings=1024), 32000, 1024),
    "tinyllama": (ModelConfig(hidden_size=2048, num_layers=22, num_heads=32, num_kv_heads=4, intermediate_size=5632,
                              max_position_embeddings=2048), 32000, 2048),
}  # fmt: skip
PROFILE = "tinyllama-1.1b"


def profile_batch() -> tuple[int, int, bool]:
    """``(micro_batch_size, seq_len, activation_checkpointing)`` of the tinyllama-1.1b profile: what it will train."""
    tc = load_config(PROFILE).train
    return tc.micro_batch_size, tc.seq_len, tc.activation_checkpointing


def predicted_peak(model: str, micro_batch: int, seq: int, *, fsdp: bool, checkpointing: bool, precision: str) -> float:
    """The memory model's peak bytes for a gpu-check job (one process)."""
    mcfg, vocab, _ = MODELS[model]
    arch = Arch(mcfg.hidden_size, mcfg.num_layers, mcfg.num_heads, mcfg.num_kv_heads or mcfg.num_heads,
                mcfg.intermediate_size, vocab, mcfg.tie_word_embeddings)  # fmt: skip
    return memory.estimate(arch, vocab, micro_batch_size=micro_batch, seq_len=seq, fsdp=fsdp,
                           activation_checkpointing=checkpointing, precision=precision).total  # fmt: skip


def make_job(out: Path, *, model: str, steps: int, micro_batch: int, seq: int | None = None, compile: bool,
             precision: str, fsdp: bool = False, checkpointing: bool = False) -> Job:  # fmt: skip
    mcfg, vocab, default_seq = MODELS[model]
    seq = seq or default_seq
    tokens_per_step = micro_batch * seq
    src = synthetic_source(steps * tokens_per_step + seq + 1, vocab, seq, seed=0)
    return Job(
        name="gpu-check",
        out_dir=out,
        data=Mixture({"synthetic": src}, {"synthetic": 1.0}, seed=0),
        tokens=steps * tokens_per_step,
        seq_len=seq,
        micro_batch_size=micro_batch,
        batch_size=micro_batch,
        optimizer=OptimizerConfig(lr=3e-4, min_lr_ratio=0.1, warmup_steps=max(1, steps // 10)),
        model_init="scratch",
        model_config=llama_config(mcfg, vocab),
        tokenizer_size=vocab,
        precision=precision,
        compile=compile,
        fsdp=fsdp,
        activation_checkpointing=checkpointing,
        checkpoint_fractions=[1.0],
        save_every_steps=steps // 2,
        keep_last=2,
        log_every_steps=max(1, steps // 6),
        seed=0,
        provenance={"stage": "gpu-check", "versions": versions()},
    )


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def compare(a: Path, b: Path) -> tuple[bool, float]:
    """(bitwise equal, max over tensors of ||a - b|| / ||a||) of two HF directories' weights."""
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    if set(wa) != set(wb):
        return False, float("inf")
    bitwise = all(torch.equal(wa[k], wb[k]) for k in wa)
    rel = max(float((wa[k].float() - wb[k].float()).norm() / wa[k].float().norm().clamp_min(1e-12)) for k in wa)
    return bitwise, rel


@dataclass
class Check:
    """One gpu-check: what it trains (model, steps, batch, precision), where, on which accelerator, and the
    failures found so far."""

    work: Path
    model: str
    steps: int
    micro: int
    seq: int | None  # None: the model's own sequence length
    checkpointing: bool
    compile: bool
    precision: str
    rel_tol: float
    acc: Any = None
    failures: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        return self.acc.device.type == "cuda"

    def job(self, name: str, **kw) -> Job:
        """A job of this check in ``work/<name>`` (``kw``: what differs from its defaults)."""
        kw = {"compile": self.compile, "checkpointing": self.checkpointing, **kw}
        return make_job(self.work / name, model=self.model, steps=self.steps, micro_batch=self.micro, seq=self.seq,
                        precision=self.precision, **kw)  # fmt: skip


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: exercise the code path only")
    ap.add_argument("--model", choices=sorted(MODELS), default=None, help="default: tinyllama (tiny with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="= --device cpu --model tiny (what the test suite runs)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of run A (default 24; 8 with tiny)")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="sequences per step (default: the tinyllama-1.1b profile's for tinyllama, 4 otherwise)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    ap.add_argument("--rel-tol", type=float, default=2e-2, help="max relative L2 weight difference on GPU")
    ap.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.model = "cpu", args.model or "tiny"
    return args


def _check_of(args: argparse.Namespace, work: Path) -> Check:
    """The check the command line asks for, with the defaults filled in (tinyllama: the profile's batch)."""
    model = args.model or "tinyllama"
    seq, checkpointing = None, False
    micro = args.micro_batch or 4
    if model == "tinyllama":
        p_micro, seq, checkpointing = profile_batch()
        micro = args.micro_batch or p_micro
    return Check(work=work, model=model, steps=args.steps or (8 if model == "tiny" else 24), micro=micro, seq=seq,
                 checkpointing=checkpointing, compile=args.compile,
                 precision="bf16" if args.device == "cuda" else "fp32", rel_tol=args.rel_tol)  # fmt: skip


def check_throughput(c: Check) -> tuple[dict, float, float]:
    """Part 1, run A (also the resume reference): ``(its summary, median tokens/s, median MFU)``, and the peak
    memory against the memory model's prediction."""
    if c.on_gpu:
        torch.cuda.reset_peak_memory_stats()
    a = train(c.job("A"), c.acc)
    rows = [r for r in _rows(c.work / "A") if "tokens_per_s" in r]
    steady = rows[1:] or rows  # the first interval holds the warm-up (and compilation)
    tps = sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
    # a null MFU is a step that beat the peak (the engine logs no number then): it ranks above every number
    mfu_v = sorted(math.inf if r.get("mfu") is None else r["mfu"] for r in steady)[len(steady) // 2]
    prov = json.loads((c.work / "A" / "provenance.json").read_text())
    params, peak = prov["params"], prov["peak_flops_per_device"]
    print(
        f"gpu-check: run A ({c.model}, micro-batch {c.micro} x {prov['tokens_per_step'] // c.micro} tokens, "
        f"checkpointing {c.checkpointing}) {a['end_step']} steps, {params['total'] / 1e6:.1f}M parameters, final "
        f"loss {a['final_loss']:.4f}; median tokens/s {tps:,.0f}, MFU {mfu_v:.1%} of {peak['flops'] / 1e12:.3g} "
        f"TFLOP/s ({peak['source']})"
    )
    if not 0 < mfu_v <= 1:
        c.failures.append(f"MFU {mfu_v} outside (0, 1]")
    predicted = predicted_peak(c.model, c.micro, c.seq or MODELS[c.model][2], fsdp=False,
                               checkpointing=c.checkpointing, precision=c.precision)  # fmt: skip
    if c.on_gpu:
        measured = torch.cuda.max_memory_allocated()
        print(f"gpu-check: peak GPU memory {measured / 2**30:.2f} GiB measured (allocated), memory model "
              f"predicts {predicted / 2**30:.2f} GiB (ratio {measured / predicted:.2f})")  # fmt: skip
        if measured > predicted:
            c.failures.append(f"measured peak {measured / 2**30:.2f} GiB exceeds the prediction "
                              f"{predicted / 2**30:.2f} GiB: the memory model under-estimates")  # fmt: skip
    else:
        print(f"gpu-check: memory model predicts {predicted / 2**30:.3f} GiB on a GPU (not measured on CPU)")
    return a, tps, mfu_v


def check_resume(c: Check, a: dict) -> float:
    """Part 2: run B, killed at 3/4 and started again, must resume at its last checkpoint and end where run A
    (summary ``a``) ended; the max relative L2 difference of their final weights."""
    stop_at = (3 * c.steps) // 4
    b1 = train(c.job("B"), c.acc, max_steps=stop_at)
    ckpts = [s for s, _ in checkpoint.list_checkpoints(c.work / "B" / "checkpoints")]
    if b1["completed"] or b1["end_step"] != stop_at:
        c.failures.append(f"run B should have stopped at step {stop_at}, got {b1}")
    b2 = train(c.job("B"), c.acc)
    expect = max(s for s in ckpts if s <= stop_at) if ckpts else 0
    if b2["start_step"] != expect or not b2["completed"]:
        c.failures.append(
            f"run B resumed at step {b2['start_step']} (expected {expect}), completed={b2['completed']}"
        )
    print(f"gpu-check: run B stopped at {b1['end_step']}, resumed from checkpoint {b2['start_step']}, final loss "
          f"{b2['final_loss']:.4f}")  # fmt: skip
    bitwise, rel = compare(c.work / "A" / "final", c.work / "B" / "final")
    print(f"gpu-check: final weights A vs resumed B: bitwise {bitwise}, max relative L2 difference {rel:.2e}")
    if not c.on_gpu and not bitwise:
        c.failures.append("resumed weights differ from the uninterrupted run on CPU (must be bitwise equal)")
    if c.on_gpu and rel > c.rel_tol:
        c.failures.append(f"resumed weights differ by {rel:.2e} > {c.rel_tol} (bf16 tolerance)")
    if abs(a["final_loss"] - b2["final_loss"]) > 0.02 * abs(a["final_loss"]):
        c.failures.append(f"final loss A {a['final_loss']:.4f} vs resumed B {b2['final_loss']:.4f}")
    return rel


def check_fsdp(c: Check) -> None:
    """Part 3: the model sharded by FSDP2 on this one device, activation checkpointing on: its first losses match
    run A's and its sharded checkpoint loads."""
    fsdp_steps = max(2, c.steps // 4)
    f_job = c.job("F", compile=False, fsdp=True, checkpointing=True)
    f_job.save_every_steps = fsdp_steps
    f = train(f_job, c.acc, max_steps=fsdp_steps)
    la = {r["step"]: r["loss"] for r in _rows(c.work / "A") if "loss" in r}
    lf = {r["step"]: r["loss"] for r in _rows(c.work / "F") if "loss" in r}
    common = sorted(set(la) & set(lf))
    worst = max((abs(la[s] - lf[s]) / abs(la[s]) for s in common), default=float("inf"))
    fp = json.loads((c.work / "F" / "run.json").read_text())["fingerprint"]
    resumed = checkpoint.latest(c.work / "F" / "checkpoints", fp)
    print(f"gpu-check: FSDP (1 process, checkpointing) {f['end_step']} steps, losses vs run A at steps {common}: "
          f"max relative difference {worst:.2e}; sharded checkpoint at step {resumed.step if resumed else None}")
    tol = 2e-2 if c.on_gpu else 1e-4
    if not worst <= tol:
        c.failures.append(f"FSDP losses differ from the unsharded run by {worst:.2e} > {tol}")
    if resumed is None:
        c.failures.append("the FSDP run wrote no loadable checkpoint")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device (use --dry-run to exercise the code path on CPU)")
        return 1
    c = _check_of(args, args.out or Path(tempfile.mkdtemp(prefix="swallow-gpu-check-")))
    t0 = time.perf_counter()
    tps = mfu_v = rel = float("nan")
    try:
        c.acc = make_accelerator(c.precision, cpu=args.device == "cpu")
        print(f"gpu-check: {c.acc.device} {torch.cuda.get_device_name() if c.on_gpu else ''}".rstrip())
        print(f"gpu-check: versions {json.dumps({k: v for k, v in versions().items() if v})}")
        a, tps, mfu_v = check_throughput(c)
        rel = check_resume(c, a)
        check_fsdp(c)
    except Exception as e:  # the last line must always be PASS or FAIL
        log.exception("gpu-check crashed")
        c.failures.append(f"{type(e).__name__}: {e}")
    finally:
        if args.out is None:
            shutil.rmtree(c.work, ignore_errors=True)
    wall = time.perf_counter() - t0
    if c.failures:
        print(f"FAIL ({wall:.0f} s): " + "; ".join(c.failures))
        return 1
    print(f"PASS ({wall:.0f} s): tokens/s {tps:,.0f}, MFU {mfu_v:.1%}, resume ok (relative difference {rel:.1e}), "
          "FSDP ok")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
