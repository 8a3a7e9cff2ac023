"""Stage 06: the findings table follows the results (change them and the verdicts change), and its artefacts."""

import json
import math

import pandas as pd
import pytest

from swallowlib import analysis, paths
from swallowlib.config import load_config
from swallowlib.eval import report as eval_report

RUNS = ["base", "cpt-nve", "cpt-ve", "cpt-ve-para", "scratch-ve"]
TOKENS = [100_000, 200_000, 300_000, 400_000]


def _results(over: dict | None = None) -> pd.DataFrame:
    """A tidy results table shaped like stage 05's, with the pattern of the tiny study; ``over`` replaces values.

    ``over`` keys: ``(run, task, metric)`` -> value at the last checkpoint, or ``(run, task)`` -> list over TOKENS.
    """
    curves = {
        ("base", "bpb_ja"): [16.0, 15.8, 15.8, 15.7], ("base", "bpb_en"): [2.4, 2.3, 2.2, 2.18],
        ("cpt-nve", "bpb_ja"): [4.2, 3.2, 3.0, 2.9], ("cpt-nve", "bpb_en"): [2.31, 2.29, 2.27, 2.25],
        ("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 1.87], ("cpt-ve", "bpb_en"): [2.27, 2.25, 2.23, 2.21],
        ("cpt-ve-para", "bpb_ja"): [2.16, 2.01, 1.9, 1.88], ("cpt-ve-para", "bpb_en"): [2.28, 2.26, 2.23, 2.22],
        ("scratch-ve", "bpb_ja"): [2.5, 2.3, 2.2, 2.1], ("scratch-ve", "bpb_en"): [3.3, 3.0, 2.9, 2.8],
    }  # fmt: skip
    last = {
        "translate_en_ja_ref": {"cpt-ve": 2.05, "cpt-ve-para": 2.03},
        "translate_ja_en_ref": {"cpt-ve": 2.80, "cpt-ve-para": 2.73},
    }
    over = over or {}
    curves.update({k: v for k, v in over.items() if len(k) == 2})
    rows = []
    for (run, task), vals in curves.items():
        for i, (t, v) in enumerate(zip(TOKENS, vals, strict=True)):
            rows.append((run, f"step-{i}", i + 1, t, task, "bits_per_byte", v, 0.005))
    for task, by_run in last.items():
        for run, v in by_run.items():
            rows.append((run, "step-3", 4, TOKENS[-1], task, "bits_per_byte", v, 0.005))
    for run in RUNS:
        for task, metric in (("translate_en_ja", "chrf"), ("translate_ja_en", "chrf"),
                             ("synopsis_ja", "rouge2_words"), ("synopsis_ja", "rouge2_tokens")):  # fmt: skip
            rows.append((run, "step-3", 4, TOKENS[-1], task, metric, 0.001, 0.001))
    df = pd.DataFrame(rows, columns=["run", "checkpoint", "step", "tokens", "task", "metric", "value", "stderr"])
    for (run, task, metric), v in ((k, v) for k, v in over.items() if len(k) == 3):
        m = (df["run"] == run) & (df["task"] == task) & (df["metric"] == metric) & (df["step"] == 4)
        assert m.sum() == 1, (run, task, metric)
        df.loc[m, "value"] = v
    return df


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    cfg = load_config(paths.config_path("tiny"))

    def write(df: pd.DataFrame) -> None:
        d = paths.eval_dir(cfg.profile)
        d.mkdir(parents=True, exist_ok=True)
        df.to_csv(d / "results.csv", index=False)

    return cfg, write


def _verdicts(cfg) -> dict[str, str]:
    t = analysis.findings(cfg)
    return dict(zip(t["claim"], t["verdict"], strict=True))


def test_compare_rules():
    assert analysis.compare(1.0, 0.01, 1.1, 0.01)[0]  # 0.1 / 0.014 = 7 stderr
    assert not analysis.compare(1.0, 0.1, 1.1, 0.1)[0]  # 0.7 stderr
    ok, how = analysis.compare(1.0, math.nan, 1.02, 0.0)  # no stderr: 2 % > the 1 % floor
    assert ok and "no stderr" in how
    assert not analysis.compare(1.0, math.nan, 1.005, math.nan)[0]


def test_findings_follow_the_results(profile):
    cfg, write = profile
    write(_results())
    v = _verdicts(cfg)
    assert v["Japanese improves with continual pre-training"] == "holds"
    assert v["… and keeps improving with more data"] == "holds"
    assert v["English is largely retained"] == "holds"
    assert v["Expansion costs little: Japanese VE ≈ NVE"] == "holds"
    assert v["CPT beats training from scratch at equal tokens"] == "holds"
    assert v["Parallel text improves translation"] == "holds"  # both directions lower by > 2 stderr
    assert v["… without hurting the other tasks"] == "holds"  # JA 1.88 vs 1.87, EN 2.22 vs 2.21: 1.4 stderr each
    assert v["Expansion's cost is in summarisation"] == "inconclusive"  # every ROUGE-2 below the floor

    # Change the results, and the verdicts change.
    write(_results({
        ("cpt-ve", "bpb_ja"): [2.15, 2.0, 2.1, 16.0],        # worse than base at the end, not monotonic
        ("cpt-ve", "bpb_en"): [2.3, 2.4, 2.5, 2.6],           # English +19 %
        ("scratch-ve", "bpb_en"): [2.0, 2.0, 2.0, 2.0],       # scratch better on English
        ("cpt-ve-para", "bpb_en"): [2.28, 2.26, 2.23, 3.0],   # parallel text now hurts English
        ("cpt-ve-para", "translate_en_ja_ref", "bits_per_byte"): 2.0501,
        ("cpt-ve", "synopsis_ja", "rouge2_words"): 0.10, ("cpt-nve", "synopsis_ja", "rouge2_words"): 0.20,
    }))  # fmt: skip
    v = _verdicts(cfg)
    assert v["Japanese improves with continual pre-training"] == "does not hold"
    assert v["… and keeps improving with more data"] == "does not hold"
    assert v["English is largely retained"] == "does not hold"
    assert v["Expansion costs little: Japanese VE ≈ NVE"] == "does not hold"
    assert v["CPT beats training from scratch at equal tokens"] == "does not hold"
    assert v["Parallel text improves translation"] == "inconclusive"  # en→ja within noise, ja→en better
    assert v["… without hurting the other tasks"] == "does not hold"
    assert v["Expansion's cost is in summarisation"] == "holds"


def test_monotonic_but_last_gain_in_noise_is_inconclusive(profile):
    cfg, write = profile
    write(_results({("cpt-ve", "bpb_ja"): [2.15, 2.0, 1.9, 1.899]}))
    assert _verdicts(cfg)["… and keeps improving with more data"] == "inconclusive"


def test_build_analysis_writes_table_and_figures(profile, monkeypatch):
    cfg, write = profile
    write(_results())
    probe = pd.DataFrame([
        {"lang": "ja", "unit": "MeCab words", "rouge2": 0.1}, {"lang": "ja", "unit": "base tokens", "rouge2": 0.36},
        {"lang": "ja", "unit": "expanded tokens", "rouge2": 0.18}, {"lang": "en", "unit": "base tokens", "rouge2": 0.2},
        {"lang": "en", "unit": "expanded tokens", "rouge2": 0.2},
    ])  # fmt: skip
    monkeypatch.setattr(eval_report, "confound_probe", lambda profile: probe)
    out = analysis.build_analysis(cfg)
    table = pd.read_csv(out / "findings.csv")
    assert list(table.columns) == ["claim", "source", "measure", "ours", "paper", "verdict", "reason"]
    assert set(table["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    confound = table[table["claim"].str.contains("confound")].iloc[0]
    assert confound["verdict"] == "holds" and "0.50×" in confound["reason"] and "control: 1.00×" in confound["reason"]
    assert json.loads((out / "findings.json").read_text())[0]["claim"] == table["claim"].iloc[0]
    assert (out / "findings.md").read_text().count("\n") == len(table) + 2
    figs = {p.name for p in paths.figures_dir(cfg.profile).glob("*.png")}
    assert {"ve_vs_nve.png", "parallel_ablation.png", "cpt_vs_scratch.png"} <= figs
    first = (paths.figures_dir(cfg.profile) / "ve_vs_nve.png").read_bytes()
    analysis.build_analysis(cfg)
    assert (paths.figures_dir(cfg.profile) / "ve_vs_nve.png").read_bytes() == first  # same data, same bytes
    assert not list(out.glob("*.tmp*"))


def test_missing_results_is_one_clear_error(profile):
    cfg, _ = profile
    with pytest.raises(FileNotFoundError, match=r"results.csv.*make eval PROFILE=tiny"):
        analysis.findings(cfg)


def test_markdown_table_escapes_pipes():
    md = analysis.markdown_table(pd.DataFrame({"a": ["x|y"], "b": ["two\nlines"]}))
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | two lines |"]


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
    assert eval_report._lead(items["ja"][0]["description"], "ja") == "二つのロケータから距離と方位角を計算します。"


def _result_file(run: str, step: int, items: list[tuple[float, int]], task: str = "bpb_ja") -> dict:
    """lm-eval's JSON (with per-document samples) of one checkpoint, as stage 05 stores it; returns its table row."""
    from swallowlib.eval.metrics import bits_per_byte

    d = paths.eval_dir("tiny") / "results" / run
    d.mkdir(parents=True, exist_ok=True)
    res = {"results": {f"swallow_{task}": {"bits_per_byte,none": bits_per_byte(items)}},
           "samples": {f"swallow_{task}": [{"doc_id": i, "filter": "none", "bits_per_byte": list(x)}
                                            for i, x in enumerate(items)]},
           "swallow": {"run": run, "checkpoint": f"step-{step:08d}", "step": step}}  # fmt: skip
    (d / f"step-{step:08d}.json").write_text(json.dumps(res))
    return {"run": run, "checkpoint": f"step-{step:08d}", "step": step, "tokens": step * 100, "task": task,
            "metric": "bits_per_byte", "value": bits_per_byte(items), "stderr": None}


def test_paired_bootstrap_known_answer_and_tighter_than_independent(profile):
    """Both runs scored the same documents: the paired difference's stderr is far below the two stderrs combined,
    the difference itself is exact, and without samples there is no paired answer (the caller falls back)."""
    import numpy as np

    _, write = profile
    from swallowlib.eval.metrics import bits_per_byte

    rng = np.random.default_rng(1)
    nbytes = rng.integers(200, 2000, 50)
    hard = rng.uniform(1.0, 4.0, 50)  # documents differ a lot in difficulty: the independent errors are large
    a = [(-float(h * n), int(n)) for h, n in zip(hard, nbytes, strict=True)]
    b = [(ll * 1.02, n) for ll, n in a]  # b is uniformly 2 % worse on every document
    write(pd.DataFrame([_result_file("a", 10, a), _result_file("b", 10, b)]))  # the table names the checkpoints
    d, se = analysis.paired("tiny", ("a", None), ("b", None), "bpb_ja", iters=400)
    assert d == pytest.approx(bits_per_byte(a) - bits_per_byte(b))
    indep = math.hypot(*(np.std([bits_per_byte([x[i] for i in rng.integers(0, 50, 50)]) for _ in range(400)])
                         for x in (a, b)))  # fmt: skip
    assert se < indep / 5 and abs(d) > 2 * se and abs(d) < 2 * indep  # significant only when paired
    assert analysis.paired("tiny", ("a", None), ("b", None), "bpb_en") is None  # no samples for this task
    assert analysis.paired("tiny", ("a", 99), ("b", None), "bpb_ja") is None  # no such checkpoint
    ok, how = analysis.compare_paired("tiny", ("a", None), ("b", None), "bpb_ja", (0, 1, 0, 1))
    assert ok and "paired" in how
