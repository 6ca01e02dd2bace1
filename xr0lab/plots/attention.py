"""Where the DiT looks: one attention pattern on the queries-by-keys grid, and heatmaps of the
attention mass per key segment (`xr0lab.inspect.attention.AttentionMass`).

Axes: B batch, S = 2 + T DiT tokens, L prompt length.
"""

from __future__ import annotations

from typing import Sequence

import torch

from xr0lab.inspect.attention import AttentionMass
from xr0lab.model.masks import TokenLayout
from xr0lab.plots.batch import one_sample
from xr0lab.plots.figure import figure_axes, new_figure
from xr0lab.plots.masks import draw_keys_by_queries


def plot_attention_pattern(pattern: torch.Tensor, layout: TokenLayout, *, sample: int = 0,
                           ax=None, title: str | None = None, log: bool = True):
    """One attention pattern (S, L + S) (or (B, S, L + S)) with segment guides; log colour scale
    by default, so the small masses on the prompt stay visible."""
    from matplotlib.colors import LogNorm

    p = one_sample(pattern, 2, sample)
    fig, ax = figure_axes(ax, (5.5, 4.5))
    norm = LogNorm(vmin=1e-4, vmax=1) if log else None
    mesh = draw_keys_by_queries(ax, p.clamp_min(1e-6) if log else p, layout, cmap="magma",
                                 norm=norm)
    fig.colorbar(mesh, ax=ax, fraction=0.04, pad=0.1)
    ax.set_title(title or "DiT attention pattern", fontsize=10, pad=22)
    return fig


def plot_attention_mass(mass: AttentionMass, *, rows: str | Sequence[str] = "layer",
                        step: int | None = None, ax=None, title: str | None = None):
    """Heatmap of attention mass: `rows` ("layer", "step" or "head") x segments, averaged over the
    other axes (or taken at flow `step` when given). Several `rows` give one panel each."""
    import seaborn as sns

    if not isinstance(rows, str):
        fig, axes = new_figure(1, len(rows), size=(5.5 * len(rows), 3.6))
        for a, r in zip(axes[0], rows):
            plot_attention_mass(mass, rows=r, step=step, ax=a)
        fig.tight_layout()
        return fig
    if rows not in ("layer", "step", "head"):
        raise ValueError(f"rows must be 'layer', 'step' or 'head', got {rows!r}")
    # mass.mass[step][None], not a [step:step + 1] slice: a negative step must not come out empty
    m = mass.mass if step is None else mass.mass[step][None]
    keep = {"step": 0, "layer": 1, "head": 3}[rows]
    dims = tuple(d for d in range(4) if d != keep)
    table = m.mean(dim=dims).numpy()  # (rows, G)
    labels = {"layer": [f"layer {i}" for i in mass.layers],
              "step": [f"step {k}" for k in (range(m.shape[0]) if step is None else [step])],
              "head": [f"head {h}" for h in range(m.shape[3])]}[rows]
    fig, ax = figure_axes(ax, (6, 0.45 * len(labels) + 1.6))
    sns.heatmap(table, ax=ax, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1,
                xticklabels=list(mass.segments), yticklabels=labels, cbar=False,
                annot_kws={"fontsize": 8})
    ax.tick_params(axis="y", rotation=0)
    others = [a + "s" for a in ("step", "layer", "head")
              if a != rows and not (a == "step" and step is not None)]
    where = f"mean over {', '.join(others)}, samples" + ("" if step is None else f"; step {step}")
    ax.set_title(title or f"attention mass of {mass.queries} queries\n({where})", fontsize=10)
    return fig
