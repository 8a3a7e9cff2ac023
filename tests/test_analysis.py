"""Stage 06: every row of the findings table follows its inputs (change them and the verdict flips, through the same
paired path that decides the real verdicts), missing inputs read "not measured", and the table's artefacts."""

import json
import math
import re
import zlib

import numpy as np
import pandas as pd
import pytest

from swallowlib import analysis, paths
from swallowlib.config import load_config
from swallowlib.embedding_init import report as init_report
from swallowlib.eval import report as eval_report
from swallowlib.eval.metrics import bits_per_byte
from swallowlib.tokenizer import report as tok_report
from swallowlib.verdict import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED

RUNS = ["base", "cpt-nve", "cpt-ve", "cpt-ve-para", "scratch-ve"]
TOKENS = [100_000, 200_000, 300_000, 400_000]
N_DOCS = 40

#: bits per byte per (run, task) at the four checkpoints: the pattern of the tiny study.
CURVES = {
    ("base", "bpb_ja"): [16.0, 15.8, 15.8, 15.7], ("base", "bpb_en"): [2.4, 2.3, 2.2, 2.18],
    ("cpt-nve", "bpb_ja"): [4.2, 3.2, 3.0, 2.9], ("cpt-nve", "bpb_en"): [2.31, 2.29, 2.27, 2.25],
    ("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 1.87], ("cpt-ve", "bpb_en"): [2.27, 2.25, 2.23, 2.21],
    ("cpt-ve-para", "bpb_ja"): [2.16, 2.01, 1.9, 1.88], ("cpt-ve-para", "bpb_en"): [2.28, 2.26, 2.23, 2.22],
    ("scratch-ve", "bpb_ja"): [2.5, 2.3, 2.2, 2.1], ("scratch-ve", "bpb_en"): [3.3, 3.0, 2.9, 2.8],
    ("base", "bpb_ja_ood"): [17.0, 17.0, 17.0, 17.0], ("cpt-nve", "bpb_ja_ood"): [5.0, 4.5, 4.2, 4.0],
    ("cpt-ve", "bpb_ja_ood"): [3.5, 3.3, 3.2, 3.1],
    ("cpt-ve", "translate_en_ja_ref"): [2.05] * 4, ("cpt-ve-para", "translate_en_ja_ref"): [1.95] * 4,
    ("cpt-ve", "translate_ja_en_ref"): [2.80] * 4, ("cpt-ve-para", "translate_ja_en_ref"): [2.70] * 4,
    # the extended study (make study): base + characters only, twice the Japanese tokenizer, the continuations (4x
    # tokens), scratch at the base's + CPT's tokens; conditional bits per byte of the FAQ answers
    ("cpt-nve+chars", "bpb_ja"): [3.0, 2.5, 2.3, 2.2], ("cpt-ve-v2", "bpb_ja"): [2.1, 1.95, 1.85, 1.80],
    ("cpt-ve-long", "bpb_ja"): [1.8, 1.75, 1.7, 1.68], ("cpt-nve-long", "bpb_ja"): [2.4, 2.1, 1.9, 1.8],
    ("scratch-ve-total", "bpb_ja"): [2.3, 2.1, 2.0, 1.95], ("scratch-ve-total", "bpb_en"): [3.0, 2.8, 2.6, 2.5],
    ("base", "faq_ja_ref"): [8.0] * 4, ("base", "translate_en_ja_ref"): [6.0] * 4, ("cpt-ve", "faq_ja_ref"): [1.0] * 4,
}  # fmt: skip

#: The changes that flip each row (claim -> (inputs changed, verdict after)).
FLIPS = {
    "Japanese improves with continual pre-training": ({("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 16.5]}, FAILS),
    "… and keeps improving with more data": ({("cpt-ve", "bpb_ja"): [2.15, 2.0, 2.3, 2.2]}, FAILS),
    "English is largely retained": ({("cpt-ve", "bpb_en"): [2.3, 2.4, 2.5, 2.6]}, FAILS),
    "Expansion costs little: Japanese VE no worse than NVE": ({("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 3.2]}, FAILS),
    "Expansion costs little: English VE no worse than NVE": ({("cpt-ve", "bpb_en"): [2.3, 2.4, 2.5, 2.6]}, FAILS),
    "Parallel text improves translation": ({("cpt-ve-para", "translate_ja_en_ref"): [2.95] * 4}, FAILS),
    "… without hurting the other tasks": ({("cpt-ve-para", "bpb_en"): [2.28, 2.26, 2.23, 3.0]}, FAILS),
    "CPT beats training from scratch at equal tokens": ({("scratch-ve", "bpb_en"): [2.0] * 4}, FAILS),
    "Japanese improves out of the training domain too": ({("cpt-ve", "bpb_ja_ood"): [17.5] * 4}, FAILS),
    "… and expansion costs little there: VE no worse than NVE out of domain": (
        {("cpt-ve", "bpb_ja_ood"): [3.5, 3.3, 3.2, 4.5]}, FAILS),
    # VE at 100k tokens has seen the JA text of NVE at 400k (2.0 vs 0.5 chars/token; _exposure)
    "At equal Japanese characters seen, Japanese VE no worse than NVE": (
        {("cpt-ve", "bpb_ja"): [3.5, 2.0, 1.9, 1.87]}, FAILS),
    # VE at 300k tokens (12 TFLOP) lies between NVE's 300k and 400k checkpoints (10.2, 13.6 TFLOP)
    "At equal training FLOPs, Japanese VE no worse than NVE": ({("cpt-ve", "bpb_ja"): [2.15, 2.0, 3.2, 1.87]}, FAILS),
    "CPT beats training from scratch at equal total tokens (base + CPT)": (
        {("scratch-ve-total", "bpb_en"): [2.0] * 4}, FAILS),
    "Characters alone do not explain expansion's gain: VE beats NVE + characters": (
        {("cpt-nve+chars", "bpb_ja"): [3.0, 2.5, 2.3, 1.80]}, FAILS),
    "A larger expansion still pays: 2× the Japanese tokenizer beats 1× on Japanese": (
        {("cpt-ve-v2", "bpb_ja"): [2.1, 1.95, 1.85, 1.95]}, FAILS),
}  # fmt: skip

#: Rows that combine two paired differences (two gaps, two tasks): the same flips, a combined interval.
FLIPS_COMBINED = {
    "VE's lead over NVE shrinks with more training": ({("cpt-nve-long", "bpb_ja"): [2.4, 2.6, 2.8, 2.95]}, FAILS),
    "Japanese question answering gains most from CPT": ({("cpt-ve", "faq_ja_ref"): [4.0] * 4}, FAILS),
}  # fmt: skip


def _exposure(profile: str, run: str) -> pd.DataFrame:
    """Training logs' exposure: VE 2.0 JA chars and 40 MFLOP per token, NVE 0.5 and 34."""
    chars, flops = (2.0, 40e6) if run.startswith("cpt-ve") else (0.5, 34e6)
    t = np.arange(2048, 401_409, 2048)
    return pd.DataFrame({"tokens": t, "ja_chars": t * chars, "flops": t * flops})


def _docs(v: float, key: str) -> list[tuple[float, int]]:
    """``N_DOCS`` held-out documents whose corpus bits per byte is exactly ``v``: the same documents (bytes,
    difficulty) for every run, with 1 % per-run noise per document, so a paired bootstrap has something to measure."""
    fixed = np.random.default_rng(0)
    nbytes = fixed.integers(200, 2000, N_DOCS)
    hard = fixed.uniform(0.5, 1.5, N_DOCS)
    w = nbytes * hard * (1 + np.random.default_rng(zlib.crc32(key.encode())).normal(0, 0.01, N_DOCS))
    ll = -v * math.log(2) * w * nbytes.sum() / w.sum()
    return [(float(a), int(n)) for a, n in zip(ll, nbytes, strict=True)]


def _write_results(over: dict | None = None, extra_runs: dict | None = None, step0: dict | None = None) -> None:
    """Stage 05's tidy table and its per-checkpoint JSONs (with per-document samples) from ``CURVES`` + ``over``;
    ``step0``: (run, task) -> the value at the run's step-0 checkpoint (its start weights)."""
    curves = {**CURVES, **{k: v for k, v in (over or {}).items() if len(k) == 2}}
    for (run, task), vals in (extra_runs or {}).items():
        curves[run, task] = vals
    points = [(run, task, i + 1, t, v) for (run, task), vals in curves.items()
              for i, (t, v) in enumerate(zip(TOKENS, vals, strict=True))]  # fmt: skip
    points += [(run, task, 0, 0, v) for (run, task), v in (step0 or {}).items()]
    rows, per_ck = [], {}
    for run, task, step, t, v in points:
        items = _docs(v, f"{run}/{task}/{step}")
        name = f"step-{step:08d}"
        per_ck.setdefault((run, name), {})[f"swallow_{task}"] = [
            {"doc_id": k, "filter": "none", "bits_per_byte": list(x)} for k, x in enumerate(items)]  # fmt: skip
        rows.append((run, name, step, t, task, "bits_per_byte", bits_per_byte(items), 0.05))
    for run in {r for r, _ in curves}:
        for task, metric in (("translate_en_ja", "chrf"), ("translate_ja_en", "chrf"),
                             ("synopsis_ja", "rouge2_words"), ("synopsis_ja", "rouge2_tokens")):  # fmt: skip
            value = (over or {}).get((run, task, metric), 0.001)
            rows.append((run, "step-00000004", 4, TOKENS[-1], task, metric, value, 0.001))
    for (run, name), samples in per_ck.items():
        d = paths.eval_dir("tiny") / "results" / run
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.json").write_text(json.dumps({"results": {}, "samples": samples}))
    df = pd.DataFrame(rows, columns=["run", "checkpoint", "step", "tokens", "task", "metric", "value", "stderr"])
    df.to_csv(paths.eval_dir("tiny") / "results.csv", index=False)


def _write_tokenizer(expanded_in: float = 0.3, expanded_ood: float = 0.4) -> None:
    """Stage 02's per-line token counts: the expanded tokenizer needs ``expanded_*`` × the base's tokens."""
    d = paths.RUNS / "tiny" / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    rows = []
    for domain, n, r in (("ja: held-out manuals (test split)", 300, expanded_in),
                         ("ja: out of domain (literature)", 60, expanded_ood),
                         ("ja: out of domain (essay)", 8, expanded_ood)):  # fmt: skip
        chars = rng.integers(20, 80, n)
        base = chars * rng.uniform(0.9, 1.1, n)
        rows += [{"domain": domain, "line": i, "chars": int(c), "base_tokens": int(b),
                  "expanded_tokens": max(1, int(b * r * rng.uniform(0.8, 1.2)))}
                 for i, (c, b) in enumerate(zip(chars, base, strict=True))]  # fmt: skip
    pd.DataFrame(rows).to_csv(d / "efficiency_lines.csv", index=False)
    (d / "report.json").write_text(json.dumps({"expansion_of": {"expanded": "base"}}))
    (d / "invariants.json").write_text(json.dumps({"expanded": {"english_lines": 10, "english_lines_identical": 10}}))


def _write_speed(per_round: list[float]) -> None:
    """Stage 05's generation-speed file: one VE/NVE chars-per-second ratio per interleaved round."""
    ratio = {"chars_per_s": float(np.median(per_round)), "min": min(per_round), "max": max(per_round),
             "per_round": per_round, "chars_per_token": 1.6, "ms_per_token": 0.9}  # fmt: skip
    (paths.eval_dir("tiny") / "speed.json").write_text(json.dumps({"ratio": ratio}))


def _init_bpc(mop_after=(5.00, 5.01), random_after=(5.20, 5.22), mop_en0=(2.004, 2.004)) -> pd.DataFrame:
    rows, after = [], "after short CPT"
    for seed in (0, 1):
        rows += [
            {"stage": after, "method": "mean-of-pieces", "seed": seed, "lang": "ja", "bpc": mop_after[seed]},
            {"stage": after, "method": "random", "seed": seed, "lang": "ja", "bpc": random_after[seed]},
            {"stage": "step 0", "method": "base (no expansion)", "seed": seed, "lang": "en", "bpc": 2.0},
            {"stage": "step 0", "method": "mean-of-pieces", "seed": seed, "lang": "en", "bpc": mop_en0[seed]},
            {"stage": "step 0", "method": "random", "seed": seed, "lang": "en", "bpc": 2.2},
        ]  # fmt: skip
    return pd.DataFrame(rows)


PROBE = pd.DataFrame([
    {"lang": "ja", "unit": "MeCab words", "rouge2": 0.1}, {"lang": "ja", "unit": "base tokens", "rouge2": 0.36},
    {"lang": "ja", "unit": "expanded tokens", "rouge2": 0.18}, {"lang": "en", "unit": "base tokens", "rouge2": 0.2},
    {"lang": "en", "unit": "expanded tokens", "rouge2": 0.2},
])  # fmt: skip


def _throughput(ve_chars_per_pflop: float) -> pd.DataFrame:
    return pd.DataFrame({"run": ["cpt-nve", "cpt-ve"], "tokens/s (median)": [900.0, 3300.0],
                         "JA chars/s (median)": [470.0, 6400.0], "FLOPs/token (M)": [10.0, 14.0],
                         "JA chars per PFLOP": [1.0e6, ve_chars_per_pflop]})  # fmt: skip


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """The tiny config over a temporary runs/ with results, tokenizer tables, init tables and probes that make every
    row hold (or, for summarisation, be inconclusive); tests change one input at a time."""
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    cfg = load_config(paths.config_path("tiny"))
    paths.eval_dir(cfg.profile).mkdir(parents=True)
    _write_results()
    _write_tokenizer()
    _write_speed([1.9, 2.0, 2.1])  # t(2) interval of the mean ratio: 2.0 ± 0.25
    monkeypatch.setattr(init_report, "bpc", lambda p: _init_bpc())
    monkeypatch.setattr(eval_report, "confound_probe", lambda p: PROBE)
    monkeypatch.setattr(analysis, "training_efficiency", lambda p, runs: _throughput(3.0e6))
    monkeypatch.setattr(analysis, "exposure", _exposure)
    naive = {"pair": "base + JA", "changed": 12, "lines": 100, "ascii_pieces": 5, "en_tokens_ratio": 0.97}
    monkeypatch.setattr(tok_report, "unfiltered_merge_english", lambda p: naive)
    monkeypatch.setattr(tok_report, "expansion_comparison", lambda p: pd.DataFrame({"continued / naive": [0.95, 0.97]}))
    return cfg


def _table(cfg) -> pd.DataFrame:
    return analysis.findings(cfg).set_index("claim")


def _verdicts(cfg) -> dict[str, str]:
    return _table(cfg)["verdict"].to_dict()


def test_baseline_verdicts_and_paired_path(profile):
    t = _table(profile)
    assert set(t["verdict"]) <= {HOLDS, INCONCLUSIVE}
    assert t.loc["Expansion's cost is in summarisation", "verdict"] == INCONCLUSIVE  # every ROUGE-2 below the floor
    for claim in FLIPS:  # every bits-per-byte row is decided by the paired bootstrap over the shared documents
        assert "paired bootstrap" in t.loc[claim, "reason"], claim
    assert "non-inferiority" in t.loc["Expansion costs little: Japanese VE no worse than NVE", "reason"]
    assert "VE is in fact better" in t.loc["Expansion costs little: Japanese VE no worse than NVE", "reason"]
    assert len(t) == 27 and t.index.is_unique


@pytest.mark.parametrize("claim", [*FLIPS, *FLIPS_COMBINED])
def test_every_bpb_row_flips_with_its_inputs(profile, claim):
    over, after = {**FLIPS, **FLIPS_COMBINED}[claim]
    assert _verdicts(profile)[claim] == HOLDS
    _write_results(over)
    assert _verdicts(profile)[claim] == after


def test_the_other_rows_flip_with_their_inputs(profile, monkeypatch):
    v = _verdicts(profile)
    others = ["Vocabulary expansion makes Japanese cheaper to process", "Expansion trains on more Japanese per FLOP",
              "Token-level ROUGE-2 penalises a larger vocabulary (the XL-Sum confound)",
              "The paper's init (mean of the base pieces) is the best of four",
              "Mean-of-pieces keeps English intact at step 0", "A naive merge changes English tokenization",
              "Expansion helps less on Japanese from outside the training domain",
              "Reachable-only expansion (continued BPE) beats the naive merge at equal size",
              "Expansion makes Japanese generation faster"]  # fmt: skip
    assert all(v[c] == HOLDS for c in others), {c: v[c] for c in others}
    _write_speed([0.5, 0.6, 0.55])
    _write_tokenizer(expanded_in=1.3, expanded_ood=1.1)  # the "expansion" now needs more tokens, less so outside
    monkeypatch.setattr(analysis, "training_efficiency", lambda p, runs: _throughput(0.5e6))
    monkeypatch.setattr(eval_report, "confound_probe", lambda p: PROBE.assign(rouge2=[0.1, 0.18, 0.36, 0.2, 0.2]))
    monkeypatch.setattr(init_report, "bpc", lambda p: _init_bpc(mop_after=(5.3, 5.31), mop_en0=(2.3, 2.31)))
    monkeypatch.setattr(tok_report, "unfiltered_merge_english", lambda p: {
        "pair": "base + JA", "changed": 0, "lines": 100, "ascii_pieces": 0, "en_tokens_ratio": 1.0})  # fmt: skip
    monkeypatch.setattr(tok_report, "expansion_comparison", lambda p: pd.DataFrame({"continued / naive": [1.02]}))
    v = _verdicts(profile)
    assert {c: v[c] for c in others} == dict.fromkeys(others, FAILS)


def test_summarisation_row_flips(profile):
    _write_results({("cpt-ve", "synopsis_ja", "rouge2_words"): 0.10, ("cpt-nve", "synopsis_ja", "rouge2_words"): 0.20})
    assert _verdicts(profile)["Expansion's cost is in summarisation"] == HOLDS
    _write_results({("cpt-ve", "synopsis_ja", "rouge2_words"): 0.30, ("cpt-nve", "synopsis_ja", "rouge2_words"): 0.20})
    assert _verdicts(profile)["Expansion's cost is in summarisation"] == FAILS


def test_within_noise_is_inconclusive_not_a_pass(profile):
    """A last interval that falls by less than its paired interval; a margin straddled."""
    _write_results({("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 1.8995],
                    ("cpt-ve-para", "bpb_ja"): [2.16, 2.01, 1.9, 1.8995 * 1.03]})  # fmt: skip
    v = _verdicts(profile)
    assert v["… and keeps improving with more data"] == INCONCLUSIVE
    assert v["… without hurting the other tasks"] == INCONCLUSIVE


def test_margins_come_from_the_config(profile):
    import dataclasses

    _write_results({("cpt-ve", "bpb_en"): [2.27, 2.25, 2.23, 2.18 * 1.04]})  # English +4 %
    assert _verdicts(profile)["English is largely retained"] == HOLDS  # margin 5 %
    strict = dataclasses.replace(profile, analysis=dataclasses.replace(profile.analysis, en_retained_margin=0.02))
    assert _verdicts(strict)["English is largely retained"] == FAILS


def test_missing_inputs_are_rows_that_say_why(profile):
    import dataclasses

    cfg = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, runs=["base", "cpt-ve", "cpt-nve"]))
    t = _table(cfg)
    assert len(t) == 27  # nothing vanishes
    row = t.loc["Parallel text improves translation"]
    assert row["verdict"] == NOT_MEASURED and "cpt-ve-para" in row["reason"]
    assert t.loc["CPT beats training from scratch at equal tokens", "verdict"] == NOT_MEASURED
    assert t.loc["Japanese improves with continual pre-training", "verdict"] == HOLDS


def test_seed_replicates_put_the_seed_spread_in_the_interval(profile):
    """Two seeds of cpt-ve that disagree: the difference is their mean, and t(1) over the seed spread decides."""
    agree = {("cpt-ve-s1", "bpb_en"): [2.27, 2.25, 2.23, 2.21]}
    cfg = profile
    runs = ["base", "cpt-nve", "cpt-ve", "cpt-ve-s1", "cpt-ve-para", "scratch-ve"]
    import dataclasses

    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, runs=runs))
    _write_results(extra_runs=agree)
    row = _table(cfg).loc["Expansion costs little: English VE no worse than NVE"]
    assert "2 seeds" in row["reason"] and row["verdict"] == HOLDS
    _write_results(extra_runs={("cpt-ve-s1", "bpb_en"): [2.27, 2.25, 2.23, 2.40]})  # seed 1: +6.7 % vs NVE
    row = _table(cfg).loc["Expansion costs little: English VE no worse than NVE"]
    assert row["verdict"] == INCONCLUSIVE and "t(1)" in row["reason"]  # one seed alone would have held


def test_build_analysis_writes_table_and_figures(profile):
    out = analysis.build_analysis(profile)
    table = pd.read_csv(out / "findings.csv")
    assert list(table.columns) == ["claim", "source", "measure", "ours", "paper", "verdict", "reason"]
    confound = table[table["claim"].str.contains("confound")].iloc[0]
    assert confound["verdict"] == "holds" and "0.50×" in confound["reason"] and "control: 1.00×" in confound["reason"]
    assert json.loads((out / "findings.json").read_text())[0]["claim"] == table["claim"].iloc[0]
    assert (out / "findings.md").read_text().count("\n") == len(table) + 2
    figs = {p.name for p in paths.figures_dir(profile.profile).glob("*.png")}
    assert {"ve_vs_nve.png", "parallel_ablation.png", "cpt_vs_scratch.png"} <= figs
    first = (paths.figures_dir(profile.profile) / "ve_vs_nve.png").read_bytes()
    analysis.build_analysis(profile)
    assert (paths.figures_dir(profile.profile) / "ve_vs_nve.png").read_bytes() == first  # same data, same bytes
    assert not list(out.glob("*.tmp*"))


def test_rows_follow_the_claim_registry(profile, monkeypatch):
    """The table is the registered claims, in order; registering one more function adds its row at the end."""
    assert list(analysis.findings(profile)["claim"]) == [c.text for c in analysis.CLAIMS]
    monkeypatch.setattr(analysis, "CLAIMS", list(analysis.CLAIMS))

    @analysis.claim("A new claim", "ood", "beyond the paper")
    def _new(ctx, c):
        return c.not_measured("a measure", "not yet")

    row = analysis.findings(profile).iloc[-1]
    assert (row["claim"], row["source"], row["verdict"], row["paper"]) == (
        "A new claim", "beyond the paper", NOT_MEASURED, analysis.PAPER["ood"])  # fmt: skip
    assert len(analysis.findings(profile)) == 28


def test_plain_number():
    from swallowlib.plotting import plain_number

    assert [plain_number(x) for x in (0.5, 1, 3, 40, 1_000, 250_000, 3e6, 1.5e9)] == [
        "0.5", "1", "3", "40", "1k", "250k", "3M", "1.5B"]  # fmt: skip


def test_log_axes_read_as_plain_numbers(profile):
    """The bits-per-byte panel of the VE/NVE figure is on a log axis: its labels are numbers, not mathtext."""
    import matplotlib.pyplot as plt

    fig = analysis.ve_nve_figure(profile.profile, save=False)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for minor in (False, True) for t in ax.get_yticklabels(minor=minor) if t.get_text()]
    plt.close(fig)
    assert labels and all(re.fullmatch(r"\d+(\.\d+)?[kMBT]?", s) for s in labels), labels


def test_missing_results_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match=r"results.csv.*make eval PROFILE=tiny"):
        analysis.findings(load_config(paths.config_path("tiny")))


def test_markdown_table_escapes_pipes():
    md = analysis.markdown_table(pd.DataFrame({"a": ["x|y"], "b": ["two\nlines"]}))
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | two lines |"]


def test_token_ratio_interval_widens_for_short_texts():
    rng = np.random.default_rng(0)
    big = pd.DataFrame({"a_tokens": rng.integers(5, 15, 1000), "b_tokens": rng.integers(10, 30, 1000)})
    r_big, se_big = analysis.token_ratio(big, "a", "b")
    r_small, se_small = analysis.token_ratio(big.head(10), "a", "b")
    assert r_big == pytest.approx(big["a_tokens"].sum() / big["b_tokens"].sum())
    assert se_small > 3 * se_big


def test_confound_probe_same_text_coarser_units_lower_rouge(tmp_path, monkeypatch):
    """The probe scores identical summaries under each unit: coarser tokens give a lower ROUGE-2; English control."""
    from swallowlib.tokenizer import metrics as tok_metrics
    from swallowlib.tokenizer import stage as tok_stage

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    d = paths.eval_dir("p") / "tasks"
    d.mkdir(parents=True)
    items = {
        "ja": [{"description": "二つのロケータから距離と方位角を計算します。詳しくは文書を参照。",
                "target": "ロケータ間の距離と方位角を計算"}],
        "en": [{"description": "Computes the distance between two locators. See the manual.",
                "target": "compute the distance between locators"}],
    }  # fmt: skip
    for lang, rows in items.items():
        (d / f"synopsis_{lang}.test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def chunks(n):  # a "tokenizer" that cuts Japanese into n-character pieces and keeps English words whole
        def enc(texts):
            return [[w[i:i + n] if not w.isascii() else w for w in t.split() for i in range(0, len(w), n)]
                    if not t.isascii() else t.split() for t in texts]  # fmt: skip
        return tok_metrics.PieceEncoder(name=f"c{n}", encode=enc)

    monkeypatch.setattr(tok_stage, "encoders", lambda profile: {"base": chunks(1), "expanded": chunks(3)})
    p = eval_report.confound_probe("p").set_index(["lang", "unit"])["rouge2"]
    assert p["ja", "expanded tokens"] < p["ja", "base tokens"]
    assert p["en", "expanded tokens"] == p["en", "base tokens"]
    lead = eval_report.lead_sentence(items["ja"][0]["description"], "ja")
    assert lead == "二つのロケータから距離と方位角を計算します。"


def test_paired_bootstrap_known_answer_and_tighter_than_independent(tmp_path, monkeypatch):
    """Both runs scored the same documents: the paired difference's stderr is far below the two stderrs combined,
    the difference itself is exact, and without samples there is no paired answer (the caller falls back)."""
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    rng = np.random.default_rng(1)
    nbytes = rng.integers(200, 2000, 50)
    hard = rng.uniform(1.0, 4.0, 50)  # documents differ a lot in difficulty: the independent errors are large
    a = [(-float(h * n), int(n)) for h, n in zip(hard, nbytes, strict=True)]
    b = [(ll * 1.02, n) for ll, n in a]  # b is uniformly 2 % worse on every document
    rows = []
    for run, items in (("a", a), ("b", b)):
        d = paths.eval_dir("tiny") / "results" / run
        d.mkdir(parents=True)
        samples = [{"doc_id": i, "filter": "none", "bits_per_byte": list(x)} for i, x in enumerate(items)]
        (d / "step-00000010.json").write_text(json.dumps({"samples": {"swallow_bpb_ja": samples}}))
        rows.append({"run": run, "checkpoint": "step-00000010", "step": 10, "tokens": 1000, "task": "bpb_ja",
                     "metric": "bits_per_byte", "value": bits_per_byte(items), "stderr": None})  # fmt: skip
    pd.DataFrame(rows).to_csv(paths.eval_dir("tiny") / "results.csv", index=False)
    d, se, n = analysis.paired("tiny", ("a", None), ("b", None), "bpb_ja", iters=400)
    assert d == pytest.approx(bits_per_byte(a) - bits_per_byte(b)) and n == 50
    indep = math.hypot(*(np.std([bits_per_byte([x[i] for i in rng.integers(0, 50, 50)]) for _ in range(400)])
                         for x in (a, b)))  # fmt: skip
    assert se < indep / 5 and abs(d) > 2 * se and abs(d) < 2 * indep  # significant only when paired
    assert analysis.paired("tiny", ("a", None), ("b", None), "bpb_en") is None  # no samples for this task
    assert analysis.paired("tiny", ("a", 99), ("b", None), "bpb_ja") is None  # no such checkpoint


def test_readme_block_is_generated_between_markers_and_idempotent(profile, tmp_path):
    out = analysis.build_analysis(profile)
    readme = tmp_path / "README.md"
    readme.write_text("# t\nintro\n<!-- findings:begin -->\nstale table\n<!-- findings:end -->\n\nafter\n"
                      "<!-- training:begin -->\nstale training\n<!-- training:end -->\n")
    analysis.update_readme(readme, out)
    text = readme.read_text()
    assert "stale table" not in text and "stale training" not in text and text.startswith("# t\nintro\n")
    assert "| cpt-ve | 3,300 | 6,400 | 14.0 | 3,000,000 |" in text  # the training block, from the throughput table
    assert "| Japanese improves with continual pre-training |" in text and "**holds**" in text
    assert "- **Holds** (" in text  # the generated summary
    analysis.update_readme(readme, out)
    assert readme.read_text() == text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        analysis.update_readme(readme, out)


def test_time_budget_block_comes_from_the_executed_notebooks_and_the_study(profile, tmp_path):
    """Each stage's minutes are papermill's record in its executed notebook; the study's come from its summary."""
    import nbformat

    nbs = paths.run_dir("tiny") / "notebooks"
    nbs.mkdir(parents=True)
    for name, seconds in (("01_corpus", 150.0), ("02_tokenizer", 90.0)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name} title")])
        nb.metadata["papermill"] = {"duration": seconds, "end_time": "2026-12-03T10:00:00", "exception": None}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    study = paths.run_dir("tiny") / "study"
    study.mkdir(parents=True)
    (study / "summary.json").write_text(json.dumps({"timings_s": {"variants": 30, "train a": 600, "train b": 300,
                                                                  "eval": 90}}))  # fmt: skip
    out = analysis.build_analysis(profile)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- findings:begin -->\n<!-- findings:end -->\n<!-- timings:begin -->\n<!-- timings:end -->\n")
    analysis.update_readme(readme, out)
    text = readme.read_text()
    assert "| make reproduce | 01_corpus title | 2.5 |" in text and "| make reproduce | **total** | 4.0 |" in text
    assert "| make study | train 2 runs | 15.0 |" in text and "| make study | **total** | 17.0 |" in text


def test_sweep_table_joins_the_variants_with_their_runs(profile):
    """The sweep's rows: the study's tokenizer table, each with its run's final JA bits per byte."""
    study = paths.run_dir("tiny") / "study"
    study.mkdir(parents=True)
    pd.DataFrame({"tokenizer": ["v1", "base", "chars", "v2"], "vocab": [11000, 8000, 9000, 13000],
                  "added": [2989, 0, 1200, 5000], "multi_char": [1800, 0, 0, 3600], "characters": [1189, 0, 1200, 1400],
                  "ja_chars_per_token": [1.5, 1.0, 1.2, 1.7], "rouge2_tokens_lead": [0.19, 0.24, 0.22, 0.17]},
                 ).to_csv(study / "variants.csv", index=False)  # fmt: skip
    t = analysis.sweep_table(profile)
    assert list(t["run"]) == ["cpt-nve", "cpt-nve+chars", "cpt-ve", "cpt-ve-v2"]  # by pieces added
    assert list(t["bpb_ja"].round(2)) == [2.9, 2.2, 1.87, 1.8]  # CURVES' last checkpoints
    row = _table(profile).loc["A larger expansion still pays: 2× the Japanese tokenizer beats 1× on Japanese"]
    assert row["ours"].startswith("0 → 2.900; 1,200 → 2.200; 2,989 → 1.870; 5,000 → 1.800")


def test_without_a_base_run_the_base_is_cpt_nve_at_step_0(profile):
    """GPU profiles start from a pretrained base (no run): cpt-nve's step-0 checkpoint holds its weights."""
    import dataclasses

    cfg = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, runs=[r for r in RUNS if r != "base"]))
    assert _verdicts(cfg)["Japanese improves with continual pre-training"] == NOT_MEASURED
    _write_results(step0={("cpt-nve", "bpb_ja"): 15.9, ("cpt-nve", "bpb_en"): 2.2})
    row = _table(cfg).loc["Japanese improves with continual pre-training"]
    assert row["verdict"] == HOLDS and "cpt-nve at step 0" in row["measure"] and row["ours"].startswith("15.9")
    assert _verdicts(cfg)["English is largely retained"] == HOLDS  # 2.2 -> 2.21


def test_noisy_speed_rounds_are_inconclusive(profile):
    _write_speed([1.26, 2.30, 1.78])  # median 1.78, but t(2) over these rounds reaches below 1
    assert _verdicts(profile)["Expansion makes Japanese generation faster"] == INCONCLUSIVE
