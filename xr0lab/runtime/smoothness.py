"""Smoothness metrics of executed action sequences, defined once (docs/dynreach.md §6.3).

Every metric works on actions shaped (..., T, A): T ticks, A action dims, any leading batch axes
(episodes). Distances are the Euclidean norm over the action vector of the per-tick difference,
|Δa_t| = ||a_t - a_{t-1}||_2, and means are taken over every (episode, tick) pair, so a batch of
episodes gives one pooled number. Inputs may be numpy arrays or torch tensors; results are floats.

A seam is a tick t whose action comes from a different source than tick t - 1 (another chunk, or
a hold): `seams[..., t]` marks the difference a_t - a_{t-1}. Holds count as a source of their own,
so a stop-and-go controller is charged for stopping and for restarting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _actions(actions: Any) -> np.ndarray:
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().double().numpy()
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"actions must be shaped (..., T, A), got shape {a.shape}")
    return a


def _seams(seams: Any, a: np.ndarray) -> np.ndarray:
    if isinstance(seams, torch.Tensor):
        seams = seams.detach().cpu().numpy()
    m = np.asarray(seams)
    if m.dtype != np.bool_:
        raise ValueError(f"seams must be a boolean mask shaped (..., T), got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, a.shape[:-1])
    except ValueError:
        raise ValueError(f"seams shape {m.shape} does not broadcast to the actions' (..., T) = "
                         f"{a.shape[:-1]}") from None
    if m[..., 0].any():
        raise ValueError("seams[..., 0] is True, but tick 0 has no previous action to jump from")
    return m[..., 1:]


def step_norms(actions: Any) -> np.ndarray:
    """||a_t - a_{t-1}||_2 for t = 1..T-1, shape (..., T - 1)."""
    a = _actions(actions)
    return np.linalg.norm(np.diff(a, axis=-2), axis=-1)


def seams_from_chunk_ids(chunk_ids: Any) -> np.ndarray:
    """Boolean (..., T): True where the source differs from the previous tick's (-1 = hold)."""
    ids = np.asarray(chunk_ids)
    out = np.zeros(ids.shape, dtype=bool)
    out[..., 1:] = ids[..., 1:] != ids[..., :-1]
    return out


def boundary_discontinuity_ratio(actions: Any, seams: Any) -> float:
    """mean |Δa| at seams / mean |Δa| at the other ticks.

    1 means switching chunks is as smooth as running within one; nan when either set is empty;
    inf when the actions never move except at seams.
    """
    a = _actions(actions)
    return _ratio(step_norms(a), _seams(seams, a))


def _ratio(d: np.ndarray, m: np.ndarray) -> float:
    if not m.any() or m.all():
        return float("nan")
    at, elsewhere = d[m].mean(), d[~m].mean()
    if elsewhere == 0:
        return float("inf") if at > 0 else float("nan")
    return float(at / elsewhere)


def jerk(actions: Any) -> float:
    """mean ||a_{t+1} - 2 a_t + a_{t-1}||_2 over t = 1..T-2 (nan when T < 3)."""
    a = _actions(actions)
    if a.shape[-2] < 3:
        return float("nan")
    second = a[..., 2:, :] - 2 * a[..., 1:-1, :] + a[..., :-2, :]
    return float(np.linalg.norm(second, axis=-1).mean())


def max_seam_jump(actions: Any, seams: Any) -> float:
    """max |Δa| over seams (0 when there is no seam)."""
    a = _actions(actions)
    return _max_jump(step_norms(a), _seams(seams, a))


def _max_jump(d: np.ndarray, m: np.ndarray) -> float:
    return float(d[m].max()) if m.any() else 0.0


@dataclass(frozen=True)
class Smoothness:
    """All smoothness metrics of one action sequence (or pooled batch)."""

    boundary_ratio: float
    jerk: float
    max_seam_jump: float
    mean_step: float      # mean |Δa| over all ticks
    n_seams: int


def smoothness(actions: Any, seams: Any) -> Smoothness:
    """The metrics above in one record (seams validated and |Δa| computed once)."""
    a = _actions(actions)
    m, d = _seams(seams, a), step_norms(a)
    return Smoothness(boundary_ratio=_ratio(d, m), jerk=jerk(a), max_seam_jump=_max_jump(d, m),
                      mean_step=float(d.mean()) if d.size else float("nan"),
                      n_seams=int(m.sum()))
