"""Vocabulary resize and the init methods (swallowlib.embedding_init), on a tiny Llama and tokenizers built here.

Run: .venv/bin/pytest tests/test_embedding_init.py -q
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from swallowlib.embedding_init import evaluate, focus, methods
from swallowlib.tokenizer import export
from swallowlib.tokenizer.merge import merge_models
from swallowlib.tokenizer.metrics import spm_piece_bytes
from tests.samples import EN, JA
from tests.samples import train_spm as _train


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    d = tmp_path_factory.mktemp("init")
    base = d / "base.model"
    base.write_bytes(_train(EN * 20, 420, normalization_rule_name="identity"))
    extra = _train(JA * 20, 700, normalization_rule_name="nmt_nfkc")
    rep = merge_models(base, extra, d / "expanded.model", pad_to=64)  # 64: surely some CONTROL padding
    export.export_hf(base, d / "base_hf")
    export.export_hf(d / "expanded.model", d / "expanded_hf")
    return base, d / "expanded.model", rep, d


def _model(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).eval()


def _focus(expanded, old):
    return lambda o, n: focus.focus_weights(expanded, JA * 10, old, dim=8, min_count=2)


@pytest.mark.parametrize("method", methods.METHODS)
def test_old_logits_unchanged_on_english(toks, method):
    """The invariant: on text the base tokenizes identically, logits over the old ids are exactly the base's."""
    base, expanded, rep, _ = toks
    model = _model(rep.base_size)
    sp_base = spm.SentencePieceProcessor(model_file=str(base))
    sp_exp = spm.SentencePieceProcessor(model_file=str(expanded))
    ids = sp_base.encode(EN[:4], add_bos=True)
    assert ids == sp_exp.encode(EN[:4], add_bos=True)
    with torch.no_grad():
        before = [model(torch.tensor([x])).logits for x in ids]
    info = methods.resize_and_init(model, base, expanded, method, focus_weights=_focus(expanded, rep.base_size))
    assert info["new_size"] == rep.final_size == model.get_input_embeddings().num_embeddings
    assert model.get_output_embeddings().weight.shape[0] == rep.final_size
    with torch.no_grad():
        after = [model(torch.tensor([x])).logits for x in ids]
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b[..., : rep.base_size])  # bitwise


def test_mean_of_pieces_known_answer(toks):
    base, expanded, rep, _ = toks
    model = _model(rep.base_size)
    emb_old = model.get_input_embeddings().weight.detach().clone()
    out_old = model.get_output_embeddings().weight.detach().clone()
    methods.resize_and_init(model, base, expanded, "mean-of-pieces")
    splits = methods.base_split(base, expanded, rep.base_size)
    sp = spm.SentencePieceProcessor(model_file=str(expanded))
    new_id = rep.base_size  # the first appended piece
    piece = sp.id_to_piece(new_id)
    assert splits[new_id] and len(splits[new_id]) >= 1
    # The split is what the base makes of the piece's own characters (bytes for characters it lacks).
    sp_base = spm.SentencePieceProcessor(model_file=str(base))
    assert b"".join(spm_piece_bytes(sp_base.id_to_piece(i)) for i in splits[new_id]) == spm_piece_bytes(piece)
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert torch.allclose(emb[new_id], emb_old[splits[new_id]].mean(0))
    assert torch.allclose(out[new_id], out_old[splits[new_id]].mean(0))
    pad = rep.final_size - 1  # CONTROL padding: mean of all old rows
    assert rep.padding and sp.is_control(pad) and torch.allclose(emb[pad], emb_old.mean(0), atol=1e-6), piece


def test_methods_differ_and_are_seeded(toks):
    base, expanded, rep, _ = toks
    rows = {}
    for m in methods.METHODS:
        model = _model(rep.base_size)
        methods.resize_and_init(model, base, expanded, m, seed=1, focus_weights=_focus(expanded, rep.base_size))
        rows[m] = model.get_input_embeddings().weight[rep.base_size :].detach().clone()
    for a in methods.METHODS:
        for b in methods.METHODS:
            if a < b:
                assert not torch.allclose(rows[a], rows[b]), (a, b)
    model = _model(rep.base_size)
    methods.resize_and_init(model, base, expanded, "random", seed=1)
    assert torch.equal(model.get_input_embeddings().weight[rep.base_size :], rows["random"])


def test_sparsemax_and_focus_weights(toks):
    _, expanded, rep, _ = toks
    assert focus.sparsemax(np.array([2.0, 1.0, -1.0])).tolist() == [1.0, 0.0, 0.0]
    p = focus.sparsemax(np.array([0.3, 0.25, 0.2, -3.0]))
    assert math.isclose(p.sum(), 1.0) and p[-1] == 0 and (p >= 0).all() and p[0] > p[1] > p[2]
    w = focus.focus_weights(expanded, JA * 10, rep.base_size, dim=8, min_count=2)
    assert w
    for i, (ids, ws) in w.items():
        assert i >= rep.base_size and (ids < rep.base_size).all()
        assert math.isclose(float(ws.sum()), 1.0, rel_tol=1e-6) and (ws > 0).all()


def test_bad_input(toks, tmp_path):
    base, expanded, rep, d = toks
    with pytest.raises(methods.InitError, match="unknown init method"):
        methods.resize_and_init(_model(rep.base_size), base, expanded, "zeros")
    with pytest.raises(methods.InitError, match="base tokenizer has .* pieces but the model's vocabulary"):
        methods.resize_and_init(_model(rep.base_size + 3), base, expanded, "random")
    with pytest.raises(methods.InitError, match="smaller than the model's vocabulary"):
        methods.check_compatible(_model(rep.final_size), expanded, base)
    other = tmp_path / "other.model"
    other.write_bytes(_train(EN[::-1] * 20 + ["zzz qqq"] * 5, 500, normalization_rule_name="identity"))
    with pytest.raises(methods.InitError, match="must extend the base|pieces but the model"):
        methods.check_compatible(_model(rep.base_size), base, other)
    with pytest.raises(methods.InitError, match="focus_weights"):
        methods.resize_and_init(_model(rep.base_size), base, expanded, "focus")


def test_bits_per_char_known_answer(toks):
    """A model whose logits are all equal predicts every token with probability 1/V: bits = tokens * log2(V)."""
    _, _, rep, d = toks
    tok = export.load_hf(d / "base_hf")
    model = _model(rep.base_size)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    texts = ["hello world, this is a test.", "the kernel allocates memory " * 20]
    r = evaluate.bits_per_char(model, tok, texts, seq_len=16, batch_size=3)
    n_targets = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)  # + EOS
    assert r["tokens"] == n_targets
    assert math.isclose(r["bits"], n_targets * math.log2(rep.base_size), rel_tol=1e-5)
    assert math.isclose(r["bpc"], r["bits"] / sum(len(t) + 1 for t in texts))
    # windowing does not change the answer for a model without context dependence
    assert math.isclose(evaluate.bits_per_char(model, tok, texts, seq_len=1000)["bits"], r["bits"], rel_tol=1e-5)
