"""The xr0-async post-training objective (docs/architecture.md §7): prefix schedule, prefix hiding,
L1 reweighting from a no-grad generation, and the frequency-domain term.

    loss = mse_coef * weighted_mse + freq_coef * freq_loss

Axes: B batch (times `training_repeat`), T chunk length, p prefix length, A action dims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from xr0lab.config import XR0Config
from xr0lab.flow import integrate, interpolate, sample_time, target_velocity
from xr0lab.model.masks import sample_hidden_prefix
from xr0lab.model.vlm import VLMContext

if TYPE_CHECKING:
    from xr0lab.model.expert import FlowActionExpert


@dataclass(frozen=True)
class LossOutput:
    """The training objective and its parts (docs/architecture.md §7)."""

    loss: torch.Tensor
    mse: torch.Tensor  # weighted MSE over valid entries at positions >= p
    freq: torch.Tensor  # frequency-domain term (already times per-sample mean weight)
    prefix_length: int
    t: torch.Tensor  # (B * repeat,) flow times used
    # (B * repeat, T - p, A) clamped L1 weights (normalised on valid entries, raw on padded
    # dims, as released), None when w = 1
    weights: torch.Tensor | None
    hidden_prefix: torch.Tensor | None  # (p,) prefix columns hidden from noisy rows


def sample_prefix_length(config: XR0Config, chunk_length: int,
                         generator: torch.Generator | None = None) -> int:
    """One draw per forward call, shared by the batch (docs/architecture.md §7).

    "released": p = 0 with probability 1 - prefix_probability, else p ~ U{1..min(max_prefix, T)}.
    "paper": p ~ U{0..min(max_prefix, T)}. Release mode never uses a prefix.
    """
    if not config.mode.supports_prefix:
        return 0
    tr = config.train
    hi = min(tr.max_prefix, chunk_length)
    if tr.prefix_schedule == "paper":  # p ~ U{0..6}
        return int(torch.randint(0, hi + 1, (1,), generator=generator))
    if hi < 1 or float(torch.rand(1, generator=generator)) >= tr.prefix_probability:
        return 0
    return int(torch.randint(1, hi + 1, (1,), generator=generator))


def flow_loss(expert: FlowActionExpert, context: VLMContext, actions: torch.Tensor,
              action_mask: torch.Tensor, state: torch.Tensor, *,
              generator: torch.Generator | None = None, prefix_length: int | None = None,
              t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> LossOutput:
    """0.5 * weighted_mse + c_freq * freq_loss, with prefixes, hiding and L1 reweighting.

    `prefix_length`, `t` and `noise` override the random draws (t and noise are per repeated
    sample, (B * repeat,) and (B * repeat, T, A)).
    """
    cfg, tr = expert.config, expert.config.train
    r = tr.training_repeat
    context = context.repeat_interleave(r)
    actions, action_mask, state = (x.repeat_interleave(r, dim=0)
                                   for x in (actions, action_mask, state))
    B, T, A = actions.shape
    p = sample_prefix_length(cfg, T, generator) if prefix_length is None else prefix_length
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
    u = target_velocity(noise, actions)
    x_in = torch.cat([actions[:, :p], x_t[:, p:]], dim=1)  # clean prefix, noisy rest
    # Training uses the precise rotary tables, as the prefill does: release numerics describe
    # the released inference loop only, and mixing the two would rotate prompt and DiT keys
    # with different tables.
    setup = expert.prepare(context, state, T, prefix_length=p, hidden_prefix=hidden,
                           numerics="precise")
    v = expert.denoise_step(setup, context, x_in, t, action_mask)

    valid = action_mask[:, p:].to(v.dtype)
    weights = None
    w = torch.ones_like(valid)
    if p > 0 and tr.reweight:
        # L1 reweighting: where a full generation from the same prefix and noise misses the
        # label, the step is weighted up. As released: divided by the mean over valid entries
        # only where the action mask is on, then clamped everywhere, so padded dims keep their
        # raw clamped |generated - actions| (the MSE masks them out; the frequency term's
        # "released" per-sample weight does not).
        with torch.no_grad():
            generated = integrate(
                lambda x, tt: expert.denoise_step(setup, context, x, tt, action_mask),
                noise, cfg.flow.num_steps, prefix=actions, prefix_length=p)
        w = (generated[:, p:] - actions[:, p:]).abs()
        mean_valid = ((w * valid).sum() / valid.sum().clamp_min(1)).clamp_min(1e-12)
        w = torch.where(valid.bool(), w / mean_valid, w)
        w = weights = w.clamp(*tr.weight_clamp)
    mse = ((v[:, p:] - u[:, p:]) ** 2 * w * valid).sum() / valid.sum().clamp_min(1)

    freq = torch.zeros((), device=v.device)
    if tr.freq_coef and T - p > 0:
        vv, uu = v[:, p:].float(), u[:, p:].float()
        if tr.mask_freq_padding:
            vv, uu = vv * valid, uu * valid
        per_sample = (torch.fft.rfft(vv, dim=1) - torch.fft.rfft(uu, dim=1)).abs().mean((1, 2))
        if tr.freq_weight == "released":
            sample_w = w.mean((1, 2))  # all (T - p) x A entries, padded dims included
        else:
            sample_w = (w * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1)
        freq = (per_sample * sample_w).mean()
    loss = tr.mse_coef * mse + tr.freq_coef * freq
    return LossOutput(loss=loss, mse=mse, freq=freq, prefix_length=p, t=t, weights=weights,
                      hidden_prefix=hidden)
