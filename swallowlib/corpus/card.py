"""Data cards: one ``README.md`` per output dataset (sources, licences, archive versions, document/character counts).

Written by the pipeline from its own report, so the numbers on a card are always the ones measured in that run.
"""

from __future__ import annotations

from pathlib import Path

from swallowlib import paths
from swallowlib.corpus.sources import CATALOGUE
from swallowlib.provenance import write_text_atomic

SPLITS = ("train", "valid", "test")


def _licence(source: str, cfg) -> str:
    if source in CATALOGUE:
        return CATALOGUE[source].licence
    for s in list(cfg.corpus.local) + list(cfg.corpus.hub):
        if s.name == source:
            return s.licence
    return "unknown"


def _archives(source: str, manifest: list[dict]) -> str:
    return (
        ", ".join(f"{m['kind']}:{m['name']} {m['version']}" for m in manifest if m["source"] == source) or "-"
    )


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_cards(out: Path, cfg, manifest: list[dict], report: dict) -> None:
    """Write ``<out>/{ja,en,parallel,eval}/README.md``."""
    sizes = report["sizes"]
    cfg_path = Path(cfg.path)
    if cfg_path.is_absolute() and cfg_path.is_relative_to(paths.ROOT):
        cfg_path = cfg_path.relative_to(paths.ROOT)
    common = (
        f"Profile `{cfg.profile}` (config `{cfg_path}`). Built by `swallowlib.corpus.pipeline`; split by group "
        f"(valid {cfg.corpus.split.valid:.0%}, test {cfg.corpus.split.test:.0%} of groups, seed "
        f'{cfg.corpus.split.seed}). Load with `datasets.load_dataset("parquet", data_files=...)` or '
        "`swallowlib.corpus.pipeline.load_split`.\n"
    )
    for lang, title in (("ja", "Japanese"), ("en", "English")):
        s = sizes[lang]
        rows = [
            [src, _licence(src, cfg), _archives(src, manifest), v["docs"], f"{v['chars']:,}"]
            for src, v in sorted(s["by_source"].items())
        ]
        text = (
            f"# {title} monolingual corpus\n\n{common}\n"
            "Quality-filtered with the Swallow rules and MinHash-deduplicated "
            f"(character {cfg.corpus.dedup.ngram}-grams, "
            f"{cfg.corpus.dedup.num_buckets} buckets x {cfg.corpus.dedup.hashes_per_bucket} hashes). "
            f"NFKC: {cfg.corpus.nfkc.get(lang, False)}. Parallel-source text is not included.\n\n"
            "## Splits\n\n"
            + _table(
                ["split", "documents", "characters"],
                [[sp, s[sp]["docs"], f"{s[sp]['chars']:,}"] for sp in SPLITS],
            )
            + "\n\n## Sources\n\n"
            + _table(["source", "licence", "archives (version)", "documents", "characters"], rows)
            + "\n\nColumns: `id`, `text`, `source`, `group` (split unit), `meta` (JSON: package, path, format).\n"
        )
        write_text_atomic(out / lang / "README.md", text)

    p = sizes["parallel"]
    rows = [
        [src, _licence(src, cfg), _archives(src, manifest), v["pairs"]]
        for src, v in sorted(p["by_source"].items())
    ]
    write_text_atomic(
        out / "parallel" / "README.md",
        (
            f"# English-Japanese parallel corpus\n\n{common}\n"
            "Paragraph-aligned manuals, DDTP descriptions joined on `Description-md5`, and UI-string catalogues. "
            "Kept out of the monolingual datasets so the parallel ablation is clean. "
            "Pairs whose held-out side was found in training text were dropped from `test`.\n\n## Splits\n\n"
            + _table(
                ["split", "pairs", "EN characters", "JA characters"],
                [[sp, p[sp]["pairs"], f"{p[sp]['chars_en']:,}", f"{p[sp]['chars_ja']:,}"] for sp in SPLITS],
            )
            + "\n\n## Sources\n\n"
            + _table(["source", "licence", "archives (version)", "pairs"], rows)
            + "\n\nColumns: `id`, `en`, `ja`, `source`, `group`, `meta` (JSON: package, path, alignment method).\n"
        ),
    )

    dc = report["decontamination"]
    write_text_atomic(
        out / "eval" / "README.md",
        (
            f"# Evaluation sets\n\n{common}\n"
            "- `faq.jsonl`: Debian FAQ question/answer pairs in English and Japanese (`lang`, `question`, `answer`); "
            f"licence: {_licence('debian-faq', cfg) if 'debian-faq' in cfg.corpus.sources else '-'}.\n"
            "- `synopsis.jsonl`: DDTP package synopsis <- long description, per language, from test-split packages.\n"
            "- `parallel.jsonl`: held-out parallel pairs (test split) for translation.\n\n"
            "Every item was checked against every training split (ja, en, parallel train): exact matches (the text or "
            "any of its sentences occurs verbatim) and near-duplicates (character 5-gram Jaccard >= "
            f"{cfg.corpus.decontam.near_dup_jaccard}); contaminated items were dropped.\n\n"
            + _table(
                ["set", "candidates", "exact matches", "near-duplicates", "clean", "kept"],
                [[k, v["candidates"], v["exact"], v["near"], v["clean"], v["kept"]] for k, v in dc.items()],
            )
            + "\n"
        ),
    )
