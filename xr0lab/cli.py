"""`xr0lab` command line: `python -m xr0lab <command> ...`.

    walkthrough   run notebooks/01 headless on the tiny preset, write figures/, print a summary
    notebook NAME run any notebook headless (walkthrough, masks, flow, async, lambda, prefix, latency)
    profile       stage-level latency profile (see `xr0lab profile --help`)
    dynreach      the DynReach benchmark (see `xr0lab dynreach --help`)
"""

from __future__ import annotations

import argparse
import json
import sys


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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands with their own parsers get the rest of the line untouched.
    if argv and argv[0] == "profile":
        from xr0lab.latency.profiling import profile_main

        return profile_main(argv[1:]) or 0
    if argv and argv[0] == "dynreach":
        from xr0lab.dynreach.cli import dynreach_main

        return dynreach_main(argv[1:]) or 0
    parser = argparse.ArgumentParser(prog="xr0lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    walk = sub.add_parser("walkthrough", help="run the inference walkthrough headless")
    walk.add_argument("--no-save", action="store_true", help="do not write outputs back")
    walk.set_defaults(func=_walkthrough)
    nb = sub.add_parser("notebook", help="run one notebook headless")
    nb.add_argument("name")
    nb.add_argument("--quick", action="store_true", help="shrink workloads (as in CI)")
    nb.add_argument("--no-save", action="store_true")
    nb.set_defaults(func=_notebook)
    sub.add_parser("profile", help="latency profile (own options)")
    sub.add_parser("dynreach", help="DynReach benchmark (own options)")
    args = parser.parse_args(argv)
    return args.func(args)
