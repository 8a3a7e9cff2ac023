"""Peak accelerator memory per process of a training run, estimated from the profile before the run starts.

    >>> from swallowlib.config import load_config
    >>> est = estimate_run(load_config("configs/tinyllama-1.1b.yaml"), "cpt-ve")     # doctest: +SKIP
    >>> est.gib(), check_fits(est, 80 * GIB)                                         # doctest: +SKIP

``python -m swallowlib.plan`` prints the estimate of every run; ``make preflight`` checks it against the device.
Nothing here imports torch or touches the network: the architecture comes from :data:`KNOWN_MODELS` (published
``config.json`` sizes), a local model directory's ``config.json``, or ``train.model``.

The estimate is the sum of six parts, in bytes per process, for ``P`` parameters (``P_t`` of them trained: all, or
LoRA's plus the new vocabulary rows under PEFT), ``N`` processes, ``T = micro_batch_size × seq_len`` tokens per
micro-batch and a vocabulary of ``V``:

``weights``
    fp32 master weights, ``4·P`` (``4·P / N`` under FSDP). Plus the copy the matmuls read: on one process or DDP
    with bf16, autocast caches a bf16 copy of every matmul weight (the decoder projections and the LM head, not the
    input embedding) for the whole forward, ``2·P_matmul``; under FSDP2 the unsharded compute copy (bf16 under the
    bf16 ``MixedPrecisionPolicy``, fp32 otherwise) of two decoder layers (the one computing and the one prefetched)
    plus the root unit (embeddings, final norm, LM head), which FSDP2 keeps unsharded from the forward to the
    backward.
``grads``
    fp32, ``4·P_t`` (``/ N`` under FSDP). DDP (several processes, no FSDP) adds its flat gradient buckets: DDP's
    default ``gradient_as_bucket_view=False`` keeps them beside the ``.grad`` tensors, a second ``4·P_t``. FSDP adds
    the gradients that exist unsharded at the peak: one decoder layer's (in the compute dtype, and its fp32 copy
    for the fp32 reduce-scatter when that is bf16) and the LM head's, which the root unit reduces only at the end
    of the backward.
``optimizer``
    AdamW's two fp32 moments, ``8·P_t`` (``/ N`` under FSDP).
``activations``
    what autograd saves, :func:`layer_bytes_per_token` per decoder layer and token (derived there), times
    ``n_layers × T``, plus :func:`head_bytes_per_token` × ``T`` for the final norm and the LM head input. With
    activation checkpointing each layer keeps only its input hidden state (``d`` values in the residual dtype) and
    one layer's full activations exist again during its recompute: ``T × (n_layers·r·d + layer + head)``.
``logits``
    ``12·T·V``: the cross-entropy's peak, at the start of the backward, holds the fp32 log-probabilities it saved,
    the fp32 gradient of the log-probabilities and the fp32 gradient of the upcast logits (3 × 4 bytes). The
    forward's peak is smaller: the logits (2 bytes under bf16, 4 in fp32), their fp32 upcast and the fp32
    log-probabilities, at most ``4 + 4 + 4``.
``overhead``
    :data:`CONTEXT_BYTES` (the CUDA context, cuBLAS workspaces, NCCL's communication buffers: memory the caching
    allocator never sees) plus :data:`FRAGMENTATION` of the five parts above (blocks the caching allocator holds
    but cannot reuse for a request of another size).

The parts are added although their peaks are a moment apart (the logits' at the start of the backward, a
checkpointed layer's recompute just after): the sum errs on the safe side by at most the smaller of the two.
Eager mode is assumed (``torch.compile`` fuses some of the saved intermediates away, so it only lowers the need).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swallowlib import paths
from swallowlib.config import Config, ModelConfig, PeftConfig

GIB = 2**30

#: Memory outside PyTorch's allocator on each process: the CUDA context and kernel images, cuBLAS/cuDNN workspaces
#: and NCCL's buffers. An allowance, not a measurement: it varies with the driver, the CUDA version and the number
#: of peers.
CONTEXT_BYTES = 1.5 * GIB

#: Share of the allocated bytes lost to the caching allocator's fragmentation (cached blocks of one size that a
#: request of another cannot use). An allowance: training loops with many tensor sizes typically lose 5-15 %.
FRAGMENTATION = 0.10

#: The headroom :func:`check_fits` (and the profiles' ``device_memory_gib``) leave by default: the estimate is a
#: model, and a run that fits only on paper dies hours in, at the first unusually fragmented step.
HEADROOM = 0.15

#: Llama 2's tokenizer (the ``llama2`` base of stage 02).
LLAMA2_VOCAB = 32000

PARTS = ("weights", "grads", "optimizer", "activations", "logits", "overhead")


class ArchError(ValueError):
    """The model's architecture cannot be known offline; the message says what to add."""


@dataclass(frozen=True)
class Arch:
    """A Llama-architecture model's sizes (what parameter counts, FLOPs and the memory estimate need)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    source: str = ""

    @property
    def kv_dim(self) -> int:
        """Width of the key (and of the value) projection: ``head_dim × num_kv_heads`` (grouped-query attention)."""
        return self.hidden_size // self.num_heads * self.num_kv_heads


#: Published architectures (the models' ``config.json``) of the base models the GPU profiles name; parameter counts
#: computed from them equal the published totals (tests/test_plan.py).
KNOWN_MODELS: dict[str, Arch] = {
    "meta-llama/Llama-2-7b-hf": Arch(4096, 32, 32, 32, 11008, 32000, False, "Llama 2 7B config.json (6.74B)"),
    "meta-llama/Llama-2-13b-hf": Arch(5120, 40, 40, 40, 13824, 32000, False, "Llama 2 13B config.json (13.0B)"),
    "TinyLlama/TinyLlama_v1.1": Arch(2048, 22, 32, 4, 5632, 32000, False, "TinyLlama v1.1 config.json (1.1B)"),
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": Arch(
        2048, 22, 32, 4, 5632, 32000, False, "TinyLlama 1.1B 3T config.json (1.1B)"
    ),
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one process of a run: the parts (bytes, by :data:`PARTS` name) and their sum.

    ``detail``: what the estimate was made from (micro-batch, checkpointing, sharding, sizes), for the advice of
    :func:`check_fits` and the plan.
    """

    run: str
    processes: int
    parts: dict[str, float]
    total: float
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def gib(self) -> float:
        return self.total / GIB


# ---------------------------------------------------------------------------------------------------------------
# Architecture (shared with swallowlib.plan)


def layer_params(arch: Arch) -> int:
    """Parameters of one decoder layer: q/o (``d×d``), k/v (``d×kv_dim``), gate/up/down (``d×I``), two norms."""
    d = arch.hidden_size
    return 2 * d * d + 2 * d * arch.kv_dim + 3 * d * arch.intermediate_size + 2 * d


def param_count(arch: Arch, vocab: int | None = None) -> int:
    """Every parameter of the Llama (input embedding, layers, final norm, LM head unless tied)."""
    v = arch.vocab_size if vocab is None else vocab
    d = arch.hidden_size
    return v * d + arch.num_layers * layer_params(arch) + d + (0 if arch.tie_word_embeddings else v * d)


def matmul_params(arch: Arch, vocab: int) -> int:
    """Weights that enter a matmul (the decoder projections and the LM head): what autocast keeps a bf16 copy of."""
    return arch.num_layers * (layer_params(arch) - 2 * arch.hidden_size) + vocab * arch.hidden_size


#: The projections of a Llama layer LoRA can adapt (other target names match nothing in a Llama layer).
_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_params(arch: Arch, peft: PeftConfig) -> int:
    """LoRA's A and B matrices over every layer: ``r × (in + out)`` per target projection."""
    d, kv, inter = arch.hidden_size, arch.kv_dim, arch.intermediate_size
    shapes = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
              "gate_proj": (d, inter), "up_proj": (d, inter), "down_proj": (inter, d)}  # fmt: skip
    return arch.num_layers * sum(peft.r * sum(shapes[m]) for m in peft.target_modules if m in shapes)


def base_arch(cfg: Config) -> Arch:
    """The architecture a profile's runs are built on: the named pretrained model, or train.model's sizes."""
    mc: ModelConfig = cfg.train.model
    if not mc.pretrained:
        return Arch(mc.hidden_size, mc.num_layers, mc.num_heads, mc.num_kv_heads or mc.num_heads,
                    mc.intermediate_size, 0, mc.tie_word_embeddings, "train.model sizes")  # fmt: skip
    if mc.pretrained in KNOWN_MODELS:
        return KNOWN_MODELS[mc.pretrained]
    local = Path(mc.pretrained) / "config.json"
    if local.is_file():  # a local HF directory: read its sizes, never download
        c = json.loads(local.read_text(encoding="utf-8"))
        try:
            return Arch(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                        c.get("num_key_value_heads") or c["num_attention_heads"], c["intermediate_size"],
                        c["vocab_size"], bool(c.get("tie_word_embeddings", False)), str(local))  # fmt: skip
        except KeyError as e:
            raise ArchError(f"{local}: no {e.args[0]} (expected a Llama config.json)") from None
    raise ArchError(
        f"{cfg.path}: train.model.pretrained: {mc.pretrained!r} is neither a known model "
        f"({', '.join(KNOWN_MODELS)}) nor a local directory with config.json; add its sizes to "
        "swallowlib.train.memory.KNOWN_MODELS (the plan never downloads a config)"
    )


def vocab_sizes(cfg: Config) -> dict[str, tuple[int, str]]:
    """``{"base": (size, source), "expanded": (size, source)}``: measured by stage 02 when it has run."""
    tc = cfg.tokenizer
    base = (LLAMA2_VOCAB, "Llama 2's tokenizer") if tc.base == "llama2" else (tc.base_vocab, "tokenizer.base_vocab")
    try:
        merge = json.loads((paths.run_dir(cfg.profile) / "tokenizer" / "merge.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        merge = {}
    merged = merge.get("expanded", {}) if isinstance(merge, dict) else {}
    if isinstance(merged.get("final_size"), int):
        expanded = (merged["final_size"], "measured: runs/…/tokenizer/merge.json")
    else:
        n = math.ceil((base[0] + tc.ja_vocab) / tc.pad_to) * tc.pad_to
        expanded = (n, "estimate: base + tokenizer.ja_vocab, padded (pieces already in the base are not added; "
                       "stage 02 measures it)")
    return {"base": base, "expanded": expanded}


# ---------------------------------------------------------------------------------------------------------------
# Activations


def layer_bytes_per_token(arch: Arch, *, act_bytes: int, residual_bytes: int, lora_r: int = 0,
                          lora_modules: int = 0) -> int:  # fmt: skip
    """Bytes autograd saves per token in one HF ``LlamaDecoderLayer`` (sdpa attention), no checkpointing.

    ``act_bytes``: the dtype the matmuls run in (2 under bf16, 4 in fp32). ``residual_bytes``: the dtype of the
    residual stream, which is the parameters' dtype (the embedding output's): 4 with fp32 weights (one process,
    DDP: autocast leaves the additions and RMSNorm in fp32), 2 under FSDP2's bf16 policy. With ``d`` hidden,
    ``kv = head_dim × num_kv_heads``, ``I`` the SwiGLU width and ``h`` heads, the saved tensors are:

    ========================================================  =============================================
    tensor (saved by)                                         bytes per token
    ========================================================  =============================================
    fp32 input of each RMSNorm (pow, mul): the residual        ``2 × 4d``
    itself, or its fp32 upcast when the residual is bf16
    RMSNorm rsqrt (mul)                                        ``2 × 4``
    normalised hidden before the weight multiply (mul)         ``2 × r·d``
    projection inputs (linear): q/k/v and gate/up              ``5 × a·d`` when autocast casts each one from
                                                               fp32 (a bf16 copy per linear), else ``2 × a·d``
                                                               (one tensor shared by the three and by the two)
    sdpa (flash / memory-efficient: no L×L matrix): q, k, v,   ``a·d + 2·a·kv + a·d``
    output (the same storage is o_proj's input)
    sdpa log-sum-exp, fp32 per head                            ``4·h``
    SwiGLU: gate (silu), silu(gate) and up (mul), their        ``4 × a·I``
    product (down_proj's input)
    LoRA: A's output per adapted projection (B's input)        ``modules × a·r``
    ========================================================  =============================================

    The residual additions and RoPE save nothing per token (RoPE saves the cos/sin tables, shared by every layer
    and batch element; the rotated q/k are cast for sdpa). Grouped-query attention enters through ``kv``: sdpa gets
    the ``num_kv_heads`` keys and values (``enable_gqa``), not copies repeated per query head.

    >>> tiny = Arch(64, 2, 4, 2, 172, 256)                       # d 64, 4 heads of 16, 2 kv heads: kv 32
    >>> layer_bytes_per_token(tiny, act_bytes=4, residual_bytes=4)   # fp32: 32d + 8kv + 16I + 4h + 8
    5080
    >>> layer_bytes_per_token(tiny, act_bytes=2, residual_bytes=4)   # bf16 autocast: 30d + 4kv + 8I + 4h + 8
    3448
    >>> layer_bytes_per_token(tiny, act_bytes=2, residual_bytes=2)   # bf16 weights (FSDP2): 20d + 4kv + 8I + 4h + 8
    2808

    (tests/test_memory.py checks these against the bytes a real HF Llama saves.)
    """
    d, kv, inter, h = arch.hidden_size, arch.kv_dim, arch.intermediate_size, arch.num_heads
    a, r = act_bytes, residual_bytes
    casts = a != r  # autocast over fp32 weights: every linear casts its fp32 input to its own bf16 copy
    norms = 2 * 4 * d + 2 * 4 + 2 * r * d
    proj_inputs = (5 if casts else 2) * a * d
    attention = a * d + 2 * a * kv + a * d + 4 * h
    mlp = 4 * a * inter
    return norms + proj_inputs + attention + mlp + lora_modules * a * lora_r


def head_bytes_per_token(arch: Arch, *, act_bytes: int, residual_bytes: int) -> int:
    """Saved bytes per token outside the decoder layers: the final RMSNorm (``4d + 4 + r·d``), the LM head's input
    (``a·d``) and the int64 input ids and targets (``16``). The cross-entropy's tensors are the ``logits`` part."""
    d = arch.hidden_size
    return 4 * d + 4 + residual_bytes * d + act_bytes * d + 16


def activation_bytes(arch: Arch, tokens: int, *, checkpointing: bool, act_bytes: int, residual_bytes: int,
                     lora_r: int = 0, lora_modules: int = 0) -> int:  # fmt: skip
    """Saved activations of ``tokens`` tokens (micro-batch × seq_len): every layer's, or with checkpointing every
    layer's input plus one layer being recomputed. Linear in ``tokens``."""
    layer = layer_bytes_per_token(arch, act_bytes=act_bytes, residual_bytes=residual_bytes, lora_r=lora_r,
                                  lora_modules=lora_modules)  # fmt: skip
    head = head_bytes_per_token(arch, act_bytes=act_bytes, residual_bytes=residual_bytes)
    if checkpointing:
        per_token = arch.num_layers * residual_bytes * arch.hidden_size + layer + head
    else:
        per_token = arch.num_layers * layer + head
    return tokens * per_token


def logits_bytes(tokens: int, vocab: int) -> int:
    """The cross-entropy's peak: fp32 log-probabilities, their gradient and the logits' gradient (module docstring)."""
    return 12 * tokens * vocab


# ---------------------------------------------------------------------------------------------------------------
# The estimate


def estimate(arch: Arch, vocab: int, *, micro_batch_size: int, seq_len: int, processes: int = 1, fsdp: bool = False,
             activation_checkpointing: bool = False, precision: str = "bf16", peft: PeftConfig | None = None,
             new_rows: int = 0, run: str = "") -> MemoryEstimate:  # fmt: skip
    """Peak memory per process of training ``arch`` with a ``vocab``-row embedding (module docstring).

    ``precision``: ``bf16`` (or ``auto``: the estimate is for a GPU, where auto means bf16) or ``fp32``. ``peft``:
    LoRA settings when the run trains adapters only; ``new_rows``: embedding rows it trains beside them.

    >>> tiny = Arch(64, 2, 4, 4, 172, 256)
    >>> one = estimate(tiny, 256, micro_batch_size=2, seq_len=32, precision="fp32")
    >>> one.parts["weights"] == 4 * param_count(tiny, 256)
    True
    >>> four = estimate(tiny, 256, micro_batch_size=2, seq_len=32, precision="fp32", fsdp=True, processes=4)
    >>> four.parts["optimizer"] * 4 == one.parts["optimizer"]
    True
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if precision not in ("bf16", "auto", "fp32"):
        raise ValueError(f"precision must be bf16, auto or fp32, got {precision!r}")
    bf16 = precision != "fp32"
    d = arch.hidden_size
    n_params = param_count(arch, vocab)
    embeddings = 1 if arch.tie_word_embeddings else 2  # matrices a new vocabulary row is in
    if peft is not None:
        targets = [m for m in peft.target_modules if m in _LORA_TARGETS]
        lora = lora_params(arch, peft)
        rows = new_rows if peft.train_new_rows else 0
        trained = lora + embeddings * rows * d
        layer_trained, head_trained = lora // arch.num_layers, rows * d
    else:
        targets, lora, trained = [], 0, n_params
        layer_trained, head_trained = layer_params(arch), vocab * d
    shard = processes if fsdp else 1
    # FSDP2's bf16 policy gathers the parameters in bf16, so the whole forward (residual stream included) is bf16;
    # otherwise the weights stay fp32 and autocast runs only the matmuls (and sdpa) in bf16.
    compute = 2 if fsdp and bf16 else 4
    act = 2 if bf16 else 4

    # Under PEFT the base stays in fp32 beside the adapters and the new rows (trained = LoRA + rows).
    weights = 4.0 * (n_params + (trained if peft is not None else 0)) / shard
    grads = 4.0 * trained / shard
    if fsdp:
        root = n_params - arch.num_layers * layer_params(arch)
        weights += compute * (2 * layer_params(arch) + root)
        grads += compute * (layer_trained + head_trained) + (4 * layer_trained if compute != 4 else 0)
    else:
        if bf16:
            weights += 2.0 * (matmul_params(arch, vocab) + lora)
        if processes > 1:
            grads += 4.0 * trained
    optimizer = 8.0 * trained / shard

    tokens = micro_batch_size * seq_len
    activations = activation_bytes(arch, tokens, checkpointing=activation_checkpointing, act_bytes=act,
                                   residual_bytes=compute, lora_r=peft.r if peft is not None else 0,
                                   lora_modules=len(targets))  # fmt: skip
    logits = logits_bytes(tokens, vocab)
    allocated = weights + grads + optimizer + activations + logits
    parts = {"weights": weights, "grads": grads, "optimizer": optimizer, "activations": float(activations),
             "logits": float(logits), "overhead": CONTEXT_BYTES + FRAGMENTATION * allocated}  # fmt: skip
    detail = {
        "params": n_params, "trained_params": trained, "vocab": vocab, "micro_batch_size": micro_batch_size,
        "seq_len": seq_len, "fsdp": fsdp, "activation_checkpointing": activation_checkpointing,
        "precision": "bf16" if bf16 else "fp32", "peft": peft is not None,
        "layer_bytes_per_token": layer_bytes_per_token(arch, act_bytes=act, residual_bytes=compute),
    }  # fmt: skip
    return MemoryEstimate(run=run, processes=processes, parts=parts, total=sum(parts.values()), detail=detail)


def estimate_run(cfg: Config, run: str, processes: int | None = None) -> MemoryEstimate:
    """The estimate for one run of a profile (``train.runs`` or stage 03's ``init-cmp-*``), on ``processes``
    processes (default ``train.processes``). Reads the config and, when stage 02 has run, the merged vocabulary size;
    never the network."""
    # Deferred: the job module imports torch (through the model), which the plan and preflight read this module
    # without; it sits above this one in the graph (the engine imports both).
    from swallowlib.train.job import get_run

    tc = cfg.train
    rc = get_run(cfg, run)
    arch = base_arch(cfg)
    sizes = vocab_sizes(cfg)
    vocab = sizes[rc.tokenizer][0]
    # The engine trains new rows only when a PEFT run's tokenizer has rows the base tokenizer lacks.
    new_rows = max(0, vocab - sizes["base"][0]) if rc.peft and rc.tokenizer == "expanded" else 0
    return estimate(
        arch, vocab, micro_batch_size=tc.micro_batch_size, seq_len=tc.seq_len,
        processes=tc.processes if processes is None else processes, fsdp=tc.fsdp,
        activation_checkpointing=tc.activation_checkpointing, precision=tc.precision,
        peft=tc.peft if rc.peft else None, new_rows=new_rows, run=run,
    )  # fmt: skip


def check_fits(est: MemoryEstimate, device_bytes: float, headroom: float = HEADROOM) -> str | None:
    """None when the estimate leaves ``headroom`` of the device free, else one line: the run, the estimate, the
    device and what to change.

    >>> e = MemoryEstimate("r", 1, {"activations": 70 * GIB, "overhead": 5 * GIB}, 75 * GIB)
    >>> check_fits(e, 100 * GIB) is None
    True
    >>> line = check_fits(e, 80 * GIB)
    >>> line.startswith("run r: ~75.0 GiB per process on 1 process(es) (largest part: activations 70.0 GiB)")
    True
    >>> line.endswith("exceeds 85% of the 80 GiB device (68.0 GiB); try a larger device")
    True
    """
    limit = (1.0 - headroom) * device_bytes
    if est.total <= limit:
        return None
    big, size = max(est.parts.items(), key=lambda kv: kv[1])
    dt = est.detail
    advice = []
    if dt.get("micro_batch_size", 0) > 1:
        advice.append(f"a smaller train.micro_batch_size (now {dt['micro_batch_size']})")
    if dt and not dt.get("activation_checkpointing"):
        advice.append("train.activation_checkpointing: true")
    if dt and not dt.get("fsdp"):
        advice.append("train.fsdp: true over more processes")
    elif dt:
        advice.append(f"more train.processes (now {est.processes})")
    return (f"run {est.run}: ~{est.gib():.1f} GiB per process on {est.processes} process(es) (largest part: {big} "
            f"{size / GIB:.1f} GiB) exceeds {1 - headroom:.0%} of the {device_bytes / GIB:g} GiB device "
            f"({limit / GIB:.1f} GiB); try " + (", or ".join(advice) if advice else "a larger device"))


def parts_gib(est: MemoryEstimate) -> dict[str, float]:
    """The parts in GiB, rounded to 0.01 (for tables and the plan's JSON)."""
    return {k: round(v / GIB, 2) for k, v in est.parts.items()}


def as_dict(est: MemoryEstimate) -> dict[str, Any]:
    """JSON-ready: total and parts in GiB, the total in bytes, the process count and the detail."""
    return {"gib": round(est.gib(), 2), "parts_gib": parts_gib(est), "bytes": est.total, "processes": est.processes,
            "detail": dict(est.detail)}
