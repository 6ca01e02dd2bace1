"""One sample of a possibly batched tensor, as float on the CPU: what a plot draws."""

from __future__ import annotations

import torch


def one_sample(x: torch.Tensor, ndim: int, sample: int) -> torch.Tensor:
    """`x[sample]` when `x` has a batch axis in front of `ndim` axes, else `x`; detached float CPU."""
    x = x.detach().float().cpu()
    return x[sample] if x.dim() == ndim + 1 else x
