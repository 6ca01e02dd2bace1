"""The flow-matching action expert: DiT + projectors + timestep path + sink, and what it does
with a `VLMContext`: one network step and sampling (docs/architecture.md §3-6; the objective is in loss.py).

`XR0Model` adds the Qwen3-VL backbone on top; the DynReach benchmark pairs the same expert with a
small conv encoder. Both produce a `VLMContext`, so every arm runs these exact code paths.

Axes: B batch, L prompt length, T chunk length, p prefix length, S = 2 + T, D DiT width,
A action dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
from torch import nn

from xr0lab.config import Mode, ModeConfig, Numerics, XR0Config
from xr0lab.model.checks import (XR0InputError, check_action_inputs, check_method, check_noise,
                                 check_num_steps, check_prefix)
from xr0lab.model.dit import DiT, MLPProjector, TimestepEmbedder
from xr0lab.flow import FlowTrace, Integrator, integrate
from xr0lab.inspect.hook_points import HookPoint, name_hook_points
from xr0lab.inspect.hooked import HookedMixin
from xr0lab.model.loss import LossOutput, flow_loss, sample_prefix_length
from xr0lab.model.masks import TokenLayout, dit_attention_mask
from xr0lab.model.positions import dit_positions, rope_cos_sin
from xr0lab.model.vlm import VLMContext


@dataclass(frozen=True)
class DenoiseSetup:
    """Everything about one sampling call that does not change across flow steps."""

    cos: torch.Tensor  # (B, S, h)
    sin: torch.Tensor  # (B, S, h)
    mask: torch.Tensor  # (B, S, L + S) bool
    state_tokens: torch.Tensor  # (B, 1, D)
    layout: TokenLayout


class FlowHooks(nn.Module):
    """Per-step hook points of the integrator; each fires once per flow step."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_t = HookPoint()  # (B,) flow time, t = 0 noise
        self.hook_x_t = HookPoint()  # (B, T, A) state entering the step
        self.hook_velocity = HookPoint()  # (B, T, A) predicted velocity (0 on the prefix)
        self.hook_clean_estimate = HookPoint()  # (B, T, A) x_t + (1 - t) v
        self.hook_x_next = HookPoint()  # (B, T, A) state after the step

    def observe(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"hook_{name}")(tensor)


class FlowActionExpert(HookedMixin, nn.Module):
    """The DiT and its heads, acting on a `VLMContext` (docs/architecture.md §3).

    Holds the 16-layer `DiT`, the state/action projectors, the action output head, the timestep
    path (`t_embedder` -> `t_projector`, shared by all layers) and the attention sink, under the
    released parameter names. What it does with a context:

    - `prepare`: positions, rotary tables, the DiT mask and the state token for one call;
    - `denoise_step`: one network evaluation, the velocity at (x, t);
    - `sample`: integrate from noise to normalised actions (`xr0lab.flow.integrate`);
    - `flow_loss`: the post-training objective (`xr0lab.model.loss`).

    `XR0Model` adds the Qwen3-VL backbone that makes the context; DynReach's tier-0 policy makes
    it with a small conv encoder instead, so both run these exact code paths.
    """

    def __init__(self, config: XR0Config) -> None:
        super().__init__()
        self.config = config
        D, A = config.dit.hidden_size, config.action.action_dim
        self.dit = DiT(config.dit)
        self.state_projector = MLPProjector(config.action.state_dim, D)
        self.action_projector = MLPProjector(A, D)
        self.action_output_layer = MLPProjector(D, A)
        self.t_embedder = TimestepEmbedder(D, config.dit.timestep_dim,
                                           config.dit.timestep_max_period)
        self.t_projector = MLPProjector(D, 6 * D, n_layers=1, bias=True)
        self.sink = nn.Embedding(1, D)
        self.flow = FlowHooks()
        self.hook_dit_positions = HookPoint()  # (3, B, S) DiT positions in use
        self.hook_dit_mask = HookPoint()  # (B, S, L + S) bool DiT mask in use
        self.hook_actions = HookPoint()  # (B, T, A) final normalised actions
        self.hook_points = name_hook_points(self)

    # -- pieces ------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.sink.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.sink.weight.device

    def resolve_numerics(self, numerics: Numerics | None) -> Numerics:
        """The call's numerics: as given, else `config.flow.numerics`."""
        numerics = self.config.flow.numerics if numerics is None else numerics
        if numerics not in get_args(Numerics):
            raise XR0InputError(f"numerics must be 'precise' or 'release', got {numerics!r}")
        return numerics

    def rotary(self, positions: torch.Tensor, numerics: Numerics = "precise"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (B, S, h) for DiT positions (3, B, S). XR0Model uses the VLM's own module.
        "release" rounds inv_freq to the model dtype first, as the server's `.to(bf16)` does."""
        v = self.config.vlm
        inv_freq_dtype = self.dtype if numerics == "release" else torch.float32
        return rope_cos_sin(positions, v.head_dim, v.rope_theta, v.mrope_section, self.dtype,
                            inv_freq_dtype=inv_freq_dtype)

    def prepare(self, context: VLMContext, state: torch.Tensor, chunk_length: int, *,
                prefix_length: int = 0, mode: ModeConfig | None = None,
                hidden_prefix: torch.Tensor | None = None,
                numerics: Numerics | None = None) -> DenoiseSetup:
        mode = mode or self.config.mode
        numerics = self.resolve_numerics(numerics)
        if len(context.keys) != self.config.dit.num_layers:
            # An all-layer context (prefill(..., keep_all_layers=True)) would silently feed DiT
            # layer i from VLM layer i; it must be remapped first.
            raise ValueError(f"context holds K/V for {len(context.keys)} VLM layers "
                             f"{context.vlm_layers} but the DiT has {self.config.dit.num_layers} "
                             "layers; pick one entry per DiT layer with "
                             "xr0lab.inspect.interventions.remap_context")
        positions = dit_positions(context.positions, context.prompt_mask, chunk_length,
                                  prefix_length=prefix_length, rope_offset=mode.rope_offset)
        positions = self.hook_dit_positions(positions)
        cos, sin = self.rotary(positions, numerics)
        mask = dit_attention_mask(context.prompt_mask, chunk_length, kind=mode.action_attention,
                                  window=mode.window, prefix_length=prefix_length,
                                  hidden_prefix=hidden_prefix)
        mask = self.hook_dit_mask(mask)
        state_tokens = self.state_projector(state.to(self.dtype))
        layout = TokenLayout(context.prompt_length, chunk_length, prefix_length)
        return DenoiseSetup(cos=cos, sin=sin, mask=mask, state_tokens=state_tokens, layout=layout)

    def denoise_step(self, setup: DenoiseSetup, context: VLMContext, x: torch.Tensor,
                     t: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
        """The network step: velocity (B, T, A) at x (B, T, A), flow time t (B,)."""
        B = x.shape[0]
        D = self.config.dit.hidden_size
        actions = self.action_projector((x * action_mask).to(self.dtype))  # inactive dims zeroed
        sink = self.sink.weight[None].expand(B, 1, D)
        h = torch.cat([sink, setup.state_tokens, actions], dim=1)  # (B, S, D)
        t_emb = self.t_projector(self.t_embedder(t)).view(B, 6, D)
        h = self.dit(h, t_emb, setup.cos, setup.sin, context.keys, context.values, setup.mask)
        return self.action_output_layer(h[:, 2:]).to(x.dtype)

    def _flow_observer(self):
        return self.flow.observe if any(h.active for h in self.flow.children()) else None

    def sample(self, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor, *,
               noise: torch.Tensor, num_steps: int | None = None,
               prefix: torch.Tensor | None = None, prefix_length: int | None = None,
               mode: ModeConfig | Mode | None = None, method: Integrator = "euler",
               record: bool = False, hidden_prefix: torch.Tensor | None = None,
               numerics: Numerics | None = None
               ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
        """Integrate the flow from noise (B, T, A) to normalised actions against one context.

        numerics (default `config.flow.numerics`): "precise" integrates in the dtype of `noise`
        with float32 t; "release" casts the noise to the model dtype and keeps x and t in it, as
        the released loop does (give it a context from `prefill(..., numerics="release")`).

        Checked like `predict_actions`: state and action_mask against the context's batch, noise
        (B, T, A) finite, num_steps an int >= 1, and a prefix only in a prefix-capable mode.
        prefix_length None commits the whole prefix given; 0 commits none of it.
        """
        mode = self.config.mode if mode is None else ModeConfig.coerce(mode)
        B = context.batch_size
        T = check_action_inputs(self.config, B, state, action_mask, batch_from="the context")
        check_noise((B, T, self.config.action.action_dim), noise)
        p = check_prefix(self.config, B, T, prefix, prefix_length, mode.supports_prefix)
        return self._sample(context, state, action_mask, noise=noise,
                            num_steps=check_num_steps(self.config, num_steps),
                            prefix=prefix, prefix_length=p, mode=mode,
                            method=check_method(method), record=record,
                            hidden_prefix=hidden_prefix, numerics=self.resolve_numerics(numerics))

    def _sample(self, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor, *,
                noise: torch.Tensor, num_steps: int, prefix: torch.Tensor | None,
                prefix_length: int, mode: ModeConfig, method: Integrator, record: bool,
                hidden_prefix: torch.Tensor | None = None, numerics: Numerics = "precise"
                ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
        """`sample` for arguments already checked (`predict_actions` checks before the prefill)."""
        time_dtype = torch.float32
        if numerics == "release":  # the released loop: x and t in the model dtype throughout
            noise, time_dtype = noise.to(self.dtype), self.dtype
        setup = self.prepare(context, state, noise.shape[1], prefix_length=prefix_length,
                             mode=mode, hidden_prefix=hidden_prefix, numerics=numerics)
        out = integrate(lambda x, t: self.denoise_step(setup, context, x, t, action_mask), noise,
                        num_steps, prefix=prefix, prefix_length=prefix_length, method=method,
                        record=record, observer=self._flow_observer(), time_dtype=time_dtype)
        if record:
            actions, trace = out
            return self.hook_actions(actions), trace
        return self.hook_actions(out)

    # -- training ----------------------------------------------------------------------------
    def sample_prefix_length(self, chunk_length: int,
                             generator: torch.Generator | None = None) -> int:
        """One prefix length per forward call, shared by the batch (see `loss.sample_prefix_length`)."""
        return sample_prefix_length(self.config, chunk_length, generator)

    def flow_loss(self, context: VLMContext, actions: torch.Tensor, action_mask: torch.Tensor,
                  state: torch.Tensor, **overrides) -> LossOutput:
        """The post-training objective against one context (see `loss.flow_loss`)."""
        return flow_loss(self, context, actions, action_mask, state, **overrides)
