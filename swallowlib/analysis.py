"""Stage 06: the study's findings, tested against the paper — figures and the findings table, from the results.

Everything here is read from what stages 02–05 wrote under ``runs/<profile>/`` (tokenizer efficiency, training
metrics, the init comparison, the tidy eval table); nothing is typed in except the paper's own numbers (``PAPER``,
quoted from the Swallow model cards and abstract, docs/study.md) and the decision rules below. Change the results and
the table changes.

    python -m swallowlib.analysis --config configs/tiny.yaml     # or: make analysis

Decision rules. A difference between two checkpoints counts when it exceeds ``Z`` standard errors of the
difference. For bits per byte that is a *paired* bootstrap over the held-out documents both scored (:func:`paired`,
from the per-document samples stage 05 keeps); otherwise the two bootstrap stderrs of stage 05 are combined as if
independent (conservative). Without any standard error a difference counts when it exceeds ``REL_FLOOR`` of the
value, and the reason says so. Generation metrics whose values are all below ``GEN_FLOOR`` are called *inconclusive
at this scale*: the models do not yet produce the text those metrics score.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from swallowlib import paths
from swallowlib.config import Config, load_config
from swallowlib.provenance import save_figure, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

Z = 2.0  # standard errors a difference must exceed to count
REL_FLOOR = 0.01  # without a standard error: a relative difference that counts
GEN_FLOOR = 0.02  # chrF/ROUGE-2 (0-1 scale for ROUGE, 0-100 for chrF/100) below this everywhere: no signal yet
EN_RETAINED = 0.05  # "English largely retained": English bits per byte rises by less than this fraction

#: The paper's numbers (Swallow model cards, Dec 2023/Feb 2024, unweighted averages; abstract). See docs/study.md,
#: "The paper", for the sources.
PAPER = {
    "ja_improves": "JA avg (8 tasks) 0.320 → 0.394 (7B), 0.396 → 0.463 (13B), 0.483 → 0.553 (70B)",
    "monotonic": "JA score rises at every checkpoint (20, 40, …, 100B tokens)",
    "en_retained": "EN avg (6 tasks) 0.490 → 0.440 (7B, −5.0 pts), −4.8 (13B), −2.3 (70B)",
    "efficient": "+11,176 pieces; \"fewer tokens, notably faster inference\" (model card; no ratio published)",
    "ve_nve_ja": "JA avg VE 0.394 vs NVE 0.406 (7B), 0.463 vs 0.469 (13B), 0.553 vs 0.554 (70B)",
    "ve_nve_en": "EN avg VE 0.440 vs NVE 0.439 (7B), 0.492 vs 0.490 (13B)",
    "summ_cost": "XL-Sum ROUGE-2 VE − NVE: −2.9 (7B), −1.3 (13B), −4.9 (70B) pts",
    "parallel": "parallel corpora improve translation (abstract; deltas not published)",
    "parallel_other": "… without hurting the other tasks (abstract)",
    "scratch": "Swallow 13B beats Japanese models trained from scratch; scratch needs ~20× the compute (slides)",
    "init": "mean of the base pieces' embeddings (paper's choice; not compared there)",
    "confound": "not examined (Swallow's XL-Sum scorer used the model's own tokens; docs/study.md)",
    "naive_merge": "merge script not public (likely appends every non-overlapping piece)",
    "ood": "measured on its own web corpus only",
    "continued": "not examined",
    "train_eff": "not reported",
}


@dataclass(frozen=True)
class Finding:
    """One row of the findings table."""

    claim: str
    source: str  # "paper" or "beyond the paper"
    measure: str
    ours: str
    paper: str
    verdict: str  # "holds", "does not hold" or "inconclusive"
    reason: str


# ---------------------------------------------------------------------------------------------------------------
# Reading the results


def results(profile: str) -> pd.DataFrame:
    """The tidy eval table of stage 05 (one row per run, checkpoint, task, metric), without lm-eval's sample counts."""
    from swallowlib.eval.report import results as eval_results

    df = eval_results(profile)
    return df[df["metric"] != "sample_len"]


def final(df: pd.DataFrame, run: str, task: str, metric: str) -> tuple[float, float]:
    """(value, stderr) of ``task/metric`` at the run's last evaluated checkpoint; (nan, nan) if absent."""
    sub = df[(df["run"] == run) & (df["task"] == task) & (df["metric"] == metric)]
    if sub.empty:
        return math.nan, math.nan
    row = sub.loc[sub["step"].idxmax()]
    return float(row["value"]), float(row["stderr"]) if pd.notna(row["stderr"]) else math.nan


def curve(df: pd.DataFrame, run: str, task: str, metric: str = "bits_per_byte") -> pd.DataFrame:
    """Every evaluated checkpoint of a run for one metric, by tokens seen (tokens, value, stderr)."""
    sub = df[(df["run"] == run) & (df["task"] == task) & (df["metric"] == metric)]
    return sub.sort_values("tokens")[["tokens", "value", "stderr"]].reset_index(drop=True)


def curve_steps(df: pd.DataFrame, run: str, task: str, metric: str = "bits_per_byte") -> list[int]:
    """The steps of a run's evaluated checkpoints (with tokens > 0) for one metric, in order."""
    sub = df[(df["run"] == run) & (df["task"] == task) & (df["metric"] == metric) & (df["tokens"] > 0)]
    return [int(x) for x in sub.sort_values("tokens")["step"]]


def compare(a: float, a_se: float, b: float, b_se: float) -> tuple[bool, str]:
    """Whether ``a - b`` counts (see the module docstring) and how it was decided, for the reason column.

    >>> compare(1.0, 0.01, 1.1, 0.01)[0]
    True
    >>> compare(1.0, 0.1, 1.1, 0.1)[0]
    False
    """
    d = a - b
    se = math.hypot(a_se, b_se) if not (math.isnan(a_se) or math.isnan(b_se)) else math.nan
    if math.isnan(se):
        ok = abs(d) > REL_FLOOR * max(abs(a), abs(b))
        return ok, f"Δ {d:+.3f}, no stderr: {'>' if ok else '≤'} {REL_FLOOR:.0%} counts"
    return _judge(d, se, "stderr")


def _judge(d: float, se: float, unit: str) -> tuple[bool, str]:
    """A difference ``d`` against its standard error ``se``: counts beyond ``Z`` of them; the reason's wording."""
    if se == 0:  # every resample gave the same value (e.g. all scores 0): no spread to measure against
        return d != 0, f"Δ {d:+.3f}, no spread"
    return abs(d) > Z * se, f"Δ {d:+.3f} = {abs(d) / se:.1f} {unit}"


def _result_json(profile: str, run: str, step: int | None = None) -> dict | None:
    """lm-eval's stored results (with per-document samples) of a run's checkpoint at ``step`` (default: its last).

    The tidy table names the checkpoint, so only that one file is read (they are MB each, with every sample).
    """
    sub = results(profile)
    sub = sub[sub["run"] == run]
    if step is not None:
        sub = sub[sub["step"] == step]
    if sub.empty:
        return None
    name = sub.loc[sub["step"].idxmax(), "checkpoint"]
    path = paths.eval_dir(profile) / "results" / run / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def paired(profile: str, a: tuple[str, int | None], b: tuple[str, int | None], task: str,
           metric: str = "bits_per_byte", iters: int = 1000, seed: int = 0) -> tuple[float, float] | None:  # fmt: skip
    """``metric(a) - metric(b)`` and its **paired** bootstrap standard error: both checkpoints scored the same held-out
    documents, so each resample draws the same documents for both (far tighter than two independent errors).

    ``a``/``b`` are (run, step); step None = the run's last checkpoint. None when either lacks per-document samples.
    Hand-written because lm-eval bootstraps one model at a time; the aggregation is stage 05's own.
    """
    from swallowlib.eval.metrics import CORPUS_AGGREGATIONS

    f = CORPUS_AGGREGATIONS[metric]
    items = []
    for run, step in (a, b):
        res = _result_json(profile, run, step)
        samples = (res or {}).get("samples", {}).get(f"swallow_{task}", [])
        by_doc = {s.get("doc_id"): tuple(s[metric]) for s in samples if metric in s}
        if not by_doc:
            return None
        items.append(by_doc)
    docs = sorted(set(items[0]) & set(items[1]))
    if len(docs) < 2:
        return None
    xa, xb = [items[0][d] for d in docs], [items[1][d] for d in docs]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(iters):
        idx = rng.integers(0, len(docs), len(docs))
        diffs.append(f([xa[i] for i in idx]) - f([xb[i] for i in idx]))
    return f(xa) - f(xb), float(np.std(diffs, ddof=1))


def compare_paired(profile: str, a: tuple[str, int | None], b: tuple[str, int | None], task: str,
                   fallback: tuple[float, float, float, float]) -> tuple[bool, str]:  # fmt: skip
    """Whether a − b counts, by the paired bootstrap when the samples exist, else by :func:`compare` on ``fallback``
    = (a, a_se, b, b_se)."""
    p = paired(profile, a, b, task)
    if p is None:
        return compare(*fallback)
    return _judge(*p, "paired stderr")


def _fmt(v: float, se: float = math.nan, digits: int = 3) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}" if math.isnan(se) else f"{v:.{digits}f} ± {se:.{digits}f}"


def _runs(cfg: Config) -> list[str]:
    return cfg.eval.runs or list(cfg.train.runs)


def _run_meta(profile: str, run: str) -> dict:
    p = paths.run_out_dir(profile, run) / "provenance.json"
    return json.loads(p.read_text()) if p.is_file() else {}


# ---------------------------------------------------------------------------------------------------------------
# Tables behind the figures


def training_efficiency(profile: str, runs: list[str]) -> pd.DataFrame:
    """Per run: median tokens/s and Japanese characters/s, FLOPs per token, Japanese characters per PFLOP."""
    from swallowlib.train import report as train_report

    t = train_report.throughput_table(profile, runs)
    if t.empty:
        return t
    fpt = [float(_run_meta(profile, r).get("flops_per_token", math.nan)) for r in t["run"]]
    out = t[["run", "tokens/s (median)", "JA chars/s (median)"]].copy()
    out["FLOPs/token (M)"] = np.array(fpt) / 1e6
    # characters per FLOP = (chars/s) / (tokens/s x FLOPs/token)
    out["JA chars per PFLOP"] = out["JA chars/s (median)"] / (out["tokens/s (median)"] * np.array(fpt)) * 1e15
    return out


def headline_table(profile: str, runs: list[str]) -> pd.DataFrame:
    """Each run's last checkpoint on every task's headline metric, ``value ± stderr`` (the VE/NVE/para/scratch view)."""
    from swallowlib.eval.report import HEADLINE

    df = results(profile)
    rows = []
    for task, metric in HEADLINE.items():
        row = {"task": task, "metric": metric}
        for r in runs:
            row[r] = _fmt(*final(df, r, task, metric))
        if any(v != "n/a" for k, v in row.items() if k in runs):
            rows.append(row)
    return pd.DataFrame(rows).set_index(["task", "metric"])


# ---------------------------------------------------------------------------------------------------------------
# Findings


def findings(cfg: Config | str | Path) -> pd.DataFrame:
    """The findings table: every claim of the paper and the project's own, with our measurement and a verdict."""
    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    p = cfg.profile
    df = results(p)
    runs = set(_runs(cfg))
    rows: list[Finding] = []
    have = lambda *names: all(n in runs and (df["run"] == n).any() for n in names)  # noqa: E731

    bpb = {(r, t): final(df, r, t, "bits_per_byte") for r in runs for t in ("bpb_ja", "bpb_en")}

    # --- the paper's claims -----------------------------------------------------------------------------------
    if have("base", "cpt-ve"):
        (b, bse), (v, vse) = bpb["base", "bpb_ja"], bpb["cpt-ve", "bpb_ja"]
        sig, how = compare_paired(p, ("cpt-ve", None), ("base", None), "bpb_ja", (v, vse, b, bse))
        rows.append(Finding(
            "Japanese improves with continual pre-training", "paper",
            "JA bits/byte, base → cpt-ve (last checkpoint; lower is better)",
            f"{_fmt(b, bse)} → {_fmt(v, vse)}", PAPER["ja_improves"],
            "holds" if sig and v < b else "does not hold", how))

        c = curve(df, "cpt-ve", "bpb_ja")
        c = c[c["tokens"] > 0]
        if len(c) >= 2:
            steps = np.diff(c["value"].to_numpy())
            mono = bool((steps < 0).all())
            steps_of = curve_steps(df, "cpt-ve", "bpb_ja")
            last_sig, how = compare_paired(
                p, ("cpt-ve", steps_of[-1]), ("cpt-ve", steps_of[-2]), "bpb_ja",
                (c["value"].iloc[-1], _nz(c["stderr"].iloc[-1]), c["value"].iloc[-2], _nz(c["stderr"].iloc[-2])))
            verdict = "holds" if mono else "does not hold"
            reason = (f"falls at each of {len(c)} checkpoints; last interval {how}" if mono
                      else f"rises between checkpoints {np.flatnonzero(steps >= 0).tolist()}")
            if mono and not last_sig:
                verdict, reason = "inconclusive", f"falls at each checkpoint but the last gain is within noise ({how})"
            rows.append(Finding(
                "… and keeps improving with more data", "paper",
                "JA bits/byte of cpt-ve at " + ", ".join(f"{t / 1e3:,.0f}k" for t in c["tokens"]) + " tokens",
                " → ".join(f"{x:.3f}" for x in c["value"]), PAPER["monotonic"], verdict, reason))

        (b, bse), (v, vse) = bpb["base", "bpb_en"], bpb["cpt-ve", "bpb_en"]
        rel = (v - b) / b
        _, how = compare_paired(p, ("cpt-ve", None), ("base", None), "bpb_en", (v, vse, b, bse))
        rows.append(Finding(
            "English is largely retained", "paper", "EN bits/byte, base → cpt-ve (JA is 90 % of the CPT data)",
            f"{_fmt(b, bse)} → {_fmt(v, vse)} ({rel:+.1%})", PAPER["en_retained"],
            "holds" if rel < EN_RETAINED else "does not hold",
            f"{how}; rule: rises by < {EN_RETAINED:.0%}"))

    eff = _tokenizer_efficiency(p)
    if eff is not None:
        rows.append(Finding(
            "Vocabulary expansion makes Japanese cheaper to process", "paper",
            "tokens for held-out JA manuals vs the base tokenizer (tiny base; Llama 2 + 16k JA merge)",
            eff["in_domain"], PAPER["efficient"], "holds" if eff["ratio"] < 1 else "does not hold",
            f"expanded needs {eff['ratio']:.2f}× the base's tokens; English ids unchanged ({eff['en']})"))

    tr_eff = training_efficiency(p, [r for r in ("cpt-nve", "cpt-ve") if r in runs])
    if len(tr_eff) == 2:
        nve, ve = (tr_eff.set_index("run").loc[r] for r in ("cpt-nve", "cpt-ve"))
        ratio_s = ve["JA chars/s (median)"] / nve["JA chars/s (median)"]
        ratio_f = ve["JA chars per PFLOP"] / nve["JA chars per PFLOP"]
        rows.append(Finding(
            "Expansion trains on more Japanese per second and per FLOP", "beyond the paper",
            "JA characters/s and per PFLOP of training, cpt-ve vs cpt-nve",
            f"{ve['JA chars/s (median)']:,.0f} vs {nve['JA chars/s (median)']:,.0f} chars/s ({ratio_s:.2f}×); "
            f"{ratio_f:.2f}× per FLOP", PAPER["train_eff"], "holds" if ratio_f > 1 else "does not hold",
            f"tokens/s {ve['tokens/s (median)']:,.0f} vs {nve['tokens/s (median)']:,.0f} (larger embedding), "
            "each token covers more text"))

    if have("cpt-ve", "cpt-nve"):
        for lang, key in (("ja", "ve_nve_ja"), ("en", "ve_nve_en")):
            (n, nse), (v, vse) = bpb["cpt-nve", f"bpb_{lang}"], bpb["cpt-ve", f"bpb_{lang}"]
            sig, how = compare_paired(p, ("cpt-ve", None), ("cpt-nve", None), f"bpb_{lang}", (v, vse, n, nse))
            verdict = "holds" if (not sig or v < n) else "does not hold"
            note = ("VE better: at equal tokens it has seen more text" if sig and v < n
                    else "VE worse" if sig else "no difference")
            rows.append(Finding(
                f"Expansion costs little: {'Japanese' if lang == 'ja' else 'English'} VE ≈ NVE", "paper",
                f"{lang.upper()} bits/byte, cpt-ve vs cpt-nve at equal training tokens",
                f"{_fmt(v, vse)} vs {_fmt(n, nse)}", PAPER[key], verdict, f"{note} ({how})"))

        rows.append(_summarisation(df, "words", "Expansion's cost is in summarisation", "paper", PAPER["summ_cost"]))
        confound = _confound(cfg, df)
        if confound is not None:
            rows.append(confound)

    if have("cpt-ve", "cpt-ve-para"):
        parts, wins, losses = [], 0, 0
        for d in ("en_ja", "ja_en"):
            task = f"translate_{d}_ref"
            (a, ase), (b, bse) = (final(df, r, task, "bits_per_byte") for r in ("cpt-ve-para", "cpt-ve"))
            sig, how = compare_paired(p, ("cpt-ve-para", None), ("cpt-ve", None), task, (a, ase, b, bse))
            wins += sig and a < b
            losses += sig and a > b
            (ca, _), (cb, _) = (final(df, r, f"translate_{d}", "chrf") for r in ("cpt-ve-para", "cpt-ve"))
            parts.append(f"{d.replace('_', '→')}: ref bits/byte {a:.3f} vs {b:.3f} ({how}); chrF {ca:.1f} vs {cb:.1f}")
        verdict = "holds" if wins == 2 else "does not hold" if losses else "inconclusive"
        note = {"holds": "better in both directions", "does not hold": "worse in at least one direction",
                "inconclusive": f"better in {wins} of 2 directions, the other within noise"}[verdict]
        rows.append(Finding(
            "Parallel text improves translation", "paper",
            "log-likelihood of the reference translation (bits/byte) and chrF, cpt-ve-para vs cpt-ve",
            "; ".join(p_.split(" (")[0] for p_ in parts), PAPER["parallel"], verdict, f"{note}: " + "; ".join(parts)))
        worse = []
        mix_para, mix_ve = cfg.train.runs["cpt-ve-para"].mix, cfg.train.runs["cpt-ve"].mix
        for lang in ("ja", "en"):
            (a, ase), (b, bse) = bpb["cpt-ve-para", f"bpb_{lang}"], bpb["cpt-ve", f"bpb_{lang}"]
            sig, how = compare_paired(p, ("cpt-ve-para", None), ("cpt-ve", None), f"bpb_{lang}", (a, ase, b, bse))
            worse.append((lang, sig and a > b, f"{lang.upper()} {a:.3f} vs {b:.3f} ({(a - b) / b:+.1%}; {how})"))
        rows.append(Finding(
            "… without hurting the other tasks", "paper", "JA/EN bits/byte, cpt-ve-para vs cpt-ve",
            "; ".join(w[2].split(" (")[0] for w in worse), PAPER["parallel_other"],
            "does not hold" if any(w[1] for w in worse) else "holds",
            "; ".join(w[2] for w in worse) + f"; monolingual Japanese {mix_para.get('ja', 0):.0%} of the tokens vs "
            f"{mix_ve.get('ja', 0):.0%}, parallel pairs {mix_para.get('parallel', 0):.0%}"))

    if have("cpt-ve", "scratch-ve"):
        per_lang = []
        for lang in ("ja", "en"):
            c, s = curve(df, "cpt-ve", f"bpb_{lang}"), curve(df, "scratch-ve", f"bpb_{lang}")
            m = c.merge(s, on="tokens", suffixes=("_cpt", "_scratch"))
            m = m[m["tokens"] > 0]
            better = int((m["value_cpt"] < m["value_scratch"]).sum())
            per_lang.append((lang, better, len(m), m))
        ok = all(b == n and n > 0 for _, b, n, _ in per_lang)
        (cj, cjs), (sj, sjs) = bpb["cpt-ve", "bpb_ja"], bpb["scratch-ve", "bpb_ja"]
        ce, se_ = bpb["cpt-ve", "bpb_en"][0], bpb["scratch-ve", "bpb_en"][0]
        rows.append(Finding(
            "CPT beats training from scratch at equal tokens", "paper",
            "JA / EN bits/byte, cpt-ve vs scratch-ve (same tokenizer, data, tokens)",
            f"JA {cj:.3f} vs {sj:.3f}; EN {ce:.3f} vs {se_:.3f}", PAPER["scratch"],
            "holds" if ok else "does not hold",
            "; ".join(f"{lang.upper()}: CPT lower at {b}/{n} checkpoints" for lang, b, n, _ in per_lang)
            + "; last JA "
            + compare_paired(p, ("cpt-ve", None), ("scratch-ve", None), "bpb_ja", (cj, cjs, sj, sjs))[1]))

    # --- beyond the paper ---------------------------------------------------------------------------------------
    rows += _init_findings(p)
    rows += _tokenizer_findings(p)
    return pd.DataFrame([asdict(r) for r in rows])


def _nz(x) -> float:
    return float(x) if pd.notna(x) else math.nan


def _summarisation(df: pd.DataFrame, unit: str, claim: str, source: str, paper: str) -> Finding:
    """VE − NVE ROUGE-2 on Japanese synopses, on MeCab words (``unit='words'``) or model tokens."""
    metric = f"rouge2_{unit}"
    (v, vse), (n, nse) = (final(df, r, "synopsis_ja", metric) for r in ("cpt-ve", "cpt-nve"))
    sig, how = compare(v, vse, n, nse)
    if max(v, n) < GEN_FLOOR:
        verdict, reason = "inconclusive", f"both below {GEN_FLOOR}: the tiny models do not summarise yet ({how})"
    else:
        verdict = "holds" if sig and v < n else "does not hold"
        reason = how
    return Finding(claim, source, f"JA synopsis ROUGE-2 on {'MeCab words' if unit == 'words' else 'model tokens'}, "
                   "cpt-ve vs cpt-nve", f"{_fmt(v, vse)} vs {_fmt(n, nse)}", paper, verdict, reason)


def _confound(cfg: Config, df: pd.DataFrame) -> Finding | None:
    """The XL-Sum confound: identical summaries scored on MeCab words vs each tokenizer's tokens (lead baseline)."""
    from swallowlib.eval import report as eval_report

    try:
        probe = eval_report.confound_probe(cfg.profile)
    except FileNotFoundError as e:  # no synopsis task or no tokenizers in this profile: no probe, say why
        log.warning("confound probe skipped: %s", e)
        return None
    ja = probe[probe["lang"] == "ja"].set_index("unit")["rouge2"]
    en = probe[probe["lang"] == "en"].set_index("unit")["rouge2"]
    base, exp = ja.get("base tokens", math.nan), ja.get("expanded tokens", math.nan)
    parts = [f"{u} {x:.3f}" for u, x in ja.items()]
    models = _summarisation(df, "tokens", "", "", "")
    penal = exp < base
    return Finding(
        "Token-level ROUGE-2 penalises a larger vocabulary (the XL-Sum confound)", "beyond the paper",
        "ROUGE-2 of the same lead-sentence summaries of the JA synopsis set, scored on MeCab words vs each "
        "tokenizer's tokens",
        "; ".join(parts), PAPER["confound"], "holds" if penal else "does not hold",
        f"same texts, expanded-token ROUGE-2 {exp / base:.2f}× base-token ROUGE-2 "
        f"(English control: {en.get('expanded tokens', math.nan) / en.get('base tokens', math.nan):.2f}×); "
        f"the trained models: token ROUGE-2 {models.ours} ({models.verdict})")


def _tokenizer_efficiency(profile: str) -> dict | None:
    from swallowlib.tokenizer.stage import efficiency, tokenizer_dir

    if not (tokenizer_dir(profile) / "efficiency.csv").is_file():
        return None
    e = efficiency(profile)
    indom = e[e["domain"].str.contains("held-out manuals")].set_index("tokenizer")
    inv = json.loads((tokenizer_dir(profile) / "invariants.json").read_text())
    ratio = float(indom.loc["expanded", "tokens_ratio"])
    parts = [f"expanded {ratio:.3f}"]
    if "llama2+ja16k" in indom.index:
        parts.append(f"Llama 2 + 16k {indom.loc['llama2+ja16k', 'tokens_ratio']:.3f}")
    en = "; ".join(f"{k} {v['english_lines_identical']}/{v['english_lines']}" for k, v in inv.items()
                   if "english_lines" in v)  # fmt: skip
    return {"in_domain": "; ".join(parts), "ratio": ratio, "en": en}


def _init_findings(profile: str) -> list[Finding]:
    from swallowlib.embedding_init import report as init_report

    try:
        bpc = init_report.bpc(profile)
    except FileNotFoundError:
        return []
    after = bpc[bpc["stage"] == "after short CPT"]
    if after.empty:
        return []
    g = after.groupby(["lang", "method"])["bpc"]
    stats = pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max(), "n": g.count()})
    ja = stats.loc["ja"].sort_values("mean")
    mop = "mean-of-pieces"
    out = []
    if len(ja) >= 2:  # a ranking needs two methods; a profile may run one (the rehearsal)
        best, second = ja.index[0], ja.index[1]
        overlap = ja.loc[best, "hi"] >= ja.loc[second, "lo"]
        fmt = "; ".join(f"{m} {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]" for m, r in ja.iterrows())
        n_seeds = int(ja["n"].min())
        out.append(Finding(
            "The paper's init (mean of the base pieces) is the best of four", "beyond the paper",
            f"JA bits/char after the short CPT, mean [min, max] over {n_seeds} seeds (lower is better)", fmt,
            PAPER["init"],
            "inconclusive" if overlap and mop in (best, second) else "holds" if best == mop else "does not hold",
            f"best {best}; " + (f"seed ranges of {best} and {second} overlap" if overlap else "ranges separate")))
    step0 = bpc[bpc["stage"] == "step 0"]
    en0 = step0[step0["lang"] == "en"].groupby("method")["bpc"].mean()
    base_key = next((k for k in en0.index if k.startswith("base")), None)
    if base_key is not None and mop in en0.index:
        d = en0.drop(base_key) - en0[base_key]
        out.append(Finding(
            "Mean-of-pieces keeps English intact at step 0", "beyond the paper",
            "EN bits/char right after the resize, minus the base model's", "; ".join(f"{m} {x:+.3f}" for m, x in
                                                                                      d.sort_values().items()),
            PAPER["init"], "holds" if d.idxmin() == mop else "does not hold",
            "the new output rows take probability mass from English tokens unless they look like the pieces "
            "they replace"))
    return out


def _tokenizer_findings(profile: str) -> list[Finding]:
    from swallowlib.tokenizer import report as tok_report
    from swallowlib.tokenizer.stage import efficiency, tokenizer_dir

    if not (tokenizer_dir(profile) / "efficiency.csv").is_file():
        return []
    out = []
    naive = tok_report.unfiltered_merge_english(profile)
    if naive is not None:
        out.append(Finding(
            "A naive merge changes English tokenization", "beyond the paper",
            "held-out English lines whose ids change when every non-overlapping Japanese piece is appended "
            f"({naive['pair']}), vs Japanese-only pieces",
            f"{naive['changed']}/{naive['lines']} ({naive['changed'] / naive['lines']:.1%}) vs 0/{naive['lines']}",
            PAPER["naive_merge"], "holds" if naive["changed"] > 0 else "does not hold",
            f"{naive['ascii_pieces']} appended pieces hold no Japanese character; English tokens "
            f"×{naive['en_tokens_ratio']:.3f}"))
    e = efficiency(profile)
    exp = e[(e["tokenizer"] == "expanded") & (e["lang"] == "ja")].set_index("domain")["tokens_ratio"]
    indom = exp[exp.index.str.contains("held-out manuals")]
    ood = exp[~exp.index.str.contains("held-out|parallel")]
    if len(indom) and len(ood):
        out.append(Finding(
            "Expansion helps less on Japanese from outside the training domain", "beyond the paper",
            "tokens vs the base tokenizer: held-out manuals vs literature / tutorial / essay",
            f"{indom.iloc[0]:.3f} vs " + ", ".join(f"{d.split(':')[-1].strip()} {v:.3f}" for d, v in ood.items()),
            PAPER["ood"], "holds" if (ood > indom.iloc[0]).all() else "does not hold",
            "the Japanese tokenizer learned technical-manual vocabulary; it still saves "
            f"{1 - ood.max():.0%}–{1 - ood.min():.0%} of the tokens out of domain"))
    cmp_ = tok_report.expansion_comparison(profile)
    if cmp_ is not None and len(cmp_):
        ratios = cmp_["continued / naive"] if "continued / naive" in cmp_ else None
        if ratios is not None:
            out.append(Finding(
                "Reachable-only expansion (continued BPE) beats the naive merge at equal size", "beyond the paper",
                "tokens of continued-BPE expansion / naive merge, per held-out Japanese domain (same vocabulary size)",
                f"{ratios.min():.3f}–{ratios.max():.3f}", PAPER["continued"],
                "holds" if (ratios < 1).all() else "does not hold",
                f"{len(ratios)} domain × tokenizer pairs, all {'below' if (ratios < 1).all() else 'not below'} 1"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Figures


def _kfmt(ax) -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e3:,.0f}k"))


def ve_nve_figure(profile: str, save: bool = True):
    """VE vs NVE (and the base) per task at the last checkpoint: bits per byte, and the generation metrics."""
    df = results(profile)
    runs = [r for r in ("base", "cpt-nve", "cpt-ve") if (df["run"] == r).any()]
    panels = [
        ("bits per byte (lower is better)", [("bpb_ja", "bits_per_byte"), ("bpb_en", "bits_per_byte"),
                                             ("translate_en_ja_ref", "bits_per_byte"),
                                             ("translate_ja_en_ref", "bits_per_byte")]),
        ("score (higher is better)", [("translate_en_ja", "chrf"), ("translate_ja_en", "chrf"), ("faq_ja", "acc"),
                                      ("faq_en", "acc"), ("synopsis_ja", "rouge2_words"),
                                      ("synopsis_ja", "rouge2_tokens")]),
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2, 3]})
    for ax, (ylabel, items) in zip(axes, panels, strict=True):
        items = [(t, m) for t, m in items if ((df["task"] == t) & (df["metric"] == m)).any()]
        w = 0.8 / max(1, len(runs))
        for k, r in enumerate(runs):
            vals = [final(df, r, t, m) for t, m in items]
            # chrF is 0-100: shown /100 so the panel shares one 0-1 axis
            scale = [0.01 if m == "chrf" else 1.0 for _, m in items]
            v = [x[0] * s for x, s in zip(vals, scale, strict=True)]
            e = [0 if math.isnan(x[1]) else x[1] * s for x, s in zip(vals, scale, strict=True)]
            ax.bar(np.arange(len(items)) + (k - (len(runs) - 1) / 2) * w, v, w, yerr=e, label=r, color=f"C{k}",
                   capsize=2)
        labels = [f"{t}\n{m}{' /100' if m == 'chrf' else ''}" for t, m in items]
        ax.set_xticks(range(len(items)), labels, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_title("Vocabulary expansion (VE) vs none (NVE): likelihood")
    axes[1].set_title("… and generation / choice tasks (last checkpoint)")
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "ve_vs_nve.png")
    return fig


def parallel_figure(profile: str, save: bool = True):
    """Parallel-text ablation: translation metrics of cpt-ve-para vs cpt-ve (both directions)."""
    df = results(profile)
    runs = [r for r in ("cpt-ve", "cpt-ve-para") if (df["run"] == r).any()]
    metrics_ = [("translate_en_ja_ref", "bits_per_byte"), ("translate_ja_en_ref", "bits_per_byte"),
                ("translate_en_ja", "chrf"), ("translate_ja_en", "chrf"), ("translate_en_ja", "bleu"),
                ("translate_ja_en", "bleu")]  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics_), figsize=(14, 3.4))
    for ax, (t, m) in zip(axes, metrics_, strict=True):
        for k, r in enumerate(runs):
            v, e = final(df, r, t, m)
            ax.bar(k, v, yerr=0 if math.isnan(e) else e, color=f"C{k + 2}", capsize=3)
        ax.set_xticks(range(len(runs)), runs, fontsize=7)
        ax.set_title(f"{t.replace('translate_', '').replace('_ref', ' (ref)')}\n{m}", fontsize=8)
    fig.suptitle("Parallel pairs in the CPT mix (cpt-ve-para) vs none (cpt-ve); bits per byte: lower is better",
                 fontsize=9)
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "parallel_ablation.png")
    return fig


def scratch_figure(profile: str, save: bool = True):
    """CPT vs training from scratch at equal tokens: JA / EN bits per byte at every checkpoint."""
    df = results(profile)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, task in zip(axes, ("bpb_ja", "bpb_en"), strict=True):
        for k, r in enumerate(("cpt-ve", "cpt-nve", "scratch-ve")):
            c = curve(df, r, task)
            c = c[c["tokens"] > 0]
            if len(c):
                ax.errorbar(c["tokens"], c["value"], yerr=c["stderr"].fillna(0), marker="o", label=r, color=f"C{k}",
                            capsize=2)
        _kfmt(ax)
        ax.set_xlabel("training tokens of the run")
        ax.set_ylabel("bits per byte (held-out)")
        ax.set_title({"bpb_ja": "Japanese", "bpb_en": "English"}[task] + ": CPT vs from scratch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "cpt_vs_scratch.png")
    return fig


def training_efficiency_figure(profile: str, runs: list[str], save: bool = True):
    """Japanese characters learned per second and per PFLOP of training, per run (with and without expansion)."""
    t = training_efficiency(profile, runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, col in zip(axes, ("JA chars/s (median)", "JA chars per PFLOP"), strict=True):
        if not t.empty:
            ax.bar(t["run"], t[col], color=[f"C{i}" for i in range(len(t))])
        ax.set_ylabel(col)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_title("Japanese text per second of training")
    axes[1].set_title("… and per unit of compute")
    fig.tight_layout()
    if save:
        save_figure(fig, paths.figures_dir(profile) / "training_efficiency.png")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# The stage


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped); no tabulate dependency."""
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def build_analysis(cfg: Config | str | Path, force: bool = False) -> Path:
    """Every figure of the study and the findings table (CSV, Markdown, JSON) under ``runs/<profile>/analysis/``.

    Cheap (seconds, no model is run), so it is rebuilt every time; ``force`` is accepted for the shared CLI.
    """
    cfg = cfg if isinstance(cfg, Config) else load_config(cfg)
    p = cfg.profile
    out = paths.analysis_dir(p)
    out.mkdir(parents=True, exist_ok=True)
    runs = _runs(cfg)
    table = findings(cfg)
    write_text_atomic(out / "findings.csv", table.to_csv(index=False))
    write_text_atomic(out / "findings.md", markdown_table(table))
    write_json_atomic(out / "findings.json", table.to_dict(orient="records"))
    write_text_atomic(out / "headline.csv", headline_table(p, runs).to_csv())
    write_text_atomic(out / "training_efficiency.csv", training_efficiency(p, runs).to_csv(index=False))
    for fig in (ve_nve_figure(p), parallel_figure(p), scratch_figure(p), training_efficiency_figure(p, runs)):
        plt.close(fig)
    log.info("analysis: %d findings -> %s", len(table), out)
    return out


def main(argv: list[str] | None = None) -> None:
    from swallowlib.provenance import stage_cli

    stage_cli(build_analysis, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
