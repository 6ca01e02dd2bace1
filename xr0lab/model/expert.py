"""The flow-matching action expert: DiT + projectors + timestep path + sink, and what it does
with a `VLMContext`: one network step, sampling, and the training objective (spec sections 3-7).

`XR0Model` adds the Qwen3-VL backbone on top; the DynReach benchmark pairs the same expert with a
small conv encoder. Both produce a `VLMContext`, so every arm runs these exact code paths.

Axes: B batch, L prompt length, T chunk length, p prefix length, S = 2 + T, D DiT width,
A action dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xr0lab.config import ModeConfig, XR0Config
from xr0lab.model.dit import DiT, MLPProjector, TimestepEmbedder
from xr0lab.flow import FlowTrace, Integrator, integrate, interpolate, sample_time
from xr0lab.inspect.hooks import HookedMixin, HookPoint, name_hook_points
from xr0lab.model.masks import TokenLayout, dit_attention_mask, sample_hidden_prefix
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


@dataclass(frozen=True)
class LossOutput:
    """The training objective and its parts (spec section 7)."""

    loss: torch.Tensor
    mse: torch.Tensor  # weighted MSE over valid entries at positions >= p
    freq: torch.Tensor  # frequency-domain term (already times per-sample mean weight)
    prefix_length: int
    t: torch.Tensor  # (B * repeat,) flow times used
    weights: torch.Tensor | None  # (B * repeat, T - p, A) clamped L1 weights, None when w = 1
    hidden_prefix: torch.Tensor | None  # (p,) prefix columns hidden from noisy rows


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

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (B, S, h) for DiT positions (3, B, S). XR0Model uses the VLM's own module."""
        v = self.config.vlm
        return rope_cos_sin(positions, v.head_dim, v.rope_theta, v.mrope_section, self.dtype)

    def prepare(self, context: VLMContext, state: torch.Tensor, chunk_length: int, *,
                prefix_length: int = 0, mode: ModeConfig | None = None,
                hidden_prefix: torch.Tensor | None = None) -> DenoiseSetup:
        mode = mode or self.config.mode
        if len(context.keys) != self.config.dit.num_layers:
            # An all-layer context (prefill(..., keep_all_layers=True)) would silently feed DiT
            # layer i from VLM layer i; it must be remapped first.
            raise ValueError(f"context holds K/V for {len(context.keys)} VLM layers "
                             f"{context.vlm_layers} but the DiT has {self.config.dit.num_layers} "
                             "layers; pick one entry per DiT layer with "
                             "xr0lab.inspect.analysis.remap_context")
        positions = dit_positions(context.positions, context.prompt_mask, chunk_length,
                                  prefix_length=prefix_length, rope_offset=mode.rope_offset)
        positions = self.hook_dit_positions(positions)
        cos, sin = self.rotary(positions)
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
        for i, layer in enumerate(self.dit.layers):
            h = layer(h, t_emb, setup.cos, setup.sin, context.keys[i], context.values[i], setup.mask)
        return self.action_output_layer(h[:, 2:]).to(x.dtype)

    def _flow_observer(self):
        return self.flow.observe if any(h.active for h in self.flow.children()) else None

    def sample(self, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor, *,
               noise: torch.Tensor, num_steps: int | None = None,
               prefix: torch.Tensor | None = None, prefix_length: int = 0,
               mode: ModeConfig | None = None, method: Integrator = "euler",
               record: bool = False, hidden_prefix: torch.Tensor | None = None
               ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
        """Integrate the flow from noise (B, T, A) to normalised actions against one context."""
        num_steps = num_steps or self.config.flow.num_steps
        setup = self.prepare(context, state, noise.shape[1], prefix_length=prefix_length,
                             mode=mode, hidden_prefix=hidden_prefix)
        out = integrate(lambda x, t: self.denoise_step(setup, context, x, t, action_mask), noise,
                        num_steps, prefix=prefix, prefix_length=prefix_length, method=method,
                        record=record, observer=self._flow_observer())
        if record:
            actions, trace = out
            return self.hook_actions(actions), trace
        return self.hook_actions(out)

    # -- training ----------------------------------------------------------------------------
    def sample_prefix_length(self, chunk_length: int,
                             generator: torch.Generator | None = None) -> int:
        """One draw per forward call, shared by the batch (spec section 7)."""
        if not self.config.mode.supports_prefix:
            return 0
        tr = self.config.train
        hi = min(tr.max_prefix, chunk_length)
        if tr.prefix_schedule == "paper":  # p ~ U{0..6}
            return int(torch.randint(0, hi + 1, (1,), generator=generator))
        if hi < 1 or float(torch.rand(1, generator=generator)) >= tr.prefix_probability:
            return 0
        return int(torch.randint(1, hi + 1, (1,), generator=generator))

    def flow_loss(self, context: VLMContext, actions: torch.Tensor, action_mask: torch.Tensor,
                  state: torch.Tensor, *, generator: torch.Generator | None = None,
                  prefix_length: int | None = None, t: torch.Tensor | None = None,
                  noise: torch.Tensor | None = None) -> LossOutput:
        """0.5 * weighted_mse + c_freq * freq_loss, with prefixes, hiding and L1 reweighting.

        `prefix_length`, `t` and `noise` override the random draws (t and noise are per repeated
        sample, (B * repeat,) and (B * repeat, T, A)).
        """
        cfg, tr = self.config, self.config.train
        r = tr.training_repeat
        context = context.repeat_interleave(r)
        actions, action_mask, state = (x.repeat_interleave(r, dim=0)
                                       for x in (actions, action_mask, state))
        B, T, A = actions.shape
        p = self.sample_prefix_length(T, generator) if prefix_length is None else prefix_length
        if p and not cfg.mode.supports_prefix:
            raise ValueError(f"prefix_length={p} needs mode 'xr0-async'; config mode is "
                             f"{cfg.mode.mode!r}")
        if not 0 <= p <= T:
            raise ValueError(f"prefix_length must be in [0, {T}], got {p}")
        hidden = None
        if cfg.mode.prefix_hiding and p > tr.hide_keep_last:
            hidden = sample_hidden_prefix(p, keep_last=tr.hide_keep_last,
                                          probability=tr.hide_probability, generator=generator)
        if noise is None:
            noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype,
                                device=actions.device)
        if t is None:
            f = cfg.flow
            t = sample_time(B, f.time_sampling, alpha=f.beta_alpha, beta=f.beta_beta,
                            scale=f.time_scale, generator=generator).to(actions.device)
        x_t = interpolate(noise, actions, t)
        u = actions - noise
        x_in = torch.cat([actions[:, :p], x_t[:, p:]], dim=1)
        setup = self.prepare(context, state, T, prefix_length=p, hidden_prefix=hidden)
        v = self.denoise_step(setup, context, x_in, t, action_mask)

        valid = action_mask[:, p:].to(v.dtype)
        weights = None
        w = torch.ones_like(valid)
        if p > 0 and tr.reweight:
            with torch.no_grad():
                generated = integrate(
                    lambda x, tt: self.denoise_step(setup, context, x, tt, action_mask),
                    noise, cfg.flow.num_steps, prefix=actions, prefix_length=p)
            w = (generated[:, p:] - actions[:, p:]).abs()
            w = w / ((w * valid).sum() / valid.sum().clamp_min(1)).clamp_min(1e-12)
            w = weights = w.clamp(*tr.weight_clamp)
        mse = ((v[:, p:] - u[:, p:]) ** 2 * w * valid).sum() / valid.sum().clamp_min(1)

        freq = torch.zeros((), device=v.device)
        if tr.freq_coef and T - p > 0:
            vv, uu = v[:, p:].float(), u[:, p:].float()
            if tr.mask_freq_padding:
                vv, uu = vv * valid, uu * valid
            per_sample = (torch.fft.rfft(vv, dim=1) - torch.fft.rfft(uu, dim=1)).abs().mean((1, 2))
            sample_w = (w * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1)
            freq = (per_sample * sample_w).mean()
        loss = tr.mse_coef * mse + tr.freq_coef * freq
        return LossOutput(loss=loss, mse=mse, freq=freq, prefix_length=p, t=t, weights=weights,
                          hidden_prefix=hidden)
