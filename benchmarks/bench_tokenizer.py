"""Stage 02 benchmarks: batched tokenization throughput of the exported HF tokenizer vs SentencePiece, same texts.

The profile's expanded tokenizer (``runs/<profile>/tokenizer/expanded``; the stage is built first when missing) encodes
~2 M characters of distinct Japanese / English training documents (no text repeats, so no variant profits from a
cache warmed by an earlier copy), in batches of 1,000. Each trial loads the tokenizer afresh (load time excluded) and
makes one pass; a variant's figure is the best of 3 trials (the machines are noisy; best-of is the least noisy
estimate of what the code can do):

* ``sentencepiece`` (baseline): ``SentencePieceProcessor.encode(batch, add_bos=True)``, which threads over the batch;
* ``tokenizers encode_batch_fast``: the exported ``tokenizer.json`` in the HF Rust backend, batched and parallel, no
  offsets (the ids a training data pipeline needs);
* ``transformers __call__``: ``AutoTokenizer(batch)``, which also builds attention masks and Python lists.

``TOKENIZERS_PARALLELISM`` is forced on here: Make exports it off so that forked data workers do not deadlock, but a
benchmark of the batched API must let it use the cores SentencePiece uses. Run through ``make bench`` /
``python -m swallowlib.bench --profile tiny tokenizer.throughput``.
"""

from __future__ import annotations

import os
import time

os.environ["TOKENIZERS_PARALLELISM"] = "true"  # before tokenizers is imported (see the docstring)

import sentencepiece as spm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from swallowlib import paths  # noqa: E402
from swallowlib.bench import PROFILE, row  # noqa: E402
from swallowlib.config import load_config  # noqa: E402
from swallowlib.corpus import shards  # noqa: E402
from swallowlib.tokenizer import export, stage  # noqa: E402

MIN_CHARS = 2_000_000
BATCH = 1000


def _texts(lang: str) -> list[str]:
    out, n = [], 0
    for t in shards.iter_column(paths.corpus_split_files(PROFILE, lang, "train")):
        if n >= MIN_CHARS:
            break
        out.append(t)
        n += len(t)
    return out


def _best_of(make, batches: list[list[str]], repeats: int = 3) -> float:
    """Best wall time of one pass over ``batches`` by a freshly made encoder (``make()`` -> batch function)."""
    best = float("inf")
    for _ in range(repeats):
        fn = make()
        fn(["warm-up: thread pools 起動"])  # a text that occurs nowhere in the corpus
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_throughput() -> list[dict]:
    cfg = load_config(PROFILE)
    if not stage.is_up_to_date(cfg):
        stage.build_tokenizers(cfg)
    d = stage.tokenizer_dir(PROFILE)

    def sentencepiece():
        sp = spm.SentencePieceProcessor(model_file=str(d / "expanded.model"))
        return lambda b: sp.encode(b, add_bos=True)

    def backend():
        fast = Tokenizer.from_file(str(d / "expanded" / "tokenizer.json"))
        return lambda b: [e.ids for e in fast.encode_batch_fast(b)]

    def transformers_call():
        hf = export.load_hf(d / "expanded")
        return lambda b: hf(b)["input_ids"]

    variants = [
        ("sentencepiece encode(batch)", sentencepiece, True),
        ("tokenizers encode_batch_fast", backend, False),
        ("transformers __call__", transformers_call, False),
    ]
    rows = []
    for lang in ("ja", "en"):
        texts = _texts(lang)
        chars = sum(map(len, texts))
        batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
        # Same ids from every variant, or the comparison would be meaningless.
        ref = sentencepiece()(batches[0][:200])
        for name, make, _ in variants[1:]:
            assert make()(batches[0][:200]) == ref, f"{name} disagrees with SentencePiece"
        for name, make, base in variants:
            dt = _best_of(make, batches)
            rows.append(row(f"tokenizer.throughput.{lang}", name, "chars/s", chars / dt, "chars/s", baseline=base))
    return rows


BENCHMARKS = [bench_throughput]
