"""A scripted 2-D pursuit scene for showing execution modes (notebooks, tests).

A point agent follows velocity commands (x_{t+1} = x_t + a_t); the target jumps once. The
scripted policy plans a rate-limited pursuit from the observed position and adds a smooth
per-chunk wobble, standing in for the sample-to-sample variation of a generative policy: without
a prefix, consecutive chunks disagree where they meet, which is what chunk seams look like.
The observation holds position and target only (no velocity, no last action), as in DynReach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xr0lab.runtime.executor import ChunkExecutor
from xr0lab.runtime.scheduler import Timeline
from xr0lab.runtime.config import ExecutorConfig
from xr0lab.runtime.delays import DelayModel


@dataclass(frozen=True)
class PursuitScene:
    """Start, a target that jumps at `jump_tick`, and the episode length."""

    start: tuple[float, float] = (0.2, 0.2)
    target: tuple[float, float] = (0.8, 0.5)
    jumped_target: tuple[float, float] = (0.3, 0.8)
    jump_tick: int = 45
    n_ticks: int = 120

    def target_at(self, tick: int) -> np.ndarray:
        return np.asarray(self.jumped_target if tick >= self.jump_tick else self.target)


@dataclass(frozen=True)
class PursuitPolicy:
    """Chunk policy for `PursuitScene`; honours a hard prefix exactly and blends out of it.

    Plans velocities toward the target (speed gain * distance, capped at v_max), changing by at
    most `accel` per tick. Without a prefix the plan starts at the desired velocity (the agent's
    current velocity is not observed); with one, it plans from where the prefix leaves the agent
    and fades the mismatch with the prefix's last action out, and its own wobble in, over
    `blend` ticks. The wobble (amplitude `wobble`, phase drawn from (seed, observation tick), so
    every mode sees the same draws at the same tick) makes independent chunks disagree.
    """

    chunk_length: int = 16
    gain: float = 0.15
    v_max: float = 0.02
    accel: float = 0.004
    wobble: float = 0.004
    blend: int = 6
    seed: int = 0

    def _desired(self, x: np.ndarray, goal: np.ndarray) -> np.ndarray:
        err = goal - x
        dist = float(np.linalg.norm(err))
        return np.zeros(2) if dist < 1e-9 else err / dist * min(self.v_max, self.gain * dist)

    def __call__(self, observation: dict, prefix: Any, prefix_length: int,
                 prefix_weights: Any = None) -> np.ndarray:
        rng = np.random.default_rng((self.seed, int(observation["tick"])))
        H, L = self.chunk_length, prefix_length
        x, goal = np.array(observation["position"], float), np.asarray(observation["target"])
        out = np.zeros((H, 2))
        offset = np.zeros(2)
        if L:
            out[:L] = prefix[:L]
            x = x + out[:L].sum(0)
            # Plan afresh from where the prefix leaves the agent, and fade out the disagreement
            # between the prefix's last action and the fresh plan: continuity, not copying.
            offset = out[L - 1] - self._desired(x, goal)
        v = self._desired(x, goal)
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.3)
        for j in range(L, H):
            fade = min(1.0, (j - L + 1) / self.blend) if L else 1.0
            out[j] = v + (1 - fade) * offset + fade * self.wobble * np.sin(freq * j + phase)
            x = x + out[j]
            v = v + np.clip(self._desired(x, goal) - v, -self.accel, self.accel)
        return out


class IndexPolicy:
    """Chunk c (the c-th call) holds 100 * c + j at index j in every dim, so an executed value
    names where it came from; a hard prefix is copied in, as a prefix-trained policy would."""

    def __init__(self, chunk_length: int = 8, action_dim: int = 1) -> None:
        self.chunk_length = chunk_length
        self.action_dim = action_dim
        self.calls = 0

    def __call__(self, observation: Any, prefix: Any, prefix_length: int,
                 prefix_weights: Any = None) -> np.ndarray:
        c, self.calls = self.calls, self.calls + 1
        out = np.repeat((100.0 * c + np.arange(self.chunk_length))[:, None], self.action_dim, 1)
        if prefix_length:
            out[:prefix_length] = prefix[:prefix_length]
        return out


@dataclass(frozen=True)
class SceneRun:
    """Positions (T + 1, 2), executed actions (T, 2) and the executor's timeline."""

    positions: np.ndarray
    actions: np.ndarray
    timeline: Timeline


def run_scene(scene: PursuitScene, policy: Any, config: ExecutorConfig,
              delays: DelayModel | None = None) -> SceneRun:
    """Drive `policy` through a virtual-clock `ChunkExecutor` in `scene`."""
    executor = ChunkExecutor(policy, config, delays=delays)
    x = np.asarray(scene.start, dtype=float)
    positions = [x]
    for t in range(scene.n_ticks):
        a = executor.step(lambda: {"tick": t, "position": x.copy(), "target": scene.target_at(t)})
        x = x + np.asarray(a, dtype=float)
        positions.append(x)
    timeline = executor.timeline()
    return SceneRun(np.stack(positions), np.asarray(timeline.actions), timeline)
