"""The one figure convention of xr0lab's plots.

Every plotting function:
- takes `ax=None` where it draws a single panel: it draws into `ax` when given, else into a new
  figure (multi-panel functions make their own figure);
- returns the matplotlib Figure, already closed in pyplot, so a notebook shows it once (as the
  cell's value) and scripts leak no open figures;
- never writes files. Saving is the caller's one call: `save_figure(fig, path)`.

matplotlib is imported inside the functions, so importing a plotting module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None,
               **kwargs: Any):
    """(figure, axes array of shape (nrows, ncols)): a new figure that pyplot does not keep."""
    import matplotlib.pyplot as plt

    size = size or (4.2 * ncols, 3.2 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, **kwargs)
    plt.close(fig)  # returned to the caller; pyplot keeps no reference
    return fig, axes


def figure_axes(ax, size: tuple[float, float]):
    """(figure, axes): the figure `ax` belongs to, or a new single-panel figure of `size`."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = new_figure(size=size)
    return fig, axes[0][0]


def save_figure(fig, path: str | Path, *, dpi: int = 90, tight: bool = True):
    """Save `fig` (creating the folder) and return it, so a notebook cell can show what it saved.

    `tight=True` crops to the drawn content (bbox_inches="tight").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    return fig
