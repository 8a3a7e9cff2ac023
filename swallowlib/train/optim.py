"""Optimiser and learning-rate schedule of the training engine (docs/study.md): AdamW (β 0.9/0.95, eps 1e-8, decoupled
weight decay 0.1 on matrices only) and a cosine schedule with linear warm-up to a floor.

The schedule is a pure function of the optimizer step, so a resumed run sets exactly the learning rate an
uninterrupted one would (``torch.optim.lr_scheduler.LambdaLR`` holds it; its state is saved as JSON).
"""

from __future__ import annotations

import math

import torch

from swallowlib.config import OptimizerConfig
from swallowlib.train.model import param_groups


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer step ``step`` (0-based, the step about to run).

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps; then cosine from 1 to
    ``min_lr_ratio`` over the remaining steps, reaching the floor at the last step.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, ocfg: OptimizerConfig, *, device_type: str) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; the fused kernel (CPU and CUDA) instead of the per-tensor loop."""
    return torch.optim.AdamW(
        param_groups(model, ocfg.weight_decay),
        lr=ocfg.lr,
        betas=(ocfg.beta1, ocfg.beta2),
        eps=ocfg.eps,
        fused=device_type in ("cpu", "cuda"),
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over :func:`lr_factor` (not passed through ``accelerator.prepare``: accelerate would step it once
    per process, making the schedule depend on the number of processes)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio),
    )


def scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR) -> dict:
    """The scheduler's state as plain JSON (the lambda itself is rebuilt from the config)."""
    sd = scheduler.state_dict()
    sd.pop("lr_lambdas", None)
    return {k: v for k, v in sd.items() if isinstance(v, int | float | bool | list | str | type(None))}
