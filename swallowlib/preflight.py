"""Preflight: what a profile needs from outside the repository, checked in seconds before hours of stages start.

    python -m swallowlib.preflight --config configs/tinyllama-1.1b.yaml     # make preflight PROFILE=tinyllama-1.1b
    python -m swallowlib.preflight --config configs/tinyllama-1.1b.yaml --offline   # only what needs no network

``make reproduce`` runs it first for an online profile (``offline: false``). Checks, one line each:

- **Hub**: huggingface.co (``HF_ENDPOINT``) answers; an online profile cannot run without it;
- **datasets**: every ``corpus.hub`` source streams a few rows with ``datasets.load_dataset(..., streaming=True)``
  and has its ``text_field`` (a local directory laid out like a Hub dataset repo works the same way);
- **models**: every model the profile names (``train.model.pretrained``, a run's ``init`` that is a Hub id or a
  directory): the config loads with ``transformers.AutoConfig`` (never remote code), weights and tokenizer files
  exist; a gated repo says where to accept the licence;
- **lm-eval**: every ``eval.harness_tasks`` task loads (:func:`swallowlib.eval.harness.check_task_loading`);
- **accelerator**: CUDA, device names and memory (a GPU profile without CUDA fails);
- **disk**: free space on the filesystem of ``runs/`` against :func:`disk_estimate` of the planned outputs;
- **memory**: every run's memory estimate (:mod:`swallowlib.train.memory`) against the CUDA device's memory, else
  ``train.device_memory_gib`` (the card the profile is sized for; CPU profiles are not checked).

Offline (the profile's ``offline: true``, ``--offline``, or the Hub unreachable) every check that needs the network
says ``not checked (offline): …`` / ``not checked (Hub unreachable): …`` instead of failing. Each failure is one line
naming the source, model, task or run and what to do; the exit code is 1 when anything failed, 0 otherwise (2: the
config itself is invalid). Every check is a small function returning :class:`Result` objects, so each can be run
and tested on its own; :func:`run_checks` runs them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from swallowlib import paths
from swallowlib.config import Config, ConfigError, HubSource, apply_environment, load_config
from swallowlib.plan import is_gpu_profile

GiB = 2**30

#: Bytes per parameter of one resume checkpoint: fp32 weights + AdamW's two fp32 moments (gradients are not saved).
RESUME_BYTES_PER_PARAM = 12
#: Bytes per Hub document in the written corpus: a FineWeb-2 parquet row is ~4 kB with its metadata
#: (configs/tinyllama-1.1b.yaml's sizing); the filters drop about half, so this is an upper bound.
HUB_DOC_BYTES = 4000
#: Files that make a model directory loadable by ``AutoTokenizer`` (as swallowlib.eval.harness checks them).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

Status = Literal["ok", "fail", "skipped"]
_LABEL = {"ok": "ok", "fail": "FAIL", "skipped": "skip"}


@dataclasses.dataclass(frozen=True)
class Result:
    """One check's outcome: ``status``, what was checked (``dataset fineweb2-ja``, ``run cpt-ve``), one line."""

    status: Status
    check: str
    message: str

    def __str__(self) -> str:
        return f"{_LABEL[self.status]:<5} {self.check}: {self.message}"


def _first_line(e: BaseException | str, limit: int = 240) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _is_local(name: str) -> bool:
    """A directory rather than a Hub id, by the rule the training job uses (swallowlib.train.job.resolve_init)."""
    return Path(name).exists() or name.startswith((".", "/", "~"))


def _gib(n: float) -> str:
    return f"{n / GiB:,.1f} GiB"


# ---------------------------------------------------------------------------------------------------------------
# The Hub


def needs_hub(cfg: Config) -> bool:
    """Whether anything the profile names lives on the Hub (datasets, models, lm-eval tasks' datasets)."""
    return (any(not _is_local(s.dataset) for s in cfg.corpus.hub)
            or any(not _is_local(m) for m in models_of(cfg)) or bool(cfg.eval.harness_tasks))  # fmt: skip


def check_hub_reachable(timeout: float = 10.0) -> Result:
    """One request to the Hub endpoint: any HTTP answer means reachable (a 4xx still proves the route works)."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as e:  # DNS, proxy, TLS, timeout: the same advice for all
        return Result("fail", "Hugging Face Hub",
                      f"{constants.ENDPOINT} unreachable ({type(e).__name__}: {_first_line(e, 120)}); this profile "
                      "streams its data and models from the Hub: check the network, HTTPS_PROXY or HF_ENDPOINT, or "
                      "run the checks that need no network with --offline")  # fmt: skip
    login = "a token is set" if get_token() else "no token (gated models need `hf auth login`)"
    return Result("ok", "Hugging Face Hub", f"{constants.ENDPOINT} reachable; {login}")


def _gated(url: str) -> str:
    return f"gated: accept the licence at {url} and run `hf auth login`"


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def _dataset_label(src: HubSource) -> str:
    opts = ", ".join(x for x in (f"config {src.config}" if src.config else "", f"split {src.split}") if x)
    return f"{src.dataset} ({opts})"


def check_dataset(src: HubSource, *, network: bool = True, why: str = "offline", rows: int = 3) -> Result:
    """Stream the first ``rows`` rows of a ``corpus.hub`` source the way stage 01 reads it; its text field exists."""
    check, where = f"dataset {src.name}", _dataset_label(src)
    local = _is_local(src.dataset)
    if not local and not network:
        return Result("skipped", check, f"not checked ({why}): streaming {where} and its text field {src.text_field!r}")
    if local and not Path(src.dataset).expanduser().is_dir():
        return Result("fail", check, f"{src.dataset}: directory not found; fix corpus.hub {src.name}'s dataset")
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    dataset = str(Path(src.dataset).expanduser()) if local else src.dataset
    try:
        stream = datasets.load_dataset(dataset, src.config, split=src.split, streaming=True)
        got = list(itertools.islice(stream, rows))
    except DatasetNotFoundError as e:
        if "gated" in str(e).lower():
            return Result("fail", check, f"{where}: {_gated(f'https://huggingface.co/datasets/{src.dataset}')}")
        return Result("fail", check, f"{where}: does not exist (a private dataset needs `hf auth login`); fix "
                                     f"corpus.hub {src.name}'s dataset")  # fmt: skip
    except ValueError as e:  # an unknown config or split: datasets lists the available ones
        return Result("fail", check, f"{where}: {_first_line(e)}; fix corpus.hub {src.name}'s config/split")
    except Exception as e:
        return Result("fail", check, f"{where}: cannot stream ({type(e).__name__}: {_first_line(e)})")
    if not got:
        return Result("fail", check, f"{where}: the split has no rows")
    fields = list(stream.features) if stream.features else list(got[0])
    tf = src.text_field
    if tf not in fields:
        return Result("fail", check, f"{where}: no field {tf!r} (fields: {', '.join(fields)}); set corpus.hub "
                                     f"{src.name}'s text_field")  # fmt: skip
    texts = [r.get(tf) for r in got]
    if not any(isinstance(t, str) for t in texts):
        kinds = ", ".join(sorted({type(t).__name__ for t in texts}))
        return Result("fail", check, f"{where}: field {tf!r} is not text ({kinds}) in the first {len(got)} rows; "
                                     f"set corpus.hub {src.name}'s text_field")  # fmt: skip
    chars = sum(len(t) for t in texts if isinstance(t, str)) // len(got)
    return Result("ok", check, f"{where}: {len(got)} rows streamed, {tf!r} ~{chars:,} characters each")


# ---------------------------------------------------------------------------------------------------------------
# Models


def models_of(cfg: Config) -> dict[str, list[str]]:
    """Every model the profile names (a Hub id or a directory) -> the config keys that name it."""
    out: dict[str, list[str]] = {}
    tc = cfg.train
    if tc.model.pretrained:
        out.setdefault(tc.model.pretrained, []).append("train.model.pretrained")
    for name, rc in tc.runs.items():
        if rc.init != "scratch" and not rc.init.startswith(("run:", "init:")):
            out.setdefault(rc.init, []).append(f"train.runs.{name}.init")
    return out


def check_model(name: str, *, used_by: list[str] | tuple[str, ...] = (), network: bool = True,
                why: str = "offline") -> Result:  # fmt: skip
    """A model's config loads (``AutoConfig``, never remote code) and it has weights and tokenizer files."""
    check = f"model {name}"
    fix = f" (named by {', '.join(used_by)})" if used_by else ""
    if _is_local(name):
        d = Path(name).expanduser()
        if not d.is_dir():
            return Result("fail", check, f"directory not found{fix}; fix the path or run the stage that writes it")
        files = {p.name for p in d.iterdir()}
        source = str(d)
    elif not network:
        return Result("skipped", check, f"not checked ({why}): config, weights and tokenizer of the Hub model")
    else:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HFValidationError,
            RepositoryNotFoundError,
        )

        try:
            files = {s.rfilename for s in HfApi().model_info(name).siblings or []}
            hf_hub_download(name, "config.json")
        except GatedRepoError:
            return Result("fail", check, _gated(f"https://huggingface.co/{name}") + fix)
        except RepositoryNotFoundError:
            return Result("fail", check, f"does not exist on the Hub (a private repo needs `hf auth login`){fix}")
        except HFValidationError:
            return Result("fail", check, f"neither an existing directory nor a valid Hub id{fix}")
        except EntryNotFoundError:
            return Result("fail", check, f"has no config.json: not a transformers model{fix}")
        except Exception as e:
            return Result("fail", check, f"cannot reach it ({type(e).__name__}: {_first_line(e)})")
        source = name
    if "config.json" not in files:
        return Result("fail", check, f"no config.json: not a transformers model directory{fix}")
    from transformers import AutoConfig

    try:
        conf = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except Exception as e:  # an unknown model_type, remote code required, a broken file
        return Result("fail", check, f"config does not load without remote code ({_first_line(e)}){fix}")
    if not any(f.endswith(".safetensors") or (f.startswith("pytorch_model") and f.endswith(".bin")) for f in files):
        return Result("fail", check, f"no weights (model.safetensors or pytorch_model*.bin){fix}")
    if not any(f in files for f in TOKENIZER_FILES):
        return Result("fail", check, f"no tokenizer files ({' or '.join(TOKENIZER_FILES)}){fix}")
    sizes = ", ".join(f"{k} {getattr(conf, k)}" for k in ("num_hidden_layers", "hidden_size", "vocab_size")
                      if isinstance(getattr(conf, k, None), int))  # fmt: skip
    return Result("ok", check, f"{conf.model_type} ({sizes}); config, weights and tokenizer present")


# ---------------------------------------------------------------------------------------------------------------
# lm-eval tasks


def check_harness(cfg: Config, *, network: bool = True, why: str = "offline") -> list[Result]:
    """Every ``eval.harness_tasks`` task loads, per :func:`swallowlib.eval.harness.check_task_loading`."""
    names = list(cfg.eval.harness_tasks)
    if not names:
        return [Result("ok", "lm-eval", "no registry tasks in eval.harness_tasks")]
    from swallowlib.eval import harness

    check_task_loading = getattr(harness, "check_task_loading", None)
    if check_task_loading is None:
        return [Result("skipped", "lm-eval", f"not checked: {len(names)} tasks; "
                       "swallowlib.eval.harness.check_task_loading is not in this checkout yet")]  # fmt: skip
    try:
        problems = list(check_task_loading(names, None, network=network))
    except Exception as e:
        return [Result("fail", "lm-eval", f"the task check itself failed ({type(e).__name__}: {_first_line(e)})")]
    out = [Result("skipped" if p.startswith("not checked") else "fail", "lm-eval", p) for p in problems]
    loaded = len(names) - len(problems)  # one problem line per task
    if loaded > 0:
        done = "load" if network else f"load without the network ({why})"
        out.insert(0, Result("ok", "lm-eval", f"{loaded} of {len(names)} tasks {done}"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Accelerator, disk, memory


def cuda_devices() -> list[tuple[str, int]]:
    """``(name, total bytes)`` of every visible CUDA device; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(p.name, p.total_memory) for p in map(torch.cuda.get_device_properties, range(torch.cuda.device_count()))]


def check_accelerator(cfg: Config, devices: list[tuple[str, int]] | None = None) -> Result:
    """CUDA, device names and memory; no CUDA fails a GPU profile only."""
    devices = cuda_devices() if devices is None else devices
    if not devices:
        if is_gpu_profile(cfg):
            return Result("fail", "accelerator", f"no CUDA device, and {cfg.profile} is a GPU profile (precision bf16 "
                          "or train.device_memory_gib); run it on a CUDA machine")  # fmt: skip
        return Result("ok", "accelerator", "no CUDA device: CPU training, as the profile is sized")
    names = sorted({n for n, _ in devices})
    line = f"CUDA: {len(devices)} x {' / '.join(names)}, {', '.join(_gib(b) for _, b in devices[:4])}"
    if len(devices) > 4:
        line += ", …"
    if cfg.train.processes > len(devices):
        line += (f"; the profile is planned for {cfg.train.processes} processes (several nodes, or NUM_PROCESSES="
                 f"{len(devices)}: same global batch, more accumulation)")
    return Result("ok", "accelerator", line)


def _size(path: Path) -> int:
    """Bytes of the files under ``path`` (hard links once), 0 if it does not exist."""
    seen, total = set(), 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def disk_estimate(cfg: Config, plan: dict | None = None, *, bf16: bool | None = None) -> dict[str, int]:
    """Bytes the profile's outputs take on ``runs/``, by kind (a rough upper bound from the plan's parameter counts).

    - ``resume checkpoints``: per run, ``train.keep_last`` x 12 bytes/param (fp32 weights + AdamW's two moments;
      the engine keeps them after the run ends), plus one more of the largest run while it is being written;
    - ``milestones``: per run, each milestone an HF directory at 2 bytes/param (bf16) or 4 (fp32); ``final/`` is hard
      links to the last one;
    - ``stage-03 models``: the resized base per (init method, seed), fp32, expanded vocabulary;
    - ``token cache``: per tokenizer, the largest token budget of a run using it, 2 bytes per token (uint16 ids; 4
      above 65,535 pieces) - the tokenised corpus is at least that (more when runs see less than one epoch);
    - ``hub corpus``: ``max_docs`` of every ``corpus.hub`` source x 4 kB, at most a local dataset directory's size
      (Hub sources without ``max_docs``: not counted).

    LoRA runs save less than this; the HF cache (downloaded base models) lives outside ``runs/`` and is not counted.
    """
    from swallowlib.plan import plan as make_plan

    p = plan if plan is not None else make_plan(cfg)
    tc = cfg.train
    if bf16 is None:
        bf16 = tc.precision == "bf16" or (tc.precision == "auto" and bool(cuda_devices()))
    hf_bytes = 2 if bf16 else 4
    runs = p["runs"]
    biggest = max((r["params"] for r in runs), default=0)
    est = {
        "resume checkpoints": sum(tc.keep_last * RESUME_BYTES_PER_PARAM * r["params"] for r in runs)
        + RESUME_BYTES_PER_PARAM * biggest,
        "milestones": sum(len(r["checkpoints"]) * hf_bytes * r["params"] for r in runs),
    }
    expanded = [r["params"] for r in runs if r["tokenizer"] == "expanded"]
    ei = cfg.embedding_init
    if expanded:
        est["stage-03 models"] = len(ei.methods) * len({*ei.seeds, cfg.seed}) * 4 * max(expanded)
    cache = 0
    for tok in ("base", "expanded"):
        used = [r for r in runs if r["tokenizer"] == tok]
        if used:
            cache += max(r["tokens"] for r in used) * (2 if max(r["vocab"] for r in used) <= 65535 else 4)
    est["token cache"] = cache
    hub = 0
    for s in cfg.corpus.hub:
        streamed = (s.max_docs or 0) * HUB_DOC_BYTES
        # A local dataset directory bounds what can be streamed from it (the rehearsal profile's are tiny).
        if _is_local(s.dataset):
            size = _size(Path(s.dataset).expanduser())
            streamed = min(streamed, size) if s.max_docs else size
        hub += streamed
    est["hub corpus"] = hub
    return est


def check_disk(cfg: Config, estimate: dict[str, int] | None = None) -> Result:
    """Free space on the filesystem of ``runs/<profile>`` against :func:`disk_estimate` minus what is there already."""
    from swallowlib.plan import PlanError

    run_dir = paths.run_dir(cfg.profile)
    try:
        est = disk_estimate(cfg) if estimate is None else estimate
    except (PlanError, ConfigError) as e:
        return Result("skipped", "disk", f"not checked: no plan to size the outputs ({_first_line(e)})")
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    total = sum(est.values())
    need = max(0, total - _size(run_dir))
    parts = ", ".join(f"{k} {_gib(v)}" for k, v in est.items() if v)
    if free < need:
        return Result("fail", "disk", f"{existing} has {_gib(free)} free, the profile's outputs need ~{_gib(need)} "
                      f"more ({parts}); free space or point SWALLOW_RUNS at a larger filesystem")  # fmt: skip
    return Result("ok", "disk", f"{_gib(free)} free on {existing}, ~{_gib(need)} needed ({parts or 'nothing'})")


def check_memory(cfg: Config, devices: list[tuple[str, int]] | None = None, processes: int | None = None
                 ) -> list[Result]:  # fmt: skip
    """Every run's memory estimate on ``processes`` processes (default ``train.processes``) fits the device with 15 %
    to spare (:func:`swallowlib.train.memory.check_fits`)."""
    from swallowlib.config import grad_accum

    try:
        grad_accum(cfg.train, processes or cfg.train.processes)
    except ConfigError as e:  # training would refuse this process count before using any memory
        return [Result("fail", "processes", _first_line(e))]
    devices = cuda_devices() if devices is None else devices
    if devices:
        name, device_bytes = min(devices, key=lambda d: d[1])
        against = f"{name} ({_gib(device_bytes)})"
    elif cfg.train.device_memory_gib is not None:
        device_bytes = int(cfg.train.device_memory_gib * GiB)
        against = f"train.device_memory_gib ({cfg.train.device_memory_gib:g} GiB)"
    elif is_gpu_profile(cfg):
        return [Result("skipped", "memory", "not checked: no CUDA device here and train.device_memory_gib unset "
                       "(set it to the card's GiB to check on any machine)")]  # fmt: skip
    else:
        return [Result("skipped", "memory", "not checked: a CPU profile (no CUDA device, train.device_memory_gib "
                       "unset)")]  # fmt: skip
    try:
        from swallowlib.train.memory import check_fits, estimate_run
    except ImportError:
        return [Result("skipped", "memory", f"not checked against {against}: swallowlib.train.memory "
                       "(estimate_run, check_fits) is not in this checkout yet")]  # fmt: skip
    from swallowlib.embedding_init.stage import comparison_runs

    runs = [*cfg.train.runs, *(n for n in comparison_runs(cfg) if n not in cfg.train.runs)]
    out, fit, largest = [], 0, None
    for run in runs:
        try:
            est = estimate_run(cfg, run, processes=processes)
            problem = check_fits(est, device_bytes, headroom=0.15)
        except Exception as e:  # e.g. a Hub base whose size is unknown offline
            out.append(Result("skipped", f"run {run}", f"memory not checked ({type(e).__name__}: {_first_line(e)})"))
            continue
        if problem:
            out.append(Result("fail", f"run {run}", problem))
            continue
        fit += 1
        if largest is None or est.total > largest[1]:
            largest = (run, est.total)
    if largest and not any(r.status == "fail" for r in out):
        which = "every run fits" if fit == len(runs) else f"{fit} of {len(runs)} runs fit"
        out.insert(0, Result("ok", "memory", f"{which} {against} with 15 % to spare; largest {largest[0]} "
                             f"~{_gib(largest[1])}"))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------------
# All of it


def run_checks(cfg: Config, *, network: bool = True, why: str = "offline", processes: int | None = None
               ) -> Iterator[Result]:  # fmt: skip
    """Every check of the profile, yielded as it finishes (Hub-dependent ones skipped when ``network`` is False)."""
    if network and needs_hub(cfg):
        hub = check_hub_reachable()
        yield hub
        if hub.status == "fail":
            network, why = False, "Hub unreachable"
    for src in cfg.corpus.hub:
        yield check_dataset(src, network=network, why=why)
    for name, used_by in models_of(cfg).items():
        yield check_model(name, used_by=used_by, network=network, why=why)
    yield from check_harness(cfg, network=network, why=why)
    devices = cuda_devices()
    yield check_accelerator(cfg, devices)
    yield check_disk(cfg)
    yield from check_memory(cfg, devices, processes)


def summary(profile: str, results: list[Result], seconds: float | None = None) -> str:
    n = {s: sum(r.status == s for r in results) for s in ("ok", "fail", "skipped")}
    line = f"preflight {profile}: {n['ok']} ok, {n['fail']} failed, {n['skipped']} not checked"
    if seconds is not None:
        line += f" ({seconds:.0f} s)"
    return line + (": fix the FAIL lines above first" if n["fail"] else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m swallowlib.preflight", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml (or a profile name)")
    ap.add_argument("--offline", action="store_true", help="check only what needs no network (Hub: not checked)")
    ap.add_argument("--processes", type=int, help="processes per run for the memory estimate (default: "
                    "train.processes; make NUM_PROCESSES=N passes N)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    offline = cfg.offline or args.offline
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one line per check, not download bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    apply_environment(dataclasses.replace(cfg, offline=offline))
    print(f"preflight {cfg.profile} ({cfg.path}, {'offline' if offline else 'online'})", flush=True)
    results = []
    for r in run_checks(cfg, network=not offline, processes=args.processes):
        print(r, flush=True)
        results.append(r)
    print(summary(cfg.profile, results, time.perf_counter() - t0), flush=True)
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
