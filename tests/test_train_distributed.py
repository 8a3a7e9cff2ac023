"""DDP over gloo with 2 CPU processes (``accelerate launch`` with configs/accelerate/cpu_multi.yaml) gives the same
losses and weights as 1 process with the same global batch, within float tolerance."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.train_helpers import PROFILE, launch_alongside, write_config


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "event" not in r}


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tree, tmp_path):
    runs = tmp_path / "runs"
    for part in ("corpus", "tokenizer"):
        shutil.copytree(tree["runs"] / PROFILE / part, runs / PROFILE / part)
    run = {"init": "scratch", "tokenizer": "base", "mix": {"ja": 0.5, "en": 0.5}, "tokens": 12 * 256}

    def one(d):  # 1 process x 2 micro-batches of 4 = 8 sequences per step
        d["train"].update(micro_batch_size=4, batch_size=8, runs={"one": run})

    def two(d):  # 2 processes x 4 sequences = the same 8 sequences per step
        d["train"].update(micro_batch_size=4, batch_size=8, runs={"two": run})

    c1, c2 = (
        write_config(tree["config"], tmp_path / "one.yaml", one),
        write_config(tree["config"], tmp_path / "two.yaml", two),
    )
    launch_alongside((c1, "one", 1), (c2, "two", 2), runs)
    out1, out2 = runs / PROFILE / "train" / "one", runs / PROFILE / "train" / "two"
    prov = json.loads((out2 / "provenance.json").read_text())
    assert prov["world_size"] == 2 and "MULTI_CPU" in prov["distributed_type"]
    assert json.loads((out1 / "provenance.json").read_text())["world_size"] == 1
    l1, l2 = _losses(out1), _losses(out2)
    assert list(l1) == list(l2) == [2, 4, 6, 8, 10, 12]
    for s in l1:
        assert l1[s] == pytest.approx(l2[s], rel=1e-5, abs=1e-5), s
    w1, w2 = load_file(out1 / "final" / "model.safetensors"), load_file(out2 / "final" / "model.safetensors")
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)
