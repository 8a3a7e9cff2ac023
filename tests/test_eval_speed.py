"""The VE vs NVE generation-speed measurement (swallowlib.eval.speed): tiny random Llamas, an injected clock."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch

from swallowlib import paths
from swallowlib.config import load_config
from swallowlib.eval import speed
from tests.samples import JA_SENTENCES
from tests.train_helpers import PROFILE, build_tree, write_config

K = 5


def _model(vocab: int, out, step: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=512, bos_token_id=1, eos_token_id=2)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    (out / "trainer_state.json").write_text(json.dumps({"step": step, "tokens": step * 128}))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A profile with the two runs' final checkpoints (base / expanded tokenizers) and a bpb_ja task file."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("speed-tree")
    config = build_tree(root)
    config = write_config(config, root / "speed.yaml", lambda d: d["train"]["runs"].update(
        {"cpt-nve": {"init": "scratch", "tokenizer": "base", "mix": {"ja": 1.0}, "tokens": 1024},
         "cpt-ve": {"init": "scratch", "tokenizer": "expanded", "mix": {"ja": 1.0}, "tokens": 1024}}))  # fmt: skip
    prof = root / "runs" / PROFILE
    for run, tok in (("cpt-nve", "base"), ("cpt-ve", "expanded")):
        d = prof / "train" / run / "final"
        _model(len(AutoTokenizer.from_pretrained(prof / "tokenizer" / tok)), d, 8)
        for f in (prof / "tokenizer" / tok).iterdir():
            shutil.copy(f, d / f.name)
    task = prof / "eval" / "tasks" / speed.TASK_FILE
    task.parent.mkdir(parents=True)
    task.write_text("".join(json.dumps({"text": "".join(JA_SENTENCES[i:i + 3])}, ensure_ascii=False) + "\n"
                            for i in range(4)), encoding="utf-8")  # fmt: skip
    return {"runs": root / "runs", "config": config, "prof": prof}


class FakeClock:
    """A clock that only moves when a model generates: ``cost[label]`` seconds per generate call."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def charge(self, m: speed.Model, seconds: float) -> None:
        gen = m.model.generate

        def slow_generate(*a, **kw):
            self.t += seconds
            return gen(*a, **kw)

        m.model.generate = slow_generate


def _loaded(tree, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tree["runs"])
    cfg = load_config(tree["config"])
    cks = speed.last_checkpoints(cfg, ["cpt-ve", "cpt-nve"])
    return cfg, cks


def test_exactly_k_tokens_and_chars_from_decoded_text(tree, monkeypatch):
    cfg, cks = _loaded(tree, monkeypatch)
    assert cks["cpt-ve"].path.name == "final"
    prompts, source = speed.load_prompts(cfg, 3, 10)
    assert source.endswith(speed.TASK_FILE) and len(prompts) == 3 and all(len(p) == 10 for p in prompts)
    ve, nve = speed.load_model(cks["cpt-ve"]), speed.load_model(cks["cpt-nve"])
    for m in (ve, nve):
        for p in prompts:
            ids = speed._prompt_ids(m.tokenizer, p)
            assert ids[0] == m.tokenizer.bos_token_id
            new = speed.generate_one(m, ids, K)
            assert len(new) == K  # min_new_tokens: EOS cannot stop it early
    clock = FakeClock()
    clock.charge(ve, 1.0)
    clock.charge(nve, 2.0)
    res = speed.measure(ve, nve, prompts, max_new_tokens=K, rounds=2, clock=clock)
    for m in (ve, nve):
        r = res["models"][m.label]
        chars = sum(len(m.tokenizer.decode(speed.generate_one(m, speed._prompt_ids(m.tokenizer, p), K),
                                           skip_special_tokens=True)) for p in prompts)  # fmt: skip
        assert r["new_tokens"] == K * len(prompts)
        assert r["chars"] == chars
        assert r["chars_per_token"] == pytest.approx(chars / (K * len(prompts)))
        assert all(x["new_tokens"] == K * len(prompts) for x in r["rounds"]) and len(r["rounds"]) == 2
    a, b = res["models"]["cpt-ve"], res["models"]["cpt-nve"]
    assert a["chars_per_s"] == pytest.approx(a["chars"] / (1.0 * len(prompts)))
    assert b["tokens_per_s"] == pytest.approx(K / 2.0)
    assert a["ms_per_token"] == pytest.approx(1000 / K) and b["ms_per_token"] == pytest.approx(2000 / K)
    want = (a["chars"] / 1.0) / (b["chars"] / 2.0)
    assert res["ratio"]["chars_per_s"] == pytest.approx(want)
    assert res["ratio"]["min"] == pytest.approx(want) == res["ratio"]["max"]


def test_same_model_twice_as_slow_gives_ratio_one_half(tree, monkeypatch):
    _, cks = _loaded(tree, monkeypatch)
    a = speed.load_model(cks["cpt-nve"])
    b = speed.Model("slow", a.model, a.tokenizer)
    calls = []
    clock = FakeClock()

    def generate(*args, **kw):  # one model object, the cost by the label being timed
        clock.t += 2.0 if calls[-1] == "slow" else 1.0
        return orig(*args, **kw)

    orig = a.model.generate
    a.model.generate = generate
    real_round = speed._round

    def spy_round(m, *args):
        calls.append(m.label)
        return real_round(m, *args)

    monkeypatch.setattr(speed, "_round", spy_round)
    res = speed.measure(a, b, ["日本語の文章です。", "東京は"], max_new_tokens=3, rounds=3, clock=clock)
    assert calls == ["cpt-nve", "slow"] * 4  # a warm-up round, then 3 interleaved rounds
    assert res["ratio"]["chars_per_s"] == 2.0 and res["ratio"]["per_round"] == [2.0, 2.0, 2.0]
    assert res["ratio"]["chars_per_token"] == 1.0


def test_json_round_trip_and_table(tree, monkeypatch):
    cfg, _ = _loaded(tree, monkeypatch)
    ticks = itertools.count()  # every reading of the clock is one second later: 1 s per generate call
    out = speed.run_speed(cfg, prompts=2, prompt_chars=8, max_new_tokens=K, rounds=2, clock=lambda: next(ticks))
    assert out == paths.eval_dir(PROFILE) / "speed.json"
    d = json.loads(out.read_text(encoding="utf-8"))
    assert d["config"]["max_new_tokens"] == K and d["config"]["rounds"] == 2 and d["config"]["prompts"] == 2
    assert d["config"]["device"] == "cpu" and d["config"]["threads"] >= 1
    assert set(d["models"]) == {"cpt-ve", "cpt-nve"} and d["models"]["cpt-ve"]["role"] == "ve"
    assert {"chars_per_s", "min", "max", "per_round", "chars_per_token"} <= set(d["ratio"])
    assert d["provenance"]["stage"] == "eval-speed"
    t = speed.speed_table(PROFILE)
    assert list(t["run"]) == ["cpt-ve", "cpt-nve"] and list(t["role"]) == ["ve", "nve"]
    assert t["new_tokens"].tolist() == [2 * K, 2 * K]
    assert t["chars_per_token"].tolist() == pytest.approx(
        [d["models"][r]["chars"] / (2 * K) for r in ("cpt-ve", "cpt-nve")])


def test_missing_run_is_one_clear_error(tree, monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "RUNS", tree["runs"])
    cfg = load_config(tree["config"])
    shutil.move(tree["prof"] / "train" / "cpt-nve", tmp_path / "cpt-nve")
    try:
        with pytest.raises(FileNotFoundError, match=r"cpt-nve.*make pretrain"):
            speed.run_speed(cfg)
        assert speed.main(["--config", str(tree["config"])]) == 2
    finally:
        shutil.move(tmp_path / "cpt-nve", tree["prof"] / "train" / "cpt-nve")
