"""Where outputs go, how notebooks run headless, threads, and the README's package map.

paths.py      figures/ and data/ of the checkout (or XR0LAB_FIGURES / XR0LAB_DATA), quick mode
              (runs/quick/), train mode, scratch directories
threads.py    `set_threads`: the one way to set the thread count
notebooks.py  run a notebook headless (nbclient), as the CLI and the tests do
frontend.py   whether a frontend can show widgets (not in headless kernels); progress bars
layout.py     the README's package map, generated from the module docstrings
"""

from xr0lab.workspace.paths import data_dir, figures_dir, quick_mode, repo_root
from xr0lab.workspace.threads import set_threads

__all__ = ["data_dir", "figures_dir", "quick_mode", "repo_root", "set_threads"]
