"""Where the DiT looks: attention mass per key segment, read from cached attention patterns.

Key segments are the columns [VLM image | VLM text | sink | state | prefix | noisy]; query rows are
chosen by segment name. The patterns are those `run_with_cache` stores under
`dit.layers.{i}.attn.hook_pattern`.

Axes: N flow steps, B batch, H heads, S = 2 + T DiT tokens, L prompt length, G key segments,
T chunk length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch

from xr0lab.model.masks import NUM_SPECIAL_TOKENS, TokenLayout

PATTERN_NAME = re.compile(r"^dit\.layers\.(\d+)\.attn\.hook_pattern$")
Queries = Literal["noisy", "actions", "prefix", "sink", "state", "all"]


@dataclass(frozen=True)
class AttentionMass:
    """Share of attention each key segment receives, averaged over the chosen query rows.

    mass: (N, n_layers, B, H, G); sums to 1 over G (every row attends somewhere).
    layers: DiT layer of each entry on axis 1; segments: names along G.
    """

    mass: torch.Tensor
    layers: tuple[int, ...]
    segments: tuple[str, ...]
    queries: str

    AXES = ("step", "layer", "batch", "head", "segment")

    def mean(self, *axes: str) -> torch.Tensor:
        """The mass averaged over the named axes, e.g. mean("batch", "head") -> (N, layers, G)."""
        bad = [a for a in axes if a not in self.AXES]
        if bad:
            raise ValueError(f"unknown axes {bad}; expected some of {self.AXES}")
        dims = tuple(self.AXES.index(a) for a in axes)
        return self.mass.mean(dim=dims) if dims else self.mass

    def records(self) -> list[dict[str, Any]]:
        """One dict per (step, layer, batch, head, segment): a tidy table without pandas."""
        out = []
        N, nL, B, H, G = self.mass.shape
        for idx in torch.cartesian_prod(*(torch.arange(n) for n in (N, nL, B, H, G))).tolist():
            n, l, b, h, g = idx
            out.append({"step": n, "layer": self.layers[l], "batch": b, "head": h,
                        "segment": self.segments[g], "mass": float(self.mass[n, l, b, h, g])})
        return out


def cached_patterns(cache: Mapping[str, torch.Tensor]) -> dict[int, torch.Tensor]:
    """{DiT layer: pattern (N, B, H, S, L + S)} for every layer whose pattern is in the cache."""
    found = {int(m.group(1)): cache[n] for n in cache if (m := PATTERN_NAME.match(n))}
    if not found:
        raise KeyError("no DiT attention patterns in the cache; run run_with_cache with "
                       "names_filter='dit.layers.*.attn.hook_pattern'")
    return {i: (p if p.dim() == 5 else p[None]) for i, p in sorted(found.items())}


def key_segments(layout: TokenLayout, image_token_mask: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """{segment: (B or 1, L + S) bool column selector}. VLM columns split into image and text
    tokens when `image_token_mask` (B, L) is given."""
    n = layout.num_keys
    out = {}
    if image_token_mask is None:
        names = layout.segments()
    else:
        image = image_token_mask.bool().cpu()
        if image.shape[-1] != layout.prompt_length:
            raise ValueError(f"image_token_mask has {image.shape[-1]} columns, the layout's prompt "
                             f"has {layout.prompt_length}")
        pad = torch.zeros(image.shape[0], n - layout.prompt_length, dtype=torch.bool)
        out["vlm_image"] = torch.cat([image, pad], dim=1)
        out["vlm_text"] = torch.cat([~image, pad], dim=1)
        names = {k: s for k, s in layout.segments().items() if k != "vlm"}
    for name, s in names.items():
        col = torch.zeros(1, n, dtype=torch.bool)
        col[:, s] = True
        out[name] = col
    return out


def attention_mass(cache: Mapping[str, torch.Tensor], layout: TokenLayout,
                   image_token_mask: torch.Tensor | None = None, *,
                   queries: Queries = "noisy") -> AttentionMass:
    """Attention mass per key segment (VLM image, VLM text, sink, state, prefix, noisy actions) for
    each cached layer, step, sample and head, averaged over the `queries` rows.

    Pass `context.image_token_mask` to split the VLM columns; padded prompt columns receive no
    attention and count towards no segment's mass beyond zero.
    """
    rows = _query_rows(layout, queries)
    segments = key_segments(layout, image_token_mask)
    per_layer = []
    patterns = cached_patterns(cache)
    for pattern in patterns.values():
        if pattern.shape[-1] != layout.num_keys:
            raise ValueError(f"pattern has {pattern.shape[-1]} key columns, the layout expects "
                             f"{layout.num_keys} (prompt_length {layout.prompt_length}, "
                             f"chunk_length {layout.chunk_length})")
        p = pattern[..., rows, :].float().mean(dim=-2)  # (N, B, H, L + S)
        cols = torch.stack([c.to(p.device).float() for c in _broadcast(segments, p.shape[1])])
        per_layer.append(torch.einsum("nbhk,gbk->nbhg", p, cols))  # (N, B, H, G)
    mass = torch.stack(per_layer, dim=1).cpu()  # (N, layers, B, H, G)
    return AttentionMass(mass=mass, layers=tuple(patterns), segments=tuple(segments),
                         queries=queries)


def mass_per_action(cache: Mapping[str, torch.Tensor], layout: TokenLayout, segment: str,
                    image_token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, n_layers, B, H, T) the attention mass each action row (index 0..T-1 of the chunk, the
    prefix rows included) puts on key `segment` ("prefix", "noisy", "vlm_image", ... as in
    `attention_mass`), per cached flow step, layer, sample and head.

    This is the per-row view `attention_mass` averages away: e.g. how much a noisy action far
    beyond the band edge p + w reads from the clean prefix (0 exactly under the Λ band).
    """
    segments = key_segments(layout, image_token_mask)
    if segment not in segments:
        raise ValueError(f"unknown segment {segment!r}; expected one of {', '.join(segments)}")
    rows = slice(NUM_SPECIAL_TOKENS, layout.num_dit_tokens)
    out = []
    for pattern in cached_patterns(cache).values():
        if pattern.shape[-1] != layout.num_keys:
            raise ValueError(f"pattern has {pattern.shape[-1]} key columns, the layout expects "
                             f"{layout.num_keys}")
        col = segments[segment].to(pattern.device).float()  # (B or 1, L + S)
        col = col.expand(pattern.shape[1], -1) if col.shape[0] == 1 else col
        out.append(torch.einsum("nbhsk,bk->nbhs", pattern[..., rows, :].float(), col))
    return torch.stack(out, dim=1).cpu()


def _broadcast(segments: dict[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
    return [c.expand(batch, -1) if c.shape[0] == 1 else c for c in segments.values()]


def _query_rows(layout: TokenLayout, queries: Queries) -> slice:
    if queries == "all":
        return slice(0, layout.num_dit_tokens)
    if queries == "actions":
        return slice(NUM_SPECIAL_TOKENS, layout.num_dit_tokens)
    q = layout.query_segments()
    if queries not in q:
        raise ValueError(f"unknown query rows {queries!r}; expected one of "
                         f"{', '.join([*q, 'actions', 'all'])}")
    if q[queries].start == q[queries].stop:
        raise ValueError(f"query rows {queries!r} are empty for this layout "
                         f"(prefix_length={layout.prefix_length})")
    return q[queries]


def masked_attention_max(cache: Mapping[str, torch.Tensor]) -> float:
    """Largest attention probability any cached pattern puts where the cached DiT mask is False
    (exactly 0.0 when the mask is applied). Needs `hook_dit_mask` and some patterns cached."""
    if "hook_dit_mask" not in cache:
        raise KeyError("cache 'hook_dit_mask' together with the patterns")
    blocked = ~cache["hook_dit_mask"].bool()[:, None]  # (B, 1, S, L + S)
    worst = 0.0
    for pattern in cached_patterns(cache).values():
        hidden = pattern.masked_select(blocked[None].to(pattern.device))
        if hidden.numel():
            worst = max(worst, float(hidden.abs().max()))
    return worst
