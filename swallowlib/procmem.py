"""Peak resident memory of a process tree: this process plus every descendant, summed, sampled in the background.

A stage that fans out to worker processes (datatrove tasks, tokenizer threads in children, ``accelerate launch``
ranks) uses as much memory as all of them together, so that sum is the one measure of memory the project reports.
``getrusage`` cannot give it: ``ru_maxrss`` of ``RUSAGE_CHILDREN`` is the largest single finished child, never the
sum of children alive at the same time.

    from swallowlib.procmem import TreePeak

    with TreePeak() as mem:            # samples every 0.15 s in a daemon thread, plus once on entry and on exit
        run_the_stage()
    mem.peak_mb                        # largest sum over the tree seen (PSS on Linux, else RSS), MB (2**20 B)
    mem.peak_processes                 # how many processes made up that sum
    mem.baseline_mb                    # the sum at entry, to tell the block's own growth from what was there

``TreePeak(pid=p)`` watches another process's tree instead (e.g. a ``subprocess.Popen``). Blocks nest: each instance
has its own thread, and an inner one sees only what happened during its block. :func:`tree_rss` is one sample.

Limits of a sampled sum, stated so a reader can judge the numbers:

- A spike shorter than the interval can fall between two samples; so can a worker that lives less than one interval.
  The interval grows with the cost of a sample (see :class:`TreePeak`), to about a second for a tree of several
  large processes.
- On Linux each process counts its proportional set size (PSS: a page shared by k processes counts 1/k in each), so
  a forked worker's copy-on-write pages are not counted twice; elsewhere resident set size (RSS) is summed, which
  counts shared pages once per process and reads high, never low.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil

_MB = float(1 << 20)


@dataclass(frozen=True)
class TreeSample:
    """One reading: resident memory summed over the tree (MB) and how many processes were in it."""

    mb: float
    processes: int


def _resident(p: psutil.Process) -> int:
    """Proportional set size where the kernel reports it (Linux): a page shared by k processes counts 1/k in each, so
    the sum over a forked tree is its physical use; resident set size elsewhere."""
    if _HAS_PSS:
        try:
            return p.memory_full_info().pss
        except (psutil.AccessDenied, AttributeError):
            pass
    return p.memory_info().rss


_HAS_PSS = psutil.LINUX


def tree_rss(pid: int | None = None) -> TreeSample:
    """The resident memory of process ``pid`` (default: this one) and all its live descendants, summed.

    Processes that exit between being listed and being read are left out rather than failing the sample; a root that
    is gone gives ``TreeSample(0.0, 0)``.
    """
    try:
        root = psutil.Process(pid if pid is not None else os.getpid())
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return TreeSample(0.0, 0)
    total, n = 0, 0
    for p in procs:
        try:
            total += _resident(p)
            n += 1
        except psutil.Error:  # exited (or became a zombie we may not read) since children() listed it
            continue
    return TreeSample(total / _MB, n)


class TreePeak:
    """Context manager that keeps the peak of :func:`tree_rss` over its block (see the module docstring).

    ``interval_s`` is the shortest sampling period. Reading a process's PSS makes the kernel walk its page tables,
    which takes milliseconds for a large process, so the period stretches to ``COST_FACTOR`` times the last
    sample's duration: the sampler never takes more than ~2% of a core, whatever the tree's size.
    """

    COST_FACTOR = 50

    def __init__(self, interval_s: float = 0.15, pid: int | None = None, cost_factor: float | None = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        # a denser sampler (e.g. 5) for a short block whose peak the default period could miss
        self.cost_factor = self.COST_FACTOR if cost_factor is None else cost_factor
        self.pid = pid
        self.peak_mb = 0.0
        self.peak_processes = 0
        self.baseline_mb = 0.0
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> TreeSample:
        """Take one reading now and fold it into the peak (also called by the background thread)."""
        s = tree_rss(self.pid)
        with self._lock:
            self.samples += 1
            if s.mb > self.peak_mb:
                self.peak_mb, self.peak_processes = s.mb, s.processes
        return s

    def _loop(self) -> None:
        # Event.wait rather than sleep: __exit__ stops the thread at once instead of up to one interval later.
        wait = self.interval_s
        while not self._stop.wait(wait):
            t0 = time.perf_counter()
            self.sample()
            wait = max(self.interval_s, self.cost_factor * (time.perf_counter() - t0))

    def __enter__(self) -> TreePeak:
        if self._thread is not None:
            raise RuntimeError("a TreePeak is used once; make a new one per block")
        self.baseline_mb = self.sample().mb
        self._thread = threading.Thread(target=self._loop, name="TreePeak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.sample()

    def as_dict(self) -> dict:
        """The readings as a report records them."""
        return {
            "peak_memory_mb": round(self.peak_mb, 1),
            "peak_memory_processes": self.peak_processes,
            "baseline_memory_mb": round(self.baseline_mb, 1),
        }
