"""Figures of the training objective's randomness: flow times against the sampler's density, the
prefix schedule's draws against its probabilities, and the L1 reweighting weights of one training
batch (from `xr0lab.inspect.objective`).

Axes: B batch, T chunk length, p prefix length, A action dims.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from xr0lab.plots.figure import figure_axes, new_figure
from xr0lab.plots.segments import segment_colour


def plot_time_sampling(draws: Any, *, alpha: float, beta: float, scale: float = 1.0, ax=None,
                       bins: int = 40, title: str | None = None):
    """Histogram of flow-time draws (density) with the sampler's density t = scale (1 - u),
    u ~ Beta(alpha, beta) over it; t = 0 is noise, t = 1 data."""
    from xr0lab.inspect.objective import time_density

    t = np.asarray(torch.as_tensor(draws).float().cpu())
    fig, ax = figure_axes(ax, (4.2, 3))
    ax.hist(t, bins=bins, range=(0, 1), density=True, color="#9ecae1", edgecolor="white",
            label=f"{len(t):,} draws")
    grid = np.linspace(0, 1, 401)
    ax.plot(grid, time_density(grid, alpha=alpha, beta=beta, scale=scale), color="black",
            lw=1.3, label=f"{scale:g}·(1 − Beta({alpha:g}, {beta:g}))")
    ax.set_xlabel("flow time t (0 noise, 1 data)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or "training times: noisy t favoured", fontsize=10)
    return fig


def plot_prefix_schedule(draws: Any, probabilities: Mapping[int, float], *, ax=None,
                         title: str | None = None):
    """Share of training steps with each prefix length p (bars) against the schedule's exact
    probabilities (dots); p = 0 steps train without a prefix."""
    d = np.asarray(draws, int)
    ks = sorted(set(probabilities) | set(d.tolist()))
    share = [float((d == k).mean()) for k in ks]
    fig, ax = figure_axes(ax, (4.2, 3))
    ax.bar(ks, share, color=[segment_colour("prefix") if k else "#bbbbbb" for k in ks],
           label=f"{len(d):,} draws")
    ax.plot(list(probabilities), list(probabilities.values()), "o", color="black", ms=4,
            label="schedule")
    ax.set_xticks(ks)
    ax.set_xlabel("prefix length p of a training step")
    ax.set_ylabel("share of steps")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or "prefix schedule", fontsize=10)
    return fig


def plot_reweighting(weights: Any, *, prefix_length: int, dims: Sequence[int] = (0, 1),
                     clamp: tuple[float, float] | None = None, ax=None,
                     title: str | None = None):
    """L1 reweighting weights (B, T - p, A) of one batch on the action dims `dims`: each
    sample's weight per chunk index (thin lines, mean over `dims`), their mean (thick), and the
    clamp range. Index k of the chunk is row k - p of `weights`."""
    w = np.asarray(torch.as_tensor(weights).float().cpu())[..., list(dims)].mean(-1)  # (B, T-p)
    k = np.arange(prefix_length, prefix_length + w.shape[1])
    fig, ax = figure_axes(ax, (4.6, 3))
    for row in w:
        ax.plot(k, row, color=segment_colour("noisy"), alpha=0.18, lw=0.8)
    ax.plot(k, w.mean(0), color="black", lw=1.8, label=f"mean of {len(w)} samples")
    if clamp is not None:
        for c in clamp:
            ax.axhline(c, color="grey", ls=":", lw=0.9)
        ax.text(k[-1], clamp[1], " clamp", va="bottom", ha="right", fontsize=7, color="grey")
    ax.axvspan(-0.5, prefix_length - 0.5, color=segment_colour("prefix"), alpha=0.2, lw=0,
               label=f"prefix (p = {prefix_length}, no loss)")
    ax.set_xlim(-0.5, k[-1] + 0.5)
    ax.set_xlabel("chunk index k")
    ax.set_ylabel("L1 weight")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title or "L1 reweighting: where a generation misses the label", fontsize=10)
    return fig


def plot_training_objective(*, times: Any, config: Any, prefix_draws: Any,
                            weights: Any = None, prefix_length: int = 0,
                            dims: Sequence[int] = (0, 1)):
    """The three panels side by side: time sampling, prefix schedule and (when `weights` is
    given) the L1 reweighting weights of one batch, for `config` (an XR0Config)."""
    from xr0lab.inspect.objective import prefix_probabilities

    n = 3 if weights is not None else 2
    fig, axes = new_figure(1, n, size=(4.6 * n, 3.3))
    f = config.flow
    plot_time_sampling(times, alpha=f.beta_alpha, beta=f.beta_beta, scale=f.time_scale,
                       ax=axes[0][0])
    plot_prefix_schedule(prefix_draws, prefix_probabilities(config), ax=axes[0][1])
    if weights is not None:
        plot_reweighting(weights, prefix_length=prefix_length, dims=dims,
                         clamp=config.train.weight_clamp, ax=axes[0][2])
    fig.tight_layout()
    return fig
