"""Flow matching: the path, time sampling and integrators (docs/architecture.md §6).

Convention, everywhere in xr0lab: **t = 0 is noise, t = 1 is data.**
  x_t = (1 - t) * noise + t * actions,   u = d x_t / dt = actions - noise.
The one-step clean estimate from (x_t, v) is x_t + (1 - t) * v.

Axes: B batch, T chunk length, A action dims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch

from xr0lab.config import TimeSampling

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B,T,A), t (B,)) -> v
Observer = Callable[[str, torch.Tensor], torch.Tensor]
Integrator = Literal["euler", "midpoint", "heun"]


def interpolate(noise: torch.Tensor, actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t on the straight path; t is (B,)."""
    t = t.view(-1, *([1] * (noise.dim() - 1))).to(noise.dtype)
    return (1 - t) * noise + t * actions


def target_velocity(noise: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return actions - noise


def clean_estimate(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One-step estimate of the data endpoint: integrate the current velocity to t = 1."""
    t = t.view(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
    return x_t + (1 - t) * v


def sample_time(batch_size: int, kind: TimeSampling = "beta", *, alpha: float = 1.5,
                beta: float = 1.0, scale: float = 0.999,
                generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Training times (B,).

    beta (released): u ~ Beta(alpha, beta), t = scale * (1 - u) — favours noisy t (mean ~0.4).
    logit_normal: t = sigmoid(N(0, 1)). uniform: t ~ U(0, 1).
    """
    if kind == "beta":
        # Beta sampling through two Gamma draws keeps the caller's generator in charge.
        ga = _gamma(alpha, batch_size, generator, device)
        gb = _gamma(beta, batch_size, generator, device)
        u = ga / (ga + gb)
        return scale * (1 - u)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(batch_size, generator=generator, device=device))
    if kind == "uniform":
        return torch.rand(batch_size, generator=generator, device=device)
    raise ValueError(f"unknown time sampling {kind!r}; expected beta, logit_normal or uniform")


def _gamma(shape: float, n: int, generator: torch.Generator | None,
           device: torch.device | str | None) -> torch.Tensor:
    """Marsaglia-Tsang Gamma(shape, 1) sampler driven by `generator` (torch's own Gamma ignores
    generators). Boosts shape < 1 with the U^(1/shape) trick."""
    boost = shape < 1
    k = shape + 1 if boost else shape
    d = k - 1 / 3
    c = 1 / math.sqrt(9 * d)
    out = torch.empty(n, device=device)
    todo = torch.ones(n, dtype=torch.bool, device=device)
    while todo.any():
        m = int(todo.sum())
        x = torch.randn(m, generator=generator, device=device)
        v = (1 + c * x) ** 3
        u = torch.rand(m, generator=generator, device=device)
        ok = (v > 0) & (torch.log(u) < 0.5 * x ** 2 + d - d * v + d * torch.log(v.clamp_min(1e-12)))
        idx = todo.nonzero().squeeze(1)
        out[idx[ok]] = (d * v)[ok]
        todo[idx[ok]] = False
    if boost:
        out = out * torch.rand(n, generator=generator, device=device) ** (1 / shape)
    return out


@dataclass(frozen=True)
class FlowTrace:
    """What the integrator saw at each step k (leading axis = step, N entries).

    t: (N,), x_t: (N, B, T, A) the state entering step k, velocity: (N, B, T, A),
    clean_estimate: (N, B, T, A), x_next: (N, B, T, A).
    """

    t: torch.Tensor
    x_t: torch.Tensor
    velocity: torch.Tensor
    clean_estimate: torch.Tensor
    x_next: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.t.shape[0])


def integrate(velocity_fn: VelocityFn, noise: torch.Tensor, num_steps: int, *,
              prefix: torch.Tensor | None = None, prefix_length: int = 0,
              method: Integrator = "euler", record: bool = False,
              observer: Observer | None = None, time_dtype: torch.dtype = torch.float32
              ) -> torch.Tensor | tuple[torch.Tensor, FlowTrace]:
    """Integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 on a uniform grid t_k = k / N.

    With a clean prefix, x[:, :p] is set to prefix[:, :p] before the first step and the velocity
    there is forced to 0, so every integrator keeps the prefix exactly.
    Euler is the released sampler: x <- x + v(x, k/N) / N.
    `observer(name, tensor)` sees (and may replace) "t", "x_t", "velocity", "clean_estimate" and
    "x_next" once per step; the model routes it to its flow hook points.
    The state x stays in the dtype of `noise`; t is built in `time_dtype` (float32, or the model
    dtype for the released numerics, where bf16 rounds t_k = 0.2, 0.4, ... to 0.2002, 0.4004, ...).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if method not in get_args(Integrator):
        raise ValueError(f"unknown integrator {method!r}; expected euler, midpoint or heun")
    x = noise
    p = prefix_length
    if p:
        if prefix is None or prefix.shape[1] < p:
            raise ValueError(f"prefix_length={p} needs a prefix with at least {p} steps, got "
                             f"{None if prefix is None else tuple(prefix.shape)}")
        x = torch.cat([prefix[:, :p].to(noise.dtype), noise[:, p:]], dim=1)

    def vel(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        v = velocity_fn(x_, t_)
        if p:
            v = torch.cat([torch.zeros_like(v[:, :p]), v[:, p:]], dim=1)
        return v

    def full(t_: float) -> torch.Tensor:
        return torch.full((x.shape[0],), t_, dtype=time_dtype, device=x.device)

    observe = observer or (lambda name, tensor: tensor)
    dt = 1.0 / num_steps
    rec: dict[str, list] = {k: [] for k in ("t", "x_t", "velocity", "clean_estimate", "x_next")}
    for k in range(num_steps):
        t = observe("t", full(k * dt))
        x = observe("x_t", x)
        v = observe("velocity", vel(x, t))
        if method == "euler":
            x_next = x + dt * v
        elif method == "midpoint":
            x_next = x + dt * vel(x + 0.5 * dt * v, t + 0.5 * dt)
        else:  # heun
            x_next = x + 0.5 * dt * (v + vel(x + dt * v, t + dt))
        estimate = observe("clean_estimate", clean_estimate(x, v, t))
        x_next = observe("x_next", x_next)
        if record:
            rec["t"].append(t[0].detach().clone())
            rec["x_t"].append(x)
            rec["velocity"].append(v)
            rec["clean_estimate"].append(estimate)
            rec["x_next"].append(x_next)
        x = x_next
    if not record:
        return x
    trace = FlowTrace(**{k: torch.stack(v) for k, v in rec.items()})
    return x, trace
