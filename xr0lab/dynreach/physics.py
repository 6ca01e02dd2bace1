"""DynReach dynamics: the command limit, the cup's spill, and the S3 wall.

Axis legend: M rows (episodes or states), 2 = (x, y).

Conventions (docs/dynreach.md §1):
- One tick is 1/30 s. An episode has T actions a_0..a_{T-1} and positions x_0..x_T;
  x_{t+1} = clip(x_t + a_t, 0, 1) after a_t is clipped to |a_t| <= v_max. We clip the *norm*
  (direction preserved) rather than each axis, so a command never changes direction on the way
  to the world.
- Cup mode: spill_t = max(0, |a_t - a_{t-1}| - kappa) with a_{-1} = 0 (episodes start at rest);
  the episode fails once the accumulated spill exceeds `spill_threshold`.
- The wall is a box of half-sizes (WALL_HALF_LENGTH, WALL_HALF_THICKNESS) around a centre, along
  a unit axis; a step that would end inside it is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

V_MAX = 0.03
EPISODE_TICKS = 120
# 1.4 x the expert's largest |Δa| over clean expert rollouts of all four scenarios
# (`xr0lab.dynreach.expert.measure_kappa`, pinned by a test). The bound is the expert's per-axis
# rate limit on both axes at once: 1.4 * 0.006 * sqrt(2) = 0.01188.
DEFAULT_KAPPA = 0.011879393923933998
# One abrupt 90-degree switch at full speed (|Δa| = 0.042) spills 0.03; a reversal spills 0.048.
DEFAULT_SPILL_THRESHOLD = 0.05

WALL_HALF_LENGTH = 0.18
WALL_HALF_THICKNESS = 0.02  # > v_max / 2 so one step can never jump across the wall
# The detour waypoints lie this far beyond a wall end: where the expert heads around the wall
# (`ExpertConfig.detour_clearance` defaults to it), and the two S3 reaction goals.
DETOUR_CLEARANCE = 0.08


def clip_norm(actions: np.ndarray, v_max: float = V_MAX) -> np.ndarray:
    """Scale each 2-D command down to norm <= v_max, keeping its direction.

    Commands already within the limit pass unchanged (bit for bit), so clipping twice -- once
    by the expert, once by the world -- is harmless.

    >>> clip_norm(np.array([[0.06, 0.0], [0.01, 0.0]]))
    array([[0.03, 0.  ],
           [0.01, 0.  ]])
    """
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    # The tolerance absorbs the rounding of a command that was itself just scaled to v_max.
    over = norm > v_max * (1.0 + 1e-9)
    return np.where(over, actions * (v_max / np.maximum(norm, 1e-12)), actions)


def spill_increment(action: np.ndarray, prev_action: np.ndarray, kappa: float) -> np.ndarray:
    """Per-tick spill max(0, |a_t - a_{t-1}| - kappa) over the last axis."""
    return np.maximum(0.0, np.linalg.norm(action - prev_action, axis=-1) - kappa)


@dataclass(frozen=True)
class Wall:
    """Per-row wall geometry: centre (M, 2), unit axis along the wall (M, 2), on (M,) bool."""

    centre: np.ndarray
    axis: np.ndarray
    on: np.ndarray


def wall_frame(points: np.ndarray, centre: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Coordinates (u along the wall, v across it) of points (..., 2) in the wall's frame."""
    rel = points - centre
    return np.stack([rel[..., 0] * axis[..., 0] + rel[..., 1] * axis[..., 1],
                     -rel[..., 0] * axis[..., 1] + rel[..., 1] * axis[..., 0]], axis=-1)


def inside_wall(points: np.ndarray, centre: np.ndarray, axis: np.ndarray,
                margin: float = 0.0) -> np.ndarray:
    uv = wall_frame(points, centre, axis)
    return ((np.abs(uv[..., 0]) <= WALL_HALF_LENGTH + margin)
            & (np.abs(uv[..., 1]) <= WALL_HALF_THICKNESS + margin))


def advance(positions: np.ndarray, actions: np.ndarray, wall: Wall | None = None) -> np.ndarray:
    """x_{t+1} from x_t and an already-clipped a_t.

    Collision is kept deliberately simple: a step whose end point would lie inside an active
    wall is rejected (the agent stays put). The wall is thicker than one maximal step, so no
    step can tunnel through it; grazing a corner is allowed.
    """
    new = np.clip(positions + actions, 0.0, 1.0)
    if wall is not None:
        blocked = wall.on & inside_wall(new, wall.centre, wall.axis)
        new = np.where(blocked[..., None], positions, new)
    return new


def detour_waypoints(centre: np.ndarray, axis: np.ndarray, clearance: float) -> np.ndarray:
    """(M, 2, 2): the two detour waypoints [toward -axis, toward +axis] past the wall ends."""
    offset = (WALL_HALF_LENGTH + clearance) * axis
    return np.stack([centre - offset, centre + offset], axis=-2)
