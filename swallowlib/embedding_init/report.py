"""Tables and figures of stage 03, read from the stage's outputs (for ``notebooks/03_embedding_init.ipynb``).

>>> from swallowlib.embedding_init import report
>>> report.init_table("tiny")          # doctest: +SKIP
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd

from swallowlib import paths
from swallowlib.embedding_init.methods import METHODS
from swallowlib.embedding_init.stage import comparison_runs, parse_comparison_run, stage_dir
from swallowlib.provenance import save_figure


def base_table(profile: str) -> pd.DataFrame:
    """The base model: size, tokens seen, wall time, held-out bits per character."""
    b = json.loads((stage_dir(profile) / "base.json").read_text())
    return pd.DataFrame(
        [
            {
                "parameters": b["parameters"],
                "non-embedding parameters": b["non_embedding_parameters"],
                "tokens seen": b["tokens_seen"],
                "training wall time (s)": None if b["wall_s"] is None else round(b["wall_s"], 1),
                "English BPC (held-out)": round(b["bpc"]["en"], 3),
                "Japanese BPC (held-out)": round(b["bpc"]["ja"], 3),
            }
        ]
    )


def continuations(profile: str) -> pd.DataFrame:
    """Greedy continuations of English prompts by the base model."""
    b = json.loads((stage_dir(profile) / "base.json").read_text())
    return pd.DataFrame([{"prompt": p, "greedy continuation": c} for p, c in b["continuations"].items()])


def examples_table(profile: str) -> pd.DataFrame:
    """New tokens and the base pieces ``mean-of-pieces`` averages them from."""
    ex = json.loads((stage_dir(profile) / "examples.json").read_text())
    return pd.DataFrame(
        [{"new token": e["token"], "id": e["id"], "base pieces averaged": " ".join(e["base pieces"])} for e in ex]
    )


def bpc(profile: str) -> pd.DataFrame:
    """Every measurement: stage (step 0 / after short CPT), method, seed, language, bits per character."""
    d = stage_dir(profile)
    frames = [pd.read_csv(d / "bpc.csv")]
    if (d / "bpc_after_cpt.csv").is_file():
        frames.append(pd.read_csv(d / "bpc_after_cpt.csv"))
    return pd.concat(frames, ignore_index=True)


def init_table(profile: str) -> pd.DataFrame:
    """Mean ± spread (max - min over seeds) of bits per character, per method, stage and language."""
    df = bpc(profile)
    g = df.groupby(["stage", "method", "lang"])["bpc"]
    out = pd.DataFrame({"mean": g.mean(), "spread": g.max() - g.min(), "seeds": g.count()}).reset_index()
    out["bpc"] = [f"{m:.3f} ± {s / 2:.3f}" if n > 1 else f"{m:.3f}" for m, s, n in
                  zip(out["mean"], out["spread"], out["seeds"], strict=True)]  # fmt: skip
    table = out.pivot_table(index="method", columns=["stage", "lang"], values="bpc", aggfunc="first")
    return table.sort_index(axis=1, ascending=[False, True])


def init_figure(profile: str, save: bool = True):
    """Japanese / English BPC per method at step 0 and after the short CPT (dots = seeds), and the CPT loss curves."""
    df = bpc(profile)
    df = df[df["method"] != "base (no expansion)"]  # tens of bits per character: in the table, not on this scale
    stages = list(dict.fromkeys(df["stage"]))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, lang in zip(axes[:2], ("ja", "en"), strict=True):
        sub = df[df["lang"] == lang]
        methods = list(dict.fromkeys(sub["method"]))
        for k, st in enumerate(stages):
            s2 = sub[sub["stage"] == st]
            for i, m in enumerate(methods):
                v = s2[s2["method"] == m]["bpc"]
                if len(v):
                    x = i + (k - (len(stages) - 1) / 2) * 0.35
                    ax.bar(x, v.mean(), width=0.33, color=f"C{k}", label=st if i == 0 else None, alpha=0.8)
                    ax.scatter([x] * len(v), v, color="black", s=8, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("bits per character (held-out)")
        ax.set_title({"ja": "Japanese", "en": "English"}[lang])
        ax.legend(fontsize=8)
    ax = axes[2]
    from swallowlib.train import metrics

    for name in comparison_runs_of(profile):
        path = paths.run_out_dir(profile, name) / "metrics.jsonl"
        if path.is_file():
            m = metrics(profile, name)
            m = m[m["event"] == "train"]
            method, seed = parse_comparison_run(name)
            # The loss logged at step k is that of the k-th batch, computed before the k-th update: with a log
            # interval of 1, x = k - 1 starts the curve at the initialised model (0 updates).
            ax.plot(m["step"] - 1, m["loss"], color=f"C{METHODS.index(method)}", lw=1,
                    ls="-" if seed == 0 else "--", label=f"{method} (seed {seed})")  # fmt: skip
    ax.set_xlabel("optimizer updates of the short CPT (0 = the initialised model)")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("First steps of continual pre-training")
    ax.legend(fontsize=6)
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "embedding_init.png")
    return fig


def comparison_runs_of(profile: str) -> list[str]:
    from swallowlib.config import load_config

    return list(comparison_runs(load_config(profile)))
