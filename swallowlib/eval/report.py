"""Tables and figures of stage 05, read from ``runs/<profile>/eval/`` (for ``notebooks/05_eval.ipynb``).

>>> from swallowlib.eval import report
>>> report.final_table("tiny")          # doctest: +SKIP
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from swallowlib import paths
from swallowlib.eval.harness import FAILURE_COLUMNS
from swallowlib.provenance import save_figure

#: The metric shown per task in the summary (lower is better for bits per byte).
HEADLINE = {
    "bpb_ja": "bits_per_byte", "bpb_en": "bits_per_byte", "bpb_ja_ood": "bits_per_byte",
    "translate_en_ja_ref": "bits_per_byte", "translate_ja_en_ref": "bits_per_byte", "translate_en_ja": "chrf",
    "translate_ja_en": "chrf", "faq_ja": "acc", "faq_en": "acc", "synopsis_ja": "rouge2_words",
    "synopsis_en": "rouge2_words",
}  # fmt: skip


def results(profile: str) -> pd.DataFrame:
    """The tidy results table (run, checkpoint, step, tokens, task, metric, value, stderr)."""
    p = paths.eval_dir(profile) / "results.csv"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no evaluation results — run `make eval PROFILE={profile}` first")
    return pd.read_csv(p)


def failures(profile: str) -> pd.DataFrame:
    """Every task that failed on a checkpoint — and every checkpoint that could not be evaluated at all (task
    ``(checkpoint)``) — with its error: their scores are missing from :func:`results`. Empty when none failed."""
    p = paths.eval_dir(profile) / "failures.csv"
    if not p.is_file():
        results(profile)  # no evaluation yet: its clear error
        return pd.DataFrame(columns=FAILURE_COLUMNS)  # results written before failures were recorded
    return pd.read_csv(p, dtype={"task": str, "error": str}).astype({"step": "Int64", "tokens": "Int64"})


def final_table(profile: str) -> pd.DataFrame:
    """Each run's last checkpoint: every task's metrics, one column per run."""
    df = results(profile)
    df = df[df["metric"] != "sample_len"]
    last = df.loc[df.groupby("run")["step"].transform("max") == df["step"]]
    t = last.pivot_table(index=["task", "metric"], columns="run", values="value", aggfunc="first")
    return t.round(3)


def confound_table(profile: str) -> pd.DataFrame:
    """Synopsis ROUGE-2 on MeCab words vs on each model's own tokens (the suspected XL-Sum confound)."""
    df = results(profile)
    df = df[df["task"].str.startswith("synopsis") & df["metric"].isin(["rouge2_words", "rouge2_tokens"])]
    last = df.loc[df.groupby("run")["step"].transform("max") == df["step"]]
    return last.pivot_table(index=["task", "run"], columns="metric", values="value", aggfunc="first").round(4)


#: The bits-per-byte tasks, as the curves figure titles them.
BPB_TASKS = {"bpb_ja": "Japanese (held-out)", "bpb_en": "English (held-out)",
             "bpb_ja_ood": "Japanese, out of domain"}  # fmt: skip


def overlap(profile: str) -> pd.DataFrame:
    """How much of each bits-per-byte task's documents a training split held, verbatim or near-verbatim, and was
    removed (``runs/<p>/eval/tasks/heldout_overlap.json``, written when the tasks are built): one row per task."""
    p = paths.eval_dir(profile) / "tasks" / "heldout_overlap.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no overlap report — build the tasks first (`make eval PROFILE={profile}`)")
    rep = json.loads(p.read_text(encoding="utf-8"))
    if not rep.get("enabled"):
        return pd.DataFrame({"note": [rep.get("why", "decontamination off")]})
    return pd.DataFrame.from_dict(rep["tasks"], orient="index").rename_axis("task")


def curves_figure(profile: str, save: bool = True):
    """Bits per byte vs training tokens, per run (every evaluated checkpoint): held-out Japanese and English, and
    out-of-domain Japanese where it was evaluated."""
    df = results(profile)
    tasks = [t for t in BPB_TASKS if t != "bpb_ja_ood" or (df["task"] == t).any()]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4))
    for ax, task in zip(axes, tasks, strict=True):
        sub = df[(df["task"] == task) & (df["metric"] == "bits_per_byte")].sort_values("tokens")
        for run, g in sub.groupby("run", sort=False):
            ax.plot(g["tokens"], g["value"], marker="o", label=run)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e3:,.0f}k"))
        ax.set_xlabel("training tokens of the run")
        ax.set_ylabel("bits per byte")
        ax.set_title(BPB_TASKS[task])
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "eval_curves.png")
    return fig


def samples(profile: str, run: str, task: str, n: int = 3, checkpoint: str | None = None) -> pd.DataFrame:
    """A few generations of one task from a run's last (or the named) evaluated checkpoint, with the reference."""
    d = paths.eval_dir(profile) / "results" / run
    files = sorted(f for f in d.glob("*.json") if not f.name.endswith(".error.json"))
    if checkpoint:
        files = [d / f"{checkpoint}.json"]
    if not files:
        raise FileNotFoundError(f"{d}: no evaluated checkpoints of run {run!r}")
    res = json.loads(files[-1].read_text(encoding="utf-8"))
    rows = []
    for s in res["samples"].get(f"swallow_{task}", [])[:n]:
        out = s["filtered_resps"][0] if s.get("filtered_resps") else ""
        rows.append({"reference": s["target"], "generation": out if isinstance(out, str) else str(out)})
    return pd.DataFrame(rows)


def lead_sentence(description: str, lang: str) -> str:
    """The first sentence of a package description: the classic lead baseline of extractive summarisation."""
    import re

    parts = re.split(r"(?<=。)" if lang == "ja" else r"(?<=\.)\s+", description.strip(), maxsplit=1)
    return parts[0].strip()


def lead_pairs(profile: str, lang: str) -> list[tuple[str, str]]:
    """(lead sentence of the description, reference synopsis) of each item of stage 05's synopsis test set."""
    path = paths.eval_dir(profile) / "tasks" / f"synopsis_{lang}.test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synopsis task — run `make eval PROFILE={profile}` first")
    items = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [(lead_sentence(d["description"], lang), d["target"]) for d in items]


def confound_probe(profile: str, tokenizers: tuple[str, ...] = ("base", "expanded", "llama2", "llama2+ja16k"),
                   ) -> pd.DataFrame:  # fmt: skip
    """The XL-Sum confound without a model: ROUGE-2 of the *same* summaries on MeCab words vs each tokenizer's tokens.

    The summaries are the lead sentence of each synopsis test item's description (a fixed, model-free system), so
    any difference between the rows is the metric's unit alone. English is the control: the expanded tokenizers
    split English exactly like their bases, so their English rows must be equal.
    """
    from swallowlib.eval.metrics import rouge2_f, words
    from swallowlib.tokenizer.stage import encoders

    enc = {k: v for k, v in encoders(profile).items() if k in tokenizers}
    rows = []
    for lang in ("ja", "en"):
        pairs = lead_pairs(profile, lang)
        units = {"MeCab words" if lang == "ja" else "words": lambda s, lang=lang: words(s, lang)}
        units |= {f"{name} tokens": (lambda s, e=e: e([s])[0]) for name, e in enc.items()}
        for unit, fn in units.items():
            scores = [rouge2_f(h, r, fn) for h, r in pairs]
            rows.append({"lang": lang, "unit": unit, "rouge2": sum(scores) / len(scores), "items": len(scores)})
    return pd.DataFrame(rows)
