"""Tables, figures and the interactive inspector of stage 02, read from the stage's outputs (for the notebook).

>>> from swallowlib.tokenizer import report
>>> report.efficiency_view("tiny")      # doctest: +SKIP
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd

from swallowlib import paths
from swallowlib.provenance import save_figure
from swallowlib.tokenizer import metrics, stage


def merge_table(profile: str) -> pd.DataFrame:
    """Per merge: base and Japanese sizes, pieces added, skipped by reason, padding, final size."""
    m = json.loads((stage.tokenizer_dir(profile) / "merge.json").read_text())
    rows = []
    for name, r in m.items():
        if "skipped" not in r:  # a continued-BPE expansion: see expansion_comparison
            continue
        row = {
            "merged tokenizer": name,
            "base pieces": r["base_size"],
            "Japanese pieces": r["extra_size"],
            "added": r["added"],
        }
        row.update({f"skipped: {k}": v for k, v in r["skipped"].items()})
        row["coverage characters added"] = r.get("coverage", {}).get("added", 0)
        row.update({"padding": r["padding"], "final size": r["final_size"], "multiple of 8": r["multiple_ok"]})
        rows.append(row)
    return pd.DataFrame(rows)


def expansion_comparison(profile: str) -> pd.DataFrame:
    """Naive merge vs continued BPE at the same number of added pieces: tokens per Japanese held-out domain.

    ``continued / naive`` below 1 means the reachable-only method needs fewer tokens for the same text.
    """
    d = stage.tokenizer_dir(profile)
    rep = json.loads((d / "report.json").read_text())
    merges = json.loads((d / "merge.json").read_text())
    eff = stage.efficiency(profile)
    eff = eff[eff["lang"] == "ja"]
    rows = []
    for cont, naive in rep.get("naive_of", {}).items():
        m = merges[cont]
        a = eff[eff["tokenizer"] == naive].set_index("domain")["tokens"]
        b = eff[eff["tokenizer"] == cont].set_index("domain")["tokens"]
        for dom in a.index:
            rows.append(
                {
                    "naive merge": naive,
                    "continued BPE": cont,
                    "added pieces (each)": m["added"],
                    "of which characters / merges": f"{m['added_chars']} / {m['added_merges']}",
                    "domain": dom,
                    "tokens, naive": int(a[dom]),
                    "tokens, continued": int(b[dom]),
                    "continued / naive": round(b[dom] / a[dom], 3),
                }
            )
    return pd.DataFrame(rows)


def invariants_table(profile: str) -> pd.DataFrame:
    """English identical after the merge, Japanese round trips, and HF tokenizer == SentencePiece."""
    inv = json.loads((stage.tokenizer_dir(profile) / "invariants.json").read_text())
    rows = []
    for name, v in inv.items():
        if name.startswith("hf="):
            rows.append(
                {
                    "check": f"HF fast tokenizer == SentencePiece ({name[3:]})",
                    "passed": v["texts"] - max(v["id_mismatches"], v["decode_mismatches"]),
                    "of": v["texts"],
                }
            )
        else:
            rows.append(
                {
                    "check": f"English ids unchanged ({name})",
                    "passed": v["english_lines_identical"],
                    "of": v["english_lines"],
                }
            )
            rows.append(
                {
                    "check": f"decode(encode(x)) == x, Japanese ({name})",
                    "passed": v["japanese_round_trips"],
                    "of": v["japanese_lines"],
                }
            )
    return pd.DataFrame(rows)


def efficiency_view(profile: str) -> pd.DataFrame:
    """The efficiency table with the columns a reader needs first."""
    df = stage.efficiency(profile)
    cols = [
        "tokenizer",
        "domain",
        "chars_per_token",
        "bytes_per_token",
        "tokens_per_word",
        "byte_share",
        "tokens",
        "tokens_ratio",
    ]
    return df[cols].round(3)


def efficiency_figure(profile: str, save: bool = True):
    """Tokens needed relative to the baseline tokenizer, per held-out domain (lower is shorter)."""
    df = stage.efficiency(profile)
    domains = list(dict.fromkeys(df["domain"]))
    toks = list(dict.fromkeys(df["tokenizer"]))
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.55 * len(domains) * len(toks) / 2))
    h = 0.8 / len(toks)
    for i, t in enumerate(toks):
        sub = df[df["tokenizer"] == t].set_index("domain").reindex(domains)
        ys = [d + i * h for d in range(len(domains))]
        ax.barh(ys, sub["tokens_ratio"], height=h, label=t)
        for y, v in zip(ys, sub["tokens_ratio"], strict=True):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    ax.set_yticks([d + 0.4 - h / 2 for d in range(len(domains))], domains, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", lw=0.8)
    baseline = df.loc[df["tokens_ratio"] == 1.0, "tokenizer"].iloc[0]
    ax.set_xlabel(f"tokens relative to {baseline} (same text)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("How many tokens each tokenizer needs for the same held-out text")
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "tokenizer_efficiency.png")
    return fig


def inspector(profile: str, text: str = "吾輩は猫である。名前はまだ無い。The quick brown fox."):
    """An ipywidgets text box: type Japanese/English, see how every tokenizer of the stage splits it."""
    import ipywidgets as widgets

    encs = stage.encoders(profile)
    box = widgets.Textarea(value=text, layout=widgets.Layout(width="100%", height="4em"))
    out = widgets.HTML(metrics.inspect_html(text, encs))
    box.observe(lambda change: setattr(out, "value", metrics.inspect_html(change["new"], encs)), names="value")
    return widgets.VBox([box, out])


def unfiltered_merge_english(profile: str, max_lines: int = 3000) -> dict | None:
    """What a naive merge does to English: append *every* non-overlapping piece of the Japanese model (no ASCII or
    Japanese-only rule, as the common merge script does), then count held-out English lines whose ids change.

    Uses Llama 2 + the 16k Japanese model when stage 02 built them (the paper's pair), else the profile's own
    base + Japanese models. None when the stage has not run.
    """
    import tempfile

    import sentencepiece as spm

    from swallowlib.tokenizer import merge

    d = stage.tokenizer_dir(profile)
    pairs = [(d / "analysis" / "llama2.model", d / "analysis" / "ja16k.model", "Llama 2 + 16k JA"),
             (d / "base.model", d / "ja.model", "base + JA")]  # fmt: skip
    pair = next(((b, j, n) for b, j, n in pairs if b.is_file() and j.is_file()), None)
    if pair is None:
        return None
    base_model, ja_model, label = pair
    cfg_seed = json.loads((d / "provenance.json").read_text())["config"]["tokenizer"]["seed"]
    lines = stage._split_lines(profile, "en", "valid", max_lines, cfg_seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/naive.model"
        rep = merge.merge_models(base_model, ja_model, out, pad_to=1, exclude_ascii=False, japanese_only=False)
        a = spm.SentencePieceProcessor(model_file=str(base_model))
        b = spm.SentencePieceProcessor(model_file=out)
        ids_a, ids_b = a.encode(lines), b.encode(lines)
        new = [b.id_to_piece(i) for i in range(a.get_piece_size(), b.get_piece_size())]
    changed = sum(x != y for x, y in zip(ids_a, ids_b, strict=True))
    return {
        "pair": label,
        "lines": len(lines),
        "changed": changed,
        "added": rep.added,
        "ascii_pieces": sum(not any(merge.is_japanese_char(c) for c in p) for p in new),
        "en_tokens_ratio": sum(map(len, ids_b)) / max(1, sum(map(len, ids_a))),
    }
