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
    S1M  jump while moving (v2's primary): the target jumps at a tick where the clean expert
         moves at >= 0.8 v_max, and jumps again once the expert reaches it (or 60 ticks later)

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
                  "S4": "moving target", "S1E": "early jump, agent moving",
                  "S1M": "jump while moving"}
# Episode length per scenario: 120 ticks (4 s at 30 Hz); S1M's two jumps need 180.
S1M_TICKS = 180


def scenario_ticks(scenario: str) -> int:
    """The scenario's own episode length in ticks."""
    check_scenario(scenario)
    return S1M_TICKS if scenario == "S1M" else EPISODE_TICKS


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
    S1M only: t_second (N,) the tick of the second jump (to final_goal (N, 2)); old_goal and
    new_goal describe the first jump, the one the reaction metrics measure.
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
    t_second: np.ndarray | None = None
    final_goal: np.ndarray | None = None

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
                    ticks: int | None = None) -> Episodes:
    """Draw the episode scripts for `seeds` (each from its own generator); `ticks` defaults to
    the scenario's own length (`scenario_ticks`)."""
    check_scenario(scenario)
    seeds = np.asarray(seeds, np.int64).reshape(-1)
    if (seeds < 0).any():
        raise ValueError("sample_episodes: episode seeds must be non-negative integers")
    ticks = scenario_ticks(scenario) if ticks is None else ticks
    if ticks < 70:
        raise ValueError(f"ticks must be >= 70 so every perturbation tick fits, got {ticks}")
    if scenario == "S1M" and ticks < S1M_TICKS:
        raise ValueError(f"S1M needs ticks >= {S1M_TICKS} for its two jumps, got {ticks}")
    # 64 rejection-sampling candidates x 12 uniforms per episode, drawn in one call, so the
    # geometry below is vectorised across episodes while each episode stays seed-determined.
    # S1M's turn and distance constraints accept ~8% of layouts, so it draws 256 candidates.
    cand = S1M_CANDIDATES if scenario == "S1M" else 64
    u = np.stack([episode_rng(s, scenario, "world").random((cand, 12)) for s in seeds]) \
        if len(seeds) else np.zeros((0, cand, 12))
    return {"S1": _sample_s1, "S2": _sample_s2, "S3": _sample_s3, "S4": _sample_s4,
            "S1E": _sample_s1e, "S1M": _sample_s1m}[scenario](seeds, u, ticks)


def _first_valid(ok: np.ndarray, scenario: str) -> np.ndarray:
    """Index of the first accepted candidate per episode (N,)."""
    if not ok.any(axis=1).all():
        raise RuntimeError(f"{scenario}: rejection sampling found no valid layout in {ok.shape[1]} "
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


# S1M (docs/dynreach.md §1): the first leg is >= 0.45 long so the expert spends >= 10 ticks at
# full speed; the jump tick is drawn uniformly from the ticks t >= S1M_MIN_TICK at which the
# clean expert's last command a_{t-1} has |a| >= 0.8 v_max (it is moving when the target
# jumps); the new goal lies >= 0.4 from the agent there and at least 60 degrees off its heading
# (a copy of the committed motion points the wrong way); the second jump comes when the clean
# expert reaches the new goal (within the success radius) or 60 ticks after the first, to a
# third goal >= 0.4 away. Success counts at the final goal. The clean expert is privileged and
# noise-free here, so the script stays a pure function of the seed.
S1M_MOVING_FRACTION = 0.8
S1M_MIN_TICK = 6
S1M_MAX_TURN_COS = 0.5
S1M_SECOND_AFTER = 60
S1M_CANDIDATES = 256


def _s1m_expert_path(start: np.ndarray, goal: np.ndarray, ticks: int):
    """Clean expert from rest at `start` toward a fixed `goal`: positions (M, T+1, 2), commands
    (M, T, 2)."""
    from xr0lab.dynreach.expert import ExpertConfig, expert_continuation

    acts, poss = expert_continuation(start, np.zeros_like(start), goal, ticks, ExpertConfig())
    return poss, acts


def _s1m_layouts(u: np.ndarray):
    """Per candidate (..., 12 uniforms): start, goals g0 g1 g2, jump tick t_p, the expert's
    position and last command at t_p, and whether the layout is acceptable."""
    from xr0lab.dynreach.physics import V_MAX

    shape = u.shape[:-1]
    start, g0 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    g1, g2 = _ramp(_LO, _HI, u[..., 4:6]), _ramp(_LO, _HI, u[..., 7:9])
    horizon = 60
    poss, acts = _s1m_expert_path(start.reshape(-1, 2), g0.reshape(-1, 2), horizon)
    poss = poss.reshape(*shape, horizon + 1, 2)
    acts = acts.reshape(*shape, horizon, 2)
    speed = np.linalg.norm(acts, axis=-1)                       # speed[..., t-1] = |a_{t-1}|
    t = np.arange(1, horizon + 1)
    moving = (speed >= S1M_MOVING_FRACTION * V_MAX) & (t >= S1M_MIN_TICK)   # at tick t
    count = moving.sum(-1)
    # The k-th moving tick, k uniform among them (u[..., 6]).
    k = np.minimum(np.floor(u[..., 6] * count).astype(np.int64), np.maximum(count - 1, 0))
    order = np.cumsum(moving, -1) - 1
    t_p = np.where(moving & (order == k[..., None]), t, 0).max(-1)
    x_p = np.take_along_axis(poss, t_p[..., None, None], -2)[..., 0, :]
    a_p = np.take_along_axis(acts, np.maximum(t_p - 1, 0)[..., None, None], -2)[..., 0, :]
    to_new = g1 - x_p
    cos_turn = (a_p * to_new).sum(-1) / np.maximum(
        np.linalg.norm(a_p, axis=-1) * np.linalg.norm(to_new, axis=-1), 1e-12)
    ok = ((count >= 1) & (np.linalg.norm(to_new, axis=-1) >= 0.4)
          & (cos_turn <= S1M_MAX_TURN_COS))
    return start, g0, g1, g2, t_p, x_p, a_p, ok


def _sample_s1m(seeds, u, ticks):
    from xr0lab.dynreach.expert import ExpertConfig, expert_continuation

    n, c = u.shape[:2]
    # Cheap constraints first; the expert is simulated only for the first 16 candidates of each
    # episode that pass them, then the next 16 where none was accepted (same result as
    # simulating all of them, since the first accepted candidate is what counts).
    start, g0 = _ramp(_LO, _HI, u[..., 0:2]), _ramp(_LO, _HI, u[..., 2:4])
    g1, g2 = _ramp(_LO, _HI, u[..., 4:6]), _ramp(_LO, _HI, u[..., 7:9])
    cheap = ((np.linalg.norm(g0 - start, axis=-1) >= 0.45)
             & (np.linalg.norm(g2 - g1, axis=-1) >= 0.4))
    ranks = np.cumsum(cheap, 1) - 1
    chosen = np.full(n, -1, np.int64)
    fields = [None] * 7
    for lo in range(0, c, 16):
        todo = np.flatnonzero(chosen < 0)
        if not len(todo):
            break
        # candidate index of rank lo..lo+15 among the cheap-passing ones (-1: none left)
        want = np.full((len(todo), 16), -1, np.int64)
        for r in range(16):
            hit = cheap[todo] & (ranks[todo] == lo + r)
            want[:, r] = np.where(hit.any(1), hit.argmax(1), -1)
        sub = u[todo[:, None], np.maximum(want, 0)]
        out = _s1m_layouts(sub)
        ok = out[-1] & (want >= 0)
        got = ok.any(1)
        first = ok.argmax(1)
        rows = todo[got]
        chosen[rows] = want[got, first[got]]
        for i, f in enumerate(out[:-1]):
            if fields[i] is None:
                fields[i] = np.zeros((n,) + f.shape[2:], f.dtype)
            fields[i][rows] = f[got, first[got]]
    if (chosen < 0).any():
        raise RuntimeError(f"S1M: rejection sampling found no valid layout in {c} candidates; "
                           "the geometry constraints are too tight")
    start, g0, g1, g2, t_p, x_p, a_p = fields
    # The second jump: when the clean expert, turning at t_p, first reaches g1 (or t_p + 60).
    _, after = expert_continuation(x_p, a_p, g1, S1M_SECOND_AFTER, ExpertConfig())
    near = np.linalg.norm(after[:, 1:] - g1[:, None], axis=-1) <= 0.05
    t_2 = t_p + np.where(near.any(-1), near.argmax(-1) + 1, S1M_SECOND_AFTER)
    tt = np.arange(ticks + 1)[None, :, None]
    goal_traj = np.where(tt >= t_2[:, None, None], g2[:, None],
                         np.where(tt >= t_p[:, None, None], g1[:, None], g0[:, None]))
    return Episodes("S1M", seeds, start, goal_traj, g0, g1, t_p, t_2, t_second=t_2,
                    final_goal=g2)


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
