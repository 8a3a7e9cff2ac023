"""Stage 05 (swallowlib.eval): local lm-eval tasks from held-out files, a real lm-eval run on a tiny random Llama,
determinism, a failing task recorded on its own and retried alone, the lm-eval registry and task-loading checks of
GPU task names, and the bad-input errors."""

from __future__ import annotations

import json
import os
import random
import shutil

import pandas as pd
import pytest
import torch
import yaml

from swallowlib import paths
from swallowlib.config import ConfigError, load_config
from swallowlib.eval import harness, metrics, report, tasks
from tests.samples import EN_SENTENCES, JA_SENTENCES
from tests.train_helpers import PROFILE, build_tree, use_runs, write_config

#: The paper's lm-eval tasks and shots (docs/study.md, the paper), as a GPU profile lists them in eval.harness_tasks.
PAPER_TASKS = {
    "ja_leaderboard_jcommonsenseqa": 4, "ja_leaderboard_jsquad": 4, "ja_leaderboard_jaqket_v2": 4,
    "ja_leaderboard_xlsum": 1, "ja_leaderboard_mgsm": 4, "ja_leaderboard_jnli": 3, "ja_leaderboard_marc_ja": 3,
    "ja_leaderboard_xwinograd": 0, "openbookqa": 8, "triviaqa": 8, "hellaswag": 8, "xwinograd_en": 8, "gsm8k": 8,
    "squadv2": 8,
}  # fmt: skip

# No bpb_ja_ood (its texts are Debian packages: tests/test_eval_heldout.py builds it from fixtures), and no
# decontamination of the held-out documents: this tree's test split is made of its training sentences.
EVAL = {"max_examples": 4, "bpb_max_chars": 200, "max_chars": 80, "faq_answer_chars": 60, "max_gen_tokens": 8,
        "shots": {"translate": 1, "synopsis": 1, "faq": 0}, "batch_size": 4, "runs": ["base", "ve"],
        "bootstrap_iters": 10, "bpb_decontam": False,
        "tasks": ["bpb_ja", "bpb_en", "translate_en_ja", "translate_ja_en", "faq_ja", "faq_en", "synopsis_ja",
                  "synopsis_en"]}  # fmt: skip


def _model(vocab: int, out, state: dict) -> None:
    """A random 2-layer Llama of ``vocab`` rows saved as an HF checkpoint with its trainer_state.json."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=512, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(out)
    (out / "trainer_state.json").write_text(json.dumps(state))


def _write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A profile with corpus test splits, eval jsonl files, two tokenizers and two runs' checkpoints."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("eval-tree")
    config = build_tree(root)
    config = write_config(config, root / "eval.yaml", lambda d: d.update(eval=EVAL))
    prof = root / "runs" / PROFILE
    rng = random.Random(0)
    for lang, pool, sep in (("ja", JA_SENTENCES, ""), ("en", EN_SENTENCES, " ")):
        texts = [sep.join(rng.choice(pool) for _ in range(4)) for _ in range(6)]
        split = prof / "corpus" / lang / "test"
        split.mkdir(parents=True, exist_ok=True)
        # two shards: the held-out sample reads a split across its shards
        pd.DataFrame({"text": texts[:4]}).to_parquet(split / "00000.parquet")
        pd.DataFrame({"text": texts[4:]}).to_parquet(split / "00001.parquet")
    k = min(len(JA_SENTENCES), len(EN_SENTENCES))
    ev = prof / "corpus" / "eval"
    _write_jsonl(ev / "parallel.jsonl", [{"id": f"p{i}", "group": f"g{i}", "en": EN_SENTENCES[i], "ja": JA_SENTENCES[i]}
                                         for i in range(k)])
    _write_jsonl(ev / "faq.jsonl", [{"id": f"{lang}{i}", "lang": lang, "question": q, "answer": a}
                                    for lang, pool in (("en", EN_SENTENCES), ("ja", JA_SENTENCES))
                                    for i, (q, a) in enumerate(zip(pool, pool[1:], strict=False))])
    _write_jsonl(ev / "synopsis.jsonl", [{"id": f"s{lang}{i}", "lang": lang, "group": f"g{i}", "package": f"p{i}",
                                          "synopsis": pool[i][:30], "description": pool[i] + pool[(i + 1) % len(pool)]}
                                         for lang, pool in (("en", EN_SENTENCES), ("ja", JA_SENTENCES))
                                         for i in range(len(pool))])
    sizes = {n: len(AutoTokenizer.from_pretrained(prof / "tokenizer" / n)) for n in ("base", "expanded")}
    for run, tok, step in (("base", "base", 4), ("ve", "expanded", 2)):
        d = prof / "train" / run / "milestones" / f"step-{step:08d}"
        _model(sizes[tok], d, {"run": run, "step": step, "tokens": step * 128})
        for f in (prof / "tokenizer" / tok).iterdir():
            shutil.copy(f, d / f.name)
    return {"root": root, "runs": root / "runs", "config": config, "prof": prof, "sizes": sizes}


def test_tasks_written_and_seeded(tree, tmp_path):
    with use_runs(tree["runs"]):
        cfg = load_config(tree["config"])
        a = tasks.build_tasks(cfg, tmp_path / "a")
        b = tasks.build_tasks(cfg, tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        if n.endswith(".jsonl"):
            assert (a / n).read_bytes() == (b / n).read_bytes(), n
    y = yaml.safe_load((a / "bpb_ja.yaml").read_text())
    assert y["output_type"] == "loglikelihood_rolling" and y["dataset_path"] == "json"
    assert (a / "translate_en_ja_ref.yaml").is_file()
    faq = [json.loads(x) for x in (a / "faq_ja.test.jsonl").read_text().splitlines()]
    assert len(faq) == 4 and all(len(r["choices"]) == 4 and r["choices"][r["gold"]] for r in faq)
    # Shots never share a group (package) with a test item.
    test = {json.loads(x)["id"] for x in (a / "translate_en_ja.test.jsonl").read_text().splitlines()}
    shots = {json.loads(x)["id"] for x in (a / "translate_en_ja.shots.jsonl").read_text().splitlines()}
    assert test and shots and not test & shots


def test_lm_eval_runs_and_is_deterministic(tree):
    """Every local task through lm_eval.simple_evaluate on a tiny random Llama; re-run, with identical numbers."""
    with use_runs(tree["runs"]):
        cfg = load_config(tree["config"])
        s1 = harness.run_eval(cfg)
        assert not s1["failed"], s1["failed"]
        assert {(r, c) for r, c, _ in s1["evaluated"]} == {("base", "step-00000004"), ("ve", "step-00000002")}
        df1 = harness.collect(PROFILE)
        s2 = harness.run_eval(cfg)  # already evaluated: skipped
        assert not s2["evaluated"] and len(s2["skipped"]) == 2
        s3 = harness.run_eval(cfg, runs=["ve"], force=True)
        df3 = harness.collect(PROFILE)
    assert [(r, c) for r, c, _ in s3["evaluated"]] == [("ve", "step-00000002")]
    pd.testing.assert_frame_equal(df1, df3)
    assert list(df1.columns) == harness.TABLE_COLUMNS
    got = set(zip(df1.task, df1.metric, strict=True))
    for want in [("bpb_ja", "bits_per_byte"), ("bpb_en", "bits_per_byte"), ("translate_en_ja", "chrf"),
                 ("translate_ja_en", "bleu"), ("translate_en_ja_ref", "bits_per_byte"), ("faq_ja", "acc"),
                 ("faq_en", "acc_norm"), ("faq_ja_ref", "bits_per_byte"), ("synopsis_ja", "rouge2_words"),
                 ("synopsis_ja", "rouge2_tokens")]:
        assert want in got, want
    bpb = df1[(df1.metric == "bits_per_byte") & (df1.task == "bpb_ja")]
    # A random model over V pieces: about log2(V) bits per token, so several bits per byte, finite and positive.
    assert len(bpb) == 2 and (bpb.value > 0.5).all() and (bpb.value < 20).all()
    # lm-eval leaves the corpus-level metrics' stderr "N/A": bootstrapped from its samples, finite, identical on re-run.
    corpus = df1[df1.metric.isin(["bits_per_byte", "byte_perplexity", "chrf", "bleu"])]
    # Per checkpoint: 2 bpb tasks x 2 metrics, 2 translations x (chrF, BLEU, reference bpb), 2 FAQ reference bpb.
    assert len(corpus) == 2 * 12 and corpus.stderr.notna().all() and (corpus.stderr >= 0).all(), corpus
    assert (df1.loc[df1.metric == "bits_per_byte", "stderr"] > 0).all()
    assert (tree["runs"] / PROFILE / "eval" / "results.parquet").is_file()
    res = json.loads((tree["runs"] / PROFILE / "eval" / "results" / "ve" / "step-00000002.json").read_text())
    assert res["swallow"]["tokens"] == 256 and res["samples"]["swallow_translate_en_ja"]


def test_one_bad_checkpoint_keeps_the_others(tree, tmp_path):
    """A checkpoint without weights is recorded as an error; the good one is still evaluated and tabled."""
    bad = tree["prof"] / "train" / "broken" / "milestones" / "step-00000001"
    bad.mkdir(parents=True, exist_ok=True)
    (bad / "config.json").write_text(json.dumps({"vocab_size": 10}))
    good = tree["prof"] / "train" / "base" / "milestones" / "step-00000004"
    with use_runs(tree["runs"]):
        cfg = load_config(tree["config"])
        s = harness.run_eval(cfg, checkpoints=[bad, good], force=True)
    assert [(r, c) for r, c, _ in s["failed"]] == [("broken", "step-00000001")]
    assert "missing model weights" in s["failed"][0][2]
    assert [(r, c) for r, c, _ in s["evaluated"]] == [("base", "step-00000004")]
    err = tree["runs"] / PROFILE / "eval" / "results" / "broken" / "step-00000001.error.json"
    assert "missing model weights" in json.loads(err.read_text())["error"]
    with use_runs(tree["runs"]):
        [row] = report.failures(PROFILE).query("run == 'broken'").to_dict("records")
    assert row["task"] == harness.WHOLE_CHECKPOINT and "missing model weights" in row["error"]


def test_checkpoint_errors(tree, tmp_path):
    prof = tree["prof"]
    with pytest.raises(harness.CheckpointError, match="checkpoint directory not found"):
        harness.check_checkpoint(tmp_path / "nope")
    d = tmp_path / "noconfig"
    d.mkdir()
    with pytest.raises(harness.CheckpointError, match="missing config.json"):
        harness.check_checkpoint(d)
    # Weights of the expanded size with the base tokenizer: the tokenizer does not match the embedding.
    d = tmp_path / "mismatch"
    _model(tree["sizes"]["expanded"] + 100, d, {"step": 1})
    for f in (prof / "tokenizer" / "base").iterdir():
        shutil.copy(f, d / f.name)
    with pytest.raises(harness.CheckpointError, match="does not match the embedding size"):
        harness.check_checkpoint(d)
    # No tokenizer files: the profile's tokenizer of the right size is used.
    d = tmp_path / "notok"
    _model(tree["sizes"]["expanded"], d, {"step": 1})
    with pytest.raises(harness.CheckpointError, match="missing tokenizer files"):
        harness.check_checkpoint(d)
    with use_runs(tree["runs"]):
        assert harness.check_checkpoint(d, PROFILE) == prof / "tokenizer" / "expanded"


def test_empty_or_missing_heldout_file(tree, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(tree["prof"] / "corpus", root / PROFILE / "corpus")
    (root / PROFILE / "corpus" / "eval" / "faq.jsonl").write_text("")
    with use_runs(root):
        cfg = load_config(tree["config"])
        with pytest.raises(tasks.EvalDataError, match=r"faq.jsonl: held-out file is empty"):
            tasks.build_tasks(cfg, tmp_path / "t")
        test_dir = root / PROFILE / "corpus" / "ja" / "test"
        for f in test_dir.glob("*.parquet"):
            f.unlink()
        with pytest.raises(tasks.EvalDataError, match=r"ja/test: held-out split is empty"):
            tasks.build_tasks(cfg, tmp_path / "t")
        test_dir.rmdir()
        with pytest.raises(tasks.EvalDataError, match=r"ja/test: held-out split not found"):
            tasks.build_tasks(cfg, tmp_path / "t")


def test_unknown_task_names(tree, tmp_path):
    cfg = write_config(tree["config"], tmp_path / "bad.yaml", lambda d: d["eval"].update(tasks=["bpb_ja", "hellaswag"]))
    with pytest.raises(ConfigError, match=r"eval.tasks\[1\]: unknown task 'hellaswag'"):
        load_config(cfg)
    cfg = write_config(tree["config"], tmp_path / "bad2.yaml", lambda d: d["eval"].update(runs=["nope"]))
    with pytest.raises(ConfigError, match=r"eval.runs\[0\]: no run named 'nope'"):
        load_config(cfg)
    with pytest.raises(ValueError, match="unknown lm-eval task 'no_such_task_xyz'"):
        harness.check_harness_tasks(["hellaswag", "no_such_task_xyz"], _registry())


_TM: list = []


def _registry():
    if not _TM:
        _TM.append(harness.task_manager())
    return _TM[0]


def test_paper_task_names_exist_in_lm_eval_registry():
    """The paper's tasks, and every task a profile in configs/ lists, exist in the installed lm-eval (offline)."""
    names = set(PAPER_TASKS)
    for f in sorted(paths.CONFIGS.glob("*.yaml")):
        names |= set(load_config(f).eval.harness_tasks)
    harness.check_harness_tasks(sorted(names), _registry())


def test_rouge_words_vs_tokens_and_mecab_bleu():
    """ROUGE-2 on MeCab words differs from ROUGE-2 on pieces; Japanese BLEU is computed on MeCab words."""
    ref, pred = "設定ファイルを編集する", "設定ファイルを確認する"
    w = metrics.rouge2_f(pred, ref, lambda s: metrics.words(s, "ja"))
    c = metrics.rouge2_f(pred, ref, list)  # characters as the "tokens" of a very small vocabulary
    assert 0 < w < 1 and 0 < c < 1 and w != c
    assert metrics.rouge2_f(ref, ref, lambda s: metrics.words(s, "ja")) == 1.0
    items = [(ref, ref, "ja")] * 2
    assert metrics.corpus_bleu(items) == pytest.approx(100.0)
    assert metrics.corpus_chrf([(ref, pred, "ja")]) < 100.0
    assert metrics.bits_per_byte([(-8 * 0.6931471805599453, 8)]) == pytest.approx(1.0)


def test_only_the_last_checkpoint_gets_every_task(tree, tmp_path):
    """Earlier milestones get eval.milestone_tasks (the score-vs-tokens curve), the last one the whole suite."""
    runs = tmp_path / "runs"
    for name in ("step-00000002", "step-00000004"):
        d = runs / PROFILE / "train" / "base" / "milestones" / name
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text(json.dumps({"step": int(name[5:]), "tokens": 64 * int(name[5:])}))
    with use_runs(runs):
        cfg = load_config(tree["config"])
        cks = harness.discover(cfg, ["base"])
    assert [(c.name, c.last) for c in cks] == [("step-00000002", False), ("step-00000004", True)]
    # the default milestone tasks include bpb_ja_ood, which this suite leaves out: a milestone gets the others only
    assert "bpb_ja_ood" in cfg.eval.milestone_tasks and "bpb_ja_ood" not in cfg.eval.tasks
    assert set(harness.task_units(cfg, cks[0])) == {"swallow_bpb_ja", "swallow_bpb_en"}
    assert set(harness.task_units(cfg, cks[1])) == {n for t in cfg.eval.tasks for n in tasks.lm_eval_names(t)}


def test_jmdict_words_and_task(tree, tmp_path, monkeypatch):
    """JMdict extraction from a jamdict-shaped SQLite file, and the word -> gloss multiple-choice task built on it."""
    import sqlite3

    from swallowlib.eval import jmdict

    db = tmp_path / "jamdict.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE Kanji (ID INTEGER PRIMARY KEY, idseq INTEGER, text TEXT);
        CREATE TABLE KJP (kid INTEGER, text TEXT);
        CREATE TABLE Sense (ID INTEGER PRIMARY KEY, idseq INTEGER);
        CREATE TABLE SenseGloss (sid INTEGER, lang TEXT, gend TEXT, text TEXT);
        INSERT INTO Kanji VALUES (1, 10, '猫'), (2, 20, '犬'), (3, 30, '鳥'), (4, 40, '魚'), (5, 50, '稀');
        INSERT INTO KJP VALUES (1, 'ichi1'), (2, 'ichi1'), (3, 'ichi1'), (4, 'ichi1'), (5, 'news2');
        INSERT INTO Sense VALUES (100, 10), (101, 10), (200, 20), (300, 30), (400, 40), (500, 50);
        INSERT INTO SenseGloss VALUES (100, 'eng', NULL, 'cat'), (100, 'eng', NULL, 'feline'),
            (101, 'eng', NULL, 'second sense'), (100, 'ger', NULL, 'Katze'), (200, 'eng', NULL, 'dog'),
            (300, 'eng', NULL, 'bird'), (400, 'eng', NULL, 'fish'), (500, 'eng', NULL, 'rare');
    """)
    con.commit()
    con.close()
    words = jmdict.read_common_words(db)
    # One row per ichi1 entry (稀 is news2): its first English gloss of the first sense.
    assert [(w["id"], w["word"], w["gloss"]) for w in words] == [
        ("jmdict/10", "猫", "cat"), ("jmdict/20", "犬", "dog"),
        ("jmdict/30", "鳥", "bird"), ("jmdict/40", "魚", "fish"),
    ]  # fmt: skip
    monkeypatch.setattr(jmdict, "common_words", lambda db_path=None: words)
    with use_runs(tree["runs"]):
        cfg = load_config(write_config(tree["config"], tmp_path / "j.yaml",
                                       lambda d: d["eval"].update(tasks=["jmdict_ja_en"])))
        out = tasks.build_tasks(cfg, tmp_path / "t")
    rows = [json.loads(x) for x in (out / "jmdict_ja_en.test.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["choices"]) == 4 and len(set(r["choices"])) == 4 for r in rows)
    gloss = {w["word"]: w["gloss"] for w in words}
    assert all(r["choices"][r["gold"]] == gloss[r["word"]] for r in rows)
    with pytest.raises(ValueError, match="not a jamdict database"):
        (tmp_path / "x.sqlite").write_bytes(b"")
        jmdict.read_common_words(tmp_path / "x.sqlite")


def test_a_continued_run_starts_its_curve_at_its_start_weights(tree, tmp_path):
    """cpt continues from base's final weights: they are its step-0 point (0 tokens, bits-per-byte tasks only)."""
    runs = tmp_path / "runs"
    final = runs / PROFILE / "train" / "base" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    m = runs / PROFILE / "train" / "cpt" / "milestones" / "step-00000004"
    m.mkdir(parents=True)
    (m / "trainer_state.json").write_text(json.dumps({"step": 4, "tokens": 512}))
    with use_runs(runs):
        cfg = load_config(tree["config"])
        cks = harness.discover(cfg, ["cpt"])
    assert [(c.name, c.path, c.tokens, c.last) for c in cks] == [
        ("step-00000000", final, 0, False), ("step-00000004", m, 512, True),
    ]  # fmt: skip


def test_a_run_from_a_hub_model_starts_its_curve_at_the_hub_snapshot(tree, tmp_path, monkeypatch, caplog):
    """GPU profiles: cpt-nve starts from the Hub base itself; its local snapshot is the step-0 point (the paper's
    Llama 2 column), fetched with local_files_only when the profile is offline; unavailable -> no point, a warning."""
    import huggingface_hub

    snap = tmp_path / "hub" / "snapshot"
    snap.mkdir(parents=True)
    calls = []

    def fake_snapshot(repo_id, allow_patterns=None, local_files_only=False):
        calls.append((repo_id, local_files_only))
        if repo_id != "org/base-7b":
            raise OSError("not in the cache")
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    runs = tmp_path / "runs"
    m = runs / PROFILE / "train" / "cpt" / "milestones" / "step-00000004"
    m.mkdir(parents=True)
    (m / "trainer_state.json").write_text(json.dumps({"step": 4, "tokens": 512}))
    with use_runs(runs):
        for hub_id, expect in (("org/base-7b", [("step-00000000", snap), ("step-00000004", m)]),
                               ("org/missing", [("step-00000004", m)])):  # fmt: skip
            cfg = load_config(write_config(tree["config"], tmp_path / f"{hub_id.replace('/', '_')}.yaml",
                                           lambda d, h=hub_id: d["train"]["runs"]["cpt"].update(init=h)))
            assert [(c.name, c.path) for c in harness.discover(cfg, ["cpt"])] == expect
    assert calls == [("org/base-7b", True), ("org/missing", True)]  # offline profile: the cache only
    assert "org/missing not available locally" in caplog.text


def test_retrained_weights_are_re_evaluated_and_identical_weights_reused(tree, tmp_path, monkeypatch):
    """Skip-if-done needs the same tasks *and* the same weights: a rewritten checkpoint is evaluated again. A
    checkpoint holding weights already evaluated in the call (a continued run's step 0 = its parent's last) reuses
    those results instead of running lm-eval twice."""
    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"], runs)
    calls = []

    def fake_eval(ck, cfg, task_dir, tm=None, *, limit=None, units=None, into=None, on_task=None):
        calls.append((ck.run, ck.name))
        res = into or {"results": {}, "samples": {}, "tasks": {}}
        for n in units:
            res["results"][n] = {"alias": n, "acc,none": 0.5}
            res["tasks"][n] = {"status": "ok"}
        return res

    monkeypatch.setattr(harness, "evaluate_checkpoint", fake_eval)
    base_ms = runs / PROFILE / "train" / "base" / "milestones" / "step-00000004"
    with use_runs(runs):
        cfg = load_config(write_config(tree["config"], tmp_path / "w.yaml",
                                       lambda d: d["eval"].update(runs=["base", "cpt"])))  # fmt: skip
        harness.run_eval(cfg)  # cpt has no checkpoints yet
        assert calls == [("base", "step-00000004")]
        harness.run_eval(cfg)  # nothing changed: skipped
        assert len(calls) == 1
        w = base_ms / "model.safetensors"
        os.utime(w, ns=(w.stat().st_atime_ns, w.stat().st_mtime_ns + 10**9))  # the run was retrained
        s = harness.run_eval(cfg)
        assert len(calls) == 2 and [(r, c) for r, c, _ in s["evaluated"]] == [("base", "step-00000004")]

        # base/final = the same weights as its last milestone (same run and step): cpt's step 0 reuses them.
        final = runs / PROFILE / "train" / "base" / "final"
        shutil.copytree(base_ms, final)
        cpt = runs / PROFILE / "train" / "cpt" / "milestones" / "step-00000002"
        shutil.copytree(base_ms, cpt)
        (cpt / "trainer_state.json").write_text(json.dumps({"run": "cpt", "step": 2, "tokens": 256}))
        s = harness.run_eval(cfg)
    assert calls[2:] == [("cpt", "step-00000002")]  # base skipped, cpt/step-0 reused, cpt's own milestone run
    reused = json.loads((runs / PROFILE / "eval" / "results" / "cpt" / "step-00000000.json").read_text())
    assert reused["swallow"]["run"] == "cpt" and reused["swallow"]["tokens"] == 0 and reused["results"]


# --- one task at a time: a failure is recorded, the other tasks kept, and only the failure retried

_BROKEN_YAML = """task: broken_task
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
process_docs: !function broken_utils.process_docs
doc_to_text: "{{{{question}}}}"
doc_to_target: 0
doc_to_choice: ["yes", "no"]
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""


def _task_dir_with(extra, monkeypatch):
    """lm-eval sees the generated local tasks plus the tasks in ``extra``, and not the 14,000-task registry."""
    from lm_eval.tasks import TaskManager

    def tm(task_dir=None, registry=True):
        return TaskManager(include_path=[str(p) for p in (task_dir, extra) if p], include_defaults=False)

    monkeypatch.setattr(harness, "task_manager", tm)


def test_a_failing_task_is_recorded_the_others_kept_and_only_it_retried(tree, tmp_path, monkeypatch, caplog):
    """A real lm-eval run: a harness task whose process_docs raises is recorded as failed with its error (one line),
    a WARNING names it, the checkpoint's other task keeps its results, the tables carry the failure; the next run
    retries that task alone, and once it works the checkpoint is complete and skipped."""
    import lm_eval

    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"], runs)
    extra = tmp_path / "extra_tasks"
    extra.mkdir()
    _write_jsonl(extra / "docs.jsonl", [{"question": f"q{i}"} for i in range(3)])
    (extra / "broken_task.yaml").write_text(_BROKEN_YAML.format(docs=extra / "docs.jsonl"), encoding="utf-8")
    utils = extra / "broken_utils.py"
    utils.write_text("def process_docs(dataset):\n    raise ValueError('boom:\\n  the documents are unreadable')\n")
    _task_dir_with(extra, monkeypatch)
    real, called = lm_eval.simple_evaluate, []

    def spy(*a, **kw):
        called.append(kw["tasks"][0])
        return real(*a, **kw)

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    out = runs / PROFILE / "eval" / "results" / "base" / "step-00000004.json"
    with use_runs(runs):
        cfg = load_config(write_config(tree["config"], tmp_path / "b.yaml", lambda d: d["eval"].update(
            runs=["base"], tasks=["bpb_ja"], harness_tasks={"broken_task": 0})))  # fmt: skip
        s1 = harness.run_eval(cfg)
        res = json.loads(out.read_text())
        df1 = harness.collect(PROFILE).query("run == 'base'")
        fails = report.failures(PROFILE).query("run == 'base'")  # (the tree may hold another test's broken run)
        s2 = harness.run_eval(cfg)
        assert called == ["swallow_bpb_ja", "broken_task", "broken_task"]  # the retry runs the failed task only
        assert json.loads(out.read_text())["results"]["swallow_bpb_ja"] == res["results"]["swallow_bpb_ja"]

        utils.write_text("def process_docs(dataset):\n    return dataset\n")  # the fix (a package installed, ...)
        s3 = harness.run_eval(cfg)
        s4 = harness.run_eval(cfg)
        fixed = json.loads(out.read_text())
        assert report.failures(PROFILE).query("run == 'base'").empty

    err = "ValueError: boom: the documents are unreadable"
    assert not s1["failed"] and s1["task_failures"] == [("base", "step-00000004", "broken_task", err)]
    assert [(r, c) for r, c, _ in s1["evaluated"]] == [("base", "step-00000004")]
    assert res["swallow"]["tasks"]["swallow_bpb_ja"] == {"status": "ok", "window_tokens": 32}  # train.seq_len
    assert res["swallow"]["bpb_protocol"]["window_tokens"] == 32
    assert res["swallow"]["tasks"]["broken_task"]["status"] == "failed"
    assert res["swallow"]["tasks"]["broken_task"]["error"] == err and "process_docs" in res["swallow"]["tasks"][
        "broken_task"]["traceback"]  # fmt: skip
    assert "broken_task" not in res["results"] and res["samples"]["swallow_bpb_ja"]
    assert set(df1.task) == {"bpb_ja"} and (df1.metric == "bits_per_byte").any()
    assert fails[["run", "checkpoint", "task", "error"]].values.tolist() == [
        ["base", "step-00000004", "broken_task", err]]  # fmt: skip
    assert fails.step.tolist() == [4] and fails.tokens.tolist() == [512]
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "broken_task FAILED" in r.getMessage()]
    assert len(warned) == 2  # one line per failure: the first run and the retry
    assert s2["task_failures"] == s1["task_failures"] and not s2["skipped"]
    assert not s3["task_failures"] and called[3:] == ["broken_task"]
    assert fixed["swallow"]["tasks"]["broken_task"] == {"status": "ok"} and "broken_task" in fixed["results"]
    assert fixed["results"]["swallow_bpb_ja"] == res["results"]["swallow_bpb_ja"]
    assert s4["skipped"] == [("base", "step-00000004")] and len(called) == 4


def test_a_crash_mid_checkpoint_keeps_the_finished_tasks(tree, tmp_path, monkeypatch):
    """Each task's results are on disk as soon as it finishes: a run killed during a later task (here: an exception
    lm-eval's caller cannot catch) loses only that task, and the next run does not repeat the finished ones."""
    import lm_eval

    runs = tmp_path / "runs"
    shutil.copytree(tree["runs"], runs)
    called = []

    class Killed(BaseException):
        pass

    def fake(*a, tasks, **kw):
        called.append(tasks[0])
        if tasks[0] == "swallow_bpb_en" and called.count("swallow_bpb_en") == 1:
            raise Killed
        return {"results": {tasks[0]: {"alias": tasks[0], "bits_per_byte,none": 1.5}}, "samples": {}}

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake)
    out = runs / PROFILE / "eval" / "results" / "base" / "step-00000004.json"
    with use_runs(runs):
        cfg = load_config(write_config(tree["config"], tmp_path / "c.yaml", lambda d: d["eval"].update(
            runs=["base"], tasks=["bpb_ja", "bpb_en"])))  # fmt: skip
        with pytest.raises(Killed):
            harness.run_eval(cfg)
        partial = json.loads(out.read_text())
        s = harness.run_eval(cfg)
    assert partial["swallow"]["tasks"] == {"swallow_bpb_ja": {"status": "ok", "window_tokens": 32}}
    assert called == ["swallow_bpb_ja", "swallow_bpb_en", "swallow_bpb_en"]
    assert not s["task_failures"] and set(json.loads(out.read_text())["results"]) == {"swallow_bpb_ja",
                                                                                     "swallow_bpb_en"}  # fmt: skip


# --- the task-loading check (preflight): offline, on temporary task directories; with the network, on the registry


def test_check_task_loading_offline(tmp_path):
    """A task whose utils import a missing package names the package; a script dataset, the fix; an unknown name is
    reported; a sound task gives no line, and a group one line for its bad members."""
    from lm_eval.tasks import TaskManager

    base = 'dataset_path: {path}\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: "{{{{q}}}}"\n' \
           'doc_to_target: 0\ndoc_to_choice: ["a", "b"]\n'  # fmt: skip
    (tmp_path / "needs_pkg.yaml").write_text("task: needs_pkg\nprocess_docs: !function needs_pkg_utils.go\n"
                                             + base.format(path="json"))  # fmt: skip
    (tmp_path / "needs_pkg_utils.py").write_text("import no_such_package_xyz\n\ndef go(d):\n    return d\n")
    (tmp_path / "script_ds.yaml").write_text("task: script_ds\ndataset_name: ja\n"
                                             + base.format(path="juletxara/mgsm"))  # fmt: skip
    (tmp_path / "sound.yaml").write_text("task: sound\n" + base.format(path="some-org/parquet-dataset"))
    (tmp_path / "grp.yaml").write_text("group: grp\ntask: [sound, needs_pkg]\n")
    tm = TaskManager(include_path=str(tmp_path), include_defaults=False)
    problems = harness.check_task_loading(["sound", "needs_pkg", "script_ds", "no_such_task_xyz", "grp"], tm,
                                          network=False)  # fmt: skip
    assert len(problems) == 4 and all("\n" not in p for p in problems)
    pkg, script, unknown, grp = problems
    assert pkg.startswith("needs_pkg: ") and "'no_such_package_xyz'" in pkg and "pip install no_such_package_xyz" in pkg
    assert script.startswith("script_ds: ") and "juletxara/mgsm is a loading script" in script
    assert "drop the task" in script
    assert unknown.startswith("no_such_task_xyz: not a task") and "lm-eval 0.4.13" in unknown
    assert grp.startswith("grp: needs_pkg: ") and "sound" not in grp


def test_gpu_profiles_tasks_import_offline():
    """The registry tasks the GPU profiles list import with the pinned packages (ja_leaderboard_xlsum: emoji,
    neologdn), and what is left is a dataset or metric problem, one line per task."""
    names = sorted({n for f in ("tinyllama-1.1b", "llama2-7b")
                    for n in load_config(paths.config_path(f)).eval.harness_tasks})  # fmt: skip
    assert "ja_leaderboard_mgsm" not in names  # every Japanese MGSM task reads a script dataset: left out
    problems = harness.check_task_loading(names, _registry(), network=False)
    assert not any(p.startswith("ja_leaderboard_xlsum") for p in problems), problems
    assert all("needs the package" not in p for p in problems), problems
    assert len(problems) == len({p.split(":")[0] for p in problems}) and {p.split(":")[0] for p in problems} <= set(
        names)  # fmt: skip


@pytest.mark.network
def test_check_task_loading_resolves_datasets_on_the_hub():
    """With the network: the datasets of sound tasks resolve (builder only, no download); a script dataset does not."""
    assert harness.check_task_loading(["ja_leaderboard_xlsum", "gsm8k", "hellaswag"], _registry(), network=True) == []
    [line] = harness.check_task_loading(["ja_leaderboard_jaqket_v2"], _registry(), network=True)
    assert "kumapo/JAQKET" in line and "does not load" in line
