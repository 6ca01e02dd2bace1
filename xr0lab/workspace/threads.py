"""The one way scripts, notebooks and workers set the thread count."""

from __future__ import annotations

import os

import torch


def set_threads(n: int = 1) -> None:
    """Explicit thread count (default 1): oversubscribed OpenMP on a shared 2-core machine is
    many times slower. Call from scripts and notebooks, never at import.

    Also sets OMP_NUM_THREADS, so worker processes started afterwards inherit it.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an int >= 1, got {n!r}")
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
