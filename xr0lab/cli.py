"""`xr0lab` command line: `python -m xr0lab <command> ...`, the one entry point for every command.

    walkthrough    run notebooks/01 headless on the tiny preset, write figures/, print a summary
    notebook NAME  run any notebook headless (walkthrough, masks, flow, async, lambda, prefix,
                   latency)
    profile        stage-level latency profile (see `xr0lab profile --help`)
    predict        the cost model's predicted breakdown of the released configuration
    hook-overhead  hook-point overhead, measured side by side
    dynreach       the DynReach benchmark, version 1 (see `xr0lab dynreach --help`)
    study          DynReach version 2: pilot and confirmatory study (`xr0lab study --help`)
    example-model  build (train, store, measure) the trained tiny XR-0 the notebooks load
    layout         print (or --write into README.md) the package map

Each command's arguments are declared here; the work is done by library functions, so every
command can also be called from Python.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


# --- notebook commands ------------------------------------------------------------------------

def _int_at_least(low: int):
    """argparse type: an int >= `low` (a bad value is a usage error, not a traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") \
                from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _nonnegative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value}")
    return value


def _image_side(text: str) -> int:
    """argparse type: an image side in pixels, a positive multiple of 32 (the patch grid)."""
    value = _positive_int(text)
    if value % 32:
        raise argparse.ArgumentTypeError(f"expected a multiple of 32 pixels, got {value}")
    return value


def _device(text: str) -> str:
    """argparse type: a torch device string such as cpu, cuda or cuda:1."""
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a device such as cpu, cuda or cuda:1, "
                                         f"got {text!r}") from None
    return text


def _shown(path) -> str:
    """A path as the CLI prints it: relative to the working directory when inside it."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _fail(command: str, error: Exception) -> int:
    """A run that could not happen or did not finish: its message, no traceback, exit 1."""
    print(f"xr0lab {command}: error: {error}", file=sys.stderr)
    return 1


def _report_run(label: str, run) -> None:
    slowest = ("" if run.slowest_cell is None else
               f" (slowest: cell {run.slowest_cell}, {run.slowest_seconds:.1f} s)")
    retried = ", after one retry with a fresh kernel" if run.attempts > 1 else ""
    print(f"xr0lab {label}: ran in {run.seconds:.1f} s{slowest}{retried}")
    if run.saved_to is not None:
        print(f"  executed notebook written to {_shown(run.saved_to)}")


def _walkthrough(args: argparse.Namespace) -> int:
    from xr0lab.workspace.notebooks import NotebookRunError, run_notebook
    from xr0lab.workspace.paths import figures_dir

    try:
        run = run_notebook("walkthrough", save=not args.no_save, timeout=args.cell_timeout)
    except NotebookRunError as e:
        return _fail("walkthrough", e)
    summary = json.loads((figures_dir() / "01_summary.json").read_text())
    _report_run("walkthrough (notebooks/01_inference_walkthrough.ipynb)", run)
    print(f"  figures in {_shown(figures_dir())}")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    return 0


def _notebook(args: argparse.Namespace) -> int:
    from xr0lab.workspace.notebooks import NotebookRunError, run_notebook
    from xr0lab.workspace.paths import figures_dir, quick_dir

    try:
        run = run_notebook(args.name, save=not args.no_save, quick=args.quick or None,
                           timeout=args.cell_timeout)
    except NotebookRunError as e:
        return _fail(f"notebook {args.name}", e)
    _report_run(f"notebook {args.name}", run)
    # --quick applies to the kernel's environment; the parent says where that kernel wrote.
    figures = (quick_dir() / "figures" if args.quick and not os.environ.get("XR0LAB_FIGURES")
               else figures_dir())
    print(f"  figures in {_shown(figures)}")
    return 0


def _add_notebook_commands(sub) -> None:
    from xr0lab.workspace.notebooks import CELL_TIMEOUT_S, NOTEBOOKS

    timeout_help = (f"seconds one cell may run before the run fails naming it (default "
                    f"{CELL_TIMEOUT_S}; longer with XR0LAB_TRAIN=1)")
    walk = sub.add_parser(
        "walkthrough", help="run the inference walkthrough headless (writes figures/01_*)",
        description="Run notebooks/01 headless on the tiny preset: rewrites figures/01_*.png, "
                    "figures/01_summary.json and the notebook's outputs (with CI=true or "
                    "XR0LAB_QUICK=1: runs/quick/ instead), then prints the summary.")
    walk.add_argument("--no-save", action="store_true",
                      help="do not write the executed notebook back")
    walk.add_argument("--cell-timeout", type=_positive_int, default=None, metavar="SECONDS",
                      help=timeout_help)
    walk.set_defaults(func=_walkthrough)
    nb = sub.add_parser(
        "notebook", help="run one notebook headless",
        description="Run one notebook headless. A full run rewrites its figures in figures/ "
                    "and its outputs in notebooks/; --quick (or CI=true) shrinks the workloads "
                    "and writes both under runs/quick/ instead, leaving the committed ones "
                    "alone.")
    nb.add_argument("name", choices=list(NOTEBOOKS), metavar="NAME",
                    help="one of: " + ", ".join(NOTEBOOKS))
    nb.add_argument("--quick", action="store_true",
                    help="shrink workloads (as in CI); outputs go to runs/quick/")
    nb.add_argument("--no-save", action="store_true",
                    help="do not write the executed notebook anywhere")
    nb.add_argument("--cell-timeout", type=_positive_int, default=None, metavar="SECONDS",
                    help=timeout_help)
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
    from xr0lab.latency.records import OutputExistsError, summarize_record

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        args.parser.error("--device cuda requested but torch.cuda.is_available() is False")
    if args.suite == "gpu":
        return _profile_suite(args)
    for flag, value in (("--budget-s", args.budget_s), ("--dry-run", args.dry_run or None),
                        ("--no-compile", args.no_compile or None)):
        if value is not None:
            args.parser.error(f"{flag} belongs to --suite gpu")
    try:
        record = run_profile(
            args.preset, device=args.device, dtype=args.dtype, threads=args.threads,
            views=args.views, image_hw=args.image_size, steps=args.steps, batch=args.batch,
            repeats=20 if args.repeats is None else args.repeats,
            warmup=2 if args.warmup is None else args.warmup, compile_step=args.compile,
            trace=args.trace, with_overhead=args.overhead,
            with_speed_options=args.speed_options, out=args.out, tag=args.tag, argv=args.argv,
            overwrite=args.overwrite)
    except OutputExistsError as err:
        args.parser.error(str(err))
    path = Path(record["path"])
    print(summarize_record(record))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def _profile_suite(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xr0lab.latency.records import OutputExistsError
    from xr0lab.latency.suite import SuiteSettings, format_suite, run_suite

    for flag, used in (("--views", args.views is not None), ("--batch", args.batch != 1),
                       ("--compile", args.compile), ("--trace", args.trace),
                       ("--overhead", args.overhead), ("--speed-options", args.speed_options)):
        if used:
            args.parser.error(f"{flag} does not apply to --suite gpu (it runs 3 and 2 views, "
                              "batch 1, the loop compiled and eager, and the overheads itself)")
    changes = {k: v for k, v in (("repeats", args.repeats), ("warmup", args.warmup),
                                 ("budget_s", args.budget_s), ("steps", args.steps))
               if v is not None}
    if args.image_size is not None:
        changes["image_hw"] = tuple(args.image_size)
    if args.no_compile:
        changes["compile"] = False
    try:
        settings = (SuiteSettings.dry_run(**changes) if args.dry_run
                    else SuiteSettings(**changes))
        record = run_suite(args.preset, device=args.device, dtype=args.dtype,
                           settings=settings, threads=args.threads, out=args.out, tag=args.tag,
                           overwrite=args.overwrite, argv=args.argv)
    except (OutputExistsError, ValueError) as err:
        args.parser.error(str(err))
    path = Path(record["path"])
    print(format_suite(record))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    if not record["complete"]:
        print("the suite did not finish (see the parts above); what it measured is in the record",
              file=sys.stderr)
        return 1
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
                    "plot. `--suite gpu` runs every full-size measurement in one go "
                    "(`python -m xr0lab profile --preset xr0 --device cuda --suite gpu --out "
                    "data`, built to finish within 6 minutes on an H100/H200; see "
                    "xr0lab.latency.suite)."))
    prof.add_argument("--preset", default="tiny", choices=PRESETS)
    prof.add_argument("--device", default="cpu", type=_device, help="cpu or cuda[:n]")
    prof.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                      help="default: float32 on CPU, bfloat16 on GPU")
    prof.add_argument("--threads", type=_positive_int, default=1, help="CPU intra-op threads")
    prof.add_argument("--views", type=int, default=None, choices=(1, 2, 3),
                      help="default: 3 for xr0, else 2")
    prof.add_argument("--image-size", type=_image_side, nargs=2, default=None, metavar=("H", "W"),
                      help="per view, multiples of 32; default 256 320 for xr0, else 128 128")
    prof.add_argument("--steps", type=_positive_int, default=None, help="flow steps (default: config)")
    prof.add_argument("--batch", type=_positive_int, default=1)
    prof.add_argument("--repeats", type=_positive_int, default=None,
                      help="timed inferences (default 20; 100 per view count with --suite gpu)")
    prof.add_argument("--warmup", type=_nonnegative_int, default=None,
                      help="untimed inferences first (default 2; 5 with --suite gpu)")
    prof.add_argument("--compile", action="store_true",
                      help="torch.compile the denoising step (compile time lands in warm-up)")
    prof.add_argument("--trace", action="store_true", help="write a torch.profiler trace")
    prof.add_argument("--overhead", action="store_true",
                      help="also measure timers-on vs timers-off side by side")
    prof.add_argument("--speed-options", action="store_true",
                      help="also measure speed options side by side (ratios)")
    prof.add_argument("--out", default=None, help="output directory (default: data/)")
    prof.add_argument("--tag", default="", help="suffix for the output file names")
    prof.add_argument("--overwrite", action="store_true",
                      help="replace existing output files (refused otherwise)")
    prof.add_argument("--suite", default="stages", choices=("stages", "gpu"),
                      help="stages: the stage profile (default); gpu: the full measurement "
                           "suite (inference 3 and 2 views, DiT loop eager / CUDA graph / "
                           "compiled, hooks, RealTimeRunner, probe, memory)")
    prof.add_argument("--budget-s", type=float, default=None,
                      help="--suite gpu: time budget in seconds, build included (default 300)")
    prof.add_argument("--dry-run", action="store_true",
                      help="--suite gpu: tiny counts, to check the code path (e.g. on CPU)")
    prof.add_argument("--no-compile", action="store_true",
                      help="--suite gpu: skip the torch.compile part")
    prof.set_defaults(func=_profile, parser=prof)

    pred = sub.add_parser(
        "predict", help="predicted RTX 4090 breakdown of the released configuration",
        description="Print the predicted RTX 4090 breakdown of the released configuration vs "
                    "the reported 80 ms, and the same prediction on every tabulated device.")
    pred.add_argument("--device", default="rtx4090", choices=sorted(DEVICES))
    pred.add_argument("--launch-overhead-us", type=_nonnegative_float, default=None,
                      help="override the per-op launch overhead (microseconds)")
    pred.set_defaults(func=_predict)

    hooks = sub.add_parser(
        "hook-overhead", help="hook-point overhead on the tiny preset, measured side by side",
        description="What inspection costs on the tiny preset (CPU): a benchmark, not a test.")
    hooks.add_argument("--reps", type=_positive_int, default=60)
    hooks.add_argument("--batch-size", type=_positive_int, default=1)
    hooks.set_defaults(func=_hook_overhead)


# --- dynreach commands ------------------------------------------------------------------------

DYNREACH_COMMANDS = """\
`python -m xr0lab dynreach {quick,full,early,scenarios,ci,merge}`: run, resume or merge.

    python -m xr0lab dynreach ci                         # the tiny CI sweep, about a minute
    python -m xr0lab dynreach quick                      # one seed, notebook setting
    python -m xr0lab dynreach full --workers 1 --out data/dynreach_results.json
    python -m xr0lab dynreach full --seeds 0 1 2 3 4 --arms A0 A1 A2 A3 A4 A5 A6 A7
    python -m xr0lab dynreach merge full --out data/dynreach_results.json
    python -m xr0lab dynreach early --workers 2 --out data/dynreach_early.json  # needs full
    python -m xr0lab dynreach scenarios --workers 2   # S1-S3 mix (see sweep_preset)
    python -m xr0lab dynreach full --executor ray --address HOST:6379   # on a Ray cluster

A sweep lives in runs/dynreach/<preset> (or --run-dir); rerunning the same command resumes it,
skipping finished stage-A checkpoints and cells. Threads per worker default to 1. The cells
run in local processes, or with --executor ray as Ray tasks (pip install 'xr0lab[ray]'): a local
Ray running --workers cells at a time, or the cluster at --address; the cells are the same.

The committed results (arms with 5 seeds, then arms with 3; `merge` reads whatever exists):

    python -m xr0lab dynreach full --arms A3 A5 A6 A1 A0 --seeds 0 1 2 3 4 --workers 2
    python -m xr0lab dynreach full --arms A2 A4 A7 A5w1 A5w2 A5w8 --seeds 0 1 2 --workers 2
    python -m xr0lab dynreach merge full --arms A3 A5 A6 A1 A0 A2 A4 A7 A5w1 A5w2 A5w8 \\
        --seeds 0 1 2 3 4 --out data/dynreach_results.json
    # the same three lines with `early` instead of `full` -> data/dynreach_early.json
"""


def _dynreach(args: argparse.Namespace) -> int:
    import time

    from xr0lab.dynreach.executors import RayNotInstalled
    from xr0lab.dynreach.sweep import MissingRunError, RunDirMismatch, run_command

    if args.preset is not None and args.mode != "merge":
        args.parser.error(f"PRESET ({args.preset!r}) is for merge only, e.g. "
                          f"`xr0lab dynreach merge {args.preset}`")
    if args.address is not None and args.executor != "ray":
        args.parser.error(f"--address ({args.address!r}) is the Ray cluster to join, so it "
                          f"needs --executor ray")
    start = time.perf_counter()
    try:
        results, out = run_command(args.mode, args.preset, arms=args.arms, seeds=args.seeds,
                                   episodes=args.episodes, run_dir=args.run_dir,
                                   train_from=args.train_from, out=args.out,
                                   workers=args.workers, threads=args.threads,
                                   progress=not args.no_progress, executor=args.executor,
                                   address=args.address)
    except (MissingRunError, RunDirMismatch, RayNotInstalled) as e:
        return _fail(f"dynreach {args.mode}", e)
    print(f"dynreach {args.mode}: {len(results['meta']['cells'])} cells, "
          f"{time.perf_counter() - start:.0f} s -> {out}")
    for row in results["primary"]:
        print(f"  primary {row['metric']} {row['a']} - {row['b']} at {row['condition']}: "
              f"{row['mean']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], "
              f"p_holm = {row['p_holm']:.3g}")
    return 0


def _add_dynreach_commands(sub) -> None:
    from pathlib import Path

    from xr0lab.dynreach.arms import ARMS
    from xr0lab.dynreach.sweep import PRESETS

    p = sub.add_parser("dynreach", help="run, resume or merge the DynReach benchmark",
                       description=DYNREACH_COMMANDS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=(*PRESETS, "merge"))
    p.add_argument("preset", nargs="?", default=None, choices=PRESETS, metavar="PRESET",
                   help="merge only: which preset's run to merge (default full; one of "
                        f"{', '.join(PRESETS)})")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), metavar="ARM",
                   help="override the preset's arms (e.g. A0 A3 A5w2; one of "
                        f"{', '.join(ARMS)})")
    p.add_argument("--seeds", nargs="+", type=_nonnegative_int,
                   help="override the training seeds")
    p.add_argument("--episodes", type=_positive_int, help="test episodes per condition")
    p.add_argument("--run-dir", type=Path, help="default runs/dynreach/<preset>")
    p.add_argument("--train-from", help="evaluate the checkpoints of this run directory "
                   "instead of training (same model and training settings)")
    p.add_argument("--out", type=Path, help="results JSON (default <run-dir>/results.json)")
    _add_scale_out_arguments(p)
    p.set_defaults(func=_dynreach, parser=p)


def _add_scale_out_arguments(p) -> None:
    """--workers, --threads, --executor, --address, --no-progress (dynreach and study)."""
    from xr0lab.dynreach.executors import EXECUTORS

    p.add_argument("--workers", type=_positive_int, default=1,
                   help="worker processes, or Ray tasks at a time (default 1)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch threads per worker (default 1)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where the cells run: local processes (default) or Ray tasks "
                        "(pip install 'xr0lab[ray]')")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the Ray cluster to join (e.g. HOST:6379 or "
                        "auto; default: a local Ray running --workers cells at a time)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are shown only on a terminal anyway)")


# --- study (DynReach v2) ----------------------------------------------------------------------

STUDY_COMMANDS = """\
`python -m xr0lab study {v2ci,v2quick,pilot,confirm}`: run or resume DynReach v2 (docs/dynreach.md
§7-9). Each (arm, seed) cell is written as it finishes under runs/dynreach_v2/<preset> (or
--run-dir); rerunning the command resumes, never recomputing or replacing a finished cell.

    python -m xr0lab study v2ci                       # seconds: the code path
    python -m xr0lab study v2quick                    # one seed, an illustration (no p-values)
    python -m xr0lab study pilot --workers 2 --out data/dynreach_v2/pilot.json
    python -m xr0lab study confirm --workers 2 --out data/dynreach_v2/results.json
    python -m xr0lab study confirm --executor ray --address HOST:6379   # on a Ray cluster
    python -m xr0lab study confirm --max-cells 4      # a sitting: four more cells, then stop
    # resume the committed confirmatory cells on any checkout, seed by seed, committing-ready:
    python -m xr0lab study confirm --order seed --cells data/dynreach_v2/confirm_cells
"""


def _study(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from xr0lab.dynreach.executors import RayNotInstalled
    from xr0lab.dynreach.stats import format_p
    from xr0lab.dynreach.study import pilot_record, pilot_verdict, run_study, study_preset
    from xr0lab.dynreach.sweep import RunDirMismatch
    from xr0lab.dynreach.train import write_json

    if args.address is not None and args.executor != "ray":
        args.parser.error(f"--address ({args.address!r}) is the Ray cluster to join, so it "
                          f"needs --executor ray")
    if args.out is not None and args.out.exists() and not args.overwrite:
        return _fail(f"study {args.preset}", FileExistsError(
            f"{args.out} exists and is left as it is; pass --overwrite to replace it, or "
            "choose another --out"))
    config = study_preset(args.preset)
    changes = {k: tuple(v) for k, v in (("arms", args.arms), ("seeds", args.seeds)) if v}
    config = dataclasses.replace(config, **changes) if changes else config
    start = time.perf_counter()
    try:
        results = run_study(config, run_dir=args.run_dir, workers=args.workers,
                            threads=args.threads, progress=not args.no_progress,
                            executor=args.executor, address=args.address,
                            max_cells=args.max_cells, order=args.order, cells_dir=args.cells)
    except (RunDirMismatch, RayNotInstalled, ValueError) as e:
        return _fail(f"study {args.preset}", e)
    record = pilot_record(results) if args.preset == "pilot" else results
    if args.out is not None:
        write_json(record, args.out)
    n = len(results["meta"]["cells"])
    print(f"study {args.preset}: {n} cells, {time.perf_counter() - start:.0f} s"
          + (f" -> {args.out}" if args.out else ""))
    if results["meta"]["one_seed"]:
        print("  one training seed: an illustration, not a test (no p-values)")
        return 0
    rows = results["contrasts"]
    rows = rows["primary"] if isinstance(rows, dict) else rows[:2]
    for row in rows:
        if not row.get("n_seeds"):
            print(f"  {row['name']}: no seed has both arms yet")
            continue
        ci = "" if row["low"] is None else f" [{row['low']:+.3f}, {row['high']:+.3f}]"
        print(f"  {row['name']} at {row['condition']}: {row['mean']:+.3f}{ci} over "
              f"{row['n_seeds']} seeds, sign-flip {format_p(row['p_sign_flip'], row['p_floor'])}")
    if args.preset == "pilot":
        v = pilot_verdict(results)
        print(f"  pilot: A3 copies: {'yes' if v['a3_copies'] else 'no'} ({v['rule']}); "
              f"seeds planned for the confirmatory study: {v['seeds_planned']}")
    return 0


def _add_study_commands(sub) -> None:
    from pathlib import Path

    from xr0lab.dynreach.arms import ARMS_V2
    from xr0lab.dynreach.study import STUDY_PRESETS

    p = sub.add_parser("study", help="run or resume DynReach v2 (pilot, confirmatory study)",
                       description=STUDY_COMMANDS,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", choices=STUDY_PRESETS)
    p.add_argument("--arms", nargs="+", choices=list(ARMS_V2), metavar="ARM",
                   help=f"override the preset's arms (one of {', '.join(ARMS_V2)})")
    p.add_argument("--seeds", nargs="+", type=_nonnegative_int,
                   help="override the training seeds")
    p.add_argument("--run-dir", type=Path, help="default runs/dynreach_v2/<preset>")
    p.add_argument("--out", type=Path, help="also write the results JSON here (the pilot's "
                   "with its verdict); an existing file needs --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--max-cells", type=_positive_int, help="stop after this many new cells")
    p.add_argument("--order", choices=("arm", "seed"), default="arm",
                   help="arm: every stage A first, then the cells arm by arm (default); seed: "
                   "one seed at a time, so an interrupted sitting leaves whole seeds")
    p.add_argument("--cells", type=Path, metavar="DIR",
                   help="a committed cells directory (e.g. data/dynreach_v2/confirm_cells): its "
                   "cells are adopted before the run, and each cell finished is copied there "
                   "(never replacing one)")
    _add_scale_out_arguments(p)
    p.set_defaults(func=_study, parser=p)


# --- example model ----------------------------------------------------------------------------

def _example_model(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from xr0lab.example.build import QUICK, build
    from xr0lab.example.train import ExampleSettings
    from xr0lab.workspace.paths import scratch_dir
    from xr0lab.workspace.threads import set_threads

    set_threads(args.threads)
    settings = QUICK if args.quick else ExampleSettings()
    out = args.out or (scratch_dir("example_model") if args.quick else None)
    if out is None:
        from xr0lab.example.load import example_dir
        out = example_dir()
    run_dir = args.run_dir or (out.with_name(out.name + ".run") if args.quick
                               else Path("runs/example_model"))
    start = time.perf_counter()
    try:
        record = build(out, settings, run_dir=run_dir, episodes=8 if args.quick else args.episodes,
                       probe_samples=64 if args.quick else 2048, overwrite=args.overwrite,
                       progress=not args.no_progress)
    except (FileExistsError, ValueError) as e:
        return _fail("example-model build", e)
    s = record["success"]
    print(f"example-model build: {time.perf_counter() - start:.0f} s -> {out}")
    for mode, rows in s.items():
        cells = ", ".join(f"{k} {v['success_plain']:.3f}" for k, v in rows.items())
        print(f"  {mode}: plain success {cells}; goal probe R^2 "
              f"{record['goal_probe'][mode]['r2']:.3f}")
    return 0


def _add_example_model_commands(sub) -> None:
    from pathlib import Path

    p = sub.add_parser("example-model", help="build the trained tiny XR-0 (data/example_model)",
                       description="Train the real tiny XR-0 preset on DynReach in XR-0's three "
                       "stages, store the release and xr0-async checkpoints (bf16, released "
                       "format) and measure them (docs/example_model.md). About 1-2 hours on "
                       "one core; --quick runs the same code in seconds, into a scratch folder.")
    p.add_argument("action", choices=("build",))
    p.add_argument("--quick", action="store_true", help="a seconds-long run of the same code")
    p.add_argument("--out", type=Path, help="default data/example_model (quick: a scratch dir)")
    p.add_argument("--run-dir", type=Path, help="training checkpoints (resumable); default "
                   "runs/example_model")
    p.add_argument("--episodes", type=_positive_int, default=256,
                   help="test episodes per (checkpoint, scenario, delay)")
    p.add_argument("--threads", type=_positive_int, default=1)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_example_model)


# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xr0lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_notebook_commands(sub)
    _add_latency_commands(sub)
    _add_dynreach_commands(sub)
    _add_study_commands(sub)
    _add_example_model_commands(sub)
    _add_repository_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return args.func(args)
