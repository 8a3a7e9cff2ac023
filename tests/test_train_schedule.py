"""Optimiser and schedule: cosine with linear warm-up to a floor, weight decay on matrices only, the FLOPs formula."""

import math

import pytest
import torch

from swallowlib.config import ModelConfig, OptimizerConfig
from swallowlib.train import model as modeling
from swallowlib.train.optim import build_optimizer, build_scheduler, lr_factor, scheduler_state


def test_warmup_then_cosine_to_the_floor():
    f = [lr_factor(s, warmup_steps=4, total_steps=14, min_lr_ratio=0.1) for s in range(14)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up, peak at the last warm-up step
    assert f[4] == pytest.approx(1.0)  # the cosine starts at the peak
    assert f[-1] == pytest.approx(0.1)  # and ends on the floor at the last step
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    mid = lr_factor(9, warmup_steps=4, total_steps=15, min_lr_ratio=0.1)  # half-way through the decay
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_no_warmup_and_zero_floor():
    assert lr_factor(0, warmup_steps=0, total_steps=10, min_lr_ratio=0.0) == 1.0
    assert lr_factor(9, warmup_steps=0, total_steps=10, min_lr_ratio=0.0) == pytest.approx(0.0)


def _tiny():
    cfg = modeling.llama_config(
        ModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64), 100
    )
    return modeling.scratch_model(cfg, seed=0)


def test_scheduler_sets_the_lr_of_every_step_and_saves_as_json():
    m = _tiny()
    opt = build_optimizer(m, OptimizerConfig(lr=1e-3), device_type="cpu")
    sch = build_scheduler(opt, warmup_steps=2, total_steps=6, min_lr_ratio=0.2)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert seen == pytest.approx(
        [1e-3 * lr_factor(s, warmup_steps=2, total_steps=6, min_lr_ratio=0.2) for s in range(6)]
    )
    import json

    assert json.loads(json.dumps(scheduler_state(sch)))["last_epoch"] == 6


def test_weight_decay_on_matrices_only_and_fused_adamw():
    m = _tiny()
    opt = build_optimizer(m, OptimizerConfig(lr=1e-3, weight_decay=0.1), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert opt.defaults["fused"] is True and opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


def test_flops_per_token_is_6n_plus_attention():
    m = _tiny()
    n = modeling.count_params(m)["non_embedding"]  # every parameter but the input embedding (LM head included)
    assert modeling.flops_per_token(m.config, 64) == 6 * n + 12 * 2 * 32 * 64
    tiny = modeling.llama_config(ModelConfig(), 8000)  # the tiny profile: 34.4 MFLOP per token at seq 256
    assert modeling.flops_per_token(tiny, 256) == pytest.approx(34.42e6, rel=1e-3)


def test_scratch_init_is_seeded():
    a, b = _tiny(), _tiny()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
