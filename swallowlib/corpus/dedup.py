"""Near-duplicate removal with datatrove's MinHash stages, shingling *characters* (Swallow: 5-grams, 40 × 20).

datatrove's ``MinhashDedupSignature`` shingles the output of a word tokenizer; passing a :class:`CharTokenizer`
(datatrove accepts any ``WordTokenizer`` instance as ``language``) turns its word n-grams into character n-grams.
The four datatrove stages then run unchanged:

1. signatures (one task per input shard) -> 2. buckets (one task per LSH bucket) -> 3. clusters (one task) ->
4. filter: keep one document per cluster, write the rest to ``removed_dir``.

With 40 buckets of 20 hashes, two documents become candidates with probability 1 - (1 - J^20)^40, i.e. about 0.5
at character 5-gram Jaccard J ≈ 0.83 and > 0.99 at J ≥ 0.9. The executor comes from
:mod:`swallowlib.corpus.executors` (local / Slurm / Ray, per ``ExecutorConfig``).

    python -m swallowlib.corpus.dedup INPUT_DIR OUTPUT_DIR WORK_DIR     # local executor, default DedupConfig
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
    _mersenne_prime,
)
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from swallowlib.config import DedupConfig, ExecutorConfig
from swallowlib.corpus.executors import make_executor, run_pipelines
from swallowlib.corpus.filters import SafeJsonlReader, check_apart, metric_total, read_stats, summarise_exclusions

log = logging.getLogger(__name__)

# Shingle normalisation before splitting into characters: datatrove's defaults (lowercase, punctuation -> space,
# digits -> 0, whitespace collapsed) except diacritic stripping, which would turn が into か (NFD drops the
# dakuten) and merge distinct Japanese shingles. Whitespace is then dropped entirely by CharTokenizer, so line
# wrapping and spacing do not change a document's shingles.
SHINGLE_NORM = TextNormConfig(norm_unicode_diacritics=False)


class CharTokenizer(WordTokenizer):
    """A datatrove word tokenizer whose "words" are the non-whitespace characters of the text."""

    def __init__(self) -> None:
        super().__init__("chars")

    def word_tokenize(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(0, len(text))]


def minhash_config(cfg: DedupConfig) -> MinhashConfig:
    """datatrove's MinhashConfig for our DedupConfig (64-bit xxhash, Swallow-style bucket layout)."""
    return MinhashConfig(
        n_grams=cfg.ngram,
        num_buckets=cfg.num_buckets,
        hashes_per_bucket=cfg.hashes_per_bucket,
        seed=cfg.seed,
        norm_config=SHINGLE_NORM,
        hash_config=HashConfig(precision=64, hash_fc="xxhash"),
    )


class CharMinhashDedupSignature(MinhashDedupSignature):
    """``MinhashDedupSignature`` over character n-grams, with a faster, memory-bounded signature computation.

    datatrove materialises a (shingles × hashes) matrix per document: with 800 hashes a 100k-character page
    would need ~640 MB per temporary, and numpy's uint64 ``%`` costs ~8 ns per element. :meth:`get_signature`
    computes exactly the same values (tested) in row chunks, reducing modulo the Mersenne prime 2^61 - 1 with
    shifts and masks (2^61 ≡ 1), about twice as fast.
    """

    name = "🎯 MinHash stage 1 (char shingles)"
    CHUNK_ROWS = 256  # 256 × 800 × 8 bytes: a few MB of buffers, cache-friendly

    def __init__(self, output_folder: str, config: MinhashConfig):
        super().__init__(output_folder, config=config, language=CharTokenizer())

    def get_shingles(self, text: str) -> np.ndarray:
        # unique shingles only: duplicates cannot change a minimum, and this shrinks the matrix work
        return np.unique(super().get_shingles(text)).reshape((-1, 1))

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        a, b = self.parameters
        p = _mersenne_prime
        nh = a.shape[1]
        mins = np.full(nh, np.iinfo(np.uint64).max, dtype=np.uint64)
        rows = min(self.CHUNK_ROWS, len(shingles))
        buf = np.empty((rows, nh), dtype=np.uint64)
        hi = np.empty((rows, nh), dtype=np.uint64)
        ge = np.empty((rows, nh), dtype=bool)
        with np.errstate(over="ignore"):
            for i in range(0, len(shingles), rows):
                x = shingles[i : i + rows]
                k = len(x)
                v, h, g = buf[:k], hi[:k], ge[:k]
                np.multiply(x, a, out=v)  # wraps mod 2^64, exactly as datatrove's (shingles * a + b)
                np.add(v, b, out=v)
                np.right_shift(v, np.uint64(61), out=h)  # v mod p = (v >> 61) + (v & p), minus p once if >= p
                np.bitwise_and(v, p, out=v)
                np.add(v, h, out=v)
                np.greater_equal(v, p, out=g)
                np.subtract(v, p, out=v, where=g)
                np.minimum(mins, v.min(axis=0), out=mins)
        if self.config.hash_config.precision == 32:
            mins = np.bitwise_and(mins, self.config.hash_config.max)
        return [x.tolist() for x in np.split(mins.astype(self.config.hash_config.np_dtype), self.config.num_buckets)]


def run_dedup(
    input_dir: Path,
    output_dir: Path,
    work_dir: Path,
    cfg: DedupConfig,
    executor_cfg: ExecutorConfig,
    removed_dir: Path | None,
) -> dict[str, Any]:
    """Remove near-duplicates from the JSONL shards in ``input_dir`` (written by datatrove's JsonlWriter).

    Writes the kept documents to ``output_dir`` and the removed ones to ``removed_dir`` (default
    ``work_dir/removed``); ``work_dir`` holds signatures, buckets, cluster files and logs. A rerun after a kill
    redoes only the unfinished tasks; the caller empties these directories when the inputs change.
    Returns ``{"docs_in", "chars_in", "docs_removed", "chars_removed", "docs_out", "chars_out", "corrupt_lines",
    "examples"}`` (read from datatrove's stats and the removed files). With ``cfg.enabled`` false the input is
    copied through unchanged by the same pipeline minus the MinHash stages.
    """
    input_dir, output_dir, work = Path(input_dir), Path(output_dir), Path(work_dir)
    removed = Path(removed_dir) if removed_dir else work / "removed"
    check_apart(input_dir, output_dir, work)
    mh = minhash_config(cfg)
    sigs, buckets, clusters, logs = work / "signatures", work / "buckets", work / "clusters", work / "logs"

    final_steps: list[Any] = [SafeJsonlReader(str(input_dir))]
    if cfg.enabled:
        final_steps.append(MinhashDedupFilter(str(clusters), exclusion_writer=JsonlWriter(str(removed))))
    final_steps.append(JsonlWriter(str(output_dir)))
    chain = []
    if cfg.enabled:
        chain += [
            make_executor(
                [SafeJsonlReader(str(input_dir)), CharMinhashDedupSignature(str(sigs), mh)],
                executor_cfg,
                logs / "1_signatures",
            ),
            make_executor(
                [MinhashDedupBuckets(str(sigs), str(buckets), config=mh)],
                executor_cfg,
                logs / "2_buckets",
                tasks=mh.num_buckets,
            ),
            make_executor(
                [MinhashDedupCluster(str(buckets), str(clusters), config=mh)],
                executor_cfg,
                logs / "3_clusters",
                tasks=1,
            ),
        ]
    chain.append(make_executor(final_steps, executor_cfg, logs / "4_filter"))
    # in order, each to completion; tasks an earlier killed run of the same inputs finished are skipped
    run_pipelines(chain, executor_cfg)

    stats = read_stats(logs / "4_filter")
    reader = stats[0]["stats"] if stats else {}
    writer = stats[-1]["stats"] if stats else {}
    rem = summarise_exclusions(removed)
    out = {
        "docs_in": metric_total(reader.get("documents")),
        "chars_in": metric_total(reader.get("doc_len")),
        "docs_removed": rem["docs"],
        "chars_removed": rem["chars"],
        "docs_out": metric_total(writer.get("total")),
        "chars_out": metric_total(writer.get("doc_len")),
        "corrupt_lines": metric_total(reader.get("corrupt_lines")),
        "examples": rem["examples"],
    }
    log.info("dedup: %d -> %d docs (%d near-duplicates removed)", out["docs_in"], out["docs_out"], rem["docs"])
    return out


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    res = run_dedup(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), DedupConfig(), ExecutorConfig(), None)
    print({k: v for k, v in res.items() if k != "examples"})
