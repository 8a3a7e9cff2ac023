"""Metrics of the stage-05 tasks that lm-eval does not have: ROUGE-2 on MeCab words and on the model's own tokens,
corpus chrF / BLEU with MeCab segmentation of Japanese, bits per byte of a reference continuation, and the bootstrap
standard error of these corpus-level scores (lm-eval bootstraps only a fixed list of its own aggregations).

lm-eval calls these through the ``utils.py`` that :mod:`swallowlib.eval.tasks` writes beside the task YAMLs
(``process_results`` per document, an aggregation over the documents). The model-token ROUGE needs the tokenizer of
the checkpoint under evaluation: :mod:`swallowlib.eval.harness` names it in ``SWALLOW_EVAL_TOKENIZER``.

>>> rouge2_f(["東京 の 天気"], ["東京 の 天気"], lambda s: s.split())  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence

#: The environment variable that names the tokenizer directory of the checkpoint being evaluated.
TOKENIZER_ENV = "SWALLOW_EVAL_TOKENIZER"


@functools.cache
def _tagger():
    """One MeCab tagger (fugashi + unidic-lite) in wakati mode; building it costs ~0.1 s."""
    import fugashi

    return fugashi.Tagger("-Owakati")


def words(text: str, lang: str) -> list[str]:
    """Words: MeCab (unidic-lite) for Japanese, whitespace-separated for English (as tokenizer.metrics counts)."""
    if lang == "ja":
        return _tagger().parse(text).split()
    return text.split()


@functools.cache
def _model_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def model_tokens(text: str) -> list[str]:
    """The pieces of ``text`` under the tokenizer of the checkpoint being evaluated (XL-Sum's suspected scoring)."""
    path = os.environ.get(TOKENIZER_ENV)
    if not path:
        raise RuntimeError(f"{TOKENIZER_ENV} is not set: the model-token ROUGE needs the checkpoint's tokenizer")
    tok = _model_tokenizer(path)
    return [str(i) for i in tok(text, add_special_tokens=False)["input_ids"]]


class _Tokenizer:
    """The ``tokenize`` interface rouge_score's RougeScorer accepts in place of its English-only tokenizer."""

    def __init__(self, fn: Callable[[str], list[str]]):
        self.fn = fn

    def tokenize(self, text: str) -> list[str]:
        return self.fn(text)


def rouge2_f(pred: str, ref: str, tokenize: Callable[[str], list[str]]) -> float:
    """ROUGE-2 F1 of one prediction against one reference, on the units ``tokenize`` returns (rouge_score)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge2"], tokenizer=_Tokenizer(tokenize))
    return scorer.score(ref, pred)["rouge2"].fmeasure


def first_line(text: str) -> str:
    """The first non-empty line of a generation: the answer, whatever blank lines the model opens with."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def synopsis_results(doc: dict, results: Sequence[str]) -> dict:
    """Per-document ROUGE-2 of a generated synopsis on words and on model tokens (lm-eval averages them)."""
    pred = first_line(results[0])
    ref = doc["target"]
    lang = doc["lang"]
    return {
        "rouge2_words": rouge2_f(pred, ref, lambda s: words(s, lang)),
        "rouge2_tokens": rouge2_f(pred, ref, model_tokens),
    }


def translation_results(doc: dict, results: Sequence[str]) -> dict:
    """(reference, prediction, target language) per document; scored at corpus level by the aggregations below."""
    item = (doc["target"], first_line(results[0]), doc["target_lang"])
    return {"chrf": item, "bleu": item}


def corpus_chrf(items: Sequence[tuple[str, str, str]]) -> float:
    """sacrebleu's corpus chrF (character 6-grams, whitespace ignored: Japanese needs no segmentation)."""
    import sacrebleu

    refs, preds, _ = zip(*items, strict=True)
    return sacrebleu.corpus_chrf(list(preds), [list(refs)]).score


def corpus_bleu(items: Sequence[tuple[str, str, str]]) -> float:
    """sacrebleu's corpus BLEU; Japanese hypotheses and references are segmented with MeCab first (tokenize none)."""
    import sacrebleu

    refs, preds, langs = zip(*items, strict=True)
    if langs[0] == "ja":
        refs = [" ".join(words(r, "ja")) for r in refs]
        preds = [" ".join(words(p, "ja")) for p in preds]
        return sacrebleu.corpus_bleu(list(preds), [list(refs)], tokenize="none").score
    return sacrebleu.corpus_bleu(list(preds), [list(refs)]).score


def reference_results(doc: dict, results: Sequence[tuple[float, bool]]) -> dict:
    """Log-likelihood of the reference given the prompt, with its UTF-8 length, for bits per byte."""
    ll, _ = results[0]
    return {"bits_per_byte": (ll, len(doc["target"].encode("utf-8")))}


def bits_per_byte(items: Sequence[tuple[float, int]]) -> float:
    """-Σ log-likelihood / Σ bytes / ln 2: tokenizer-independent, comparable across vocabularies."""
    lls, nbytes = zip(*items, strict=True)
    return -sum(lls) / sum(nbytes) / math.log(2)


def byte_perplexity(items: Sequence[tuple[float, int]]) -> float:
    """exp(-Σ log-likelihood / Σ bytes): lm-eval's ``weighted_perplexity``, the bpb tasks' second metric."""
    lls, nbytes = zip(*items, strict=True)
    return math.exp(-sum(lls) / sum(nbytes))


#: Corpus-level aggregations of the local tasks, by metric name, whose standard error lm-eval reports as "N/A";
#: :mod:`swallowlib.eval.harness` bootstraps them from the per-document items lm-eval stores in its samples.
CORPUS_AGGREGATIONS: dict[str, Callable[[Sequence], float]] = {
    "bits_per_byte": bits_per_byte,
    "byte_perplexity": byte_perplexity,
    "chrf": corpus_chrf,
    "bleu": corpus_bleu,
}
#: lm-eval bootstraps its own BLEU / chrF with at most this many resamples (each one is a corpus score): same here.
TEXT_MAX_ITERS = 100


def bootstrap_stderr(f: Callable[[Sequence], float], items: Sequence, iters: int) -> float | None:
    """Bootstrap standard error of ``f(items)``, resampling the documents (items) with replacement ``iters`` times.

    The resamples are exactly those of ``lm_eval.api.metrics.bootstrap_stderr`` (chunks of at most 1,000, chunk
    ``i`` drawn from ``random.Random(i)``), so the same items give the same value anywhere. Its wrapper is not called
    because it forks a pool of every core for each metric (a fork of a process holding torch threads, ~250 times per
    profile) and prints a line and a progress bar each time; the seeded worker it maps over the chunks is.
    None for fewer than two documents or two resamples (no spread to measure; lm-eval says "N/A").
    """
    from lm_eval.api.metrics import _bootstrap_internal, sample_stddev

    if iters < 2 or len(items) < 2:
        return None
    chunk = min(1000, iters)
    reps: list[float] = []
    for i in range(iters // chunk):
        reps.extend(_bootstrap_internal(f, chunk)((i, list(items))))
    return sample_stddev(reps)
