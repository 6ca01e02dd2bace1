"""Plots for masks, attention, flow trajectories, action chunks and intervention sweeps.

Every function returns a matplotlib Figure that is already closed in pyplot (so notebooks show it
once, as the cell's value, and scripts leak no open figures). matplotlib and seaborn are imported
inside the functions: `import xr0lab.plots.viz` costs nothing.

Axes: N flow steps, B batch, S = 2 + T DiT tokens, L prompt length, T chunk length, A action dims.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from xr0lab.inspect.analysis import AttentionMass
from xr0lab.flow import FlowTrace
from xr0lab.model.masks import TokenLayout


def _figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None,
            **kwargs: Any):
    import matplotlib.pyplot as plt

    size = size or (4.2 * ncols, 3.2 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, **kwargs)
    plt.close(fig)  # returned to the caller; pyplot keeps no reference
    return fig, axes


def _axes(ax, size: tuple[float, float]):
    """(figure, axes): a new single-panel figure, or the figure `ax` belongs to."""
    if ax is not None:
        return ax.figure, ax
    fig, axes = _figure(size=size)
    return fig, axes[0][0]


def save_figure(fig, path: str | Path, *, dpi: int = 90):
    """Save `fig` (creating the folder) and return it, so a notebook cell can show what it saved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def _sample(x: torch.Tensor, ndim: int, sample: int) -> torch.Tensor:
    x = x.detach().float().cpu()
    return x[sample] if x.dim() == ndim + 1 else x


def _column_edges(layout: TokenLayout) -> torch.Tensor:
    """x edges of the key columns: the L prompt columns are squeezed into the width of the S DiT
    columns, so the narrow sink/state/prefix segments stay readable next to a long prompt."""
    L, S = layout.prompt_length, layout.num_dit_tokens
    vlm = torch.linspace(0, S if L else 0, L + 1)
    return torch.cat([vlm, vlm[-1] + torch.arange(1, S + 1)])


def _draw_keys_by_queries(ax, data: torch.Tensor, layout: TokenLayout, **kwargs: Any):
    """pcolormesh of a (S, L + S) array on compressed key columns, with both axes' segments
    marked and named. Returns the mesh (for a colorbar)."""
    x = _column_edges(layout)
    y = torch.arange(layout.num_dit_tokens + 1).float()
    mesh = ax.pcolormesh(x.numpy(), y.numpy(), data.numpy(), shading="flat", **kwargs)
    ax.set_ylim(float(y[-1]), 0.0)  # row 0 (sink) at the top, as in a matrix
    edges = [float(v) for v in x]
    _label_segments(ax, "x", {n: (edges[s.start], edges[s.stop])
                              for n, s in layout.segments().items() if s.stop > s.start})
    _label_segments(ax, "y", {n: (float(s.start), float(s.stop))
                              for n, s in layout.query_segments().items() if s.stop > s.start})
    ax.set_xlabel(f"keys (the {layout.prompt_length} prompt columns drawn compressed)", fontsize=8)
    ax.set_ylabel("DiT queries", fontsize=8)
    return mesh


def _label_segments(ax, axis: str, spans: Mapping[str, tuple[float, float]]) -> None:
    """Boundary lines and centred names; a name too close to the previous one goes to the opposite
    side (top/right), so one-token segments (sink, state) stay legible."""
    line = ax.axvline if axis == "x" else ax.axhline
    near: dict[str, list] = {"main": [[], []], "other": [[], []]}
    for name, (lo, hi) in spans.items():
        line(lo, color="tab:red", lw=0.8)
        centre = (lo + hi) / 2
        crowded = bool(near["main"][0]) and centre - near["main"][0][-1] < 2.5
        side = "other" if crowded else "main"
        near[side][0].append(centre)
        near[side][1].append(name)
    if axis == "x":
        ax.set_xticks(near["main"][0], near["main"][1], rotation=60, ha="right", fontsize=8)
        if near["other"][0]:
            top = ax.secondary_xaxis("top")
            top.set_xticks(near["other"][0], near["other"][1], rotation=60, ha="left", fontsize=8)
    else:
        ax.set_yticks(near["main"][0], near["main"][1], fontsize=8)
        if near["other"][0]:
            ax.secondary_yaxis("right").set_yticks(near["other"][0], near["other"][1], fontsize=8)


def plot_dit_mask(mask: torch.Tensor, layout: TokenLayout, *, sample: int = 0, ax=None,
                  title: str | None = None):
    """The DiT attention mask (S, L + S) (or (B, S, L + S), one sample drawn) with the segments
    [vlm | sink | state | prefix | noisy] marked on both axes. White = may attend."""
    m = _sample(mask, 2, sample)
    if tuple(m.shape) != (layout.num_dit_tokens, layout.num_keys):
        raise ValueError(f"mask shape {tuple(m.shape)} does not match the layout "
                         f"({layout.num_dit_tokens}, {layout.num_keys})")
    fig, ax = _axes(ax, (5, 4.5))
    _draw_keys_by_queries(ax, m.float(), layout, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title or "DiT attention mask (white = may attend)", fontsize=10, pad=22)
    return fig


def plot_masks(masks: Mapping[str, tuple[torch.Tensor, TokenLayout]], *, sample: int = 0):
    """Several masks side by side: {title: (mask, layout)}."""
    fig, axes = _figure(1, len(masks), size=(5 * len(masks), 4.5))
    for ax, (title, (mask, layout)) in zip(axes[0], masks.items()):
        plot_dit_mask(mask, layout, sample=sample, ax=ax, title=title)
    fig.tight_layout()
    return fig


def plot_attention_pattern(pattern: torch.Tensor, layout: TokenLayout, *, sample: int = 0,
                           ax=None, title: str | None = None, log: bool = True):
    """One attention pattern (S, L + S) (or (B, S, L + S)) with segment guides; log colour scale
    by default, so the small masses on the prompt stay visible."""
    from matplotlib.colors import LogNorm

    p = _sample(pattern, 2, sample)
    fig, ax = _axes(ax, (5.5, 4.5))
    norm = LogNorm(vmin=1e-4, vmax=1) if log else None
    mesh = _draw_keys_by_queries(ax, p.clamp_min(1e-6) if log else p, layout, cmap="magma",
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
        fig, axes = _figure(1, len(rows), size=(5.5 * len(rows), 3.6))
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
    fig, ax = _axes(ax, (6, 0.45 * len(labels) + 1.6))
    sns.heatmap(table, ax=ax, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1,
                xticklabels=list(mass.segments), yticklabels=labels, cbar=False,
                annot_kws={"fontsize": 8})
    ax.tick_params(axis="y", rotation=0)
    others = [a + "s" for a in ("step", "layer", "head")
              if a != rows and not (a == "step" and step is not None)]
    where = f"mean over {', '.join(others)}, samples" + ("" if step is None else f"; step {step}")
    ax.set_title(title or f"attention mass of {mass.queries} queries\n({where})", fontsize=10)
    return fig


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
    fig, axes = _figure(1, len(dims), size=(3.4 * len(dims), 2.8), sharey=False)
    for ax, d in zip(axes[0], dims):
        for k in range(series.shape[0]):
            ax.plot(series[k, :, d].numpy(), color=cmap(float(ts[k])), lw=1.2,
                    label=f"t={float(ts[k]):.2f}")
        if final is not None:
            ax.plot(_sample(final, 2, sample)[:, d].numpy(), color="black", lw=1.6, ls="--",
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
    fig, axes = _figure(1, len(dims), size=(3.2 * len(dims), 2.8))
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


def plot_action_chunks(chunks: Mapping[str, torch.Tensor], *, sample: int = 0,
                       dims: Sequence[int] = (0, 1, 2, 3)):
    """Action chunks {label: (T, A) or (B, T, A)} overlaid, one panel per action dim."""
    fig, axes = _figure(1, len(dims), size=(3.2 * len(dims), 2.8))
    for label, chunk in chunks.items():
        c = _sample(chunk, 2, sample)
        for ax, d in zip(axes[0], dims):
            ax.plot(c[:, d].numpy(), label=label, lw=1.2)
    for ax, d in zip(axes[0], dims):
        ax.set_title(f"dim {d}", fontsize=9)
        ax.set_xlabel("chunk index")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_kv_effects(records: Sequence[Mapping[str, Any]], *, value: str = "l2",
                    title: str | None = None):
    """Grouped bars of the action change per VLM layer (and "all") for each intervention kind,
    from `analysis.kv_layer_sweep` records."""
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    layers = list(dict.fromkeys(r["vlm_layer"] for r in records))
    fig, axes = _figure(size=(1.0 * len(layers) * len(kinds) / 2 + 3, 3))
    ax = axes[0][0]
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        vals = {r["vlm_layer"]: r[value] for r in records if r["kind"] == kind}
        ax.bar([i + (k - (len(kinds) - 1) / 2) * width for i in range(len(layers))],
               [vals.get(j, 0.0) for j in layers], width=width, label=kind)
    ax.set_xticks(range(len(layers)), [str(j) for j in layers])
    ax.set_xlabel("VLM layer whose K/V is changed")
    ax.set_ylabel(f"action change ({value})")
    ax.legend(fontsize=8)
    ax.set_title(title or "effect of K/V interventions on the chunk (same noise)", fontsize=10)
    return fig


def plot_step_sweep(records: Sequence[Mapping[str, Any]], *,
                    x: str | Sequence[str] = ("steps", "evaluations"), ax=None,
                    title: str | None = None):
    """Distance to the reference chunk against `x` ("steps" and/or "evaluations", one panel each)
    per integrator, from `analysis.step_sweep` records (log y)."""
    if not isinstance(x, str):
        fig, axes = _figure(1, len(x), size=(4.8 * len(x), 3.3))
        for a, xx in zip(axes[0], x):
            plot_step_sweep(records, x=xx, ax=a, title=title)
        fig.tight_layout()
        return fig
    fig, ax = _axes(ax, (5, 3.2))
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        ax.plot([r[x] for r in rs], [r["l2"] for r in rs], "o-", ms=3, label=method)
    ax.set_yscale("log")
    ax.set_xlabel("flow steps" if x == "steps" else "network evaluations")
    ax.set_ylabel("L2 to reference chunk")
    ax.legend(fontsize=8)
    ax.set_title(title or "sampler error vs. a fine reference", fontsize=10)
    return fig


def plot_convergence(distances: torch.Tensor, *, title: str | None = None):
    """(N, B) distance of the step-wise clean estimate to the final chunk, one line per sample."""
    d = distances.detach().float().cpu()
    fig, axes = _figure(size=(4.5, 3))
    ax = axes[0][0]
    for b in range(d.shape[1]):
        ax.plot(range(d.shape[0]), d[:, b].numpy(), "o-", ms=3, label=f"sample {b}")
    ax.set_xlabel("flow step k")
    ax.set_ylabel("|clean estimate - final|")
    ax.legend(fontsize=8)
    ax.set_title(title or "clean estimate converges to the chunk", fontsize=10)
    return fig
