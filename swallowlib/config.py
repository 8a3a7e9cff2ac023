"""The project's one typed configuration, loaded from ``configs/<profile>.yaml``.

Notebooks, Make and the command-line entry points all read the same file through :func:`load_config`.
Loading validates everything: an unknown key, a missing required key or a value of the wrong type or range
raises :class:`ConfigError` with one line naming the file and the dotted key.

    python -m swallowlib.config configs/tiny.yaml      # validate and print the resolved config

>>> cfg = load_config("configs/smoke.yaml")  # doctest: +SKIP
>>> cfg.corpus.filters["ja"].min_chars        # doctest: +SKIP
400
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from swallowlib import paths


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file and the key."""


# ---------------------------------------------------------------------------------------------------------------
# Stage 01: corpus


#: The corpus quality rule sets (``QualityFilters.rule_set``):
#: ``swallow-v1``: Swallow Corpus Version 1's released rules, exactly (:mod:`swallowlib.corpus.swallow_rules`);
#: ``technical``: Gopher-style units adapted to technical documentation (:mod:`swallowlib.corpus.filters`).
RULE_SETS = ("swallow-v1", "technical")

#: Threshold keys only one rule set has; the other rejects them (a config error names the key and the fix).
RULE_SET_ONLY: dict[str, dict[str, str]] = {
    "swallow-v1": {
        "max_dup_sentence_frac": "the technical rule set has no duplicate-sentence count rule",
        "min_japanese_chars": "the technical rule set has no Japanese-letter count rule",
    },
    "technical": {
        "max_dup_para_frac": "swallow-v1 has no blank-line paragraphs: its paragraphs are lines, see max_dup_line_frac",
    },
}


@dataclass(frozen=True)
class QualityFilters:
    """The corpus quality rules (docs/study.md); a document is dropped when any enabled rule fires.

    ``rule_set`` fixes the definitions (what a line, a sentence, an n-gram, a Japanese character is); the other
    fields are thresholds. The defaults are the paper's rules: ``swallow-v1`` with Swallow's released thresholds.
    ``technical`` with the same numbers is the Gopher-style variant the CPU profiles adapt to technical text.
    ``None`` disables a rule. Fractions are in [0, 1]; lengths are in characters. A threshold key only the other
    rule set uses (:data:`RULE_SET_ONLY`) must keep its default.
    """

    rule_set: Literal["swallow-v1", "technical"] = "swallow-v1"
    min_chars: int | None = 400
    # swallow-v1: duplicate paragraphs, where a paragraph is a line (blank lines included); technical: duplicate
    # non-blank lines
    max_dup_line_frac: float | None = 0.30
    max_dup_para_frac: float | None = 0.30  # technical only: duplicate blank-line-separated paragraphs
    max_dup_sentence_frac: float | None = 0.30  # swallow-v1 only: duplicate sentences / sentences
    max_dup_line_char_frac: float | None = 0.20  # characters in duplicate lines (swallow-v1: paragraphs) / characters
    max_dup_sentence_char_frac: float | None = 0.20  # characters in duplicate sentences / characters
    # Top n-gram fraction, n = 2, 3, 4 (swallow-v1: character n-grams, occurrences of the most frequent / all;
    # technical: MeCab-word n-grams, characters covered).
    max_top_ngram_char_frac: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # Duplicate n-gram fraction, n = 5 … 10 (swallow-v1: distinct character n-grams seen more than once / distinct
    # n-grams; technical: characters covered by repeated MeCab-word n-grams).
    max_dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    min_hiragana_frac: float | None = 0.2
    max_katakana_frac: float | None = 0.5
    min_japanese_frac: float | None = 0.5  # swallow-v1: over all characters; technical: over non-whitespace
    min_japanese_chars: int | None = 400  # swallow-v1 only: Japanese letters in the document
    min_avg_sentence_chars: float | None = 20
    max_avg_sentence_chars: float | None = 90
    max_sentence_chars: int | None = 200
    max_ellipsis_sentence_frac: float | None = 0.2
    max_ng_word_char_frac: float | None = 0.05  # a document is dropped when the fraction is >= this
    ng_words: list[str] = field(default_factory=list)  # empty: the built-in list in swallowlib.corpus.filters

    def __post_init__(self) -> None:
        if self.rule_set not in RULE_SETS:
            raise ValueError(f"rule_set: expected one of {', '.join(RULE_SETS)}, got {self.rule_set!r}")
        for key, why in foreign_thresholds(self.rule_set).items():
            default = next(f.default for f in dataclasses.fields(self) if f.name == key)
            if getattr(self, key) != default:
                raise ValueError(
                    f"{key}: not a threshold of rule_set {self.rule_set} ({why}); "
                    f"leave it out or set rule_set: {_other(self.rule_set)}"
                )


def _other(rule_set: str) -> str:
    return next(r for r in RULE_SETS if r != rule_set)


def foreign_thresholds(rule_set: str) -> dict[str, str]:
    """Threshold keys ``rule_set`` does not use (the other rule set's own keys), with the reason."""
    return RULE_SET_ONLY[_other(rule_set)]


def default_filters(lang: str) -> QualityFilters:
    """A language's rules when a profile names none: the paper's (swallow-v1) for Japanese; for other languages the
    technical rule set (swallow-v1 is defined for Japanese text only; its Japanese-script rules are then skipped)."""
    return QualityFilters() if lang == "ja" else QualityFilters(rule_set="technical")


@dataclass(frozen=True)
class DedupConfig:
    """MinHash near-duplicate removal over character n-grams (Swallow: 5-grams, 40 buckets × 20 hashes)."""

    enabled: bool = True
    ngram: int = 5
    num_buckets: int = 40
    hashes_per_bucket: int = 20
    seed: int = 1


@dataclass(frozen=True)
class DecontamConfig:
    """How evaluation text is kept out of every training split."""

    min_chars: int = 20  # eval segments shorter than this are matched exactly only as whole texts
    near_dup_jaccard: float = (
        0.7  # character 5-gram Jaccard at/above which an eval text counts as a near-duplicate
    )


@dataclass(frozen=True)
class EvalSetsConfig:
    """Sizes of the small evaluation sets cut from the held-out (test) split."""

    parallel_pairs: int = 2000  # held-out translation pairs
    synopsis_pairs: int = 1000  # DDTP synopsis <- long description pairs per language
    faq: bool = True  # Debian FAQ question/answer pairs (both languages)


@dataclass(frozen=True)
class LocalSource:
    """A directory of the user's own ``.txt`` / ``.jsonl`` / ``.parquet`` files."""

    name: str
    path: str
    language: Literal["ja", "en"]
    licence: str
    text_field: str = "text"  # for .jsonl/.parquet


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face ``datasets`` id, streamed (GPU profiles; never reached offline)."""

    name: str
    dataset: str
    language: Literal["ja", "en"]
    licence: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    max_docs: int | None = None  # documents read from this source (split evenly over its data files)
    max_chars: int | None = None  # characters kept from this source, after cleaning (split like max_docs)


@dataclass(frozen=True)
class ExecutorConfig:
    """The datatrove executor the filter/dedup pipeline runs on."""

    kind: Literal["local", "slurm", "ray"] = "local"
    workers: int = 2  # parallel local processes
    tasks: int = 2  # shards the pipeline is split into
    options: dict[str, Any] = field(
        default_factory=dict
    )  # passed to the Slurm/Ray executor (partition, time, …)


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of split groups (packages / pages) held out; the rest is train."""

    valid: float = 0.02
    test: float = 0.03
    seed: int = 0


@dataclass(frozen=True)
class CorpusConfig:
    """Stage 01: which sources, how they are filtered, split and decontaminated."""

    sources: list[str]  # names from swallowlib.corpus.sources.CATALOGUE
    parallel_sources: list[str] = field(default_factory=list)  # their aligned pairs form the parallel set
    eval_sources: list[str] = field(default_factory=list)  # used only for evaluation sets, never for training
    local: list[LocalSource] = field(default_factory=list)
    hub: list[HubSource] = field(default_factory=list)
    max_docs_per_source: int | None = None  # cap per source and language (smoke profile)
    max_pairs_per_source: int | None = None
    nfkc: dict[str, bool] = field(default_factory=lambda: {"ja": True, "en": False})
    filters: dict[str, QualityFilters] = field(default_factory=dict)  # per language
    # Also run the paper's rules (QualityFilters defaults: swallow-v1, Swallow's thresholds) on the Japanese documents,
    # for the report only, so a profile with other rules shows what the paper's would have kept.
    compare_paper_filters: bool = True
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    eval: EvalSetsConfig = field(default_factory=EvalSetsConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


# ---------------------------------------------------------------------------------------------------------------
# Stage 02: tokenizer


@dataclass(frozen=True)
class TokenizerConfig:
    """Stage 02: the base tokenizer, the Japanese tokenizer, the Swallow-style merge, and the analysis tokenizers."""

    base: Literal["tiny", "llama2"] = "tiny"  # tiny: an English SentencePiece trained here with Llama 2's settings
    base_vocab: int = 8000  # pieces of the tiny base (ignored for llama2)
    ja_vocab: int = 4000  # pieces of the Japanese SentencePiece merged into the base
    ja_nfkc: bool = True  # NFKC normaliser for the Japanese tokenizer (the paper's choice)
    pad_to: int = 8  # merged vocabulary padded to a multiple of this
    max_train_lines: int = 200_000  # lines sampled (with the seed) to train each SentencePiece model
    # tiny base: the share of its training lines that are Japanese. Llama 2 saw a little Japanese (~0.1 % of its data)
    # and holds ~700 CJK pieces; a base with none starts from byte fallback and unused byte rows instead.
    base_ja_share: float = 0.0
    analysis_llama2: bool = True  # also rebuild Llama 2 exactly and merge a Japanese tokenizer into it (analysis)
    analysis_ja_vocab: int = 16_000  # the paper's Japanese tokenizer size, for the Llama 2 analysis merge
    analysis_mistral: bool = True  # Mistral v1 (from mistral-common) in the efficiency comparison
    coverage: bool = True  # every kana and the jōyō kanji (KANJIDIC2 in jamdict-data) as single pieces of expanded
    # Beyond the paper: also expand by continued BPE on the base's own segmentation (reachable pieces only), at the
    # same number of added pieces as the naive merge, and compare the two (swallowlib/tokenizer/continued.py).
    continued: bool = True
    out_of_domain: bool = True  # measure on Japanese from other domains (literature, a tutorial, an essay)
    eval_max_docs: int = 400  # held-out documents per domain in the efficiency table
    seed: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Stage 03: embedding init


@dataclass(frozen=True)
class FocusConfig:
    """The FOCUS-style method's auxiliary embedding space (PPMI-SVD over the expanded tokenizer's Japanese tokens)."""

    dim: int = 64  # dimensions of the auxiliary vectors
    window: int = 4  # co-occurrence window, tokens each side
    min_count: int = 3  # occurrences a token needs to get an auxiliary vector
    temperature: float = 0.1  # sparsemax(cosine / temperature)
    max_lines: int = 100_000  # Japanese training lines (seeded sample) the space is trained on


@dataclass(frozen=True)
class EmbeddingInitConfig:
    """Stage 03: the base model, the resize to the expanded vocabulary, and the init methods compared."""

    base_run: str = "base"  # CPU profiles: the train run pre-training the base (GPU: train.model.pretrained)
    methods: list[Literal["mean-of-pieces", "hf-mean", "random", "focus"]] = field(
        default_factory=lambda: ["mean-of-pieces", "hf-mean", "random", "focus"]
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # init seeds = data-order seeds of the short CPT (paired)
    eval_max_docs: int = 100  # held-out documents per language for bits per character
    eval_max_chars: int = 200_000  # … and at most this many characters per language
    short_cpt_tokens: int = 60_000  # tokens of the short CPT per method and seed (0: step 0 only)
    examples: int = 8  # new tokens shown with the base pieces they were averaged from
    prompts: list[str] = field(
        default_factory=lambda: ["The kernel", "To install the package,", "In this chapter we"]
    )  # greedy continuations of the base model, to show it is a language model
    focus: FocusConfig = field(default_factory=FocusConfig)


# ---------------------------------------------------------------------------------------------------------------
# Stage 04: training (the engine in swallowlib/train; also trains the tiny English base for stage 03)


@dataclass(frozen=True)
class ModelConfig:
    """The Llama a ``scratch`` run builds: tiny sizes for CPU profiles, or the architecture of ``pretrained``.

    With ``pretrained`` set (an HF directory or Hub id; GPU profiles), the sizes below are ignored and a scratch
    run takes that model's architecture with fresh weights; runs that start from it name it in ``init``.
    """

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None: = num_heads (multi-head attention, as Llama 2 7B)
    intermediate_size: int = 688  # SwiGLU width, ~8/3 x hidden as in Llama
    max_position_embeddings: int = 2048  # must be >= train.seq_len
    tie_word_embeddings: bool = False  # Llama 2 / Swallow: untied input and output embeddings
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    pretrained: str | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with decoupled weight decay on matrices only, and a cosine schedule with warm-up to a floor
    (docs/study.md)."""

    lr: float = 1e-4  # peak learning rate
    min_lr_ratio: float = 0.033  # floor = lr x this (Swallow 7B: 1e-4 -> 3.3e-6)
    warmup_steps: int = 1000  # linear warm-up, optimizer steps
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient L2 norm; 0 disables clipping


@dataclass(frozen=True)
class PeftConfig:
    """LoRA on the projection matrices plus trainable embedding/LM-head rows for the new vocabulary only."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    train_new_rows: bool = True  # rows >= the base tokenizer's size in embed_tokens and lm_head are trained


@dataclass(frozen=True)
class RunConfig:
    """One training run of the experiment matrix (docs/study.md).

    ``init``: ``scratch`` (random weights, train.model sizes), ``run:<name>`` (the final weights of another run),
    ``init:<method>`` (``runs/<profile>/embedding_init/<method>``, written by stage 03), or an HF directory / Hub id.
    ``mix``: token ratios of the sources ``ja``, ``en`` and ``parallel``; they must sum to 1.
    The optional keys override the shared ``train`` settings for this run.
    """

    tokens: int  # token budget (training tokens, all processes together)
    init: str = "scratch"
    # "base" or "expanded" (stage 02), or a tokenizer directory (the study's variants, swallowlib/study.py)
    tokenizer: str = "base"
    mix: dict[str, float] = field(default_factory=lambda: {"ja": 0.9, "en": 0.1})
    lr: float | None = None
    min_lr_ratio: float | None = None
    warmup_steps: int | None = None
    peft: bool = False
    embedding_warmup_steps: int | None = None
    seed: int | None = None
    checkpoint_fractions: list[float] | None = None  # milestones of this run (default: train.checkpoint_fractions)
    # Tokens of the mix's sequence order to skip first: a run continuing another (init run:<name>) reads on where that
    # run stopped instead of seeing its data again. A multiple of train.seq_len.
    skip_tokens: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Stage 04: shared training settings and the runs of the experiment matrix."""

    model: ModelConfig = field(default_factory=ModelConfig)
    seq_len: int = 256  # tokens per training sequence (packed, no padding)
    micro_batch_size: int = 8  # sequences per process per forward/backward
    # Global batch: sequences per optimizer step, all processes together. It is the same on any process count: the
    # gradient accumulation is derived, batch_size / (micro_batch_size x processes), and must divide evenly.
    batch_size: int = 8
    processes: int = 1  # processes (GPUs) the profile is planned for: the plan's and the memory estimate's default
    # FSDP2 full shard (one unit per decoder layer + the root) when launched on several processes, or on one to
    # rehearse the sharded path; DDP otherwise. Resume checkpoints are then sharded (one file per process).
    fsdp: bool = False
    # Recompute each decoder layer in the backward: activation memory of one layer instead of all, ~1/3 more compute.
    activation_checkpointing: bool = False
    # The accelerator memory each process has, GiB (e.g. 80 for an 80 GB card): the memory estimate of every run must
    # fit it with 15 % to spare (`make plan`, `make preflight`). None: CPU profiles, not checked.
    device_memory_gib: float | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: fp32 on CPU, bf16 (autocast) on GPU
    compile: bool = False  # torch.compile the forward + loss
    checkpoint_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])  # of the token budget
    save_every_steps: int = 100  # periodic resume checkpoint, optimizer steps
    keep_last: int = 2  # periodic checkpoints kept (milestones are always kept)
    log_every_steps: int = 10
    eval_sequences: int = 16  # validation sequences per source, scored at every milestone; 0 disables
    num_proc: int = 2  # worker processes that tokenise the corpus splits into the token cache
    # Tokenise a training split only as far as a run reads it: the tokens the run draws from each source (its share
    # of the run's budget) x this margin, as a proportional prefix of every Parquet shard. None: whole splits.
    data_margin: float | None = None
    # Each parallel pair becomes one document per template, so both translation directions are seen.
    parallel_template: list[str] = field(
        default_factory=lambda: ["English: {en}\nJapanese: {ja}", "Japanese: {ja}\nEnglish: {en}"]
    )
    peft: PeftConfig = field(default_factory=PeftConfig)
    embedding_warmup_steps: int = 0  # first N optimizer steps train only embed_tokens and lm_head
    runs: dict[str, RunConfig] = field(default_factory=dict)


def run_optimizer(tc: TrainConfig, rc: RunConfig) -> OptimizerConfig:
    """One run's optimizer: ``train.optimizer`` with the run's own ``lr`` / ``min_lr_ratio`` / ``warmup_steps``."""
    own = {k: getattr(rc, k) for k in ("lr", "min_lr_ratio", "warmup_steps") if getattr(rc, k) is not None}
    return dataclasses.replace(tc.optimizer, **own)


def steps_for_tokens(tokens: int, batch_size: int, seq_len: int) -> int:
    """Optimizer steps that cover a token budget (the last step may overshoot by < one step).

    >>> steps_for_tokens(400_000, 8, 256)
    196
    """
    return max(1, math.ceil(tokens / (batch_size * seq_len)))


def grad_accum(tc: TrainConfig, processes: int) -> int:
    """Micro-batches per optimizer step on ``processes`` processes, so that the global batch stays ``batch_size``.

    >>> grad_accum(TrainConfig(micro_batch_size=4, batch_size=1024), 16)
    16
    """
    per_step = tc.micro_batch_size * processes
    if tc.batch_size % per_step:
        raise ConfigError(
            f"train.batch_size {tc.batch_size} is not a multiple of micro_batch_size x processes "
            f"({tc.micro_batch_size} x {processes}); change the process count or train.micro_batch_size"
        )
    return tc.batch_size // per_step


def run_checkpoint_fractions(tc: TrainConfig, rc: RunConfig) -> list[float]:
    """One run's milestones (fractions of its token budget): its own, else ``train.checkpoint_fractions``."""
    return list(rc.checkpoint_fractions or tc.checkpoint_fractions)


# ---------------------------------------------------------------------------------------------------------------
# Stage 05: evaluation (lm-evaluation-harness; swallowlib/eval)

#: The offline tasks stage 05 builds from the held-out files of stage 01 and, for bpb_ja_ood, the out-of-domain
#: Japanese texts of stage 02 (swallowlib/eval/tasks.py).
EVAL_TASKS = ("bpb_ja", "bpb_en", "bpb_ja_ood", "translate_en_ja", "translate_ja_en", "faq_ja", "faq_en",
              "synopsis_ja", "synopsis_en", "jmdict_ja_en")
#: The reference log-likelihood half of the translation and FAQ tasks (bits per byte of the reference translation /
#: the right answer given the prompt): cheap, so a profile can score it at every milestone (``milestone_tasks``).
REF_TASKS = ("translate_en_ja_ref", "translate_ja_en_ref", "faq_ja_ref", "faq_en_ref")


@dataclass(frozen=True)
class EvalConfig:
    """Stage 05: which offline tasks, how many examples, which checkpoints; lm-eval registry tasks on GPU profiles."""

    # Names from EVAL_TASKS. jmdict_ja_en is opt-in: it needs the jamdict-data sdist (fetched by stage 02's coverage).
    # bpb_ja_ood: Japanese of other domains (literature, a tutorial, an essay), at most max_examples documents.
    tasks: list[str] = field(default_factory=lambda: [t for t in EVAL_TASKS if t != "jmdict_ja_en"])
    # Tasks for the milestones before a run's last checkpoint (the score-vs-tokens curves; those also in ``tasks``);
    # the last one gets all of ``tasks``. Bits per byte is cheap (log-likelihood only) and the measure that compares
    # vocabularies. bpb_ja_ood needs the out-of-domain texts of stage 02 (tokenizer.out_of_domain, cached in data/).
    milestone_tasks: list[str] = field(default_factory=lambda: ["bpb_ja", "bpb_en", "bpb_ja_ood"])
    max_examples: int = 40  # documents / pairs / questions per task (a seeded sample of the held-out file)
    bpb_max_chars: int = 2000  # each held-out document is cut to this many characters (bpb_ja_ood: packed up to)
    # Drop the lines of the bits-per-byte documents found verbatim or near-verbatim in a training split, by the rules
    # and thresholds of corpus.decontam (the test split is cut by page within the same packages, so ~20 % of it is
    # shared boilerplate); the overlap per task goes to runs/<p>/eval/tasks/heldout_overlap.json.
    bpb_decontam: bool = True
    max_chars: int = 120  # translation pairs and synopses longer than this (characters, either side) are left out
    description_chars: int = 400  # synopsis task: the package description is cut to this many characters
    faq_answer_chars: int = 200  # FAQ answers (the choices) are cut to this many characters
    faq_choices: int = 4  # the right answer + distractors drawn from other answers in the same language
    shots: dict[str, int] = field(default_factory=lambda: {"translate": 4, "synopsis": 1, "faq": 0})
    max_gen_tokens: int = 64  # greedy generation stops at a newline or after this many tokens
    batch_size: int = 8  # sequences per forward pass
    bootstrap_iters: int = 100  # lm-eval's bootstrap for the stderr of non-mean metrics (0: no stderr at all)
    runs: list[str] | None = None  # runs to evaluate (None: every run in train.runs)
    milestones: bool = True  # every milestone of a run (False: its final checkpoint only)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # GPU profiles: the paper's tasks by their lm-eval registry names -> shots (checked against the registry).
    harness_tasks: dict[str, int] = field(default_factory=dict)
    seed: int = 0

    def resolved_device(self) -> str:
        """``device``, with ``auto`` = the GPU when there is one (where stages 03 and 05 score models)."""
        if self.device != "auto":
            return self.device
        import torch  # here, not at the top: the config is read by processes that never load torch

        return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------------------------------------------------
# Stage 06: analysis


@dataclass(frozen=True)
class AnalysisConfig:
    """Stage 06: the constants of the findings table's decision rules (swallowlib/verdict.py).

    Margins are relative changes of the measure (bits per byte: a fraction of the reference run's value). They come
    from what the paper itself calls small: a reader who disagrees changes them here and the verdicts follow.
    """

    z: float = 2.0  # an interval's half-width in standard errors (2 = a two-sided ~95 % interval)
    # "English is largely retained": the paper calls its EN average falling 2.3-5.0 points (about 4-10 % of the
    # score; 0.490 -> 0.440 at 7B, -2.3 points at 70B) retained. We allow English bits per byte to rise by the low
    # end, 5 %. A rise in bits per byte is not a fall in task score; the margin is a judgement, stated.
    en_retained_margin: float = 0.05
    # "Expansion costs little" (VE no worse than NVE): the paper's JA average of VE is below NVE's by 1.2 points of
    # 0.406 (3.0 %) at 7B, 0.6 of 0.469 (1.3 %) at 13B, 0.1 of 0.554 (0.2 %) at 70B, and it calls that small.
    expansion_cost_margin: float = 0.03
    # "... without hurting the other tasks" (parallel text) and "keeps English intact" (init at step 0): the paper
    # puts no number on it; we use the same size as the cost it calls small above (3 %).
    no_harm_margin: float = 0.03
    # A measurement without any standard error (training throughput medians): ±this fraction of its value.
    rel_floor: float = 0.01
    # chrF/100 and ROUGE-2 below this for every compared run: the models do not generate that text yet.
    gen_floor: float = 0.02


# ---------------------------------------------------------------------------------------------------------------
# `make study`: the experiments beyond the default reproduce (swallowlib/study.py)


@dataclass(frozen=True)
class StudyConfig:
    """The runs that answer the threats to the study's conclusions; they reuse the profile's corpus, tokenizers, base
    and runs, and join the same findings table (docs/study.md, "The extended study")."""

    seeds: list[int] = field(default_factory=list)  # extra training seeds (data order, random init) of seed_runs
    seed_runs: list[str] = field(default_factory=list)  # train.runs repeated with each seed as <run>-s<seed>
    # cpt-nve+chars: the base vocabulary plus only the single characters of the expansion (kana, kanji; no
    # multi-character pieces), mean-of-pieces init: how much of expansion's advantage the characters alone bring.
    chars_arm: bool = False
    # cpt-ve-v<f>: tokenizer.ja_vocab x f merged into the base (naive merge + coverage, as expanded), each a CPT run
    # with cpt-ve's data and init method; f = 1 is cpt-ve itself.
    vocab_sweep: list[float] = field(default_factory=list)
    # cpt-ve-long / cpt-nve-long: cpt-ve and cpt-nve continued (their final weights, the data where they stopped, a new
    # warm-up and cosine) to this many times their tokens in all. 0: off.
    longer: float = 0.0
    # scratch-ve-total: the scratch run at the CPT model's total tokens (the base run's + cpt-ve's).
    scratch_total: bool = False


# ---------------------------------------------------------------------------------------------------------------
# The whole file


@dataclass(frozen=True)
class Config:
    """One profile's configuration (``configs/<profile>.yaml``)."""

    profile: str
    corpus: CorpusConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    embedding_init: EmbeddingInitConfig = field(default_factory=EmbeddingInitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    seed: int = 0
    offline: bool = True  # False only for profiles that name Hub resources (corpus.hub, Hub model ids)
    path: str = ""  # filled in by load_config: the file it came from


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, src: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and build dataclasses; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{src}: {key}: expected {expected}, got {value!r}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, key, src)
            except ConfigError as e:
                errors.append(e)
        raise bad(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad(f"a mapping ({tp.__name__})")
        return _build(tp, value, key, src)
    if origin is list:
        if not isinstance(value, list):
            raise bad("a list")
        return [_coerce(v, args[0], f"{key}[{i}]", src) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("a mapping")
        kt, vt = args
        return {
            _coerce(k, kt, f"{key}.{k}", src): _coerce(v, vt, f"{key}.{k}", src) for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise bad(_type_name(tp))  # pragma: no cover - an annotation this loader does not know


def _build(cls: type, data: dict, prefix: str, src: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{src}: {where}: unknown key (expected one of: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{src}: {key}: required key is missing")
    if cls is QualityFilters:  # a threshold the chosen rule set does not use is an error, not silently ignored
        rule_set = kwargs.get("rule_set", QualityFilters.rule_set)
        for name, why in foreign_thresholds(rule_set).items():
            if name in data:
                where = f"{prefix}.{name}" if prefix else name
                raise ConfigError(
                    f"{src}: {where}: not a threshold of rule_set {rule_set} ({why}); "
                    f"remove the key or set rule_set: {_other(rule_set)}"
                )
    obj = cls(**kwargs)
    _check_ranges(obj, prefix, src)
    return obj


def _check_fractions(fr: list[float], fail) -> None:
    """Milestones: increasing fractions of the token budget in (0, 1]."""
    if not fr or any(not 0.0 < f <= 1.0 for f in fr) or sorted(set(fr)) != fr:
        fail("checkpoint_fractions", f"expected increasing fractions in (0, 1], got {fr}")


def _check_ranges(obj: Any, prefix: str, src: str) -> None:
    """Value checks beyond types: fractions in [0, 1], positive sizes, known names."""

    def fail(name: str, msg: str) -> None:
        raise ConfigError(f"{src}: {prefix + '.' if prefix else ''}{name}: {msg}")

    if isinstance(obj, QualityFilters):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.name.endswith("_frac") and isinstance(v, float) and not 0.0 <= v <= 1.0:
                fail(f.name, f"expected a fraction in [0, 1], got {v}")
            if isinstance(v, dict):
                for n, t in v.items():
                    if n < 1 or not 0.0 <= t <= 1.0:
                        fail(f"{f.name}.{n}", f"expected n >= 1 and a fraction in [0, 1], got {t}")
            if f.name in ("min_chars", "min_japanese_chars", "max_sentence_chars") and v is not None and v < 0:
                fail(f.name, f"expected >= 0, got {v}")
    elif isinstance(obj, AnalysisConfig):
        if obj.z <= 0:
            fail("z", f"expected > 0 standard errors, got {obj.z}")
        for name in ("en_retained_margin", "expansion_cost_margin", "no_harm_margin", "rel_floor", "gen_floor"):
            if not 0.0 <= getattr(obj, name) < 1.0:
                fail(name, f"expected a fraction in [0, 1), got {getattr(obj, name)}")
    elif isinstance(obj, StudyConfig):
        for i, f in enumerate(obj.vocab_sweep):
            if f <= 0 or f == 1:
                fail(f"vocab_sweep[{i}]", f"expected a factor > 0 other than 1 (1 is the profile's own run), got {f}")
        if obj.longer and obj.longer <= 1:
            fail("longer", f"expected 0 (off) or a factor > 1, got {obj.longer}")
    elif isinstance(obj, SplitConfig):
        for name in ("valid", "test"):
            if not 0.0 <= getattr(obj, name) < 0.5:
                fail(name, f"expected a fraction in [0, 0.5), got {getattr(obj, name)}")
    elif isinstance(obj, DedupConfig):
        for name in ("ngram", "num_buckets", "hashes_per_bucket"):
            if getattr(obj, name) < 1:
                fail(name, f"expected >= 1, got {getattr(obj, name)}")
    elif isinstance(obj, DecontamConfig):
        if not 0.0 < obj.near_dup_jaccard <= 1.0:
            fail("near_dup_jaccard", f"expected a value in (0, 1], got {obj.near_dup_jaccard}")
    elif isinstance(obj, TokenizerConfig):
        for name in ("base_vocab", "ja_vocab", "pad_to", "max_train_lines", "analysis_ja_vocab", "eval_max_docs"):
            if getattr(obj, name) < 1:
                fail(name, f"expected a positive integer, got {getattr(obj, name)}")
        if not 0.0 <= obj.base_ja_share < 0.5:
            fail("base_ja_share", f"expected a fraction in [0, 0.5), got {obj.base_ja_share}")
    elif isinstance(obj, ModelConfig):
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
            if getattr(obj, name) < 1:
                fail(name, f"expected a positive integer, got {getattr(obj, name)}")
        if obj.hidden_size % obj.num_heads:
            fail("num_heads", f"must divide hidden_size ({obj.hidden_size}), got {obj.num_heads}")
        kv = obj.num_kv_heads
        if kv is not None and (kv < 1 or obj.num_heads % kv):
            fail("num_kv_heads", f"must be >= 1 and divide num_heads ({obj.num_heads}), got {kv}")
        if obj.rms_norm_eps <= 0 or obj.rope_theta <= 0:
            fail("rms_norm_eps", "rms_norm_eps and rope_theta must be > 0")
    elif isinstance(obj, OptimizerConfig):
        if obj.lr <= 0:
            fail("lr", f"expected > 0, got {obj.lr}")
        if not 0.0 <= obj.min_lr_ratio <= 1.0:
            fail("min_lr_ratio", f"expected a fraction in [0, 1], got {obj.min_lr_ratio}")
        if obj.warmup_steps < 0:
            fail("warmup_steps", f"expected >= 0, got {obj.warmup_steps}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(obj, name) < 1.0:
                fail(name, f"expected a value in [0, 1), got {getattr(obj, name)}")
        for name in ("eps", "weight_decay", "grad_clip"):
            if getattr(obj, name) < 0:
                fail(name, f"expected >= 0, got {getattr(obj, name)}")
    elif isinstance(obj, PeftConfig):
        if obj.r < 1 or obj.alpha <= 0:
            fail("r", f"expected r >= 1 and alpha > 0, got r={obj.r}, alpha={obj.alpha}")
        if not 0.0 <= obj.dropout < 1.0:
            fail("dropout", f"expected a value in [0, 1), got {obj.dropout}")
        if not obj.target_modules:
            fail("target_modules", "expected at least one module name (e.g. q_proj)")
    elif isinstance(obj, RunConfig):
        if obj.tokens < 1:
            fail("tokens", f"expected a positive token budget, got {obj.tokens}")
        for source, ratio in obj.mix.items():
            if source not in ("ja", "en", "parallel"):
                fail(f"mix.{source}", "unknown source (expected ja, en or parallel)")
            if not 0.0 <= ratio <= 1.0:
                fail(f"mix.{source}", f"expected a token ratio in [0, 1], got {ratio}")
        if abs(sum(obj.mix.values()) - 1.0) > 1e-6:
            fail("mix", f"token ratios must sum to 1, got {sum(obj.mix.values()):g}")
        if obj.skip_tokens < 0:
            fail("skip_tokens", f"expected >= 0 tokens, got {obj.skip_tokens}")
        if obj.tokenizer not in ("base", "expanded") and "/" not in obj.tokenizer:
            fail("tokenizer", f"expected base, expanded or a tokenizer directory, got {obj.tokenizer!r}")
        if obj.init.startswith(("run:", "init:")) and not obj.init.split(":", 1)[1]:
            fail("init", f"expected a name after {obj.init!r}")
        if obj.init == "":
            fail("init", "expected scratch, run:<name>, init:<method> or an HF directory / Hub id")
        if obj.peft and obj.init == "scratch":
            fail("peft", "LoRA adapts a trained model: a scratch run cannot use peft")
        if obj.lr is not None and obj.lr <= 0:
            fail("lr", f"expected > 0, got {obj.lr}")
        if obj.min_lr_ratio is not None and not 0.0 <= obj.min_lr_ratio <= 1.0:
            fail("min_lr_ratio", f"expected a fraction in [0, 1], got {obj.min_lr_ratio}")
        for name in ("warmup_steps", "embedding_warmup_steps"):
            if getattr(obj, name) is not None and getattr(obj, name) < 0:
                fail(name, f"expected >= 0, got {getattr(obj, name)}")
        if obj.checkpoint_fractions is not None:
            _check_fractions(obj.checkpoint_fractions, fail)
    elif isinstance(obj, TrainConfig):
        for name in ("seq_len", "micro_batch_size", "batch_size", "processes", "save_every_steps", "keep_last",
                     "log_every_steps", "num_proc"):
            if getattr(obj, name) < 1:
                fail(name, f"expected a positive integer, got {getattr(obj, name)}")
        if obj.batch_size % (obj.micro_batch_size * obj.processes):
            fail("batch_size", f"{obj.batch_size} sequences do not split into micro-batches of {obj.micro_batch_size} "
                 f"on {obj.processes} process(es); make it a multiple of micro_batch_size x processes")
        for name in ("eval_sequences", "embedding_warmup_steps"):
            if getattr(obj, name) < 0:
                fail(name, f"expected >= 0, got {getattr(obj, name)}")
        if obj.device_memory_gib is not None and not obj.device_memory_gib > 0:  # `not >` also rejects NaN
            fail("device_memory_gib", f"expected the GiB of one accelerator (> 0), got {obj.device_memory_gib}")
        if obj.data_margin is not None and not obj.data_margin >= 1.0:  # `not >=` also rejects NaN
            fail("data_margin", f"expected null (whole splits) or a factor >= 1.0, got {obj.data_margin}")
        if obj.model.pretrained is None and obj.seq_len > obj.model.max_position_embeddings:
            fail("seq_len", f"exceeds model.max_position_embeddings ({obj.model.max_position_embeddings})")
        _check_fractions(obj.checkpoint_fractions, fail)
        for i, t in enumerate(obj.parallel_template):
            if "{en}" not in t or "{ja}" not in t:
                fail(f"parallel_template[{i}]", f"expected both {{en}} and {{ja}} placeholders, got {t!r}")
            try:
                t.format(en="", ja="")
            except (KeyError, IndexError, ValueError) as e:
                fail(f"parallel_template[{i}]", f"not a valid template ({e}); only {{en}} and {{ja}} are filled in")
        for name, run in obj.runs.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
                fail(f"runs.{name}", "a run name is letters, digits, '.', '_' or '-' and starts with a letter or digit")
            if run.init.startswith("run:"):
                other = run.init[4:]
                if other not in obj.runs:
                    fail(f"runs.{name}.init", f"no run named {other!r} (known: {', '.join(obj.runs)})")
                if other == name:
                    fail(f"runs.{name}.init", "a run cannot start from itself")
    elif isinstance(obj, EvalConfig):
        for i, name in enumerate(obj.tasks):
            if name not in EVAL_TASKS:
                fail(f"tasks[{i}]", f"unknown task {name!r} (known: {', '.join(EVAL_TASKS)})")
        for i, name in enumerate(obj.milestone_tasks):
            if name not in EVAL_TASKS and name not in REF_TASKS:
                fail(f"milestone_tasks[{i}]",
                     f"unknown task {name!r} (known: {', '.join(EVAL_TASKS)}; reference-only: {', '.join(REF_TASKS)})")
        for name in ("max_examples", "bpb_max_chars", "max_chars", "description_chars", "faq_answer_chars",
                     "max_gen_tokens", "batch_size"):
            if getattr(obj, name) < 1:
                fail(name, f"expected a positive integer, got {getattr(obj, name)}")
        if obj.faq_choices < 2:
            fail("faq_choices", f"expected >= 2 (the answer and at least one distractor), got {obj.faq_choices}")
        for kind, n in obj.shots.items():
            if kind not in ("translate", "synopsis", "faq"):
                fail(f"shots.{kind}", "unknown task kind (expected translate, synopsis or faq)")
            if n < 0:
                fail(f"shots.{kind}", f"expected >= 0 shots, got {n}")
        for name, n in obj.harness_tasks.items():
            if n < 0:
                fail(f"harness_tasks.{name}", f"expected >= 0 shots, got {n}")
        if obj.bootstrap_iters < 0:
            fail("bootstrap_iters", f"expected >= 0, got {obj.bootstrap_iters}")
    elif isinstance(obj, ExecutorConfig):
        if obj.workers < 1 or obj.tasks < 1:
            fail("workers", "workers and tasks must be >= 1")
    elif isinstance(obj, CorpusConfig):
        from swallowlib.corpus.sources import CATALOGUE

        for listname in ("sources", "parallel_sources", "eval_sources"):
            for i, name in enumerate(getattr(obj, listname)):
                if name not in CATALOGUE:
                    fail(
                        f"{listname}[{i}]", f"unknown source {name!r} (known: {', '.join(sorted(CATALOGUE))})"
                    )
        for listname in ("parallel_sources", "eval_sources"):
            for i, name in enumerate(getattr(obj, listname)):
                if name not in obj.sources:
                    fail(f"{listname}[{i}]", f"{name!r} must also be listed in corpus.sources")
        for lang, q in obj.filters.items():
            if lang not in ("ja", "en"):
                fail(f"filters.{lang}", "expected a language: ja or en")
            if lang != "ja" and q.rule_set == "swallow-v1":
                fail(
                    f"filters.{lang}.rule_set", "swallow-v1 is defined for Japanese text only; set rule_set: technical"
                )
        for i, hs in enumerate(obj.hub):
            for key in ("max_docs", "max_chars"):
                v = getattr(hs, key)
                if v is not None and v < 1:
                    fail(f"hub[{i}].{key}", f"must be >= 1 or null (no cap), got {v}")
        names = [s.name for s in obj.local] + [s.name for s in obj.hub]
        for name in names:
            if name in CATALOGUE or names.count(name) > 1:
                fail("local/hub", f"source name {name!r} is not unique")


def load_config(path_or_profile: str | Path) -> Config:
    """Load and validate a config file, or ``configs/<profile>.yaml`` when given a bare profile name."""
    p = Path(path_or_profile)
    if p.suffix not in (".yaml", ".yml"):
        p = paths.config_path(str(path_or_profile))
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    data = dict(data)
    if "path" in data:
        raise ConfigError(f"{p}: path: unknown key (it is set by the loader)")
    cfg = _build(Config, data, "", str(p))
    for i, run in enumerate(cfg.eval.runs or []):
        if run not in cfg.train.runs:
            known = ", ".join(cfg.train.runs)
            raise ConfigError(f"{p}: eval.runs[{i}]: no run named {run!r} in train.runs (known: {known})")
    for i, run in enumerate(cfg.study.seed_runs):
        if run not in cfg.train.runs:
            known = ", ".join(cfg.train.runs)
            raise ConfigError(f"{p}: study.seed_runs[{i}]: no run named {run!r} in train.runs (known: {known})")
    if cfg.offline and cfg.corpus.hub:
        raise ConfigError(f"{p}: corpus.hub: Hub sources need `offline: false` in the profile")
    return dataclasses.replace(_resolve_local_paths(cfg), path=str(p))


def _local_path(value: str) -> str:
    """A value that names a local path (``./x``, ``../x``) as an absolute path under the repository root.

    Notebooks run in ``notebooks/`` and training subprocesses in the root: a path relative to the working directory
    would name different directories in different stages. Hub ids (``owner/name``) never start with a dot.
    """
    return str((paths.ROOT / value).resolve()) if value.startswith(("./", "../")) else value


def _resolve_local_paths(cfg: Config) -> Config:
    """Local paths in a profile are relative to the repository root (corpus.local/hub, the model, run inits)."""
    cc, tc = cfg.corpus, cfg.train
    corpus = dataclasses.replace(
        cc,
        local=[dataclasses.replace(s, path=_local_path(s.path)) for s in cc.local],
        hub=[dataclasses.replace(s, dataset=_local_path(s.dataset)) for s in cc.hub],
    )
    model = dataclasses.replace(tc.model, pretrained=tc.model.pretrained and _local_path(tc.model.pretrained))
    runs = {name: dataclasses.replace(rc, init=_local_path(rc.init)) for name, rc in tc.runs.items()}
    return dataclasses.replace(cfg, corpus=corpus, train=dataclasses.replace(tc, model=model, runs=runs))


def apply_environment(cfg: Config) -> None:
    """Offline profiles: no Hugging Face library touches the network (a Hub id then fails at once). Online profiles
    (``offline: false``): the Hub is reachable, whatever the shell or Make exported.

    Sets ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` to ``"1"`` / ``"0"``, so every
    process started from this one (training subprocesses, ``accelerate launch``) inherits the profile's choice, and
    updates the copies that ``huggingface_hub`` and ``datasets`` took of them if they are already imported.
    """
    import os

    # "0", not unset: an unset variable lets a later os.environ.setdefault("HF_HUB_OFFLINE", "1") (the local-only
    # loaders do that) switch every subprocess started afterwards offline again.
    value = "1" if cfg.offline else "0"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = value
    # Both libraries read the variables once, at import; transformers asks huggingface_hub's constant at each call.
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = cfg.offline
    ds = sys.modules.get("datasets.config")
    if ds is not None:
        ds.HF_HUB_OFFLINE = ds.HF_DATASETS_OFFLINE = cfg.offline


def to_dict(obj: Any) -> Any:
    """A plain, YAML/JSON-serialisable copy of a config (for provenance records)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


if __name__ == "__main__":  # pragma: no cover
    cfg = load_config(sys.argv[1] if len(sys.argv) > 1 else "tiny")
    yaml.safe_dump(to_dict(cfg), sys.stdout, sort_keys=False, allow_unicode=True)
