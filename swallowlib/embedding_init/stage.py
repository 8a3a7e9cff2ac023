"""Stage 03 end to end: the base model, one resized model per init method, and how good each start is.

    python -m swallowlib.embedding_init.stage --config configs/tiny.yaml      # skips when up to date

Steps (the base run and the short CPTs are training, so they run as subprocesses, never in a notebook kernel):

1. the base model: GPU profiles name it (``train.model.pretrained``); CPU profiles pre-train the tiny English Llama
   with the training engine (run ``embedding_init.base_run``, ``python -m swallowlib.train … --run base``);
2. per method and seed: resize to the expanded vocabulary and initialise the new rows
   (:mod:`swallowlib.embedding_init.methods`); the model of the profile's seed is published as
   ``runs/<profile>/embedding_init/<method>/`` (the ``init:<method>`` start of the CPT runs), other seeds under
   ``seeds/<method>-s<seed>/``;
3. step 0: Japanese and English bits per character on held-out text, for the base model and every (method, seed),
   on the accelerator when there is one (bf16 autocast; ``eval.device``);
4. a short CPT of every (method, seed) with the training engine (runs ``init-cmp-<method>-s<seed>``, launched like
   stage 04: ``train.processes`` processes, FSDP when ``train.fsdp``; the seed also fixes the data order, so the
   methods see the same batches), then bits per character again.

Outputs (``runs/<profile>/embedding_init/``): ``<method>/`` model directories, ``bpc.csv`` (stage, method, seed,
language, bits per character), ``base.json`` (size, tokens, wall time, held-out BPC and greedy continuations of the
base), ``examples.json`` (new tokens and the base pieces they were averaged from), ``provenance.json``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from swallowlib import paths
from swallowlib.config import Config, RunConfig, apply_environment, load_config, to_dict
from swallowlib.corpus import shards
from swallowlib.provenance import (
    fingerprint,
    provenance,
    publish_dir,
    recorded_fingerprint,
    stage_cli,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

CPT_MIX = {"ja": 0.9, "en": 0.1}  # the paper's ratio, for the short CPT of the comparison


def stage_dir(profile: str) -> Path:
    return paths.embedding_init_dir(profile)


def seed_dir(profile: str, method: str, seed: int, main_seed: int) -> Path:
    """Where the resized model of (method, seed) lives: the method's own directory for the profile's seed."""
    d = stage_dir(profile)
    return d / method if seed == main_seed else d / "seeds" / f"{method}-s{seed}"


def comparison_run_name(method: str, seed: int) -> str:
    return f"init-cmp-{method}-s{seed}"


def parse_comparison_run(name: str) -> tuple[str, int]:
    """``("mean-of-pieces", 1)`` from ``init-cmp-mean-of-pieces-s1`` (the inverse of :func:`comparison_run_name`)."""
    method, seed = name.removeprefix("init-cmp-").rsplit("-s", 1)
    return method, int(seed)


def comparison_runs(cfg: Config) -> dict[str, RunConfig]:
    """The short CPT runs of the init comparison, by name (``init-cmp-<method>-s<seed>``); empty when disabled."""
    ec = cfg.embedding_init
    if not ec.short_cpt_tokens:
        return {}
    return {
        comparison_run_name(m, s): RunConfig(
            tokens=ec.short_cpt_tokens,
            init=str(seed_dir(cfg.profile, m, s, cfg.seed)),
            tokenizer="expanded",
            mix=dict(CPT_MIX),
            seed=s,
            checkpoint_fractions=[1.0],  # compared at the end only (and by their per-step loss): no milestone saves
        )
        for m in ec.methods
        for s in ec.seeds
    }


def base_model_dir(cfg: Config) -> Path | str:
    """The base model: ``train.model.pretrained`` (GPU profiles) or the base run's final directory."""
    if cfg.train.model.pretrained:
        return cfg.train.model.pretrained
    return paths.run_out_dir(cfg.profile, cfg.embedding_init.base_run) / "final"


def _fingerprint(cfg: Config) -> str:
    code = [p for p in sorted(Path(__file__).parent.glob("*.py")) if p.name != "report.py"]
    code.append(Path(shards.__file__))  # the held-out sample every bits-per-character figure is measured on
    base = Path(str(base_model_dir(cfg))) / "trainer_state.json"
    upstream = {
        "tokenizer": recorded_fingerprint(paths.run_dir(cfg.profile) / "tokenizer"),
        "base": base.read_text() if base.is_file() else str(base_model_dir(cfg)),
    }
    return fingerprint({"embedding_init": to_dict(cfg.embedding_init), "seed": cfg.seed, **upstream}, code)


def _init_source(cfg: Config, method: str, seed: int) -> str:
    """What one init's weights depend on (base weights, tokenizers, method, seed, FOCUS settings, the init code) -
    not the rest of the stage's settings, so e.g. a longer comparison CPT does not invalidate the CPT runs."""
    base = Path(str(base_model_dir(cfg))) / "trainer_state.json"
    state = json.loads(base.read_text()) if base.is_file() else {}
    here = Path(__file__).parent
    return fingerprint(
        {
            "base": {k: state.get(k) for k in ("run", "step", "tokens")} or str(base_model_dir(cfg)),
            "tokenizer": recorded_fingerprint(paths.run_dir(cfg.profile) / "tokenizer"),
            "method": method,
            "seed": seed,
            "focus": to_dict(cfg.embedding_init.focus) if method == "focus" else None,
        },
        [here / "methods.py", here / "focus.py"],
    )


def is_up_to_date(cfg: Config) -> bool:
    return recorded_fingerprint(stage_dir(cfg.profile)) == _fingerprint(cfg)


def _held_out(profile: str, lang: str, max_docs: int, max_chars: int, seed: int) -> list[str]:
    """At most ``max_docs`` held-out documents of ``lang`` (test split), cut to ``max_chars`` characters in all."""
    texts = shards.sample_texts(paths.corpus_split_files(profile, lang, "test"), max_docs, seed)
    # The sample comes back in corpus order; shuffled, the character budget does not favour the first shards.
    random.Random(seed).shuffle(texts)
    out, n = [], 0
    for t in texts:
        t = t[: max_chars - n]
        if not t:
            break
        out.append(t)
        n += len(t)
    return out


def _eval_texts(cfg: Config) -> dict[str, list[str]]:
    """The held-out Japanese and English documents every bits-per-character figure of the stage is measured on."""
    ec = cfg.embedding_init
    return {lang: _held_out(cfg.profile, lang, ec.eval_max_docs, ec.eval_max_chars, cfg.seed) for lang in ("ja", "en")}


def train_base(cfg: Config, *, quiet: bool = False) -> Path | str:
    """Pre-train the tiny English base with the training engine (a subprocess); a finished run is skipped."""
    d = base_model_dir(cfg)
    if cfg.train.model.pretrained or (Path(d) / "config.json").is_file():
        return d
    from swallowlib.train import launch

    launch(cfg.path, cfg.embedding_init.base_run, quiet=quiet, extra_args=("--restart-if-changed",))
    return d


def _bpc_rows(model, toks, texts: dict[str, list[str]], seq_len: int, device: str, **labels) -> list[dict]:
    """Bits per character of ``model`` on each language's texts, scored on ``device`` (the model goes back to the CPU
    afterwards: the stage saves fp32 weights and holds one model on the device at a time)."""
    from swallowlib.embedding_init.evaluate import bits_per_char

    rows = []
    model.to(device)
    try:
        for lang, tx in texts.items():
            r = bits_per_char(model, toks, tx, seq_len=seq_len)
            rows.append({**labels, "lang": lang, "bpc": r["bpc"], "tokens": r["tokens"], "chars": r["chars"]})
    finally:
        model.to("cpu")
    return rows


def build_inits(cfg: Config | str | Path, force: bool = False) -> Path:
    """Steps 2-3 (the base must exist): resize + init every (method, seed), publish, and measure step 0."""
    import torch
    from transformers import AutoModelForCausalLM

    from swallowlib.embedding_init import focus, methods
    from swallowlib.tokenizer.export import load_hf
    from swallowlib.tokenizer.stage import tokenizer_dir

    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    ec = cfg.embedding_init
    out = stage_dir(cfg.profile)
    if not force and is_up_to_date(cfg):
        log.info("embedding init: %s is up to date", out)
        return out
    base_dir = base_model_dir(cfg)
    if not cfg.train.model.pretrained and not (Path(base_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{base_dir}: no base model — train it first (embedding_init.stage.train_base)")
    tdir = tokenizer_dir(cfg.profile)
    base_spm, exp_spm = tdir / "base.model", tdir / "expanded.model"
    tok_base, tok_exp = load_hf(tdir / "base"), load_hf(tdir / "expanded")
    seq_len = cfg.train.seq_len
    texts = _eval_texts(cfg)
    stage = Path(str(out) + ".tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    torch.manual_seed(cfg.seed)
    try:
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=cfg.offline).eval()
        device = cfg.eval.resolved_device()
        rows = _bpc_rows(base, tok_base, texts, seq_len, device, stage="step 0", method="base (no expansion)",
                         seed=cfg.seed)  # fmt: skip
        weights = None
        if "focus" in ec.methods:
            ja_train = paths.corpus_split_files(cfg.profile, "ja", "train")
            lines = shards.sample_lines(ja_train, ec.focus.max_lines, cfg.seed)
            fc = ec.focus
            weights = focus.focus_weights(
                exp_spm, lines, len(tok_base), dim=fc.dim, window=fc.window, min_count=fc.min_count,
                temperature=fc.temperature, seed=cfg.seed,
            )  # fmt: skip
        records = {}
        for method in ec.methods:
            for seed in ec.seeds:
                model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=cfg.offline).eval()
                info = methods.resize_and_init(
                    model, base_spm, exp_spm, method, seed=seed, focus_weights=(lambda o, n: weights)
                )
                records[f"{method}/s{seed}"] = info
                rows += _bpc_rows(model, tok_exp, texts, seq_len, device, stage="step 0", method=method, seed=seed)
                dest = stage / seed_dir(cfg.profile, method, seed, cfg.seed).relative_to(out)
                model.save_pretrained(dest, safe_serialization=True)
                tok_exp.save_pretrained(dest)
                # What identifies these start weights to the training engine (run.json): a rebuilt init with a new
                # base or method makes a run that started from the old one refuse to resume instead of mixing them.
                write_json_atomic(
                    dest / "trainer_state.json",
                    {"stage": "embedding_init", "method": method, "seed": seed,
                     "source": _init_source(cfg, method, seed)},
                )  # fmt: skip
                log.info("embedding init: %s seed %d -> %s", method, seed, rows[-2:])
        write_text_atomic(stage / "bpc.csv", pd.DataFrame(rows).to_csv(index=False))
        splits = methods.base_split(base_spm, exp_spm, len(tok_base))
        ids = sorted(splits)[: ec.examples]
        examples = [
            {
                "id": i,
                "token": tok_exp.convert_ids_to_tokens(i),
                "base pieces": tok_base.convert_ids_to_tokens(splits[i]),
            }
            for i in ids
        ]
        write_json_atomic(stage / "examples.json", examples)
        write_json_atomic(stage / "inits.json", records)
        write_json_atomic(
            stage / "provenance.json", provenance(cfg, stage="embedding_init", fingerprint=_fingerprint(cfg))
        )
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    publish_dir(stage, out)
    return out


def describe_base(cfg: Config) -> dict:
    """Size, tokens seen, wall time, held-out BPC and greedy continuations of the base model (``base.json``).

    Needs :func:`build_inits` first (it measured the base's bits per character with the same held-out text).
    """
    from transformers import AutoModelForCausalLM

    from swallowlib.tokenizer.export import load_hf
    from swallowlib.tokenizer.stage import tokenizer_dir

    d = base_model_dir(cfg)
    model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=cfg.offline).eval()
    tok = load_hf(tokenizer_dir(cfg.profile) / "base")
    state_file = Path(str(d)) / "trainer_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    ec = cfg.embedding_init
    measured = pd.read_csv(stage_dir(cfg.profile) / "bpc.csv")  # build_inits measured the base at step 0
    base_rows = measured[measured["method"] == "base (no expansion)"]
    bpc = dict(zip(base_rows["lang"], base_rows["bpc"], strict=True))
    continuations = {}
    for p in ec.prompts:
        ids = tok(p, return_tensors="pt")["input_ids"]
        outp = model.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=tok.eos_token_id)
        continuations[p] = tok.decode(outp[0, ids.shape[1] :], skip_special_tokens=True)
    n = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    rec = {
        "model": str(d),
        "parameters": n,
        "non_embedding_parameters": n - emb,
        "tokens_seen": state.get("tokens"),
        "wall_s": state.get("wall_s"),
        "bpc": bpc,
        "continuations": continuations,
    }
    write_json_atomic(stage_dir(cfg.profile) / "base.json", rec)
    return rec


def run_comparison(cfg: Config, *, quiet: bool = True) -> pd.DataFrame:
    """Step 4: the short CPT of every (method, seed) (subprocesses), then bits per character of each final model."""
    import torch
    from transformers import AutoModelForCausalLM

    from swallowlib.tokenizer.export import load_hf
    from swallowlib.tokenizer.stage import tokenizer_dir
    from swallowlib.train import launch

    tok = load_hf(tokenizer_dir(cfg.profile) / "expanded")
    texts = _eval_texts(cfg)
    rows = []
    torch.manual_seed(cfg.seed)
    for name in comparison_runs(cfg):
        launch(cfg.path, name, quiet=quiet, extra_args=("--restart-if-changed",))
        method, seed = parse_comparison_run(name)
        model = AutoModelForCausalLM.from_pretrained(
            str(paths.run_out_dir(cfg.profile, name) / "final"), local_files_only=True
        ).eval()
        rows += _bpc_rows(model, tok, texts, cfg.train.seq_len, cfg.eval.resolved_device(), stage="after short CPT",
                          method=method, seed=seed)  # fmt: skip
    df = pd.DataFrame(rows)
    write_text_atomic(stage_dir(cfg.profile) / "bpc_after_cpt.csv", df.to_csv(index=False))
    return df


def build_embedding_init(cfg: Config | str | Path, force: bool = False, *, quiet: bool = False) -> Path:
    """The whole stage: base (trained if needed), inits + step 0, base description, short CPT comparison."""
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    apply_environment(cfg)
    t0 = time.perf_counter()
    train_base(cfg, quiet=quiet)
    fresh = force or not is_up_to_date(cfg)
    if fresh:  # short CPTs of earlier inits would be "complete" and skipped; they must start again
        for name in comparison_runs(cfg):
            shutil.rmtree(paths.run_out_dir(cfg.profile, name), ignore_errors=True)
    out = build_inits(cfg, force=force)
    if fresh or not (out / "base.json").is_file():
        describe_base(cfg)
    if comparison_runs(cfg) and (fresh or not (out / "bpc_after_cpt.csv").is_file()):
        run_comparison(cfg, quiet=quiet)
    log.info("embedding init: done in %.0f s", time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> None:
    stage_cli(build_embedding_init, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
