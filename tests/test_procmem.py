"""swallowlib.procmem: the peak is a sum over live processes, not the largest one; vanished processes are tolerated."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from swallowlib.procmem import TreePeak, tree_rss

HOLD_MB = 150

# Writes every byte (a zeroed bytearray would map pages lazily and not count), says so, then holds it until its stdin
# closes: the test decides when a child may exit, so nothing depends on how long anything takes.
_HOLDER = f"import sys\nb = bytearray(b'\\x01') * ({HOLD_MB} << 20)\nprint('ready', flush=True)\nsys.stdin.read()\n"


def _spawn_holders(n: int) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return procs


def _release(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=60) == 0
        p.stdout.close()


def _wait_for_background_samples(mem: TreePeak, k: int) -> None:
    """Until the sampling thread has taken ``k`` more readings (a liveness guard, not a timing check)."""
    target = mem.samples + k
    deadline = time.monotonic() + 60
    while mem.samples < target:
        assert time.monotonic() < deadline, "the sampling thread took no samples"
        time.sleep(0.02)


def test_two_children_are_summed():
    with TreePeak(interval_s=0.05) as mem:
        procs = _spawn_holders(2)
        try:
            _wait_for_background_samples(mem, 2)
        finally:
            _release(procs)
    assert mem.peak_mb - mem.baseline_mb >= 250, mem.as_dict()
    assert mem.peak_processes >= 3  # this process and both holders


def test_one_child_is_not_counted_twice():
    with TreePeak(interval_s=0.05) as mem:
        procs = _spawn_holders(1)
        try:
            _wait_for_background_samples(mem, 2)
        finally:
            _release(procs)
    grown = mem.peak_mb - mem.baseline_mb
    assert HOLD_MB * 0.9 <= grown < 2 * HOLD_MB * 0.9, mem.as_dict()


def test_nested_blocks_see_their_own_window():
    with TreePeak(interval_s=0.05) as outer:
        procs = _spawn_holders(1)
        try:
            outer.sample()
        finally:
            _release(procs)
        with TreePeak(interval_s=0.05) as inner:
            pass
    # The holder had exited before the inner block began: the inner peak excludes it, the outer one includes it.
    assert outer.peak_mb - inner.peak_mb >= HOLD_MB * 0.9, (outer.as_dict(), inner.as_dict())
    assert inner.samples >= 2  # on entry and on exit, however short the block


def test_watching_another_process_tree():
    procs = _spawn_holders(1)
    try:
        with TreePeak(pid=procs[0].pid, interval_s=0.05) as mem:
            pass
    finally:
        _release(procs)
    assert mem.peak_processes == 1
    assert mem.peak_mb >= HOLD_MB * 0.9


def test_vanishing_processes_are_tolerated():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert tree_rss(p.pid).processes == 0  # reaped: no such process
    with TreePeak(interval_s=0.01) as mem:
        for _ in range(20):  # children that start and exit while the thread samples
            subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert mem.peak_processes >= 1 and mem.peak_mb > 0


def test_used_once():
    mem = TreePeak()
    with mem:
        pass
    with pytest.raises(RuntimeError):
        with mem:
            pass
    with pytest.raises(ValueError):
        TreePeak(interval_s=0)
