"""`xr0lab` command line: `python -m xr0lab <command> ...`, the one entry point for every command.

    walkthrough    run notebooks/01 headless on the tiny preset, write figures/, print a summary
    notebook NAME  run any notebook headless (walkthrough, masks, flow, async, lambda, prefix,
                   latency)
    profile        stage-level latency profile (see `xr0lab profile --help`)
    predict        the cost model's predicted breakdown of the released configuration
    hook-overhead  hook-point overhead, measured side by side
    dynreach       the DynReach benchmark (see `xr0lab dynreach --help`)
    layout         print (or --write into README.md) the package map

Each command's arguments are declared here; the work is done by library functions, so every
command can also be called from Python.
"""

from __future__ import annotations

import argparse
import json
import sys


# --- notebook commands ------------------------------------------------------------------------

def _walkthrough(args: argparse.Namespace) -> int:
    from xr0lab.workspace.notebooks import run_notebook
    from xr0lab.workspace.paths import figures_dir

    _, seconds = run_notebook("walkthrough", save=not args.no_save)
    summary_path = figures_dir() / "01_summary.json"
    summary = json.loads(summary_path.read_text())
    print(f"xr0lab walkthrough: notebooks/01_inference_walkthrough.ipynb ran in {seconds:.1f} s")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    return 0


def _notebook(args: argparse.Namespace) -> int:
    from xr0lab.workspace.notebooks import run_notebook

    _, seconds = run_notebook(args.name, save=not args.no_save, quick=args.quick or None)
    print(f"{args.name}: ran in {seconds:.1f} s")
    return 0


def _add_notebook_commands(sub) -> None:
    walk = sub.add_parser("walkthrough", help="run the inference walkthrough headless")
    walk.add_argument("--no-save", action="store_true", help="do not write outputs back")
    walk.set_defaults(func=_walkthrough)
    nb = sub.add_parser("notebook", help="run one notebook headless")
    nb.add_argument("name")
    nb.add_argument("--quick", action="store_true", help="shrink workloads (as in CI)")
    nb.add_argument("--no-save", action="store_true")
    nb.set_defaults(func=_notebook)


# --- repository commands ----------------------------------------------------------------------

def _layout(args: argparse.Namespace) -> int:
    from xr0lab.workspace.layout import package_map, write_readme
    from xr0lab.workspace.paths import repo_root

    if args.write:
        changed = write_readme(repo_root() / "README.md")
        print("README.md package map " + ("updated" if changed else "already current"))
    else:
        print(package_map())
    return 0


def _add_repository_commands(sub) -> None:
    lay = sub.add_parser("layout", help="the package map generated from the module docstrings")
    lay.add_argument("--write", action="store_true",
                     help="write it into README.md between the layout markers")
    lay.set_defaults(func=_layout)


# --- latency commands -------------------------------------------------------------------------

def _profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from xr0lab.latency.profile import run_profile
    from xr0lab.latency.records import summarize_record

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        args.parser.error("--device cuda requested but torch.cuda.is_available() is False")
    record = run_profile(args.preset, device=args.device, dtype=args.dtype, threads=args.threads,
                         views=args.views, image_hw=args.image_size, steps=args.steps,
                         batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                         compile_step=args.compile, trace=args.trace,
                         with_overhead=args.overhead, with_speed_options=args.speed_options,
                         out=args.out, tag=args.tag, argv=args.argv)
    path = Path(record["path"])
    print(summarize_record(record))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from xr0lab.latency.roofline import released_report

    overhead_s = None if args.launch_overhead_us is None else args.launch_overhead_us * 1e-6
    print(released_report(args.device, launch_overhead_s=overhead_s))
    return 0


def _hook_overhead(args: argparse.Namespace) -> int:
    from xr0lab.latency.hook_overhead import format_hook_overhead, measure_hook_overhead

    print(format_hook_overhead(measure_hook_overhead(args.reps, args.batch_size)))
    return 0


def _keep_argv(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a subcommand's parser store its own argument strings as `argv` (a profile record
    keeps the command line it was made with)."""
    parse_known_args = parser.parse_known_args

    def parse_and_keep(args=None, namespace=None):
        namespace, extras = parse_known_args(args, namespace)
        namespace.argv = list(sys.argv[1:] if args is None else args)
        return namespace, extras

    parser.parse_known_args = parse_and_keep
    return parser


def _add_latency_commands(sub) -> None:
    from xr0lab.config import PRESETS
    from xr0lab.latency.devices import DEVICES

    prof = _keep_argv(sub.add_parser(
        "profile", help="stage-level latency profile: JSON record and breakdown plot",
        description="`xr0lab profile`: time every stage, write the JSON record and a breakdown "
                    "plot."))
    prof.add_argument("--preset", default="tiny", choices=PRESETS)
    prof.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    prof.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                      help="default: float32 on CPU, bfloat16 on GPU")
    prof.add_argument("--threads", type=int, default=1, help="CPU intra-op threads")
    prof.add_argument("--views", type=int, default=None, choices=(1, 2, 3),
                      help="default: 3 for xr0, else 2")
    prof.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="per view, multiples of 32; default 256 320 for xr0, else 128 128")
    prof.add_argument("--steps", type=int, default=None, help="flow steps (default: config)")
    prof.add_argument("--batch", type=int, default=1)
    prof.add_argument("--repeats", type=int, default=20)
    prof.add_argument("--warmup", type=int, default=2)
    prof.add_argument("--compile", action="store_true",
                      help="torch.compile the denoising step (compile time lands in warm-up)")
    prof.add_argument("--trace", action="store_true", help="write a torch.profiler trace")
    prof.add_argument("--overhead", action="store_true",
                      help="also measure timers-on vs timers-off side by side")
    prof.add_argument("--speed-options", action="store_true",
                      help="also measure speed options side by side (ratios)")
    prof.add_argument("--out", default=None, help="output directory (default: data/)")
    prof.add_argument("--tag", default="", help="suffix for the output file names")
    prof.set_defaults(func=_profile, parser=prof)

    pred = sub.add_parser(
        "predict", help="predicted RTX 4090 breakdown of the released configuration",
        description="Print the predicted RTX 4090 breakdown of the released configuration vs "
                    "the reported 80 ms, and the same prediction on every tabulated device.")
    pred.add_argument("--device", default="rtx4090", choices=sorted(DEVICES))
    pred.add_argument("--launch-overhead-us", type=float, default=None,
                      help="override the per-op launch overhead (microseconds)")
    pred.set_defaults(func=_predict)

    hooks = sub.add_parser(
        "hook-overhead", help="hook-point overhead on the tiny preset, measured side by side",
        description="What inspection costs on the tiny preset (CPU): a benchmark, not a test.")
    hooks.add_argument("--reps", type=int, default=60)
    hooks.add_argument("--batch-size", type=int, default=1)
    hooks.set_defaults(func=_hook_overhead)


# --- dynreach commands ------------------------------------------------------------------------

DYNREACH_COMMANDS = """\
`python -m xr0lab dynreach {quick,full,early,scenarios,ci,merge}`: run, resume or merge.

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


def _dynreach(args: argparse.Namespace) -> int:
    import time

    from xr0lab.dynreach.sweep import run_command

    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    start = time.perf_counter()
    results, out = run_command(args.mode, args.preset, arms=args.arms, seeds=args.seeds,
                               episodes=args.episodes, run_dir=args.run_dir,
                               train_from=args.train_from, out=args.out, workers=args.workers,
                               threads=args.threads, progress=not args.no_progress)
    print(f"dynreach {args.mode}: {len(results['meta']['cells'])} cells, "
          f"{time.perf_counter() - start:.0f} s -> {out}")
    for row in results["primary"]:
        print(f"  primary {row['metric']} {row['a']} - {row['b']} at {row['condition']}: "
              f"{row['mean']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], "
              f"p_holm = {row['p_holm']:.3g}")
    return 0


def _add_dynreach_commands(sub) -> None:
    from pathlib import Path

    p = sub.add_parser("dynreach", help="run, resume or merge the DynReach benchmark",
                       description=DYNREACH_COMMANDS,
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
    p.set_defaults(func=_dynreach)


# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xr0lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_notebook_commands(sub)
    _add_latency_commands(sub)
    _add_dynreach_commands(sub)
    _add_repository_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return args.func(args)
