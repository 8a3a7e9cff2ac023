"""The dry run of a profile: every stage, every training run and what it costs, printed without touching the network.

    python -m swallowlib.plan --config configs/llama2-7b.yaml                 # make reproduce PROFILE=… DRY_RUN=1
    python -m swallowlib.plan --config configs/tinyllama-1.1b.yaml --gpu A100 --mfu 0.4
    python -m swallowlib.plan --config configs/llama2-7b.yaml --gpus 32 --json

Nothing is downloaded and no Hub id is resolved: model sizes come from :data:`KNOWN_MODELS` (the published
architectures of the base models the profiles name; a local model directory's ``config.json`` also works) or from
``train.model`` for scratch profiles. What earlier stages already measured under ``runs/<profile>/`` is used when
present (the merged vocabulary size, corpus sizes and characters per token, finished runs' throughput) and every
other number is labelled an estimate or an assumption.

Per training run: start weights, tokenizer and vocabulary, mix, tokens, optimizer steps
(``ceil(tokens / (seq_len × batch_size))``, as the engine counts them), milestones, and
compute. FLOPs follow the engine's MFU definition (:func:`swallowlib.train.model.flops_per_token`):
``tokens × (6·N + 12·n_layers·d·seq_len)``, ``N`` every parameter but the input embedding; ``6·N·D`` alone is
printed beside it. GPU-hours = FLOPs / (peak bf16 FLOP/s of the card × MFU), both assumptions that ``--gpu`` /
``--gpu-tflops`` / ``--mfu`` override; wall-clock = GPU-hours / GPUs (``--gpus``, which is also the process count
the gradient accumulation is derived from). CPU profiles get measured or throughput-based CPU time instead.
GPU plans also give each run's peak memory per process (:mod:`swallowlib.train.memory`, on that process count) and
flag the runs that do not fit ``train.device_memory_gib`` with 15 % headroom.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from swallowlib import paths
from swallowlib.config import (
    Config,
    ConfigError,
    QualityFilters,
    default_filters,
    grad_accum,
    load_config,
    run_checkpoint_fractions,
    run_optimizer,
)

# The architecture table and parameter count live with the memory model, which needs them too; re-exported here.
from swallowlib.train import memory
from swallowlib.train.memory import KNOWN_MODELS, LLAMA2_VOCAB, Arch, param_count  # noqa: F401

log = logging.getLogger(__name__)

#: The card and MFU the GPU-hours assume unless overridden. 35 % MFU: what a bf16 HF Llama (sdpa attention, no
#: compile) typically reaches on one H100 at 1-7B - not measured by this project yet (`make gpu-check` measures it on
#: a ~134M model); FSDP across nodes with activation checkpointing (recompute is not counted) tends to be lower.
DEFAULT_GPU = "H100"
DEFAULT_MFU = 0.35


class PlanError(ValueError):
    """The plan cannot be made (an unknown base model, a bad override); the message says what to do."""


# ---------------------------------------------------------------------------------------------------------------
# Arithmetic (tested with known answers)


def flops_per_token(arch: Arch, vocab: int, seq_len: int) -> tuple[float, float]:
    """``(engine FLOPs per token, 6·N)``: the engine's MFU definition and its parameter term alone."""
    from swallowlib.train.model import flops_per_token as engine_flops

    ns = SimpleNamespace(hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers, vocab_size=vocab,
                         num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                         intermediate_size=arch.intermediate_size, head_dim=None)  # fmt: skip
    total = engine_flops(ns, seq_len)
    return total, total - 12.0 * arch.num_layers * arch.hidden_size * seq_len


def total_steps(tokens: int, seq_len: int, batch_size: int) -> int:
    """Optimizer steps the engine runs for a token budget (:func:`swallowlib.train.engine.total_steps_of`)."""
    from swallowlib.train.engine import total_steps_of

    return total_steps_of(SimpleNamespace(tokens=tokens, batch_size=batch_size, seq_len=seq_len))


def milestone_steps(fractions: list[float], steps: int) -> dict[int, float]:
    """``{step: fraction}`` of the milestones, as the engine places them (round, at least step 1, first wins)."""
    out: dict[int, float] = {}
    for f in fractions:
        out.setdefault(max(1, round(f * steps)), f)
    return out


def gpu_hours(flops: float, peak_flops: float, mfu: float) -> float:
    """GPU-hours to do ``flops`` at ``mfu`` of ``peak_flops`` per GPU (independent of the GPU count)."""
    if peak_flops <= 0 or not 0 < mfu <= 1:
        raise PlanError(f"need a positive peak FLOP/s and an MFU in (0, 1], got {peak_flops:g} and {mfu:g}")
    return flops / (peak_flops * mfu) / 3600.0


# ---------------------------------------------------------------------------------------------------------------
# What the profile and earlier stages say


def _peak(gpu: str | None, tflops: float | None) -> tuple[str, float, str]:
    """``(card, peak FLOP/s, source)`` from ``--gpu-tflops`` or the datasheet table of swallowlib.train.mfu."""
    from swallowlib.train.mfu import GPU_BF16_PEAK

    if tflops is not None:
        if tflops <= 0:
            raise PlanError(f"--gpu-tflops must be > 0, got {tflops:g}")
        return gpu or "GPU", tflops * 1e12, "--gpu-tflops"
    name = gpu or DEFAULT_GPU
    for pattern, flops in GPU_BF16_PEAK:
        if pattern.lower() in name.lower():
            return pattern, flops, "dense bf16 datasheet peak (swallowlib.train.mfu.GPU_BF16_PEAK)"
    known = ", ".join(p for p, _ in GPU_BF16_PEAK)
    raise PlanError(f"--gpu {name!r}: not a known card (known: {known}); give its peak with --gpu-tflops")


def _base_arch(cfg: Config) -> Arch:
    """The architecture runs are built on (:func:`swallowlib.train.memory.base_arch`)."""
    try:
        return memory.base_arch(cfg)
    except memory.ArchError as e:
        raise PlanError(str(e)) from None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


_vocab = memory.vocab_sizes  # {"base": (size, source), "expanded": (size, source)}


def _corpus_tokens(cfg: Config) -> dict[str, dict[str, float]] | None:
    """Training-split tokens per source and tokenizer, from stage 01's sizes and stage 02's characters per token
    on the held-out split; None before both have run."""
    root = paths.run_dir(cfg.profile)
    report = _json(root / "corpus" / "report.json")
    eff = root / "tokenizer" / "efficiency.csv"
    if not report or "sizes" not in report or not eff.is_file():
        return None
    cpt: dict[tuple[str, str], float] = {}
    with eff.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("tokenizer") in ("base", "expanded") and "(test split)" in row.get("domain", ""):
                cpt[(row["tokenizer"], row["lang"])] = float(row["chars_per_token"])
    sizes = report["sizes"]
    out: dict[str, dict[str, float]] = {}
    for tok in ("base", "expanded"):
        if (tok, "ja") not in cpt or (tok, "en") not in cpt:
            return None
        per: dict[str, float] = {}
        for lang in ("ja", "en"):
            chars = sizes.get(lang, {}).get("train", {}).get("chars")
            if chars:
                per[lang] = chars / cpt[(tok, lang)]
        par = sizes.get("parallel", {}).get("train", {})
        if par.get("pairs"):
            # One document per template (both directions); the template's own words count as English.
            fixed = sum(len(t.replace("{en}", "").replace("{ja}", "")) for t in cfg.train.parallel_template)
            per["parallel"] = (len(cfg.train.parallel_template) * (par["chars_en"] / cpt[(tok, "en")]
                               + par["chars_ja"] / cpt[(tok, "ja")]) + par["pairs"] * fixed / cpt[(tok, "en")])
        out[tok] = per
    out["chars_per_token"] = {f"{t}/{lang}": v for (t, lang), v in sorted(cpt.items())}
    return out


def _measured(cfg: Config, run: str) -> dict | None:
    """A finished run's own record (``final/trainer_state.json``): tokens/s and wall time."""
    st = _json(paths.run_out_dir(cfg.profile, run) / "final" / "trainer_state.json")
    if not st or not isinstance(st.get("tokens_per_s"), int | float) or st["tokens_per_s"] <= 0:
        return None
    return {"tokens_per_s": float(st["tokens_per_s"]), "wall_s": st.get("wall_s"), "completed": st.get("completed")}


# ---------------------------------------------------------------------------------------------------------------
# The plan


def _processes(cfg: Config, gpus: int | None) -> tuple[int, str]:
    if gpus is not None:
        if gpus < 1:
            raise PlanError(f"--gpus must be >= 1, got {gpus}")
        return gpus, "--gpus"
    return cfg.train.processes, "train.processes"


def _init_label(cfg: Config, name: str, init: str) -> str:
    if name.startswith("init-cmp-"):
        from swallowlib.embedding_init.stage import parse_comparison_run

        method, seed = parse_comparison_run(name)
        return f"stage 03: {method} init, seed {seed}"
    if init == "scratch":
        src = f"architecture of {cfg.train.model.pretrained}" if cfg.train.model.pretrained else "train.model sizes"
        return f"scratch (random weights, {src})"
    if init.startswith("run:"):
        return f"final weights of run {init[4:]}"
    if init.startswith("init:"):
        return f"stage 03: base resized to the expanded vocabulary, {init[5:]} init"
    if init == cfg.train.model.pretrained:
        return f"the pretrained base {init}"
    return init


def is_gpu_profile(cfg: Config) -> bool:
    """Sized for CUDA: bf16, or a device memory the runs must fit. (A pretrained base alone is not: the rehearsal
    profile trains a tiny pretrained Llama on CPU.)"""
    return cfg.train.device_memory_gib is not None or cfg.train.precision == "bf16"


def plan(cfg: Config, *, gpu: str | None = None, gpu_tflops: float | None = None, mfu: float | None = None,
         gpus: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The structured plan of a profile (see the module docstring); reads only ``cfg`` and ``runs/<profile>/``."""
    from swallowlib.corpus.sources import CATALOGUE
    from swallowlib.embedding_init.stage import comparison_runs
    from swallowlib.train.job import get_run

    tc, ec = cfg.train, cfg.eval
    is_gpu = is_gpu_profile(cfg) or gpu is not None or gpu_tflops is not None
    processes, processes_src = _processes(cfg, gpus)
    if mfu is not None and not 0 < mfu <= 1:
        raise PlanError(f"--mfu must be in (0, 1], got {mfu:g}")
    assumptions: dict[str, Any] = {"processes": processes, "processes_source": processes_src, "gpu": None}
    if is_gpu:
        card, peak, peak_src = _peak(gpu, gpu_tflops)
        assumptions["gpu"] = {"card": card, "peak_flops": peak, "peak_source": peak_src,
                              "mfu": mfu if mfu is not None else DEFAULT_MFU,
                              "mfu_source": "--mfu" if mfu is not None else "assumed (swallowlib.plan.DEFAULT_MFU)"}
    arch = _base_arch(cfg)
    vocab = _vocab(cfg)
    corpus_tok = _corpus_tokens(cfg)

    # --- runs: the matrix, then stage 03's short comparison CPTs (trained before it, but listed after)
    names = list(tc.runs) + [n for n in comparison_runs(cfg) if n not in tc.runs]
    base_run = None if tc.model.pretrained else cfg.embedding_init.base_run
    runs, measured_tps = [], []
    for name in names:
        rc = get_run(cfg, name)
        v, v_src = vocab[rc.tokenizer]
        opt = run_optimizer(tc, rc)
        tokens_per_step = tc.seq_len * tc.batch_size
        steps = total_steps(rc.tokens, tc.seq_len, tc.batch_size)
        per_token, per_token_6n = flops_per_token(arch, v, tc.seq_len)
        trained = steps * tokens_per_step  # the last step may overshoot the budget
        comparison = name.startswith("init-cmp-")
        r: dict[str, Any] = {
            "name": name, "stage": "03" if comparison else "03 (base)" if name == base_run else "04",
            "init": "init-cmp" if comparison else rc.init, "init_label": _init_label(cfg, name, rc.init),
            "tokenizer": rc.tokenizer, "vocab": v, "vocab_source": v_src,
            "mix": dict(rc.mix), "tokens": rc.tokens, "tokens_trained": trained, "seq_len": tc.seq_len,
            "micro_batch": tc.micro_batch_size, "grad_accum": grad_accum(tc, processes), "processes": processes,
            "global_batch_seqs": tc.batch_size, "tokens_per_step": tokens_per_step,
            "steps": steps, "lr": opt.lr, "min_lr": opt.lr * opt.min_lr_ratio,
            "min_lr_ratio": opt.min_lr_ratio, "warmup_steps": opt.warmup_steps, "peft": rc.peft,
            "checkpoints": [{"fraction": f, "step": s, "tokens": s * tokens_per_step}
                            for s, f in sorted(milestone_steps(run_checkpoint_fractions(tc, rc), steps).items())],
            "params": param_count(arch, v), "flops_per_token": per_token, "flops": per_token * trained,
            "flops_6nd": per_token_6n * trained, "gpu_hours": None, "wall_hours": None, "cpu_hours": None,
        }  # fmt: skip
        if r["warmup_steps"] >= steps:  # by design for the short comparison CPTs; worth seeing for any other run
            from swallowlib.train.optim import lr_factor

            top = opt.lr * lr_factor(steps - 1, warmup_steps=r["warmup_steps"], total_steps=steps,
                                         min_lr_ratio=opt.min_lr_ratio)  # fmt: skip
            r["note"] = (f"the whole run is inside its {r['warmup_steps']:,}-step warm-up: the learning rate reaches "
                         f"{top:.3g} ({top / opt.lr:.0%} of the peak)")
        if corpus_tok:
            r["epochs"] = {s: rc.tokens * share / corpus_tok[rc.tokenizer][s]
                           for s, share in rc.mix.items() if share > 0 and corpus_tok[rc.tokenizer].get(s)}
        if is_gpu:
            g = assumptions["gpu"]
            r["gpu_hours"] = gpu_hours(r["flops"], g["peak_flops"], g["mfu"])
            r["wall_hours"] = r["gpu_hours"] / processes
            est = memory.estimate_run(cfg, name, processes)
            r["memory"] = memory.as_dict(est)
            if tc.device_memory_gib is not None:
                r["memory"]["check"] = memory.check_fits(est, tc.device_memory_gib * memory.GIB)
        m = _measured(cfg, name)
        if m:
            r["measured"] = m
            measured_tps.append(m["tokens_per_s"])
        runs.append(r)
    # CPU profiles: time from measured throughput (the run's own, else the mean of the profile's finished runs).
    if not is_gpu:
        mean_tps = sum(measured_tps) / len(measured_tps) if measured_tps else None
        for r in runs:
            m = r.get("measured")
            if m and m.get("completed") and isinstance(m.get("wall_s"), int | float):
                r["cpu_hours"], r["cpu_source"] = m["wall_s"] / 3600, "measured: the finished run's wall time"
            elif m:
                r["cpu_hours"] = r["tokens_trained"] / m["tokens_per_s"] / 3600
                r["cpu_source"] = f"at the run's measured {m['tokens_per_s']:,.0f} tokens/s"
            elif mean_tps:
                r["cpu_hours"] = r["tokens_trained"] / mean_tps / 3600
                r["cpu_source"] = f"estimate at the profile's measured mean {mean_tps:,.0f} tokens/s"

    # --- stages
    cc = cfg.corpus
    role = {s: "eval" if s in cc.eval_sources else "parallel" if s in cc.parallel_sources else "mono"
            for s in cc.sources}  # fmt: skip
    # The paper's rules are the QualityFilters defaults: rule set swallow-v1 (Swallow's released definitions) at
    # Swallow's thresholds. A profile's rules are shown as their differences from those (the rule set among them).
    paper = QualityFilters()
    paper_rules = "the paper's rules (swallow-v1 at Swallow's thresholds, the QualityFilters defaults)"
    filters = {}
    for lang in ("ja", "en"):
        q = cc.filters.get(lang) or default_filters(lang)
        diff = {f.name: getattr(q, f.name) for f in dataclasses.fields(q)
                if getattr(q, f.name) != getattr(paper, f.name)}  # fmt: skip
        filters[lang] = diff or paper_rules
    corpus = {
        "catalogue": [{"name": s, "role": role[s], "licence": CATALOGUE[s].licence} for s in cc.sources],
        "local": [dataclasses.asdict(s) for s in cc.local],
        "hub": [dataclasses.asdict(s) for s in cc.hub],
        "max_docs_per_source": cc.max_docs_per_source, "max_pairs_per_source": cc.max_pairs_per_source,
        "filters": filters, "nfkc": dict(cc.nfkc), "dedup": dataclasses.asdict(cc.dedup),
        "split": dataclasses.asdict(cc.split), "executor": dataclasses.asdict(cc.executor),
        "measured": (_json(paths.run_dir(cfg.profile) / "corpus" / "report.json") or {}).get("sizes"),
        "tokens_estimate": corpus_tok,
    }  # fmt: skip
    tk = cfg.tokenizer
    tokenizer = {
        "base": tk.base, "base_vocab": vocab["base"], "ja_vocab": tk.ja_vocab, "expanded_vocab": vocab["expanded"],
        "ja_nfkc": tk.ja_nfkc, "pad_to": tk.pad_to, "coverage": tk.coverage, "continued": tk.continued,
        "analysis": [n for n, on in (("llama2 + ja" + str(tk.analysis_ja_vocab), tk.analysis_llama2),
                                     ("mistral-v1", tk.analysis_mistral)) if on],
    }  # fmt: skip
    ei = cfg.embedding_init
    embedding_init = {
        "base": tc.model.pretrained or f"run {ei.base_run} (trained by stage 03)",
        "methods": list(ei.methods), "seeds": list(ei.seeds), "short_cpt_tokens": ei.short_cpt_tokens,
        "comparison_runs": [r["name"] for r in runs if r["stage"] == "03"],
    }
    eval_runs = ec.runs or list(tc.runs)
    checkpoints = 0
    no_step0 = []
    for r in runs:
        if r["name"] not in eval_runs:
            continue
        ck = len(r["checkpoints"]) if ec.milestones else 1
        init = tc.runs[r["name"]].init
        # harness.discover adds the start weights as step 0 only when they are a directory (run:/init:/a path)
        if init.startswith(("run:", "init:")) or (init != "scratch" and Path(init).is_dir()):
            ck += 1
        elif init != "scratch":
            no_step0.append(r["name"])
        checkpoints += ck
    evaluation = {
        "runs": eval_runs, "tasks": list(ec.tasks), "milestone_tasks": list(ec.milestone_tasks),
        "harness_tasks": dict(ec.harness_tasks), "checkpoints": checkpoints,
        "harness_evaluations": checkpoints * len(ec.harness_tasks), "max_examples": ec.max_examples,
        "no_step0": no_step0,
    }

    mem_checked = [r for r in runs if "check" in r.get("memory", {})]
    memory_summary = None if not is_gpu else {
        "device_gib": tc.device_memory_gib, "headroom": memory.HEADROOM,
        "largest_gib": max(r["memory"]["gib"] for r in runs) if runs else None,
        "not_fitting": [r["memory"]["check"] for r in mem_checked if r["memory"]["check"]],
    }  # fmt: skip
    totals: dict[str, Any] = {
        "tokens": sum(r["tokens_trained"] for r in runs), "flops": sum(r["flops"] for r in runs),
        "gpu_hours": sum(r["gpu_hours"] for r in runs) if is_gpu else None,
        "wall_hours": sum(r["wall_hours"] for r in runs) if is_gpu else None,
        "cpu_hours": (sum(r["cpu_hours"] for r in runs) if not is_gpu and all(r["cpu_hours"] is not None for r in runs)
                      else None),
    }  # fmt: skip
    return {
        "profile": cfg.profile, "config": cfg.path, "offline": cfg.offline, "device": "gpu" if is_gpu else "cpu",
        "model": {"base": tc.model.pretrained or "scratch (train.model sizes)", "arch": dataclasses.asdict(arch)},
        "assumptions": assumptions, "stages": {"01_corpus": corpus, "02_tokenizer": tokenizer,
                                               "03_embedding_init": embedding_init, "05_eval": evaluation},
        "runs": runs, "totals": totals, "memory": memory_summary,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# Printing


def _n(x: float) -> str:
    """1.2B / 340M / 52k style for token and parameter counts."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:g}"


def _hours(h: float | None) -> str:
    if h is None:
        return "n/a"
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h" + (f" ({h / 24:.1f} d)" if h >= 48 else "")


def _memory_line(m: dict[str, Any], device_gib: float | None) -> str:
    """One run's memory estimate: total, parts, and whether it fits the profile's device."""
    parts = " + ".join(f"{k} {v:.1f}" for k, v in m["parts_gib"].items())
    d = m["detail"]
    how = (f"micro-batch {d['micro_batch_size']}, {'FSDP' if d['fsdp'] else 'no FSDP'} on {m['processes']}, "
           f"checkpointing {'on' if d['activation_checkpointing'] else 'off'}")
    line = f"memory per process (estimate, {how}): {m['gib']:.1f} GiB = {parts}"
    if device_gib is None:
        return line
    if m.get("check"):
        return line + f"; DOES NOT FIT {device_gib:g} GiB: {m['check']}"
    return line + f"; fits {device_gib:g} GiB ({m['gib'] / device_gib:.0%})"


def render(p: dict[str, Any]) -> str:
    """The plan as text (what ``python -m swallowlib.plan`` prints)."""
    out: list[str] = []
    w = out.append
    a = p["assumptions"]
    w(f"Plan for profile {p['profile']} ({p['config']}) - dry run, nothing fetched")
    w(f"  base model: {p['model']['base']}; device: {p['device'].upper()}; offline: {p['offline']}")
    g = a["gpu"]
    if g:
        w(f"  assumed: {g['card']} at {g['peak_flops'] / 1e12:,.0f} TFLOP/s bf16 peak ({g['peak_source']}), "
          f"MFU {g['mfu']:.0%} ({g['mfu_source']}), {a['processes']} GPU(s) = processes ({a['processes_source']})")
    else:
        w(f"  {a['processes']} process(es) ({a['processes_source']}); GPU-hours n/a (a CPU profile; "
          "--gpu/--gpu-tflops estimate them)")

    c = p["stages"]["01_corpus"]
    w("")
    w("01 corpus: fetch, extract, filter (Swallow rules), MinHash dedup, split, decontaminate")
    roles: dict[str, list[str]] = {}
    for s in c["catalogue"]:
        roles.setdefault(s["role"], []).append(s["name"])
    for role, label in (("mono", "monolingual"), ("parallel", "parallel pairs"), ("eval", "evaluation only")):
        if roles.get(role):
            w(f"  registry sources, {label}: {', '.join(roles[role])}")
    if c["max_docs_per_source"]:
        w(f"  at most {c['max_docs_per_source']:,} documents / {c['max_pairs_per_source'] or 'all'} pairs per source")
    for h in c["hub"]:
        cfg_s = f" [{h['config']}]" if h["config"] else ""
        cap = f"max_docs {h['max_docs']:,}" if h["max_docs"] else "all documents"
        w(f"  hub {h['language']}: {h['name']} = {h['dataset']}{cfg_s} split {h['split']}, field {h['text_field']}, "
          f"{cap}; licence {h['licence']}")
    for s in c["local"]:
        w(f"  local {s['language']}: {s['name']} = {s['path']}; licence {s['licence']}")
    for lang, f in c["filters"].items():
        w(f"  filters {lang}: {f if isinstance(f, str) else 'differs from the paper rules in ' + json.dumps(f)}")
    d, sp = c["dedup"], c["split"]
    w(f"  dedup: {'MinHash over character ' + str(d['ngram']) + '-grams, ' if d['enabled'] else 'off'}"
      f"{d['num_buckets']} x {d['hashes_per_bucket']}; split valid {sp['valid']:g} / test {sp['test']:g}; "
      f"executor {c['executor']['kind']} ({c['executor']['workers']} workers)")
    if c["measured"]:
        sz = c["measured"]
        parts = [f"{lang} {sz[lang]['train']['docs']:,} docs / {_n(sz[lang]['train']['chars'])} chars"
                 for lang in ("ja", "en") if lang in sz and "train" in sz[lang]]
        if "parallel" in sz and "train" in sz["parallel"]:
            parts.append(f"parallel {sz['parallel']['train']['pairs']:,} pairs")
        w(f"  measured (runs/{p['profile']}/corpus): train split " + "; ".join(parts))
    else:
        w("  corpus sizes: measured by stage 01 (not run yet)")

    t = p["stages"]["02_tokenizer"]
    w("")
    w("02 tokenizer: base, Japanese SentencePiece, Swallow merge, HF export, efficiency")
    w(f"  base {t['base']} ({t['base_vocab'][0]:,} pieces, {t['base_vocab'][1]}); Japanese {t['ja_vocab']:,} pieces"
      f" (NFKC {t['ja_nfkc']}); expanded {t['expanded_vocab'][0]:,} ({t['expanded_vocab'][1]})")
    w(f"  coverage pieces: {t['coverage']}; continued-BPE variant: {t['continued']}; analysis: "
      f"{', '.join(t['analysis']) or 'none'}")
    if c["tokens_estimate"]:
        w("  measured characters per token (held-out): " + ", ".join(
            f"{k} {v:.2f}" for k, v in c["tokens_estimate"]["chars_per_token"].items()))

    first_cmp = next((r for r in p["runs"] if r["stage"] == "03"), None)
    e = p["stages"]["03_embedding_init"]
    w("")
    w("03 embedding init: base model, resize to the expanded vocabulary, compare init methods")
    w(f"  base: {e['base']}; methods: {', '.join(e['methods'])}; seeds {e['seeds']}; "
      f"short CPT {_n(e['short_cpt_tokens'])} tokens each ({len(e['comparison_runs'])} runs below)")

    w("")
    w("04 pretrain: every run (accelerate launch -m swallowlib.train --config … --run NAME)")
    for r in p["runs"]:
        if r["stage"] == "03" and r is not first_cmp:  # the comparison CPTs differ only in init and seed
            w(f"  run {r['name']} [stage 03]: {r['init_label']}; as {first_cmp['name']}"
              + (f"; {_hours(r['gpu_hours'])} GPU-hours" if r["gpu_hours"] is not None else "")
              + (f"; {r['memory']['gib']:.1f} GiB per process" if r.get("memory") else ""))
            if r.get("memory", {}).get("check"):
                w(f"    DOES NOT FIT: {r['memory']['check']}")
            continue
        mix = " ".join(f"{k} {v:g}" for k, v in r["mix"].items())
        w(f"  run {r['name']} [stage {r['stage']}]: {r['init_label']}")
        w(f"    tokenizer {r['tokenizer']} ({r['vocab']:,}), {_n(r['params'])} parameters; mix {mix}"
          + (" (LoRA)" if r["peft"] else ""))
        w(f"    tokens {r['tokens']:,} = {r['steps']:,} steps x {r['tokens_per_step']:,} tokens "
          f"({r['global_batch_seqs']:,} seqs = {r['micro_batch']} x {r['grad_accum']} x {r['processes']} processes, "
          f"x {r['seq_len']:,})")
        w(f"    lr {r['lr']:.3g} -> {r['min_lr']:.3g} (cosine, x{r['min_lr_ratio']:g}), warm-up {r['warmup_steps']:,} "
          f"steps; milestones at " + ", ".join(f"{ck['fraction']:g} (step {ck['step']:,}, {_n(ck['tokens'])})"
                                              for ck in r["checkpoints"]))
        cost = f"    FLOPs {r['flops']:.3g} (6ND {r['flops_6nd']:.3g})"
        if r["gpu_hours"] is not None:
            cost += f"; {_hours(r['gpu_hours'])} GPU-hours = {_hours(r['wall_hours'])} on {r['processes']} GPU(s)"
        elif r.get("cpu_hours") is not None:
            cost += f"; CPU time {_hours(r['cpu_hours'])} ({r['cpu_source']})"
        else:
            cost += "; time n/a (no finished run of this profile to take a throughput from)"
        if r.get("measured") and r["gpu_hours"] is not None:
            m = r["measured"]
            cost += f"; measured {m['tokens_per_s']:,.0f} tokens/s"
        w(cost)
        if r.get("memory"):
            w("    " + _memory_line(r["memory"], p["memory"]["device_gib"]))
        if r.get("epochs"):
            w("    epochs over the training split (estimate): "
              + ", ".join(f"{s} {x:.2g}" for s, x in r["epochs"].items()))
        if r.get("note"):
            w(f"    note: {r['note']}")

    ev = p["stages"]["05_eval"]
    w("")
    w("05 eval: lm-evaluation-harness over every milestone of the evaluated runs")
    w(f"  runs {', '.join(ev['runs'])}: {ev['checkpoints']} checkpoints (milestones + step 0 of continued runs)")
    w(f"  offline tasks (last checkpoint): {', '.join(ev['tasks'])}; every milestone: "
      f"{', '.join(ev['milestone_tasks'])}; up to {ev['max_examples']} examples each")
    if ev["harness_tasks"]:
        w("  lm-eval registry tasks (shots), every checkpoint: "
          + ", ".join(f"{k} ({v})" for k, v in ev["harness_tasks"].items()))
        w(f"  = {ev['harness_evaluations']:,} task evaluations; their time is measured by stage 05, not estimated here")
    if ev["no_step0"]:
        w(f"  note: {', '.join(ev['no_step0'])} start(s) from a Hub id, which stage 05 does not evaluate as step 0")
    w("")
    w("06 analysis: figures and the findings table from the stage 04/05 results")

    tot = p["totals"]
    w("")
    line = f"Total: {len(p['runs'])} runs, {_n(tot['tokens'])} tokens, {tot['flops']:.3g} FLOPs"
    if tot["gpu_hours"] is not None:
        line += (f"; GPU-hours total {tot['gpu_hours']:,.0f} ({g['card']}, MFU {g['mfu']:.0%}) = "
                 f"{_hours(tot['wall_hours'])} wall-clock on {a['processes']} GPU(s), runs one after another")
    else:
        line += f"; CPU time total {_hours(tot['cpu_hours'])}; GPU-hours total n/a (CPU profile)"
    w(line)
    mem = p.get("memory")
    if mem and mem["device_gib"] is None:
        w(f"Memory: largest run ~{mem['largest_gib']:.1f} GiB per process (estimate); not checked "
          "(train.device_memory_gib unset)")
    elif mem and mem["not_fitting"]:
        w(f"Memory: {len(mem['not_fitting'])} run(s) do NOT fit train.device_memory_gib ({mem['device_gib']:g} GiB) "
          f"with {mem['headroom']:.0%} headroom:")
        for problem in mem["not_fitting"]:
            w(f"  {problem}")
    elif mem:
        w(f"Memory: every run fits train.device_memory_gib ({mem['device_gib']:g} GiB) with {mem['headroom']:.0%} "
          f"headroom; largest ~{mem['largest_gib']:.1f} GiB per process (estimate)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    # The plan never needs the network; make any accidental Hub call fail at once instead of fetching.
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    ap = argparse.ArgumentParser(prog="python -m swallowlib.plan", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml (or a profile name)")
    ap.add_argument("--gpu", help=f"card name from the peak table (default {DEFAULT_GPU})")
    ap.add_argument("--gpu-tflops", type=float, help="peak bf16 TFLOP/s per GPU (overrides --gpu's table value)")
    ap.add_argument("--mfu", type=float, help=f"model FLOPs utilisation, 0-1 (default {DEFAULT_MFU})")
    ap.add_argument("--gpus", type=int,
                    help="GPUs = training processes (sets the gradient accumulation, wall-clock, memory per process)")
    ap.add_argument("--json", action="store_true", help="print the structured plan as JSON instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        p = plan(cfg, gpu=args.gpu, gpu_tflops=args.gpu_tflops, mfu=args.mfu, gpus=args.gpus)
    except (ConfigError, PlanError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(p, indent=1, default=str) if args.json else render(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
