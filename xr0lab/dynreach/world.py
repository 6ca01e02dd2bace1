"""The DynReach environment: a point agent in the unit square, batched over N episodes.

Axis legend: N episodes (environments), T ticks (episode_ticks = 120), S image side in pixels,
2 = (x, y). The dynamics are in `physics`, the episode scripts in `scenarios`, the images in
`render`; this module steps them together and keeps the outcomes.

Conventions (docs/dynreach.md §1):
- The observation at tick t shows the state at tick t (image, proprioception, instruction).
- An episode *terminates* at the first of: success (within `success_radius` of the goal at a
  tick >= t_p; S4: >= t_p + 15), spill failure (cup mode), or time-out. In episodic mode the
  simulation keeps stepping after termination (so trajectories stay full length for plots) but
  the outcome is frozen; in continuous-reset mode the slot starts its next episode on the
  following tick.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from xr0lab.dynreach.instructions import instruction_tokens
from xr0lab.dynreach.physics import (DEFAULT_KAPPA, DEFAULT_SPILL_THRESHOLD, V_MAX,
                                     advance, clip_norm, spill_increment)
from xr0lab.dynreach.render import ImageDtype, render
from xr0lab.dynreach.scenarios import Episodes, check_scenario, sample_episodes, scenario_ticks
from xr0lab.dynreach.seeds import Scenario, continuous_seed


@dataclass(frozen=True)
class WorldConfig:
    """One DynReach setting. `cup` turns on the spill failure; `kappa` is a parameter so the
    full run can sweep it (the default is 1.4 x the expert's largest |Δa|)."""

    scenario: Scenario = "S1"
    cup: bool = False
    kappa: float = DEFAULT_KAPPA
    spill_threshold: float = DEFAULT_SPILL_THRESHOLD
    v_max: float = V_MAX
    # None: the scenario's own length (`scenario_ticks`: 120, S1M 180, which fits its two jumps).
    episode_ticks: int | None = None
    success_radius: float = 0.05
    image_size: int = 64
    image_dtype: ImageDtype = "uint8"
    # Off by default: either would give the policy a second channel to copy its own past
    # actions from, besides the prefix.
    observe_velocity: bool = False
    observe_last_action: bool = False

    def __post_init__(self) -> None:
        check_scenario(self.scenario)
        if self.episode_ticks is None:
            object.__setattr__(self, "episode_ticks", scenario_ticks(self.scenario))
        if self.kappa < 0 or self.spill_threshold <= 0:
            raise ValueError(f"WorldConfig: kappa must be >= 0 and spill_threshold > 0, got "
                             f"kappa={self.kappa}, spill_threshold={self.spill_threshold}")
        if self.image_size not in (32, 64):
            raise ValueError(f"WorldConfig.image_size must be 64 (default) or 32 (quick), got "
                             f"{self.image_size}")
        if self.episode_ticks < 70:
            raise ValueError(f"WorldConfig.episode_ticks must be >= 70, got {self.episode_ticks}")


class DynReach:
    """N DynReach episodes stepped together.

    Episodic mode: `reset(seeds)` then `step` T times; outcomes are in `success_tick`,
    `fail_tick`, and full trajectories in `positions` (N, T+1, 2) / `actions` (N, T, 2).
    Continuous-reset mode (`continuous=True`): each slot runs episodes back to back for as long
    as it is stepped, the k-th episode of slot j using seed `continuous_seed(seeds[j], k)`;
    `step` reports which slots reset so an executor can drop their committed chunks.
    """

    def __init__(self, config: WorldConfig = WorldConfig(), *, continuous: bool = False):
        self.config = config
        self.continuous = continuous
        self.episodes: Episodes | None = None

    # -- episode bookkeeping ------------------------------------------------------------------
    def reset(self, seeds: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        self.slot_seeds = np.asarray(seeds, np.int64).reshape(-1)
        n = len(self.slot_seeds)
        if n == 0:
            raise ValueError("DynReach.reset: seeds must hold at least one episode seed")
        self.episodes = sample_episodes(cfg.scenario, self.slot_seeds, cfg.episode_ticks)
        self.episode_index = np.zeros(n, np.int64)
        self.pos = self.episodes.start.copy()
        self.prev_action = np.zeros((n, 2))
        self.prev_pos = self.pos.copy()
        self.tick = np.zeros(n, np.int64)
        self.spill = np.zeros(n)
        self.success_tick = np.full(n, -1, np.int64)
        self.fail_tick = np.full(n, -1, np.int64)
        self.global_tick = 0
        self.completed = {"success": np.zeros(n, np.int64), "episodes": np.zeros(n, np.int64)}
        if not self.continuous:
            self.positions = np.empty((n, cfg.episode_ticks + 1, 2))
            self.positions[:, 0] = self.pos
            self.actions = np.zeros((n, cfg.episode_ticks, 2))
            self.spills = np.zeros((n, cfg.episode_ticks))
        return self.observe()

    @property
    def terminated(self) -> np.ndarray:
        return (self.success_tick >= 0) | (self.fail_tick >= 0)

    @property
    def success(self) -> np.ndarray:
        return self.success_tick >= 0

    def observe(self, size: int | None = None) -> dict[str, np.ndarray]:
        """The observation at the current tick: image, proprioception (positions), tokens."""
        if self.episodes is None:
            raise RuntimeError("DynReach.observe called before reset(seeds)")
        cfg = self.config
        n = self.episodes.n
        obs = {
            "image": render(self.episodes, self.tick, self.pos, size or cfg.image_size,
                            cfg.image_dtype),
            "state": self.pos.astype(np.float32),
            "tokens": instruction_tokens(cfg.scenario, n),
            "tick": self.tick.copy(),
        }
        if cfg.observe_velocity:
            obs["velocity"] = (self.pos - self.prev_pos).astype(np.float32)
        if cfg.observe_last_action:
            obs["last_action"] = self.prev_action.astype(np.float32)
        return obs

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Apply one tick of commands (N, 2). Returns per-slot events of this tick:
        `succeeded`, `failed` (spill), and in continuous mode `reset` (slot starts a new
        episode on the next tick)."""
        if self.episodes is None:
            raise RuntimeError("DynReach.step called before reset(seeds)")
        cfg, ep = self.config, self.episodes
        actions = np.asarray(actions, np.float64)
        if actions.shape != (ep.n, 2):
            raise ValueError(f"DynReach.step: actions must have shape ({ep.n}, 2), got "
                             f"{actions.shape}")
        if not self.continuous and self.global_tick >= cfg.episode_ticks:
            raise RuntimeError(f"DynReach.step: the episode has {cfg.episode_ticks} ticks; "
                               "call reset(seeds) for new episodes")
        a = clip_norm(np.nan_to_num(actions), cfg.v_max)
        spill = spill_increment(a, self.prev_action, cfg.kappa)
        new_pos = advance(self.pos, a, ep.wall(self.tick))
        live = ~self.terminated
        self.spill += np.where(live, spill, 0.0)
        self.prev_pos, self.pos, self.prev_action = self.pos, new_pos, a
        self.tick = self.tick + 1
        failed = live & cfg.cup & (self.spill > cfg.spill_threshold)
        self.fail_tick[failed] = self.tick[failed]
        near = np.linalg.norm(new_pos - ep.goal_at(self.tick), axis=-1) <= cfg.success_radius
        succeeded = live & ~failed & near & (self.tick >= ep.success_from)
        self.success_tick[succeeded] = self.tick[succeeded]
        if not self.continuous:
            t = self.global_tick
            self.actions[:, t], self.spills[:, t], self.positions[:, t + 1] = a, spill, new_pos
        self.global_tick += 1
        events = {"succeeded": succeeded, "failed": failed}
        if self.continuous:
            done = self.terminated | (self.tick >= cfg.episode_ticks)
            self.completed["success"] += succeeded
            self.completed["episodes"] += done
            if done.any():
                self._restart(np.flatnonzero(done))
            events["reset"] = done
        return events

    def _restart(self, slots: np.ndarray) -> None:
        self.episode_index[slots] += 1
        seeds = [continuous_seed(s, k) for s, k in
                 zip(self.slot_seeds[slots], self.episode_index[slots])]
        fresh = sample_episodes(self.config.scenario, seeds, self.config.episode_ticks)
        ep = self.episodes
        self.episodes = dataclasses.replace(ep, **{
            f.name: _scatter(getattr(ep, f.name), slots, getattr(fresh, f.name))
            for f in dataclasses.fields(ep)
            if f.name != "scenario" and getattr(ep, f.name) is not None})
        self.pos[slots] = fresh.start
        self.prev_pos[slots] = fresh.start
        self.prev_action[slots] = 0.0  # every episode starts at rest, as in episodic mode
        self.tick[slots] = 0
        self.spill[slots] = 0.0
        self.success_tick[slots] = -1
        self.fail_tick[slots] = -1

    def throughput(self) -> float:
        """Successes per 1,000 ticks per slot so far (continuous-reset mode)."""
        if not self.continuous or self.global_tick == 0:
            raise RuntimeError("throughput needs a continuous-reset run with at least one tick")
        return 1000.0 * self.completed["success"].sum() / (self.global_tick * len(self.slot_seeds))


def _scatter(old: np.ndarray, slots: np.ndarray, new: np.ndarray) -> np.ndarray:
    out = old.copy()
    out[slots] = new
    return out
