"""Command line of stage 05: ``python -m swallowlib.eval --config configs/<p>.yaml [--run R] [--checkpoint DIR]``."""

from __future__ import annotations

import argparse
import logging
import sys

from swallowlib.config import ConfigError, apply_environment, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate checkpoints with lm-evaluation-harness (stage 05).")
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml")
    ap.add_argument("--run", action="append", help="evaluate only this run (repeatable; default: eval.runs)")
    ap.add_argument("--checkpoint", action="append", help="evaluate this HF checkpoint directory (repeatable)")
    ap.add_argument("--force", action="store_true", help="re-evaluate checkpoints already evaluated")
    ap.add_argument("--tasks-only", action="store_true", help="write runs/<profile>/eval/tasks/ and stop")
    ap.add_argument("--tasks-out", metavar="DIR",
                    help="with --tasks-only: write the tasks (and heldout_overlap.json) into DIR instead")  # fmt: skip
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from swallowlib.eval.harness import run_eval
    from swallowlib.eval.tasks import EvalDataError, build_tasks

    try:
        cfg = load_config(args.config)
        apply_environment(cfg)
        if args.tasks_only:
            print(build_tasks(cfg, args.tasks_out))
            return 0
        if args.tasks_out:
            raise ValueError("--tasks-out goes with --tasks-only (an evaluation reads runs/<profile>/eval/tasks/)")
        summary = run_eval(cfg, runs=args.run, checkpoints=args.checkpoint, force=args.force)
    except (ConfigError, EvalDataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for run, name, wall in summary["evaluated"]:
        print(f"evaluated {run}/{name} in {wall:.1f} s")
    for run, name in summary["skipped"]:
        print(f"skipped {run}/{name} (already evaluated)")
    for run, name, err in summary["failed"]:
        print(f"error: {run}/{name}: {err}", file=sys.stderr)
    for run, name, task, err in summary["task_failures"]:
        print(f"warning: {run}/{name}: task {task} failed: {err}", file=sys.stderr)
    print(f"{summary['rows']} rows in the results table")
    # A failed task leaves the checkpoint's other results in place and is retried by the next run: warned, not fatal.
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
