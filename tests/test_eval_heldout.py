"""Stage 05's bits-per-byte documents: held-out lines that a training split holds (verbatim or near-verbatim) are
removed and reported, on a hand-made corpus where the overlapping lines are known; the out-of-domain Japanese task
built from fixture texts, and its one-line failure when a text is missing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from swallowlib import paths
from swallowlib.config import load_config
from swallowlib.eval import harness, report, tasks
from swallowlib.tokenizer.coverage import OOD_SOURCES
from tests.train_helpers import use_runs, write_split

PROFILE = "pytest-heldout"

# Training lines (>= 20 characters: decontam.min_chars), and held-out lines that copy them or nearly do.
TRAIN_JA = "この章では、設定ファイルの書き方について順番に詳しく説明します。"
NEAR_JA_TRAIN = "まず、ホームディレクトリに新しいフォルダーを作成してから作業を始めてください。"
NEAR_JA = "まず、ホームディレクトリに新しいフォルダーを作成してから作業を始めてくださいね。"  # one character added
SENT_JA_TRAIN = "パッケージの依存関係は自動的に解決されるので心配はいりません。"
CLEAN_JA = [
    "次に、エディターでファイルを開いて内容をよく確認しましょう。",
    "最後に、変更を保存してからプログラムを再起動します。",
    "設定が反映されたかどうかは、ログファイルを見ればわかります。",
]
TRAIN_EN = "This chapter explains how the configuration file is organised, step by step."
CLEAN_EN = "The cat sat quietly by the window, watching the rain fall on the garden."

#: The held-out documents: which lines overlap is known by construction.
TEST_JA = [
    # a verbatim line, a near-verbatim line, a line holding a training sentence, a short common line, two clean lines
    f"{TRAIN_JA}\n{CLEAN_JA[0]}\n{NEAR_JA}\n例:\n{CLEAN_JA[1]}{SENT_JA_TRAIN}\n{CLEAN_JA[2]}",
    CLEAN_JA[2] + "\n" + CLEAN_JA[0],  # clean
    TRAIN_JA,  # nothing left: the document is dropped
]
TEST_EN = [f"{TRAIN_EN}\n{CLEAN_EN}"]


def _profile(root, *, eval_cfg: dict) -> object:
    """A corpus with ja/en/parallel training splits (the overlapping text spread over all three) and test splits."""
    corpus = root / "runs" / PROFILE / "corpus"
    write_split(corpus / "ja" / "train", [pd.DataFrame({"text": [f"前置き。\n{TRAIN_JA}\n例:\nあとがき。",
                                                                  "ほかの文書です。\n" + NEAR_JA_TRAIN]})])  # fmt: skip
    write_split(corpus / "en" / "train", [pd.DataFrame({"text": [f"Intro.\n\n{TRAIN_EN}\n"]})])
    # the training sentence only on the Japanese side of a parallel pair
    write_split(corpus / "parallel" / "train", [pd.DataFrame({"en": ["No worries."], "ja": [SENT_JA_TRAIN]})])
    write_split(corpus / "ja" / "test", [pd.DataFrame({"text": TEST_JA})])
    write_split(corpus / "en" / "test", [pd.DataFrame({"text": TEST_EN})])
    cfg = {
        "profile": PROFILE,
        "corpus": {"sources": []},
        "eval": {"tasks": ["bpb_ja", "bpb_en"], "max_examples": 10, "bpb_max_chars": 10_000} | eval_cfg,
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")  # fmt: skip
    return load_config(root / "c.yaml")


def _docs(task_dir, task: str) -> list[dict]:
    return [json.loads(x) for x in (task_dir / f"{task}.test.jsonl").read_text(encoding="utf-8").splitlines()]


def test_overlapping_lines_are_removed_and_reported(tmp_path, caplog, monkeypatch):
    """Verbatim lines, near-verbatim lines and lines holding a training sentence go (from any training split, the
    parallel pairs' sides included); short lines and clean lines stay; a document left empty is dropped; the report
    counts exactly that, and the next build reuses it instead of scanning the corpus again."""
    cfg = _profile(tmp_path, eval_cfg={})
    with use_runs(tmp_path / "runs"), caplog.at_level("INFO"):
        out = tasks.build_tasks(cfg, tmp_path / "t")
    ja = sorted(d["text"] for d in _docs(out, "bpb_ja"))
    assert ja == sorted([f"{CLEAN_JA[0]}\n例:\n{CLEAN_JA[2]}", CLEAN_JA[2] + "\n" + CLEAN_JA[0]])
    assert [d["text"] for d in _docs(out, "bpb_en")] == [CLEAN_EN]
    rep = json.loads((out / tasks.OVERLAP_FILE).read_text(encoding="utf-8"))
    st = rep["tasks"]["bpb_ja"]
    before = sum(map(len, TEST_JA))
    after = len(ja[0]) + len(ja[1])
    assert st == {"documents_before": 3, "documents_after": 2, "lines_before": 9, "lines_after": 5,
                  "lines_exact": 3, "lines_near": 1, "chars_before": before, "chars_after": after,
                  "removed_char_frac": pytest.approx(1 - after / before)}  # fmt: skip
    assert rep["tasks"]["bpb_en"]["lines_exact"] == 1 and rep["tasks"]["bpb_en"]["documents_after"] == 1
    assert (
        rep["enabled"]
        and rep["training"]["shards"] == 3
        and rep["decontam"] == {"min_chars": 20, "near_dup_jaccard": 0.7}
    )
    assert any("bpb_ja:" in r.getMessage() and "overlap the training splits" in r.getMessage() for r in caplog.records)

    # the same documents and training shards: the report is reused, the corpus not read
    def no_scan(*a, **k):
        raise AssertionError("scanned again")

    monkeypatch.setattr(tasks, "_training_texts", no_scan)
    with use_runs(tmp_path / "runs"):
        again = tasks.build_tasks(cfg, tmp_path / "t")
    assert (again / "bpb_ja.test.jsonl").read_bytes() == (out / "bpb_ja.test.jsonl").read_bytes()
    # a training split rewritten (stage 01 re-run): scanned again
    with use_runs(tmp_path / "runs"):
        write_split(paths.corpus_split_dir(PROFILE, "en", "train"), [pd.DataFrame({"text": ["Intro only."]})])
        with pytest.raises(AssertionError, match="scanned again"):
            tasks.build_tasks(cfg, tmp_path / "t")


def test_decontamination_can_be_turned_off(tmp_path):
    cfg = _profile(tmp_path, eval_cfg={"bpb_decontam": False})
    with use_runs(tmp_path / "runs"):
        out = tasks.build_tasks(cfg, tmp_path / "t")
        rep = json.loads((out / tasks.OVERLAP_FILE).read_text(encoding="utf-8"))
    assert sorted(d["text"] for d in _docs(out, "bpb_ja")) == sorted(TEST_JA)
    assert rep["enabled"] is False and "bpb_decontam" in rep["why"]


def test_overlap_report_table(tmp_path):
    """The notebook's view of the report: one row per task."""
    cfg = _profile(tmp_path, eval_cfg={})
    with use_runs(tmp_path / "runs"):
        tasks.build_tasks(cfg)  # into runs/<p>/eval/tasks, where report.overlap reads it
        df = report.overlap(PROFILE)
    assert list(df.index) == ["bpb_ja", "bpb_en"] and df.loc["bpb_ja", "lines_near"] == 1
    assert 0 < df.loc["bpb_ja", "removed_char_frac"] < 1


# --- out-of-domain Japanese

OOD = {
    "literature": "羅生門\n\n芥川龍之介\n\n"
    + "\n".join(f"\u3000第{i}段。" + "下人は雨やみを待っていた。" * 6 for i in range(8)),
    "tutorial": "\n\n".join(f"レッスン {i}: カーソルを動かすには h j k l を押します。" * 2 for i in range(12)),
    "essay": "Python の開発は、1990 年ごろから開始されています。\n" * 3,
}  # fmt: skip


def test_out_of_domain_documents_are_every_text_cut_to_size(monkeypatch):
    monkeypatch.setattr(tasks, "_ood_texts", lambda: dict(OOD))
    docs = tasks.ood_documents(200, 1000, 0)
    assert {d["domain"] for d in docs} == set(OOD_SOURCES) and all(len(d["text"]) <= 200 for d in docs)
    for dom, text in OOD.items():  # nothing lost but blank lines: the same characters, in order
        got = "".join(d["text"] for d in docs if d["domain"] == dom)
        assert got.replace("\n", "") == text.replace("\n", "")
    # paragraphs are packed whole where they fit
    first = next(d["text"] for d in docs if d["domain"] == "literature")
    assert first.startswith("羅生門\n\n芥川龍之介\n\n\u3000第0段。")
    capped = tasks.ood_documents(200, 5, 0)
    assert len(capped) == 5 and all(d in docs for d in capped)
    assert [docs.index(d) for d in capped] == sorted(docs.index(d) for d in capped)  # in text order
    assert capped == tasks.ood_documents(200, 5, 0)  # seeded


def test_out_of_domain_task_is_built_and_rolling(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "_ood_texts", lambda: dict(OOD))
    cfg = _profile(tmp_path, eval_cfg={"tasks": ["bpb_ja", "bpb_ja_ood"], "bpb_max_chars": 100})
    with use_runs(tmp_path / "runs"):
        out = tasks.build_tasks(cfg, tmp_path / "t")
    y = yaml.safe_load((out / "bpb_ja_ood.yaml").read_text(encoding="utf-8"))
    assert y["task"] == "swallow_bpb_ja_ood" and y["output_type"] == "loglikelihood_rolling"
    assert tasks.is_rolling(y["task"]) and tasks.lm_eval_names("bpb_ja_ood") == ["swallow_bpb_ja_ood"]
    docs = _docs(out, "bpb_ja_ood")
    assert docs == tasks.ood_documents(100, 10, 0) and len(docs) == 10  # max_examples caps it
    rep = json.loads((out / tasks.OVERLAP_FILE).read_text(encoding="utf-8"))
    assert rep["tasks"]["bpb_ja_ood"]["lines_exact"] == 0  # decontaminated like the held-out text
    ck = harness.Checkpoint("r", "step-1", tmp_path, tmp_path, 1, 1, last=False)
    assert "swallow_bpb_ja_ood" in harness.task_units(cfg, ck)  # a milestone task: the bpb curves


def test_missing_out_of_domain_text_fails_with_one_line(tmp_path, monkeypatch):
    texts = {k: v for k, v in OOD.items() if k != "tutorial"}
    monkeypatch.setattr(tasks, "_ood_texts", lambda: texts)
    cfg = _profile(tmp_path, eval_cfg={"tasks": ["bpb_ja_ood"]})
    with use_runs(tmp_path / "runs"), pytest.raises(tasks.EvalDataError) as e:
        tasks.build_tasks(cfg, tmp_path / "t")
    msg = str(e.value)
    assert "\n" not in msg and "tutorial (deb/vim-runtime)" in msg
    assert "python -m swallowlib.tokenizer.coverage" in msg and "drop bpb_ja_ood from eval.tasks" in msg
