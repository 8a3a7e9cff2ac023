"""What every stage records beside its outputs: the resolved config, library versions, git SHA, input fingerprint.

Also the project's atomic JSON writer (write to a temp name, then rename), so no reader ever sees half a file.

>>> fingerprint({"a": 1}, []) == fingerprint({"a": 1}, [])
True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from swallowlib import paths
from swallowlib.config import to_dict

#: Libraries whose versions are recorded with every output.
TRACKED = (
    "torch",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "accelerate",
    "datasets",
    "datatrove",
    "pandas",
    "pyarrow",
    "numpy",
    "beautifulsoup4",
    "lxml",
    "polib",
    "mwparserfromhell",
    "papermill",
)


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once (the only portable way is to set it and put it back)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``; a failure
    leaves the old file (or nothing) behind, never half of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are ordinary files, readable like any other
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """UTF-8 text, written as :func:`write_bytes_atomic` does."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> Path:
    """``obj`` as UTF-8 JSON, written as :func:`write_bytes_atomic` does."""
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str) + "\n")


def publish_dir(staged: Path, out: Path) -> None:
    """Swap a finished stage directory in as a whole (``staged`` → ``out``), so a killed run never leaves a
    half-written output: the old output is renamed aside, the new one renamed in, then the old one removed."""
    old = Path(str(out) + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(staged, out)
    shutil.rmtree(old, ignore_errors=True)


def peak_rss_mb() -> float:
    """The larger of this process's peak resident memory and the largest finished child's, MB.

    Kept for the training loop's per-step metrics until it moves over; it is one process, never the sum over
    workers. Stage reports record :class:`swallowlib.procmem.TreePeak` (the whole process tree) instead.
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def recorded_fingerprint(out_dir: Path) -> str | None:
    """The input fingerprint a finished stage recorded in ``<out_dir>/provenance.json`` (None if absent/unreadable)."""
    try:
        return json.loads((Path(out_dir) / "provenance.json").read_text())["fingerprint"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG with no software/date stamps (same data, same bytes), written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return write_bytes_atomic(path, buf.getvalue())


def stage_cli(build: Any, description: str, argv: list[str] | None = None) -> None:
    """The command line every stage shares: ``--config configs/<profile>.yaml [--force]``; prints the output dir."""
    import argparse
    import logging

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(build(args.config, force=args.force))


def fingerprint(obj: Any, files: list[Path]) -> str:
    """A hash of a config section and the contents of the code files a stage depends on."""
    h = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode())
    for f in sorted(files):
        h.update(str(Path(f).relative_to(paths.ROOT) if Path(f).is_relative_to(paths.ROOT) else f).encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def git_sha() -> str | None:
    """The repository's HEAD (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(cfg: Any, stage: str, fingerprint: str) -> dict:
    return {
        "stage": stage,
        "config_path": getattr(cfg, "path", None),
        "config": to_dict(cfg),
        "fingerprint": fingerprint,
        "git_sha": git_sha(),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
