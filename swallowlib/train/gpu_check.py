"""GPU check of the training engine (``make gpu-check``; never needed by tests or CI): on a CUDA machine, a short bf16
run of a ~134M-parameter Llama (d=768, 12 layers, 12 heads, vocabulary 32,000, sequences of 1,024) on synthetic
tokens through the same engine code as every training run, then a resume check. Prints tokens/s and MFU against the
card's bf16 peak, and one final ``PASS``/``FAIL`` line. About 2 minutes on an H100; budgeted for at most 8.

    PYTHONPATH=. python3 -m swallowlib.train.gpu_check              # on the GPU machine, from the repository root
    python -m swallowlib.train.gpu_check --dry-run                  # the same code path, tiny model, CPU, seconds

Resume check: run A trains ``--steps`` steps uninterrupted (checkpoint every ``steps/2``); run B stops after
``3/4 · steps`` without saving (what a kill loses), is started again, must resume at ``steps/2`` and end with
weights equal to A's — bitwise on CPU, within bf16 tolerance on GPU (cuBLAS/flash-attention backward kernels are not
bitwise deterministic).

Imports only torch, transformers, accelerate, safetensors, numpy, tqdm, pyyaml (no ``datasets``, no ``runs/``
outputs), so it runs with ``PYTHONPATH=.`` on a bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from swallowlib.config import ModelConfig, OptimizerConfig
from swallowlib.provenance import versions
from swallowlib.train import checkpoint
from swallowlib.train.data import Mixture, synthetic_source
from swallowlib.train.engine import Job, make_accelerator, train
from swallowlib.train.model import llama_config

log = logging.getLogger(__name__)

#: The GPU model: GPT-2-small-sized Llama (~85M non-embedding + 2 x 24.6M untied embedding parameters).
GPU_MODEL = ModelConfig(
    hidden_size=768, num_layers=12, num_heads=12, intermediate_size=2048, max_position_embeddings=1024
)
TINY_MODEL = ModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=172, max_position_embeddings=128)


def make_job(out: Path, *, tiny: bool, steps: int, micro_batch: int, compile: bool, precision: str) -> Job:
    mcfg, vocab, seq = (TINY_MODEL, 512, 64) if tiny else (GPU_MODEL, 32000, 1024)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: exercise the code path only")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer d=64 model instead of the ~134M one")
    ap.add_argument("--dry-run", action="store_true", help="= --device cpu --tiny (what the test suite runs)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of run A (default 60; 8 with --tiny)")
    ap.add_argument("--micro-batch", type=int, default=None, help="sequences per step (default 16; 4 with --tiny)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    ap.add_argument("--rel-tol", type=float, default=2e-2, help="max relative L2 weight difference on GPU")
    ap.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device (use --dry-run to exercise the code path on CPU)")
        return 1
    if args.device == "cpu" and torch.cuda.is_available():
        print("FAIL: --device cpu on a CUDA machine: hide the GPU with CUDA_VISIBLE_DEVICES= for a CPU dry run")
        return 1
    steps = args.steps or (8 if args.tiny else 60)
    micro = args.micro_batch or (4 if args.tiny else 16)
    precision = "bf16" if args.device == "cuda" else "fp32"
    work = args.out or Path(tempfile.mkdtemp(prefix="swallow-gpu-check-"))
    t0 = time.perf_counter()
    failures: list[str] = []
    try:
        acc = make_accelerator(precision)
        print(f"gpu-check: {acc.device} {torch.cuda.get_device_name() if args.device == 'cuda' else ''}".rstrip())
        print(f"gpu-check: versions {json.dumps({k: v for k, v in versions().items() if v})}")

        def job(name: str) -> Job:
            return make_job(work / name, tiny=args.tiny, steps=steps, micro_batch=micro, compile=args.compile,
                            precision=precision)  # fmt: skip

        a = train(job("A"), acc)
        rows = [r for r in _rows(work / "A") if "tokens_per_s" in r]
        steady = rows[1:] or rows  # the first interval holds the warm-up (and compilation)
        tps = sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
        mfu_v = sorted(r["mfu"] for r in steady)[len(steady) // 2]
        params = json.loads((work / "A" / "provenance.json").read_text())["params"]
        peak = json.loads((work / "A" / "provenance.json").read_text())["peak_flops_per_device"]
        print(
            f"gpu-check: run A {a['end_step']} steps, {params['total'] / 1e6:.1f}M parameters, final loss "
            f"{a['final_loss']:.4f}; median tokens/s {tps:,.0f}, MFU {mfu_v:.1%} of {peak['flops'] / 1e12:.3g} "
            f"TFLOP/s ({peak['source']}); peak GPU memory {rows[-1].get('peak_gpu_mb', 0):,.0f} MB"
        )
        stop_at = (3 * steps) // 4
        b1 = train(job("B"), acc, max_steps=stop_at)
        ckpts = [s for s, _ in checkpoint.list_checkpoints(work / "B" / "checkpoints")]
        if b1["completed"] or b1["end_step"] != stop_at:
            failures.append(f"run B should have stopped at step {stop_at}, got {b1}")
        b2 = train(job("B"), acc)
        expect = max(s for s in ckpts if s <= stop_at) if ckpts else 0
        if b2["start_step"] != expect or not b2["completed"]:
            failures.append(
                f"run B resumed at step {b2['start_step']} (expected {expect}), completed={b2['completed']}"
            )
        first = next((r["step"] for r in _rows(work / "B") if r.get("step", 0) > expect and "loss" in r), None)
        print(f"gpu-check: run B stopped at {b1['end_step']}, resumed from checkpoint {b2['start_step']}, first "
              f"logged step after resume {first}, final loss {b2['final_loss']:.4f}")  # fmt: skip
        bitwise, rel = compare(work / "A" / "final", work / "B" / "final")
        print(f"gpu-check: final weights A vs resumed B: bitwise {bitwise}, max relative L2 difference {rel:.2e}")
        if args.device == "cpu" and not bitwise:
            failures.append("resumed weights differ from the uninterrupted run on CPU (must be bitwise equal)")
        if args.device == "cuda" and rel > args.rel_tol:
            failures.append(f"resumed weights differ by {rel:.2e} > {args.rel_tol} (bf16 tolerance)")
        if abs(a["final_loss"] - b2["final_loss"]) > 0.02 * abs(a["final_loss"]):
            failures.append(f"final loss A {a['final_loss']:.4f} vs resumed B {b2['final_loss']:.4f}")
        if not tps > 0:
            failures.append("no throughput measured")
    except Exception as e:  # the last line must always be PASS or FAIL
        log.exception("gpu-check crashed")
        failures.append(f"{type(e).__name__}: {e}")
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    if failures:
        print(f"FAIL ({wall:.0f} s): " + "; ".join(failures))
        return 1
    print(f"PASS ({wall:.0f} s): tokens/s {tps:,.0f}, MFU {mfu_v:.1%}, resume ok (relative difference {rel:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
