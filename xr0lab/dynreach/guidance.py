"""Inference-time guidance toward a committed remainder: the sampler of arm A2 (IT-RTC).

Axis legend: B batch, H chunk length, R committed actions (R <= H), A action dims.
"""

from __future__ import annotations

import torch

from xr0lab.model.vlm import VLMContext


def guided_sample(expert, context: VLMContext, state: torch.Tensor, action_mask: torch.Tensor,
                  noise: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                  num_steps: int, max_guidance: float = 5.0) -> torch.Tensor:
    """Inference-time real-time chunking (arm A2): Euler flow with a guidance term that pulls
    the one-step clean estimate toward the committed remainder.

    With xr0lab's convention (t = 0 noise, t = 1 data) the clean estimate is
    x1 = x + (1 - t) v; the correction is g = [(Y - x1) * W]^T dx1/dx (one VJP per step), added
    with weight min(beta, (1 - t) / (t r^2)), r^2 = (1 - t)^2 / (t^2 + (1 - t)^2), beta = 5
    (the guidance clip). target: (B, R, A) normalised, R <= H; weights (H,) zero past R.
    """
    B, H, A = noise.shape
    Y = torch.zeros(B, H, A)
    R = min(target.shape[1], H)
    Y[:, :R] = target[:, :R]
    W = weights.view(1, H, 1) * action_mask
    setup = expert.prepare(context, state, H)
    x = noise.clone()
    dt = 1.0 / num_steps
    for k in range(num_steps):
        t = k * dt
        tt = torch.full((B,), t)
        x = x.detach().requires_grad_(True)
        v = expert.denoise_step(setup, context, x, tt, action_mask)
        x1 = x + (1 - t) * v
        (g,) = torch.autograd.grad(x1, x, grad_outputs=(Y - x1.detach()) * W)
        r2 = (1 - t) ** 2 / (t ** 2 + (1 - t) ** 2)
        scale = max_guidance if t == 0 else min(max_guidance, (1 - t) / (t * r2))
        x = (x + dt * (v + scale * g)).detach()
    return x
