"""The GPU check's code path, run on CPU with a tiny model (``--dry-run``) so it cannot rot between GPU sessions."""

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


def test_gpu_check_fails_clearly_without_a_gpu(capsys):
    assert gpu_check.main([]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: no CUDA device")
