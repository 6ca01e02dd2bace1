"""DynReach scenarios: everything random about an episode, drawn once from its seed.

Axis legend: N episodes, T ticks, K alternative reaction goals, 2 = (x, y).

An `Episodes` batch is the script of N episodes: start, goal at every tick, perturbation tick,
and the scenario's extras (S2's targets and lamp, S3's wall). The scenario state at tick t is a
pure function of it. A perturbation scheduled at t_p is in the scenario state from tick t_p on,
so the first observation that can reveal it is the one captured at t_p: it is visible only in
fresh pixels (never in the proprioception or the instruction).

    S1   jump-reach: the target jumps once, t_p in [25, 60]
    S1E  S1 with an early jump (t_p in [6, 12]), while the agent is still under way
    S2   cue switch: two targets, the lamp's colour names the goal and switches at t_p
    S3   pop-up wall: a wall appears across the straight path at t_p in [6, 10]
    S4   moving target: the target drifts and reverses at t_p, then every 20-40 ticks

The scenario names are declared in `xr0lab.dynreach.seeds` (their order is part of every
episode's seed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from xr0lab.dynreach.physics import (DETOUR_CLEARANCE, EPISODE_TICKS, WALL_HALF_LENGTH, Wall,
                                     detour_waypoints)
from xr0lab.dynreach.seeds import SCENARIOS, episode_rng

# Scene layout.
LAMP_CENTRE = (0.06, 0.94)  # top-left corner
_LO, _HI = 0.1, 0.9  # sampled positions stay clear of the borders so blobs are fully visible
SCENARIO_NAMES = {"S1": "jump-reach", "S2": "cue switch", "S3": "pop-up wall",
                  "S4": "moving target", "S1E": "early jump, agent moving"}


def check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")


def as_scenarios(scenario: str | Sequence[str]) -> tuple[str, ...]:
    """A scenario name or a sequence of them -> a non-empty tuple of distinct known names."""
    out = (scenario,) if isinstance(scenario, str) else tuple(scenario)
    bad = [s for s in out if s not in SCENARIOS]
    if not out or bad or len(set(out)) != len(out):
        raise ValueError(f"scenario must be one of {SCENARIOS} or a tuple of distinct ones, "
                         f"got {scenario!r}")
    return out


@dataclass(frozen=True)
class Episodes:
    """A batch of N episode scripts. The scenario state at tick t is a pure function of these.

    goal_traj (N, T+1, 2): the goal at each tick (what success and the expert refer to).
    old_goal / new_goal (N, 2): the goal just before / at the perturbation tick.
    t_perturb (N,): first tick whose observation shows the perturbation.
    success_from (N,): first tick at which reaching the goal counts (t_perturb, except S4).
    S2 only: targets (N, 2, 2) (red, blue) and lamp (N, T+1) colour index at each tick.
    S3 only: wall_centre (N, 2) and wall_axis (N, 2) (unit vector along the wall); the wall
    exists from t_perturb on.
    """

    scenario: str
    seeds: np.ndarray
    start: np.ndarray
    goal_traj: np.ndarray
    old_goal: np.ndarray
    new_goal: np.ndarray
    t_perturb: np.ndarray
    success_from: np.ndarray
    targets: np.ndarray | None = None
    lamp: np.ndarray | None = None
    wall_centre: np.ndarray | None = None
    wall_axis: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def ticks(self) -> int:
        return self.goal_traj.shape[1] - 1

    def take(self, index: np.ndarray) -> "Episodes":
        """Episodes at `index` (any numpy index); fields that are None stay None."""
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name)[index]
            for f in dataclasses.fields(self)
            if f.name != "scenario" and getattr(self, f.name) is not None})

    def goal_at(self, ticks: np.ndarray) -> np.ndarray:
        """(N, 2) goal at per-episode ticks (N,)."""
        return self.goal_traj[np.arange(self.n), np.minimum(ticks, self.ticks)]

    def wall_on(self, ticks: np.ndarray) -> np.ndarray:
        """(N,) whether the wall exists at per-episode ticks (always False outside S3)."""
        if self.wall_centre is None:
            return np.zeros(self.n, bool)
        return np.asarray(ticks) >= self.t_perturb

    def wall(self, ticks: np.ndarray) -> Wall | None:
        """The S3 wall at per-episode ticks (None in the other scenarios)."""
        if self.wall_centre is None:
            return None
        return Wall(self.wall_centre, self.wall_axis, self.wall_on(ticks))

    def reaction_goals(self) -> np.ndarray:
        """(N, K, 2) points the reaction-time metric accepts as "the new goal direction".

        S3 has two: the expert's two detour waypoints (left and right of the wall), since a
        reaction toward either is correct. S1, S2 have one, the new goal. S4 gets the target's
        position at the reversal, a crude stand-in: RT/ERT are designed for S1-S3; for S4 use
        tracking error and success.
        """
        if self.wall_centre is None:
            return self.new_goal[:, None, :]
        return detour_waypoints(self.wall_centre, self.wall_axis, DETOUR_CLEARANCE)


def sample_episodes(scenario: str, seeds: Sequence[int] | np.ndarray,
                    ticks: int = EPISODE_TICKS) -> Episodes:
    """Draw the episode scripts for `seeds` (each from its own generator)."""
    check_scenario(scenario)
    seeds = np.asarray(seeds, np.int64).reshape(-1)
    if (seeds < 0).any():
        raise ValueError("sample_episodes: episode seeds must be non-negative integers")
    if ticks < 70:
        raise ValueError(f"ticks must be >= 70 so every perturbation tick fits, got {ticks}")
    # 64 rejection-sampling candidates x 12 uniforms per episode, drawn in one call, so the
    # geometry below is vectorised across episodes while each episode stays seed-determined.
    u = np.stack([episode_rng(s, scenario, "world").random((64, 12)) for s in seeds]) \
        if len(seeds) else np.zeros((0, 64, 12))
    return {"S1": _sample_s1, "S2": _sample_s2, "S3": _sample_s3, "S4": _sample_s4,
            "S1E": _sample_s1e}[scenario](seeds, u, ticks)


def _first_valid(ok: np.ndarray, scenario: str) -> np.ndarray:
    """Index of the first accepted candidate per episode (N,)."""
    if not ok.any(axis=1).all():
        raise RuntimeError(f"{scenario}: rejection sampling found no valid layout in 64 "
                           "candidates; the geometry constraints are too tight")
    return ok.argmax(axis=1)


def _pick(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[np.arange(len(idx)), idx]


def _ramp(a: float, b: float, u: np.ndarray) -> np.ndarray:
    return a + (b - a) * u


def _perturb_tick(u: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Uniform integer in [lo, hi] from a uniform in [0, 1)."""
    return (lo + np.floor(u * (hi - lo + 1))).astype(np.int64)


def _step_goal(before: np.ndarray, after: np.ndarray, t_p: np.ndarray, ticks: int) -> np.ndarray:
    t = np.arange(ticks + 1)
    return np.where((t[None, :] >= t_p[:, None])[..., None], after[:, None], before[:, None])


def _sample_s1(seeds, u, ticks, name: str = "S1", window: tuple[int, int] = (25, 60),
               min_first_leg: float = 0.3):
    start, g0, g1 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4]), \
        _ramp(_LO, _HI, u[..., 4:6])
    ok = ((np.linalg.norm(g0 - start, axis=-1) >= min_first_leg)
          & (np.linalg.norm(g1 - g0, axis=-1) >= 0.4))
    k = _first_valid(ok, name)
    start, g0, g1 = _pick(start, k), _pick(g0, k), _pick(g1, k)
    t_p = _perturb_tick(u[:, 0, 6], *window)
    return Episodes(name, seeds, start, _step_goal(g0, g1, t_p, ticks), g0, g1, t_p, t_p)


# S1E timing: the target jumps at t_p in [6, 12] and the first leg is >= 0.45 long. The expert
# reaches v_max after 5 ticks and covers at most ~0.3 by tick 12, so at the jump it is still
# >= 0.15 from the old goal, outside its 0.1 slowing radius: moving at full speed.
S1E_PERTURB_TICKS = (6, 12)


def _sample_s1e(seeds, u, ticks):
    return _sample_s1(seeds, u, ticks, "S1E", S1E_PERTURB_TICKS, min_first_leg=0.45)


def _sample_s2(seeds, u, ticks):
    start, ta, tb = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4]), \
        _ramp(_LO, _HI, u[..., 4:6])
    lamp = np.array(LAMP_CENTRE)
    ok = ((np.linalg.norm(ta - tb, axis=-1) >= 0.4)
          & (np.linalg.norm(start - ta, axis=-1) >= 0.25)
          & (np.linalg.norm(start - tb, axis=-1) >= 0.25)
          & (np.linalg.norm(ta - lamp, axis=-1) >= 0.18)
          & (np.linalg.norm(tb - lamp, axis=-1) >= 0.18)
          & (np.linalg.norm(start - lamp, axis=-1) >= 0.18))
    k = _first_valid(ok, "S2")
    start, targets = _pick(start, k), np.stack([_pick(ta, k), _pick(tb, k)], axis=1)
    c0 = (u[:, 0, 6] < 0.5).astype(np.int64)
    t_p = _perturb_tick(u[:, 0, 7], 25, 60)
    t = np.arange(ticks + 1)
    lamp_traj = np.where(t[None, :] >= t_p[:, None], 1 - c0[:, None], c0[:, None])
    n = np.arange(len(seeds))
    old, new = targets[n, c0], targets[n, 1 - c0]
    return Episodes("S2", seeds, start, _step_goal(old, new, t_p, ticks), old, new, t_p, t_p,
                    targets=targets, lamp=lamp_traj)


# S3 timing: the wall must appear while the agent is still on its way. The agent starts at
# least 0.6 from the target and the wall sits at 55% of the way (>= 0.33 from the start), so
# any policy can have travelled at most v_max * 10 = 0.30 by t_p <= 10: it is always on the
# start side of the wall when it appears. (S1's [25, 60] would come after arrival.)
S3_PERTURB_TICKS = (6, 10)


def _sample_s3(seeds, u, ticks):
    clearance = DETOUR_CLEARANCE
    start, goal = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    d = goal - start
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    along = d / np.maximum(dist, 1e-9)
    axis = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    # A small offset along the wall keeps the straight line blocked but breaks exact symmetry.
    centre = start + 0.55 * d + _ramp(-0.04, 0.04, u[..., 4:5]) * axis
    ends = centre[..., None, :] + np.array([-1.0, 1.0])[:, None] * \
        (WALL_HALF_LENGTH + clearance) * axis[..., None, :]
    ok = ((dist[..., 0] >= 0.6) & (dist[..., 0] <= 1.0)
          & np.all((ends > 0.04) & (ends < 0.96), axis=(-1, -2)))
    k = _first_valid(ok, "S3")
    start, goal, centre, axis = _pick(start, k), _pick(goal, k), _pick(centre, k), _pick(axis, k)
    t_p = _perturb_tick(u[:, 0, 5], *S3_PERTURB_TICKS)
    goal_traj = np.broadcast_to(goal[:, None], (len(seeds), ticks + 1, 2)).copy()
    return Episodes("S3", seeds, start, goal_traj, goal, goal, t_p, t_p,
                    wall_centre=centre, wall_axis=axis)


S4_SPEED = 0.008
# A pursuer that sits on the target when it reverses is still within reach a tick later, so
# S4 counts success only once the agent is with the target 15 ticks after the first reversal.
S4_SETTLE_TICKS = 15


def _sample_s4(seeds, u, ticks):
    start, p0 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    ok = np.linalg.norm(p0 - start, axis=-1) >= 0.3
    k = _first_valid(ok, "S4")
    start, p0 = _pick(start, k), _pick(p0, k)
    ang = 2 * np.pi * u[:, 0, 4]
    vel = S4_SPEED * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    t_p = _perturb_tick(u[:, 0, 5], 25, 60)
    # Later reversals every 20-40 ticks; at most 4 more fit in 120 ticks.
    gaps = 20 + np.floor(u[:, 1, :4] * 21).astype(np.int64)
    rev = np.concatenate([t_p[:, None], t_p[:, None] + np.cumsum(gaps, axis=1)], axis=1)
    traj = np.empty((len(seeds), ticks + 1, 2))
    pos = p0.copy()
    for t in range(ticks + 1):
        vel = np.where((rev == t).any(axis=1)[:, None], -vel, vel)
        traj[:, t] = pos
        pos = pos + vel
        # Bounce off the sampling box so the target never leaves the visible area.
        low, high = pos < _LO, pos > _HI
        pos = np.where(low, 2 * _LO - pos, np.where(high, 2 * _HI - pos, pos))
        vel = np.where(low | high, -vel, vel)
    n = np.arange(len(seeds))
    return Episodes("S4", seeds, start, traj, traj[n, t_p - 1], traj[n, t_p], t_p,
                    t_p + S4_SETTLE_TICKS)
