"""Command line of the training engine (stage 04).

    python -m swallowlib.train --config configs/tiny.yaml --run base
    accelerate launch --config_file configs/accelerate/cpu_multi.yaml -m swallowlib.train --config … --run …

Re-running the same command after a kill resumes from the last checkpoint; a finished run is skipped.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m swallowlib.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="configs/<profile>.yaml")
    ap.add_argument("--run", required=True, help="a run name from the config's train.runs")
    ap.add_argument("--restart", action="store_true", help="delete the run's directory first and train from step 0")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimizer steps of this invocation, without saving (the next call resumes)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar (log lines only)")
    ap.add_argument(
        "--prepare",
        action="store_true",
        help="only tokenise the run's data into the cache and exit (one process, before a multi-process launch)",
    )
    ap.add_argument(
        "--restart-if-changed",
        action="store_true",
        help="start over when the run directory belongs to a different config/init/tokenizer (else: an error)",
    )
    args = ap.parse_args(argv)

    from swallowlib.config import ConfigError, apply_environment, load_config
    from swallowlib.train.checkpoint import CheckpointError
    from swallowlib.train.data import DataError
    from swallowlib.train.engine import TrainError, make_accelerator, train
    from swallowlib.train.model import ModelError

    try:
        cfg = load_config(args.config)
        apply_environment(cfg)
        from swallowlib.train.job import build_job, get_run

        get_run(cfg, args.run)
        acc = make_accelerator(cfg.train.precision)
        logging.basicConfig(
            level=logging.INFO if acc.is_main_process else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if args.restart:
            from swallowlib import paths

            if acc.is_main_process:
                shutil.rmtree(paths.run_out_dir(cfg.profile, args.run), ignore_errors=True)
            acc.wait_for_everyone()
        job = build_job(cfg, args.run, acc, progress=not args.no_progress)
        if args.prepare:
            logging.getLogger("swallowlib.train").info("%s: data prepared (%s)", args.run, job.data.share())
            return 0
        summary = train(job, acc, max_steps=args.max_steps, restart_if_changed=args.restart_if_changed)
    except (ConfigError, TrainError, CheckpointError, DataError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if acc.is_main_process:
        logging.getLogger("swallowlib.train").info("summary: %s", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
