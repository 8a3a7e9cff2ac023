"""How the engine spreads a model over processes: one process, DDP (through ``accelerate``), or FSDP2 (torch's
``fully_shard``), with the same calls for the training step in all three.

    strategy = parallel.make(accelerator, fsdp=True, precision="bf16", activation_checkpointing=True)
    model, optimizer = strategy.setup(model, lambda m: build_optimizer(m, ...))
    with strategy.sync(model, last_micro_batch), strategy.autocast():
        loss = ...
    strategy.backward(loss)
    grad_norm = strategy.clip_grad_norm(params, 1.0)

Why FSDP is driven here and not by ``accelerate``: with ``cpu=True`` accelerate builds a MULTI_CPU (DDP on gloo) state
and ignores an FSDP plugin, so its FSDP path cannot be rehearsed on CPU. torch's ``fully_shard`` runs on gloo CPU
processes and on NCCL GPUs alike, so this one small wrapper is the FSDP path everywhere: CI's two CPU processes
exercise the code a GPU node runs. accelerate still starts the processes and owns the process group and the device.

FSDP layout: every decoder layer is its own unit, then the root (embeddings, final norm, LM head), full shard
(parameters re-sharded after the forward). Under bf16 the units compute in bf16 (``MixedPrecisionPolicy``) and reduce
gradients in fp32, over fp32 master weights; gradient accumulation stays in fp32 because the sharded gradients are
fp32 (``reduce_dtype``) — DDP's path reaches the same with autocast over fp32 weights.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class ParallelError(RuntimeError):
    """A launch that cannot be sharded as configured; the message says what to change."""


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of an HF decoder (``…DecoderLayer`` modules), inside a PEFT wrapper too."""
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer in the backward (transformers' per-layer checkpointing, non-reentrant, which
    composes with FSDP2 and DDP)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    kwargs = {"use_reentrant": False}
    if hasattr(inner, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name is deprecated there
        inner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(inner, "enable_input_require_grads") and getattr(model, "peft_config", None):
        inner.enable_input_require_grads()  # frozen embeddings under LoRA: the checkpointed input needs a grad


class Strategy:
    """One process or DDP: ``accelerate`` prepares the model and optimizer (autocast, DDP's ``no_sync``)."""

    name = "single"
    sharded = False

    def __init__(self, acc, activation_checkpointing: bool = False):
        self.acc = acc
        self.activation_checkpointing = activation_checkpointing
        if acc.num_processes > 1:
            self.name = "ddp"

    def setup(self, model: torch.nn.Module, make_optimizer) -> tuple[torch.nn.Module, Any]:
        if self.activation_checkpointing:
            enable_activation_checkpointing(model)
        return self.acc.prepare(model, make_optimizer(model))

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.acc.unwrap_model(model)

    def sync(self, model, sync: bool) -> AbstractContextManager:
        """Gradient synchronisation only on the last micro-batch of a step."""
        return nullcontext() if sync else self.acc.no_sync(model)

    def autocast(self) -> AbstractContextManager:
        return self.acc.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        self.acc.backward(loss)

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        return self.acc.clip_grad_norm_(params, max_norm)


class FSDP(Strategy):
    """FSDP2 full shard on a 1-D device mesh over every process (see the module docstring)."""

    name = "fsdp"
    sharded = True

    def __init__(self, acc, activation_checkpointing: bool = False, precision: str = "fp32", from_rank0: bool = False):
        super().__init__(acc, activation_checkpointing)
        self.name = "fsdp"
        self.precision = precision
        self.from_rank0 = from_rank0
        if not dist.is_initialized():
            # One process (a 1-GPU FSDP rehearsal): accelerate does not start a process group for a single process.
            store = dist.HashStore()
            backend = "nccl" if acc.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, store=store, rank=0, world_size=1)

    def setup(self, model: torch.nn.Module, make_optimizer) -> tuple[torch.nn.Module, Any]:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if self.activation_checkpointing:
            enable_activation_checkpointing(model)
        layers = decoder_layers(model)
        if not layers:
            raise ParallelError(f"{type(model).__name__}: no decoder layers found to shard (FSDP wraps each one)")
        mesh = init_device_mesh(self.acc.device.type, (dist.get_world_size(),))
        if self.precision == "bf16":
            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        else:
            policy = MixedPrecisionPolicy()
        # Rank 0's full weights (plain CPU tensors, kept alive here while the model is sharded); the others: meta.
        full = (model.state_dict() if dist.get_rank() == 0 else {}) if self.from_rank0 else None
        # Each unit moves to the device as it is sharded: one unsharded layer at a time, never the whole model.
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
        fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
        if full is not None:
            self._receive_from_rank0(model, full)
        return model, make_optimizer(model)

    def _receive_from_rank0(self, model: torch.nn.Module, full: dict[str, torch.Tensor]) -> None:
        """Every rank's shards (and buffers, e.g. the rotary frequencies, which FSDP does not shard) from rank 0."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        if dist.get_rank() != 0:
            model.to_empty(device=self.acc.device)
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        for buf in model.buffers():
            dist.broadcast(buf, src=0)

    def unwrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model  # fully_shard changes the module's class in place; there is no wrapper to remove

    def sync(self, model, sync: bool) -> AbstractContextManager:
        model.set_requires_gradient_sync(sync)
        return nullcontext()

    def autocast(self) -> AbstractContextManager:
        return nullcontext()  # the mixed-precision policy casts the parameters; the loss upcasts the logits

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def make(acc, *, fsdp: bool, precision: str, activation_checkpointing: bool, from_rank0: bool = False) -> Strategy:
    """The strategy for this launch: FSDP when the run asks for it, else accelerate's (one process or DDP)."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP and not fsdp:
        raise ParallelError(
            "launched with an accelerate FSDP config but train.fsdp is false: set `fsdp: true` in the profile's train "
            "section (the engine shards the model itself) and launch with a plain multi-process config"
        )
    if fsdp:
        return FSDP(acc, activation_checkpointing, precision, from_rank0)
    return Strategy(acc, activation_checkpointing)
