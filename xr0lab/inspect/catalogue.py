"""The hook catalogue: every hook name with its shape and when it fires (the one place shapes are
documented).

`HOOK_CATALOGUE` holds name templates; `hook_catalogue(model)` expands them for a model and is
checked against `model.hook_points` in the tests. Hooks inside the denoising loop (`dit.*`,
`flow.*`) are per step: they fire once per network evaluation, `EVALUATIONS_PER_STEP` of them per
flow step. Opt-in hooks (the expensive VLM-side ones, `vlm.*`) are attached only when named.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from torch import nn

# Axes: B batch, L prompt length, T chunk length, S = 2 + T DiT tokens, D DiT width, H DiT query
# heads, K kv heads, h head dim, A action dims, d VLM width, Hv VLM query heads, N flow steps.
# {i} = DiT layer, {j} = VLM layer. Shapes are per firing; per-step hooks gain a leading N axis in
# a cache.


@dataclass(frozen=True)
class HookInfo:
    shape: str
    doc: str
    per_step: bool = False  # fires inside the denoising loop
    opt_in: bool = False  # expensive; only attached when named explicitly (VLM side)


_L = "dit.layers.{i}."
_VL = "vlm.model.language_model.layers.{j}."
HOOK_CATALOGUE: dict[str, HookInfo] = {
    # DiT attention (per network evaluation)
    _L + "attn.hook_q": HookInfo("(B, H, S, h)", "queries after q_norm and RoPE", True),
    _L + "attn.hook_k": HookInfo("(B, H, S, h)", "DiT keys after k_norm and RoPE", True),
    _L + "attn.hook_v": HookInfo("(B, H, S, h)", "DiT values", True),
    _L + "attn.hook_vlm_k": HookInfo("(B, K, L, h)", "paired VLM layer's cached keys", True),
    _L + "attn.hook_vlm_v": HookInfo("(B, K, L, h)", "paired VLM layer's cached values", True),
    _L + "attn.hook_scores": HookInfo(
        "(B, H, S, L + S)", "scaled scores, -inf where masked; switches the layer to the explicit "
        "attention path", True),
    _L + "attn.hook_pattern": HookInfo(
        "(B, H, S, L + S)", "softmax of the scores; switches the layer to the explicit path", True),
    _L + "attn.hook_z": HookInfo("(B, S, H, h)", "attention-weighted values before o_proj", True),
    # DiT layer: adaLN modulation and residual stream
    **{_L + f"hook_{m}": HookInfo("(B, 1, D)", f"adaLN {m.replace('_', ' ')} (table + t_emb)",
                                  True)
       for m in ("shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp")},
    _L + "hook_resid_pre": HookInfo("(B, S, D)", "residual stream entering the layer", True),
    _L + "hook_attn_out": HookInfo("(B, S, D)", "attention output (after o_proj, before gate)",
                                   True),
    _L + "hook_resid_mid": HookInfo("(B, S, D)", "residual after middle_layernorm", True),
    _L + "hook_mlp_out": HookInfo("(B, S, D)", "MLP output (before gate)", True),
    _L + "hook_resid_post": HookInfo("(B, S, D)", "residual after final_layernorm", True),
    # the integrator (once per flow step, whatever the integrator)
    "flow.hook_t": HookInfo("(B,)", "flow time of the step, t = 0 noise", True),
    "flow.hook_x_t": HookInfo("(B, T, A)", "state entering the step", True),
    "flow.hook_velocity": HookInfo("(B, T, A)", "velocity at x_t (0 on the prefix)", True),
    "flow.hook_clean_estimate": HookInfo("(B, T, A)", "one-step estimate x_t + (1 - t) v", True),
    "flow.hook_x_next": HookInfo("(B, T, A)", "state after the step", True),
    # once per call
    "hook_dit_positions": HookInfo("(3, B, S)", "DiT M-RoPE positions in use"),
    "hook_dit_mask": HookInfo("(B, S, L + S)", "bool DiT attention mask in use, True = may attend"),
    "hook_actions": HookInfo("(B, T, A)", "final normalised actions"),
    "hook_prompt_positions": HookInfo("(3, B, L)", "prompt M-RoPE ids (XR0Model only)"),
    "hook_prompt_mask": HookInfo("(B, L)", "bool, True at real prompt tokens (XR0Model only)"),
    # opt-in, VLM side (XR0Model only): torch forward hooks on the library's modules
    _VL + "hook_resid_post": HookInfo(
        "(B, L, d)", "output of VLM decoder layer j (before Qwen3-VL's deepstack injection into "
        "the first layers)", opt_in=True),
    _VL + "self_attn.hook_pattern": HookInfo(
        "(B, Hv, L, L)", "VLM attention pattern of layer j, read-only; the text tower runs with "
        "eager attention while it is attached", opt_in=True),
}

# Integrator -> network evaluations per flow step (flow.integrate).
EVALUATIONS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}


def hook_catalogue(model: nn.Module) -> dict[str, HookInfo]:
    """The catalogue expanded for `model`: {name: HookInfo} for its hook points and, for models with
    a VLM, the opt-in VLM hooks."""
    n_dit = model.config.dit.num_layers
    n_vlm = model.config.vlm.num_layers if hasattr(model, "vlm") else 0
    out = {}
    for template, info in HOOK_CATALOGUE.items():
        if "{i}" in template:
            out.update({template.format(i=i): info for i in range(n_dit)})
        elif "{j}" in template:
            out.update({template.format(j=j): info for j in range(n_vlm)})
        elif template.startswith("hook_prompt") and not hasattr(model, "vlm"):
            continue
        else:
            out[template] = info
    return out


def unknown_name(name: str, known: Iterable[str], what: str = "hook") -> KeyError:
    """The KeyError for an unknown name, listing close matches (returned for the caller to raise)."""
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return KeyError(f"unknown {what} name {name!r}{hint}")
