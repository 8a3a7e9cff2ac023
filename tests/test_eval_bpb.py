"""Stage 05's bits-per-byte protocol against known answers: a tiny Llama scored by hand with torch.

The protocol (swallowlib/eval/harness.py): ``stream = [BOS] + ids``; windows of ``L = train.seq_len`` input tokens,
``stream[0:L]``, ``stream[L:2L]``, … each predicting its next ``L`` tokens, the last one right-aligned to the end of
the document and scoring only what no earlier window scored; BOS conditions, never scored; bits per byte = -Σ nats /
ln 2 / Σ UTF-8 bytes. The model is initialised with a large spread (initializer_range 0.3), so that its predictions
depend on the context and the position enough for either bug to move the score by far more than the tolerance:

- BOS scored (lm-eval's ``add_bos_token=True``: the document encoded with BOS, then prefixed with BOS again) adds
  log p(BOS | BOS) to every document;
- windows of the model's ``max_position_embeddings`` (256 here) instead of ``train.seq_len`` (32) score a long
  document at positions the model never trained on.

Each bug is also replayed (the harness's protocol switched back, one half at a time) to show that the known-answer
assertions catch it.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil

import pandas as pd
import pytest
import torch

from swallowlib.config import load_config
from swallowlib.eval import harness, tasks
from tests.train_helpers import PROFILE, build_tree, use_runs, write_config

SEQ_LEN = 32  # build_tree's train.seq_len
MAX_POS = 256  # the checkpoint's max_position_embeddings: 8 x the training context
REL = 1e-5  # float32 forward passes, batched and padded by lm-eval vs one by one here

#: Held-out documents (none of them in build_tree's training text): a short one (one window: only BOS can bias it),
#: a long one (three full windows and a right-aligned last one), and one exactly one window plus one token long.
DOCS = {
    "short": "羅生門の下で雨やみを待っていた。",
    "long": "或日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。"
    "広い門の下には、この男の外に誰もいない。"
    "ただ、所々丹塗の剥げた、大きな円柱に、きりぎりすが一匹とまっている。羅生門が、朱雀大路にある以上は、"
    "この男の外にも、雨やみをする市女笠や揉烏帽子が、もう二三人はありそうなものである。",
}


def _model(vocab: int, bos: int, eos: int, out) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=MAX_POS, bos_token_id=bos, eos_token_id=eos,
                      initializer_range=0.3)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    (out / "trainer_state.json").write_text(json.dumps({"run": "ve", "step": 2, "tokens": 256}))


@pytest.fixture(scope="module")
def bpb(tmp_path_factory):
    """A profile whose ``ja/test`` split is :data:`DOCS` (plus a document of exactly ``L + 1`` tokens), a checkpoint
    of a random Llama with the expanded tokenizer, and the model and tokenizer loaded for the hand computation."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    root = tmp_path_factory.mktemp("bpb")
    config = build_tree(root)
    prof = root / "runs" / PROFILE
    tok_dir = prof / "tokenizer" / "expanded"
    tok = AutoTokenizer.from_pretrained(tok_dir)
    docs = dict(DOCS)
    # a document of exactly L + 1 pieces: a first window of L, then one token conditioned on L others (no BOS)
    ids = tok(DOCS["long"], add_special_tokens=False)["input_ids"][: SEQ_LEN + 1]
    docs["one_over"] = tok.decode(ids)
    assert len(tok(docs["one_over"], add_special_tokens=False)["input_ids"]) == SEQ_LEN + 1
    split = prof / "corpus" / "ja" / "test"
    split.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"text": list(docs.values())}).to_parquet(split / "00000.parquet")
    ck = prof / "train" / "ve" / "final"
    _model(len(tok), tok.bos_token_id, tok.eos_token_id, ck)
    for f in tok_dir.iterdir():
        shutil.copy(f, ck / f.name)
    cfg_path = write_config(config, root / "bpb.yaml", lambda d: d.update(eval={
        "tasks": ["bpb_ja"], "milestone_tasks": ["bpb_ja"], "max_examples": 10, "bpb_max_chars": 10_000,
        "batch_size": 4, "runs": ["ve"], "bootstrap_iters": 0, "device": "cpu"}))  # fmt: skip
    with use_runs(root / "runs"):
        cfg = load_config(cfg_path)
        task_dir = tasks.build_tasks(cfg, root / "tasks")
    assert cfg.train.seq_len == SEQ_LEN
    model = LlamaForCausalLM.from_pretrained(ck).eval()
    lengths = {k: len(tok(t, add_special_tokens=False)["input_ids"]) for k, t in docs.items()}
    assert lengths["short"] < SEQ_LEN < lengths["long"] < MAX_POS and lengths["long"] > 3 * SEQ_LEN, lengths
    return {"root": root, "cfg": cfg, "task_dir": task_dir, "ck": ck, "tok": tok, "model": model, "docs": docs}


def hand_ll(model, tok, text: str, window: int, *, score_bos: bool = False) -> float:
    """The total log-likelihood (nats) of ``text`` by the protocol, computed window by window with torch.

    ``score_bos``: the old behaviour's stream, ``[BOS, BOS] + ids`` with the second BOS scored.
    """
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stream = [tok.bos_token_id] * (2 if score_bos else 1) + ids
    last = len(stream) - 1  # stream positions 1..last are scored
    total = 0.0
    for s in range(0, last, window):  # the window that first scores position s + 1
        e = min(s + window, last)  # it scores positions s+1 .. e
        start = s if s == 0 or e == s + window else e - window  # the last window: right-aligned, full length
        inp = stream[start:e]
        assert len(inp) <= window
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([inp])).logits[0].double(), dim=-1)
        total += sum(lp[p - 1 - start, stream[p]].item() for p in range(s + 1, e + 1))
    return total


def bits_per_byte(lls: list[float], texts: list[str]) -> float:
    return -sum(lls) / math.log(2) / sum(len(t.encode("utf-8")) for t in texts)


def _evaluate(b) -> tuple[float, dict[str, float], dict]:
    """The harness on the checkpoint: (bits per byte, per-document log-likelihood by document text, task status)."""
    ck = harness.Checkpoint("ve", "final", b["ck"], b["ck"], 2, 256)
    with use_runs(b["root"] / "runs"):
        res = harness.evaluate_checkpoint(ck, b["cfg"], b["task_dir"], units={"swallow_bpb_ja": None})
    st = res["tasks"]["swallow_bpb_ja"]
    assert st["status"] == "ok", st
    per_doc = {s["doc"]["text"]: s["bits_per_byte"][0] for s in res["samples"]["swallow_bpb_ja"]}
    return res["results"]["swallow_bpb_ja"]["bits_per_byte,none"], per_doc, st


@pytest.fixture(scope="module")
def scored(bpb):
    return _evaluate(bpb)


def test_bits_per_byte_equals_the_hand_computed_protocol(bpb, scored):
    """Every document's log-likelihood and the task's bits per byte are those of the protocol, computed by hand."""
    value, per_doc, status = scored
    m, tok, docs = bpb["model"], bpb["tok"], bpb["docs"]
    want = {t: hand_ll(m, tok, t, SEQ_LEN) for t in docs.values()}
    assert set(per_doc) == set(want)
    for t, ll in want.items():
        assert per_doc[t] == pytest.approx(ll, rel=REL), t
    assert value == pytest.approx(bits_per_byte(list(want.values()), list(want)), rel=REL)
    assert status["window_tokens"] == SEQ_LEN


def test_bos_is_never_scored(bpb, scored):
    """The short document (one window): its log-likelihood has no log p(BOS | BOS) term — which lm-eval's
    ``add_bos_token=True`` adds, worth several nats here, far beyond the tolerance."""
    _, per_doc, _ = scored
    t = bpb["docs"]["short"]
    right = hand_ll(bpb["model"], bpb["tok"], t, SEQ_LEN)
    wrong = hand_ll(bpb["model"], bpb["tok"], t, SEQ_LEN, score_bos=True)
    assert abs(wrong - right) > max(1.0, 100 * REL * abs(right))  # the BOS term: whole nats
    assert per_doc[t] == pytest.approx(right, rel=REL)


def test_long_documents_are_scored_in_windows_of_the_training_context(bpb, scored):
    """The long document (more than 3 windows of ``train.seq_len``, fewer tokens than the model's context): its score
    is that of ``seq_len`` windows, not of one window of ``max_position_embeddings``."""
    _, per_doc, _ = scored
    t = bpb["docs"]["long"]
    right = hand_ll(bpb["model"], bpb["tok"], t, SEQ_LEN)
    wrong = hand_ll(bpb["model"], bpb["tok"], t, MAX_POS)
    assert abs(wrong - right) > max(1.0, 100 * REL * abs(right))
    assert per_doc[t] == pytest.approx(right, rel=REL)


@contextlib.contextmanager
def _old(lm, window, *, bos: bool, window_fix: bool):
    """The protocol half switched back: ``bos`` keeps lm-eval's add_bos_token=True, ``not window_fix`` its
    max_position_embeddings windows."""
    saved = lm.add_bos_token, lm._max_length
    lm.add_bos_token = True if bos else False
    lm._max_length = window if window_fix else None
    try:
        yield window if window_fix else lm.max_length
    finally:
        lm.add_bos_token, lm._max_length = saved


@pytest.mark.parametrize("bug", ["bos", "window", "both"])
def test_the_old_protocol_fails_these_assertions(bpb, monkeypatch, bug):
    """Replaying the old behaviour (each bug alone, then both, as before the fix) gives the buggy hand value and not
    the protocol's: the assertions above would have failed on it."""
    bos, window_fix = bug in ("bos", "both"), bug == "bos"
    monkeypatch.setattr(harness, "rolling_protocol",
                        lambda lm, w: _old(lm, w, bos=bos, window_fix=window_fix))  # fmt: skip
    value, per_doc, _ = _evaluate(bpb)
    m, tok, docs = bpb["model"], bpb["tok"], bpb["docs"]
    window = SEQ_LEN if window_fix else MAX_POS
    for t in docs.values():
        assert per_doc[t] == pytest.approx(hand_ll(m, tok, t, window, score_bos=bos), rel=REL), t
    right = bits_per_byte([hand_ll(m, tok, t, SEQ_LEN) for t in docs.values()], list(docs.values()))
    assert value != pytest.approx(right, rel=REL)
    caught = "short" if bos else "long"
    assert per_doc[docs[caught]] != pytest.approx(hand_ll(m, tok, docs[caught], SEQ_LEN), rel=REL)


def test_the_protocol_is_recorded_and_the_lm_restored(bpb):
    """The window and the BOS rule go into every result file; the HFLM gets its settings back after a rolling task
    (the other tasks keep BOS and the model's context)."""
    from lm_eval.models.huggingface import HFLM

    proto = harness.bpb_protocol(bpb["cfg"])
    assert proto["window_tokens"] == SEQ_LEN and "not scored" in proto["bos"]
    lm = HFLM(pretrained=str(bpb["ck"]), tokenizer=str(bpb["ck"]), device="cpu", batch_size=1, add_bos_token=True)
    with harness.rolling_protocol(lm, SEQ_LEN) as w:
        assert w == SEQ_LEN and lm.max_length == SEQ_LEN and lm.add_bos_token is False
        assert lm.tok_encode("テスト")[0] != bpb["tok"].bos_token_id
    assert lm.max_length == MAX_POS and lm.add_bos_token is True
    assert lm.tok_encode("テスト")[0] == bpb["tok"].bos_token_id
    with harness.rolling_protocol(lm, 10 * MAX_POS) as w:  # never beyond the model's own context
        assert w == MAX_POS
