"""Analysis on top of caches and contexts: where the DiT looks, what the VLM K/V carries, and how
the sampler's step count and integrator shape the chunk.

Axes: N flow steps, B batch, H heads, S = 2 + T DiT tokens, L prompt length, K kv heads,
h head dim, G key segments, T chunk length, A action dims.

Interventions never edit a context: each builds a new `VLMContext` (contexts are values), and the
effect of one is measured by sampling again under identical noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import torch

from xr0lab.flow import FlowTrace
from xr0lab.inspect.hooks import EVALUATIONS_PER_STEP
from xr0lab.model.masks import NUM_SPECIAL_TOKENS, TokenLayout
from xr0lab.model.vlm import VLMContext

PATTERN_NAME = re.compile(r"^dit\.layers\.(\d+)\.attn\.hook_pattern$")
Queries = Literal["noisy", "actions", "prefix", "sink", "state", "all"]
Parts = Literal["kv", "k", "v"]


# -- attention mass by segment -------------------------------------------------------------------


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


# -- K/V interventions ---------------------------------------------------------------------------


def _entries(context: VLMContext, vlm_layers: Iterable[int] | None) -> list[int]:
    """Context entries (DiT layers) fed by the given VLM layers; None = all entries."""
    if vlm_layers is None:
        return list(range(len(context.keys)))
    wanted = list(vlm_layers)
    missing = [j for j in wanted if j not in context.vlm_layers]
    if missing:
        raise KeyError(f"VLM layers {missing} are not in this context (it holds "
                       f"{context.vlm_layers}); prefill with keep_all_layers=True to reach others")
    return [i for i, j in enumerate(context.vlm_layers) if j in wanted]


def _edit(context: VLMContext, entries: list[int], parts: Parts,
          fn: Callable[[int, str, torch.Tensor], torch.Tensor]) -> VLMContext:
    if parts not in ("kv", "k", "v"):
        raise ValueError(f"parts must be 'kv', 'k' or 'v', got {parts!r}")
    keys, values = list(context.keys), list(context.values)
    for i in entries:
        if "k" in parts:
            keys[i] = fn(i, "k", keys[i])
        if "v" in parts:
            values[i] = fn(i, "v", values[i])
    return context.replace(keys=tuple(keys), values=tuple(values))


def zero_kv(context: VLMContext, vlm_layers: Iterable[int] | None = None, *,
            parts: Parts = "kv") -> VLMContext:
    """A new context whose K and/or V from `vlm_layers` (VLM layer ids; None = all) are zero.

    Zero keys give every prompt column the same score, zero values carry nothing: together the
    prompt still takes softmax mass (it dilutes) but contributes no content."""
    return _edit(context, _entries(context, vlm_layers), parts, lambda i, _, x: torch.zeros_like(x))


def mean_kv(context: VLMContext, vlm_layers: Iterable[int] | None = None, *,
            parts: Parts = "kv", reference: VLMContext | None = None) -> VLMContext:
    """A new context whose K/V from `vlm_layers` are replaced by their mean over real prompt
    tokens (per head), taken over `reference` (its batch and positions) or, by default, each
    sample of `context` itself. Keeps magnitude, removes position- and token-specific content."""
    entries = _entries(context, vlm_layers)

    def mean_of(ctx: VLMContext, i: int, part: str, pool_batch: bool) -> torch.Tensor:
        x = (ctx.keys if part == "k" else ctx.values)[i]
        w = ctx.prompt_mask.to(x.dtype)[:, None, :, None]  # (B, 1, L, 1)
        dims = (0, 2) if pool_batch else (2,)
        return (x * w).sum(dims, keepdim=True) / w.sum(dims, keepdim=True).clamp_min(1)

    def fn(i: int, part: str, x: torch.Tensor) -> torch.Tensor:
        if reference is None:
            return mean_of(context, i, part, False).expand_as(x).clone()
        j = context.vlm_layers[i]
        if j not in reference.vlm_layers:
            raise KeyError(f"reference context lacks VLM layer {j}")
        m = mean_of(reference, reference.vlm_layers.index(j), part, True)
        return m.to(x.device, x.dtype).expand_as(x).clone()

    return _edit(context, entries, parts, fn)


def swap_kv(context: VLMContext, other: VLMContext, vlm_layers: Iterable[int] | None = None, *,
            parts: Parts = "kv") -> VLMContext:
    """A new context with K/V of `vlm_layers` taken from `other` (another observation's context).

    The prompt mask and positions stay `context`'s, so both must share the token layout (same
    prompt length and padding): K carries RoPE for its own positions."""
    if other.keys[0].shape != context.keys[0].shape:
        raise ValueError(f"swap needs contexts of equal shape, got {tuple(context.keys[0].shape)} "
                         f"and {tuple(other.keys[0].shape)}")
    if not torch.equal(other.prompt_mask.cpu(), context.prompt_mask.cpu()):
        raise ValueError("swap needs the same prompt padding in both contexts; the swapped keys "
                         "would otherwise sit at the wrong positions")

    def fn(i: int, part: str, x: torch.Tensor) -> torch.Tensor:
        j = context.vlm_layers[i]
        if j not in other.vlm_layers:
            raise KeyError(f"the other context lacks VLM layer {j} (it holds {other.vlm_layers})")
        src = other.keys if part == "k" else other.values
        return src[other.vlm_layers.index(j)]

    return _edit(context, _entries(context, vlm_layers), parts, fn)


def remap_context(context: VLMContext, mapping: Sequence[int]) -> VLMContext:
    """A new context whose entry i (feeding DiT layer i) is VLM layer `mapping[i]`.

    `context` must hold those layers: use `model.prefill(..., keep_all_layers=True)`. The released
    pairing is `model.config.vlm_layer_for_dit_layer` (the last n_dit layers)."""
    idx = []
    for j in mapping:
        if j not in context.vlm_layers:
            raise KeyError(f"VLM layer {j} is not in this context (it holds {context.vlm_layers}); "
                           "prefill with keep_all_layers=True")
        idx.append(context.vlm_layers.index(j))
    return context.replace(keys=tuple(context.keys[i] for i in idx),
                           values=tuple(context.values[i] for i in idx),
                           vlm_layers=tuple(mapping))


# -- effects on the action chunk -----------------------------------------------------------------


def chunk_distance(a: torch.Tensor, b: torch.Tensor,
                   action_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) L2 distance between two chunks (B, T, A) over the active action dims."""
    d = (a.float() - b.float())
    if action_mask is not None:
        d = d * action_mask.to(d.device, d.dtype)
    return d.flatten(1).norm(dim=1)


def intervention_effects(model: Any, context: VLMContext, variants: Mapping[str, VLMContext],
                         state: torch.Tensor, action_mask: torch.Tensor, *, noise: torch.Tensor,
                         **sample_kwargs: Any) -> list[dict[str, Any]]:
    """Sample against `context` and each variant under identical `noise`; one record per variant:
    {"variant", "l2" (mean over batch), "relative" (l2 / |baseline chunk|)}."""
    with torch.no_grad():
        base = model.sample(context, state, action_mask, noise=noise, **sample_kwargs)
        scale = chunk_distance(base, torch.zeros_like(base), action_mask).clamp_min(1e-12)
        out = []
        for name, ctx in variants.items():
            acts = model.sample(ctx, state, action_mask, noise=noise, **sample_kwargs)
            d = chunk_distance(acts, base, action_mask)
            out.append({"variant": name, "l2": float(d.mean()),
                        "relative": float((d / scale).mean())})
    return out


def kv_layer_sweep(model: Any, context: VLMContext, state: torch.Tensor,
                   action_mask: torch.Tensor, *, noise: torch.Tensor,
                   other: VLMContext | None = None, kinds: Sequence[str] = ("zero", "mean", "swap"),
                   **sample_kwargs: Any) -> list[dict[str, Any]]:
    """The action change when each VLM layer's K/V (and then all of them) is zeroed, mean-ablated
    or swapped with `other`'s. Records: {"kind", "vlm_layer" (or "all"), "l2", "relative"}."""
    if "swap" in kinds and other is None:
        raise ValueError("kind 'swap' needs `other`, a context from another observation")
    build = {"zero": lambda ls: zero_kv(context, ls), "mean": lambda ls: mean_kv(context, ls),
             "swap": lambda ls: swap_kv(context, other, ls)}
    unknown = [k for k in kinds if k not in build]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; expected zero, mean or swap")
    variants, meta = {}, {}
    for kind in kinds:
        for j in [*dict.fromkeys(context.vlm_layers), "all"]:
            key = f"{kind}:{j}"
            variants[key] = build[kind](None if j == "all" else [j])
            meta[key] = {"kind": kind, "vlm_layer": j}
    records = intervention_effects(model, context, variants, state, action_mask, noise=noise,
                                   **sample_kwargs)
    return [{**meta[r.pop("variant")], **r} for r in records]


# -- the sampler ---------------------------------------------------------------------------------


def clean_estimate_convergence(trace: FlowTrace, final: torch.Tensor) -> torch.Tensor:
    """(N, B) L2 distance of each step's one-step clean estimate to the final chunk."""
    return torch.stack([chunk_distance(est, final) for est in trace.clean_estimate])


def step_sweep(model: Any, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor,
               *, noise: torch.Tensor, steps: Iterable[int] = range(1, 21),
               methods: Sequence[str] = ("euler", "midpoint", "heun"),
               reference_steps: int = 100, reference_method: str = "heun",
               **sample_kwargs: Any) -> list[dict[str, Any]]:
    """Distance of the chunk to a `reference_steps`-step reference for each (method, steps), all
    from the same noise. Records: {"method", "steps", "evaluations" (network calls), "l2"}."""
    with torch.no_grad():
        ref = model.sample(context, state, action_mask, noise=noise, num_steps=reference_steps,
                           method=reference_method, **sample_kwargs)
        out = []
        for method in methods:
            for n in steps:
                acts = model.sample(context, state, action_mask, noise=noise, num_steps=n,
                                    method=method, **sample_kwargs)
                out.append({"method": method, "steps": n, "evaluations": n * EVALUATIONS_PER_STEP[method],
                            "l2": float(chunk_distance(acts, ref, action_mask).mean())})
    return out
