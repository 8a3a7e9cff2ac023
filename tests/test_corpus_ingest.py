"""Stage 01's ingest step on `hub` and `local` sources: one task per data file, caps split over files, transient
failures retried, unreadable shards counted per source, and memory that does not hold the documents."""

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from swallowlib.config import CorpusConfig, ExecutorConfig, HubSource, LocalSource
from swallowlib.corpus import extract, pipeline
from swallowlib.procmem import TreePeak

PARA = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で泣いていた。"


INGEST = """
import json
from pathlib import Path
from swallowlib.config import CorpusConfig, ExecutorConfig, HubSource
from swallowlib.corpus import pipeline
hub = HubSource(name="web-ja", dataset="{root}", config="jpn_Jpan", language="ja", licence="test")
cc = CorpusConfig(sources=[], hub=[hub], executor=ExecutorConfig(workers=2, tasks=2))
rep = pipeline._ingest(cc, pipeline.input_units(cc, {{}}), Path("{work}"))
print(json.dumps(rep["raw_sizes"]["web-ja"]["ja"]["docs"]))
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _hub_layout(root, files, rows, text=lambda i, j: f"{PARA}{i}-{j}", extra=None):
    """A directory laid out like a Hub dataset repo: Parquet shards of one config + a README `configs:` block."""
    for i in range(files):
        shard = root / "data" / "jpn_Jpan" / "train" / f"{i:03d}.parquet"
        shard.parent.mkdir(parents=True, exist_ok=True)
        cols = {"id": [f"{i}-{j}" for j in range(rows)], "text": [text(i, j) for j in range(rows)]}
        pq.write_table(pa.table(cols), shard, row_group_size=2000)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: jpn_Jpan\n  data_files:\n  - split: train\n"
        "    path: data/jpn_Jpan/train/*.parquet\n---\n# test set\n", encoding="utf-8")  # fmt: skip
    return root


def _hub(root, **kw):
    return HubSource(**{"name": "web-ja", "dataset": str(root), "config": "jpn_Jpan", "language": "ja",
                        "licence": "test", **kw})  # fmt: skip


def _cc(hub=(), local=(), workers=1):
    return CorpusConfig(sources=[], hub=list(hub), local=list(local),
                        executor=ExecutorConfig(workers=workers, tasks=workers))  # fmt: skip


def _docs(work, lang="ja"):
    out = []
    for f in sorted((work / "ingest" / "docs" / lang).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            out += [json.loads(line) for line in fh]
    return out


def test_hub_caps_are_split_over_the_data_files(tmp_path):
    root = _hub_layout(tmp_path / "hub", files=3, rows=10)
    units = pipeline.input_units(_cc([_hub(root, max_docs=7)]), {})
    assert [u["max_docs"] for u in units] == [3, 2, 2] and len({u["file"] for u in units}) == 3
    rep = pipeline._ingest(_cc([_hub(root, max_docs=7)]), units, tmp_path / "work")
    assert rep["raw_sizes"]["web-ja"]["ja"]["docs"] == 7 == len(_docs(tmp_path / "work"))

    per_doc = len(extract.clean_text(f"{PARA}0-0"))
    cc = _cc([_hub(root, max_chars=3 * per_doc + 1)])
    units = pipeline.input_units(cc, {})
    assert [u["max_chars"] for u in units] == [per_doc + 1, per_doc, per_doc]
    rep = pipeline._ingest(cc, units, tmp_path / "work2")
    # a file stops once its share is reached: the first needs a second document to pass per_doc + 1 characters
    assert rep["raw_sizes"]["web-ja"]["ja"]["docs"] == 4


@pytest.mark.slow
def test_hub_source_at_100k_documents_streams_in_bounded_memory(tmp_path):
    """100,000 Hub documents (~200 MB of UTF-8) through the ingest step on two workers: every document arrives once,
    with its split, and the process tree's peak memory is the same as for 8× fewer documents (flat, not growing
    with the data)."""
    big = PARA * 13  # ~ 2 kB of UTF-8 per document
    peaks = {}
    for rows in (3_125, 25_000):
        root = _hub_layout(tmp_path / f"hub{rows}", files=4, rows=rows, text=lambda i, j: f"{big}{i}-{j}")
        # in a fresh process, so what this test process allocated to write the data is not part of the measure
        code = INGEST.format(root=str(root), work=str(tmp_path / f"work{rows}"))
        proc = subprocess.Popen([sys.executable, "-c", code],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        # a dense sampler: the smaller run lasts seconds, and a stretched period misses its peak (the baseline)
        with TreePeak(interval_s=0.02, pid=proc.pid, cost_factor=3) as mem:
            out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        assert json.loads(out.splitlines()[-1]) == 4 * rows
        peaks[rows] = mem.peak_mb
    assert 100_000 * len(big.encode()) / 1e6 > 190
    assert peaks[25_000] < 1.25 * peaks[3_125], peaks
    n = 0
    for f in sorted((tmp_path / "work25000" / "ingest" / "docs" / "ja").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                assert json.loads(line)["metadata"]["split"] in pipeline.SPLITS
                n += 1
    assert n == 100_000


def test_a_transient_failure_mid_stream_is_retried_without_losing_or_repeating_rows(tmp_path, monkeypatch):
    root = _hub_layout(tmp_path / "hub", files=1, rows=50)
    fmt, files = extract.hub_data_files(str(root), "jpn_Jpan", "train")
    real = extract._parquet_records
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        for i, rec in enumerate(real(*a, **k)):
            if i == 20 and calls["n"] == 1:
                raise ConnectionError("connection reset by peer")
            yield rec

    monkeypatch.setattr(extract, "_parquet_records", flaky)
    monkeypatch.setattr(extract.time, "sleep", lambda s: None)
    stats = extract.ExtractStats()
    docs = list(extract.read_hub(str(root), "jpn_Jpan", "train", "text", "ja", "web-ja", stats=stats,
                                 data_file=files[0], fmt=fmt))  # fmt: skip
    assert [d.id for d in docs] == [f"web-ja/ja/0-{j}" for j in range(50)]
    assert stats.notes["hub-retry"] == 1 and calls["n"] == 2


def test_a_failure_that_persists_fails_the_task_instead_of_a_partial_output(tmp_path, monkeypatch):
    root = _hub_layout(tmp_path / "hub", files=1, rows=5)
    fmt, files = extract.hub_data_files(str(root), "jpn_Jpan", "train")

    def down(*a, **k):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(extract, "_parquet_records", down)
    monkeypatch.setattr(extract.time, "sleep", lambda s: None)
    with pytest.raises(RuntimeError, match=r"000\.parquet: still failing after 4 retries .* rerun the stage"):
        list(extract.read_hub(str(root), "jpn_Jpan", "train", "text", "ja", "web-ja", data_file=files[0],
                              fmt=fmt))  # fmt: skip


def test_bad_shards_and_truncated_files_are_counted_per_source(tmp_path):
    root = _hub_layout(tmp_path / "hub", files=2, rows=30)
    good = (root / "data" / "jpn_Jpan" / "train" / "001.parquet").read_bytes()
    (root / "data" / "jpn_Jpan" / "train" / "001.parquet").write_bytes(good[: len(good) // 2])  # truncated
    extra = root / "data" / "jpn_Jpan" / "train" / "002.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": [PARA * 2, None]}), extra)  # a row without text
    local = tmp_path / "local"
    local.mkdir()
    (local / "cut.jsonl").write_bytes(b'{"text": "' + (PARA * 6).encode() + b'"}\n{"text": "trunc')
    cc = _cc([_hub(root)], [LocalSource(name="mine", path=str(local), language="ja", licence="test")])
    rep = pipeline._ingest(cc, pipeline.input_units(cc, {}), tmp_path / "work")
    web = rep["skipped_by_source"]["web-ja"]
    assert web["tasks"] == 3 and web["skipped"]["bad-shard"] == 1 and web["skipped"]["missing-field"] == 1
    assert rep["raw_sizes"]["web-ja"]["ja"]["docs"] == 31  # the intact file and the good row of the third
    mine = rep["skipped_by_source"]["mine"]
    assert mine["skipped"]["bad-json"] == 1 and rep["raw_sizes"]["mine"]["ja"]["docs"] == 1
