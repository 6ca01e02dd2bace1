"""Where the DiT looks: one attention pattern on the queries-by-keys grid, heatmaps and stacked
bars of the attention mass per key segment (`xr0lab.inspect.attention.AttentionMass`), and one
segment's mass per action row (`xr0lab.inspect.attention.mass_per_action`). Segments are drawn
in the shared colours of `xr0lab.plots.segments`.

Axes: B batch, S = 2 + T DiT tokens, L prompt length.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from xr0lab.inspect.attention import AttentionMass
from xr0lab.model.masks import TokenLayout
from xr0lab.plots.batch import one_sample
from xr0lab.plots.figure import figure_axes, new_figure
from xr0lab.plots.masks import draw_keys_by_queries
from xr0lab.plots.segments import BOUNDARY_COLOUR, segment_colour, segment_legend


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


def plot_attention_mass_by_step(mass: AttentionMass, *, title: str | None = None):
    """One panel per DiT layer: the mass of each key segment (stacked bars, shared segment
    colours) at every flow step, averaged over samples and heads."""
    table = mass.mean("batch", "head").numpy()  # (N, layers, G)
    n_steps, n_layers, _ = table.shape
    fig, axes = new_figure(1, n_layers, size=(2.6 * n_layers + 1.5, 3.0), sharey=True)
    for li, ax in enumerate(axes[0]):
        bottom = np.zeros(n_steps)
        for g, name in enumerate(mass.segments):
            ax.bar(np.arange(n_steps), table[:, li, g], bottom=bottom, width=0.8,
                   color=segment_colour(name), label=name)
            bottom += table[:, li, g]
        ax.set_xticks(range(n_steps))
        ax.set_xlabel("flow step", fontsize=8)
        ax.set_title(f"DiT layer {mass.layers[li]}", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel(f"attention mass of the {mass.queries} rows")
    fig.suptitle(title or "where the DiT looks, per layer and flow step "
                 "(mean over samples and heads)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    segment_legend(fig, mass.segments, masked=False, loc="center right")
    return fig


def plot_mass_per_action(curves: Mapping[str, Any], *, prefix_length: int,
                         window: int | None = None, segment: str = "prefix", ax=None,
                         title: str | None = None):
    """Mass on key `segment` per action row, one line per label ({label: (T,)}, e.g. from
    `mass_per_action(...).mean(...)` under two masks). The prefix rows are shaded in the
    segment's colour; with `window`, the band edge p + w (beyond which the Λ band hides the
    prefix) is a vertical line."""
    fig, ax = figure_axes(ax, (6, 3.2))
    for label, curve in curves.items():
        c = np.asarray(torch.as_tensor(curve).float().cpu())
        ax.plot(np.arange(len(c)), c, "o-", ms=3, lw=1.3, label=label)
    if prefix_length:
        ax.axvspan(-0.5, prefix_length - 0.5, color=segment_colour("prefix"), alpha=0.2,
                   lw=0, label=f"prefix rows (p = {prefix_length})")
    if window is not None:
        ax.axvline(prefix_length + window - 0.5, color=BOUNDARY_COLOUR, lw=0.9, ls="--",
                   label=f"band edge p + w = {prefix_length + window}")
    ax.set_xlabel("action row (chunk index)")
    ax.set_ylabel(f"attention mass on {segment}")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or f"how much each action row reads from the {segment}", fontsize=10)
    return fig


def plot_mass_per_action_by_layer(per_row: Mapping[str, torch.Tensor], layers: Sequence[int], *,
                                  prefix_length: int, window: int | None = None,
                                  segment: str = "prefix", title: str | None = None):
    """`plot_mass_per_action` for each DiT layer (one panel each) and their mean (first panel):
    per_row is {label: (N, n_layers, B, H, T)} from `mass_per_action`, averaged here over flow
    steps, samples and heads."""
    means = {k: torch.as_tensor(v).float().mean(dim=(0, 2, 3)) for k, v in per_row.items()}
    fig, axes = new_figure(1, len(layers) + 1, size=(3.6 * (len(layers) + 1), 3.2), sharey=True)
    panels = [("mean over layers", {k: v.mean(0) for k, v in means.items()})]
    panels += [(f"DiT layer {layer}", {k: v[i] for k, v in means.items()})
               for i, layer in enumerate(layers)]
    for ax, (name, curves) in zip(axes[0], panels):
        plot_mass_per_action(curves, prefix_length=prefix_length, window=window, segment=segment,
                             ax=ax, title=name)
        if ax is not axes[0][0]:
            ax.set_ylabel("")
            ax.get_legend().remove()
    fig.suptitle(title or f"attention mass on the {segment} per action row (mean over flow "
                 "steps, samples and heads)", fontsize=10)
    fig.tight_layout()
    return fig
