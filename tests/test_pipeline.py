"""Stage 01 end to end on `local` sources (no network, no archives): bad input is counted and skipped, legacy
encodings come out as the right text, filters and dedup run on datatrove, outputs are loadable and the stage is
skipped when nothing changed."""

import json
import random

import datasets
import pandas as pd
import pytest
import yaml

from swallowlib.config import load_config
from swallowlib.corpus import pipeline
from tests.samples import EN_SENTENCES, JA_SENTENCES


def _doc(pool, rng, n=18, sep=""):
    picked = rng.sample(pool, n)
    paras = [sep.join(picked[i : i + 3]) for i in range(0, n, 3)]
    return "\n\n".join(paras)


def _one_char_edit(text):
    i = len(text) // 2
    return text[:i] + ("ぬ" if text[i] != "ぬ" else "ね") + text[i + 1 :]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    ja, en = tmp / "ja", tmp / "en"
    ja.mkdir()
    en.mkdir()
    texts = {}
    for i in range(24):
        texts[f"doc{i:02d}.txt"] = _doc(JA_SENTENCES, rng)
        (ja / f"doc{i:02d}.txt").write_text(texts[f"doc{i:02d}.txt"], encoding="utf-8")
    # The same kind of document in legacy encodings: must come out as exactly this text.
    sjis_text, euc_text = _doc(JA_SENTENCES, rng), _doc(JA_SENTENCES, rng)
    (ja / "legacy_sjis.txt").write_bytes(sjis_text.encode("shift_jis"))
    (ja / "legacy_euc.txt").write_bytes(euc_text.encode("euc_jp"))
    # A near-duplicate (one character changed): MinHash must drop one of the two.
    near = _one_char_edit(texts["doc00.txt"])
    (ja / "near_dup.txt").write_text(near, encoding="utf-8")
    # Bad input: counted and skipped, never fatal.
    (ja / "empty.txt").write_bytes(b"")
    (ja / "nul.txt").write_bytes(b"\x00\x01\x02binary\x00" * 200)
    (ja / "broken.jsonl").write_bytes(b'{"text": "short"}\nnot json at all\n{"other": 1}\n')
    (ja / "short.txt").write_text("短すぎる文書です。", encoding="utf-8")  # removed by the min_chars rule
    for i in range(12):
        (en / f"doc{i:02d}.txt").write_text(_doc(EN_SENTENCES, rng, n=10, sep=" "), encoding="utf-8")

    cfg = {
        "profile": "pytest",
        "corpus": {
            "sources": [],
            "local": [
                {"name": "mine-ja", "path": str(ja), "language": "ja", "licence": "CC0 (test)"},
                {"name": "mine-en", "path": str(en), "language": "en", "licence": "CC0 (test)"},
            ],
            # Japanese: the technical rule set, which keeps these blank-line separated pages (swallow-v1, the paper's
            # rules, counts the blank lines as repeated paragraphs; it runs too, for the report's comparison).
            "filters": {
                "ja": {"rule_set": "technical"},
                "en": {
                    "rule_set": "technical",
                    "min_hiragana_frac": None,
                    "max_katakana_frac": None,
                    "min_japanese_frac": None,
                    "min_avg_sentence_chars": None,
                    "max_avg_sentence_chars": None,
                    "max_sentence_chars": None,
                },
            },
            "split": {"valid": 0.1, "test": 0.1},
            "executor": {"kind": "local", "workers": 1, "tasks": 1},
        },
    }
    cfg_path = tmp / "pytest.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    out = tmp / "out" / "corpus"
    pipeline.build_corpus(load_config(cfg_path), out=out)
    return {"out": out, "cfg_path": cfg_path, "sjis": sjis_text, "euc": euc_text, "texts": texts}


def _split(out, name, split):
    files = sorted((out / name / split).glob("*.parquet"))
    if not files:
        cols = ["id", "en", "ja"] if name == "parallel" else ["id", "text"]
        return pd.DataFrame(columns=[*cols, "source", "group", "meta"])
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _all(out, lang):
    return pd.concat([_split(out, lang, s) for s in pipeline.SPLITS], ignore_index=True)


def test_outputs_are_datasets_with_cards(built):
    out = built["out"]
    for name in ("ja", "en", "parallel"):
        for s in pipeline.SPLITS:
            assert (out / name / s).is_dir()
        assert (out / name / "README.md").is_file()
    files = sorted(str(f) for f in (out / "ja" / "train").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert {"id", "text", "source", "group", "meta"} <= set(ds.column_names)
    card = (out / "ja" / "README.md").read_text()
    assert "mine-ja" in card and "CC0 (test)" in card
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["fingerprint"] and prov["versions"]["datatrove"] and prov["config"]["profile"] == "pytest"
    assert not list(out.parent.glob("corpus.tmp*")) and not list(out.parent.glob("corpus.old*"))
    assert not (out.parent / "work" / "corpus").exists()  # intermediate files go once the output is published


def test_legacy_encodings_decode_exactly_and_bad_input_is_counted(built):
    df = _all(built["out"], "ja")
    texts = set(df["text"])
    assert built["sjis"] in texts and built["euc"] in texts  # NFKC leaves this text unchanged
    assert not any("\ufffd" in t for t in texts)
    report = json.loads((built["out"] / "report.json").read_text())
    skipped = json.dumps(report["skipped_inputs"])
    for reason in ("empty", "nul-bytes", "bad-json", "missing-field"):
        assert reason in skipped, reason


def test_filters_and_dedup_remove_what_they_should(built):
    report = json.loads((built["out"] / "report.json").read_text())
    df = _all(built["out"], "ja")
    assert not (df["text"].str.len() < 400).any()
    assert report["filters"]["ja"]["rules"]["min_chars"]["docs"] >= 2  # short.txt and the short jsonl line
    doc0 = built["texts"]["doc00.txt"]
    near = _one_char_edit(doc0)
    assert (doc0 in set(df["text"])) != (near in set(df["text"]))  # exactly one of the near-duplicates survives
    assert report["dedup"]["ja"]["docs_removed"] >= 1
    funnel = report["funnel"]["ja"]
    assert funnel[-1]["docs"] == len(df) == funnel[-2]["docs"]  # the funnel adds up to what was written
    paper = report["filters_paper"]["ja"]  # the paper's rules on the same documents, before NFKC
    assert (paper["rule_set"], paper["nfkc"]) == ("swallow-v1", "after rules")
    assert paper["docs_in"] == report["filters"]["ja"]["docs_in"]
    assert paper["rules"]["dup_line_frac"]["docs"] >= 24  # every blank-line separated page
    assert report["sizes"]["ja"]["train"]["docs"] + report["sizes"]["ja"]["valid"]["docs"] + report["sizes"]["ja"][
        "test"
    ]["docs"] == len(df)


def test_splits_follow_groups(built):
    df = _all(built["out"], "ja")
    for split in pipeline.SPLITS:
        part = _split(built["out"], "ja", split)
        for g in part["group"]:
            assert pipeline.split_of(g, 0.1, 0.1, 0) == split
    assert df["id"].is_unique


def test_rerun_is_a_no_op_and_config_change_reruns(built):
    cfg = load_config(built["cfg_path"])
    out = built["out"]
    before = (out / "report.json").stat().st_mtime_ns
    pipeline.build_corpus(cfg, out=out)
    assert (out / "report.json").stat().st_mtime_ns == before
    data = yaml.safe_load(built["cfg_path"].read_text())
    data["corpus"]["dedup"] = {"enabled": False}
    built["cfg_path"].write_text(yaml.safe_dump(data, allow_unicode=True))
    assert not pipeline.is_up_to_date(load_config(built["cfg_path"]), out)


def test_a_failing_stage_keeps_the_previous_output(built, monkeypatch):
    out = built["out"]
    before = (out / "report.json").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("filters crashed")

    monkeypatch.setattr(pipeline.filters, "run_quality_pipeline", boom)
    with pytest.raises(RuntimeError, match="filters crashed"):
        pipeline.build_corpus(load_config(built["cfg_path"]), force=True, out=out)
    assert (out / "report.json").read_bytes() == before
    assert not list(out.parent.glob("corpus.tmp*"))


def test_split_of_is_deterministic_and_proportional():
    groups = [f"g{i}" for i in range(20000)]
    splits = [pipeline.split_of(g, 0.02, 0.03, 0) for g in groups]
    assert splits == [pipeline.split_of(g, 0.02, 0.03, 0) for g in groups]
    assert abs(splits.count("test") / len(groups) - 0.03) < 0.005
    assert abs(splits.count("valid") / len(groups) - 0.02) < 0.005
    assert pipeline.split_of("g1", 0.02, 0.03, 1) in pipeline.SPLITS


def test_rebuild_gives_identical_datasets(built, tmp_path):
    """Same inputs and config, a second build from scratch: the same documents, splits and reports."""
    first = built["out"]
    cfg = load_config(built["cfg_path"])
    again = pipeline.build_corpus(cfg, force=True, out=tmp_path / "again" / "corpus")
    rebuilt_first = pipeline.build_corpus(cfg, force=True, out=first)
    for name in ("ja", "en", "parallel"):
        for s in pipeline.SPLITS:
            a = _split(rebuilt_first, name, s)
            b = _split(again, name, s)
            pd.testing.assert_frame_equal(a, b)
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (rebuilt_first, again))
    assert ra["funnel"] == rb["funnel"] and ra["sizes"] == rb["sizes"]


def _write_jsonl_source(d, rng, files, docs_per_file):
    d.mkdir(parents=True)
    for f in range(files):
        with open(d / f"part{f:02d}.jsonl", "w", encoding="utf-8") as fh:
            for _ in range(docs_per_file):
                fh.write(json.dumps({"text": _doc(JA_SENTENCES, rng, n=24)}, ensure_ascii=False) + "\n")


def _stage_cmd(cfg_path):
    import sys

    return [sys.executable, "-m", "swallowlib.corpus.pipeline", "--config", str(cfg_path)]


@pytest.mark.slow
def test_a_killed_stage_resumes_its_unfinished_tasks_and_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL stage 01 after some ingest tasks finished; the restart keeps their outputs, redoes the rest, and the
    published corpus equals one built without interruption."""
    import os
    import signal
    import subprocess
    import time

    _write_jsonl_source(tmp_path / "src", random.Random(1), files=6, docs_per_file=150)
    cfg = {
        "profile": "resume",
        "corpus": {
            "sources": [],
            "local": [{"name": "mine-ja", "path": str(tmp_path / "src"), "language": "ja", "licence": "CC0"}],
            # rules that keep these blank-line separated pages (swallow-v1 drops them all), so there is a corpus
            "filters": {"ja": {"rule_set": "technical"}},
            "compare_paper_filters": False,
            "split": {"valid": 0.1, "test": 0.1},
            "executor": {"kind": "local", "workers": 1, "tasks": 2},
        },
    }
    cfg_path = tmp_path / "resume.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "SWALLOW_RUNS": str(tmp_path / "killed")}
    done = tmp_path / "killed" / "resume" / "work" / "corpus" / "ingest" / "logs" / "completions"
    proc = subprocess.Popen(_stage_cmd(cfg_path), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (done.is_dir() and len(list(done.iterdir())) >= 2) and proc.poll() is None:
        assert time.monotonic() < deadline, "the stage never finished an ingest task"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in done.iterdir())
    assert 2 <= len(finished) < 6, finished  # killed part-way through the ingest step

    seen = {}
    real = pipeline.SourceReader.run

    def spy(self, data=None, rank=0, world_size=1):
        seen[rank] = True
        yield from real(self, data, rank, world_size)

    resumed_out = tmp_path / "killed" / "resume" / "corpus"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(pipeline.SourceReader, "run", spy)
    try:
        # the stage in this process, with the killed run's work directory (out= puts work/ beside it)
        pipeline.build_corpus(load_config(cfg_path), out=resumed_out)
    finally:
        monkeypatch.undo()
    assert sorted(f"{r:05d}" for r in seen) == sorted(set(f"{r:05d}" for r in range(6)) - set(finished))
    fresh_out = pipeline.build_corpus(load_config(cfg_path), out=tmp_path / "fresh" / "resume" / "corpus")
    for s in pipeline.SPLITS:
        pd.testing.assert_frame_equal(_split(resumed_out, "ja", s), _split(fresh_out, "ja", s))
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (resumed_out, fresh_out))
    assert ra["funnel"] == rb["funnel"] and ra["sizes"] == rb["sizes"] and ra["raw_sizes"] == rb["raw_sizes"]


def _built_on(built, tmp_path, executor, name):
    """The fixture's corpus built with ``executor`` and with the local executor, for comparison."""
    data = yaml.safe_load(built["cfg_path"].read_text())
    data["corpus"]["dedup"] = {"enabled": True}  # an earlier test may have switched it off in the shared config
    out = {}
    for kind, ex in (("local", {"kind": "local", "workers": 1, "tasks": 1}), (name, executor)):
        data["corpus"]["executor"] = ex
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        out[kind] = (load_config(path), tmp_path / kind / "corpus")
    return pipeline.build_corpus(out["local"][0], out=out["local"][1]), out[name]


def _assert_same_corpus(a, b):
    for name in ("ja", "en", "parallel"):
        for s in pipeline.SPLITS:
            assert sorted(p.name for p in (a / name / s).glob("*")) == sorted(p.name for p in (b / name / s).glob("*"))
            pd.testing.assert_frame_equal(_split(a, name, s), _split(b, name, s))
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    for key in ("raw_sizes", "funnel", "sizes", "decontamination", "skipped_inputs"):
        assert ra[key] == rb[key], key


@pytest.mark.exhaustive
@pytest.mark.ray
@pytest.mark.filterwarnings("ignore:placement_group:DeprecationWarning")
def test_the_stage_on_ray_equals_the_local_executor(built, tmp_path):
    """The whole stage (ingest, filters, MinHash, finalize) on a local Ray instance started here: the same
    documents in the same shards, the same counts, as the local executor. Exhaustive (``-m exhaustive``, not in
    ``make test``): a dozen pipelines, each placing its Ray tasks afresh; CI runs the shorter Ray chain of
    tests/test_executors.py."""
    ray = pytest.importorskip("ray")
    ray_ex = {"kind": "ray", "workers": 2, "tasks": 1, "options": {"mem_per_cpu_gb": 0.25}}
    local, (cfg, out) = _built_on(built, tmp_path, ray_ex, "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = pipeline.build_corpus(cfg, out=out)
    finally:
        ray.shutdown()
    _assert_same_corpus(local, on_ray)


@pytest.mark.exhaustive
@pytest.mark.slurm
def test_the_stage_on_slurm_equals_the_local_executor(built, tmp_path):
    """The whole stage submitted to a real Slurm cluster (``.ci/slurm-single-node.sh start`` makes one), each step
    waited for through its completion markers: the same corpus as the local executor. Exhaustive (``-m
    exhaustive``, not in ``make test``): each of the stage's dozen pipelines pays Slurm's scheduling and a Python
    start per task; CI runs the shorter chain of tests/test_executors.py on the same cluster."""
    import os

    partition = os.environ.get("SWALLOW_SLURM_PARTITION")
    if not partition:
        pytest.skip("no Slurm cluster: set SWALLOW_SLURM_PARTITION (.ci/slurm-single-node.sh starts one)")
    options = {"partition": partition, "time": "00:10:00", "mem_per_cpu_gb": 1, "wait_poll_s": 1,
               "wait_grace_s": 0, "wait_timeout_s": 600}  # fmt: skip
    local, (cfg, out) = _built_on(built, tmp_path, {"kind": "slurm", "workers": 2, "tasks": 1, "options": options},
                                  "slurm")  # fmt: skip
    _assert_same_corpus(local, pipeline.build_corpus(cfg, out=out))


def test_a_language_whose_documents_are_all_dropped_gives_empty_splits(tmp_path):
    """The paper's rules (swallow-v1) can drop every document of technical text: the stage still publishes, with
    empty Japanese splits and a funnel that ends at zero."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("短い文書です。\n\n" * 30, encoding="utf-8")  # blank lines repeat
    src = {"name": "mine-ja", "path": str(tmp_path / "src"), "language": "ja", "licence": "CC0"}
    cfg = {
        "profile": "dropped",
        "corpus": {"sources": [], "local": [src], "executor": {"kind": "local", "workers": 1, "tasks": 1}},
    }
    cfg_path = tmp_path / "dropped.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    out = pipeline.build_corpus(load_config(cfg_path), out=tmp_path / "out" / "corpus")
    report = json.loads((out / "report.json").read_text())
    assert report["filters"]["ja"]["rule_set"] == "swallow-v1" and report["filters"]["ja"]["docs_out"] == 0
    assert [report["sizes"]["ja"][s]["docs"] for s in pipeline.SPLITS] == [0, 0, 0]
    assert report["funnel"]["ja"][-1] == {"step": "final", "docs": 0, "chars": 0}
    assert all((out / "ja" / s).is_dir() for s in pipeline.SPLITS)
