"""The DynReach renderer: RGB images of episodes at their ticks, vectorised over N.

Axis legend: N episodes, S image side in pixels, 3 = RGB.

Pixel convention: pixel (row i, column j) has its centre at x = (j + 0.5) / S,
y = 1 - (i + 0.5) / S, i.e. images are drawn with y up, as `imshow` shows them. Blobs are
anti-aliased with a one-pixel ramp across the rim.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from xr0lab.dynreach.physics import WALL_HALF_LENGTH, WALL_HALF_THICKNESS
from xr0lab.dynreach.scenarios import LAMP_CENTRE, Episodes

AGENT_RADIUS = 0.035
TARGET_RADIUS = 0.045
LAMP_RADIUS = 0.05

BACKGROUND = np.array([0.08, 0.08, 0.10], np.float32)
AGENT_COLOUR = np.array([1.0, 1.0, 1.0], np.float32)
TARGET_COLOUR = np.array([0.15, 0.85, 0.25], np.float32)
WALL_COLOUR = np.array([0.75, 0.55, 0.20], np.float32)
CUE_COLOURS = np.array([[0.95, 0.15, 0.15], [0.20, 0.35, 1.0]], np.float32)  # S2: red, blue


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c, 1.0 - c  # x of columns, y of rows


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composite `colour` ((3,) or (N, 3)) over img (N, S, S, 3) in place."""
    colour = np.broadcast_to(np.asarray(colour, np.float32), (img.shape[0], 3))
    img += alpha[..., None] * (colour[:, None, None, :] - img)


def _disc_alpha(centre: np.ndarray, radius: float, size: int) -> np.ndarray:
    """(N, S, S) coverage of discs: a one-pixel linear ramp across the rim (anti-aliasing)."""
    xs, ys = _grid(size)
    c = centre.astype(np.float32)
    dx2 = (xs[None, None, :] - c[:, 0, None, None]) ** 2   # (N, 1, S)
    dy2 = (ys[None, :, None] - c[:, 1, None, None]) ** 2   # (N, S, 1)
    return np.clip((radius - np.sqrt(dx2 + dy2)) * size + 0.5, 0.0, 1.0)


def _wall_alpha(centre: np.ndarray, axis: np.ndarray, size: int) -> np.ndarray:
    xs, ys = _grid(size)
    c, e = centre.astype(np.float32), axis.astype(np.float32)
    px = xs[None, None, :] - c[:, 0, None, None]
    py = ys[None, :, None] - c[:, 1, None, None]
    u = px * e[:, 0, None, None] + py * e[:, 1, None, None]
    v = -px * e[:, 1, None, None] + py * e[:, 0, None, None]
    qx, qy = np.abs(u) - WALL_HALF_LENGTH, np.abs(v) - WALL_HALF_THICKNESS
    sdf = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    return np.clip(0.5 - sdf * size, 0.0, 1.0)


ImageDtype = Literal["uint8", "float32"]  # uint8 in [0, 255] or float32 in [0, 1]

def render(episodes: Episodes, ticks: np.ndarray, positions: np.ndarray, size: int = 64,
           dtype: ImageDtype = "uint8") -> np.ndarray:
    """Images (N, S, S, 3) of each episode at its own tick with the agent at `positions`.

    uint8 in [0, 255] or float32 in [0, 1]. Draw order: targets, lamp, wall, agent on top.
    """
    if size < 8:
        raise ValueError(f"render: size must be >= 8 pixels, got {size}")
    if dtype not in get_args(ImageDtype):
        raise ValueError(f"render: dtype must be 'uint8' or 'float32', got {dtype!r}")
    n = episodes.n
    ticks = np.broadcast_to(np.asarray(ticks, np.int64), (n,))
    positions = np.asarray(positions, np.float32)
    if positions.shape != (n, 2):
        raise ValueError(f"render: positions must have shape ({n}, 2), got {positions.shape}")
    img = np.empty((n, size, size, 3), np.float32)
    img[:] = BACKGROUND
    rows = np.arange(n)
    if episodes.scenario == "S2":
        for j in range(2):
            _paint(img, _disc_alpha(episodes.targets[:, j], TARGET_RADIUS, size), CUE_COLOURS[j])
        lamp = np.broadcast_to(np.array(LAMP_CENTRE), (n, 2))
        colour = CUE_COLOURS[episodes.lamp[rows, np.minimum(ticks, episodes.ticks)]]
        _paint(img, _disc_alpha(lamp, LAMP_RADIUS, size), colour)
    else:
        _paint(img, _disc_alpha(episodes.goal_at(ticks), TARGET_RADIUS, size), TARGET_COLOUR)
    if episodes.wall_centre is not None:
        on = episodes.wall_on(ticks)
        if on.any():
            alpha = _wall_alpha(episodes.wall_centre, episodes.wall_axis, size)
            _paint(img, alpha * on[:, None, None], WALL_COLOUR)
    _paint(img, _disc_alpha(positions, AGENT_RADIUS, size), AGENT_COLOUR)
    if dtype == "float32":
        return img
    return np.round(img * 255.0).astype(np.uint8)
