"""Where notebooks and scripts write: figures/ and data/ of the checkout (or env overrides).

Full runs (the `walkthrough` command, `notebook NAME` without --quick) write the committed
figures/: regenerating them is their job. Quick runs (CI=true or XR0LAB_QUICK=1) write
runs/quick/figures/ instead, which git ignores, so a quick figure never replaces a committed
full-mode one. XR0LAB_FIGURES overrides both (the test suite points it at a temporary directory).
data/ holds the committed results the notebooks read (XR0LAB_DATA reads them elsewhere).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

_TRUE = ("1", "true", "yes")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def repo_root() -> Path:
    """The checkout holding this package (its parent has notebooks/), else the working dir."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "notebooks").is_dir() else Path.cwd()


def quick_mode() -> bool:
    """True in CI (CI=true) or when XR0LAB_QUICK=1: notebooks shrink their workloads.
    XR0LAB_QUICK, when set, decides on its own (XR0LAB_QUICK=0 is a full run even in CI)."""
    if os.environ.get("XR0LAB_QUICK", "").strip():
        return _flag("XR0LAB_QUICK")
    return _flag("CI")


def train_mode() -> bool:
    """True when XR0LAB_TRAIN=1: notebooks 05 and 06 retrain their sweep instead of only reading
    the committed results (minutes of CPU; the notebooks say how long)."""
    return _flag("XR0LAB_TRAIN")


def quick_dir() -> Path:
    """Where quick runs put what they make (runs/quick/ of the checkout, ignored by git)."""
    return repo_root() / "runs" / "quick"


def figures_dir() -> Path:
    """XR0LAB_FIGURES if set; else runs/quick/figures/ in quick mode, figures/ otherwise."""
    if os.environ.get("XR0LAB_FIGURES"):
        path = Path(os.environ["XR0LAB_FIGURES"])
    elif quick_mode():
        path = quick_dir() / "figures"
    else:
        path = repo_root() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """The committed results (data/ of the checkout), or XR0LAB_DATA."""
    path = Path(os.environ.get("XR0LAB_DATA", repo_root() / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir(name: str) -> Path:
    """A directory for throwaway work (CI's tiny sweep): XR0LAB_SCRATCH/<name> when set (the
    headless runner sets it to a temporary directory it removes afterwards; the test suite to
    one per session), else a fresh temporary directory. Never a path in the checkout."""
    base = os.environ.get("XR0LAB_SCRATCH")
    if not base:
        return Path(tempfile.mkdtemp(prefix=f"xr0lab-{name}-"))
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def changed_files(root: Path | str, pathspecs: tuple[str, ...] = ()) -> dict[str, tuple] | None:
    """What `git status` reports under `pathspecs` of the checkout at `root` (untracked files
    included), each path with its status and a hash of its content, so that rewriting an already
    modified file shows too. None when `root` is not a git checkout (or git is missing)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip())   # porcelain paths start here
        out = git("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *pathspecs)
    except (OSError, subprocess.CalledProcessError):
        return None
    state = {}
    entries = iter(out.split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:   # a rename or copy: its source path follows
            next(entries, None)
        file = top / path
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
        state[path] = (status, digest)
    return state
