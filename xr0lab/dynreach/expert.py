"""The scripted DynReach expert: privileged-state pursuit with a per-axis rate limit.

Axis legend: N episodes, M states (rows of any batch), T ticks, H chunk length, 2 = (x, y).

Desired velocity: v_max toward the aim point, scaled by min(1, d / slow_radius) where d is the
distance to the *final* goal (so the expert slows only when arriving, not at detour waypoints).
The command tracks it with a per-axis rate limit: a_t = a_{t-1} + clip(v* - a_{t-1}, ±a_max).
This makes expert actions smooth and strongly autocorrelated, which is exactly what makes
copying a committed prefix a tempting shortcut for a learned policy.

S3 detour: while the straight segment to the goal crosses the wall (grown by `los_margin`),
the aim is one of the two waypoints just past the wall's ends; the side is a fair coin per
episode (drawn from the episode's own expert stream), so demonstrations are bimodal for the
same image.

Noise injection: a fraction of episodes execute expert + noise (a smooth AR(1) process, so
recovery states are covered without teaching jerks) while the clean expert command, computed
from the state actually reached, is what gets stored as the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xr0lab.dynreach.physics import (DETOUR_CLEARANCE, V_MAX, WALL_HALF_LENGTH,
                                     WALL_HALF_THICKNESS, Wall, advance, clip_norm,
                                     detour_waypoints, wall_frame)
from xr0lab.dynreach.scenarios import Episodes
from xr0lab.dynreach.seeds import SCENARIOS, episode_rng
from xr0lab.dynreach.world import DynReach, WorldConfig

# Reaction criterion, shared by the reaction-time metric (`xr0lab.dynreach.metrics`) and the
# expert's turning time inside the latency floor, so RT and F always use the same test.
REACTION_COS = 0.7
# A command slower than 10% of v_max has no meaningful direction (an agent parked on the old
# goal commands ~0 toward it); such ticks never count as a reaction.
REACTION_MIN_SPEED = 0.003


@dataclass(frozen=True)
class ExpertConfig:
    v_max: float = V_MAX
    a_max: float = 0.006          # per axis, per tick
    slow_radius: float = 0.1
    detour_clearance: float = DETOUR_CLEARANCE  # waypoint distance beyond a wall end
    los_margin: float = 0.03        # the wall is grown by this much for line-of-sight tests
    noise_fraction: float = 0.3
    # Stationary std 0.005 per axis (~1/6 of v_max), AR(1) 0.9: the executed path drifts enough to
    # visit recovery states while ~94% of noisy S1-S3 episodes still succeed (0.01 -> ~42%).
    noise_sigma: float = 0.005
    noise_rho: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ValueError(f"ExpertConfig.noise_fraction must be in [0, 1], got "
                             f"{self.noise_fraction}")
        if not 0.0 <= self.noise_rho < 1.0:
            raise ValueError(f"ExpertConfig.noise_rho must be in [0, 1), got {self.noise_rho}")
        if self.detour_clearance <= self.los_margin:
            raise ValueError("ExpertConfig.detour_clearance must exceed los_margin, or the "
                             "waypoint itself would count as blocked")


def segment_hits_wall(p: np.ndarray, q: np.ndarray, centre: np.ndarray, axis: np.ndarray,
                      margin: float) -> np.ndarray:
    """(M,) whether segment p->q meets the wall box grown by `margin` (slab clipping)."""
    a, b = wall_frame(p, centre, axis), wall_frame(q, centre, axis)
    d = b - a
    half = np.array([WALL_HALF_LENGTH + margin, WALL_HALF_THICKNESS + margin])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - a) / d, (half - a) / d
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    # An axis the segment does not move along: inside the slab for all t, or never.
    parallel = np.abs(d) < 1e-12
    inside = np.abs(a) <= half
    lo = np.where(parallel, np.where(inside, -np.inf, np.inf), lo)
    hi = np.where(parallel, np.where(inside, np.inf, -np.inf), hi)
    t_in, t_out = np.maximum(lo.max(-1), 0.0), np.minimum(hi.min(-1), 1.0)
    return t_in <= t_out


def aim_point(pos: np.ndarray, goal: np.ndarray, wall: Wall | None, side: np.ndarray | None,
              cfg: ExpertConfig) -> np.ndarray:
    """Where the expert heads now: the goal, or its detour waypoint while the wall blocks."""
    if wall is None or not wall.on.any():
        return goal
    m = np.arange(len(pos))
    waypoint = detour_waypoints(wall.centre, wall.axis, cfg.detour_clearance)[m, side]
    # If even the waypoint is hidden (agent hugging the wall), back off to the agent's side
    # first, so the expert never pushes into the wall and stalls.
    normal = np.stack([-wall.axis[:, 1], wall.axis[:, 0]], axis=-1)
    v_side = np.sign(wall_frame(pos, wall.centre, wall.axis)[:, 1])[:, None]
    pre = waypoint + v_side * (WALL_HALF_THICKNESS + 2 * cfg.los_margin) * normal
    to_goal = wall.on & segment_hits_wall(pos, goal, wall.centre, wall.axis, cfg.los_margin)
    to_way = to_goal & segment_hits_wall(pos, waypoint, wall.centre, wall.axis, cfg.los_margin)
    aim = np.where(to_goal[:, None], waypoint, goal)
    return np.where(to_way[:, None], pre, aim)


def expert_command(pos: np.ndarray, prev: np.ndarray, goal: np.ndarray,
                   cfg: ExpertConfig = ExpertConfig(), wall: Wall | None = None,
                   side: np.ndarray | None = None) -> np.ndarray:
    """The expert's next command (M, 2) from position, previous executed command and goal."""
    aim = aim_point(pos, goal, wall, side, cfg)
    to_aim = aim - pos
    d_aim = np.linalg.norm(to_aim, axis=-1, keepdims=True)
    d_goal = np.linalg.norm(goal - pos, axis=-1, keepdims=True)
    speed = cfg.v_max * np.minimum(1.0, d_goal / cfg.slow_radius)
    desired = to_aim / np.maximum(d_aim, 1e-12) * speed
    return clip_norm(prev + np.clip(desired - prev, -cfg.a_max, cfg.a_max), cfg.v_max)


@dataclass(frozen=True)
class ExpertDraws:
    """The expert's per-episode randomness: noisy (N,), side (N,) in {0, 1}, noise (N, T, 2)."""

    noisy: np.ndarray
    side: np.ndarray
    noise: np.ndarray


def expert_draws(episodes: Episodes, cfg: ExpertConfig = ExpertConfig()) -> ExpertDraws:
    n, t = episodes.n, episodes.ticks
    u = np.empty((n, 2))
    eps = np.empty((n, t, 2))
    for i, s in enumerate(episodes.seeds):
        rng = episode_rng(s, episodes.scenario, "expert")
        u[i] = rng.random(2)
        eps[i] = rng.standard_normal((t, 2))
    noise = np.empty_like(eps)
    noise[:, 0] = cfg.noise_sigma * eps[:, 0]
    innovation = cfg.noise_sigma * np.sqrt(1.0 - cfg.noise_rho ** 2)
    for k in range(1, t):
        noise[:, k] = cfg.noise_rho * noise[:, k - 1] + innovation * eps[:, k]
    return ExpertDraws(noisy=u[:, 0] < cfg.noise_fraction, side=(u[:, 1] < 0.5).astype(np.int64),
                       noise=noise)


@dataclass(frozen=True)
class ExpertRollout:
    """Episodic expert rollouts. positions (N, T+1, 2); actions (N, T, 2) executed;
    labels (N, T, 2) clean expert commands; prev_actions (N, T, 2) the executed command before
    each tick (zeros at t = 0); success_tick / fail_tick (N,) (-1: never); spill (N, T)."""

    episodes: Episodes
    draws: ExpertDraws
    positions: np.ndarray
    actions: np.ndarray
    labels: np.ndarray
    prev_actions: np.ndarray
    success_tick: np.ndarray
    fail_tick: np.ndarray
    spill: np.ndarray


def rollout_expert(world: WorldConfig, seeds, cfg: ExpertConfig = ExpertConfig(),
                   noise: bool = True) -> ExpertRollout:
    """Run the expert in `world` for the episodes `seeds`; `noise=False` disables injection."""
    env = DynReach(world)
    env.reset(seeds)
    ep = env.episodes
    draws = expert_draws(ep, cfg)
    inject = draws.noisy[:, None] if noise else np.zeros((ep.n, 1), bool)
    labels = np.empty_like(env.actions)
    for t in range(world.episode_ticks):
        clean = expert_command(env.pos, env.prev_action, ep.goal_at(env.tick), cfg,
                               ep.wall(env.tick), draws.side)
        labels[:, t] = clean
        env.step(np.where(inject, clip_norm(clean + draws.noise[:, t], cfg.v_max), clean))
    prev = np.concatenate([np.zeros((ep.n, 1, 2)), env.actions[:, :-1]], axis=1)
    return ExpertRollout(ep, draws, env.positions, env.actions, labels, prev,
                         env.success_tick.copy(), env.fail_tick.copy(), env.spills)


def expert_continuation(pos: np.ndarray, prev: np.ndarray, goal: np.ndarray, horizon: int,
                        cfg: ExpertConfig = ExpertConfig(), wall: Wall | None = None,
                        side: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The expert's open-loop plan from M states with the scene frozen as it is now.

    Returns actions (M, H, 2) and the positions they lead to (M, H + 1, 2). Row k is what the
    clean expert would command k ticks from now if the goal and wall stayed as currently
    visible: the label of an action chunk, predictable from the current observation.
    """
    m = len(pos)
    acts = np.empty((m, horizon, 2))
    poss = np.empty((m, horizon + 1, 2))
    poss[:, 0] = pos
    for k in range(horizon):
        a = expert_command(pos, prev, goal, cfg, wall, side)
        pos = advance(pos, a, wall)
        acts[:, k], poss[:, k + 1], prev = a, pos, a
    return acts, poss


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos of the angle between vectors on the last axis (0 where either is ~0)."""
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1),
                                        1e-12)


def turning_time(episodes: Episodes, ticks: np.ndarray, pos: np.ndarray, prev: np.ndarray,
                 cfg: ExpertConfig = ExpertConfig(), side: np.ndarray | None = None,
                 cos_threshold: float = REACTION_COS, min_speed: float = REACTION_MIN_SPEED,
                 max_ticks: int = 60) -> np.ndarray:
    """Ticks (N,) the expert needs, from state (pos, prev) at per-episode `ticks`, before its
    command points within `cos_threshold` of a reaction goal (`Episodes.reaction_goals`); 0 if
    its first command already does. Capped at `max_ticks`. Part of the latency floor F."""
    goals = episodes.reaction_goals()                                   # (N, K, 2)
    side = np.zeros(episodes.n, np.int64) if side is None else side
    ticks = np.asarray(ticks, np.int64).copy()
    out = np.full(episodes.n, max_ticks, np.int64)
    for k in range(max_ticks):
        a = expert_command(pos, prev, episodes.goal_at(ticks), cfg, episodes.wall(ticks), side)
        ok = (cosine(a[:, None], goals - pos[:, None]).max(-1) >= cos_threshold) & \
            (np.linalg.norm(a, axis=-1) >= min_speed)
        out = np.where(ok & (out == max_ticks), k, out)
        if (out < max_ticks).all():
            break
        pos, prev, ticks = advance(pos, a, episodes.wall(ticks)), a, ticks + 1
    return out


def measure_kappa(seeds=range(256), cfg: ExpertConfig = ExpertConfig(),
                  factor: float = 1.4) -> dict[str, float]:
    """kappa = factor x the clean expert's largest |Δa| (a_{-1} = 0) over all scenarios.

    Returns {"kappa": ..., "max_delta": ..., "<scenario>": per-scenario max |Δa|}.
    """
    out: dict[str, float] = {}
    for scenario in SCENARIOS:
        r = rollout_expert(WorldConfig(scenario=scenario), list(seeds), cfg, noise=False)
        delta = np.linalg.norm(np.diff(r.actions, axis=1, prepend=0.0), axis=-1)
        out[scenario] = float(delta.max())
    out["max_delta"] = max(out[s] for s in SCENARIOS)
    out["kappa"] = factor * out["max_delta"]
    return out


__all__ = ["REACTION_COS", "REACTION_MIN_SPEED", "ExpertConfig", "ExpertDraws", "ExpertRollout",
           "aim_point", "cosine", "expert_command", "expert_continuation", "expert_draws",
           "measure_kappa", "rollout_expert", "segment_hits_wall", "turning_time"]
