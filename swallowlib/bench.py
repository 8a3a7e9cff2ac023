"""Run every benchmark and print one table: ``make bench`` (never part of ``make test``).

Benchmarks live in ``benchmarks/bench_<stage>.py``; each exposes ``BENCHMARKS``, a list of functions returning rows
``{"benchmark", "variant", "metric", "value", "unit", "baseline"}``. Each function runs in its own process so its
peak memory is its own (``peak_tree_mb``: resident memory summed over that process and everything it starts, see
:mod:`swallowlib.procmem`); the variant marked ``baseline`` is measured in the same process run as the others, and
every other variant is reported as a ratio to it.

    python -m swallowlib.bench                 # all
    python -m swallowlib.bench corpus.decontam # one (module suffix . function name without ``bench_``)
    python -m swallowlib.bench train           # every benchmark of one stage
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from swallowlib import paths
from swallowlib.procmem import TreePeak

BENCH_DIR = paths.ROOT / "benchmarks"


#: The profile whose data a benchmark reads (``--profile``; set for the child processes).
PROFILE = os.environ.get("SWALLOW_BENCH_PROFILE", "smoke")


def row(bench: str, variant: str, metric: str, value: float, unit: str, baseline: bool = False) -> dict:
    """One result row; ``baseline`` marks the variant the others are divided by (same benchmark and metric)."""
    return {
        "benchmark": bench, "variant": variant, "metric": metric, "value": value, "unit": unit,
        "baseline": baseline, "profile": PROFILE,
    }


def _load(module_path: Path):
    spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def discover() -> dict[str, tuple[Path, str]]:
    """``{"corpus.decontam": (path, function name)}`` for every benchmark function."""
    out = {}
    for p in sorted(BENCH_DIR.glob("bench_*.py")):
        for fn in _load(p).BENCHMARKS:
            out[f"{p.stem[len('bench_') :]}.{fn.__name__.removeprefix('bench_')}"] = (p, fn.__name__)
    return out


def _run_one(path: Path, fn_name: str) -> None:
    """Child process: run one benchmark function and print its rows (plus its process tree's peak memory) as JSON."""
    t0 = time.perf_counter()
    with TreePeak() as mem:
        rows = getattr(_load(path), fn_name)()
    for r in rows:
        r.setdefault("peak_tree_mb", round(mem.peak_mb, 1))
    print("BENCH-JSON " + json.dumps({"rows": rows, "wall_s": round(time.perf_counter() - t0, 2)}))


def _ratios(rows: list[dict]) -> None:
    base = {(r["benchmark"], r["metric"]): r["value"] for r in rows if r.get("baseline")}
    for r in rows:
        b = base.get((r["benchmark"], r["metric"]))
        r["vs_baseline"] = "baseline" if r.get("baseline") else (f"{r['value'] / b:.2f}x" if b else "")


def _table(rows: list[dict]) -> str:
    cols = ["benchmark", "profile", "variant", "metric", "value", "unit", "vs_baseline", "peak_tree_mb"]
    cells = [[str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:,.4g}" for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(w[i]) for i, x in enumerate(xs)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (n + 2) for n in w) + "|", *map(line, cells)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all), e.g. corpus.decontam")
    ap.add_argument(
        "--profile", default="smoke", help="profile whose data the benchmarks read (configs/<profile>.yaml)"
    )
    ap.add_argument("--one", nargs=2, metavar=("PATH", "FUNCTION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.one:
        _run_one(Path(args.one[0]), args.one[1])
        return
    found = discover()
    # A stage name selects all of its benchmarks: `tokenizer` = every `tokenizer.*`.
    names = [m for n in args.names for m in (found if n not in found else [n]) if m == n or m.startswith(n + ".")]
    names = names or ([] if args.names else list(found))
    unknown = [n for n in args.names if n not in found and not any(m.startswith(n + ".") for m in found)]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(found)})")
    rows: list[dict] = []
    for name in names:
        path, fn = found[name]
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        env = dict(os.environ, SWALLOW_BENCH_PROFILE=args.profile)
        proc = subprocess.run(
            [sys.executable, "-m", "swallowlib.bench", "--one", str(path), fn], capture_output=True, text=True, env=env
        )
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("BENCH-JSON ")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            rows.append({"benchmark": name, "variant": "FAILED", "metric": tail[0][:80], "value": "", "unit": ""})
            continue
        rows.extend(json.loads(line[len("BENCH-JSON ") :])["rows"])
    _ratios(rows)
    out = paths.RUNS / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(_table(rows))
    print(f"\n(rows also in {out / 'results.jsonl'})")


if __name__ == "__main__":
    main()
