"""Per-robot action statistics and the state vector: the action width D, the active-dimension
rule (std > 1e-5), plausible example statistics, and explicit zero-padding of a state.

Source: the released inference code (`get_action_mask`, `decode_action`). Nothing is silently
padded: states must hold exactly D values, and `pad_state` is the explicit way to get there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

ACTION_DIM = 32
STD_EPS = 1e-5  # a dimension is active iff its std exceeds this (released rule)


def default_action_config(robot_types: Mapping[str, int] | None = None,
                          action_dim: int = ACTION_DIM, active_dims: int = 7,
                          seed: int = 0) -> dict[str, dict[str, list]]:
    """Plausible per-step statistics for fixtures and examples (not released values).

    Each robot type gets mean/std of shape (T, action_dim); only the first `active_dims` dims
    have std > 1e-5 (a 6-DoF delta + gripper by default), the rest std = 0, so they are masked.
    """
    if robot_types is None:
        robot_types = {"libero_all": 10, "bridge_delta": 4}
    if not 0 <= active_dims <= action_dim:
        raise ValueError(f"active_dims must lie in [0, action_dim={action_dim}], got {active_dims}")
    rng = np.random.default_rng(seed)
    config = {}
    for name, horizon in robot_types.items():
        if int(horizon) < 1:
            raise ValueError(f"robot type {name!r} needs a horizon >= 1, got {horizon}")
        mean = np.zeros((horizon, action_dim), np.float32)
        std = np.zeros((horizon, action_dim), np.float32)
        # Stats drift slowly along the chunk, as real per-step statistics do.
        base_mean = rng.normal(0.0, 0.05, active_dims)
        base_std = rng.uniform(0.05, 0.5, active_dims)
        growth = 1.0 + 0.5 * np.linspace(0.0, 1.0, horizon)[:, None]
        mean[:, :active_dims] = base_mean * growth
        std[:, :active_dims] = base_std * growth
        config[name] = {"mean": mean.tolist(), "std": std.tolist()}
    return config


def _as_float_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float()
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like numbers; got {type(value).__name__}") from exc


def pad_state(state: Any, width: int = ACTION_DIM) -> Any:
    """Zero-pad the last axis of a state to `width` (the explicit form of the released
    "zero-padded" state). Returns the input's type (numpy or torch)."""
    is_tensor = isinstance(state, torch.Tensor)
    array = state if is_tensor else np.asarray(state, dtype=np.float32)
    have = array.shape[-1]
    if have > width:
        raise ValueError(f"state has {have} values on its last axis, more than width={width}")
    if is_tensor:
        return torch.nn.functional.pad(array, (0, width - have))
    return np.pad(array, [(0, 0)] * (array.ndim - 1) + [(0, width - have)])


__all__ = ["ACTION_DIM", "STD_EPS", "default_action_config", "pad_state"]
