"""Local lm-eval tasks built from the held-out material of stage 01 (``runs/<profile>/corpus/``).

For each configured task this writes its data as JSONL (``<name>.test.jsonl`` and, for few-shot tasks, a disjoint
``<name>.shots.jsonl``) and an lm-eval task YAML that loads it with ``dataset_path: json`` + ``data_files``, plus a
``utils.py`` that points lm-eval at :mod:`swallowlib.eval.metrics`. The sample is seeded, so the same config gives
byte-identical task files.

=================  ==============================================================  ===============================
task (config)      lm-eval tasks                                                   metrics
=================  ==============================================================  ===============================
bpb_ja / bpb_en    ``swallow_bpb_<lang>`` (rolling log-likelihood, test split)     bits_per_byte, byte_perplexity
translate_en_ja …  ``swallow_translate_en_ja`` (greedy, k-shot)                    chrf, bleu (MeCab for ja)
                   ``swallow_translate_en_ja_ref`` (log-likelihood of the ref.)    bits_per_byte
faq_ja / faq_en    ``swallow_faq_<lang>`` (question -> answer, multiple choice)    acc, acc_norm, acc_bytes
synopsis_ja / _en  ``swallow_synopsis_<lang>`` (description -> synopsis, greedy)   rouge2_words, rouge2_tokens
jmdict_ja_en       ``swallow_jmdict_ja_en`` (JMdict word -> English gloss, MC)     acc, acc_norm
=================  ==============================================================  ===============================

    python -m swallowlib.eval --config configs/tiny.yaml --tasks-only     # write runs/tiny/eval/tasks/ and stop
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from pathlib import Path

import yaml

from swallowlib import paths
from swallowlib.config import EVAL_TASKS, Config
from swallowlib.corpus import shards
from swallowlib.provenance import write_text_atomic

log = logging.getLogger(__name__)

PREFIX = "swallow_"

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
    if task.startswith("translate_"):
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
    for task in ec.tasks:
        if task not in EVAL_TASKS:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(EVAL_TASKS)})")
        kind, _, lang = task.partition("_")
        if kind == "bpb":
            sample = _sample_heldout(cfg.profile, lang, ec.max_examples, ec.seed)
            _write_jsonl(out / f"{task}.test.jsonl", [{"text": t[: ec.bpb_max_chars]} for t in sample])
            y = _base_yaml(task, out, False)
            y.update(output_type="loglikelihood_rolling", doc_to_text="", doc_to_target="{{text}}",
                     metric_list=[{"metric": m} for m in ("bits_per_byte", "byte_perplexity")])
            yamls[task] = y
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
                             "choices": choices, "gold": choices.index(answers[i])})
            _write_jsonl(out / f"{task}.test.jsonl", conv)
            q, a = FAQ_LABELS[lang]
            y = _base_yaml(task, out, False)
            y.update(output_type="multiple_choice", doc_to_text=f"{q}: {{{{question}}}}\n{a}:",
                     doc_to_choice="choices", doc_to_target="gold", num_fewshot=0,
                     metric_list=[{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                  for m in ("acc", "acc_norm", "acc_bytes")])
            yamls[task] = y
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
    for name, y in yamls.items():
        y["metadata"] = {"version": 1.0}
        write_text_atomic(out / f"{name}.yaml", yaml.dump(y, Dumper=_Dumper, sort_keys=False, allow_unicode=True))
    log.info("wrote %d lm-eval tasks to %s", len(yamls), out)
    return out
