"""`make study`: the experiments that test the study's conclusions, on top of a finished `make reproduce`.

    python -m swallowlib.study --config configs/tiny.yaml          # resumes; skips what is done

The default matrix answers the paper's questions at one seed, one vocabulary size and one short run. The profile's
``study`` section adds the runs that answer the threats to those answers (:mod:`swallowlib.matrix` names them):
more seeds of the main comparisons, the NVE-with-characters arm, a vocabulary-size sweep, the main runs continued
to several times their tokens, and the scratch run at the CPT model's total tokens. It reuses the profile's corpus,
tokenizers, base model and runs, and adds its rows to the same findings table (stage 06 reads whatever results exist).

Steps:

1. **Variants** (one stage, ``runs/<profile>/study/``, published whole): the tokenizers the variant runs need —
   ``chars`` (the base + only the single characters stage 02's expansion added: kana, kanji), ``v<f>`` for f < 1
   (the expansion with only its first f x its multi-character pieces, every character kept) and for f > 1 (the base
   merged with a Japanese SentencePiece of f x ``tokenizer.ja_vocab`` pieces, plus the coverage characters: stage
   02's recipe). Both recipes are checked first by rebuilding stage 02's ``expanded`` at x1, byte for byte. Then
   their start weights (the base model resized, new rows = mean of the base pieces, as cpt-ve's), and
   ``variants.csv``: per tokenizer, the pieces added, Japanese characters per token on the held-out manuals, and the
   token-level ROUGE-2 of the lead-sentence summaries of the synopsis test set (the XL-Sum confound as a function of
   vocabulary size).
2. **Training**: every study run, as stage 04 trains (a subprocess each; a finished run is skipped, a killed one
   resumes).
3. **Evaluation**: stage 05's harness over the study runs' checkpoints (those already evaluated are skipped).
4. ``summary.json``: the runs, and the wall time of each step.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import sentencepiece as spm

from swallowlib import matrix, paths
from swallowlib.config import Config, ConfigError, apply_environment, load_config, to_dict
from swallowlib.corpus import shards
from swallowlib.embedding_init import methods
from swallowlib.eval import harness
from swallowlib.eval.metrics import rouge2_f
from swallowlib.eval.report import lead_pairs
from swallowlib.provenance import (
    fingerprint,
    recorded_fingerprint,
    stage_cli,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from swallowlib.stage import Stage
from swallowlib.tokenizer import base, coverage, export, merge
from swallowlib.train import launch

log = logging.getLogger(__name__)


def _variants(cfg: Config) -> list[str]:
    sc = cfg.study
    return (["chars"] if sc.chars_arm else []) + [matrix.sweep_variant(f) for f in sc.vocab_sweep]


def _upstream(cfg: Config) -> dict:
    """What the variants are built from: stage 02's tokenizers and the base model's weights."""
    state = paths.run_out_dir(cfg.profile, cfg.embedding_init.base_run) / "final" / "trainer_state.json"
    return {
        "tokenizer": recorded_fingerprint(paths.run_dir(cfg.profile) / "tokenizer"),
        "base": json.loads(state.read_text()) if state.is_file() else None,
    }


def _stage(cfg: Config) -> Stage:
    here = Path(__file__)
    code = [here, Path(merge.__file__), Path(coverage.__file__), Path(methods.__file__)]
    inputs = {"study": to_dict(cfg.study), "tokenizer": to_dict(cfg.tokenizer), **_upstream(cfg)}
    return Stage("study", cfg, matrix.study_dir(cfg.profile), inputs, code)


def _merged(base_model: Path, ja_model: Path, chars: list[str], out: Path, pad_to: int) -> dict:
    """Stage 02's expansion recipe: the Japanese pieces the base lacks, then the characters of ``chars`` still
    missing, then padding (a CONTROL padding piece must not sit below NORMAL pieces)."""
    tmp = out.with_name(out.name + ".unpadded")
    info = merge.merge_models(base_model, ja_model, tmp, pad_to=1).summary()
    if chars:
        info["coverage"] = coverage.add_coverage_pieces(tmp, chars, tmp)
    padded = merge.merge_models(tmp, tmp, out, pad_to=pad_to)
    tmp.unlink()
    info.update(padding=padded.padding, final_size=padded.final_size)
    info.pop("out", None)
    return info


def truncated(base_model: Path, expanded_model: Path, keep_multi: int, out: Path, pad_to: int) -> dict:
    """The expansion with only its first ``keep_multi`` multi-character pieces (every single character kept), padded.

    The naive merge appends the Japanese tokenizer's pieces in its score order — the order its BPE learned them — so
    a prefix is what a smaller merge budget would have added; a smaller Japanese tokenizer cannot be trained instead,
    since SentencePiece needs a piece for every character it covers (thousands of kanji). ``keep_multi=0`` is the
    characters alone (``cpt-nve+chars``). The padding of ``expanded_model`` is dropped and redone.
    """
    n_base = spm.SentencePieceProcessor(model_file=str(base_model)).get_piece_size()
    proto = merge.load_proto(expanded_model)
    added = range(n_base, len(proto.pieces))
    padding = [i for i in added if proto.pieces[i].type != merge.NORMAL]
    multi = [i for i in added if proto.pieces[i].type == merge.NORMAL and len(proto.pieces[i].piece) > 1]
    for i in sorted(padding + multi[keep_multi:], reverse=True):  # from the end: earlier indices stay valid
        del proto.pieces[i]
    tmp = out.with_name(out.name + ".unpadded")
    write_bytes_atomic(tmp, proto.SerializeToString())
    padded = merge.merge_models(tmp, tmp, out, pad_to=pad_to)
    tmp.unlink()
    kept = min(keep_multi, len(multi))
    return {"multi_char_pieces": kept, "of_multi_char_pieces": len(multi),
            "characters": len(proto.pieces) - n_base - kept, "padding": padded.padding,
            "final_size": padded.final_size}  # fmt: skip


def multi_char_pieces(base_model: Path, model: Path) -> int:
    """Added NORMAL pieces of more than one character (``▁`` + a character counts as two)."""
    n_base = spm.SentencePieceProcessor(model_file=str(base_model)).get_piece_size()
    proto = merge.load_proto(model)
    return sum(p.type == merge.NORMAL and len(p.piece) > 1 for p in proto.pieces[n_base:])


def _build_tokenizer(cfg: Config, variant: str, ja_lines: list[str], into: Path) -> dict:
    """``into/<variant>.model`` and the HF directory ``into/<variant>/``; returns the merge record.

    ``chars`` and ``v<f>`` with f < 1 keep a prefix of stage 02's expansion (:func:`truncated`); ``v<f>`` with f > 1
    merges a Japanese tokenizer of f x ``tokenizer.ja_vocab`` pieces by stage 02's recipe.
    """
    tc = cfg.tokenizer
    tdir = paths.run_dir(cfg.profile) / "tokenizer"
    base_model, expanded = tdir / "base.model", tdir / "expanded.model"
    into.mkdir(parents=True, exist_ok=True)
    out = into / f"{variant}.model"
    f = 0.0 if variant == "chars" else float(variant[1:])
    if f <= 1:
        info = truncated(base_model, expanded, round(f * multi_char_pieces(base_model, expanded)), out, tc.pad_to)
    else:
        norm = "nfkc" if tc.ja_nfkc else "identity"
        vocab = round(tc.ja_vocab * f)
        ja_model = base.train_sentencepiece(ja_lines, vocab, into / f"ja-{variant}", normalization=norm, seed=tc.seed)
        info = _merged(base_model, ja_model, coverage.coverage_characters() if tc.coverage else [], out, tc.pad_to)
    export.export_hf(out, into / variant)
    return info


def _build_init(cfg: Config, variant: str, tok_root: Path, into: Path) -> dict:
    """The base model resized to the variant's vocabulary, new rows by mean of pieces (cpt-ve's init)."""
    from transformers import AutoModelForCausalLM

    tdir = paths.run_dir(cfg.profile) / "tokenizer"
    base_dir = paths.run_out_dir(cfg.profile, cfg.embedding_init.base_run) / "final"
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True).eval()
    info = methods.resize_and_init(model, tdir / "base.model", tok_root / f"{variant}.model", "mean-of-pieces",
                                   seed=cfg.seed)  # fmt: skip
    dest = into / variant
    model.save_pretrained(dest, safe_serialization=True)
    export.load_hf(tok_root / variant).save_pretrained(dest)
    # What identifies these start weights to the engine (a rebuilt variant makes its run start again).
    source = fingerprint({"variant": variant, **_upstream(cfg)}, [Path(methods.__file__)])
    write_json_atomic(dest / "trainer_state.json", {"stage": "study", "variant": variant, "method": "mean-of-pieces",
                                                    "source": source})  # fmt: skip
    return info


def variant_table(cfg: Config, models: dict[str, Path]) -> pd.DataFrame:
    """Per tokenizer: size, pieces added to the base (multi-character and single characters; padding not counted),
    Japanese characters per token on the held-out manuals, and the
    token-level ROUGE-2 of the same lead-sentence summaries (the metric's unit alone; MeCab words are the control)."""
    tc = cfg.tokenizer
    docs = shards.sample_texts(paths.corpus_split_files(cfg.profile, "ja", "test"), tc.eval_max_docs, tc.seed)
    chars = sum(len(d) for d in docs)
    pairs = lead_pairs(cfg.profile, "ja")
    base_size = spm.SentencePieceProcessor(model_file=str(models["base"])).get_piece_size()
    rows = []
    for name, model in models.items():
        sp = spm.SentencePieceProcessor(model_file=str(model))
        tokens = sum(len(ids) for ids in sp.encode(docs))
        rouge = [rouge2_f(h, r, lambda s, sp=sp: sp.encode(s, out_type=str)) for h, r in pairs]
        multi = multi_char_pieces(models["base"], model)
        added = sum(p.type == merge.NORMAL for p in merge.load_proto(model).pieces[base_size:])
        rows.append({"tokenizer": name, "vocab": sp.get_piece_size(), "added": added, "multi_char": multi,
                     "characters": added - multi, "ja_chars_per_token": chars / tokens,
                     "rouge2_tokens_lead": sum(rouge) / len(rouge)})
    return pd.DataFrame(rows)


def build_variants(cfg: Config) -> Path:
    """Step 1 (skipped when up to date): the variant tokenizers, their start weights and ``variants.csv``."""
    st = _stage(cfg)
    if st.is_up_to_date():
        log.info("study: %s is up to date", st.out)
        return st.out
    tc = cfg.tokenizer
    tdir = paths.run_dir(cfg.profile) / "tokenizer"
    for need in (tdir / "base.model", tdir / "expanded.model"):
        if not need.is_file():
            raise FileNotFoundError(f"{need}: missing; `make study` needs `make reproduce PROFILE={cfg.profile}`")
    with st.staging() as staged:
        toks, inits = staged / "tokenizers", staged / "inits"
        with st.step("japanese lines"):
            ja_lines = shards.sample_lines(paths.corpus_split_files(cfg.profile, "ja", "train"), tc.max_train_lines,
                                           tc.seed)  # fmt: skip
        with st.step("check both recipes at x1 = stage 02's expanded"):
            probe = staged / "probe"
            probe.mkdir()
            n_multi = multi_char_pieces(tdir / "base.model", tdir / "expanded.model")
            truncated(tdir / "base.model", tdir / "expanded.model", n_multi, probe / "prefix.model", tc.pad_to)
            ja = base.train_sentencepiece(ja_lines, tc.ja_vocab, probe / "ja", seed=tc.seed,
                                          normalization="nfkc" if tc.ja_nfkc else "identity")  # fmt: skip
            _merged(tdir / "base.model", ja, coverage.coverage_characters() if tc.coverage else [],
                    probe / "merged.model", tc.pad_to)  # fmt: skip
            for name in ("prefix", "merged"):
                if (probe / f"{name}.model").read_bytes() != (tdir / "expanded.model").read_bytes():
                    raise RuntimeError(f"{probe / name}.model: the study's {name} recipe at x1 does not rebuild "
                                       f"{tdir}/expanded.model: the sweep would not share cpt-ve's method")  # fmt: skip
            shutil.rmtree(probe)
        records = {}
        for variant in _variants(cfg):
            with st.step(f"tokenizer {variant}"):
                records[variant] = {"merge": _build_tokenizer(cfg, variant, ja_lines, toks)}
            with st.step(f"init {variant}"):
                records[variant]["init"] = _build_init(cfg, variant, toks, inits)
        with st.step("variants table"):
            models = {"base": tdir / "base.model", **({"chars": toks / "chars.model"} if cfg.study.chars_arm else {}),
                      **{v: toks / f"{v}.model" for v in _variants(cfg) if v != "chars"},
                      "v1": tdir / "expanded.model"}  # fmt: skip
            table = variant_table(cfg, models).sort_values("added")
            write_text_atomic(staged / "variants.csv", table.to_csv(index=False))
        st.report["variants"] = records
    # The published paths are the ones the runs name (matrix.variant_dirs); check them once.
    for variant in _variants(cfg):
        for d in matrix.variant_dirs(cfg.profile, variant):
            if not (d / "tokenizer.json").is_file():
                raise RuntimeError(f"{d}: not written by the study's variants step")
    return st.out


def run_study(cfg: Config | str | Path, *, quiet: bool = True) -> dict:
    """The whole `make study`: variants, training, evaluation, ``summary.json``."""
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    runs = matrix.study_runs(cfg)
    if not runs:
        raise ConfigError(f"{cfg.path}: study: the section asks for no run (seeds, chars_arm, vocab_sweep, longer, "
                          "scratch_total)")  # fmt: skip
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if _variants(cfg):
        build_variants(cfg)
    timings["variants"] = round(time.perf_counter() - t, 1)
    for name in runs:
        t = time.perf_counter()
        launch(cfg.path, name, quiet=quiet, extra_args=("--restart-if-changed",))
        timings[f"train {name}"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    summary = harness.run_eval(cfg, runs=list(runs))
    timings["eval"] = round(time.perf_counter() - t, 1)
    if summary["failed"] or summary["task_failures"]:
        log.warning("study: %d checkpoint(s) and %d task(s) failed evaluation (retried on the next run)",
                    len(summary["failed"]), len(summary["task_failures"]))  # fmt: skip
    out = {"runs": list(runs), "timings_s": timings, "evaluated": len(summary["evaluated"]),
           "eval_failures": len(summary["failed"]) + len(summary["task_failures"])}  # fmt: skip
    write_json_atomic(matrix.study_dir(cfg.profile) / "summary.json", out)
    return out


def main(argv: list[str] | None = None) -> None:
    stage_cli(_cli, __doc__.splitlines()[0], argv)


def _cli(cfg: str, force: bool = False) -> Path:
    if force:  # the variants again; the runs and the evaluation resume or skip as always
        shutil.rmtree(matrix.study_dir(load_config(cfg).profile), ignore_errors=True)
    run_study(cfg, quiet=False)
    return matrix.study_dir(load_config(cfg).profile)


if __name__ == "__main__":
    sys.exit(main())
