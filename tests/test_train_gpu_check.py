"""The GPU check (``make gpu-check``). Its code path runs on CPU with a tiny model (``--dry-run``) so it cannot rot
between GPU sessions; these CPU tests pass on a CUDA host too (the dry run keeps its process on the CPU, and "no GPU"
is simulated). On a CUDA host, ``-m gpu`` runs the real check as ``make gpu-check`` does (minutes):

    .venv/bin/python -m pytest tests/test_train_gpu_check.py -m gpu
"""

import pytest
import torch

from swallowlib.train import gpu_check
from tests.train_helpers import use_runs


def test_gpu_check_dry_run_passes(tmp_path, capsys):
    with use_runs(tmp_path / "runs"):  # the measured CPU peak is cached under runs/_machine: keep it out of the repo
        rc = gpu_check.main(["--dry-run", "--out", str(tmp_path / "work")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, out[-3:]
    assert out[-1].startswith("PASS")
    assert any("resumed from checkpoint 4" in line for line in out)
    assert any("bitwise True" in line for line in out)
    assert any("FSDP (1 process, checkpointing)" in line and "sharded checkpoint at step 2" in line for line in out)
    assert any("memory model predicts" in line for line in out)
    assert (tmp_path / "work" / "F" / "checkpoints" / "step-00000002" / "state" / "__0_0.distcp").is_file()


def test_gpu_check_fails_clearly_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: no CUDA device")


def test_the_default_check_is_the_tinyllama_profile_batch():
    micro, seq, _ = gpu_check.profile_batch()
    assert seq == 2048 and gpu_check.MODELS["tinyllama"][2] == seq and micro >= 1
    # The memory model's prediction for it fits an 80 GB card with the profile's headroom.
    assert gpu_check.predicted_peak("tinyllama", micro, seq, fsdp=False, checkpointing=False, precision="bf16") < (
        0.85 * 80 * 2**30
    )


@pytest.mark.gpu
def test_the_real_gpu_check_passes(tmp_path, capsys):
    """``make gpu-check`` on this machine's GPU: throughput and MFU, memory against the memory model, resume within
    bf16 tolerance, FSDP on one GPU; its last line is PASS."""
    with use_runs(tmp_path / "runs"):
        rc = gpu_check.main(["--out", str(tmp_path / "work")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and out[-1].startswith("PASS"), "\n".join(out[-5:])
    assert any(line.startswith("gpu-check: cuda") for line in out)  # it ran on the GPU, not the CPU fallback
