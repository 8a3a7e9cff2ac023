"""Local lm-eval tasks built from the held-out material of stage 01 (``runs/<profile>/corpus/``).

For each configured task this writes its data as JSONL (``<name>.test.jsonl`` and, for few-shot tasks, a disjoint
``<name>.shots.jsonl``) and an lm-eval task YAML that loads it with ``dataset_path: json`` + ``data_files``, plus a
``utils.py`` that points lm-eval at :mod:`swallowlib.eval.metrics`. The sample is seeded, so the same config gives
byte-identical task files.

=================  ==============================================================  ===============================
task (config)      lm-eval tasks                                                   metrics
=================  ==============================================================  ===============================
bpb_ja / bpb_en    ``swallow_bpb_<lang>`` (rolling log-likelihood, test split)     bits_per_byte, byte_perplexity
bpb_ja_ood         ``swallow_bpb_ja_ood`` (rolling, literature/tutorial/essay)     bits_per_byte, byte_perplexity
translate_en_ja …  ``swallow_translate_en_ja`` (greedy, k-shot)                    chrf, bleu (MeCab for ja)
                   ``swallow_translate_en_ja_ref`` (log-likelihood of the ref.)    bits_per_byte
faq_ja / faq_en    ``swallow_faq_<lang>`` (question -> answer, multiple choice)    acc, acc_norm, acc_bytes
                   ``swallow_faq_<lang>_ref`` (log-likelihood of the answer)       bits_per_byte
synopsis_ja / _en  ``swallow_synopsis_<lang>`` (description -> synopsis, greedy)   rouge2_words, rouge2_tokens
jmdict_ja_en       ``swallow_jmdict_ja_en`` (JMdict word -> English gloss, MC)     acc, acc_norm
=================  ==============================================================  ===============================

**Bits per byte.** ``bpb_ja`` / ``bpb_en``: a seeded sample of ``eval.max_examples`` documents of the held-out
``<lang>/test`` split, each cut to ``eval.bpb_max_chars`` characters. ``bpb_ja_ood``: Japanese from other domains
than the corpus — the three texts stage 02 measures tokenizer efficiency on (:data:`swallowlib.tokenizer.coverage.
OOD_SOURCES`: 羅生門, vimtutor's Japanese translation, an essay on Python's history; Debian packages cached under
``data/``) — every paragraph, packed into documents of at most ``bpb_max_chars`` characters (:func:`chunk_text`), at
most ``max_examples`` of them (~29k characters in all: 45 documents of 700 characters). Missing texts fail the stage
with one line naming the package and the fix, as a missing held-out file does. With ``eval.bpb_decontam`` (default
true) the lines of all of them that a training split holds verbatim or near-verbatim are removed
(:func:`decontaminate_documents`: the test split is cut by page within the same packages, so it shares boilerplate
with training) and the overlap per task is written to ``heldout_overlap.json`` beside the tasks. How the documents
are scored (windows of ``train.seq_len``, BOS never scored): :mod:`swallowlib.eval.harness`.

    python -m swallowlib.eval --config configs/tiny.yaml --tasks-only     # write runs/tiny/eval/tasks/ and stop
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import yaml

from swallowlib import paths
from swallowlib.config import EVAL_TASKS, Config, DecontamConfig
from swallowlib.corpus import shards
from swallowlib.provenance import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

PREFIX = "swallow_"
#: The out-of-domain Japanese bits-per-byte task, built from :data:`swallowlib.tokenizer.coverage.OOD_SOURCES`.
OOD_TASK = "bpb_ja_ood"
#: The overlap report of the bits-per-byte documents with the training splits, in the task directory.
OVERLAP_FILE = "heldout_overlap.json"

#: Prompt labels per language, matching the training template of parallel text ("English: {en}\nJapanese: {ja}").
LANG_NAME = {"en": "English", "ja": "Japanese"}
SYNOPSIS_LABELS = {"en": ("Description", "Summary"), "ja": ("説明", "要約")}
FAQ_LABELS = {"en": ("Question", "Answer"), "ja": ("質問", "回答")}

_UTILS = '''"""Written by swallowlib.eval.tasks: lm-eval loads `!function utils.<name>` from here."""
from swallowlib.eval.metrics import (  # noqa: F401
    bits_per_byte,
    corpus_bleu,
    corpus_chrf,
    reference_results,
    synopsis_results,
    translation_results,
)
'''


class EvalDataError(ValueError):
    """A held-out file is missing, empty or lacks a field a task needs; the message names the file."""


class _Fn(str):
    """A YAML scalar written as ``!function <name>`` (lm-eval's tag for a Python callable)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Fn, lambda d, v: d.represent_scalar("!function", str(v)))


def lm_eval_names(task: str) -> list[str]:
    """The lm-eval task names a configured task expands to."""
    if task not in EVAL_TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(EVAL_TASKS)})")
    if task.startswith(("translate_", "faq_")):
        return [PREFIX + task, PREFIX + task + "_ref"]
    return [PREFIX + task]


def is_rolling(name: str) -> bool:
    """Whether an lm-eval task name is one of the local bits-per-byte tasks (``loglikelihood_rolling``), scored with
    the protocol of :mod:`swallowlib.eval.harness` (windows of ``train.seq_len``, BOS never scored)."""
    return name.startswith(PREFIX + "bpb_")


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise EvalDataError(f"{path}: held-out file not found (run stage 01: make corpus)")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        missing = [f for f in fields if f not in row]
        if missing:
            raise EvalDataError(f"{path}:{i}: missing field {missing[0]!r} (expected {', '.join(fields)})")
        rows.append(row)
    if not rows:
        raise EvalDataError(f"{path}: held-out file is empty")
    return rows


def _sample_heldout(profile: str, lang: str, n: int, seed: int) -> list[str]:
    """A seeded sample of at most ``n`` non-blank documents of the held-out ``<lang>/test/`` split of stage 01."""
    try:
        files = paths.corpus_split_files(profile, lang, "test")
    except FileNotFoundError:
        d = paths.corpus_split_dir(profile, lang, "test")
        raise EvalDataError(f"{d}: held-out split not found (run stage 01: make corpus)") from None
    texts = shards.sample_texts(files, n, seed)
    if not texts:
        raise EvalDataError(f"{paths.corpus_split_dir(profile, lang, 'test')}: held-out split is empty")
    return texts


def chunk_text(text: str, max_chars: int) -> list[str]:
    r"""``text`` cut into documents of at most ``max_chars`` characters, whole paragraphs where they fit.

    Blank-line separated paragraphs are packed greedily, in order, into a document while it stays within
    ``max_chars`` (joined by the blank line they had); a paragraph longer than that is packed line by line (joined by
    newlines), and a line longer than that is cut into ``max_chars`` pieces. Nothing is dropped but blank lines and
    the whitespace at a paragraph's ends.

    >>> chunk_text("aa\n\nbb\ncc\n\ndddddd", 5)
    ['aa', 'bb\ncc', 'ddddd', 'd']
    """
    units: list[tuple[str, str]] = []  # (separator before it, text)
    for para in re.split(r"\n[ \t\u3000]*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if len(para) <= max_chars:
            units.append(("\n\n", para))
            continue
        sep = "\n\n"
        for line in para.split("\n"):
            while len(line) > max_chars:
                units.append((sep, line[:max_chars]))
                line, sep = line[max_chars:], ""
            if line.strip():
                units.append((sep, line))
            sep = "\n"
    docs: list[str] = []
    cur = ""
    for sep, u in units:
        if cur and len(cur) + len(sep) + len(u) <= max_chars:
            cur += sep + u
        else:
            if cur:
                docs.append(cur)
            cur = u
    if cur:
        docs.append(cur)
    return docs


def _ood_texts() -> dict[str, str]:
    """``{domain: text}`` of the out-of-domain Japanese (the tokenizer stage's; tests replace this function)."""
    from swallowlib.tokenizer import coverage

    return coverage.out_of_domain_japanese()


def ood_documents(max_chars: int, n: int, seed: int) -> list[dict]:
    """The documents of :data:`OOD_TASK`: every out-of-domain text cut by :func:`chunk_text`, domain after domain,
    at most ``n`` of them (a seeded sample in text order when there are more). Rows ``{"text", "domain"}``.

    Every domain must be there — a task that silently lost a domain would not compare across profiles: a missing
    one raises :class:`EvalDataError` naming its package and the fix.
    """
    from swallowlib.tokenizer.coverage import OOD_SOURCES

    texts = _ood_texts()
    missing = [d for d in OOD_SOURCES if not texts.get(d, "").strip()]
    if missing:
        pkgs = ", ".join(f"{d} ({OOD_SOURCES[d].archive.kind}/{OOD_SOURCES[d].archive.name})" for d in missing)
        raise EvalDataError(
            f"{OOD_TASK}: out-of-domain Japanese text unavailable: {pkgs}; fetch it into data/ with "
            "`python -m swallowlib.tokenizer.coverage` (stage 02 does, with tokenizer.out_of_domain: true), "
            f"or drop {OOD_TASK} from eval.tasks"
        )
    docs = [{"text": t, "domain": d} for d in OOD_SOURCES for t in chunk_text(texts[d], max_chars)]
    if len(docs) > n:
        keep = sorted(random.Random(seed).sample(range(len(docs)), n))
        log.info("%s: %d of %d out-of-domain documents (eval.max_examples)", OOD_TASK, n, len(docs))
        docs = [docs[i] for i in keep]
    return docs


#: The training splits the held-out lines are checked against, with their text columns.
_TRAINING_COLUMNS = {"ja": ("text",), "en": ("text",), "parallel": ("en", "ja")}


def _training_files(profile: str) -> dict[str, list[Path]]:
    """The Parquet shards of each training split stage 01 wrote (a split it did not write is left out)."""
    return {dataset: paths.corpus_split_files(profile, dataset, "train") for dataset in _TRAINING_COLUMNS
            if paths.corpus_split_dir(profile, dataset, "train").is_dir()}  # fmt: skip


def _training_texts(profile: str) -> Iterator[str]:
    """Every text of every training split of stage 01 (ja, en, both sides of the parallel pairs), streamed."""
    files = _training_files(profile)
    for dataset in _TRAINING_COLUMNS.keys() - files.keys():
        log.info("no %s training split: not scanned for overlap", dataset)
    for dataset, shard_files in files.items():
        for column in _TRAINING_COLUMNS[dataset]:
            yield from shards.iter_column(shard_files, column)


def _training_key(profile: str) -> list[list]:
    """What identifies the training splits cheaply: each shard's path, size and mtime."""
    return [[f"{dataset}/{f.name}", st.st_size, st.st_mtime_ns]
            for dataset, shard_files in _training_files(profile).items() for f in shard_files
            for st in (f.stat(),)]  # fmt: skip


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()[:16]


def decontaminate_documents(profile: str, docs: dict[str, list[dict]], dc: DecontamConfig,
                            report_path: Path | None = None) -> tuple[dict[str, list[dict]], dict]:  # fmt: skip
    """Drop from the bits-per-byte documents every line found verbatim or near-verbatim in a training split.

    The lines of at least ``dc.min_chars`` characters (after normalisation) of every task's documents are the eval
    texts of stage 01's decontamination scanner (:class:`swallowlib.corpus.decontam.Scanner`, the rules of the
    evaluation sets: the line or one of its sentences is a substring of a training text, or its character 5-gram
    Jaccard with a training paragraph, line or sentence is at least ``dc.near_dup_jaccard``); the training splits
    stream past it once (memory bounded by the documents, not the corpus). A flagged line is removed with its
    newline; a document left blank is dropped. Shorter lines are kept: a short line found in training ("}",
    "例:") is common text, not a copy, and removing them would make the held-out text unlike any real text.

    Returns the cleaned documents and the report (per task: documents, non-blank lines and characters before and
    after, lines removed as exact / near, the fraction of characters removed), written to ``report_path`` when
    given. A report there for the same lines, rules and training shards is reused instead of scanning again (the
    scan reads the whole training corpus).
    """
    from swallowlib.corpus.decontam import Scanner, normalise

    t0 = time.perf_counter()
    lines: dict[str, int] = {}
    for rows in docs.values():
        for r in rows:
            for line in r["text"].split("\n"):
                if len(normalise(line)) >= dc.min_chars:
                    lines.setdefault(line, len(lines))
    training_key = _training_key(profile)
    key = hashlib.sha256(json.dumps([sorted(lines), dc.min_chars, dc.near_dup_jaccard, training_key],
                                    ensure_ascii=False).encode()).hexdigest()  # fmt: skip
    flagged: dict[str, str] | None = None
    if report_path is not None and report_path.is_file():
        try:
            prev = json.loads(report_path.read_text(encoding="utf-8"))
            if prev.get("key") == key:
                flagged, scanned = prev["flagged"], prev["training"]
        except (OSError, json.JSONDecodeError, KeyError):
            flagged = None
    if flagged is None:
        texts = list(lines)
        scanner = Scanner(texts, dc)
        for t in _training_texts(profile):
            scanner.add(t)
        labels = scanner.finish()
        flagged = {_line_hash(t): lab for t, lab in zip(texts, labels, strict=True) if lab}
        scanned = {"texts": scanner.train_texts, "chars": scanner.train_chars, "shards": len(training_key)}
    out: dict[str, list[dict]] = {}
    per_task: dict[str, dict] = {}
    for task, rows in docs.items():
        st = dict.fromkeys(("documents_before", "documents_after", "lines_before", "lines_after", "lines_exact",
                            "lines_near", "chars_before", "chars_after"), 0)  # fmt: skip
        kept_rows = []
        for r in rows:
            kept = []
            for line in r["text"].split("\n"):
                label = flagged.get(_line_hash(line)) if line in lines else None
                if line.strip():
                    st["lines_before"] += 1
                if label:
                    st[f"lines_{label}"] += 1
                else:
                    kept.append(line)
                    st["lines_after"] += bool(line.strip())
            text = "\n".join(kept)
            st["documents_before"] += 1
            st["chars_before"] += len(r["text"])
            if text.strip():
                kept_rows.append(r | {"text": text})
                st["documents_after"] += 1
                st["chars_after"] += len(text)
        st["removed_char_frac"] = 1 - st["chars_after"] / st["chars_before"] if st["chars_before"] else 0.0
        per_task[task] = st
        out[task] = kept_rows
        log.info("%s: %.1f %% of the characters (%d of %d lines: %d verbatim, %d near-verbatim; %d of %d documents "
                 "left) overlap the training splits: removed", task, 100 * st["removed_char_frac"],
                 st["lines_exact"] + st["lines_near"], st["lines_before"], st["lines_exact"], st["lines_near"],
                 st["documents_after"], st["documents_before"])  # fmt: skip
        if not kept_rows:
            raise EvalDataError(f"{task}: every document overlaps the training splits (see {report_path})")
    report = {"enabled": True, "tasks": per_task, "lines_indexed": len(lines), "training": scanned,
              "decontam": {"min_chars": dc.min_chars, "near_dup_jaccard": dc.near_dup_jaccard},
              "wall_s": round(time.perf_counter() - t0, 3), "key": key, "flagged": flagged}  # fmt: skip
    if report_path is not None:
        write_json_atomic(report_path, report)
    return out, report


def _split_by_group(rows: list[dict], n_test: int, n_shots: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded sample of ``n_test`` rows and a pool of ``n_shots`` rows from other groups (no package in both)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r.get("group", r.get("id"))].append(r)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    test: list[dict] = []
    shots: list[dict] = []
    for g in order:
        # The first row of a group only: one test item per package keeps the sample diverse.
        if len(test) < n_test:
            test.append(groups[g][0])
        elif len(shots) < n_shots:
            shots.append(groups[g][0])
        else:
            break
    return test, shots


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def _base_yaml(name: str, out: Path, has_shots: bool) -> dict:
    files = {"test": str(out / f"{name}.test.jsonl")}
    if has_shots:
        files["train"] = str(out / f"{name}.shots.jsonl")
    d = {
        "task": PREFIX + name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "test_split": "test",
    }
    if has_shots:
        d["fewshot_split"] = "train"
        # Shots are drawn once with lm-eval's fewshot seed; "first_n" would repeat one ordering for every doc.
    return d


def _gen_kwargs(max_tokens: int) -> dict:
    # No newline stop: the tiny base models open with a newline, and "until: \n" would score an empty string for
    # every document. The metrics take the first non-empty line (swallowlib.eval.metrics.first_line) instead.
    return {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": max_tokens}


def build_tasks(cfg: Config, out: Path | None = None) -> Path:
    """Write the configured tasks' data, YAMLs and ``utils.py`` into ``out`` (default ``runs/<p>/eval/tasks``)."""
    ec = cfg.eval
    out = Path(out) if out is not None else paths.eval_dir(cfg.profile) / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    corpus = paths.corpus_dir(cfg.profile)
    evald = corpus / "eval"
    write_text_atomic(out / "utils.py", _UTILS)
    yamls: dict[str, dict] = {}
    bpb_docs: dict[str, list[dict]] = {}
    for task in ec.tasks:
        if task not in EVAL_TASKS:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(EVAL_TASKS)})")
        kind, _, lang = task.partition("_")
        if task == OOD_TASK:
            bpb_docs[task] = ood_documents(ec.bpb_max_chars, ec.max_examples, ec.seed)
        elif kind == "bpb":
            sample = _sample_heldout(cfg.profile, lang, ec.max_examples, ec.seed)
            bpb_docs[task] = [{"text": t[: ec.bpb_max_chars]} for t in sample]
        elif kind == "translate":
            src, tgt = lang.split("_")
            rows = _read_jsonl(evald / "parallel.jsonl", ("en", "ja"))
            rows = [r for r in rows if r["en"].strip() and r["ja"].strip()
                    and max(len(r["en"]), len(r["ja"])) <= ec.max_chars and "\n" not in r["en"] + r["ja"]]
            if not rows:
                raise EvalDataError(f"{evald / 'parallel.jsonl'}: no pair of at most {ec.max_chars} characters")
            k = ec.shots.get("translate", 0)
            test, shots = _split_by_group(rows, ec.max_examples, max(k * 5, k), ec.seed)
            conv = [
                {"id": r.get("id"), "source": r[src], "target": r[tgt], "target_lang": tgt} for r in test
            ]
            _write_jsonl(out / f"{task}.test.jsonl", conv)
            if k:
                _write_jsonl(out / f"{task}.shots.jsonl",
                             [{"id": r.get("id"), "source": r[src], "target": r[tgt], "target_lang": tgt}
                              for r in shots])
            prompt = f"{LANG_NAME[src]}: {{{{source}}}}\n{LANG_NAME[tgt]}:"
            y = _base_yaml(task, out, bool(k))
            y.update(output_type="generate_until", doc_to_text=prompt, doc_to_target="{{target}}",
                     num_fewshot=k, fewshot_delimiter="\n\n", target_delimiter=" ",
                     generation_kwargs=_gen_kwargs(ec.max_gen_tokens),
                     process_results=_Fn("utils.translation_results"),
                     metric_list=[
                         {"metric": "chrf", "aggregation": _Fn("utils.corpus_chrf"), "higher_is_better": True},
                         {"metric": "bleu", "aggregation": _Fn("utils.corpus_bleu"), "higher_is_better": True},
                     ])
            yamls[task] = y
            ref = _base_yaml(task, out, bool(k))
            ref.update(task=PREFIX + task + "_ref", output_type="loglikelihood", doc_to_text=prompt,
                       doc_to_target="{{target}}", num_fewshot=k, fewshot_delimiter="\n\n", target_delimiter=" ",
                       process_results=_Fn("utils.reference_results"),
                       metric_list=[{"metric": "bits_per_byte", "aggregation": "bits_per_byte",
                                     "higher_is_better": False}])
            yamls[task + "_ref"] = ref
        elif kind == "faq":
            path = evald / "faq.jsonl"
            rows = [r for r in _read_jsonl(path, ("lang", "question", "answer")) if r["lang"] == lang]
            if len(rows) < ec.faq_choices:
                raise EvalDataError(f"{path}: {len(rows)} {lang} question(s), need at least {ec.faq_choices}")
            rng = random.Random(ec.seed)
            answers = [" ".join(r["answer"].split())[: ec.faq_answer_chars] for r in rows]
            order = list(range(len(rows)))
            rng.shuffle(order)
            conv = []
            for i in order[: ec.max_examples]:
                others = sorted({a for j, a in enumerate(answers) if j != i and a != answers[i]})
                choices = rng.sample(others, ec.faq_choices - 1) + [answers[i]]
                rng.shuffle(choices)
                conv.append({"id": rows[i].get("id"), "question": " ".join(rows[i]["question"].split()),
                             "choices": choices, "gold": choices.index(answers[i]), "target": answers[i]})
            _write_jsonl(out / f"{task}.test.jsonl", conv)
            q, a = FAQ_LABELS[lang]
            y = _base_yaml(task, out, False)
            y.update(output_type="multiple_choice", doc_to_text=f"{q}: {{{{question}}}}\n{a}:",
                     doc_to_choice="choices", doc_to_target="gold", num_fewshot=0,
                     metric_list=[{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                  for m in ("acc", "acc_norm", "acc_bytes")])
            yamls[task] = y
            # The right answer's log-likelihood given the question: the same question, no choices.
            ref = _base_yaml(task, out, False)
            ref.update(task=PREFIX + task + "_ref", output_type="loglikelihood", doc_to_text=y["doc_to_text"],
                       doc_to_target="{{target}}", num_fewshot=0, target_delimiter=" ",
                       process_results=_Fn("utils.reference_results"),
                       metric_list=[{"metric": "bits_per_byte", "aggregation": "bits_per_byte",
                                     "higher_is_better": False}])
            yamls[task + "_ref"] = ref
        elif kind == "jmdict":
            from swallowlib.eval.jmdict import common_words

            words = sorted(common_words(), key=lambda w: w["id"])
            glosses = {w["gloss"] for w in words}
            if len(glosses) < ec.faq_choices:
                raise EvalDataError(f"JMdict: {len(glosses)} distinct glosses, need at least {ec.faq_choices}")
            rng = random.Random(ec.seed)
            pool = sorted(glosses)
            conv = []
            for w in rng.sample(words, min(ec.max_examples, len(words))):
                others = rng.sample([g for g in pool if g != w["gloss"]], ec.faq_choices - 1)
                choices = [*others, w["gloss"]]
                rng.shuffle(choices)
                conv.append({"id": w["id"], "word": w["word"], "choices": choices, "gold": choices.index(w["gloss"])})
            _write_jsonl(out / f"{task}.test.jsonl", conv)
            y = _base_yaml(task, out, False)
            # The parallel-text template of training ("Japanese: …\nEnglish: …"), zero-shot.
            y.update(output_type="multiple_choice", doc_to_text="Japanese: {{word}}\nEnglish:",
                     doc_to_choice="choices", doc_to_target="gold", num_fewshot=0,
                     metric_list=[{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                  for m in ("acc", "acc_norm")])
            yamls[task] = y
        elif kind == "synopsis":
            path = evald / "synopsis.jsonl"
            rows = [r for r in _read_jsonl(path, ("lang", "synopsis", "description")) if r["lang"] == lang]
            rows = [r for r in rows if r["synopsis"].strip() and r["description"].strip()
                    and len(r["synopsis"]) <= ec.max_chars and "\n" not in r["synopsis"]]
            if not rows:
                raise EvalDataError(f"{path}: no {lang} synopsis of at most {ec.max_chars} characters")
            k = ec.shots.get("synopsis", 0)
            test, shots = _split_by_group(rows, ec.max_examples, max(k * 5, k), ec.seed)

            def conv_row(r: dict, lang: str = lang) -> dict:
                desc = " ".join(r["description"].split())[: ec.description_chars]
                return {"id": r.get("id"), "description": desc, "target": r["synopsis"].strip(), "lang": lang}

            _write_jsonl(out / f"{task}.test.jsonl", [conv_row(r) for r in test])
            if k:
                _write_jsonl(out / f"{task}.shots.jsonl", [conv_row(r) for r in shots])
            d, s = SYNOPSIS_LABELS[lang]
            y = _base_yaml(task, out, bool(k))
            y.update(output_type="generate_until", doc_to_text=f"{d}: {{{{description}}}}\n{s}:",
                     doc_to_target="{{target}}", num_fewshot=k, fewshot_delimiter="\n\n", target_delimiter=" ",
                     generation_kwargs=_gen_kwargs(ec.max_gen_tokens),
                     process_results=_Fn("utils.synopsis_results"),
                     metric_list=[{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                  for m in ("rouge2_words", "rouge2_tokens")])
            yamls[task] = y
    report = out / OVERLAP_FILE
    if bpb_docs and ec.bpb_decontam:
        bpb_docs, _ = decontaminate_documents(cfg.profile, bpb_docs, cfg.corpus.decontam, report)
    elif bpb_docs:
        write_json_atomic(report, {"enabled": False, "why": "eval.bpb_decontam is false: the documents are as drawn"})
    for task, rows in bpb_docs.items():
        _write_jsonl(out / f"{task}.test.jsonl", rows)
        y = _base_yaml(task, out, False)
        y.update(output_type="loglikelihood_rolling", doc_to_text="", doc_to_target="{{text}}",
                 metric_list=[{"metric": m} for m in ("bits_per_byte", "byte_perplexity")])  # fmt: skip
        yamls[task] = y
    for name, y in yamls.items():
        y["metadata"] = {"version": 1.0}
        write_text_atomic(out / f"{name}.yaml", yaml.dump(y, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
    log.info("wrote %d lm-eval tasks to %s", len(yamls), out)
    return out
