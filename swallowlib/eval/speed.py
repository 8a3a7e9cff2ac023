"""Greedy generation speed on Japanese of the expanded-vocabulary run (VE, ``cpt-ve``) vs the base-vocabulary run
(NVE, ``cpt-nve``): the Swallow model card's "notably faster inference", measured in characters of text per second.

Both runs have the same model size; the expanded tokenizer packs more characters into a token, so the same number of
forward passes yields more text. Each run's last checkpoint (as stage 05 finds it, :func:`harness.discover`) is
loaded in float32 with the checkpoint's own tokenizer (``AutoTokenizer``: the generic ``PreTrainedTokenizerFast``,
never remote code). The prompts are the first ``prompt_chars`` characters of the first ``N`` documents of the
decontaminated held-out task file ``runs/<p>/eval/tasks/bpb_ja.test.jsonl`` (or, before stage 05 wrote it, a seeded
sample of stage 01's Japanese test split), each prefixed with BOS as every training document was.

Every prompt is generated greedily at batch 1 with ``min_new_tokens = max_new_tokens = K`` (EOS cannot stop early, so
both models make exactly K forward passes after the prompt) and the KV cache on (the checkpoints' generation config
turns it off for training). The models run in **interleaved rounds** (VE, NVE, VE, NVE, …; one warm-up round first,
not timed), so machine load falls on both alike. Per model: characters of the decoded new text per second (median
over rounds of the round's characters / seconds), characters per new token (= per forward pass), tokens per second.
The speed-up is the per-round ratio of VE's to NVE's characters per second (both ran in the same round, so it is
robust to load): its median over rounds, with the min–max over rounds as the interval.

Output: ``runs/<p>/eval/speed.json`` (keys ``config``, ``models``, ``ratio``, ``provenance``); :func:`speed_table`
reads it back as one row per model.

    python -m swallowlib.eval.speed --config configs/tiny.yaml [--rounds 3 --max-new-tokens 32 --prompts 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swallowlib import paths
from swallowlib.config import Config

log = logging.getLogger(__name__)

VE_RUN, NVE_RUN = "cpt-ve", "cpt-nve"
# 4 prompts x 24 tokens per model and round keeps a round to seconds on a CPU; 8 rounds give the t interval room
DEFAULT_PROMPTS, DEFAULT_PROMPT_CHARS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_ROUNDS = 4, 64, 24, 8
TASK_FILE = "bpb_ja.test.jsonl"


def speed_path(profile: str) -> Path:
    return paths.eval_dir(profile) / "speed.json"


@dataclass
class Model:
    """One model to time: a label (the run), the loaded model and tokenizer, and where they came from."""

    label: str
    model: object
    tokenizer: object
    checkpoint: str = ""
    step: int | None = None


def last_checkpoints(cfg: Config, runs: list[str]) -> dict:
    """Each run's last checkpoint (``harness.Checkpoint``); FileNotFoundError naming the first run that has none."""
    from swallowlib.eval.harness import discover

    out = {}
    for run in runs:
        cks = [c for c in discover(cfg, [run]) if c.run == run and c.last]
        if not cks:
            raise FileNotFoundError(
                f"run {run!r} has no checkpoint under {paths.run_out_dir(cfg.profile, run)}: train it first "
                f"(make pretrain)"
            )
        out[run] = cks[-1]
    return out


def load_model(ck, device: str = "cpu") -> Model:
    """A checkpoint in float32 and its tokenizer (offline, never remote code), in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ck.tokenizer), local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(str(ck.path), dtype=torch.float32, local_files_only=True,
                                                 trust_remote_code=False)  # fmt: skip
    model.to(device).eval()
    return Model(ck.run, model, tok, str(ck.path), ck.step)


def load_prompts(cfg: Config, n: int, chars: int = DEFAULT_PROMPT_CHARS) -> tuple[list[str], str]:
    """The first ``chars`` characters of ``n`` held-out Japanese documents, and where they came from."""
    task = paths.eval_dir(cfg.profile) / "tasks" / TASK_FILE
    if task.is_file():
        texts = []
        with task.open(encoding="utf-8") as f:
            for line in f:
                if line.strip() and (t := json.loads(line)["text"]).strip():
                    texts.append(t)
                if len(texts) >= n:
                    break
        source = str(task)
    else:
        from swallowlib.corpus.shards import sample_texts

        files = paths.corpus_split_files(cfg.profile, "ja", "test")
        texts = sample_texts(files, n, cfg.seed)
        source = str(paths.corpus_split_dir(cfg.profile, "ja", "test"))
    if not texts:
        raise FileNotFoundError(f"no Japanese held-out documents in {source} (run stage 01 / 05 first)")
    if len(texts) < n:
        log.warning("only %d held-out documents in %s (asked for %d)", len(texts), source, n)
    return [t[:chars] for t in texts], source


def _prompt_ids(tok, prompt: str) -> list[int]:
    ids = tok.encode(prompt, add_special_tokens=False)
    return [tok.bos_token_id, *ids] if tok.bos_token_id is not None else ids


def generate_one(m: Model, prompt_ids: list[int], k: int) -> list[int]:
    """The ``k`` new token ids of a greedy generation (exactly ``k``: EOS is masked until then)."""
    import torch

    model, tok = m.model, m.tokenizer
    dev = next(model.parameters()).device
    x = torch.tensor([prompt_ids], device=dev)
    eos = tok.eos_token_id
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k, min_new_tokens=k,
                             do_sample=False, use_cache=True, eos_token_id=eos,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos)  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return out[0, len(prompt_ids):].tolist()


def _round(m: Model, prompts: list[list[int]], k: int, clock: Callable[[], float]) -> dict:
    seconds, new_tokens, chars = 0.0, 0, 0
    for ids in prompts:
        t0 = clock()
        new = generate_one(m, ids, k)
        seconds += clock() - t0
        if len(new) != k:
            raise RuntimeError(f"{m.label}: generated {len(new)} new tokens, expected exactly {k}")
        new_tokens += len(new)
        chars += len(m.tokenizer.decode(new, skip_special_tokens=True))
    return {"seconds": seconds, "new_tokens": new_tokens, "chars": chars}


def measure(ve: Model, nve: Model, prompts: list[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            rounds: int = DEFAULT_ROUNDS, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> dict:  # fmt: skip
    """Time greedy generation of ``prompts`` by both models in interleaved rounds; returns ``models`` and ``ratio``.

    ``clock`` (seconds) is injectable so tests can give a known answer.
    """
    if rounds < 1 or max_new_tokens < 1 or not prompts:
        raise ValueError("need at least one round, one new token and one prompt")
    models = (ve, nve)
    ids = {m.label: [_prompt_ids(m.tokenizer, p) for p in prompts] for m in models}
    for _ in range(warmup):
        for m in models:
            _round(m, ids[m.label], max_new_tokens, clock)
    per = {m.label: [] for m in models}
    for _ in range(rounds):
        for m in models:
            per[m.label].append(_round(m, ids[m.label], max_new_tokens, clock))
    out = {}
    for role, m in zip(("ve", "nve"), models, strict=True):
        rs = per[m.label]
        cps = [r["chars"] / r["seconds"] for r in rs]
        tps = [r["new_tokens"] / r["seconds"] for r in rs]
        out[m.label] = {
            "role": role,
            "checkpoint": m.checkpoint,
            "step": m.step,
            "vocab_size": len(m.tokenizer),
            "prompt_tokens": sum(len(x) for x in ids[m.label]),
            "new_tokens": rs[0]["new_tokens"],  # per round
            "chars": rs[0]["chars"],  # per round (greedy: the same text every round)
            "chars_per_token": rs[0]["chars"] / rs[0]["new_tokens"],
            "chars_per_s": statistics.median(cps),
            "tokens_per_s": statistics.median(tps),
            "ms_per_token": 1000 * statistics.median(r["seconds"] / r["new_tokens"] for r in rs),
            "rounds": rs,
        }
    a, b = out[ve.label], out[nve.label]
    per_round = [ra["chars"] / ra["seconds"] / (rb["chars"] / rb["seconds"])
                 for ra, rb in zip(a["rounds"], b["rounds"], strict=True)]  # fmt: skip
    ratio = {
        "chars_per_s": statistics.median(per_round),  # VE / NVE
        "min": min(per_round),
        "max": max(per_round),
        "per_round": per_round,
        "chars_per_token": a["chars_per_token"] / b["chars_per_token"],  # the speed-up at equal cost per token
        "ms_per_token": a["ms_per_token"] / b["ms_per_token"],
    }
    return {"models": out, "ratio": ratio}


def run_speed(cfg: Config, *, ve_run: str = VE_RUN, nve_run: str = NVE_RUN, prompts: int = DEFAULT_PROMPTS,
              prompt_chars: int = DEFAULT_PROMPT_CHARS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
              rounds: int = DEFAULT_ROUNDS, threads: int | None = None,
              clock: Callable[[], float] = time.perf_counter) -> Path:  # fmt: skip
    """Measure both runs' last checkpoints and write ``runs/<p>/eval/speed.json``; returns its path."""
    import torch

    from swallowlib.provenance import provenance, write_json_atomic

    cks = last_checkpoints(cfg, [ve_run, nve_run])  # before anything slow: a missing run fails at once
    texts, source = load_prompts(cfg, prompts, prompt_chars)
    if threads:
        torch.set_num_threads(threads)
    device = cfg.eval.resolved_device()
    torch.manual_seed(cfg.seed)
    ve, nve = (load_model(cks[r], device) for r in (ve_run, nve_run))
    res = measure(ve, nve, texts, max_new_tokens=max_new_tokens, rounds=rounds, clock=clock)
    conf = {
        "runs": {"ve": ve_run, "nve": nve_run},
        "prompts": len(texts),
        "prompt_chars": prompt_chars,
        "prompt_source": source,
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "warmup_rounds": 1,
        "batch_size": 1,
        "dtype": "float32",
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    fp = hashlib.sha256(json.dumps({**conf, "checkpoints": [str(c.path) for c in cks.values()]},
                                   sort_keys=True).encode()).hexdigest()[:16]  # fmt: skip
    out = {"config": conf, **res, "provenance": provenance(cfg, "eval-speed", fp)}
    return write_json_atomic(speed_path(cfg.profile), out)


def speed_table(profile: str):
    """``speed.json`` as a DataFrame, one row per model (run, role, chars_per_s, tokens_per_s, chars_per_token,
    ms_per_token, new_tokens, chars, vocab_size, step) plus ``ratio_chars_per_s`` / ``_min`` / ``_max`` (VE / NVE,
    the same on both rows)."""
    import pandas as pd

    d = json.loads(speed_path(profile).read_text(encoding="utf-8"))
    cols = ["role", "chars_per_s", "tokens_per_s", "chars_per_token", "ms_per_token", "new_tokens", "chars",
            "vocab_size", "step"]  # fmt: skip
    r = d["ratio"]
    rows = [{"run": run, **{c: m.get(c) for c in cols}, "ratio_chars_per_s": r["chars_per_s"],
             "ratio_min": r["min"], "ratio_max": r["max"]} for run, m in d["models"].items()]  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Greedy generation speed on Japanese, VE vs NVE (chars/s).")
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml")
    ap.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS, help="number of held-out prompts (documents)")
    ap.add_argument("--prompt-chars", type=int, default=DEFAULT_PROMPT_CHARS, help="characters per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                    help="new tokens (forward passes) generated per prompt, exactly")
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--ve-run", default=VE_RUN, help="the expanded-vocabulary run (default: %(default)s)")
    ap.add_argument("--nve-run", default=NVE_RUN, help="the base-vocabulary run (default: %(default)s)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from swallowlib.config import ConfigError, apply_environment, load_config

    try:
        cfg = load_config(args.config)
        apply_environment(cfg)
        out = run_speed(cfg, ve_run=args.ve_run, nve_run=args.nve_run, prompts=args.prompts,
                        prompt_chars=args.prompt_chars, max_new_tokens=args.max_new_tokens, rounds=args.rounds,
                        threads=args.threads)  # fmt: skip
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(speed_table(cfg.profile).to_string(index=False))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
