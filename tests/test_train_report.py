"""The notebook API reads a run back: metrics as a DataFrame, the loss figure and the throughput table."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from swallowlib import train  # noqa: E402
from swallowlib.train import report  # noqa: E402
from tests.train_helpers import PROFILE, use_runs  # noqa: E402


def test_metrics_figure_and_table(tree):
    with use_runs(tree["runs"]):
        df = train.metrics(PROFILE, "base")
        tr = df[df["event"] == "train"]
        assert list(tr["step"]) == [2, 4, 6, 8, 10, 12, 14, 16]
        assert {"loss", "lr", "grad_norm", "tokens_per_s", "ja_chars_per_s", "mfu", "peak_rss_mb"} <= set(df)
        assert (tr["tokens"] == tr["step"] * 128).all() and (tr["mfu"] > 0).all()
        ms = df[df["event"] == "milestone"]
        assert list(ms["step"]) == [8, 16] and ms["valid_loss_en"].notna().all()
        table = report.throughput_table(PROFILE, ["base", "not-trained"])
        assert list(table["run"]) == ["base"] and table["steps"][0] == 16
        fig = report.loss_figure(PROFILE, ["base"], save=False)
        assert fig.axes[0].get_lines()
        with pytest.raises(FileNotFoundError, match="no metrics yet"):
            train.metrics(PROFILE, "cpt")


def test_provenance_and_tensorboard_are_saved(tree):
    import json

    out = tree["runs"] / PROFILE / "train" / "base"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["train"]["runs"]["base"]["tokens"] == 2048 and prov["config_path"].endswith(".yaml")
    assert "git_sha" in prov and prov["versions"]["torch"] and prov["versions"]["accelerate"]
    assert prov["total_steps"] == 16 and prov["flops_per_token"] > 0 and prov["peak_flops_per_device"]["flops"] > 0
    assert prov["resolved"]["data"]["en"]["docs"] == 60
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert {"train/loss", "train/tokens_per_s", "valid/valid_loss_en"} <= set(acc.Tags()["scalars"])
