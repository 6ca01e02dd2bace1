"""Small helpers that treat torch tensors and numpy arrays alike (the executor accepts both)."""

from __future__ import annotations

import numpy as np
import torch

from xr0lab.runtime.records import Array


def copy_array(x: Array) -> Array:
    return x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)


def zeros_like(x: Array) -> Array:
    return torch.zeros_like(x) if isinstance(x, torch.Tensor) else np.zeros_like(x)


def same_values(a: Array, b: Array) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    return False


def max_abs_diff(a: Array, b: Array) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.detach().double() - torch.as_tensor(b).double()).abs().max())
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def like(x: np.ndarray, ref: Array) -> Array:
    return torch.as_tensor(x, device=ref.device) if isinstance(ref, torch.Tensor) else x


def non_finite(x: Array) -> tuple[int, tuple[int, ...]]:
    """How many entries are NaN or inf, and the index of the first (() when there are none)."""
    if isinstance(x, torch.Tensor):
        bad = ~torch.isfinite(x)
        n = int(bad.sum())
        return n, (tuple(bad.nonzero()[0].tolist()) if n else ())
    bad = ~np.isfinite(x)
    n = int(bad.sum())
    return n, (tuple(int(i) for i in np.argwhere(bad)[0]) if n else ())
