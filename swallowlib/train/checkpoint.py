"""Resume checkpoints of the training engine: sharded, written atomically, verified on load, never unpickled.

A checkpoint is a directory ``checkpoints/step-<8 digits>/`` holding

- ``state/``               model and optimizer state through ``torch.distributed.checkpoint`` (DCP): one
                           ``__<rank>_0.distcp`` file per process with the shards that process holds, plus ``.metadata``
                           (fp32 master weights; LoRA/new-row tensors of a PEFT model included)
- ``scheduler.json``      the LR scheduler's counters
- ``rng-rank<r>.json``    Python, NumPy and torch (CPU and CUDA) RNG states of each process
- ``state.json``          step, tokens, world size, the run fingerprint and the SHA-256 of every other file

Each process writes and later reads only its own shards (under FSDP; a DDP or one-process model is one replicated
state that DCP writes once), so no process ever holds the whole state: at 7B the full state with AdamW is ~110 GB.
It is written into ``checkpoints/.tmp-step-…`` and renamed into place only after ``state.json`` (written last, by rank
0, with the hashes every process computed of its own files) is complete, so a kill at any moment leaves either the
whole checkpoint or none. On load the processes split the files between them, each checks its share against
``state.json``, and they agree: a checkpoint one of them finds corrupt is skipped by all, with a warning, and the
previous one is used. A checkpoint from another process count is refused by the run's identity (the engine), since
the per-process RNG states and the data layout belong to the count that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from swallowlib.provenance import write_json_atomic

log = logging.getLogger(__name__)

STEP_RE = re.compile(r"^step-(\d{8})$")
STATE_DIR = "state"  # the DCP directory inside a checkpoint


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
# Collectives (no-ops in one process)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _world() -> tuple[int, int]:
    return (dist.get_world_size(), dist.get_rank()) if _distributed() else (1, 0)


def _barrier() -> None:
    if _distributed():
        dist.barrier()


@contextmanager
def _single_process_quiet():
    """DCP warns that it assumes one process whenever no process group exists: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _all_gather(obj):
    world, _ = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Full model state (milestone HF directories; a collective: every process calls it)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full model state on the CPU (on the main process; others get an empty dict when distributed)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ---------------------------------------------------------------------------------------------------------------
# Save / load


def save(
    root: Path,
    *,
    step: int,
    tokens: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler_sd: dict,
    fingerprint: str,
    keep_last: int,
    extra: dict | None = None,
) -> Path:
    """Write one resume checkpoint atomically (every process calls this)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    world, rank = _world()
    root = Path(root)
    final = root / step_name(step)
    tmp = root / f".tmp-{step_name(step)}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / STATE_DIR).mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)  # this process's shards (DTensors under FSDP)
    with _single_process_quiet():
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=tmp / STATE_DIR, no_dist=not _distributed())
    rng = tmp / f"rng-rank{rank}.json"
    rng.write_text(json.dumps(rng_state()))
    own = [rng, *sorted((tmp / STATE_DIR).glob(f"__{rank}_*.distcp"))]
    hashes = _all_gather({str(p.relative_to(tmp)): _sha256(p) for p in own})
    if rank == 0:
        (tmp / "scheduler.json").write_text(json.dumps(scheduler_sd))
        files = {name: digest for h in hashes for name, digest in h.items()}
        for p in (tmp / STATE_DIR / ".metadata", tmp / "scheduler.json"):
            files[str(p.relative_to(tmp))] = _sha256(p)
        state = {
            "step": step,
            "tokens": tokens,
            "world_size": world,
            "fingerprint": fingerprint,
            "time": time.time(),
            **(extra or {}),
            "files": dict(sorted(files.items())),
        }
        write_json_atomic(tmp / "state.json", state)
        shutil.rmtree(final, ignore_errors=True)  # a re-run may write the same step again
        tmp.rename(final)
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for p in root.glob(".tmp-step-*"):  # leftovers of killed writes
            shutil.rmtree(p, ignore_errors=True)
    _barrier()
    return final


def verify(path: Path, share: tuple[int, int] = (0, 1)) -> dict:
    """``state.json`` of a checkpoint after checking the SHA-256 of its files (``share = (i, n)``: only every n-th
    file from the i-th, so n processes check one checkpoint together); raises CheckpointError naming the file."""
    state_path = Path(path) / "state.json"
    try:
        state = json.loads(state_path.read_text())
        files = state["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{state_path}: unreadable ({e})") from None
    i, n = share
    for name, digest in sorted(files.items())[i::n]:
        f = Path(path) / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        if _sha256(f) != digest:
            raise CheckpointError(f"{f}: checksum mismatch (corrupted)")
    return state


def latest(root: Path, fingerprint: str) -> Checkpoint | None:
    """The newest checkpoint that verifies; a corrupted one is skipped with a warning, a foreign one is an error.

    A collective when distributed: the processes check a share of the files each and agree on the result.
    """
    world, rank = _world()
    found = list_checkpoints(root)
    bad = []
    for step, path in reversed(found):
        try:
            state, problem = verify(path, (rank, world)), None
        except CheckpointError as e:
            state, problem = None, str(e)
        problems = [p for p in _all_gather(problem) if p]
        if problems:
            log.warning("checkpoint %s is corrupted (%s); falling back to the previous one", path.name, problems[0])
            bad.append(path.name)
            continue
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path}: written by a different configuration (delete {Path(root).parent} or restore the config)"
            )
        if int(state.get("world_size", 1)) != world:
            raise CheckpointError(
                f"{path}: written by {state.get('world_size')} process(es), this launch has {world}; resume on "
                f"{state.get('world_size')} (or delete {Path(root).parent} to start over)"
            )
        return Checkpoint(path, step, int(state["tokens"]), state)
    if bad:
        raise CheckpointError(
            f"{root}: every checkpoint is corrupted ({', '.join(bad)}); delete them to start over (or pass --restart)"
        )
    return None


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Model and optimizer state from a checkpoint, each process reading its own shards (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=Path(path) / STATE_DIR, no_dist=not _distributed())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def read_model(path: Path) -> dict[str, torch.Tensor]:
    """The full model state of a checkpoint, consolidated from its shards on the CPU in this one process (for tools
    and tests; training resumes through :func:`load`)."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory(prefix="swallow-ckpt-") as tmp:
        with _single_process_quiet():
            dcp_to_torch_save(Path(path) / STATE_DIR, Path(tmp) / "state.pt")
        state = torch.load(Path(tmp) / "state.pt", map_location="cpu", weights_only=True)
    return state["model"]


def read_rng(path: Path, rank: int) -> dict | None:
    p = Path(path) / f"rng-rank{rank}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def read_scheduler(path: Path) -> dict:
    return json.loads((Path(path) / "scheduler.json").read_text())
