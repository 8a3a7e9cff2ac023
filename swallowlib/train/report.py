"""Figures and tables of stage 04, read back from the runs' ``metrics.jsonl`` (for notebook 04).

>>> from swallowlib.train import report
>>> report.loss_figure("tiny", ["base", "cpt-nve", "cpt-ve"])      # doctest: +SKIP
>>> report.throughput_table("tiny", ["base", "cpt-nve", "cpt-ve"])  # doctest: +SKIP
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd

from swallowlib import paths
from swallowlib.provenance import save_figure
from swallowlib.train import metrics


def _available(profile: str, runs: list[str]) -> list[str]:
    return [r for r in runs if (paths.run_out_dir(profile, r) / "metrics.jsonl").is_file()]


def loss_figure(profile: str, runs: list[str], save: bool = True):
    """Training loss (lines) and validation loss per source at the milestones (markers) against tokens seen."""
    runs = _available(profile, runs)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, run in enumerate(runs):
        df = metrics(profile, run)
        color = f"C{i % 10}"
        tr = df[df["event"] == "train"]
        ax.plot(tr["tokens"], tr["loss"], color=color, lw=1.2, label=f"{run} (train)")
        ms = df[df["event"] == "milestone"]
        for col, marker in (("valid_loss_ja", "o"), ("valid_loss_en", "s"), ("valid_loss_parallel", "^")):
            if col in ms and ms[col].notna().any():
                ax.plot(ms["tokens"], ms[col], marker, color=color, ms=5, label=f"{run} valid {col.rsplit('_', 1)[1]}")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("Loss per run: lines = training batches, markers = validation at the checkpoints")
    ax.grid(alpha=0.3)
    if runs:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    if save and runs:
        save_figure(fig, paths.figures_dir(profile) / "train_loss.png")
    return fig


def throughput_figure(profile: str, runs: list[str], save: bool = True):
    """Tokens/s and Japanese characters/s over training, per run (the cost side of vocabulary expansion)."""
    runs = _available(profile, runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, run in enumerate(runs):
        tr = metrics(profile, run)
        tr = tr[tr["event"] == "train"]
        axes[0].plot(tr["step"], tr["tokens_per_s"], color=f"C{i % 10}", label=run)
        axes[1].plot(tr["step"], tr["ja_chars_per_s"], color=f"C{i % 10}", label=run)
    axes[0].set(xlabel="step", ylabel="tokens/s", title="Training throughput")
    axes[1].set(xlabel="step", ylabel="Japanese characters/s", title="Japanese text processed per second")
    for ax in axes:
        ax.grid(alpha=0.3)
    if runs:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    if save and runs:
        save_figure(fig, paths.figures_dir(profile) / "train_throughput.png")
    return fig


def _median_mfu(col: pd.Series) -> float:
    """Median MFU; a null row was above the peak (``mfu_note``, swallowlib.train.mfu), so it ranks above every
    number: NaN when the median falls on one (the peak was unreliable), never a clamped or silently skipped value."""
    med = float(pd.to_numeric(col, errors="coerce").fillna(float("inf")).median())
    return med if med <= 1 else float("nan")


def throughput_table(profile: str, runs: list[str]) -> pd.DataFrame:
    """Per run: steps, tokens, final and validation losses, median tokens/s, JA chars/s, MFU, peak RSS, wall time."""
    rows = []
    for run in _available(profile, runs):
        df = metrics(profile, run)
        tr = df[df["event"] == "train"]
        steady = tr.iloc[1:] if len(tr) > 1 else tr  # the first interval holds start-up and compilation
        row = {
            "run": run,
            "steps": int(tr["step"].max()),
            "tokens": int(tr["tokens"].max()),
            "final train loss": float(tr["loss"].iloc[-1]),
            "tokens/s (median)": float(steady["tokens_per_s"].median()),
            "JA chars/s (median)": float(steady["ja_chars_per_s"].median()),
            "MFU (median)": _median_mfu(steady["mfu"]),
            "peak RSS (MB)": float(tr["peak_rss_mb"].max()),
            "training time (s)": float(tr["elapsed_s"].max()),
        }
        ms = df[df["event"] == "milestone"]
        for col in ("valid_loss_ja", "valid_loss_en", "valid_loss_parallel"):
            if col in ms and ms[col].notna().any():
                row[f"final {col.replace('_', ' ')}"] = float(ms[col].dropna().iloc[-1])
        prov = paths.run_out_dir(profile, run) / "provenance.json"
        if prov.is_file():
            p = json.loads(prov.read_text())
            row["parameters"] = p.get("params", {}).get("total")
            row["processes"] = p.get("world_size")
            if "source" in p.get("peak_flops_per_device", {}):
                pk = p["peak_flops_per_device"]
                unit = (1e12, "TFLOP/s") if pk["flops"] >= 1e12 else (1e9, "GFLOP/s")  # as mfu.describe
                row["MFU peak"] = f"{pk['source']}, {pk['flops'] / unit[0]:.1f} {unit[1]}"
        rows.append(row)
    return pd.DataFrame(rows)
