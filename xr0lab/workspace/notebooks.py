"""Run the project's notebooks headless (nbclient), as the CLI and the test suite do.

A headless run has no frontend, so its kernel starts with XR0LAB_HEADLESS=1 and the explorers
draw their static figure instead of creating widgets (`xr0lab.workspace.frontend`). Every cell has
a time limit: CELL_TIMEOUT_S, or TRAIN_CELL_TIMEOUT_S when XR0LAB_TRAIN=1 asks notebooks 05 and 06
to retrain. A cell that overruns it, raises, or takes its kernel down fails the run with a
`NotebookRunError` naming the notebook, the cell's index and its first line. A kernel that dies
gets one retry with a fresh kernel, announced on stderr. The kernel talks to the runner over IPC
sockets in a private temporary directory, never an open TCP port (so it has nothing to warn
about). Quick runs never write into notebooks/: `save` puts their executed copy in runs/quick/.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from xr0lab.workspace.frontend import HEADLESS_ENV
from xr0lab.workspace.paths import quick_dir, quick_mode, repo_root, train_mode

NOTEBOOKS = {
    "walkthrough": "01_inference_walkthrough.ipynb",
    "masks": "02_masks_and_kv_conditioning.ipynb",
    "flow": "03_flow_matching_trajectories.ipynb",
    "async": "04_asynchronous_execution.ipynb",
    "lambda": "05_lambda_mask_ablation.ipynb",
    "prefix": "06_prefix_ablation.ipynb",
    "latency": "07_latency_profiling_rtx4090.ipynb",
}

# The slowest cell in quick mode, notebook 05's CI sweep, took 2.5 minutes on 2 cores at load 5
# (under a minute on idle cores); a cell still running after 5 minutes is stuck, and failing then
# costs 5 minutes, not half an hour.
CELL_TIMEOUT_S = 300
# With XR0LAB_TRAIN=1 one cell of notebooks 05/06 trains the one-seed 'quick' sweep (about
# 10 minutes on 2 cores).
TRAIN_CELL_TIMEOUT_S = 3600


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookRunError(RuntimeError):
    """A headless run failed; the message names the notebook, the cell and what happened."""


@dataclass
class NotebookRun:
    """What `run_notebook` did: the executed notebook, how long it took, where it was saved."""

    notebook: Any                   # nbformat.NotebookNode, outputs included
    seconds: float
    saved_to: Path | None
    slowest_cell: int | None        # index of the slowest code cell and its wall time
    slowest_seconds: float
    attempts: int                   # 2 when the kernel died once and the run started over


def notebook_path(name: str | Path) -> Path:
    """A notebook by short name (see NOTEBOOKS), by file name in notebooks/, or by path."""
    if isinstance(name, Path) or os.sep in str(name):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}")
        return path
    file = NOTEBOOKS.get(str(name), str(name))
    path = repo_root() / "notebooks" / file
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {str(name)!r} at {path}; known: "
                                f"{', '.join(NOTEBOOKS)}")
    return path


def saved_path(path: Path, quick: bool) -> Path:
    """Where `run_notebook(save=True)` writes: back in place for a full run, runs/quick/notebooks/
    for a quick one (a quick run's outputs are not the committed ones)."""
    return quick_dir() / "notebooks" / path.name if quick else path


def _cell_name(nb, index: int | None) -> str:
    if index is None:
        return "before the first cell"
    lines = [line for line in nb.cells[index].source.splitlines() if line.strip()]
    first = lines[0].strip() if lines else ""
    return f"cell {index} ({first[:70]!r})"


@contextmanager
def _kernel_sockets() -> Iterator[Any]:
    """Traitlets config for the kernel manager: IPC sockets in a private temporary directory
    (short enough for the socket path limit). Windows has no IPC transport: TCP there."""
    from traitlets.config import Config

    if os.name == "nt":
        yield Config()
        return
    with tempfile.TemporaryDirectory(prefix="xr0lab-kernel-") as sockets:
        yield Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "k")}})


class _KernelDied(Exception):
    pass


def _execute(nb, path: Path, limit: int, env: dict[str, str]) -> dict[int, float]:
    """Run every cell of `nb` in place; returns {code cell index: seconds}."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    current: dict[str, Any] = {"index": None, "start": 0.0}
    seconds: dict[int, float] = {}

    def on_start(cell, cell_index):
        current.update(index=cell_index, start=time.perf_counter())

    def on_executed(cell, cell_index, execute_reply):
        seconds[cell_index] = time.perf_counter() - current["start"]

    with _kernel_sockets() as config:
        client = NotebookClient(nb, timeout=limit, kernel_name="python3", config=config,
                                resources={"metadata": {"path": str(path.parent)}},
                                on_cell_start=on_start, on_cell_executed=on_executed)
        try:
            client.execute(env=env)
        except CellTimeoutError as e:
            raise NotebookRunError(
                f"{path.name}: {_cell_name(nb, current['index'])} was still running after "
                f"{limit} s, the per-cell limit (run_notebook(timeout=...), or "
                f"`xr0lab notebook --cell-timeout`, raises it)") from e
        except DeadKernelError as e:
            raise _KernelDied(_cell_name(nb, current["index"])) from e
        except CellExecutionError as e:
            # The kernel colours its traceback for a terminal; a log or a test keeps plain text.
            trace = _ANSI.sub("", str(e.traceback)).strip()
            raise NotebookRunError(f"{path.name}: {_cell_name(nb, current['index'])} raised "
                                   f"{e.ename}: {e.evalue}\n{trace}") from e
    return seconds


def run_notebook(name: str | Path, *, timeout: int | None = None, save: bool = True,
                 quick: bool | None = None, retry_dead_kernel: bool = True) -> NotebookRun:
    """Execute a notebook top to bottom in its own folder, headless.

    timeout: seconds per cell (default CELL_TIMEOUT_S, TRAIN_CELL_TIMEOUT_S with XR0LAB_TRAIN=1).
    quick: True/False sets XR0LAB_QUICK for the kernel (default: this process's quick mode, e.g.
    CI=true). save=True writes the executed notebook (outputs included) to `saved_path`.
    """
    import nbformat

    path = notebook_path(name)
    quick = quick_mode() if quick is None else quick
    limit = timeout or (TRAIN_CELL_TIMEOUT_S if train_mode() else CELL_TIMEOUT_S)
    env = {**os.environ, HEADLESS_ENV: "1", "XR0LAB_QUICK": "1" if quick else "0"}
    with tempfile.TemporaryDirectory(prefix="xr0lab-scratch-") as scratch:
        env.setdefault("XR0LAB_SCRATCH", scratch)   # throwaway sweeps; kept if the caller set one
        for attempt in (1, 2):
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            try:
                cell_seconds = _execute(nb, path, limit, env)
                break
            except _KernelDied as died:
                if attempt == 2 or not retry_dead_kernel:
                    raise NotebookRunError(f"{path.name}: the kernel died in {died}"
                                           + (", again after a retry" if attempt == 2 else "")
                                           ) from died.__cause__
                print(f"xr0lab: {path.name}: the kernel died in {died}; retrying once with a "
                      "fresh kernel", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    saved = None
    if save:
        saved = saved_path(path, quick)
        saved.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, saved)
    slowest = max(cell_seconds, key=cell_seconds.get) if cell_seconds else None
    return NotebookRun(nb, seconds, saved, slowest,
                       cell_seconds[slowest] if slowest is not None else 0.0, attempt)
