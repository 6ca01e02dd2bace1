"""DynReach metrics (docs/dynreach.md §6), each a pure function of recorded arrays.

Axis legend: N episodes, T ticks, K alternative reaction goals, M conflict cases, H chunk.

Trajectory arrays follow `xr0lab.dynreach.physics`: actions (N, T, 2) a_0..a_{T-1}, positions
(N, T+1, 2) x_0..x_T; a_t is applied at tick t and moves x_t to x_{t+1}.
The generic smoothness metrics (boundary discontinuity ratio, jerk, max seam |Δa|) live in
`xr0lab.runtime.smoothness` and are not repeated here.
"""

from __future__ import annotations

import numpy as np

from xr0lab.dynreach.expert import (REACTION_COS, REACTION_MIN_SPEED, ExpertConfig, cosine,
                                 turning_time)
from xr0lab.dynreach.physics import spill_increment
from xr0lab.dynreach.scenarios import Episodes


def _as(x, ndim: int, name: str, last: int | None = None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != ndim or (last is not None and x.shape[-1] != last):
        want = f"{ndim} dims" + (f" with last axis {last}" if last is not None else "")
        raise ValueError(f"{name} must have {want}, got shape {x.shape}")
    return x


def _numpy(x) -> np.ndarray:
    """numpy view of a numpy array or a (possibly grad-tracking, GPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def success_rate(success) -> float:
    """Fraction of episodes that succeeded."""
    return float(np.mean(np.asarray(success, bool)))


def time_to_reach(success_tick, t_perturb, horizon: int = 60) -> np.ndarray:
    """Ticks from the perturbation to success, right-censored at `horizon` (N,).

    Episodes that never succeeded (success_tick < 0) or took longer count as `horizon`.
    Their mean is the restricted mean time-to-reach; it is exact (no Kaplan-Meier needed) as
    long as every episode is observed for `horizon` ticks after its perturbation, which holds
    for the default 60 = 120 - the latest perturbation tick (60).
    """
    success_tick, t_perturb = np.asarray(success_tick), np.asarray(t_perturb)
    ttr = np.where(success_tick >= 0, success_tick - t_perturb, horizon)
    return np.minimum(ttr, horizon).astype(np.float64)


def restricted_mean_time_to_reach(success_tick, t_perturb, horizon: int = 60) -> float:
    return float(time_to_reach(success_tick, t_perturb, horizon).mean())


def _cos_to_goals(actions: np.ndarray, positions: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Max over K goals of cos(a_t, g - x_t): (N, T)."""
    to_goal = goals[:, None, :, :] - positions[:, :, None, :]           # (N, T, K, 2)
    return cosine(actions[:, :, None, :], to_goal).max(-1)


def reaction_time(actions, positions, goals, t_perturb, cos_threshold: float = REACTION_COS,
                  min_speed: float = REACTION_MIN_SPEED) -> tuple[np.ndarray, np.ndarray]:
    """RT: first tick t >= t_p at which a_t points within cos >= 0.7 of the new goal, minus t_p.

    goals: (N, 2) or (N, K, 2) (any of K alternatives counts, e.g. both S3 detours; see
    `Episodes.reaction_goals`). Returns (rt (N,) float, reacted (N,) bool); episodes that never
    react are right-censored at T - t_p.
    """
    actions = _as(actions, 3, "actions", 2)
    positions = _as(positions, 3, "positions", 2)[:, :actions.shape[1]]
    goals = np.asarray(goals, np.float64)
    goals = goals[:, None, :] if goals.ndim == 2 else goals
    n, t = actions.shape[:2]
    t_perturb = np.broadcast_to(np.asarray(t_perturb, np.int64), (n,))
    ok = (_cos_to_goals(actions, positions, goals) >= cos_threshold) & \
        (np.linalg.norm(actions, axis=-1) >= min_speed) & \
        (np.arange(t)[None, :] >= t_perturb[:, None])
    reacted = ok.any(axis=1)
    first = np.where(reacted, ok.argmax(axis=1), t)
    return (first - t_perturb).astype(np.float64), reacted


def next_cycle_start(t_perturb, cycle_starts) -> np.ndarray:
    """First cycle start >= t_p (the first capture that can see the perturbation), (N,).

    cycle_starts: (C,) shared by all episodes, or (N, C) per episode (jittered delays), sorted.
    Returns a large value (> any tick) where no cycle starts after t_p.
    """
    t_perturb = np.asarray(t_perturb, np.int64)
    cs = np.asarray(cycle_starts, np.int64)
    cs = np.broadcast_to(cs, (len(t_perturb), cs.shape[-1]))
    later = np.where(cs >= t_perturb[:, None], cs, np.iinfo(np.int64).max // 4)
    return later.min(axis=1)


def latency_floor(episodes: Episodes, positions, actions, cycle_starts, lag,
                  expert: ExpertConfig = ExpertConfig()) -> np.ndarray:
    """F: the best reaction time any policy could have under this timing, (N,) float.

    F = (next cycle start t_c - t_p) + lag + the expert's own turning time from the state the
    episode is in at u = t_c + lag. lag = p for asynchronous execution (new information reaches
    the command only after the p prefix actions), d for synchronous (after the d held ticks).
    The state at u is taken from this episode's own trajectory (position x_u and command
    a_{u-1}), so F accounts for how fast the arm was moving when it could first react.
    In S3 the expert turns toward whichever detour it can turn to sooner.
    """
    positions = _as(positions, 3, "positions", 2)
    actions = _as(actions, 3, "actions", 2)
    n, t = actions.shape[:2]
    lag = np.broadcast_to(np.asarray(lag, np.int64), (n,))
    if (lag < 0).any():
        raise ValueError("latency_floor: lag must be >= 0")
    u = next_cycle_start(episodes.t_perturb, cycle_starts) + lag
    rows = np.arange(n)
    uc = np.minimum(u, t - 1)
    pos = positions[rows, uc]
    prev = np.where((uc > 0)[:, None], actions[rows, np.maximum(uc - 1, 0)], 0.0)
    turn = turning_time(episodes, uc, pos, prev, expert)
    if episodes.wall_centre is not None:
        # Either detour is a correct reaction: the floor takes the quicker one.
        ones = np.ones(n, np.int64)
        turn = np.minimum(turn, turning_time(episodes, uc, pos, prev, expert, ones))
    return (u - episodes.t_perturb + turn).astype(np.float64)


def excess_reaction_time(rt, floor) -> np.ndarray:
    """ERT = RT - F (can be negative when a policy happens to point the right way early)."""
    return np.asarray(rt, np.float64) - np.asarray(floor, np.float64)


def spill(actions, kappa: float) -> np.ndarray:
    """Total spill per episode (N,): sum_t max(0, |a_t - a_{t-1}| - kappa), a_{-1} = 0."""
    actions = _as(actions, 3, "actions", 2)
    prev = np.concatenate([np.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)
    return spill_increment(actions, prev, kappa).sum(axis=1)


def throughput(successes, ticks: int, slots: int = 1) -> float:
    """Successes per 1,000 ticks per slot (continuous-reset mode)."""
    if ticks <= 0 or slots <= 0:
        raise ValueError(f"throughput: ticks and slots must be positive, got {ticks}, {slots}")
    return 1000.0 * float(np.sum(successes)) / (ticks * slots)


def conflict_scores(actions, positions, old_goal, new_goal, late_from: int = 8) -> dict:
    """Conflict test on predicted chunks (M, H, 2) whose prefix was aimed at a stale goal.

    On chunk indices k >= late_from, with c_new = cos(a_k, new goal - x), c_old likewise:
    - obs_following_index = sum(c_new - c_old) / sum(1 - cos(new dir, old dir)): 1 when the
      actions point exactly at the new goal, -1 exactly at the old one; normalising by the
      angle between the two goals keeps near-aligned cases from dominating;
    - copy_fraction = fraction of late actions closer in direction to the old goal.
    positions: (M, 2) (the chunk's anchor) or (M, H, 2) (per row, e.g. integrated from it).
    """
    actions = _as(actions, 3, "actions", 2)
    m, h = actions.shape[:2]
    if not 0 <= late_from < h:
        raise ValueError(f"late_from must be in [0, {h - 1}], got {late_from}")
    positions = np.asarray(positions, np.float64)
    positions = np.broadcast_to(positions[:, None] if positions.ndim == 2 else positions,
                                (m, h, 2))
    a = actions[:, late_from:]
    x = positions[:, late_from:]
    d_new = np.asarray(new_goal, np.float64)[:, None] - x
    d_old = np.asarray(old_goal, np.float64)[:, None] - x
    c_new, c_old, c_goals = cosine(a, d_new), cosine(a, d_old), cosine(d_new, d_old)
    return {"obs_following_index": float((c_new - c_old).sum() / (1.0 - c_goals).sum()),
            "copy_fraction": float((c_old > c_new).mean()),
            "cos_new": c_new.mean(0), "cos_old": c_old.mean(0)}


def copy_score(base, swapped_prefix, moved_goal, prefix_length: int = 0) -> dict:
    """Interventional copy score per chunk index k (docs/dynreach.md §6.5).

    base, swapped_prefix, moved_goal: predicted chunks (M, H, D) (numpy or torch) from the
    same inputs and identical flow noise, except the prefix swapped / the goal moved in the
    image. Δ_prefix(k) = mean_M |swapped_k - base_k|, Δ_obs(k) = mean_M |moved_k - base_k|,
    C(k) = Δ_prefix / (Δ_prefix + Δ_obs): 1 = the action follows only the prefix, 0 = only the
    observation. NaN for k < prefix_length (clamped prefix rows) and where both Δ are 0.
    """
    b, s, o = (_as(_numpy(x), 3, name) for x, name in
               zip((base, swapped_prefix, moved_goal), ("base", "swapped_prefix", "moved_goal")))
    if not (b.shape == s.shape == o.shape):
        raise ValueError(f"copy_score: shapes differ: {b.shape}, {s.shape}, {o.shape}")
    dp = np.linalg.norm(s - b, axis=-1).mean(0)
    do = np.linalg.norm(o - b, axis=-1).mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(dp + do > 0, dp / (dp + do), np.nan)
    c[:prefix_length] = np.nan
    return {"k": np.arange(b.shape[1]), "delta_prefix": dp, "delta_obs": do, "C": c}


# ------------------------------------------------------------------------------- version 2

SUSTAIN_TICKS = 3


def fresh_reaction_time(actions, positions, goals, t_perturb, first_fresh,
                        sustain: int = SUSTAIN_TICKS, cos_threshold: float = REACTION_COS,
                        min_speed: float = REACTION_MIN_SPEED) -> tuple[np.ndarray, np.ndarray]:
    """RT v2 (docs/dynreach.md §6.2): the first tick t >= first_fresh from which the command
    points within cos >= 0.7 of a reaction goal (at speed >= min_speed) for `sustain`
    consecutive ticks, minus t_p.

    first_fresh (N,): the first executed tick of a chunk computed from a post-perturbation
    observation (capture t_c >= t_p, plus the ticks before its fresh actions execute), so a
    command that happens to point the right way before any fresh chunk runs never counts.
    Returns (rt (N,) float, reacted (N,) bool); episodes that never react are right-censored
    at T - t_p.
    """
    actions = _as(actions, 3, "actions", 2)
    positions = _as(positions, 3, "positions", 2)[:, :actions.shape[1]]
    goals = np.asarray(goals, np.float64)
    goals = goals[:, None, :] if goals.ndim == 2 else goals
    if sustain < 1:
        raise ValueError(f"sustain must be >= 1, got {sustain}")
    n, t = actions.shape[:2]
    t_perturb = np.broadcast_to(np.asarray(t_perturb, np.int64), (n,))
    first_fresh = np.broadcast_to(np.asarray(first_fresh, np.int64), (n,))
    if (first_fresh < t_perturb).any():
        raise ValueError("fresh_reaction_time: first_fresh must be >= t_perturb per episode")
    ok = (_cos_to_goals(actions, positions, goals) >= cos_threshold) & \
        (np.linalg.norm(actions, axis=-1) >= min_speed)
    # run[t] = True when ok holds on t .. t + sustain - 1 (all inside the episode).
    run = np.ones((n, t - sustain + 1), bool) if t >= sustain else np.zeros((n, 0), bool)
    for j in range(sustain):
        run &= ok[:, j:t - sustain + 1 + j]
    run &= np.arange(run.shape[1])[None, :] >= first_fresh[:, None]
    reacted = run.any(axis=1)
    first = np.where(reacted, run.argmax(axis=1), t)
    return (first - t_perturb).astype(np.float64), reacted


def excess_over_oracle(rt, reacted, oracle_rt, oracle_reacted) -> np.ndarray:
    """ERT v2 = RT - F with F the oracle's RT on the same episode and timing (NaN where the
    oracle itself never reacts: no floor exists there)."""
    rt, f = np.asarray(rt, np.float64), np.asarray(oracle_rt, np.float64)
    return np.where(np.asarray(oracle_reacted, bool), rt - f, np.nan)


def executed_copy_scores(actions, positions, old_goal, new_goal, delay: int,
                         execution_horizon: int) -> dict:
    """Copy fraction and obs-following index on the executed indices d .. s - 1 of predicted
    chunks (docs/dynreach.md §6.5, v2), per index and pooled; see `conflict_scores`."""
    actions = _as(actions, 3, "actions", 2)
    if not 0 <= delay < execution_horizon <= actions.shape[1]:
        raise ValueError(f"need 0 <= d < s <= H, got d={delay}, s={execution_horizon}, "
                         f"H={actions.shape[1]}")
    out = conflict_scores(actions[:, :execution_horizon], positions if np.ndim(positions) == 2
                          else np.asarray(positions)[:, :execution_horizon],
                          old_goal, new_goal, late_from=delay)
    a = actions[:, delay:execution_horizon]
    pos = np.asarray(positions, np.float64)
    x = pos[:, None] if pos.ndim == 2 else pos[:, delay:execution_horizon]
    c_new = cosine(a, np.asarray(new_goal, np.float64)[:, None] - x)
    c_old = cosine(a, np.asarray(old_goal, np.float64)[:, None] - x)
    out["copy_fraction_k"] = (c_old > c_new).mean(0)
    out["k"] = np.arange(delay, execution_horizon)
    return out
