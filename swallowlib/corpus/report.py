"""Tables and figures of stage 01, computed from the stage's own ``report.json`` and outputs (for the notebook).

>>> from swallowlib.corpus import report
>>> r = report.load("smoke")            # doctest: +SKIP
>>> report.filter_table(r, "ja")        # doctest: +SKIP
"""

from __future__ import annotations

import json
import textwrap

import matplotlib.pyplot as plt
import pandas as pd

from swallowlib import paths
from swallowlib.corpus.sources import CATALOGUE
from swallowlib.provenance import save_figure

#: Deterministic figure files: no software/date stamps.


def load(profile: str) -> dict:
    """The corpus stage's report for a profile."""
    p = paths.corpus_dir(profile) / "report.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: missing — run the corpus stage (make corpus PROFILE={profile})")
    return json.loads(p.read_text(encoding="utf-8"))


def manifest(profile: str) -> pd.DataFrame:
    """Every archive the stage read: source, registry, name, version, sha256 (shortened), size."""
    m = json.loads((paths.corpus_dir(profile) / "manifest.json").read_text())["archives"]
    df = pd.DataFrame(m)
    df["sha256"] = df["sha256"].str[:16] + "…"
    df["MB"] = (df.pop("bytes") / 1e6).round(2)
    return df


def sources_table(corpus_cfg) -> pd.DataFrame:
    """The catalogue entries a profile uses: role (mono / parallel / eval), domain, licence, archives."""
    rows = []
    for s in corpus_cfg.sources:
        src = CATALOGUE[s]
        role = "eval" if s in corpus_cfg.eval_sources else "parallel" if s in corpus_cfg.parallel_sources else "mono"
        rows.append(
            {
                "source": s,
                "role": role,
                "languages": "+".join(src.languages) or "-",
                "domain": src.domain,
                "licence": src.licence,
                "archives": ", ".join(a.key for a in src.archives),
            }
        )
    return pd.DataFrame(rows)


def raw_sizes_table(r: dict) -> pd.DataFrame:
    """Documents/characters (or pairs) extracted per source, before filtering."""
    rows = []
    for src, by in r["raw_sizes"].items():
        if not by:  # an input that yielded nothing is shown, not dropped from the table
            rows.append({"source": src, "kind": "nothing extracted", "units": 0, "chars_ja": 0, "chars_en": 0})
        for lang, v in by.items():
            if lang == "pairs":
                rows.append(
                    {
                        "source": src,
                        "kind": "parallel",
                        "units": v["pairs"],
                        "chars_ja": v["chars_ja"],
                        "chars_en": v["chars_en"],
                    }
                )
            else:
                rows.append(
                    {
                        "source": src,
                        "kind": f"mono-{lang}",
                        "units": v["docs"],
                        "chars_ja": v["chars"] if lang == "ja" else 0,
                        "chars_en": v["chars"] if lang == "en" else 0,
                    }
                )
    return pd.DataFrame(rows)


def filter_table(r: dict, lang: str) -> pd.DataFrame:
    """Per-rule removals (documents and characters, in pipeline order), then MinHash dedup."""
    f = r["filters"][lang]
    docs_in, chars_in = f["docs_in"], f["chars_in"]
    rows = [
        {
            "rule": rule,
            "docs_removed": v["docs"],
            "chars_removed": v["chars"],
            "% of docs in": round(100 * v["docs"] / max(docs_in, 1), 1),
            "% of chars in": round(100 * v["chars"] / max(chars_in, 1), 1),
        }
        for rule, v in f["rules"].items()
    ]
    d = r.get("dedup", {}).get(lang)
    if d:
        rows.append(
            {
                "rule": "minhash-dedup",
                "docs_removed": d["docs_removed"],
                "chars_removed": d["chars_removed"],
                "% of docs in": round(100 * d["docs_removed"] / max(docs_in, 1), 1),
                "% of chars in": round(100 * d["chars_removed"] / max(chars_in, 1), 1),
            }
        )
    return pd.DataFrame(rows)


def paper_vs_profile_table(r: dict, lang: str = "ja") -> pd.DataFrame:
    """Documents/characters removed by each rule under the paper's rules (rule set swallow-v1 at Swallow's
    thresholds) and under the profile's, on the same documents; the last row is what each keeps (before MinHash
    dedup). The column headers name each side's rule set.

    Rows are both rule sets' rules, the paper's order first; a rule the other set does not have is empty there
    (swallow-v1 alone has dup_sentence_frac and min_japanese_chars, technical alone dup_para_frac). Rules of the same
    name measure the same kind of thing with each set's own definitions (module docstrings of
    :mod:`swallowlib.corpus.swallow_rules` and :mod:`swallowlib.corpus.filters`), so their counts differ even at
    equal thresholds. Characters kept are after NFKC on both sides (swallow-v1 reads the text before it, technical
    after it). Empty when the profile uses the paper's rules (nothing to compare).
    """
    paper = r.get("filters_paper", {}).get(lang)
    if not paper:
        return pd.DataFrame()
    prof = r["filters"][lang]
    # reports written before rule sets existed ran the technical definitions on both sides
    a, b = f"paper ({paper.get('rule_set', 'technical')})", f"profile ({prof.get('rule_set', 'technical')})"

    def cell(side: dict, rule: str, key: str) -> int | None:
        return side["rules"][rule][key] if rule in side["rules"] else None

    rows = [
        {
            "rule": rule,
            f"{a}: docs": cell(paper, rule, "docs"),
            f"{a}: chars": cell(paper, rule, "chars"),
            f"{b}: docs": cell(prof, rule, "docs"),
            f"{b}: chars": cell(prof, rule, "chars"),
        }
        for rule in dict.fromkeys(list(paper["rules"]) + list(prof["rules"]))
    ]
    rows.append(
        {
            "rule": "= kept (before dedup)",
            f"{a}: docs": paper["docs_out"],
            f"{a}: chars": paper["chars_out"],
            f"{b}: docs": prof["docs_out"],
            f"{b}: chars": prof["chars_out"],
        }
    )
    return pd.DataFrame(rows).astype({c: "Int64" for c in (f"{a}: docs", f"{a}: chars", f"{b}: docs", f"{b}: chars")})


#: Notebook 01's worked example of the two rule sets: a short blog-style page, six paragraphs separated by blank
#: lines (11 lines). swallow-v1 counts the 5 blank lines as paragraphs, 4 of them repeats of the first: a duplicate
#: line fraction of 4/11 > 0.30, dropped. The technical rule set has no blank lines among its lines: kept. Without the
#: blank lines both keep it (and so does Swallow's released code).
RULE_SET_EXAMPLE = "\n\n".join(
    [
        "週末に近くの山へハイキングに行ってきました。朝早く家を出たので、登山口の駐車場はまだ空いていました。",
        "登り始めてすぐに、木々の間から鳥の声が聞こえてきました。途中の休憩所では、地元の人が育てたみかんを売っていて、"
        "甘くておいしかったです。",
        "山頂に着いたのはお昼ごろでした。標高は 1,200 m ほどですが、天気がよく、遠くの海まではっきりと見えました。"
        "持ってきたおにぎりを食べながら、しばらく景色を眺めていました…",
        "帰りは別の道を通って下山しました。こちらの道は少し急でしたが、川沿いを歩けるので涼しく、足元の石に気をつけながら"
        "ゆっくり進みました。",
        "ふもとの温泉で汗を流してから帰りました。駅までの道では、小さな商店で名物のまんじゅうを買い、電車の中で半分だけ"
        "食べてしまいました。歩いたあとのお湯は格別で、疲れがすっと消えていくようでした。",
        "次は紅葉の季節に、家族と一緒にもう一度来たいと思います。皆さんもぜひ出かけてみてください！",
    ]
)


def rule_set_table(text: str = RULE_SET_EXAMPLE, lang: str = "ja") -> pd.DataFrame:
    """Every rule's statistic for one text under both rule sets at the paper's thresholds (``QualityFilters()`` and
    ``QualityFilters(rule_set="technical")``), whether it drops the text, and which rule each set drops it by
    (the first that fires, the last row). A rule only one set has is empty on the other side."""
    from swallowlib.config import QualityFilters
    from swallowlib.corpus import filters

    sets = {"swallow-v1": QualityFilters(), "technical": QualityFilters(rule_set="technical")}
    rules = {name: {r.name: r for r in filters.quality_rules(q, lang)} for name, q in sets.items()}
    rows = []
    for rule in dict.fromkeys(n for rs in rules.values() for n in rs):
        row: dict = {"rule": rule}
        for name, rs in rules.items():
            v = rs[rule].stat(text) if rule in rs else None
            row[name] = None if v is None else round(v, 4)
            row[f"{name} drops"] = None if v is None else ("drops" if rs[rule].drops(v) else "")
        rows.append(row)
    row = {"rule": "= decision"}
    for name, q in sets.items():
        first = filters.dropped_by(text, q, lang, list(rules[name].values()))
        row[name], row[f"{name} drops"] = ("kept", "") if first is None else ("dropped", f"by {first}")
    rows.append(row)
    return pd.DataFrame(rows)


def filter_examples(r: dict, lang: str, width: int = 240) -> pd.DataFrame:
    """One example of what each rule removed (truncated), to see *why* text goes."""
    rows = []
    for rule, v in r["filters"][lang]["rules"].items():
        for ex in v.get("examples", [])[:1]:
            value = ex.get("value")
            rows.append(
                {
                    "rule": rule,
                    "value": round(value, 3) if isinstance(value, float) else value,
                    "document": ex.get("id"),
                    "text": textwrap.shorten(ex.get("text", ""), width, placeholder=" …"),
                }
            )
    return pd.DataFrame(rows)


def nfkc_examples(profile: str, n: int = 6, width: int = 60) -> pd.DataFrame:
    """Japanese lines that NFKC normalisation changes (before -> after), from the stage's raw documents.

    NFKC folds half-width katakana to full-width, full-width ASCII to ASCII, and compatibility characters (①, ㈱)
    to their plain forms, so one word is spelled one way before tokenization.
    """
    import gzip
    import unicodedata

    import orjson

    rows, seen = [], set()
    for shard in sorted((paths.run_dir(profile) / "work" / "corpus" / "raw" / "ja").glob("*.jsonl.gz")):
        with gzip.open(shard, "rb") as f:
            for line in f:
                for text_line in orjson.loads(line)["text"].splitlines():
                    after = unicodedata.normalize("NFKC", text_line)
                    changed = {c for c in text_line if unicodedata.normalize("NFKC", c) != c}
                    if after != text_line and not changed <= seen:
                        seen |= changed
                        i = next(i for i, (a, b) in enumerate(zip(text_line, after, strict=False)) if a != b)
                        lo = max(0, i - width // 3)
                        rows.append(
                            {
                                "before": text_line[lo : lo + width],
                                "after": after[lo : lo + width],
                                "changed characters": " ".join(sorted(changed)),
                            }
                        )
                        if len(rows) >= n:
                            return pd.DataFrame(rows)
    return pd.DataFrame(rows, columns=["before", "after", "changed characters"])


def funnel_figure(r: dict, profile: str | None = None):
    """Characters left after each step of the pipeline, per language (the funnel)."""
    langs = [lang for lang in ("ja", "en") if lang in r["funnel"]]
    fig, axes = plt.subplots(1, len(langs), figsize=(6.5 * len(langs), 4.8), squeeze=False)
    for ax, lang in zip(axes[0], langs, strict=True):
        steps = r["funnel"][lang]
        names = [s["step"] for s in steps]
        chars = [s["chars"] / 1e6 for s in steps]
        ax.barh(range(len(steps)), chars, color=["#4c72b0" if n not in ("final",) else "#dd8452" for n in names])
        ax.set_yticks(range(len(steps)), names, fontsize=8)
        ax.invert_yaxis()
        for i, s in enumerate(steps):
            ax.text(chars[i], i, f" {s['chars'] / 1e6:.2f}M / {s['docs']:,} docs", va="center", fontsize=7)
        ax.set_xlabel("characters remaining (millions)")
        ax.set_title(f"{'Japanese' if lang == 'ja' else 'English'}: filter funnel")
        ax.set_xlim(0, max(chars) * 1.45 if chars and max(chars) > 0 else 1)
    fig.tight_layout()
    if profile:
        save_figure(fig, paths.figures_dir(profile) / "corpus_funnel.png")
    return fig


def sizes_table(r: dict) -> pd.DataFrame:
    """Final dataset sizes per split."""
    s = r["sizes"]
    rows = []
    for lang in ("ja", "en"):
        for sp in ("train", "valid", "test"):
            rows.append({"dataset": lang, "split": sp, "units": s[lang][sp]["docs"], "chars": s[lang][sp]["chars"]})
    for sp in ("train", "valid", "test"):
        v = s["parallel"][sp]
        rows.append({"dataset": "parallel", "split": sp, "units": v["pairs"], "chars": v["chars_en"] + v["chars_ja"]})
    for name, n in s["eval"].items():
        rows.append({"dataset": f"eval/{name}", "split": "test", "units": n, "chars": None})
    return pd.DataFrame(rows)


def decontamination_table(r: dict) -> pd.DataFrame:
    return pd.DataFrame([{"set": k, **v} for k, v in r["decontamination"].items()])


def skipped_table(r: dict) -> pd.DataFrame:
    """Inputs counted and skipped instead of crashing the stage, per source: undecodable or empty files, NUL bytes,
    symlinked duplicates, non-content pages, unreadable Hub shards, retried network failures (extraction); pairs
    rejected by the cleaning rules, unmatched pages (alignment)."""
    rows = []
    for src, ex in sorted(r.get("skipped_by_source", {}).items()):
        for group in ("skipped", "notes"):
            rows.extend({"step": "extract", "source": src, "reason": k, "count": v}
                        for k, v in sorted(ex.get(group, {}).items()))
    al = r["skipped_inputs"]["align"]
    rows.extend(
        {"step": "align", "source": "", "reason": f"rejected: {k}", "count": v}
        for k, v in sorted(al.get("rejected", {}).items())
    )
    for k in ("files_unmatched", "files_failed"):
        if al.get(k):
            rows.append({"step": "align", "source": "", "reason": k, "count": al[k]})
    return pd.DataFrame(rows, columns=["step", "source", "reason", "count"])


def cost_table(r: dict) -> pd.DataFrame:
    """Wall time per step (s), and the stage's peak resident memory summed over its process tree (workers included)."""
    rows = [{"step": k, "value": v, "unit": "s"} for k, v in r["timings_s"].items()]
    rows.append({"step": f"peak memory ({r['peak_memory_processes']} processes)", "value": r["peak_memory_mb"],
                 "unit": "MB"})
    return pd.DataFrame(rows)


def shards_table(profile: str) -> pd.DataFrame:
    """The written datasets as the next stages read them: Parquet shards per dataset and split, with their rows and
    bytes (from the Parquet footers, without reading the text)."""
    import pyarrow.parquet as pq

    rows = []
    for dataset in ("ja", "en", "parallel"):
        for split in ("train", "valid", "test"):
            files = paths.corpus_split_files(profile, dataset, split)
            rows.append({
                "dataset": dataset,
                "split": split,
                "shards": len(files),
                "rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
                "MB": round(sum(f.stat().st_size for f in files) / 1e6, 2),
            })
    return pd.DataFrame(rows)
