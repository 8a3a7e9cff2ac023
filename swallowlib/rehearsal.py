"""Local stand-ins for the Hub model and datasets of the ``tinyllama-1.1b`` profile, so that the ``rehearsal``
profile (``configs/rehearsal.yaml``) runs the GPU profile's exact code path on a CPU in minutes, without the Hub.

    python -m swallowlib.rehearsal --out data/rehearsal      # Make builds it before the rehearsal's stage 01

``<out>/`` holds

- ``model/`` - TinyLlama-1.1B's shape in miniature: a random Llama with grouped-query attention (fewer key/value heads
  than query heads), untied embeddings, a 2,048-token context, and Llama 2's exact tokenizer (32,000 pieces, rebuilt
  offline by :func:`swallowlib.tokenizer.base.build_llama2_tokenizer`): an HF directory, used where tinyllama names
  ``TinyLlama/TinyLlama_v1.1``.
- ``fineweb-2/``, ``wikipedia/``, ``falcon-refinedweb/`` - laid out like the Hub repositories
  ``HuggingFaceFW/fineweb-2``, ``wikimedia/wikipedia`` and ``tiiuae/falcon-refinedweb`` (same file paths, columns and
  a dataset card whose ``configs:`` block names the ``data_files``), so ``datasets.load_dataset(dir, config,
  split="train", streaming=True)`` resolves them the way it resolves the Hub ids. Their documents re-mix the prose
  paragraphs of two Debian manuals (Japanese and English sides, fetched through the corpus stage's archive cache),
  plus the records web data throws at a pipeline (:data:`HOSTILE`): emoji, control characters, a single line of
  over 1 MiB, near-duplicates and an exact duplicate (for MinHash), empty, whitespace-only and null text. (A Parquet
  column has one type, so null is the one non-string value a Hub text column can carry.)
- ``manifest.json`` - every file with its sha256, written last: Make's target.

Deterministic: the same archives, tokenizer and seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import shutil
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from swallowlib import paths

log = logging.getLogger(__name__)

#: Catalogue sources whose manuals supply the paragraphs (Japanese and English sides; small and prose-heavy).
TEXT_SOURCES = ("maint-guide", "debian-reference")

#: Kinds of hostile records every stand-in dataset contains (the ``kind`` a test looks for in :func:`hostile`).
HOSTILE = ("emoji", "emoji-only", "control-chars", "huge-line", "near-dup-edit", "near-dup-footer", "exact-dup",
           "empty", "whitespace", "null")


@dataclass(frozen=True)
class Sizes:
    """Documents per file of each stand-in (FineWeb-2 and RefinedWeb have two train files, Wikipedia two)."""

    fineweb_docs: int = 150
    fineweb_test_docs: int = 20
    wikipedia_docs: int = 30
    refinedweb_docs: int = 75
    huge_line_bytes: int = 1 << 20  # one record of at least this many UTF-8 bytes and no newline
    # The model: TinyLlama-1.1B (d=2048, 22 layers, 32 heads, 4 key/value heads, SwiGLU 5632) scaled down.
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 176  # TinyLlama's 5632 / 2048 = 2.75 x hidden
    max_position_embeddings: int = 2048


# ---------------------------------------------------------------------------------------------------------------
# Text


_JA = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
_HIRAGANA = re.compile(r"[\u3040-\u309f]")


def manual_texts(sources: tuple[str, ...] = TEXT_SOURCES) -> dict[str, list[str]]:
    """The Japanese and English documents of catalogue sources, extracted as the corpus stage extracts them."""
    from swallowlib.corpus import extract
    from swallowlib.corpus.fetch import fetch, unpack
    from swallowlib.corpus.sources import CATALOGUE

    out: dict[str, list[str]] = {"ja": [], "en": []}
    for name in sources:
        roots = {a.name: unpack(fetch(a)) for a in CATALOGUE[name].archives}
        for doc in extract.extract_documents(name, roots, langs=("ja", "en")):
            out[doc.lang].append(doc.text)
    return out


def prose_paragraphs(texts: list[str], lang: str) -> list[str]:
    """Paragraphs that read as running text (not code, tables or headings), sorted and unique: the seeded re-mix
    then depends on the text only, not on the order extraction found it in."""
    keep = set()
    for text in texts:
        for para in text.split("\n\n"):
            p = para.strip()
            if lang == "ja":
                ok = len(p) >= 40 and len(_JA.findall(p)) >= 0.6 * len(p) and len(_HIRAGANA.findall(p)) >= 0.2 * len(p)
            else:
                ok = len(p) >= 80 and sum(c.isalpha() or c in " ,.;:'()-" for c in p) >= 0.9 * len(p)
            if ok:
                keep.add(p)
    return sorted(keep)


def remix(pool: list[str], n: int, rng: random.Random, per_doc: tuple[int, int]) -> list[str]:
    """``n`` documents of ``per_doc`` paragraphs each, walking a shuffled pool (reshuffled when used up), so any two
    documents share few paragraphs and stay far from MinHash's near-duplicate threshold."""
    if not pool:
        raise ValueError("no paragraphs to re-mix (empty text sources)")
    order, i, docs = pool[:], len(pool), []
    for _ in range(n):
        k = min(rng.randint(*per_doc), len(pool))
        if i + k > len(order):
            rng.shuffle(order)
            i = 0
        docs.append("\n\n".join(order[i : i + k]))
        i += k
    return docs


def hostile(pool: list[str], lang: str, rng: random.Random, huge_line_bytes: int) -> list[tuple[str, str | None]]:
    """``(kind, text)`` for each kind in :data:`HOSTILE`, built from ``pool`` (one language's paragraphs)."""
    sent_end = "。" if lang == "ja" else ". "

    def page() -> str:  # each kind from its own paragraphs: only the near-duplicates may meet in MinHash
        return "\n\n".join(rng.sample(pool, min(6, len(pool))))

    base = page()
    emoji = ["😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "🍣", "🙇‍♂️"]
    with_emoji = sent_end.join(
        s + (rng.choice(emoji) if j % 2 else "") for j, s in enumerate(page().split(sent_end.strip()))
    )
    control = "\ufeff" + page().replace("\n", "\r\n", 3) + "\x00\x07\u200b\u2028\u202e" + rng.choice(pool)
    line, size, order = [], 0, pool[:]
    rng.shuffle(order)
    while size < huge_line_bytes:  # the paragraphs once, then again: a real page that repeats itself
        for p in order:
            piece = p.replace("\n", " ")
            line.append(piece)
            size += len(piece.encode()) + 1
            if size >= huge_line_bytes:
                break
    edited = list(base)
    for pos in rng.sample(range(len(edited)), 3):
        edited[pos] = "ー" if lang == "ja" else "x"
    footer = "\n\n" + ("この記事をシェアする・トップへ戻る" if lang == "ja" else "Share this article | Back to top")
    return [
        ("emoji", with_emoji),
        ("emoji-only", "".join(rng.choice(emoji) for _ in range(400))),
        ("control-chars", control),
        ("huge-line", " ".join(line)),
        ("near-dup-edit", "".join(edited)),
        ("near-dup-footer", base + footer),
        ("exact-dup", base),
        ("exact-dup", base),  # the page the near-duplicates were made from, twice
        ("empty", ""),
        ("whitespace", " \n\t\u3000 \n"),
        ("null", None),
    ]


Row = tuple[str, str | None]  # (kind, text)


def _with_hostile(docs: list[str], bad: list[Row], rng: random.Random) -> list[Row]:
    """The normal documents with the hostile ones at seeded places among the first half (before any max_docs cut)."""
    rows: list[Row] = [("normal", d) for d in docs]
    for kind, text in bad:
        rows.insert(rng.randint(0, max(0, len(rows) // 2)), (kind, text))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The Hub layouts


def _card(pretty: str, licence: str, lang: str, config: str, splits: dict[str, str], origin: str) -> str:
    data_files = "".join(f"  - split: {s}\n    path: {p}\n" for s, p in splits.items())
    return (
        f"---\nlicense: {licence}\nlanguage:\n- {lang}\npretty_name: {pretty} (rehearsal stand-in)\n"
        f"configs:\n- config_name: {config}\n  data_files:\n{data_files}---\n\n"
        f"# {pretty} (rehearsal stand-in)\n\nLaid out like the Hub repository `{origin}` (paths, columns, this card's "
        "`configs:` block); the text re-mixes paragraphs of Debian manuals and adds hostile records. Built by "
        "`python -m swallowlib.rehearsal`.\n"
    )


def _write_parquet(path: Path, columns: dict[str, list], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    # Small row groups: the Hub files have many, and streaming reads them one after another.
    pq.write_table(pa.table(columns, schema=schema), path, row_group_size=64)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _date(rng: random.Random) -> datetime:
    return datetime(2023, 1, 1) + timedelta(seconds=rng.randrange(365 * 86400))


def _fineweb(out: Path, rows: list[tuple[str, str | None]], test_rows: list[str], rng: random.Random) -> dict:
    import pyarrow as pa

    schema = pa.schema([
        ("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
        ("date", pa.string()), ("file_path", pa.string()), ("language", pa.string()),
        ("language_score", pa.float64()), ("language_script", pa.string()), ("minhash_cluster_size", pa.int64()),
        ("top_langs", pa.string()),
    ])  # fmt: skip

    def table(texts: list[str | None]) -> dict[str, list]:
        n = len(texts)
        dumps = [rng.choice(["CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-18"]) for _ in range(n)]
        scores = [round(rng.uniform(0.65, 1.0), 6) for _ in range(n)]
        return {
            "text": texts,
            "id": [f"<urn:uuid:{_uuid(rng)}>" for _ in range(n)],
            "dump": dumps,
            "url": [f"https://example{rng.randrange(1000)}.jp/{rng.randrange(10**6)}.html" for _ in range(n)],
            "date": [_date(rng).strftime("%Y-%m-%dT%H:%M:%SZ") for _ in range(n)],
            "file_path": [f"s3://commoncrawl/crawl-data/{d}/segments/{rng.randrange(10**6)}.warc.gz" for d in dumps],
            "language": ["jpn"] * n,
            "language_score": scores,
            "language_script": ["Jpan"] * n,
            "minhash_cluster_size": [rng.randint(1, 40) for _ in range(n)],
            "top_langs": [json.dumps({"jpn_Jpan_score": s}) for s in scores],
        }

    half = len(rows) // 2
    for k, part in enumerate((rows[:half], rows[half:])):
        _write_parquet(out / f"data/jpn_Jpan/train/000_{k:05d}.parquet", table([t for _, t in part]), schema)
    _write_parquet(out / "data/jpn_Jpan/test/000_00000.parquet", table(list(test_rows)), schema)
    splits = {"train": "data/jpn_Jpan/train/*", "test": "data/jpn_Jpan/test/*"}
    (out / "README.md").write_text(
        _card("FineWeb-2", "odc-by", "ja", "jpn_Jpan", splits, "HuggingFaceFW/fineweb-2"), encoding="utf-8"
    )
    return {"config": "jpn_Jpan", "train_rows": len(rows), "test_rows": len(test_rows)}


def _wikipedia(out: Path, rows: list[tuple[str, str | None]], rng: random.Random) -> dict:
    import pyarrow as pa

    schema = pa.schema([("id", pa.string()), ("url", pa.string()), ("title", pa.string()), ("text", pa.string())])
    half = len(rows) // 2
    for k, part in enumerate((rows[:half], rows[half:])):
        ids = [str(rng.randrange(10**7)) for _ in part]
        # An article's title: the start of its first sentence (Wikipedia's text does not repeat the title).
        titles = [re.split(r"[。、\n]", t or "")[0][:20] or f"記事{i}" for i, (_, t) in zip(ids, part, strict=True)]
        cols = {
            "id": ids,
            "url": [f"https://ja.wikipedia.org/wiki?curid={i}" for i in ids],
            "title": titles,
            "text": [t for _, t in part],
        }
        _write_parquet(out / f"20231101.ja/train-{k:05d}-of-00002.parquet", cols, schema)
    (out / "README.md").write_text(
        _card("Wikipedia", "cc-by-sa-3.0", "ja", "20231101.ja", {"train": "20231101.ja/train-*"},
              "wikimedia/wikipedia"),
        encoding="utf-8",
    )  # fmt: skip
    return {"config": "20231101.ja", "train_rows": len(rows)}


def _refinedweb(out: Path, rows: list[tuple[str, str | None]], rng: random.Random) -> dict:
    import pyarrow as pa

    schema = pa.schema([
        ("content", pa.string()), ("url", pa.string()), ("timestamp", pa.timestamp("s")), ("dump", pa.string()),
        ("segment", pa.string()), ("image_urls", pa.list_(pa.list_(pa.string()))),
    ])  # fmt: skip
    half = len(rows) // 2
    for k, part in enumerate((rows[:half], rows[half:])):
        n = len(part)
        cols = {
            "content": [t for _, t in part],
            "url": [f"https://www.example{rng.randrange(1000)}.com/{rng.randrange(10**6)}" for _ in range(n)],
            "timestamp": [_date(rng) for _ in range(n)],
            "dump": [rng.choice(["CC-MAIN-2019-30", "CC-MAIN-2021-43", "CC-MAIN-2023-06"]) for _ in range(n)],
            "segment": [str(rng.randrange(10**13)) for _ in range(n)],
            "image_urls": [[[f"https://img.example.com/{rng.randrange(10**6)}.jpg", "alt"]] if rng.random() < 0.3
                           else [] for _ in range(n)],
        }  # fmt: skip
        _write_parquet(out / f"data/train-{k:05d}-of-00002.parquet", cols, schema)
    (out / "README.md").write_text(
        _card("Falcon RefinedWeb", "odc-by", "en", "default", {"train": "data/train-*"}, "tiiuae/falcon-refinedweb"),
        encoding="utf-8",
    )
    return {"config": None, "train_rows": len(rows)}


def build_datasets(out: Path, texts: dict[str, list[str]], *, seed: int = 0, sizes: Sizes = Sizes()) -> dict:
    """The three Hub-layout dataset directories under ``out`` from ``texts`` (``{"ja": [...], "en": [...]}``)."""
    pools = {lang: prose_paragraphs(texts.get(lang, []), lang) for lang in ("ja", "en")}
    info: dict = {"paragraphs": {lang: len(p) for lang, p in pools.items()}}
    rng = random.Random(seed)
    ja = remix(pools["ja"], 2 * sizes.fineweb_docs, rng, (2, 7))
    info["fineweb-2"] = _fineweb(
        out / "fineweb-2", _with_hostile(ja, hostile(pools["ja"], "ja", rng, sizes.huge_line_bytes), rng),
        remix(pools["ja"], sizes.fineweb_test_docs, rng, (2, 7)), rng,
    )  # fmt: skip
    wiki = remix(pools["ja"], 2 * sizes.wikipedia_docs, rng, (6, 14))
    info["wikipedia"] = _wikipedia(
        out / "wikipedia", _with_hostile(wiki, hostile(pools["ja"], "ja", rng, sizes.huge_line_bytes), rng), rng
    )
    en = remix(pools["en"], 2 * sizes.refinedweb_docs, rng, (2, 8))
    info["falcon-refinedweb"] = _refinedweb(
        out / "falcon-refinedweb", _with_hostile(en, hostile(pools["en"], "en", rng, sizes.huge_line_bytes), rng), rng
    )
    return info


# ---------------------------------------------------------------------------------------------------------------
# The model


def build_model(out: Path, tokenizer_model: Path, *, seed: int = 0, sizes: Sizes = Sizes()) -> dict:
    """A random Llama of TinyLlama's shape in miniature with ``tokenizer_model`` (SentencePiece) as its HF tokenizer."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaForCausalLM

    from swallowlib.config import ModelConfig
    from swallowlib.tokenizer.export import export_hf
    from swallowlib.train.model import llama_config

    export_hf(tokenizer_model, out)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    shape = ModelConfig(hidden_size=sizes.hidden_size, num_layers=sizes.num_layers, num_heads=sizes.num_heads,
                        num_kv_heads=sizes.num_kv_heads, intermediate_size=sizes.intermediate_size,
                        max_position_embeddings=sizes.max_position_embeddings, tie_word_embeddings=False)  # fmt: skip
    config = llama_config(shape, sp.get_piece_size(), bos_id=sp.bos_id(), eos_id=sp.eos_id())
    config.use_cache = True  # a released model's config: later stages generate from it
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.save_pretrained(out, safe_serialization=True)
    return {"vocab_size": config.vocab_size, "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Everything


def build(out: Path, *, texts: dict[str, list[str]] | None = None, tokenizer_model: Path | None = None,
          seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """Every stand-in under ``out`` (swapped in as a whole), ``manifest.json`` last.

    ``texts`` defaults to :func:`manual_texts` (the archive cache, or the registries), ``tokenizer_model`` to Llama
    2's ``tokenizer.model`` rebuilt offline; tests pass their own.
    """
    from swallowlib.corpus.fetch import sha256_file
    from swallowlib.provenance import publish_dir, write_json_atomic

    out = Path(out)
    stage = out.with_name(out.name + ".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        if tokenizer_model is None:
            from swallowlib.tokenizer.base import build_llama2_tokenizer

            tokenizer_model = build_llama2_tokenizer(stage / "llama2.model")
        info = {
            "model": build_model(stage / "model", Path(tokenizer_model), seed=seed, sizes=sizes),
            **build_datasets(stage, texts if texts is not None else manual_texts(), seed=seed, sizes=sizes),
        }
        (stage / "llama2.model").unlink(missing_ok=True)
        files = {p.relative_to(stage).as_posix(): sha256_file(p) for p in sorted(stage.rglob("*")) if p.is_file()}
        write_json_atomic(stage / "manifest.json", {"seed": seed, "sizes": asdict(sizes), **info, "files": files})
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    publish_dir(stage, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=paths.ROOT / "data" / "rehearsal", help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(build(args.out, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
