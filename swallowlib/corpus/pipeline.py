"""Stage 01 end to end, streamed: fetch → ingest (extract/align/read) → quality rules → MinHash → decontaminate →
write sharded splits. No step holds the corpus, or a list of its documents, in memory.

    python -m swallowlib.corpus.pipeline --config configs/tiny.yaml          # skips when up to date
    python -m swallowlib.corpus.pipeline --config configs/smoke.yaml --force

Every step is a datatrove pipeline run on the configured executor (``corpus.executor``: local, Ray or Slurm):

1. **ingest** — one task per input unit (a catalogue source, a file of a ``local`` source, a data file of a ``hub``
   source): documents are extracted and cleaned, tagged with their split (a hash of their group, so no global view
   is needed) and written as gzipped JSONL shards per language; aligned pairs and evaluation material (small,
   catalogue-only) go to per-task side files; each task writes its own counts (documents, characters, skips).
2. **filter** — the quality rules per language (:mod:`~swallowlib.corpus.filters`), one exclusion folder per rule.
3. **dedup** — datatrove's four MinHash stages on character shingles (:mod:`~swallowlib.corpus.dedup`).
4. **finalize** — each task streams its documents past an index of the *evaluation* texts (small), counts its
   documents per split and source, and writes Parquet shards per split.

Intermediate state lives in ``runs/<profile>/work/corpus/`` under the fingerprint of the config and code
(:class:`~swallowlib.stage.Stage`): a killed run restarted with the same inputs redoes only the tasks that had not
finished (datatrove's completion markers); other inputs start afresh.

Outputs (``runs/<profile>/corpus/``, replaced atomically as a whole when the stage finishes):

- ``ja/``, ``en/``: monolingual documents, ``{train,valid,test}/*.parquet`` shards (columns id, text, source,
  group, meta) + ``README.md`` (data card);
- ``parallel/``: aligned pairs, ``{train,valid,test}/*.parquet`` + data card; parallel text is never in ``ja``/``en``;
- ``eval/``: ``faq.jsonl``, ``synopsis.jsonl``, ``parallel.jsonl`` — decontaminated against every training split;
- ``manifest.json`` (every archive: name, version, sha256), ``report.json`` (sizes, per-filter table with examples,
  funnel, skipped-input counts, decontamination counts, wall time, process-tree peak memory), ``provenance.json``.

Every split is a deterministic function of the document's ``group`` (see ``records.py``), so a page and its
translation always land in the same split.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document as DTDocument
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

from swallowlib import paths
from swallowlib.config import (
    Config,
    CorpusConfig,
    DecontamConfig,
    QualityFilters,
    apply_environment,
    default_filters,
    load_config,
    to_dict,
)
from swallowlib.corpus import align, card, decontam, dedup, evalmaterial, extract, fetch, filters
from swallowlib.corpus.executors import make_executor, run_pipelines
from swallowlib.corpus.records import Document
from swallowlib.corpus.sources import CATALOGUE
from swallowlib.provenance import stage_cli, write_json_atomic, write_text_atomic
from swallowlib.stage import Stage

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
LANGS = ("ja", "en")
DOC_SCHEMA = pa.schema([(c, pa.string()) for c in ("id", "text", "source", "group", "meta")])
PAIR_SCHEMA = pa.schema([(c, pa.string()) for c in ("id", "en", "ja", "source", "group", "meta")])
#: A finalize task starts a new Parquet file past this size, so a file never holds a whole large corpus.
MAX_SHARD_BYTES = 1 << 30


# --------------------------------------------------------------------------------------------------------------
# Splits


def split_of(group: str, valid: float, test: float, seed: int = 0) -> str:
    """Deterministic split of a group: a hash of (seed, group) mapped to [0, 1).

    >>> split_of("man:clone.2", 0.0, 0.0)
    'train'
    """
    h = hashlib.blake2b(f"{seed}\x00{group}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2**64
    if u < test:
        return "test"
    if u < test + valid:
        return "valid"
    return "train"


def _cap(items: list, n: int | None, key) -> list:
    """Keep ``n`` items spread over the source (lowest hash of their key), in their original order."""
    if n is None or len(items) <= n:
        return items
    keep = set(sorted(range(len(items)), key=lambda i: hashlib.md5(key(items[i]).encode()).digest())[:n])
    return [x for i, x in enumerate(items) if i in keep]


def _take_per_lang(docs: Iterable[Document], n: int | None, langs: tuple[str, ...]) -> Iterator[Document]:
    """The first ``n`` documents of each language, stopping extraction as soon as every language has them.

    Used by capped profiles (smoke) so that extraction does not render a whole source to keep a slice of it.
    """
    count: Counter[str] = Counter()
    for d in docs:
        if n is None or count[d.lang] < n:
            count[d.lang] += 1
            yield d
        if n is not None and langs and all(count[lang] >= n for lang in langs):
            return


def _quota(total: int | None, parts: int, i: int) -> int | None:
    """Part ``i`` of ``total`` split as evenly as possible over ``parts`` (the first ``total % parts`` get one more).

    >>> [_quota(10, 4, i) for i in range(4)]
    [3, 3, 2, 2]
    """
    if total is None:
        return None
    return total // parts + (1 if i < total % parts else 0)


# --------------------------------------------------------------------------------------------------------------
# Step 1: ingest — one datatrove task per input unit


def input_units(cc: CorpusConfig, roots: dict[str, dict[str, Path]]) -> list[dict[str, Any]]:
    """The ingest tasks of a corpus config, in a fixed order: catalogue sources, local files, hub data files.

    A hub source's ``max_docs``/``max_chars`` are split evenly over its data files, so its files are read in
    parallel and the cap needs no coordination between tasks.
    """
    units: list[dict[str, Any]] = [
        {"kind": "catalogue", "source": name, "roots": {k: str(v) for k, v in roots[name].items()}}
        for name in cc.sources
    ]
    for ls in cc.local:
        base, files = extract.local_files(Path(ls.path), ls.name)
        units += [
            {"kind": "local", "source": ls.name, "lang": ls.language, "file": str(f), "base": str(base),
             "text_field": ls.text_field}
            for f in files
        ]
    for hs in cc.hub:
        fmt, files = extract.hub_data_files(hs.dataset, hs.config, hs.split)
        units += [
            {"kind": "hub", "source": hs.name, "lang": hs.language, "dataset": hs.dataset, "config": hs.config,
             "split": hs.split, "text_field": hs.text_field, "file": f, "fmt": fmt,
             "max_docs": _quota(hs.max_docs, len(files), i), "max_chars": _quota(hs.max_chars, len(files), i)}
            for i, f in enumerate(files)
        ]
    return units


def _gz_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Rows as gzipped JSONL, written to a temporary name and renamed (a killed task leaves no partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with gzip.open(tmp, "wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
            n += 1
    os.replace(tmp, path)
    return n


def _read_gz_jsonl(files: Iterable[Path]) -> Iterator[dict]:
    for p in files:
        with gzip.open(p, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)


class SourceReader(PipelineStep):
    """datatrove reader of the ingest step: task ``rank`` reads input unit ``rank`` (see :func:`input_units`).

    Yields monolingual documents (metadata: source, group, lang, split, meta); writes the unit's aligned pairs,
    evaluation material and counts to ``side_dir/{pairs,eval,stats}/<rank>`` itself, atomically, when done.
    """

    name = "📥 swallow sources"
    type = "📖 - READER"

    def __init__(self, units: list[dict[str, Any]], cc: CorpusConfig, side_dir: str):
        super().__init__()
        self.units, self.cc, self.side_dir = units, cc, Path(side_dir)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        unit = self.units[rank]
        sp = self.cc.split
        xstats, astats = extract.ExtractStats(), align.AlignStats()
        raw: dict[str, dict[str, int]] = defaultdict(lambda: {"docs": 0, "chars": 0})
        pairs: list[dict] = []
        evals: list[dict] = []
        for d in self._documents(unit, xstats, astats, pairs, evals):
            raw[d.lang]["docs"] += 1
            raw[d.lang]["chars"] += len(d.text)
            self.stat_update("documents")
            split = split_of(d.group, sp.valid, sp.test, sp.seed)
            yield DTDocument(
                text=d.text,
                id=d.id,
                metadata={"source": d.source, "group": d.group, "lang": d.lang, "split": split, "meta": d.meta},
            )
        tag = f"{rank:05d}"
        _gz_jsonl(self.side_dir / "pairs" / f"{tag}.jsonl.gz", pairs)
        _gz_jsonl(self.side_dir / "eval" / f"{tag}.jsonl.gz", evals)
        stats = {"source": unit["source"], "raw": dict(raw), "extract": xstats.as_dict(), "align": astats.as_dict()}
        if pairs:
            stats["raw"]["pairs"] = {
                "pairs": len(pairs),
                "chars_en": sum(len(p["en"]) for p in pairs),
                "chars_ja": sum(len(p["ja"]) for p in pairs),
            }
        write_json_atomic(self.side_dir / "stats" / f"{tag}.json", stats)

    def _documents(self, unit, xstats, astats, pairs: list, evals: list) -> Iterator[Document]:
        kind, name = unit["kind"], unit["source"]
        if kind == "local":
            yield from extract.read_local_file(
                Path(unit["file"]), Path(unit["base"]), unit["lang"], name, unit["text_field"], xstats
            )
        elif kind == "hub":
            yield from extract.read_hub(
                unit["dataset"], unit["config"], unit["split"], unit["text_field"], unit["lang"], name,
                unit["max_docs"], xstats, data_file=unit["file"], fmt=unit["fmt"], max_chars=unit["max_chars"],
            )
        else:
            # A catalogue source: bounded (a few archives), so its pairs and eval items may be held per task.
            cc, roots = self.cc, {k: Path(v) for k, v in unit["roots"].items()}
            role = "eval" if name in cc.eval_sources else "parallel" if name in cc.parallel_sources else "mono"
            if role == "parallel":
                pairs += [p.to_json() for p in _cap(list(align.align_pairs(name, roots, astats)),
                                                    cc.max_pairs_per_source, lambda p: p.id)]
            if name == "debian-faq" and cc.eval.faq:
                evals += [{"kind": "faq", **it} for it in evalmaterial.faq_qa(roots)]
            if name == "ddtp" and cc.eval.synopsis_pairs:
                evals += [{"kind": "synopsis", **s} for lang in LANGS for s in evalmaterial.ddtp_synopsis(roots, lang)]
            if role == "mono" and CATALOGUE[name].languages:
                yield from _take_per_lang(
                    extract.extract_documents(name, roots, xstats), cc.max_docs_per_source, CATALOGUE[name].languages
                )


def _ingest(cc: CorpusConfig, units: list[dict], work: Path) -> dict[str, Any]:
    """Run the ingest step; return raw sizes and skip counts summed from its tasks' own counts."""
    ingest = work / "ingest"
    pipeline = [
        SourceReader(units, cc, str(ingest)),
        JsonlWriter(str(ingest / "docs"), output_filename="${lang}/${rank}.jsonl.gz"),
    ]
    run_pipelines([make_executor(pipeline, cc.executor, ingest / "logs", tasks=len(units))], cc.executor)
    raw_sizes: dict[str, dict[str, dict[str, int]]] = {u["source"]: {} for u in units}
    skipped: dict[str, dict] = {"extract": {}, "align": {}}
    by_source: dict[str, dict] = {}
    for f in sorted((ingest / "stats").glob("*.json")):
        st = json.loads(f.read_text())
        for key, v in st["raw"].items():
            acc = raw_sizes[st["source"]].setdefault(key, {})
            _add_counts(acc, v)
        _add_counts(skipped["extract"], st["extract"])
        _add_counts(skipped["align"], st["align"])
        mine = by_source.setdefault(st["source"], {"tasks": 0})
        mine["tasks"] += 1
        _add_counts(mine, {k: st["extract"][k] for k in ("skipped", "notes")})
    return {"raw_sizes": raw_sizes, "skipped_inputs": skipped, "skipped_by_source": by_source}


# --------------------------------------------------------------------------------------------------------------
# Step 4: finalize — decontamination scan, per-split counts, Parquet shards


def _doc_row(self, doc: DTDocument) -> dict:
    """ParquetWriter adapter: a document as the output columns."""
    m = doc.metadata
    return {"id": doc.id, "text": doc.text, "source": m["source"], "group": m["group"],
            "meta": json.dumps(m.get("meta") or {}, ensure_ascii=False, sort_keys=True)}


class FinalizeStep(PipelineStep):
    """Counts documents per split and source, streams training documents past the evaluation index
    (:func:`swallowlib.corpus.decontam.find_contamination`'s scanner) and passes every document on to the writer.

    Writes ``<side_dir>/{stats,decontam}/<rank>.json`` atomically when its task's documents are exhausted.
    """

    name = "🧾 swallow finalize"
    type = "🔢 - STATS"

    def __init__(self, eval_texts_path: str, dc: DecontamConfig, side_dir: str):
        super().__init__()
        self.eval_texts_path, self.dc, self.side_dir = eval_texts_path, dc, Path(side_dir)

    def run(self, data, rank: int = 0, world_size: int = 1):
        evals = json.loads(Path(self.eval_texts_path).read_text(encoding="utf-8"))
        scanner = decontam.Scanner(evals, self.dc)
        sizes: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
        for doc in data:
            m = doc.metadata
            c = sizes[m["split"]].setdefault(m["source"], {"docs": 0, "chars": 0})
            c["docs"] += 1
            c["chars"] += len(doc.text)
            if m["split"] == "train":
                scanner.add(doc.text)
            yield doc
        tag = f"{rank:05d}"
        write_json_atomic(self.side_dir / "stats" / f"{tag}.json", sizes)
        write_json_atomic(self.side_dir / "decontam" / f"{tag}.json", scanner.finish())


def _finalize(lang: str, kept_dir: Path, evals_path: Path, cc: CorpusConfig, work: Path) -> dict[str, Any]:
    """Run the finalize step of one language; return its sizes and decontamination labels (summed over tasks)."""
    fin = work / "final" / lang
    pipeline = [
        filters.SafeJsonlReader(str(kept_dir)),
        FinalizeStep(str(evals_path), cc.decontam, str(fin)),
        ParquetWriter(str(fin / "out"), output_filename="${split}/${rank}.parquet", adapter=_doc_row,
                      schema=DOC_SCHEMA, max_file_size=MAX_SHARD_BYTES),
    ]
    run_pipelines([make_executor(pipeline, cc.executor, fin / "logs")], cc.executor)
    sizes: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    labels: list[str | None] | None = None
    for f in sorted((fin / "stats").glob("*.json")):
        for s, by_src in json.loads(f.read_text()).items():
            for src, v in by_src.items():
                _add_counts(sizes[s].setdefault(src, {}), v)
    for f in sorted((fin / "decontam").glob("*.json")):
        labels = decontam.worst(labels, json.loads(f.read_text()))
    return {"sizes": sizes, "labels": labels, "out": fin / "out"}


# --------------------------------------------------------------------------------------------------------------
# Parallel pairs and evaluation sets (catalogue material: bounded, small)


def _pairs(work: Path, split) -> Iterator[dict]:
    """Unique aligned pairs in ingest order (first occurrence of each (en, ja)), with their split."""
    seen: set[bytes] = set()  # 16-byte digests: the pairs come from the fixed catalogue, not from Hub sources
    for p in _read_gz_jsonl(sorted((work / "ingest" / "pairs").glob("*.jsonl.gz"))):
        key = hashlib.blake2b(f"{p['en']}\x00{p['ja']}".encode(), digest_size=16).digest()
        if key in seen:
            continue
        seen.add(key)
        yield {"id": p["id"], "en": p["en"], "ja": p["ja"], "source": p["source"], "group": p["group"],
               "split": split(p["group"]), "meta": json.dumps(p.get("meta") or {}, ensure_ascii=False, sort_keys=True)}


EVAL_FIELDS = {"parallel": ("en", "ja"), "faq": ("question", "answer"), "synopsis": ("synopsis", "description")}


def _eval_candidates(work: Path, split) -> dict[str, list[dict]]:
    """The held-out material evaluation sets are cut from: test-split pairs, FAQ items, test-split synopses."""
    items = list(_read_gz_jsonl(sorted((work / "ingest" / "eval").glob("*.jsonl.gz"))))
    return {
        "parallel": [{k: p[k] for k in ("id", "en", "ja", "source", "group")}
                     for p in _pairs(work, split) if p["split"] == "test"],
        "faq": [{k: v for k, v in it.items() if k != "kind"} for it in items if it["kind"] == "faq"],
        "synopsis": [{k: v for k, v in it.items() if k != "kind"} for it in items
                     if it["kind"] == "synopsis" and split(it["group"]) == "test"],
    }


def _flatten(candidates: dict[str, list[dict]]) -> tuple[list[str], list[tuple[str, int]]]:
    """Every text field that must be clean, and the (set, item) it belongs to."""
    flat, owner = [], []
    for name, items in candidates.items():
        for i, it in enumerate(items):
            for f in EVAL_FIELDS[name]:
                flat.append(it[f])
                owner.append((name, i))
    return flat, owner


def _cut_eval_sets(cfg: Config, candidates, owner, labels) -> tuple[dict, dict, set[str]]:
    """Drop every contaminated item and cap what is left; return (sets, counts, contaminated parallel ids)."""
    ec = cfg.corpus.eval
    worst: dict[tuple[str, int], str | None] = {}
    for key, v in zip(owner, labels, strict=True):
        if v == "exact" or (v == "near" and worst.get(key) != "exact"):
            worst[key] = v
        else:
            worst.setdefault(key, None)
    out: dict[str, list[dict]] = {}
    counts: dict[str, dict[str, int]] = {}
    contaminated: set[str] = set()
    for name, items in candidates.items():
        c = Counter(worst.get((name, i)) for i in range(len(items)))
        counts[name] = {"candidates": len(items), "exact": c.get("exact", 0), "near": c.get("near", 0),
                        "clean": c.get(None, 0)}
        clean = [it for i, it in enumerate(items) if worst.get((name, i)) is None]
        if name == "parallel":
            contaminated = {it["id"] for i, it in enumerate(items) if worst.get((name, i))}
            clean = _cap(clean, ec.parallel_pairs, lambda it: it["id"])
        if name == "synopsis":
            clean = [it for lang in LANGS
                     for it in _cap([x for x in clean if x["lang"] == lang], ec.synopsis_pairs, lambda x: x["id"])]
        counts[name]["kept"] = len(clean)
        out[name] = clean
    return out, counts, contaminated


def _write_pairs(staged: Path, work: Path, split, drop: set[str]) -> tuple[dict, int]:
    """The parallel splits as Parquet (streamed in batches); returns their sizes and the number of unique pairs
    (the contaminated test pairs in ``drop`` included)."""
    sizes: dict[str, Any] = {s: {"pairs": 0, "chars_en": 0, "chars_ja": 0} for s in SPLITS}
    unique = 0
    by_source: Counter[str] = Counter()
    writers: dict[str, pq.ParquetWriter] = {}
    batches: dict[str, list[dict]] = {s: [] for s in SPLITS}

    def flush(s: str) -> None:
        if batches[s]:
            if s not in writers:
                (staged / "parallel" / s).mkdir(parents=True, exist_ok=True)
                writers[s] = pq.ParquetWriter(staged / "parallel" / s / "00000.parquet", PAIR_SCHEMA)
            writers[s].write_table(pa.Table.from_pylist(batches[s], schema=PAIR_SCHEMA))
            batches[s] = []

    try:
        for p in _pairs(work, split):
            unique += 1
            if p["split"] == "test" and p["id"] in drop:
                continue
            s = p.pop("split")
            batches[s].append(p)
            sizes[s]["pairs"] += 1
            sizes[s]["chars_en"] += len(p["en"])
            sizes[s]["chars_ja"] += len(p["ja"])
            by_source[p["source"]] += 1
            if len(batches[s]) >= 10_000:
                flush(s)
        for s in SPLITS:
            flush(s)
            (staged / "parallel" / s).mkdir(parents=True, exist_ok=True)
    finally:
        for w in writers.values():
            w.close()
    sizes["by_source"] = {src: {"pairs": n} for src, n in sorted(by_source.items())}
    return sizes, unique


# --------------------------------------------------------------------------------------------------------------
# The stage


def stage_code_files() -> list[Path]:
    """The code whose change must re-run the stage."""
    here = Path(__file__).parent
    # report.py only reads the outputs (tables and figures for the notebook): changing it must not rebuild the corpus.
    # config.py is not listed: the corpus section's resolved values (defaults included) are part of the fingerprint,
    # so other stages' config sections can change without rebuilding the corpus.
    return [p for p in sorted(here.glob("*.py")) if p.name != "report.py"] + [Path(paths.__file__).parent / "stage.py"]


def fetch_sources(cc: CorpusConfig) -> tuple[list[dict], dict[str, dict[str, Path]]]:
    """Fetch and unpack every catalogue archive of the config: ``(manifest entries, roots per source and archive)``."""
    manifest: list[dict] = []
    roots: dict[str, dict[str, Path]] = {}
    for name in cc.sources:
        roots[name] = {}
        for arc in CATALOGUE[name].archives:
            fa = fetch.fetch(arc)
            manifest.append(fa.manifest_entry(name))
            roots[name][arc.name] = fetch.unpack(fa)
    return manifest, roots


def ingest(cfg: Config, work: Path) -> Path:
    """The ingest step alone, into ``work`` (benchmarks, debugging): returns ``work/ingest/docs`` with one folder of
    gzipped JSONL shards per language, the documents as the quality filters receive them."""
    cc = cfg.corpus
    _, roots = fetch_sources(cc)
    with _datatrove_log(Path(work) / "datatrove.log"):
        _ingest(cc, input_units(cc, roots), Path(work))
    return Path(work) / "ingest" / "docs"


def _stage(cfg: Config, out: Path | None = None) -> Stage:
    return Stage("corpus", cfg, out or paths.corpus_dir(cfg.profile),
                 {"corpus": to_dict(cfg.corpus), "seed": cfg.seed}, stage_code_files())


def corpus_fingerprint(cfg: Config) -> str:
    return _stage(cfg).fingerprint


def is_up_to_date(cfg: Config, out: Path | None = None) -> bool:
    return _stage(cfg, out).is_up_to_date()


def build_corpus(cfg: Config | str | Path, force: bool = False, out: Path | None = None) -> Path:
    """Run stage 01 for a config (or profile name); return the output directory.

    Does nothing when the outputs exist and were made from the same corpus config and stage code. A run killed
    part-way resumes from its unfinished tasks when started again with the same inputs.
    """
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    st = _stage(cfg, out)
    if not force and st.is_up_to_date():
        log.info("corpus: %s is up to date", st.out)
        return st.out
    work = st.work_dir()
    with st.staging() as staged:
        _build(cfg, st, staged, work)
    st.discard_work()
    return st.out


def _build(cfg: Config, st: Stage, staged: Path, work: Path) -> None:
    """The stage's steps, writing everything into ``staged`` (swapped in by the caller when this returns)."""
    cc = cfg.corpus
    report = st.report
    report["profile"] = cfg.profile
    sp = cc.split

    def split(group: str) -> str:
        return split_of(group, sp.valid, sp.test, sp.seed)

    with st.step("fetch"):
        manifest, roots = fetch_sources(cc)
        write_json_atomic(staged / "manifest.json", {"archives": manifest})

    with st.step("ingest"), _datatrove_log(work / "datatrove.log"):
        units = input_units(cc, roots)
        report.update(_ingest(cc, units, work))

    # The evaluation candidates are known before any training text is written: the finalize tasks scan for them.
    candidates = _eval_candidates(work, split)
    flat, owner = _flatten(candidates)
    evals_path = write_text_atomic(work / "eval_texts.json", json.dumps(flat, ensure_ascii=False))
    labels: list[str | None] | None = None
    report["filters"], report["dedup"], report["funnel"], report["filters_paper"] = {}, {}, {}, {}
    sizes: dict[str, Any] = {}
    for lang in LANGS:
        raw_dir = work / "ingest" / "docs" / lang
        final_dir = staged / lang
        for s in SPLITS:
            (final_dir / s).mkdir(parents=True, exist_ok=True)
        if not raw_dir.is_dir():
            sizes[lang] = {**{s: {"docs": 0, "chars": 0} for s in SPLITS}, "by_source": {}}
            continue
        qcfg = cc.filters.get(lang) or default_filters(lang)
        nfkc = cc.nfkc.get(lang, False)
        with st.step(f"filter-{lang}"), _datatrove_log(work / "datatrove.log"):
            fstats = filters.run_quality_pipeline(
                raw_dir, work / "filtered" / lang, lang, qcfg, nfkc, work / "fwork" / lang, cc.executor
            )
        report["filters"][lang] = fstats
        if lang == "ja" and cc.compare_paper_filters and qcfg != QualityFilters():
            # the paper's rules (swallow-v1 at Swallow's thresholds) on the same documents, for the report only
            with st.step("filter-ja-paper-rules"), _datatrove_log(work / "datatrove.log"):
                report["filters_paper"][lang] = filters.run_quality_pipeline(
                    raw_dir, work / "paper" / lang, lang, QualityFilters(), nfkc, work / "pwork" / lang, cc.executor
                )
        kept_dir = work / "filtered" / lang
        if cc.dedup.enabled and fstats.get("docs_out", 0) > 0:
            with st.step(f"dedup-{lang}"), _datatrove_log(work / "datatrove.log"):
                report["dedup"][lang] = dedup.run_dedup(
                    kept_dir, work / "dedup" / lang, work / "dwork" / lang, cc.dedup, cc.executor,
                    work / "dedup-removed" / lang,
                )
            kept_dir = work / "dedup" / lang
        if fstats.get("docs_out", 0) > 0:
            with st.step(f"finalize-{lang}"), _datatrove_log(work / "datatrove.log"):
                fin = _finalize(lang, kept_dir, evals_path, cc, work)
        else:  # the rules dropped every document (swallow-v1 on technical text can): empty splits, nothing to scan
            log.warning("corpus: the %s quality rules kept no document", lang)
            fin = {"sizes": {s: {} for s in SPLITS}, "labels": None, "out": work / "final" / lang / "out"}
        labels = decontam.worst(labels, fin["labels"])
        for s in SPLITS:
            for f in sorted((fin["out"] / s).glob("*.parquet")) if (fin["out"] / s).is_dir() else []:
                os.replace(f, final_dir / s / f.name)
        sizes[lang] = _lang_sizes(fin["sizes"])
        raw = {k: v[lang] for k, v in report["raw_sizes"].items() if lang in v}
        report["funnel"][lang] = _funnel(raw, fstats, report["dedup"].get(lang), sizes[lang])

    with st.step("decontaminate"):
        # the training side of the parallel set, in this process (catalogue pairs: bounded)
        labels = decontam.worst(
            labels,
            decontam.find_contamination(
                flat, (t for p in _pairs(work, split) if p["split"] == "train" for t in (p["en"], p["ja"])),
                cc.decontam,
            ),
        )
        evals, report["decontamination"], contaminated = _cut_eval_sets(cfg, candidates, owner, labels)

    with st.step("write"):
        sizes["parallel"], unique = _write_pairs(staged, work, split, contaminated)
        report["parallel"] = {
            "pairs_aligned": sum(v.get("pairs", {}).get("pairs", 0) for v in report["raw_sizes"].values()),
            "pairs_unique": unique,
        }
        for name, rows in evals.items():
            write_text_atomic(staged / "eval" / f"{name}.jsonl",
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        sizes["eval"] = {name: len(rows) for name, rows in evals.items()}
        report["sizes"] = sizes
        card.write_cards(staged, cfg, manifest, report)


def _lang_sizes(by_split: dict[str, dict[str, dict[str, int]]]) -> dict[str, Any]:
    """Per-split totals and per-source totals of one language, from the finalize tasks' counts."""
    out: dict[str, Any] = {}
    by_source: dict[str, dict[str, int]] = {}
    for s in SPLITS:
        out[s] = {"docs": sum(v["docs"] for v in by_split[s].values()),
                  "chars": sum(v["chars"] for v in by_split[s].values())}
        for src, v in by_split[s].items():
            _add_counts(by_source.setdefault(src, {}), v)
    out["by_source"] = dict(sorted(by_source.items()))
    return out


def _add_counts(acc: dict, new: dict) -> None:
    """Add nested count dictionaries (numbers add up, sub-dicts merge)."""
    for k, v in new.items():
        if isinstance(v, dict):
            _add_counts(acc.setdefault(k, {}), v)
        elif isinstance(v, int | float):
            acc[k] = acc.get(k, 0) + v


@contextlib.contextmanager
def _datatrove_log(path: Path):
    """Send datatrove's per-task console log (loguru on stderr, in this process and its workers) to ``path``.

    datatrove already writes the same lines to each task's log file; on the console (and in an executed notebook)
    they would bury the stage's own progress under ~1,500 lines. ``sys.stderr`` and loguru's sinks (the in-process
    tasks and the executor's summary) and file descriptor 2 (worker processes inherit it) are redirected; ``logging``
    handlers keep the stream they were given.
    """
    from loguru import logger  # datatrove's logger

    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a", encoding="utf-8") as f:
        os.dup2(f.fileno(), 2)
        logger.remove()  # the default sink holds the original stderr object
        logger.add(f)
        try:
            with contextlib.redirect_stderr(f):
                yield
        finally:
            logger.remove()
            logger.add(sys.stderr)  # what datatrove's setup_default_logger() restores too
            f.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _funnel(raw: dict[str, dict[str, int]], fstats: dict, dstats: dict | None, final: dict[str, Any]) -> list[dict]:
    """Documents and characters left after each step, in pipeline order (from the tasks' counts)."""
    docs = sum(v["docs"] for v in raw.values())
    chars = sum(v["chars"] for v in raw.values())
    steps = [{"step": "extracted", "docs": docs, "chars": chars}]
    if fstats.get("chars_in") is not None and fstats["chars_in"] != chars:
        # NFKC before the rules (technical) changes character counts; restart the funnel from the normalised text.
        chars = fstats["chars_in"]
        steps.append({"step": "normalised", "docs": docs, "chars": chars})
    for rule, st in fstats["rules"].items():
        docs -= st["docs"]
        chars -= st["chars"]
        steps.append({"step": rule, "docs": docs, "chars": chars})
    if fstats.get("chars_out") is not None and fstats["chars_out"] != chars:
        # NFKC after the rules (swallow-v1, which reads the text as extracted)
        chars = fstats["chars_out"]
        steps.append({"step": "normalised", "docs": docs, "chars": chars})
    if dstats:
        steps.append(
            {"step": "minhash-dedup", "docs": docs - dstats["docs_removed"], "chars": chars - dstats["chars_removed"]}
        )
    steps.append({"step": "final", "docs": sum(final[s]["docs"] for s in SPLITS),
                  "chars": sum(final[s]["chars"] for s in SPLITS)})
    return steps


# --------------------------------------------------------------------------------------------------------------
# Reading the outputs back


def load_split(profile: str, dataset: str, split: str):
    """A stage-01 split as a ``datasets.Dataset`` (``dataset`` is ``ja``, ``en`` or ``parallel``).

    >>> ds = load_split("smoke", "ja", "train")   # doctest: +SKIP
    """
    import datasets

    files = paths.corpus_split_files(profile, dataset, split)
    if not files:  # an empty split has no shards
        schema = PAIR_SCHEMA if dataset == "parallel" else DOC_SCHEMA
        return datasets.Dataset(schema.empty_table())
    return datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split)


def main(argv: list[str] | None = None) -> None:
    stage_cli(build_corpus, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
