"""`python -m xr0lab dynreach {quick,full,early,scenarios,ci,merge}`: run, resume or merge.

    python -m xr0lab dynreach quick                      # one seed, notebook setting
    python -m xr0lab dynreach full --workers 1 --out data/dynreach_results.json
    python -m xr0lab dynreach full --seeds 0 1 2 3 4 --arms A0 A1 A2 A3 A4 A5 A6 A7
    python -m xr0lab dynreach merge full --out data/dynreach_results.json
    python -m xr0lab dynreach early --workers 2 --out data/dynreach_early.json  # after full
    python -m xr0lab dynreach scenarios --workers 2   # S1-S3 mix (see sweep_preset)

A sweep lives in runs/dynreach/<preset> (or --run-dir); rerunning the same command resumes it,
skipping finished stage-A checkpoints and cells. Threads per worker default to 1.

The committed results (arms with 5 seeds, then arms with 3; `merge` reads whatever exists):

    python -m xr0lab dynreach full --arms A3 A5 A6 A1 A0 --seeds 0 1 2 3 4 --workers 2
    python -m xr0lab dynreach full --arms A2 A4 A7 A5w1 A5w2 A5w8 --seeds 0 1 2 --workers 2
    python -m xr0lab dynreach merge full --arms A3 A5 A6 A1 A0 A2 A4 A7 A5w1 A5w2 A5w8 \\
        --seeds 0 1 2 3 4 --out data/dynreach_results.json
    # the same three lines with `early` instead of `full` -> data/dynreach_early.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from xr0lab.dynreach.sweep import merge_results, run_sweep, sweep_preset
from xr0lab.dynreach.train import set_threads, write_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xr0lab dynreach", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("quick", "full", "early", "scenarios", "ci", "merge"))
    p.add_argument("preset", nargs="?", default=None,
                   help="merge only: which preset's run to merge (default full)")
    p.add_argument("--arms", nargs="+", help="override the preset's arms (e.g. A0 A3 A5w2)")
    p.add_argument("--seeds", nargs="+", type=int, help="override the training seeds")
    p.add_argument("--episodes", type=int, help="test episodes per condition")
    p.add_argument("--run-dir", type=Path, help="default runs/dynreach/<preset>")
    p.add_argument("--train-from", help="evaluate the checkpoints of this run directory "
                   "instead of training (same model and training settings)")
    p.add_argument("--out", type=Path, help="results JSON (default <run-dir>/results.json)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--no-progress", action="store_true")
    return p


def dynreach_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name = (args.preset or "full") if args.mode == "merge" else args.mode
    config = sweep_preset(name)
    changes = {}
    if args.arms:
        changes["arms"] = tuple(args.arms)
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.episodes:
        changes["eval"] = dataclasses.replace(config.eval, n_episodes=args.episodes)
    if args.train_from:
        changes["train_from"] = args.train_from
    config = dataclasses.replace(config, **changes) if changes else config
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    set_threads(args.threads)
    start = time.perf_counter()
    if args.mode == "merge":
        from xr0lab.dynreach.sweep import backfill_moving_conflict, default_run_dir

        run_dir = args.run_dir or default_run_dir(name)
        backfill_moving_conflict(run_dir, config)
        results = merge_results(run_dir, config, threads=args.threads)
        out = args.out or Path(run_dir) / "results.json"
        write_json(results, out)
    else:
        results = run_sweep(config, run_dir=args.run_dir, workers=args.workers,
                            threads=args.threads, progress=not args.no_progress, out=args.out)
        out = args.out or Path(results["meta"]["run_dir"]) / "results.json"
    print(f"dynreach {args.mode}: {len(results['meta']['cells'])} cells, "
          f"{time.perf_counter() - start:.0f} s -> {out}")
    for row in results["primary"]:
        print(f"  primary {row['metric']} {row['a']} - {row['b']} at {row['condition']}: "
              f"{row['mean']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], "
              f"p_holm = {row['p_holm']:.3g}")
    return 0
