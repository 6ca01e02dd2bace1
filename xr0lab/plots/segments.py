"""The one colour convention for token segments, shared by every figure that shows them: DiT
masks (notebooks 01, 02 and 05), the position axis (01) and attention mass by segment (02).

    SEGMENT_COLOURS    {segment: colour}: the prompt ("vlm", split into "vlm_image" and
                       "vlm_text" where the image tokens are known), sink, state, prefix, noisy
    MASKED_COLOUR      a (query, key) pair that may not attend
    BOUNDARY_COLOUR    the lines between segments (and the prefix edge in notebook 05)

A mask cell that may attend is drawn in the colour of its *key* segment (what that query reads),
a masked cell in MASKED_COLOUR; `mask_segment_index` turns a boolean mask into the index image
that `segment_cmap` colours, and `segment_legend` adds the legend that says so.

Axes: Q query rows, K key columns.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch

from xr0lab.model.masks import TokenLayout

# Okabe-Ito colours (distinct under the common colour-vision deficiencies); the prompt is green,
# its text tokens a paler green, so "vlm" split or whole reads as one family.
SEGMENT_COLOURS: dict[str, str] = {
    "vlm": "#009E73",
    "vlm_image": "#009E73",
    "vlm_text": "#8FD3BE",
    "sink": "#555555",
    "state": "#CC79A7",
    "prefix": "#E69F00",
    "noisy": "#0072B2",
}
SEGMENT_LABELS: dict[str, str] = {
    "vlm": "prompt (VLM K/V)",
    "vlm_image": "prompt: image tokens",
    "vlm_text": "prompt: text tokens",
    "sink": "sink",
    "state": "state",
    "prefix": "clean prefix",
    "noisy": "noisy actions",
}
SEGMENTS: tuple[str, ...] = tuple(SEGMENT_COLOURS)
MASKED_COLOUR = "#F2F2F2"
BOUNDARY_COLOUR = "tab:red"


def segment_colour(name: str) -> str:
    """The colour of segment `name` (a KeyError naming the known segments otherwise)."""
    if name not in SEGMENT_COLOURS:
        raise KeyError(f"unknown segment {name!r}; known: {', '.join(SEGMENTS)}")
    return SEGMENT_COLOURS[name]


def column_segments(layout: TokenLayout, image_token_mask: Any = None) -> list[str]:
    """The segment name of each of the layout's L + S key columns. With `image_token_mask` (L,)
    (one sample's `context.image_token_mask`) the prompt columns are "vlm_image" / "vlm_text",
    else "vlm".

    >>> column_segments(TokenLayout(2, 3, 1))
    ['vlm', 'vlm', 'sink', 'state', 'prefix', 'noisy', 'noisy']
    """
    names = [""] * layout.num_keys
    for name, s in layout.segments().items():
        names[s] = [name] * (s.stop - s.start)
    if image_token_mask is not None:
        image = np.asarray(torch.as_tensor(image_token_mask).bool().cpu()).reshape(-1)
        if image.shape[0] != layout.prompt_length:
            raise ValueError(f"image_token_mask has {image.shape[0]} entries, the layout's "
                             f"prompt has {layout.prompt_length}")
        names[:layout.prompt_length] = ["vlm_image" if i else "vlm_text" for i in image]
    return names


def mask_segment_index(mask: Any, columns: Sequence[str]) -> np.ndarray:
    """(Q, K) int: 0 where `mask` (Q, K, True = may attend) is False, else 1 + the position in
    SEGMENTS of the cell's key segment `columns[k]`; `segment_cmap` colours it.

    >>> mask_segment_index(np.array([[True, False], [True, True]]), ["prefix", "noisy"]).tolist()
    [[6, 0], [6, 7]]
    """
    m = np.asarray(torch.as_tensor(mask).bool().cpu())
    if m.ndim != 2 or m.shape[1] != len(columns):
        raise ValueError(f"mask must be (Q, K) with K = len(columns) = {len(columns)}, got "
                         f"shape {m.shape}")
    code = np.array([SEGMENTS.index(c) + 1 if c in SEGMENT_COLOURS else -1 for c in columns])
    if (code < 0).any():
        bad = sorted({c for c in columns if c not in SEGMENT_COLOURS})
        raise KeyError(f"unknown segments {bad}; known: {', '.join(SEGMENTS)}")
    return np.where(m, code[None, :], 0)


def segment_cmap():
    """(colormap, norm) that draw `mask_segment_index` images: 0 masked, 1.. the segments."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap([MASKED_COLOUR, *SEGMENT_COLOURS.values()], name="xr0lab_segments")
    return cmap, BoundaryNorm(np.arange(-0.5, len(SEGMENTS) + 1.5), cmap.N)


def segment_legend(target, names: Iterable[str], *, masked: bool = True, **kwargs: Any):
    """A legend of the segments `names` (in SEGMENTS order, duplicates once) on `target`, an
    Axes or a Figure, plus the masked colour when `masked`. Keywords go to `legend`."""
    from matplotlib.patches import Patch

    wanted = set(names)
    unknown = wanted - set(SEGMENTS)
    if unknown:
        raise KeyError(f"unknown segments {sorted(unknown)}; known: {', '.join(SEGMENTS)}")
    shown = [n for n in SEGMENTS if n in wanted]
    if "vlm" in wanted and "vlm_image" in wanted:  # same colour: one entry
        shown.remove("vlm")
    handles = [Patch(color=SEGMENT_COLOURS[n], label=SEGMENT_LABELS[n]) for n in shown]
    if masked:
        handles.append(Patch(facecolor=MASKED_COLOUR, edgecolor="#999999", lw=0.5,
                             label="masked (may not attend)"))
    kwargs.setdefault("fontsize", 8)
    kwargs.setdefault("frameon", False)
    return target.legend(handles=handles, **kwargs)
