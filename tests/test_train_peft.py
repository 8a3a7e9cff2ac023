"""Options beyond the paper: LoRA + trainable new-vocabulary rows (old rows and frozen weights stay bitwise equal,
new rows and adapted matrices change, the saved model is a plain merged HF model), and the embedding-only warm-up
(only embed_tokens/lm_head move during the first N steps, everything after)."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from swallowlib.train import checkpoint
from tests.train_helpers import PROFILE, make_expanded_init, train_inprocess, write_config

OLD_ROWS = 300  # the base tokenizer of the test tree


@pytest.fixture(scope="module")
def tree(tree):
    """conftest's tree with stage 03's stand-in output (the expanded initialisation) added."""
    make_expanded_init(tree["runs"])
    return tree


def _weights(d):
    return load_file(d / "model.safetensors")


def test_lora_with_trainable_new_rows(tree, tmp_path):
    cfg = write_config(
        tree["config"], tmp_path / "p.yaml",
        lambda d: d["train"]["runs"].update(lora={**d["train"]["runs"]["ve"], "peft": True}),
    )  # fmt: skip
    s = train_inprocess(cfg, "lora", tree["runs"])
    assert s["completed"]
    init = _weights(tree["runs"] / PROFILE / "embedding_init" / "random")
    out = tree["runs"] / PROFILE / "train" / "lora"
    final = _weights(out / "final")
    assert set(final) == set(init)  # a plain (merged) Llama state dict, loadable by from_pretrained
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(final[k][:OLD_ROWS], init[k][:OLD_ROWS]), f"{k}: old rows moved"
        assert not torch.equal(final[k][OLD_ROWS:], init[k][OLD_ROWS:]), f"{k}: new rows did not train"
    for k in init:
        if "norm" in k:
            assert torch.equal(final[k], init[k]), k  # not adapted: frozen
        if k.endswith(("q_proj.weight", "down_proj.weight")):
            assert not torch.equal(final[k], init[k]), k  # LoRA merged in
    resume = checkpoint.read_model(checkpoint.list_checkpoints(out / "checkpoints")[-1][1])
    assert any("lora_A" in k for k in resume) and any("trainable_tokens_delta" in k for k in resume)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "final")  # later stages load it as is


def test_embedding_only_warmup(tree, tmp_path):
    cfg = write_config(
        tree["config"], tmp_path / "w.yaml",
        lambda d: d["train"]["runs"].update(warm={**d["train"]["runs"]["ve"], "embedding_warmup_steps": 4}),
    )  # fmt: skip
    train_inprocess(cfg, "warm", tree["runs"])
    init = _weights(tree["runs"] / PROFILE / "embedding_init" / "random")
    out = tree["runs"] / PROFILE / "train" / "warm"
    at4, final = _weights(out / "milestones" / "step-00000004"), _weights(out / "final")  # 8 steps, milestone at 0.5
    emb = ("model.embed_tokens.weight", "lm_head.weight")
    for k in init:
        if k in emb:
            assert not torch.equal(at4[k], init[k]), k
        else:
            assert torch.equal(at4[k], init[k]), f"{k} moved during the embedding-only warm-up"
    assert not torch.equal(final["model.layers.0.mlp.up_proj.weight"], init["model.layers.0.mlp.up_proj.weight"])
    import json

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    phases = [r["phase"] for r in rows if "event" not in r]
    assert phases[:2] == ["embedding-warmup", "embedding-warmup"] and phases[-1] == "full"
    shutil.rmtree(out)
