"""Stage 01 benchmarks: throughput of extraction, filters, dedup and decontamination, each against a baseline
measured in the same process; plus the whole stage's wall time and peak memory per profile.

Inputs are a profile's own intermediate files (``SWALLOW_BENCH_PROFILE``, set by ``make bench PROFILE=…``; the
corpus is built first when missing), so numbers are on real text at that profile's scale.
Run through ``make bench`` / ``python -m swallowlib.bench --profile tiny corpus.<name>``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from swallowlib import paths
from swallowlib.bench import PROFILE, row
from swallowlib.config import ExecutorConfig, load_config
from swallowlib.corpus import decontam, dedup, extract, filters, pipeline

N_EVAL = 2000  # eval texts in the decontamination benchmark


def _smoke_raw() -> Path:
    """The benchmark profile's documents as stage 01's ingest step writes them (``<dir>/<lang>/*.jsonl.gz``, before
    any filter), made once under ``runs/bench/`` (the stage itself removes its work directory when it finishes)."""
    cfg = load_config(PROFILE)
    work = paths.RUNS / "bench" / f"corpus-ingest-{PROFILE}"
    done = work / "DONE"
    if not done.is_file() or done.read_text() != pipeline.corpus_fingerprint(cfg):
        shutil.rmtree(work, ignore_errors=True)
        pipeline.ingest(cfg, work)
        done.write_text(pipeline.corpus_fingerprint(cfg))
    return work / "ingest" / "docs"


def _texts(d: Path) -> list[str]:
    out = []
    for p in sorted(d.rglob("*.jsonl.gz")):
        with gzip.open(p, "rb") as f:
            out.extend(orjson.loads(line)["text"] for line in f if line.strip())
    return out


def bench_filters() -> list[dict]:
    """All Swallow rules on the raw Japanese smoke documents: a plain Python loop over the rule functions
    (baseline) vs the datatrove pipeline with 1 and 2 local workers (same rules, plus JSONL I/O)."""
    raw = _smoke_raw()
    texts = _texts(raw / "ja")
    chars = sum(map(len, texts))
    qcfg = load_config(PROFILE).corpus.filters["ja"]
    rows = []
    t0 = time.perf_counter()
    for t in texts:
        filters.rule_values(t, qcfg, "ja")
    rows.append(
        row(
            "corpus.filters",
            "python loop, all rules",
            "chars/s",
            chars / (time.perf_counter() - t0),
            "chars/s",
            baseline=True,
        )
    )
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            filters.run_quality_pipeline(
                raw / "ja",
                Path(tmp) / "out",
                "ja",
                qcfg,
                True,
                Path(tmp) / "w",
                ExecutorConfig(workers=workers, tasks=workers),
            )
            dt = time.perf_counter() - t0
        rows.append(row("corpus.filters", f"datatrove, {workers} worker(s)", "chars/s", chars / dt, "chars/s"))
    return rows


def bench_dedup() -> list[dict]:
    """MinHash dedup (character 5-grams, 40×20) over the raw English smoke documents: 1 vs 2 local workers."""
    src = _smoke_raw() / "en"
    chars = sum(map(len, _texts(src)))
    cfg = load_config(PROFILE).corpus.dedup
    rows = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            dedup.run_dedup(
                src, Path(tmp) / "out", Path(tmp) / "w", cfg, ExecutorConfig(workers=workers, tasks=workers), None
            )
            dt = time.perf_counter() - t0
        rows.append(
            row(
                "corpus.dedup",
                f"datatrove minhash, {workers} worker(s)",
                "chars/s",
                chars / dt,
                "chars/s",
                baseline=workers == 1,
            )
        )
    return rows


def bench_decontam() -> list[dict]:
    """Exact+near contamination check of the smoke eval candidates against all training text: the project's
    indexed check vs a naive baseline (normalised substring search of every eval text in every training text,
    exact only) on the same eval texts."""
    raw = _smoke_raw()
    train = _texts(raw / "ja") + _texts(raw / "en")
    out = paths.corpus_dir(PROFILE)
    evals = []
    for name in ("parallel", "synopsis", "faq"):
        for line in (out / "eval" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            evals.extend(v for k, v in r.items() if k in ("en", "ja", "synopsis", "description", "question", "answer"))
    evals = evals[:N_EVAL]
    cfg = load_config(PROFILE).corpus.decontam
    train_chars = sum(map(len, train))
    t0 = time.perf_counter()
    norm_train = [decontam.normalise(t) for t in train]
    naive = [any(decontam.normalise(e) in t for t in norm_train) for e in evals]
    dt_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = decontam.find_contamination(evals, train, cfg)
    dt = time.perf_counter() - t0
    # By definition an eval text shorter than cfg.min_chars counts as exact only when it equals a whole training
    # line/sentence ("はい" is inside everything); the naive scan flags it anyway. Count the two kinds apart.
    missed = [e for e, n, g in zip(evals, naive, got, strict=True) if n and g is None]
    short = sum(1 for e in missed if len(decontam.normalise(e)) < cfg.min_chars)
    return [
        row("corpus.decontam", f"{len(evals)} eval texts vs {train_chars / 1e6:.1f}M training chars", "setup", 0, "-"),
        row(
            "corpus.decontam",
            "naive substring scan (exact only)",
            "eval texts/s",
            len(evals) / dt_naive,
            "texts/s",
            baseline=True,
        ),
        row("corpus.decontam", "indexed exact + MinHash near", "eval texts/s", len(evals) / dt, "texts/s"),
        row("corpus.decontam", "indexed exact + MinHash near", "training chars/s", train_chars / dt, "chars/s"),
        row("corpus.decontam", f"naive-only hits, eval text < {cfg.min_chars} chars", "count", short, "texts"),
        row(
            "corpus.decontam",
            f"naive-only hits, eval text >= {cfg.min_chars} chars",
            "count",
            len(missed) - short,
            "texts",
        ),
    ]


def bench_extract() -> list[dict]:
    """Man-page extraction (manpages-ja): groff rendering (what the stage uses) vs the pure-Python roff stripper
    (baseline, the fallback when groff is missing), over the first 200 pages."""
    cfg = load_config(PROFILE)
    from swallowlib.corpus import fetch
    from swallowlib.corpus.sources import CATALOGUE

    roots = {a.name: fetch.unpack(fetch.fetch(a)) for a in CATALOGUE["manpages-ja"].archives}
    pages = sorted((roots["manpages-ja"] / "usr/share/man/ja").rglob("*.gz"))
    pages = [p for p in pages if not p.is_symlink()][:200]
    srcs = [gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in pages]
    rows = []
    t0 = time.perf_counter()
    n = sum(len(extract.strip_roff(s)) for s in srcs)
    rows.append(
        row(
            "corpus.extract",
            "python roff stripper",
            "pages/s",
            len(srcs) / (time.perf_counter() - t0),
            "pages/s",
            baseline=True,
        )
    )
    t0 = time.perf_counter()
    n = sum(len(extract.render_roff(s)) for s in srcs)
    dt = time.perf_counter() - t0
    rows.append(row("corpus.extract", "groff render", "pages/s", len(srcs) / dt, "pages/s"))
    rows.append(row("corpus.extract", "groff render", "output chars/s", n / dt, "chars/s"))
    del cfg
    return rows


def bench_stage() -> list[dict]:
    """The whole corpus stage per profile, from its own report (wall time, peak memory summed over the stage's
    process tree) — run `make corpus` first."""
    rows = []
    for profile in ("smoke", "tiny"):
        p = paths.corpus_dir(profile) / "report.json"
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        rows.append(row("corpus.stage", profile, "wall time", r["timings_s"]["total"], "s"))
        rows.append(row("corpus.stage", profile, "peak memory, process tree", r["peak_memory_mb"], "MB"))
        ja = r["sizes"]["ja"]
        rows.append(
            row(
                "corpus.stage",
                profile,
                "JA chars kept",
                sum(ja[s]["chars"] for s in ("train", "valid", "test")),
                "chars",
            )
        )
    return rows


BENCHMARKS = [bench_extract, bench_filters, bench_dedup, bench_decontam, bench_stage]
