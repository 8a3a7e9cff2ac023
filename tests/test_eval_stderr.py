"""Bootstrap standard errors of the local tasks' corpus-level metrics (bits per byte, chrF, BLEU): the same resamples
as lm-eval's bootstrap, the delta-method value for bits per byte, determinism, 0 resamples, and tidy() filling the
"N/A" that lm-eval leaves, from the per-document samples of a results dict."""

from __future__ import annotations

import copy
import json
import logging
import math
import random

import pandas as pd
import pytest

from swallowlib.eval import harness, metrics
from tests.train_helpers import PROFILE, use_runs


def _bpb_items(n: int, seed: int = 0) -> list[tuple[float, int]]:
    """(log-likelihood, bytes) of ``n`` documents of uneven length, ~2 bits per byte with per-document spread."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        nbytes = rng.randint(20, 2000)
        items.append((-nbytes * math.log(2) * rng.uniform(1.0, 3.0), nbytes))
    return items


PAIRS = [  # (reference, prediction, target language): partial matches of varying quality
    ("設定ファイルを編集する", "設定ファイルを確認する", "ja"),
    ("パッケージをインストールする", "パッケージをインストールします", "ja"),
    ("フォントワークオブジェクトを作成する", "オブジェクトを作成", "ja"),
    ("ディレクトリを削除する", "ファイルを削除する", "ja"),
    ("画面を更新する", "画面", "ja"),
    ("新しいウィンドウを開く", "ウィンドウを閉じる", "ja"),
]
EN_PAIRS = [
    ("To create a Fontwork object", "Create a Fontwork object", "en"),
    ("Edit the configuration file", "Check the configuration file", "en"),
    ("Install the package", "Install the package now", "en"),
    ("Delete the directory", "Remove the file", "en"),
    ("Open a new window", "Close the window", "en"),
    ("Refresh the screen", "Screen refresh", "en"),
]


def test_same_resamples_as_lm_eval(monkeypatch):
    """Equal to lm_eval.api.metrics.bootstrap_stderr itself (its single-process path), one chunk and several."""
    from lm_eval.api.metrics import bootstrap_stderr

    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    items = _bpb_items(30)
    for iters in (50, 2000):
        assert metrics.bootstrap_stderr(metrics.bits_per_byte, items, iters) == bootstrap_stderr(
            metrics.bits_per_byte, items, iters)
    assert metrics.bootstrap_stderr(metrics.corpus_chrf, EN_PAIRS, 20) == bootstrap_stderr(
        metrics.corpus_chrf, EN_PAIRS, 20)


def test_bits_per_byte_stderr_matches_the_delta_method():
    """Bits per byte is a ratio of sums: its linearised stderr is sqrt(Σ (ll_i - R·bytes_i)²) / Σ bytes / ln 2."""
    items = _bpb_items(400, seed=1)
    lls, nbytes = zip(*items, strict=True)
    r = sum(lls) / sum(nbytes)
    delta = math.sqrt(sum((a - r * b) ** 2 for a, b in items)) / sum(nbytes) / math.log(2)
    boot = metrics.bootstrap_stderr(metrics.bits_per_byte, items, 4000)
    assert boot == pytest.approx(delta, rel=0.05)
    # Not the naive per-document spread: documents of different length weigh differently.
    per_doc = [-a / b / math.log(2) for a, b in items]
    mu = sum(per_doc) / len(per_doc)
    naive = math.sqrt(sum((x - mu) ** 2 for x in per_doc) / (len(per_doc) - 1) / len(per_doc))
    assert abs(naive - delta) / delta > 0.1


def test_deterministic_and_zero_iters():
    items = _bpb_items(50)
    a = metrics.bootstrap_stderr(metrics.bits_per_byte, items, 100)
    assert a == metrics.bootstrap_stderr(metrics.bits_per_byte, list(items), 100) and a > 0
    assert metrics.bootstrap_stderr(metrics.bits_per_byte, items, 0) is None
    assert metrics.bootstrap_stderr(metrics.bits_per_byte, items[:1], 100) is None


def test_chrf_bleu_stderr_positive_and_finite():
    for pairs in (PAIRS, EN_PAIRS):
        for f in (metrics.corpus_chrf, metrics.corpus_bleu):
            se = metrics.bootstrap_stderr(f, pairs, 30)
            assert se is not None and math.isfinite(se) and se > 0, (f.__name__, pairs[0][2])


def _results(bpb_items, pairs) -> dict:
    """An lm-eval results dict shaped like the stored JSONs (samples hold each document's aggregation item)."""
    bpb = metrics.bits_per_byte(bpb_items)
    res = {
        "results": {
            "swallow_bpb_ja": {"alias": "swallow_bpb_ja", "sample_len": len(bpb_items),
                               "bits_per_byte,none": bpb, "bits_per_byte_stderr,none": "N/A",
                               "byte_perplexity,none": metrics.byte_perplexity(bpb_items),
                               "byte_perplexity_stderr,none": "N/A"},
            "swallow_translate_en_ja": {"chrf,none": metrics.corpus_chrf(pairs), "chrf_stderr,none": "N/A",
                                        "bleu,none": metrics.corpus_bleu(pairs), "bleu_stderr,none": "N/A"},
            "swallow_faq_ja": {"acc,none": 0.5, "acc_stderr,none": 0.25},
            "wikitext": {"bits_per_byte,none": 1.0, "bits_per_byte_stderr,none": "N/A"},
        },
        "samples": {
            "swallow_bpb_ja": [{"doc_id": i, "filter": "none", "bits_per_byte": list(it), "byte_perplexity": list(it)}
                               for i, it in enumerate(bpb_items)],
            "swallow_translate_en_ja": [{"doc_id": i, "filter": "none", "chrf": list(p), "bleu": list(p)}
                                        for i, p in enumerate(pairs)],
        },
        "swallow": {"run": "cpt-ve", "checkpoint": "step-00000004", "step": 4, "tokens": 512, "bootstrap_iters": 40},
    }
    return json.loads(json.dumps(res))  # as collect() reads it: tuples are lists


def _stderr(rows, task, metric):
    return next(r["stderr"] for r in rows if r["task"] == task and r["metric"] == metric)


def test_tidy_fills_corpus_stderr_from_samples(caplog):
    items = _bpb_items(25)
    res = _results(items, PAIRS)
    rows = harness.tidy(res)
    assert _stderr(rows, "bpb_ja", "bits_per_byte") == metrics.bootstrap_stderr(metrics.bits_per_byte, items, 40)
    for task, metric in (("bpb_ja", "byte_perplexity"), ("translate_en_ja", "chrf"), ("translate_en_ja", "bleu")):
        se = _stderr(rows, task, metric)
        assert se is not None and math.isfinite(se) and se > 0, (task, metric)
    assert _stderr(rows, "faq_ja", "acc") == 0.25  # lm-eval's own stderr is kept
    assert _stderr(rows, "wikitext", "bits_per_byte") is None  # not a local task: no samples of ours to trust
    # The order lm-eval stored the samples in does not matter: documents are resampled in doc_id order.
    shuffled = copy.deepcopy(res)
    random.Random(3).shuffle(shuffled["samples"]["swallow_bpb_ja"])
    assert harness.tidy(shuffled) == rows
    # An explicit count overrides the stored one; 0 resamples: no stderr.
    assert _stderr(harness.tidy(res, 0), "bpb_ja", "bits_per_byte") is None
    assert all(_stderr(harness.tidy(res, 0), t, m) is None for t, m in (("translate_en_ja", "chrf"),
                                                                       ("translate_en_ja", "bleu")))
    # Samples that do not reproduce the reported value (another filter, a limit…) give no stderr, and say so.
    bad = copy.deepcopy(res)
    bad["results"]["swallow_bpb_ja"]["bits_per_byte,none"] += 0.01
    del bad["samples"]["swallow_translate_en_ja"]
    with caplog.at_level(logging.WARNING, logger="swallowlib.eval.harness"):
        rows = harness.tidy(bad)
    assert _stderr(rows, "bpb_ja", "bits_per_byte") is None and _stderr(rows, "translate_en_ja", "chrf") is None
    assert "cpt-ve/step-00000004 swallow_bpb_ja bits_per_byte: the stored samples give" in caplog.text
    assert "swallow_translate_en_ja chrf: no per-document samples" in caplog.text


def test_results_written_before_the_count_was_kept_use_the_config_default():
    from swallowlib.config import EvalConfig

    items = _bpb_items(10)
    res = _results(items, EN_PAIRS)
    del res["swallow"]["bootstrap_iters"]
    want = metrics.bootstrap_stderr(metrics.bits_per_byte, items, EvalConfig.bootstrap_iters)
    assert _stderr(harness.tidy(res), "bpb_ja", "bits_per_byte") == want


def test_collect_writes_elsewhere_when_asked(tmp_path):
    runs = tmp_path / "runs"
    f = runs / PROFILE / "eval" / "results" / "cpt-ve" / "step-00000004.json"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(_results(_bpb_items(10), EN_PAIRS)))
    with use_runs(runs):
        df = harness.collect(PROFILE, out=tmp_path / "elsewhere")
    assert not (runs / PROFILE / "eval" / "results.csv").exists()
    back = pd.read_csv(tmp_path / "elsewhere" / "results.csv")
    assert back.loc[back.metric == "chrf", "stderr"].notna().all()
    assert df.loc[(df.metric == "bits_per_byte") & (df.task == "bpb_ja"), "stderr"].notna().all()
