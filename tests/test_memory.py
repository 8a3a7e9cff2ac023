"""The memory model (swallowlib.train.memory): known answers worked out by hand on a tiny Llama, the saved-tensor
formula against what a real HF Llama saves on CPU, and the GPU profiles against their device_memory_gib."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from swallowlib import paths
from swallowlib.config import ConfigError, PeftConfig, load_config
from swallowlib.train import memory
from swallowlib.train.memory import GIB, Arch, check_fits, estimate, estimate_run
from tests.train_helpers import use_runs

# d 64, 2 layers, 4 heads of 16 (2 kv heads: kv_dim 32), SwiGLU 172, vocabulary 256, untied.
TINY = Arch(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=172, vocab_size=256)
V = 256
# By hand: q 64x64 + k 64x32 + v 64x32 + o 64x64 + gate/up/down 3 x 64x172 + two norms 2 x 64.
LAYER = 4096 + 2048 + 2048 + 4096 + 3 * 11008 + 128  # 45,440
P = 256 * 64 + 2 * LAYER + 64 + 256 * 64  # embedding, layers, final norm, LM head: 123,712
MATMUL = 2 * (LAYER - 128) + 256 * 64  # the projections and the LM head (autocast's bf16 copies): 107,008


def _tiny(**kw):
    args = {"micro_batch_size": 2, "seq_len": 32, "precision": "fp32"} | kw
    return estimate(TINY, V, **args)


def test_parameters_weights_grads_optimizer_by_hand():
    assert memory.layer_params(TINY) == LAYER == 45_440 and memory.param_count(TINY) == P == 123_712
    e = _tiny()
    assert e.parts["weights"] == 4 * P and e.parts["grads"] == 4 * P and e.parts["optimizer"] == 8 * P
    # bf16 on one process: autocast's bf16 copy of every matmul weight lives through the forward
    b = _tiny(precision="bf16")
    assert b.parts["weights"] == 4 * P + 2 * MATMUL
    # DDP: the flat gradient buckets are a second copy of the gradients; nothing is sharded
    ddp = _tiny(processes=4)
    assert ddp.parts["grads"] == 2 * 4 * P and ddp.parts["weights"] == 4 * P and ddp.parts["optimizer"] == 8 * P
    assert e.total == pytest.approx(sum(e.parts.values())) and e.gib() == e.total / GIB
    assert list(e.parts) == list(memory.PARTS)


def test_fsdp_over_four_divides_the_sharded_state_by_four():
    arch = dataclasses.replace(TINY, num_layers=8)
    p8 = 256 * 64 + 8 * LAYER + 64 + 256 * 64
    root = 256 * 64 + 64 + 256 * 64  # embeddings, final norm, LM head: one FSDP unit, unsharded forward to backward
    one = estimate(arch, V, micro_batch_size=2, seq_len=32, precision="fp32")
    four = estimate(arch, V, micro_batch_size=2, seq_len=32, precision="fp32", fsdp=True, processes=4)
    assert four.parts["optimizer"] == one.parts["optimizer"] / 4 == 8 * p8 / 4
    # plus the unsharded fp32 copies: two layers being gathered and the root unit
    assert four.parts["weights"] == 4 * p8 / 4 + 4 * (2 * LAYER + root)
    # plus one layer's unsharded gradient and the LM head's (the root reduces at the end of the backward)
    assert four.parts["grads"] == 4 * p8 / 4 + 4 * (LAYER + 256 * 64)
    # bf16 policy: the gathered copies are bf16, and a layer's bf16 gradient gets an fp32 copy for the reduce
    b = estimate(arch, V, micro_batch_size=2, seq_len=32, precision="bf16", fsdp=True, processes=4)
    assert b.parts["weights"] == 4 * p8 / 4 + 2 * (2 * LAYER + root)
    assert b.parts["grads"] == 4 * p8 / 4 + 2 * (LAYER + 256 * 64) + 4 * LAYER
    assert four.parts["activations"] == one.parts["activations"]  # sharding the state leaves activations alone


def test_activations_by_hand_and_linear_in_tokens():
    # fp32, per token and layer: fp32 norm inputs 2x4d, normalised 2x4d, one shared projection input each for q/k/v
    # and gate/up 2x4d, sdpa q + out 2x4d and k + v 2x4x32, log-sum-exp 4x4 heads, SwiGLU 4x4x172, rsqrt 2x4
    layer = 8 * 4 * 64 + 2 * 4 * 32 + 4 * 4 + 4 * 4 * 172 + 8
    assert layer == 5080 == memory.layer_bytes_per_token(TINY, act_bytes=4, residual_bytes=4)
    head = 4 * 64 + 4 + 4 * 64 + 4 * 64 + 16  # final norm input, rsqrt, normalised; LM head input; ids + targets
    e = _tiny()
    assert e.parts["activations"] == 2 * 32 * (2 * layer + head)
    assert _tiny(micro_batch_size=4).parts["activations"] == 2 * e.parts["activations"]
    assert _tiny(seq_len=64).parts["activations"] == 2 * e.parts["activations"]
    assert _tiny(micro_batch_size=6, seq_len=96).parts["activations"] == 9 * e.parts["activations"]
    # bf16 autocast over fp32 weights: q/k/v and gate/up each cast their fp32 input (5 bf16 copies), rest bf16
    assert memory.layer_bytes_per_token(TINY, act_bytes=2, residual_bytes=4) == (
        8 * 64 + 8 + 2 * 4 * 64 + 5 * 2 * 64 + 2 * 64 + 2 * 2 * 32 + 2 * 64 + 4 * 4 + 4 * 2 * 172
    )
    # grouped-query attention: only k and v depend on num_kv_heads
    mha = dataclasses.replace(TINY, num_kv_heads=4)
    assert memory.layer_bytes_per_token(mha, act_bytes=4, residual_bytes=4) - layer == 2 * 4 * (64 - 32)


def test_checkpointing_keeps_each_layer_input_and_one_layer():
    arch = dataclasses.replace(TINY, num_layers=8)
    layer, head, tokens = 5080, 788, 2 * 32
    full = estimate(arch, V, micro_batch_size=2, seq_len=32, precision="fp32")
    ckpt = estimate(arch, V, micro_batch_size=2, seq_len=32, precision="fp32", activation_checkpointing=True)
    assert full.parts["activations"] == tokens * (8 * layer + head)
    assert ckpt.parts["activations"] == tokens * (8 * 4 * 64 + layer + head)  # 8 fp32 inputs + one recomputed layer
    # FSDP's bf16 policy makes the residual stream, and so the kept inputs, bf16
    b = estimate(arch, V, micro_batch_size=2, seq_len=32, fsdp=True, activation_checkpointing=True)
    layer_b = memory.layer_bytes_per_token(arch, act_bytes=2, residual_bytes=2)
    head_b = memory.head_bytes_per_token(arch, act_bytes=2, residual_bytes=2)
    assert b.parts["activations"] == tokens * (8 * 2 * 64 + layer_b + head_b)
    assert ckpt.parts["logits"] == full.parts["logits"]


def test_logits_and_overhead_by_hand():
    e = _tiny()
    # fp32 log-probabilities (saved), their gradient and the logits' gradient: 3 x 4 bytes per logit
    assert e.parts["logits"] == 12 * 2 * 32 * 256
    allocated = sum(v for k, v in e.parts.items() if k != "overhead")
    assert e.parts["overhead"] == pytest.approx(memory.CONTEXT_BYTES + memory.FRAGMENTATION * allocated)


def test_peft_trains_adapters_and_new_rows_only():
    pc = PeftConfig(r=4, target_modules=["q_proj", "v_proj"])
    lora = 2 * (4 * (64 + 64) + 4 * (64 + 32))  # per layer: q 64->64, v 64->32, rank 4
    e = _tiny(peft=pc, new_rows=10)
    trained = lora + 2 * 10 * 64  # + the new rows of the embedding and of the LM head
    assert memory.lora_params(TINY, pc) == lora
    assert e.parts["optimizer"] == 8 * trained and e.parts["grads"] == 4 * trained
    assert e.parts["weights"] == 4 * (P + trained)  # the frozen base stays in fp32 beside the adapters


def test_check_fits_is_one_line_naming_what_to_change():
    e = _tiny(micro_batch_size=8)
    assert check_fits(e, e.total / 0.85 + 1) is None
    line = check_fits(e, e.total)  # no headroom left
    assert line is not None and "\n" not in line and line.startswith(f"run : ~{e.gib():.1f} GiB per process")
    for hint in ("train.micro_batch_size (now 8)", "train.activation_checkpointing: true", "train.fsdp: true"):
        assert hint in line
    assert check_fits(e, e.total, headroom=0.0) is None


# ---------------------------------------------------------------------------------------------------------------
# The formula against a real model


def _saved_bytes(arch: Arch, *, dtype: str, batch: int = 3, seq: int = 20) -> int:
    """Bytes of the distinct storages autograd saves in one forward of an HF Llama (sdpa) plus the loss, parameters
    and autocast's weight copies left out (they are the ``weights`` part)."""
    import contextlib

    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
                         num_hidden_layers=arch.num_layers, num_attention_heads=arch.num_heads,
                         num_key_value_heads=arch.num_kv_heads, vocab_size=arch.vocab_size,
                         max_position_embeddings=64, attn_implementation="sdpa")  # fmt: skip
    model = LlamaForCausalLM(config).train()
    if dtype == "bf16-weights":  # what FSDP2's bf16 policy computes with
        model.to(torch.bfloat16)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weight_shapes = {tuple(p.shape) for p in model.parameters()} | {tuple(p.shape)[::-1] for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params and tuple(t.shape) not in weight_shapes:
            seen[s.data_ptr()] = s.nbytes()  # one storage saved by several ops counts once
        return t

    # FSDP2's bf16 policy runs without autocast (the parameters are already bf16), as the engine does
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16-autocast" else contextlib.nullcontext()
    ids = torch.randint(0, arch.vocab_size, (batch, seq + 1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        logits = model(input_ids=ids[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), ids[:, 1:].reshape(-1))
    loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize("kv_heads", [2, 4])  # grouped-query and multi-head attention
@pytest.mark.parametrize("dtype", ["fp32", "bf16-autocast", "bf16-weights"])
def test_activation_formula_matches_the_saved_tensors_of_an_hf_llama(dtype, kv_heads):
    """The activations part (plus the fp32 log-probabilities the loss saves, which the logits part covers) against
    the bytes autograd really saves: a formula that forgets or invents a tensor is off by several percent."""
    pytest.importorskip("transformers")
    arch = dataclasses.replace(TINY, num_layers=3, num_kv_heads=kv_heads)
    act, residual = {"fp32": (4, 4), "bf16-autocast": (2, 4), "bf16-weights": (2, 2)}[dtype]
    tokens = 3 * 20
    predicted = memory.activation_bytes(arch, tokens, checkpointing=False, act_bytes=act, residual_bytes=residual)
    predicted += 4 * tokens * V
    measured = _saved_bytes(arch, dtype=dtype)
    assert measured == pytest.approx(predicted, rel=0.02), (measured, predicted)


# ---------------------------------------------------------------------------------------------------------------
# The GPU profiles


def _runs(cfg) -> list[str]:
    from swallowlib.embedding_init.stage import comparison_runs

    return [*cfg.train.runs, *(n for n in comparison_runs(cfg) if n not in cfg.train.runs)]


@pytest.mark.parametrize("profile", ["tinyllama-1.1b", "llama2-7b"])
def test_gpu_profiles_fit_their_device_with_headroom(profile, tmp_path, monkeypatch):
    """Every run, stage 03's comparison runs included, fits device_memory_gib with 15 % to spare - without the
    network."""

    def deny(*args, **kwargs):
        raise AssertionError(f"the memory estimate tried to use the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", deny)
    monkeypatch.setattr(socket, "getaddrinfo", deny)
    cfg = load_config(paths.config_path(profile))
    assert cfg.train.device_memory_gib == 80
    with use_runs(tmp_path):
        runs = _runs(cfg)
        assert any(r.startswith("init-cmp-") for r in runs)
        for run in runs:
            est = estimate_run(cfg, run)
            assert est.processes == cfg.train.processes and est.run == run
            assert check_fits(est, cfg.train.device_memory_gib * GIB) is None, check_fits(est, 80 * GIB)


def test_tinyllama_micro_batch_8_without_checkpointing_does_not_fit_80_gib(tmp_path):
    """The known failure: 8 x 2,048 tokens per micro-batch with every layer's activations kept."""
    cfg = load_config(paths.config_path("tinyllama-1.1b"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=8,
                                                             activation_checkpointing=False))  # fmt: skip
    with use_runs(tmp_path):
        for run in ("cpt-ve", "scratch-ve"):  # the expanded vocabulary
            est = estimate_run(cfg, run)
            line = check_fits(est, 80 * GIB)
            assert line and line.startswith(f"run {run}: ") and "activations" in line, line
            assert max(est.parts, key=est.parts.get) == "activations"
        # checkpointing brings it back under the line
        ckpt = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, activation_checkpointing=True))
        assert check_fits(estimate_run(ckpt, "cpt-ve"), 80 * GIB) is None


def test_llama2_7b_follows_the_process_count(tmp_path):
    cfg = load_config(paths.config_path("llama2-7b"))
    with use_runs(tmp_path):
        e16, e8 = estimate_run(cfg, "cpt-ve"), estimate_run(cfg, "cpt-ve", processes=8)
    assert e8.processes == 8 and e8.parts["optimizer"] == pytest.approx(2 * e16.parts["optimizer"])
    assert e8.parts["activations"] == e16.parts["activations"]


def test_device_memory_gib_must_be_positive(tmp_path):
    src = paths.config_path("tinyllama-1.1b").read_text(encoding="utf-8")
    assert "device_memory_gib: 80" in src
    for bad in ("0", "-8"):
        path = tmp_path / f"bad{bad}.yaml"
        path.write_text(src.replace("device_memory_gib: 80", f"device_memory_gib: {bad}"))
        with pytest.raises(ConfigError, match="device_memory_gib"):
            load_config(path)


def test_the_engine_refuses_a_run_that_cannot_fit_before_its_first_step(caplog):
    """On CUDA the engine checks the estimate against the device (engine.check_memory): over the device is one clear
    error, within 15 % of it a warning, below that nothing."""
    import logging
    from pathlib import Path

    from transformers import LlamaConfig

    from swallowlib.config import OptimizerConfig
    from swallowlib.train.engine import Job, TrainError, check_memory

    cfg = LlamaConfig(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                      intermediate_size=5632, vocab_size=43176)  # fmt: skip
    job = Job(name="cpt-ve", out_dir=Path("."), data=None, tokens=1, seq_len=2048, micro_batch_size=8, batch_size=256,
              optimizer=OptimizerConfig(), model_init="x", precision="bf16")  # fmt: skip
    arch = Arch(2048, 22, 32, 4, 5632, 43176)
    total = estimate(arch, 43176, micro_batch_size=8, seq_len=2048, precision="bf16").total
    with pytest.raises(TrainError, match=r"run cpt-ve: .* exceeds 100% of the .* smaller train.micro_batch_size"):
        check_memory(job, cfg, 1, 0.9 * total)
    with caplog.at_level(logging.WARNING):
        check_memory(job, cfg, 1, 1.05 * total)
    assert "tight on memory" in caplog.text
    caplog.clear()
    check_memory(job, cfg, 1, 2 * total)
    assert "tight on memory" not in caplog.text
