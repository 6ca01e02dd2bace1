"""DiT attention masks drawn on the queries-by-keys grid, and the grid itself.

The grid has the S DiT queries as rows and the L + S keys as columns, segments
[vlm | sink | state | prefix | noisy] marked and named on both axes; the L prompt columns are
drawn compressed. Attention patterns (`xr0lab.plots.attention`) are drawn on the same grid.
Masks follow the shared segment colours (`xr0lab.plots.segments`): a cell that may attend has
the colour of its key segment, a masked cell is near-white, and every mask figure has a legend.

Axes: B batch, S = 2 + T DiT tokens, L prompt length.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from xr0lab.model.masks import TokenLayout
from xr0lab.plots.batch import one_sample
from xr0lab.plots.figure import figure_axes, new_figure
from xr0lab.plots.segments import (BOUNDARY_COLOUR, column_segments, mask_segment_index,
                                   segment_cmap, segment_legend)


def _column_edges(layout: TokenLayout) -> torch.Tensor:
    """x edges of the key columns: the L prompt columns are squeezed into the width of the S DiT
    columns, so the narrow sink/state/prefix segments stay readable next to a long prompt."""
    L, S = layout.prompt_length, layout.num_dit_tokens
    vlm = torch.linspace(0, S if L else 0, L + 1)
    return torch.cat([vlm, vlm[-1] + torch.arange(1, S + 1)])


def draw_keys_by_queries(ax, data: torch.Tensor, layout: TokenLayout, **kwargs: Any):
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
        line(lo, color=BOUNDARY_COLOUR, lw=0.8)
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
                  title: str | None = None, image_token_mask: torch.Tensor | None = None,
                  legend: bool = True):
    """The DiT attention mask (S, L + S) (or (B, S, L + S), one sample drawn) with the segments
    [vlm | sink | state | prefix | noisy] marked on both axes. A cell that may attend has its key
    segment's colour (`xr0lab.plots.segments`), a masked one is near-white. `image_token_mask`
    ((L,) or (B, L), e.g. `context.image_token_mask`) splits the prompt columns into image and
    text tokens; `legend=False` leaves the legend to the caller (`plot_masks` draws one)."""
    m = one_sample(mask, 2, sample)
    if tuple(m.shape) != (layout.num_dit_tokens, layout.num_keys):
        raise ValueError(f"mask shape {tuple(m.shape)} does not match the layout "
                         f"({layout.num_dit_tokens}, {layout.num_keys})")
    image = None if image_token_mask is None else one_sample(image_token_mask, 1, sample)
    columns = column_segments(layout, image)
    fig, ax = figure_axes(ax, (5, 4.5))
    cmap, norm = segment_cmap()
    index = torch.from_numpy(mask_segment_index(m.bool(), columns)).float()
    draw_keys_by_queries(ax, index, layout, cmap=cmap, norm=norm)
    ax.set_title(title or "DiT attention mask", fontsize=10, pad=22)
    if legend:
        segment_legend(ax, columns, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def plot_masks(masks: Mapping[str, tuple[torch.Tensor, TokenLayout]], *, sample: int = 0,
               image_token_mask: torch.Tensor | None = None):
    """Several masks side by side: {title: (mask, layout)}, with one legend for all of them.
    `image_token_mask` splits the prompt columns as in `plot_dit_mask` (same prompt in all)."""
    fig, axes = new_figure(1, len(masks), size=(5 * len(masks), 4.9))
    names: list[str] = []
    for ax, (title, (mask, layout)) in zip(axes[0], masks.items()):
        plot_dit_mask(mask, layout, sample=sample, ax=ax, title=title, legend=False,
                      image_token_mask=image_token_mask)
        image = None if image_token_mask is None else one_sample(image_token_mask, 1, sample)
        names += column_segments(layout, image)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    segment_legend(fig, names, loc="lower center", ncol=4)
    return fig
