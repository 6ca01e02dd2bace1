"""`xr0lab` command line: `python -m xr0lab <command> ...`, the one entry point for every command.

    walkthrough   run notebooks/01 headless on the tiny preset, write figures/, print a summary
    notebook NAME run any notebook headless (walkthrough, masks, flow, async, lambda, prefix, latency)
    profile       stage-level latency profile (see `xr0lab profile --help`)
    dynreach      the DynReach benchmark (see `xr0lab dynreach --help`)

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


# --- latency commands -------------------------------------------------------------------------

def _add_latency_commands(sub) -> None:
    sub.add_parser("profile", help="latency profile (own options)", add_help=False)


# --- dynreach commands ------------------------------------------------------------------------

def _add_dynreach_commands(sub) -> None:
    sub.add_parser("dynreach", help="DynReach benchmark (own options)", add_help=False)


# ----------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xr0lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_notebook_commands(sub)
    _add_latency_commands(sub)
    _add_dynreach_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Until their parsers move here, these subcommands get the rest of the line untouched.
    if argv and argv[0] == "profile":
        from xr0lab.latency.profiling import profile_main

        return profile_main(argv[1:]) or 0
    if argv and argv[0] == "dynreach":
        from xr0lab.dynreach.cli import dynreach_main

        return dynreach_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    return args.func(args)
