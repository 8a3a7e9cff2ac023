"""The model side of the training engine: build a Llama (from sizes or an HF directory), wrap it for PEFT, count its
FLOPs, and save it as an HF directory (safetensors) that later stages load with ``from_pretrained``.

FLOPs per token (used for MFU), after Kaplan et al. / PaLM (appendix B):

    6 · N  +  12 · n_layers · d · seq_len

``N`` counts every parameter except the input embedding (a table lookup, no matmul; the LM head is a matmul and is
counted). The second term is attention's QKᵀ and AV products, forward and backward, counted over the full
``seq_len × seq_len`` square as PaLM does (a causal kernel skips about half of it, so MFU is slightly flattered at
long sequences and barely at ``seq_len`` 256). LoRA and embedding warm-up skip some weight gradients, but MFU keeps
the model's full count, as is conventional.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from swallowlib.config import ModelConfig, PeftConfig

log = logging.getLogger(__name__)

#: Parameter-name parts of the input embedding and the LM head (Llama naming, also inside PEFT wrappers).
EMBEDDING_PARTS = ("embed_tokens", "lm_head")


class ModelError(RuntimeError):
    """A model directory is missing, unreadable or does not fit the tokenizer; the message says which and why."""


def llama_config(mcfg: ModelConfig, vocab_size: int, *, bos_id: int = 1, eos_id: int = 2):
    """A ``LlamaConfig`` from the profile's sizes (tiny Llama for the CPU profiles)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=mcfg.hidden_size,
        num_hidden_layers=mcfg.num_layers,
        num_attention_heads=mcfg.num_heads,
        num_key_value_heads=mcfg.num_kv_heads or mcfg.num_heads,
        intermediate_size=mcfg.intermediate_size,
        max_position_embeddings=mcfg.max_position_embeddings,
        tie_word_embeddings=mcfg.tie_word_embeddings,
        rms_norm_eps=mcfg.rms_norm_eps,
        rope_theta=mcfg.rope_theta,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=None,
        use_cache=False,
    )


def config_dict(config) -> dict:
    """The JSON form of an HF config, for fingerprints and provenance."""
    return config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(config)


def scratch_model(config, seed: int) -> torch.nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` (fp32, sdpa attention); the same seed gives the same weights."""
    from transformers import LlamaForCausalLM

    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def pretrained_config(path_or_id: str, *, local_files_only: bool = True):
    """The ``AutoConfig`` of an HF directory or Hub id (offline profiles: local files only)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_id, local_files_only=local_files_only, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path_or_id}: cannot read a model config ({str(e).splitlines()[0]})") from None


def load_pretrained(path_or_id: str, *, local_files_only: bool = True) -> torch.nn.Module:
    """An HF causal LM from a directory or Hub id, in fp32 (bf16 is applied by autocast), never remote code."""
    from transformers import AutoModelForCausalLM

    if local_files_only:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path_or_id,
            dtype=torch.float32,
            local_files_only=local_files_only,
            trust_remote_code=False,
            attn_implementation="sdpa",
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path_or_id}: cannot load the model ({str(e).splitlines()[0]})") from None
    model.config.use_cache = False
    return model


def meta_model(config) -> torch.nn.Module:
    """The model of ``config`` on the meta device (shapes only, no memory): the FSDP processes other than rank 0,
    which receive their shards from it (:class:`swallowlib.train.parallel.FSDP`)."""
    from transformers import AutoModelForCausalLM

    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.use_cache = False
    return model


def check_vocab(model: torch.nn.Module, tokenizer_size: int, where: str) -> None:
    """The model must have a row for every token id the tokenizer can produce."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < tokenizer_size:
        raise ModelError(
            f"{where}: the model has {rows} embedding rows but the tokenizer has {tokenizer_size} tokens "
            "(an expanded-vocabulary run starts from init:<method>, written by stage 03)"
        )


def wrap_peft(model: torch.nn.Module, pcfg: PeftConfig, new_rows_from: int | None) -> torch.nn.Module:
    """LoRA on ``pcfg.target_modules`` plus, when ``train_new_rows``, trainable rows ``>= new_rows_from`` of the
    embedding and LM head (peft's ``trainable_token_indices``: the old rows are not even parameters of the optimizer,
    so they stay bitwise unchanged)."""
    import warnings

    from peft import LoraConfig, get_peft_model

    # peft 0.21 calls a transformers API that 5.x deprecates; nothing for a user to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*deprecated", category=FutureWarning)
    rows = model.get_input_embeddings().weight.shape[0]
    indices = None
    if pcfg.train_new_rows and new_rows_from is not None and new_rows_from < rows:
        new = list(range(new_rows_from, rows))
        indices = {"embed_tokens": new}
        if not model.config.tie_word_embeddings:
            indices["lm_head"] = new
    lcfg = LoraConfig(
        r=pcfg.r,
        lora_alpha=pcfg.alpha,
        lora_dropout=pcfg.dropout,
        target_modules=list(pcfg.target_modules),
        trainable_token_indices=indices,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def is_embedding_param(name: str) -> bool:
    return any(part in name for part in EMBEDDING_PARTS)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices (ndim >= 2: projections, embeddings, LoRA factors), none on norms."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Total, trainable and non-input-embedding parameter counts (shared tensors once)."""
    seen, total, trainable, embed = set(), 0, 0, 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        if "embed_tokens" in name:
            embed += p.numel()
    return {"total": total, "trainable": trainable, "non_embedding": total - embed}


def flops_per_token(config, seq_len: int) -> float:
    """``6 N + 12 n_layers d seq_len`` (module docstring); ``N`` from the architecture, so LoRA adds nothing."""
    d, n_layers, V = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or d // heads
    attn = d * heads * head_dim * 2 + d * kv * head_dim * 2  # q, o; k, v
    mlp = 3 * d * config.intermediate_size
    norms = 2 * d
    N = n_layers * (attn + mlp + norms) + d + V * d  # + final norm + LM head (counted even when tied)
    return 6.0 * N + 12.0 * n_layers * d * seq_len


def merged_for_saving(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A plain HF model holding ``state_dict``: for a PEFT model, the LoRA and new-row weights merged in; for an
    FSDP-sharded model, an unsharded copy.

    The merge runs on a fresh CPU copy built from the state dict, never on the training model: merging and
    unmerging in place would round the frozen weights and break bitwise resume.
    """
    from torch.distributed.fsdp import FSDPModule
    from transformers import AutoModelForCausalLM

    try:
        from peft import PeftModel, get_peft_model
    except ImportError:  # no peft installed: no PEFT model either
        PeftModel = None  # noqa: N806
    if PeftModel is None or not isinstance(model, PeftModel):
        if not isinstance(model, FSDPModule):
            return model
        # A sharded model's class is FSDP's subclass (it would be saved as the architecture): save a plain copy.
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(model.config.__class__.from_dict(model.config.to_dict()))
        fresh.load_state_dict({k: v.to("cpu") for k, v in state_dict.items()}, strict=True, assign=True)
        return fresh

    base = model.get_base_model()
    # Built on the meta device (no allocation, no RNG use), then every tensor is assigned from the state dict.
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(base.config.__class__.from_dict(base.config.to_dict()))
        pm = get_peft_model(fresh, model.peft_config["default"])
    pm.load_state_dict({k: v.to("cpu") for k, v in state_dict.items()}, strict=True, assign=True)
    return pm.merge_and_unload()


def save_hf(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    out_dir: Path,
    *,
    tokenizer_dir: Path | None,
    dtype: torch.dtype = torch.float32,
    extra: dict | None = None,
) -> None:
    """Write an HF directory (``config.json``, ``model.safetensors``, tokenizer files, ``trainer_state.json``)."""
    import shutil

    from swallowlib.provenance import write_json_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain = merged_for_saving(model, state_dict)
    if plain is not model:
        state_dict = plain.state_dict()
    sd = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu() for k, v in state_dict.items()}
    # Saved config: cache on (later stages generate), dtype of the saved weights; the training model keeps its own.
    old = (plain.config.use_cache, getattr(plain.config, "dtype", None))
    plain.config.use_cache, plain.config.dtype = True, dtype
    try:
        plain.save_pretrained(out_dir, state_dict=sd, safe_serialization=True)
    finally:
        plain.config.use_cache, plain.config.dtype = old
    if tokenizer_dir is not None:
        for p in Path(tokenizer_dir).iterdir():
            if p.is_file():
                shutil.copy2(p, out_dir / p.name)
    if extra is not None:
        write_json_atomic(out_dir / "trainer_state.json", extra)
