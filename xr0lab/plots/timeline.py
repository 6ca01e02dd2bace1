"""Plots of an executor run: the timeline of chunks and ticks, the executed actions against each
chunk's plan, and agent paths in the pursuit scene.

Each function draws into `ax` when given, else into a new figure, and returns the Figure
(`xr0lab.plots.figure`). matplotlib is imported inside the functions: importing xr0lab stays cheap
and headless machines never touch a display backend unless they plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from xr0lab.plots.figure import figure_axes

if TYPE_CHECKING:  # xr0lab.runtime re-exports these plots: a real import would be circular
    from xr0lab.runtime.scheduler import Timeline

KIND_COLORS = {
    "fresh": "#3b75af", "prefix": "#8fb9e0", "committed": "#ef8636", "bridge": "#b5a0d0",
    "extend": "#c53a32", "hold": "#c7c7c7", "fallback_hold": "#e8a3a0", "starved": "#222222",
}


def _first(x: np.ndarray) -> np.ndarray:
    """(..., T, A) -> (T, A): the first batch element, which is what a timeline plot shows."""
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    return x.reshape(-1, *x.shape[-2:])[0]


def plot_timeline(timeline: Timeline, ax: Any = None, title: str | None = None,
                  show_index: bool | None = None) -> Any:
    """Rows = chunks, columns = ticks. Each executed tick is a cell coloured by its kind
    (held ticks sit on the row of the chunk being waited for); a thin bar shows each chunk's
    planned span, a line from trigger (triangle) to arrival shows it computing."""
    from matplotlib.patches import Patch, Rectangle

    fig, ax = figure_axes(ax, (10, 0.35 * max(len(timeline.chunks), 3) + 1.2))
    H = timeline.config.chunk_length
    n_ticks = len(timeline.ticks)
    show_index = n_ticks <= 48 if show_index is None else show_index
    for c in timeline.chunks:
        ax.add_patch(Rectangle((c.anchor_tick - 0.5, c.id - 0.42), H, 0.84, fill=False,
                               ec="#999999", lw=0.6, ls=":"))
        ax.plot([c.trigger_tick - 0.5, c.arrival_tick - 0.5], [c.id - 0.3] * 2, color="black",
                lw=1.0)
        ax.plot(c.trigger_tick - 0.5, c.id - 0.3, marker=">", color="black", ms=4)
    used = set()
    for r in timeline.ticks:
        row = r.chunk if r.chunk is not None else r.computing
        if row is None:
            continue
        used.add(r.kind)
        ax.add_patch(Rectangle((r.tick - 0.5, row - 0.25), 1, 0.5, color=KIND_COLORS[r.kind],
                               lw=0))
        if show_index and r.index is not None:
            ax.text(r.tick, row, str(r.index), ha="center", va="center", fontsize=6,
                    color="white" if r.kind in ("fresh", "extend", "committed") else "black")
    ax.set_xlim(-0.5, n_ticks - 0.5)
    ax.set_ylim(len(timeline.chunks) - 0.5, -0.5)
    ax.set_xlabel("tick")
    ax.set_ylabel("chunk")
    cfg = timeline.config
    ax.set_title(title or f"{cfg.strategy}: H={H}, s={cfg.execution_horizon}, d={cfg.delay}, "
                          f"p={cfg.prefix_length}", fontsize=10)
    ax.legend(handles=[Patch(color=KIND_COLORS[k], label=k) for k in KIND_COLORS if k in used],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return fig


def plot_actions(timeline: Timeline, dim: int = 0, ax: Any = None,
                 title: str | None = None) -> Any:
    """Executed action dim `dim` over ticks (first batch element), each chunk's plan drawn
    faintly over its span, seams marked by ticks on the x axis."""
    fig, ax = figure_axes(ax, (10, 2.6))
    for c in timeline.chunks:
        plan = _first(c.values)[:, dim]
        ax.plot(np.arange(c.anchor_tick, c.anchor_tick + len(plan)), plan, color="#999999",
                lw=0.6, alpha=0.6)
    actions = _first(timeline.actions)[:, dim]
    ax.plot(np.arange(len(actions)), actions, color="#3b75af", lw=1.4, label="executed")
    seams = np.flatnonzero(timeline.seams())
    ax.plot(seams, actions[seams], "|", color="#c53a32", ms=10, label="seam")
    ax.set_xlim(-0.5, len(actions) - 0.5)
    ax.set_xlabel("tick")
    ax.set_ylabel(f"action[{dim}]")
    ax.set_title(title or f"{timeline.config.strategy}: executed action vs chunk plans", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    return fig


def plot_paths(runs: dict[str, Any], scene: Any, ax: Any = None) -> Any:
    """2-D agent paths of several `SceneRun`s in one `PursuitScene`, with both targets."""
    fig, ax = figure_axes(ax, (4.5, 4.5))
    for name, run in runs.items():
        ax.plot(*run.positions.T, lw=1.3, label=name)
    ax.plot(*scene.start, "ko", ms=5)
    ax.plot(*scene.target, "x", color="#999999", ms=9, mew=2, label="target (before jump)")
    ax.plot(*scene.jumped_target, "x", color="#c53a32", ms=9, mew=2,
            label=f"target (from tick {scene.jump_tick})")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, frameon=False)
    return fig
