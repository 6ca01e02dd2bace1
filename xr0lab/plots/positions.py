"""Token positions on one axis: where the prompt, sink, state, clean prefix and noisy actions sit
in RoPE position, and the +10 gap xr0-async puts before the noisy actions.

`segment_positions` reads the positions the model uses (`xr0lab.model.positions.dit_positions`
after the prompt's own M-RoPE ids); `plot_positions` draws one row per mode in the shared
segment colours (`xr0lab.plots.segments`), with a zoom on the DiT tokens.

Axes: B batch, L prompt length, T chunk length, p prefix length.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from xr0lab.model.masks import TokenLayout
from xr0lab.model.positions import dit_positions
from xr0lab.plots.figure import figure_axes, new_figure
from xr0lab.plots.segments import SEGMENTS, segment_colour, segment_legend

DIT_SEGMENTS = ("sink", "state", "prefix", "noisy")


def segment_positions(prompt_positions: torch.Tensor, prompt_mask: torch.Tensor,
                      chunk_length: int, *, prefix_length: int = 0, rope_offset: int = 0,
                      image_token_mask: torch.Tensor | None = None, component: int = 0,
                      sample: int = 0) -> dict[str, np.ndarray]:
    """{segment: positions} of one sample in M-RoPE `component` (0 = t, the one that continues
    after the prompt): the real prompt tokens ("vlm", or "vlm_image" / "vlm_text" with
    `image_token_mask`), then the DiT's sink, state, prefix and noisy actions as the model
    places them (`rope_offset` is the gap before the noisy actions: 10 in xr0-async).

    prompt_positions: (3, B, L) (`context.positions`); prompt_mask, image_token_mask: (B, L).

    >>> pos = segment_positions(torch.arange(4).expand(3, 1, 4), torch.ones(1, 4), 3,
    ...                         prefix_length=1, rope_offset=10)
    >>> {k: v.tolist() for k, v in pos.items()}
    {'vlm': [0, 1, 2, 3], 'sink': [4], 'state': [5], 'prefix': [6], 'noisy': [17, 18]}
    """
    if prompt_positions.dim() != 3 or prompt_positions.shape[0] != 3:
        raise ValueError(f"prompt_positions must be (3, B, L), got "
                         f"{tuple(prompt_positions.shape)}")
    dit = dit_positions(prompt_positions, prompt_mask, chunk_length,
                        prefix_length=prefix_length, rope_offset=rope_offset)
    real = prompt_mask[sample].bool().cpu()
    prompt = prompt_positions[component, sample].cpu()
    out: dict[str, np.ndarray] = {}
    if image_token_mask is None:
        out["vlm"] = prompt[real].numpy()
    else:
        image = image_token_mask[sample].bool().cpu()
        out["vlm_image"] = prompt[real & image].numpy()
        out["vlm_text"] = prompt[real & ~image].numpy()
    layout = TokenLayout(0, chunk_length, prefix_length)
    row = dit[component, sample].cpu()
    for name in DIT_SEGMENTS:
        out[name] = row[getattr(layout, name)].numpy()
    return out


def noisy_gap(positions: Mapping[str, np.ndarray]) -> int:
    """Empty positions between the last clean DiT token (state or prefix) and the first noisy
    action: the RoPE offset that marks noisy tokens (0 when they follow on directly).

    >>> noisy_gap({'state': [5], 'prefix': [6], 'noisy': [17, 18]})
    10
    """
    clean = [int(np.max(positions[n])) for n in ("sink", "state", "prefix")
             if n in positions and len(positions[n])]
    if not clean or "noisy" not in positions or not len(positions["noisy"]):
        raise ValueError("noisy_gap needs a clean DiT token and a noisy one")
    return int(np.min(positions["noisy"])) - max(clean) - 1


def draw_position_row(ax, positions: Mapping[str, np.ndarray], y: float = 0.0, *,
                      marker_size: float = 60) -> None:
    """One row of tokens at height `y`: a tick per token in its segment's colour, and the gap
    before the noisy actions marked with its width when there is one."""
    for name in SEGMENTS:
        if name in positions and len(positions[name]):
            x = np.asarray(positions[name], float)
            ax.scatter(x, np.full(len(x), y), marker="|", s=marker_size, lw=2,
                       color=segment_colour(name))
    gap = noisy_gap(positions)
    if gap > 0:
        first = float(np.min(positions["noisy"]))
        ax.annotate("", xy=(first - 0.5, y + 0.28), xytext=(first - gap - 0.5, y + 0.28),
                    arrowprops=dict(arrowstyle="<->", color="black", lw=0.8))
        ax.text(first - gap / 2 - 0.5, y + 0.33, f"+{gap} gap", ha="center", va="bottom",
                fontsize=8)


def plot_positions(rows: Mapping[str, Mapping[str, np.ndarray]], *, zoom: bool = True,
                   title: str | None = None, ax=None) -> Any:
    """Token positions of several layouts, one row each ({label: `segment_positions` dict}),
    in the shared segment colours. `zoom` adds a panel on the DiT tokens (from the last prompt
    token on), where the +10 gap is legible next to a long prompt (two panels: no `ax`)."""
    labels = list(rows)
    if zoom and ax is None:
        fig, axes = new_figure(2, 1, size=(10, 1.1 * len(labels) + 2.6))
        panels = [(axes[0][0], False), (axes[1][0], True)]
    else:
        fig, a = figure_axes(ax, (10, 0.7 * len(labels) + 1.2))
        panels = [(a, False)]
    names = sorted({n for r in rows.values() for n in r if len(r[n])}, key=SEGMENTS.index)
    for a, zoomed in panels:
        for i, label in enumerate(labels):
            draw_position_row(a, rows[label], y=-i)
        a.set_yticks([-i for i in range(len(labels))], labels, fontsize=8)
        a.set_ylim(-len(labels) + 0.4, 0.75)
        a.set_xlabel("RoPE position (M-RoPE component t)", fontsize=8)
        if zoomed:
            lo = min(int(np.min(r["sink"])) for r in rows.values()) - 2
            hi = max(int(np.max(r["noisy"])) for r in rows.values() if len(r["noisy"])) + 1
            a.set_xlim(lo, hi)
            a.set_title("zoom on the DiT tokens", fontsize=9)
    panels[0][0].set_title(title or "token positions: prompt, then the DiT's tokens", fontsize=10)
    segment_legend(fig if len(panels) > 1 else panels[0][0], names, masked=False,
                   loc="upper right" if len(panels) == 1 else "lower center", ncol=6)
    if len(panels) > 1:
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
