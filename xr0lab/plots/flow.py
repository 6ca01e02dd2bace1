"""The sampler's view of a chunk: flow trajectories and chunks over flow steps (`FlowTrace`),
the clean estimate's convergence, step/integrator sweeps, and action chunks overlaid.

Axes: N flow steps, B batch, T chunk length, A action dims.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from xr0lab.flow import FlowTrace
from xr0lab.plots.batch import one_sample
from xr0lab.plots.figure import figure_axes, new_figure


def plot_chunk_evolution(trace: FlowTrace, *, which: str = "x_t", sample: int = 0,
                         dims: Sequence[int] = (0, 1, 2, 3), final: torch.Tensor | None = None):
    """The chunk (T positions) per action dim at every flow step, coloured by t: `which` is
    "x_t" (the state) or "clean_estimate" (the one-step estimate of the data). `final` (B, T, A)
    is drawn in black."""
    import matplotlib as mpl

    if which not in ("x_t", "clean_estimate"):
        raise ValueError(f"which must be 'x_t' or 'clean_estimate', got {which!r}")
    series = getattr(trace, which).detach().float().cpu()[:, sample]  # (N, T, A)
    ts = trace.t.detach().float().cpu()
    cmap = mpl.colormaps["viridis"]
    fig, axes = new_figure(1, len(dims), size=(3.4 * len(dims), 2.8), sharey=False)
    for ax, d in zip(axes[0], dims):
        for k in range(series.shape[0]):
            ax.plot(series[k, :, d].numpy(), color=cmap(float(ts[k])), lw=1.2,
                    label=f"t={float(ts[k]):.2f}")
        if final is not None:
            ax.plot(one_sample(final, 2, sample)[:, d].numpy(), color="black", lw=1.6, ls="--",
                    label="final")
        ax.set_title(f"dim {d}", fontsize=9)
        ax.set_xlabel("chunk index")
    axes[0][0].set_ylabel(which)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{which} over flow steps (colour = t)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_flow_trajectories(trace: FlowTrace, *, sample: int = 0, token: int = 0,
                           dims: Sequence[int] = (0, 1, 2, 3)):
    """x_t against flow time for one chunk position, per action dim, with the step-wise clean
    estimate (where the current velocity would land at t = 1) and the final value."""
    t = torch.cat([trace.t.detach().float().cpu(), torch.ones(1)])
    x = trace.x_t.detach().float().cpu()[:, sample, token]  # (N, A)
    x_end = trace.x_next.detach().float().cpu()[-1, sample, token]  # (A,)
    est = trace.clean_estimate.detach().float().cpu()[:, sample, token]
    path = torch.cat([x, x_end[None]])  # (N + 1, A)
    fig, axes = new_figure(1, len(dims), size=(3.2 * len(dims), 2.8))
    for ax, d in zip(axes[0], dims):
        ax.plot(t.numpy(), path[:, d].numpy(), "o-", color="tab:blue", label="x_t")
        ax.plot(t[:-1].numpy(), est[:, d].numpy(), "x--", color="tab:orange",
                label="clean estimate")
        ax.axhline(float(x_end[d]), color="gray", lw=0.8, ls=":")
        ax.set_title(f"dim {d}", fontsize=9)
        ax.set_xlabel("flow time t")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"flow trajectory of chunk position {token} (t = 0 noise, t = 1 data)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_convergence(distances: torch.Tensor, *, ax=None, title: str | None = None):
    """(N, B) distance of the step-wise clean estimate to the final chunk, one line per sample."""
    d = distances.detach().float().cpu()
    fig, ax = figure_axes(ax, (4.5, 3))
    for b in range(d.shape[1]):
        ax.plot(range(d.shape[0]), d[:, b].numpy(), "o-", ms=3, label=f"sample {b}")
    ax.set_xlabel("flow step k")
    ax.set_ylabel("|clean estimate - final|")
    ax.legend(fontsize=8)
    ax.set_title(title or "clean estimate converges to the chunk", fontsize=10)
    return fig


VALUE_LABELS = {"l2": "L2 to reference chunk", "l2_label": "L2 to the label (expert chunk)"}


def plot_step_sweep(records: Sequence[Mapping[str, Any]], *,
                    x: str | Sequence[str] = ("steps", "evaluations"), value: str = "l2",
                    ax=None, title: str | None = None, log: bool = True):
    """`value` ("l2": distance to the reference chunk; "l2_label": to the label) against `x`
    ("steps" and/or "evaluations", one panel each) per integrator, from
    `xr0lab.inspect.flow_steps.step_sweep` records (log y unless `log=False`)."""
    if not isinstance(x, str):
        fig, axes = new_figure(1, len(x), size=(4.8 * len(x), 3.3))
        for a, xx in zip(axes[0], x):
            plot_step_sweep(records, x=xx, value=value, ax=a, title=title, log=log)
        fig.tight_layout()
        return fig
    fig, ax = figure_axes(ax, (5, 3.2))
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        ax.plot([r[x] for r in rs], [r[value] for r in rs], "o-", ms=3, label=method)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("flow steps" if x == "steps" else "network evaluations")
    ax.set_ylabel(VALUE_LABELS.get(value, value))
    ax.legend(fontsize=8)
    ax.set_title(title or ("sampler error vs. a fine reference" if value == "l2"
                           else "distance to the label"), fontsize=10)
    return fig


def plot_action_chunks(chunks: Mapping[str, torch.Tensor], *, sample: int = 0,
                       dims: Sequence[int] = (0, 1, 2, 3)):
    """Action chunks {label: (T, A) or (B, T, A)} overlaid, one panel per action dim."""
    fig, axes = new_figure(1, len(dims), size=(3.2 * len(dims), 2.8))
    for label, chunk in chunks.items():
        c = one_sample(chunk, 2, sample)
        for ax, d in zip(axes[0], dims):
            ax.plot(c[:, d].numpy(), label=label, lw=1.2)
    for ax, d in zip(axes[0], dims):
        ax.set_title(f"dim {d}", fontsize=9)
        ax.set_xlabel("chunk index")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig
