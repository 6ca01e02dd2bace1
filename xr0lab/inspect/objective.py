"""The training objective's randomness, made visible: the flow-time sampler, the prefix schedule
and the L1 reweighting weights of a real training step (docs/architecture.md §6-7).

    time_density            the density of the config's Beta time sampler, t = scale (1 - u)
    time_draws              draws from that sampler (`xr0lab.flow.sample_time`), seeded
    prefix_probabilities    P(p = k) under the config's prefix schedule, exactly
    prefix_draws            draws of `xr0lab.model.loss.sample_prefix_length`, seeded
    read_settings           the example model's `ExampleSettings`, from its metrics.json
    prefixed_step           the first training step of a stage whose prefix draw is > 0
    training_step_loss      `compute_loss` on the batch and with the random draws of one
                            training step of the example model (`flow_batch`, `step_generator`)

Axes: B batch, T chunk length, p prefix length, A action dims.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xr0lab.config import XR0Config


def time_density(t: Any, *, alpha: float, beta: float, scale: float = 1.0) -> np.ndarray:
    """Density of t = scale * (1 - u), u ~ Beta(alpha, beta), at `t` (0 outside [0, scale]).

    >>> time_density([0.0, 0.5, 1.0], alpha=1.0, beta=1.0).tolist()    # uniform
    [1.0, 1.0, 1.0]
    >>> time_density([0.25], alpha=2.0, beta=1.0, scale=0.5).round(12).tolist()  # 2u / scale
    [2.0]
    """
    t = np.asarray(t, np.float64)
    u = 1.0 - t / scale
    log_norm = math.lgamma(alpha + beta) - math.lgamma(alpha) - math.lgamma(beta)
    inside = (u >= 0) & (u <= 1)
    # Clipped away from 0 so that an exponent of 0 gives u^0 = 1 at the ends, as it should.
    uc, vc = np.clip(u, 1e-300, 1.0), np.clip(1.0 - u, 1e-300, 1.0)
    log_pdf = log_norm + (alpha - 1) * np.log(uc) + (beta - 1) * np.log(vc)
    return np.where(inside, np.exp(log_pdf) / scale, 0.0)


def time_draws(config: XR0Config, n: int, *, seed: int = 0) -> torch.Tensor:
    """(n,) flow times from the config's sampler (`config.flow`), as training draws them."""
    from xr0lab.flow import sample_time

    f = config.flow
    g = torch.Generator().manual_seed(seed)
    return sample_time(n, f.time_sampling, alpha=f.beta_alpha, beta=f.beta_beta,
                       scale=f.time_scale, generator=g)


def prefix_probabilities(config: XR0Config, chunk_length: int | None = None) -> dict[int, float]:
    """{p: P(p)} of the config's prefix schedule for chunks of `chunk_length` (default the
    config's); release mode: {0: 1.0}.

    >>> from xr0lab.config import preset
    >>> prefix_probabilities(preset("tiny", mode="xr0-async"))
    {0: 0.5, 1: 0.08333333333333333, 2: 0.08333333333333333, 3: 0.08333333333333333,
     4: 0.08333333333333333, 5: 0.08333333333333333, 6: 0.08333333333333333}
    """
    T = config.action.chunk_length if chunk_length is None else chunk_length
    if not config.mode.supports_prefix:
        return {0: 1.0}
    tr = config.train
    hi = min(tr.max_prefix, T)
    if tr.prefix_schedule == "paper":
        return {k: 1.0 / (hi + 1) for k in range(hi + 1)}
    if hi < 1:
        return {0: 1.0}
    q = tr.prefix_probability
    return {0: 1.0 - q, **{k: q / hi for k in range(1, hi + 1)}}


def prefix_draws(config: XR0Config, n: int, *, chunk_length: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """(n,) prefix lengths drawn by `sample_prefix_length` (one per training step), seeded."""
    from xr0lab.model.loss import sample_prefix_length

    T = config.action.chunk_length if chunk_length is None else chunk_length
    g = torch.Generator().manual_seed(seed)
    return np.array([sample_prefix_length(config, T, g) for _ in range(n)])


def read_settings(metrics: Path | str | dict):
    """The `ExampleSettings` a built example model was trained with: its metrics.json (a path,
    or the parsed dict) records them under "settings"."""
    from xr0lab.example.train import ExampleSettings

    record = metrics if isinstance(metrics, dict) else json.loads(Path(metrics).read_text())
    s = dict(record["settings"])
    s["scenarios"] = tuple(s["scenarios"])
    return ExampleSettings(**s)


def _stage_number(stage: str | int) -> int:
    from xr0lab.example.train import STAGES

    if isinstance(stage, str):
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES} or 1-3, got {stage!r}")
        return STAGES.index(stage) + 1
    if stage not in (1, 2, 3):
        raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")
    return int(stage)


def prefixed_step(config: XR0Config, settings: Any, stage: str | int = "stage3", *,
                  start: int = 0, limit: int = 1000) -> int:
    """The first step >= `start` of `stage` whose prefix draw (the first draw training's
    generator makes in `flow_loss`) is > 0: a step with L1 reweighting weights to look at."""
    from xr0lab.dynreach.train import step_generator
    from xr0lab.model.loss import sample_prefix_length

    k = _stage_number(stage)
    for step in range(start, start + limit):
        g = step_generator(settings.seed, k, step)
        if sample_prefix_length(config, settings.chunk_length, g) > 0:
            return step
    raise ValueError(f"no step in [{start}, {start + limit}) of stage {k} draws a prefix; is the "
                     "config in xr0-async mode?")


def training_step_loss(model: Any, data: Any, settings: Any, stage: str | int = "stage3",
                       step: int = 0) -> tuple[Any, np.ndarray]:
    """(LossOutput, batch indices) of `model`'s objective on the batch of training step `step`
    of `stage`, with that step's random draws (prefix length, hiding, times, noise: the
    generator training used, `xr0lab.dynreach.train.step_generator`). The draws are the
    training step's; the weights are `model`'s (e.g. the final ones), so the loss and the L1
    weights are what that batch gives the trained model, not what it gave during training."""
    from xr0lab.dynreach.train import step_generator
    from xr0lab.example.train import flow_batch

    k = _stage_number(stage)
    inputs, actions, idx = flow_batch(model, data, settings, k, step)
    with torch.no_grad():
        out = model.compute_loss(**inputs, actions=actions,
                                 generator=step_generator(settings.seed, k, step))
    return out, idx
