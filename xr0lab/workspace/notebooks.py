"""Run the project's notebooks headless (nbclient), as the CLI and the test suite do."""

from __future__ import annotations

import os
import time
from pathlib import Path

from xr0lab.workspace.paths import repo_root

NOTEBOOKS = {
    "walkthrough": "01_inference_walkthrough.ipynb",
    "masks": "02_masks_and_kv_conditioning.ipynb",
    "flow": "03_flow_matching_trajectories.ipynb",
    "async": "04_asynchronous_execution.ipynb",
    "lambda": "05_lambda_mask_ablation.ipynb",
    "prefix": "06_prefix_ablation.ipynb",
    "latency": "07_latency_profiling_rtx4090.ipynb",
}


def notebook_path(name: str) -> Path:
    """A notebook by short name (see NOTEBOOKS) or file name."""
    file = NOTEBOOKS.get(name, name)
    path = repo_root() / "notebooks" / file
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {name!r} at {path}; known: {', '.join(NOTEBOOKS)}")
    return path


def run_notebook(name: str, *, timeout: int = 1200, save: bool = True, quick: bool | None = None):
    """Execute a notebook top to bottom in its own folder; returns (notebook, seconds).

    save=True writes the executed notebook back (outputs included). quick=True sets
    XR0LAB_QUICK=1 for the kernel so notebooks shrink their workloads (CI does this via CI=true).
    """
    import nbformat
    from nbclient import NotebookClient

    path = notebook_path(name)
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("XR0LAB_QUICK")
    if quick is not None:
        os.environ["XR0LAB_QUICK"] = "1" if quick else "0"
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        if quick is not None:
            if env_before is None:
                os.environ.pop("XR0LAB_QUICK", None)
            else:
                os.environ["XR0LAB_QUICK"] = env_before
    if save:
        nbformat.write(nb, path)
    return nb, seconds
