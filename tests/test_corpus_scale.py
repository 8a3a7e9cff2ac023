"""The corpus-scaling benchmark's input generator (benchmarks/bench_corpus_scale.py) at a tiny size: its hostile
records are the ones it claims, its duplicates are copies of what they name, sizes share their blocks, and the same
seed writes the same bytes. Timings are the benchmark's business, not the test's."""

from __future__ import annotations

import importlib.util
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from swallowlib import paths
from swallowlib.corpus import extract
from tests.samples import EN_SENTENCES, JA_SENTENCES

N = 60  # records per language per block
PER_FILE = 25


def _module():
    spec = importlib.util.spec_from_file_location(
        "bench_corpus_scale", paths.ROOT / "benchmarks" / "bench_corpus_scale.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bcs = _module()


def _pool() -> dict[str, list[str]]:
    rng = random.Random(0)
    return {
        "ja": ["\n".join(rng.choice(JA_SENTENCES) for _ in range(12)) for _ in range(30)],
        "en": ["\n".join(rng.choice(EN_SENTENCES) for _ in range(12)) for _ in range(30)],
    }


@pytest.fixture(scope="module")
def sizes(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("scale")
    pool = _pool()
    for k in (1, 2):
        bcs.generate(root / f"x{k}", k, pool, docs_per_lang=N, docs_per_file=PER_FILE)
    return {k: root / f"x{k}" for k in (1, 2)}


def _lines(d: Path) -> list[tuple[str, bytes]]:
    return [(f.name, ln) for f in sorted(d.glob("*.jsonl")) for ln in f.read_bytes().split(b"\n") if ln]


def _records(d: Path) -> dict[str, dict]:
    out = {}
    for _, ln in _lines(d):
        try:
            r = orjson.loads(ln)
        except orjson.JSONDecodeError:
            continue
        out[r["id"]] = r
    return out


def _jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = ({s[i : i + n] for i in range(len(s) - n + 1)} for s in (a, b))
    return len(sa & sb) / len(sa | sb)


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_hostile_records(sizes, lang):
    d = sizes[2] / lang
    lines = _lines(d)
    assert len(lines) == 2 * N + 1  # two blocks and the truncated record
    recs = _records(d)
    kinds = Counter(r.get("kind") for r in recs.values())
    parseable = ("empty-text", "blank-text", "missing-text", "text-not-string", "long-line", "very-long-document")
    assert {k: kinds[k] for k in parseable} == dict.fromkeys(parseable, 2)
    unparsed = [ln for _, ln in lines if not _parses(ln)]
    # binary, invalid UTF-8 (well-formed JSON around bytes orjson refuses), not JSON per block; the truncated record
    assert len(unparsed) == 2 * 3 + 1
    assert sum(1 for ln in unparsed if not _utf8(ln)) >= 4  # the binary and invalid-UTF-8 lines
    assert not any(orjson.loads(ln).get("text") for _, ln in lines if b'"empty-text"' in ln)
    assert all("text" not in r for r in recs.values() if r["kind"] == "missing-text")
    assert all(len(r["text"]) > 100_000 for r in recs.values() if r["kind"] in ("long-line", "very-long-document"))
    last = sorted(d.glob("*.jsonl"))[-1].read_bytes()
    assert not last.endswith(b"\n") and not _parses(last.rsplit(b"\n", 1)[-1])


def _parses(ln: bytes) -> bool:
    try:
        orjson.loads(ln)
    except orjson.JSONDecodeError:
        return False
    return True


def _utf8(ln: bytes) -> bool:
    try:
        ln.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_duplicates_and_ids(sizes, lang):
    d = sizes[2] / lang
    recs = _records(d)
    ids = [r["id"] for r in recs.values()]
    assert len(ids) == len(set(ids))
    kinds = Counter(r["kind"] for r in recs.values())
    near, exact = round(N * bcs.NEAR_FRAC), round(N * bcs.EXACT_FRAC)
    assert kinds["near-duplicate"] == 2 * near and kinds["exact-duplicate"] == 2 * exact
    assert kinds["unique"] == 2 * (N - near - exact - len(bcs.HOSTILE))
    for r in recs.values():
        if r["kind"] == "exact-duplicate":
            assert r["text"] == recs[r["copy_of"]]["text"] and recs[r["copy_of"]]["kind"] == "unique"
        if r["kind"] == "near-duplicate":
            src = recs[r["copy_of"]]["text"]
            assert r["text"] != src and _jaccard(r["text"], src) >= 0.85
    # unique documents are remixes, not copies of each other
    uniq = [r["text"] for r in recs.values() if r["kind"] == "unique"]
    assert len(set(uniq)) == len(uniq)
    man = orjson.loads((sizes[2] / "manifest.json").read_bytes())["counts"][lang]
    assert man["records"] == 2 * N + 1 and man["near_duplicate"] == 2 * near and man["files"] == len(list(d.glob("*")))


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_extractor_skips_every_hostile_record(sizes, lang):
    stats = extract.ExtractStats()
    docs = list(extract.read_local(sizes[2] / lang, lang, f"bench-{lang}", stats=stats))
    man = orjson.loads((sizes[2] / "manifest.json").read_bytes())["counts"][lang]
    readable = man["unique"] + man["near_duplicate"] + man["exact_duplicate"] + man["hostile"]["very-long-document"]
    assert len(docs) == readable
    assert sum(stats.as_dict()["skipped"].values()) == man["records"] - readable


def test_sizes_share_blocks_and_generation_is_deterministic(sizes, tmp_path):
    for lang in ("ja", "en"):
        one, two = (sorted((sizes[k] / lang).glob("*.jsonl")) for k in (1, 2))
        block0 = [f for f in two if f.name.startswith("000-")]
        assert [f.name for f in one] == [f.name for f in block0]
        for a, b in zip(one[:-1], block0[:-1], strict=True):
            assert a.read_bytes() == b.read_bytes()
        assert one[-1].read_bytes().startswith(block0[-1].read_bytes())  # plus the truncated record
    again = tmp_path / "x2"
    bcs.generate(again, 2, _pool(), docs_per_lang=N, docs_per_file=PER_FILE)
    for f in sorted(sizes[2].rglob("*.jsonl")):
        assert (again / f.relative_to(sizes[2])).read_bytes() == f.read_bytes()
    stamp = (sizes[2] / "manifest.json").stat().st_mtime_ns
    bcs.generate(sizes[2], 2, _pool(), docs_per_lang=N, docs_per_file=PER_FILE)  # same parameters: left alone
    assert (sizes[2] / "manifest.json").stat().st_mtime_ns == stamp


def test_targets_are_computed_from_the_measurements():
    def m(wall, peak):
        return {"wall_s": wall, "cpu_s": wall, "peak_mb": peak, "peak_processes": 3}

    def size(k, wall, peak):
        return {"records": 100 * k, "chars": 1000 * k,
                "stage01": {**m(wall, peak), "ja_train_chars": 500 * k, "report_peak_mb": peak,
                            "report_peak_processes": 3, "kept_docs": {},
                            "ja_train_shards": 2},
                "sample": m(wall / 10, 100), "tokenise": m(wall / 2, 200)}  # fmt: skip

    workers = {w: {"wall_s": t, "cpu_s": 18.0, "load": 1.0} for w, t in ((1, 18.0), (2, 10.0))}
    results = {"sizes": {1: size(1, 10.0, 400.0), 4: size(4, 30.0, 600.0)}, "workers": {1: workers},
               "workers_compared": {"size": 1, "workers": 2, "tasks": 2}}  # fmt: skip
    got = {t["name"]: t for t in bcs.targets(results)}
    mem = got["stage 01: peak memory 4x / 1x <= 1.25"]
    assert mem["value"] == pytest.approx(1.5) and not mem["pass"]
    assert got["stage 01: chars/s 4x / 1x >= 1.0"]["pass"]  # 4x the characters in 3x the time
    assert got["stage 02 sampling: peak memory 4x / 1x <= 1.25"]["pass"]
    assert got["stage 01 at 1x: 2 workers vs 1 (tasks 2) >= 1.6x"]["value"] == pytest.approx(1.8)
    text = bcs.table(results)
    assert "FAIL  stage 01: peak memory 4x / 1x <= 1.25: 1.50" in text and "PASS  stage 01 at 1x" in text
    rows = bcs.rows_of(results)
    assert {r["metric"] for r in rows if r["benchmark"] == "corpus_scale.target"} == {"PASS", "FAIL"}
