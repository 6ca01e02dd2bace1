"""What the VLM K/V carries: interventions on a `VLMContext` and their effect on the chunk.

Interventions never edit a context: each builds a new `VLMContext` (contexts are values), and the
effect of one is measured by sampling again under identical noise.

Axes: B batch, K kv heads, L prompt length, h head dim, T chunk length, A action dims.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal, Mapping, Sequence, get_args

import torch

from xr0lab.model.vlm import VLMContext

Parts = Literal["kv", "k", "v"]


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


def _token_selector(context: VLMContext, tokens: torch.Tensor | None) -> torch.Tensor | None:
    """(B, 1, L, 1) bool selector of the prompt columns an edit touches (None: all of them)."""
    if tokens is None:
        return None
    sel = torch.as_tensor(tokens).bool()
    if sel.dim() == 1:
        sel = sel[None].expand(context.batch_size, -1)
    if tuple(sel.shape) != (context.batch_size, context.prompt_length):
        raise ValueError(f"tokens must be (L,) or (B, L) = ({context.batch_size}, "
                         f"{context.prompt_length}), got {tuple(sel.shape)}")
    return sel[:, None, :, None]


def _edit(context: VLMContext, entries: list[int], parts: Parts,
          fn: Callable[[int, str, torch.Tensor], torch.Tensor],
          tokens: torch.Tensor | None = None) -> VLMContext:
    if parts not in get_args(Parts):
        raise ValueError(f"parts must be 'kv', 'k' or 'v', got {parts!r}")
    sel = _token_selector(context, tokens)
    keys, values = list(context.keys), list(context.values)

    def apply(i: int, part: str, x: torch.Tensor) -> torch.Tensor:
        new = fn(i, part, x)
        return new if sel is None else torch.where(sel.to(x.device), new.to(x.dtype), x)

    for i in entries:
        if "k" in parts:
            keys[i] = apply(i, "k", keys[i])
        if "v" in parts:
            values[i] = apply(i, "v", values[i])
    return context.replace(keys=tuple(keys), values=tuple(values))


def zero_kv(context: VLMContext, vlm_layers: Iterable[int] | None = None, *,
            parts: Parts = "kv", tokens: torch.Tensor | None = None) -> VLMContext:
    """A new context whose K and/or V from `vlm_layers` (VLM layer ids; None = all) are zero,
    at the prompt columns `tokens` selects ((L,) or (B, L) bool, e.g. `context.image_token_mask`
    for the image tokens only; None = every column).

    Zero keys give every prompt column the same score, zero values carry nothing: together the
    prompt still takes softmax mass (it dilutes) but contributes no content."""
    return _edit(context, _entries(context, vlm_layers), parts,
                 lambda i, _, x: torch.zeros_like(x), tokens)


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
            parts: Parts = "kv", tokens: torch.Tensor | None = None) -> VLMContext:
    """A new context with K/V of `vlm_layers` taken from `other` (another observation's context),
    at the prompt columns `tokens` selects ((L,) or (B, L) bool; None = every column).

    The prompt mask and positions stay `context`'s, so both must share the token layout (same
    prompt length and padding): K carries RoPE for its own positions. Swapping only the image
    columns (`tokens=context.image_token_mask`) leaves the text tokens' K/V as they were, though
    in the VLM those tokens attended to `context`'s image."""
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

    return _edit(context, _entries(context, vlm_layers), parts, fn, tokens)


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


def kv_variants(context: VLMContext, *, other: VLMContext | None = None,
                kinds: Sequence[str] = ("zero", "mean", "swap"),
                vlm_layers: Iterable[int] | None = None, tokens: torch.Tensor | None = None
                ) -> dict[str, tuple[dict[str, Any], VLMContext]]:
    """{"kind:layer": ({"kind", "vlm_layer"}, new context)} for each kind and each VLM layer of
    `vlm_layers` (default: every layer the context holds) one at a time, then "all" of them.

    kinds: "zero", "mean" (per-sample mean over the prompt) and "swap" (with `other`, another
    observation's context). `tokens` restricts zero and swap to those prompt columns (e.g. the
    image tokens); mean-ablation always replaces every column."""
    if "swap" in kinds and other is None:
        raise ValueError("kind 'swap' needs `other`, a context from another observation")
    build = {"zero": lambda ls: zero_kv(context, ls, tokens=tokens),
             "mean": lambda ls: mean_kv(context, ls),
             "swap": lambda ls: swap_kv(context, other, ls, tokens=tokens)}
    unknown = [k for k in kinds if k not in build]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; expected zero, mean or swap")
    layers = list(dict.fromkeys(context.vlm_layers if vlm_layers is None else vlm_layers))
    _entries(context, layers)  # unknown layers fail here, before any variant is built
    out = {}
    for kind in kinds:
        for j in [*layers, "all"]:
            out[f"{kind}:{j}"] = ({"kind": kind, "vlm_layer": j},
                                  build[kind](layers if j == "all" else [j]))
    return out


def kv_layer_sweep(model: Any, context: VLMContext, state: torch.Tensor,
                   action_mask: torch.Tensor, *, noise: torch.Tensor,
                   other: VLMContext | None = None, kinds: Sequence[str] = ("zero", "mean", "swap"),
                   tokens: torch.Tensor | None = None, **sample_kwargs: Any
                   ) -> list[dict[str, Any]]:
    """The action change when each VLM layer's K/V (and then all of them) is zeroed, mean-ablated
    or swapped with `other`'s (`kv_variants`; `tokens` restricts zero and swap to those prompt
    columns). Records: {"kind", "vlm_layer" (or "all"), "l2", "relative"}."""
    built = kv_variants(context, other=other, kinds=kinds, tokens=tokens)
    records = intervention_effects(model, context, {k: c for k, (_, c) in built.items()}, state,
                                   action_mask, noise=noise, **sample_kwargs)
    return [{**built[r.pop("variant")][0], **r} for r in records]
