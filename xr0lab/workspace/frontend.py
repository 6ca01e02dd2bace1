"""Whether a Jupyter frontend is there to show widgets, and progress bars that suit where they run.

A kernel cannot see whether a frontend is attached, so the headless runner says so: it starts its
kernels with XR0LAB_HEADLESS=1, and then nothing here creates a widget. Widget cells executed
under nbclient can hang with kernel and client both idle (jupyter/nbclient#312,
jupyter/nbconvert#2029); with no widget created there is nothing to hang on.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

HEADLESS_ENV = "XR0LAB_HEADLESS"


def headless() -> bool:
    """True when XR0LAB_HEADLESS is set (1/true/yes): no frontend will ever render a widget."""
    return os.environ.get(HEADLESS_ENV, "").strip().lower() in ("1", "true", "yes")


def has_frontend() -> bool:
    """True inside a Jupyter kernel that was not started headless: the only place widget comms
    can reach a frontend. False in scripts, tests and the headless runner's kernels."""
    if headless():
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar: the notebook widget under a frontend, the terminal bar when stderr is a
    terminal, and none at all when output goes to a log or a pipe (a terminal bar redraws with
    carriage returns and escape codes, which a log keeps as garbage)."""
    if enabled and has_frontend():
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, **kwargs)
    from tqdm.std import tqdm

    # disable=None: tqdm turns itself off when its stream (stderr) is not a terminal.
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
