"""Resume checkpoints of the training engine: written atomically, verified on load, never unpickled arbitrarily.

A checkpoint is a directory ``checkpoints/step-<8 digits>/`` holding

- ``model.safetensors``   the full model state (fp32 master weights; LoRA/new-row tensors of a PEFT model included)
- ``optimizer.pt``        the optimizer state (``torch.save`` of tensors and numbers; read with ``weights_only=True``)
- ``scheduler.json``      the LR scheduler's counters
- ``rng-rank<r>.json``    Python, NumPy and torch (CPU and CUDA) RNG states of each process
- ``state.json``          step, tokens, world size, the run fingerprint and the SHA-256 of every other file

It is written into ``checkpoints/.tmp-step-…`` and renamed into place only after ``state.json`` (written last) is
complete, so a kill at any moment leaves either the whole checkpoint or none. Loading checks every file against the
hashes in ``state.json``; a checkpoint that fails is skipped with a warning and the previous one is used.
Model and optimizer states go through ``torch.distributed.checkpoint.state_dict`` (full, CPU-offloaded), which gives
the same tensors for a plain, DDP or FSDP model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from swallowlib.provenance import write_json_atomic

log = logging.getLogger(__name__)

STEP_RE = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one written by a different configuration; the message says which and what to do."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    tokens: int
    state: dict


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the finished checkpoints under ``root``, oldest first."""
    if not Path(root).is_dir():
        return []
    out = [(int(m.group(1)), p) for p in Path(root).iterdir() if (m := STEP_RE.match(p.name)) and p.is_dir()]
    return sorted(out)


# ---------------------------------------------------------------------------------------------------------------
# RNG states as JSON


def rng_state() -> dict:
    """This process's RNG states (Python, NumPy, torch CPU, CUDA) as JSON-serialisable values."""
    np_state = np.random.get_state()
    out = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------------------------
# Full model / optimizer state dicts (collectives: every process calls them)


def _options(full: bool = True, offload: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=offload)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full model state on the CPU (on the main process; others get an empty dict when distributed)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options())


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options())


def load_model_state(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, strict=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sd: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, sd, options=StateDictOptions(full_state_dict=True))


# ---------------------------------------------------------------------------------------------------------------
# Save / load


def save(
    root: Path,
    *,
    step: int,
    tokens: int,
    model_sd: dict[str, torch.Tensor],
    optim_sd: dict,
    scheduler_sd: dict,
    fingerprint: str,
    world_size: int,
    rank: int,
    barrier,
    keep_last: int,
    extra: dict | None = None,
) -> Path:
    """Write one resume checkpoint atomically (every process calls this; ``barrier()`` synchronises them)."""
    from safetensors.torch import save_file

    root = Path(root)
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    (tmp / f"rng-rank{rank}.json").write_text(json.dumps(rng_state()))
    barrier()
    if rank == 0:
        # safetensors refuses shared storage (tied embeddings): store a contiguous copy of each tensor.
        save_file({k: v.contiguous().clone() for k, v in model_sd.items()}, tmp / "model.safetensors")
        torch.save(optim_sd, tmp / "optimizer.pt")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler_sd))
        files = sorted(p.name for p in tmp.iterdir())
        state = {
            "step": step,
            "tokens": tokens,
            "world_size": world_size,
            "fingerprint": fingerprint,
            "time": time.time(),
            **(extra or {}),
            "files": {name: _sha256(tmp / name) for name in files},
        }
        write_json_atomic(tmp / "state.json", state)
        shutil.rmtree(final, ignore_errors=True)  # a re-run may write the same step again
        tmp.rename(final)
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for p in root.glob(".tmp-step-*"):  # leftovers of killed writes
            shutil.rmtree(p, ignore_errors=True)
    barrier()
    return final


def verify(path: Path) -> dict:
    """``state.json`` of a checkpoint after checking every file's SHA-256; raises CheckpointError naming the file."""
    state_path = Path(path) / "state.json"
    try:
        state = json.loads(state_path.read_text())
        files = state["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{state_path}: unreadable ({e})") from None
    for name, digest in files.items():
        f = Path(path) / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        if _sha256(f) != digest:
            raise CheckpointError(f"{f}: checksum mismatch (corrupted)")
    return state


def latest(root: Path, fingerprint: str) -> Checkpoint | None:
    """The newest checkpoint that verifies; a corrupted one is skipped with a warning, a foreign one is an error."""
    found = list_checkpoints(root)
    bad = []
    for step, path in reversed(found):
        try:
            state = verify(path)
        except CheckpointError as e:
            log.warning("checkpoint %s is corrupted (%s); falling back to the previous one", path.name, e)
            bad.append(path.name)
            continue
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path}: written by a different configuration (delete {Path(root).parent} or restore the config)"
            )
        return Checkpoint(path, step, int(state["tokens"]), state)
    if bad:
        raise CheckpointError(
            f"{root}: every checkpoint is corrupted ({', '.join(bad)}); delete them to start over (or pass --restart)"
        )
    return None


def read_model(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(path) / "model.safetensors")


def read_optimizer(path: Path) -> dict:
    return torch.load(Path(path) / "optimizer.pt", map_location="cpu", weights_only=True)


def read_rng(path: Path, rank: int) -> dict | None:
    p = Path(path) / f"rng-rank{rank}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def read_scheduler(path: Path) -> dict:
    return json.loads((Path(path) / "scheduler.json").read_text())
