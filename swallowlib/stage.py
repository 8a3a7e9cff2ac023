"""The protocol every stage follows: fingerprint, work directory, staging directory, provenance, atomic publish.

A stage is a function of its inputs (a config section and its code files). :class:`Stage` holds that fingerprint
and does the bookkeeping around the stage's own work::

    st = Stage("corpus", cfg, paths.corpus_dir(cfg.profile), {"corpus": ..., "seed": ...}, code_files)
    if st.is_up_to_date():
        return st.out
    work = st.work_dir()                  # kept across a killed run with the same fingerprint (resume)
    with st.staging() as staged:          # runs/<p>/corpus.tmp/ → runs/<p>/corpus/ when the block succeeds
        with st.step("extract"):          # wall time (s) per named step
            ...
        st.report["sizes"] = ...          # written to staged/report.json with timings and peak memory
    st.discard_work()                     # the outputs are published: intermediate files are no longer needed

- ``out/provenance.json`` records the fingerprint; :meth:`is_up_to_date` compares it, so a changed config section or
  code file rebuilds and nothing else does.
- ``runs/<p>/work/<name>/`` holds resumable intermediate state (e.g. datatrove's per-task completion markers). Its
  ``FINGERPRINT`` file says which inputs wrote it: when they differ the directory is emptied before use, so a resumed
  run never mixes the outputs of two configs.
- The staged directory is swapped in whole (:func:`~swallowlib.provenance.publish_dir`): a killed stage leaves the
  previous output, or none, never half of a new one.
- Peak memory is the resident memory summed over the whole process tree (the stage's worker processes included).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swallowlib.procmem import TreePeak
from swallowlib.provenance import (
    fingerprint,
    provenance,
    publish_dir,
    recorded_fingerprint,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)


class Stage:
    """Bookkeeping of one stage run (see the module docstring)."""

    def __init__(self, name: str, cfg: Any, out: Path, inputs: Any, code_files: list[Path]):
        self.name = name
        self.cfg = cfg
        self.out = Path(out)
        self.fingerprint = fingerprint(inputs, code_files)
        self.timings: dict[str, float] = {}
        self.report: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._work = self.out.parent / "work" / name  # runs/<profile>/work/<stage>/ for the default output

    def is_up_to_date(self) -> bool:
        return recorded_fingerprint(self.out) == self.fingerprint

    def work_dir(self) -> Path:
        """``runs/<profile>/work/<stage>/`` (beside the output), emptied first when other inputs wrote it."""
        work = self._work
        stamp = work / "FINGERPRINT"
        if work.exists() and (not stamp.is_file() or stamp.read_text().strip() != self.fingerprint):
            log.info("%s: %s holds another config's work; starting afresh", self.name, work)
            shutil.rmtree(work)
        if not stamp.is_file():
            write_text_atomic(stamp, self.fingerprint + "\n")
        return work

    def discard_work(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a named step (seconds, in ``report.json`` under ``timings_s``)."""
        t0 = time.perf_counter()
        log.info("%s: %s …", self.name, name)
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 2)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh ``<out>.tmp/`` to write into; on success ``report.json`` and ``provenance.json`` are added and the
        directory replaces ``out`` as a whole; on failure it is removed."""
        staged = Path(str(self.out) + ".tmp")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        try:
            with TreePeak() as mem:
                yield staged
            self.report["timings_s"] = dict(self.timings, total=round(time.perf_counter() - self._t0, 2))
            self.report["peak_memory_mb"] = round(mem.peak_mb, 1)
            self.report["peak_memory_processes"] = mem.peak_processes
            write_json_atomic(staged / "report.json", self.report)
            write_json_atomic(
                staged / "provenance.json", provenance(self.cfg, stage=self.name, fingerprint=self.fingerprint)
            )
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        publish_dir(staged, self.out)
        log.info("%s: wrote %s in %.0f s", self.name, self.out, time.perf_counter() - self._t0)
