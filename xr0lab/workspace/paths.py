"""Where notebooks and scripts write: figures/ and data/ of the checkout (or env overrides)."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout holding this package (its parent has notebooks/), else the working dir."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "notebooks").is_dir() else Path.cwd()


def figures_dir() -> Path:
    path = Path(os.environ.get("XR0LAB_FIGURES", repo_root() / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    path = Path(os.environ.get("XR0LAB_DATA", repo_root() / "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def quick_mode() -> bool:
    """True in CI (CI=true) or when XR0LAB_QUICK=1: notebooks shrink their workloads."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("CI", "XR0LAB_QUICK"))
