"""Stage 01 end to end: fetch → extract/align → split by group → filter → dedup → decontaminate → write.

    python -m swallowlib.corpus.pipeline --config configs/tiny.yaml          # skips when up to date
    python -m swallowlib.corpus.pipeline --config configs/smoke.yaml --force

Outputs (``runs/<profile>/corpus/``, replaced atomically as a whole when the stage finishes):

- ``ja/``, ``en/``: monolingual documents, ``{train,valid,test}.parquet`` + ``README.md`` (data card);
- ``parallel/``: aligned pairs, ``{train,valid,test}.parquet`` + data card; parallel text is never in ``ja``/``en``;
- ``eval/``: ``faq.jsonl``, ``synopsis.jsonl``, ``parallel.jsonl`` — decontaminated against every training split;
- ``manifest.json`` (every archive: name, version, sha256), ``report.json`` (sizes, per-filter table with examples,
  funnel, skipped-input counts, decontamination counts, wall time, peak memory), ``provenance.json`` (resolved config,
  versions, git SHA, input fingerprint).

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
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from tqdm.auto import tqdm

from swallowlib import paths
from swallowlib.config import Config, QualityFilters, apply_environment, load_config, to_dict
from swallowlib.corpus import align, decontam, dedup, evalmaterial, extract, fetch, filters
from swallowlib.corpus.records import Document, Pair
from swallowlib.corpus.sources import CATALOGUE
from swallowlib.provenance import (
    fingerprint,
    peak_rss_mb,
    provenance,
    publish_dir,
    recorded_fingerprint,
    stage_cli,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
LANGS = ("ja", "en")


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


def _take_per_lang(docs: Iterable[Document], n: int | None, langs: tuple[str, ...]) -> list[Document]:
    """The first ``n`` documents of each language, stopping extraction as soon as every language has them.

    Used by capped profiles (smoke) so that extraction does not render a whole source to keep a slice of it.
    """
    out: list[Document] = []
    count: Counter[str] = Counter()
    for d in docs:
        if n is None or count[d.lang] < n:
            out.append(d)
            count[d.lang] += 1
        if n is not None and langs and all(count[lang] >= n for lang in langs):
            break
    return out


# --------------------------------------------------------------------------------------------------------------
# IO helpers


def _write_jsonl_gz(path: Path, rows: Iterable[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with gzip.open(path, "wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
            n += 1
    return n


def _read_jsonl_dir(d: Path) -> Iterator[dict]:
    for p in sorted(d.rglob("*.jsonl*")):
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)


def _doc_row(d: Document, split: str) -> dict:
    """A document in datatrove's JSONL layout (text, id, metadata)."""
    return {
        "text": d.text,
        "id": d.id,
        "metadata": {"source": d.source, "group": d.group, "lang": d.lang, "split": split, "meta": d.meta},
    }


def _to_parquet(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------------
# The stage


class _Timer:
    """Wall time per named step (seconds), logged as each step starts."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        log.info("corpus: %s …", name)
        yield
        self.t[name] = round(time.perf_counter() - t0, 2)


def stage_code_files() -> list[Path]:
    """The code whose change must re-run the stage."""
    here = Path(__file__).parent
    # report.py only reads the outputs (tables and figures for the notebook): changing it must not rebuild the corpus.
    # config.py is not listed: the corpus section's resolved values (defaults included) are part of the fingerprint,
    # so other stages' config sections can change without rebuilding the corpus.
    return [p for p in sorted(here.glob("*.py")) if p.name != "report.py"]


def corpus_fingerprint(cfg: Config) -> str:
    return fingerprint({"corpus": to_dict(cfg.corpus), "seed": cfg.seed}, stage_code_files())


def is_up_to_date(cfg: Config, out: Path | None = None) -> bool:
    return recorded_fingerprint(out or paths.corpus_dir(cfg.profile)) == corpus_fingerprint(cfg)


def build_corpus(cfg: Config | str | Path, force: bool = False, out: Path | None = None) -> Path:
    """Run stage 01 for a config (or profile name); return the output directory.

    Does nothing when the outputs exist and were made from the same corpus config and stage code.
    """
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    out = out or paths.corpus_dir(cfg.profile)
    if not force and is_up_to_date(cfg, out):
        log.info("corpus: %s is up to date", out)
        return out
    t_start = time.perf_counter()
    timer = _Timer()
    work = out.parent / "work" / "corpus"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    stage = Path(str(out) + ".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        _build(cfg, stage, work, timer, t_start)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    publish_dir(stage, out)
    log.info("corpus: wrote %s in %.0f s", out, time.perf_counter() - t_start)
    return out


def _build(cfg: Config, stage: Path, work: Path, timer: _Timer, t_start: float) -> None:
    """The stage's steps, writing everything into ``stage`` (swapped in by the caller when this returns)."""
    cc = cfg.corpus
    report: dict[str, Any] = {"profile": cfg.profile}

    # 1. fetch ------------------------------------------------------------------------------------------------
    with timer("fetch"):
        manifest, roots = [], {}
        for name in tqdm(cc.sources, desc="fetch", unit="source"):
            roots[name] = {}
            for arc in CATALOGUE[name].archives:
                fa = fetch.fetch(arc)
                manifest.append(fa.manifest_entry(name))
                roots[name][arc.name] = fetch.unpack(fa)
        write_json_atomic(stage / "manifest.json", {"archives": manifest})

    # 2. extract documents and pairs (one process per source, two at a time: man-page rendering dominates) --------
    docs: dict[str, list[Document]] = {"ja": [], "en": []}
    pairs: list[Pair] = []
    raw_sizes: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)  # source -> lang -> {docs, chars}
    faq_items: list[dict] = []
    synopsis_items: list[dict] = []
    skipped: dict[str, dict] = {"extract": {}, "align": {}}
    with timer("extract"):
        jobs = [(name, roots[name], cc) for name in cc.sources]
        with ProcessPoolExecutor(max_workers=min(2, max(1, len(jobs)))) as pool:
            results = pool.map(_extract_source, jobs)
            for name, res in zip(
                cc.sources, tqdm(results, total=len(jobs), desc="extract", unit="source"), strict=True
            ):
                for lang in LANGS:
                    mine = [d for d in res["docs"] if d.lang == lang]
                    docs[lang].extend(mine)
                    if mine:
                        raw_sizes[name][lang] = {"docs": len(mine), "chars": sum(len(d.text) for d in mine)}
                if res["pairs"] is not None:
                    pairs.extend(res["pairs"])
                    raw_sizes[name]["pairs"] = {
                        "pairs": len(res["pairs"]),
                        "chars_en": sum(len(p.en) for p in res["pairs"]),
                        "chars_ja": sum(len(p.ja) for p in res["pairs"]),
                    }
                faq_items.extend(res["faq"])
                synopsis_items.extend(res["synopsis"])
                _add_counts(skipped["extract"], res["xstats"])
                _add_counts(skipped["align"], res["astats"])
        xstats = extract.ExtractStats()
        for ls in cc.local:
            got = list(extract.read_local(Path(ls.path), ls.language, ls.name, ls.text_field, xstats))
            docs[ls.language].extend(got)
            raw_sizes[ls.name][ls.language] = {"docs": len(got), "chars": sum(len(d.text) for d in got)}
        for hs in cc.hub:
            got = list(
                extract.read_hub(
                    hs.dataset, hs.config, hs.split, hs.text_field, hs.language, hs.name, hs.max_docs, stats=xstats
                )
            )
            docs[hs.language].extend(got)
            raw_sizes[hs.name][hs.language] = {"docs": len(got), "chars": sum(len(d.text) for d in got)}
        _add_counts(skipped["extract"], xstats.as_dict())
    report["raw_sizes"] = raw_sizes
    report["skipped_inputs"] = skipped

    sp = cc.split

    def split(group: str) -> str:
        return split_of(group, sp.valid, sp.test, sp.seed)

    # 3. filter and dedup each language on datatrove ------------------------------------------------------------
    final: dict[str, pd.DataFrame] = {}
    report["filters"], report["dedup"], report["funnel"], report["filters_paper"] = {}, {}, {}, {}
    for lang in LANGS:
        if not docs[lang]:
            final[lang] = pd.DataFrame(columns=["id", "text", "source", "group", "split", "meta"])
            continue
        raw_dir = work / "raw" / lang
        # One shard per datatrove task: its local executor parallelises over files, not within one.
        shards = max(1, cc.executor.tasks)
        n = sum(
            _write_jsonl_gz(raw_dir / f"{k:05d}.jsonl.gz", (_doc_row(d, split(d.group)) for d in docs[lang][k::shards]))
            for k in range(shards)
        )
        log.info("corpus: %s: %d raw documents", lang, n)
        qcfg = cc.filters.get(lang, QualityFilters())
        nfkc = cc.nfkc.get(lang, False)
        dt_log = work / "datatrove.log"
        with timer(f"filter-{lang}"), _datatrove_log(dt_log):
            fstats = filters.run_quality_pipeline(
                raw_dir, work / "filtered" / lang, lang, qcfg, nfkc, work / "fwork" / lang, cc.executor
            )
        report["filters"][lang] = fstats
        if lang == "ja" and cc.compare_paper_filters and qcfg != QualityFilters():
            with timer("filter-ja-paper-thresholds"), _datatrove_log(dt_log):
                report["filters_paper"][lang] = filters.run_quality_pipeline(
                    raw_dir, work / "paper" / lang, lang, QualityFilters(), nfkc, work / "pwork" / lang, cc.executor
                )
        if cc.dedup.enabled and fstats.get("docs_out", 0) > 0:
            with timer(f"dedup-{lang}"), _datatrove_log(dt_log):
                dstats = dedup.run_dedup(
                    work / "filtered" / lang,
                    work / "dedup" / lang,
                    work / "dwork" / lang,
                    cc.dedup,
                    cc.executor,
                    work / "dedup-removed" / lang,
                )
            report["dedup"][lang] = dstats
            kept_dir = work / "dedup" / lang
        else:
            kept_dir = work / "filtered" / lang
        rows = [
            {
                "id": r["id"],
                "text": r["text"],
                "source": r["metadata"]["source"],
                "group": r["metadata"]["group"],
                "split": r["metadata"]["split"],
                "meta": json.dumps(r["metadata"].get("meta", {}), ensure_ascii=False, sort_keys=True),
            }
            for r in _read_jsonl_dir(kept_dir)
        ]
        df = (
            pd.DataFrame(rows, columns=["id", "text", "source", "group", "split", "meta"])
            .sort_values("id", kind="stable")
            .reset_index(drop=True)
        )
        final[lang] = df
        report["funnel"][lang] = _funnel(docs[lang], report["filters"][lang], report["dedup"].get(lang), df)
    del docs

    # 4. parallel pairs ----------------------------------------------------------------------------------------
    with timer("parallel"):
        seen: set[tuple[str, str]] = set()
        prow = []
        for p in pairs:
            k = (p.en, p.ja)
            if k in seen:
                continue
            seen.add(k)
            prow.append(
                {
                    "id": p.id,
                    "en": p.en,
                    "ja": p.ja,
                    "source": p.source,
                    "group": p.group,
                    "split": split(p.group),
                    "meta": json.dumps(p.meta, ensure_ascii=False, sort_keys=True),
                }
            )
        pdf = pd.DataFrame(prow, columns=["id", "en", "ja", "source", "group", "split", "meta"])
        report["parallel"] = {"pairs_aligned": len(pairs), "pairs_unique": len(pdf)}

    # 5. evaluation sets, decontaminated against every training split -----------------------------------------
    with timer("decontaminate"):
        train_texts = _training_texts(final, pdf)
        evals, report["decontamination"] = _evaluation_sets(cfg, pdf, faq_items, synopsis_items, split, train_texts)
        # The held-out parallel pairs that were contaminated leave the parallel test split too.
        drop = set(evals.pop("_parallel_contaminated_ids"))
        pdf = pdf[~pdf["id"].isin(drop)].reset_index(drop=True)

    # 6. write -------------------------------------------------------------------------------------------------
    with timer("write"):
        for lang in LANGS:
            for s in SPLITS:
                _to_parquet(
                    final[lang][final[lang]["split"] == s].drop(columns="split"),
                    stage / lang / f"{s}.parquet",
                )
        for s in SPLITS:
            _to_parquet(pdf[pdf["split"] == s].drop(columns="split"), stage / "parallel" / f"{s}.parquet")
        for name, rows in evals.items():
            _write_jsonl(stage / "eval" / f"{name}.jsonl", rows)
        report["sizes"] = _sizes(final, pdf, evals)
        from swallowlib.corpus import card

        card.write_cards(stage, cfg, manifest, report)

    report["timings_s"] = dict(timer.t, total=round(time.perf_counter() - t_start, 2))
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    write_json_atomic(stage / "report.json", report)
    write_json_atomic(stage / "provenance.json", provenance(cfg, stage="corpus", fingerprint=corpus_fingerprint(cfg)))


def _extract_source(job: tuple[str, dict[str, Path], Any]) -> dict[str, Any]:
    """Everything one catalogue source contributes, by its role (runs in a worker process)."""
    name, roots, cc = job
    role = "eval" if name in cc.eval_sources else "parallel" if name in cc.parallel_sources else "mono"
    src = CATALOGUE[name]
    xstats, astats = extract.ExtractStats(), align.AlignStats()
    out: dict[str, Any] = {"docs": [], "pairs": None, "faq": [], "synopsis": []}
    if role == "mono" and src.languages:
        out["docs"] = _take_per_lang(
            extract.extract_documents(name, roots, xstats), cc.max_docs_per_source, src.languages
        )
    if role == "parallel":
        out["pairs"] = _cap(list(align.align_pairs(name, roots, astats)), cc.max_pairs_per_source, lambda p: p.id)
    if name == "debian-faq" and cc.eval.faq:
        out["faq"] = list(evalmaterial.faq_qa(roots))
    if name == "ddtp" and cc.eval.synopsis_pairs:
        out["synopsis"] = [s for lang in LANGS for s in evalmaterial.ddtp_synopsis(roots, lang)]
    out["xstats"], out["astats"] = xstats.as_dict(), astats.as_dict()
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


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _funnel(raw: list[Document], fstats: dict, dstats: dict | None, final: pd.DataFrame) -> list[dict]:
    """Documents and characters left after each step, in pipeline order."""
    docs, chars = len(raw), sum(len(d.text) for d in raw)
    steps = [{"step": "extracted", "docs": docs, "chars": chars}]
    if fstats.get("chars_in") is not None and fstats["chars_in"] != chars:
        # NFKC changes character counts; restart the funnel from the normalised text.
        chars = fstats["chars_in"]
        steps.append({"step": "normalised", "docs": docs, "chars": chars})
    for rule, st in fstats["rules"].items():
        docs -= st["docs"]
        chars -= st["chars"]
        steps.append({"step": rule, "docs": docs, "chars": chars})
    if dstats:
        steps.append(
            {
                "step": "minhash-dedup",
                "docs": docs - dstats["docs_removed"],
                "chars": chars - dstats["chars_removed"],
            }
        )
    steps.append(
        {
            "step": "final",
            "docs": len(final),
            "chars": int(final["text"].str.len().sum()) if len(final) else 0,
        }
    )
    return steps


def _training_texts(final: dict[str, pd.DataFrame], pdf: pd.DataFrame) -> list[str]:
    texts: list[str] = []
    for lang in LANGS:
        df = final[lang]
        texts.extend(df.loc[df["split"] == "train", "text"].tolist())
    tr = pdf[pdf["split"] == "train"]
    texts.extend(tr["en"].tolist())
    texts.extend(tr["ja"].tolist())
    return texts


def _evaluation_sets(cfg, pdf, faq_items, synopsis_items, split, train_texts) -> tuple[dict, dict]:
    """Cut the evaluation sets from held-out material and drop every item found in training text."""
    ec, dc = cfg.corpus.eval, cfg.corpus.decontam
    out: dict[str, list[dict]] = {}
    counts: dict[str, dict[str, int]] = {}

    # Which fields of an item must be clean: all of its text.
    candidates = {
        "parallel": [
            {"id": r.id, "en": r.en, "ja": r.ja, "source": r.source, "group": r.group}
            for r in pdf[pdf["split"] == "test"].itertuples()
        ],
        "faq": list(faq_items),
        "synopsis": [s for s in synopsis_items if split(s["group"]) == "test"],
    }
    fields = {
        "parallel": ("en", "ja"),
        "faq": ("question", "answer"),
        "synopsis": ("synopsis", "description"),
    }
    flat, owner = [], []
    for name, items in candidates.items():
        for i, it in enumerate(items):
            for f in fields[name]:
                flat.append(it[f])
                owner.append((name, i))
    verdicts = decontam.find_contamination(flat, train_texts, dc) if flat else []
    worst: dict[tuple[str, int], str | None] = {}
    for key, v in zip(owner, verdicts, strict=True):
        if v == "exact" or (v == "near" and worst.get(key) != "exact"):
            worst[key] = v
        else:
            worst.setdefault(key, None)
    contaminated_parallel = []
    for name, items in candidates.items():
        c = Counter(worst.get((name, i)) for i in range(len(items)))
        counts[name] = {
            "candidates": len(items),
            "exact": c.get("exact", 0),
            "near": c.get("near", 0),
            "clean": c.get(None, 0),
        }
        clean = [it for i, it in enumerate(items) if worst.get((name, i)) is None]
        if name == "parallel":
            contaminated_parallel = [it["id"] for i, it in enumerate(items) if worst.get((name, i))]
            clean = _cap(clean, ec.parallel_pairs, lambda it: it["id"])
        if name == "synopsis":
            clean = [
                it
                for lang in LANGS
                for it in _cap([x for x in clean if x["lang"] == lang], ec.synopsis_pairs, lambda x: x["id"])
            ]
        counts[name]["kept"] = len(clean)
        out[name] = clean
    out["_parallel_contaminated_ids"] = contaminated_parallel
    return out, counts


def _sizes(final: dict[str, pd.DataFrame], pdf: pd.DataFrame, evals: dict[str, list]) -> dict:
    sizes: dict[str, Any] = {}
    for lang in LANGS:
        df = final[lang]
        sizes[lang] = {
            s: {
                "docs": int((df["split"] == s).sum()),
                "chars": int(df.loc[df["split"] == s, "text"].str.len().sum()),
            }
            for s in SPLITS
        }
        sizes[lang]["by_source"] = {
            src: {"docs": len(g), "chars": int(g["text"].str.len().sum())} for src, g in df.groupby("source")
        }
    sizes["parallel"] = {
        s: {
            "pairs": int((pdf["split"] == s).sum()),
            "chars_en": int(pdf.loc[pdf["split"] == s, "en"].str.len().sum()),
            "chars_ja": int(pdf.loc[pdf["split"] == s, "ja"].str.len().sum()),
        }
        for s in SPLITS
    }
    sizes["parallel"]["by_source"] = {src: {"pairs": len(g)} for src, g in pdf.groupby("source")}
    sizes["eval"] = {name: len(rows) for name, rows in evals.items()}
    return sizes


# --------------------------------------------------------------------------------------------------------------
# Reading the outputs back


def load_split(profile: str, dataset: str, split: str):
    """A stage-01 split as a ``datasets.Dataset`` (``dataset`` is ``ja``, ``en`` or ``parallel``).

    >>> ds = load_split("smoke", "ja", "train")   # doctest: +SKIP
    """
    import datasets

    path = paths.corpus_dir(profile) / dataset / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such corpus split (run the corpus stage for profile {profile!r})")
    return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)


def main(argv: list[str] | None = None) -> None:
    stage_cli(build_corpus, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
