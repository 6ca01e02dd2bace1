"""Version 2's evaluation (docs/dynreach.md §3, §6): XR-0's timeline, the oracle, fresh ERT.

Axis legend: N test episodes, T ticks, H chunk (30), s execution horizon (20), d delay, p
prefix length (= d), w band width, 2 = (x, y).

Every condition runs N test episodes of one scenario as one batch under one `ChunkExecutor`
(the runtime's virtual clock), with the arm's strategy, H = 30, s = 20, delay d and p = d. Beside
it, the oracle (arm O, `oracle.OraclePolicy`) runs through the same executor configuration on
the same episodes: its reaction time is each episode's floor F, and ERT = RT - F counts only
fresh reactions sustained for 3 ticks (`metrics.fresh_reaction_time`).

The mechanism test (conflict test and C(k)) uses the states of clean expert S1M episodes at
their jump tick, where the expert moves at full speed: the prefix (p = d rows) is the expert's
plan toward the old goal, the image shows the new one. Copy fraction and C(k) are measured on
the executed indices d .. s - 1 (and on the late ones, >= p + w, that the band hides from the
prefix), for the arm and for the oracle given exactly the same inputs: a policy copies when it
exceeds the oracle, which also bends only gradually.

Common random numbers as in version 1: test episode seeds are one fixed list, and the flow noise
of episode e at cycle c is a function of (e, c) only (`evaluate.cycle_noise`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from xr0lab.dynreach import metrics as bm
from xr0lab.dynreach.arms import Arm, beyond_band
from xr0lab.dynreach.data import ConflictCases, conflict_cases, split_seeds
from xr0lab.dynreach.evaluate import (MECHANISM_NOISE_CYCLE, ArmPolicy, _kappa_tag,
                                      cycle_noise, noise_digest, reaction_lag)
from xr0lab.dynreach.instructions import instruction_tokens
from xr0lab.dynreach.oracle import OraclePolicy, privileged_observe
from xr0lab.dynreach.physics import DEFAULT_KAPPA, V_MAX
from xr0lab.dynreach.render import render
from xr0lab.dynreach.scenarios import as_scenarios
from xr0lab.dynreach.world import DynReach, WorldConfig
from xr0lab.runtime import ChunkExecutor, ExecutorConfig
from xr0lab.runtime.smoothness import jerk as jerk_metric
from xr0lab.runtime.smoothness import smoothness

V2_CHUNK, V2_HORIZON = 30, 20
V2_DELAYS = (0, 1, 2, 3, 4, 6)
PRIMARY_DELAY = 3
WINDOWS = (1, 2, 4, 8)
# Test episodes of version 2 never overlap version 1's (test split offsets 0..511). The pilot
# and the confirmatory study use disjoint ranges of their own (`V2EvalSettings.test_offset`).
PILOT_TEST_OFFSET = 50_000
CONFIRM_TEST_OFFSET = 100_000


@dataclass(frozen=True)
class V2EvalSettings:
    scenario: str | tuple[str, ...] = ("S1M", "S1")
    delays: tuple[int, ...] = V2_DELAYS
    execution_horizon: int = V2_HORIZON
    n_episodes: int = 1024
    test_offset: int = CONFIRM_TEST_OFFSET
    kappa_scales: tuple[float, ...] = (1.0,)
    conflict_episodes: int = 256
    conflict_delay: int = PRIMARY_DELAY
    # Delays of the scenarios after the first (the negative control S1): None = `delays`.
    control_delays: tuple[int, ...] | None = None
    band_window: int = 4                # "late" executed indices are >= p + band_window
    keep_example: int = 3

    @property
    def scenarios(self) -> tuple[str, ...]:
        return as_scenarios(self.scenario)

    def conditions(self) -> list[tuple[str, int]]:
        """(scenario, d) pairs: every delay in the first scenario, `control_delays` (or every
        delay) in the others."""
        first, *rest = self.scenarios
        other = self.delays if self.control_delays is None else self.control_delays
        return [(first, d) for d in self.delays] + [(sc, d) for sc in rest for d in other]

    def test_seeds(self) -> np.ndarray:
        return split_seeds("test", self.n_episodes, self.test_offset)

    def __post_init__(self) -> None:
        self.scenarios  # validates
        if self.n_episodes < 1:
            raise ValueError(f"V2EvalSettings.n_episodes must be >= 1, got {self.n_episodes}")
        if not 0 <= self.conflict_delay < self.execution_horizon:
            raise ValueError("V2EvalSettings.conflict_delay must lie in [0, s)")

    def check_chunk(self, chunk: int) -> None:
        bad = [d for d in (*self.delays, *(self.control_delays or ()))
               if not 0 <= d <= chunk - self.execution_horizon]
        if bad:
            raise ValueError(f"delays {bad} violate 0 <= d <= H - s = "
                             f"{chunk - self.execution_horizon} (H = {chunk}, "
                             f"s = {self.execution_horizon})")


def band_table(delays=V2_DELAYS, windows=WINDOWS, execution_horizon: int = V2_HORIZON) -> dict:
    """{"d=3": {"w=4": 13, ...}, ...}: executed indices beyond the band edge p + w at p = d (every
    results file prints it; a row of zeros could not test the mask)."""
    return {f"d={d}": {f"w={w}": beyond_band(d, w, execution_horizon) for w in windows}
            for d in delays}


def executor_config_v2(arm: Arm, delay: int, chunk: int, horizon: int) -> ExecutorConfig:
    """The arm's executor timing at delay d: p = d for prefix arms (0 otherwise)."""
    p = arm.prefix_length(delay, horizon, chunk, min_prefix=0)
    return ExecutorConfig(chunk, horizon, delay=delay, prefix_length=p, strategy=arm.runtime)


def _roll(policy, env: DynReach, cups, config: ExecutorConfig, observe) -> Any:
    ex = ChunkExecutor(policy, config)
    for _ in range(env.config.episode_ticks):
        a = ex.step(observe)
        for e in (env, *cups):
            e.step(a)
    return ex.timeline()


def _worlds(scenario: str, size: int, kappa_scales, seeds):
    plain = DynReach(WorldConfig(scenario, cup=False, image_size=size))
    cups = [DynReach(WorldConfig(scenario, cup=True, image_size=size, kappa=k * DEFAULT_KAPPA))
            for k in kappa_scales]
    for env in (plain, *cups):
        env.reset(seeds)
    return plain, cups


def _outcomes(prefix: str, plain: DynReach, cups, tags, tl, arm: Arm, config,
              sustain: int = bm.SUSTAIN_TICKS) -> dict:
    ep = plain.episodes
    acts, pos = plain.actions, plain.positions
    starts = np.array([c.trigger_tick for c in tl.chunks])
    lag = reaction_lag(arm, config, tl.chunks, ep.t_perturb)
    fresh = np.minimum(bm.next_cycle_start(ep.t_perturb, starts) + lag, ep.ticks)
    rt, reacted = bm.fresh_reaction_time(acts, pos, ep.reaction_goals(), ep.t_perturb, fresh,
                                         sustain)
    n = np.arange(ep.n)
    out = {f"{prefix}rt": rt, f"{prefix}reacted": reacted.astype(np.float64),
           f"{prefix}first_fresh": fresh.astype(np.float64),
           f"{prefix}success_plain": plain.success.astype(np.float64),
           f"{prefix}moving_at_jump": (np.linalg.norm(acts[n, np.maximum(ep.t_perturb - 1, 0)],
                                                      axis=-1) >= 0.8 * V_MAX).astype(np.float64),
           f"{prefix}jerk": np.array([jerk_metric(a[None]) for a in acts])}
    for tag, env in zip(tags, cups):
        out[f"{prefix}success_{tag}"] = env.success.astype(np.float64)
        out[f"{prefix}spill_{tag}"] = bm.spill(acts, env.config.kappa)
    return out


def run_condition_v2(model, arm: Arm, settings: V2EvalSettings, delay: int, scenario: str, *,
                     chunk: int = V2_CHUNK, image_size: int = 64) -> dict:
    """One (arm, scenario, d) condition: the arm and the oracle on the same episodes and timing.

    `model` is a trained tier-0 policy, or None for the oracle arm itself (then the arm's
    arrays are the oracle's and ERT is 0 by construction).
    """
    settings.check_chunk(chunk)
    seeds = settings.test_seeds()
    s = settings.execution_horizon
    config = executor_config_v2(arm, delay, chunk, s)
    tags = [_kappa_tag(k) for k in settings.kappa_scales]
    # The oracle floor: the same executor configuration and episodes, the privileged expert.
    o_plain, o_cups = _worlds(scenario, image_size, settings.kappa_scales, seeds)
    o_tl = _roll(OraclePolicy(chunk), o_plain, o_cups, config, privileged_observe(o_plain))
    oracle = _outcomes("oracle_", o_plain, o_cups, tags, o_tl, arm, config)
    t0 = time.perf_counter()
    if arm.oracle or model is None:
        plain, cups, tl, policy = o_plain, o_cups, o_tl, None
    else:
        plain, cups = _worlds(scenario, image_size, settings.kappa_scales, seeds)
        policy = ArmPolicy(model, arm, seeds)
        tl = _roll(policy, plain, cups, config, plain.observe)
    mine = _outcomes("", plain, cups, tags, tl, arm, config)
    out: dict[str, Any] = {"delay": delay, "prefix_length": config.prefix_length,
                           "scenario": scenario, "episode_seeds": seeds, **mine, **oracle}
    out["ert"] = bm.excess_over_oracle(mine["rt"], mine["reacted"], oracle["oracle_rt"],
                                       oracle["oracle_reacted"])
    sm = smoothness(plain.actions, tl.seams())
    counts = tl.counts()
    out["pooled"] = {
        "boundary_ratio": sm.boundary_ratio, "max_seam_jump": sm.max_seam_jump,
        "jerk": sm.jerk, "hold_ticks": counts["hold"] + counts["starved"],
        "overrun_cycles": counts["overrun_cycles"], "cycles": len(tl.chunks),
        "invalid_chunks": counts.get("invalid_chunks", 0),
        "seconds": time.perf_counter() - t0,
        "beyond_band": {f"w={w}": beyond_band(delay, w, s, config.prefix_length)
                        for w in WINDOWS},
    }
    if policy is not None:
        out["noise_keys"] = policy.noise_keys
        out["noise_digests"] = policy.noise_digests
    k = settings.keep_example
    out["example"] = {"seeds": seeds[:k], "positions": plain.positions[:k],
                      "actions": plain.actions[:k], "t_perturb": plain.episodes.t_perturb[:k],
                      "t_second": plain.episodes.t_second[:k]
                      if plain.episodes.t_second is not None else None,
                      "chunk_ids": tl.chunk_ids()[:k] if tl.chunk_ids().ndim > 1
                      else tl.chunk_ids()}
    return out


# ------------------------------------------------------------------------------ mechanism


@dataclass(frozen=True)
class MovingConflict(ConflictCases):
    """S1M conflict states (the clean expert at its jump tick, moving at >= 0.8 v_max) with the
    images of the new scene and of the old one (the tick before the jump, same position)."""

    new_image: np.ndarray
    old_image: np.ndarray


def moving_conflict(seeds, chunk: int = V2_CHUNK, image_size: int = 64) -> MovingConflict:
    """The conflict states of S1M test episodes `seeds` (`data.conflict_cases`), with the images
    of the new scene and of the tick before the jump (the old goal, same agent position)."""
    c = conflict_cases("S1M", seeds, chunk)
    return MovingConflict(**{f.name: getattr(c, f.name) for f in dataclasses.fields(c)},
                          new_image=c.images(image_size),
                          old_image=render(c.episodes, c.tick - 1, c.position, image_size))


def _oracle_chunk(cases: MovingConflict, goal: np.ndarray, prefix: np.ndarray | None,
                  chunk: int) -> np.ndarray:
    obs = {"oracle_pos": cases.position, "oracle_prev": cases.prev_action,
           "oracle_goal": goal, "oracle_wall": None}
    return OraclePolicy(chunk)(obs, prefix, 0 if prefix is None else prefix.shape[1])


def _copy_summary(base, swapped, moved, cases: MovingConflict, d: int, s: int, w: int,
                  has_prefix: bool) -> dict:
    traj = cases.position[:, None] + np.cumsum(np.concatenate(
        [np.zeros_like(base[:, :1]), base[:, :-1]], 1), 1)
    sc = bm.executed_copy_scores(base, traj, cases.old_goal, cases.new_goal, d, s)
    late = slice(max(d + w, d) - d, None)   # indices >= p + w within d .. s - 1
    out = {"k": sc["k"], "copy_fraction": sc["copy_fraction"],
           "copy_fraction_k": sc["copy_fraction_k"],
           "copy_fraction_late": float(np.mean(sc["copy_fraction_k"][late])),
           "obs_following_index": sc["obs_following_index"]}
    if has_prefix:
        c = bm.copy_score(base, swapped, moved, prefix_length=d)
        ck = c["C"][d:s]
        out.update(C_k=ck, C_executed=float(np.nanmean(ck)),
                   C_late=float(np.nanmean(ck[late])),
                   delta_prefix_k=c["delta_prefix"][d:s], delta_obs_k=c["delta_obs"][d:s])
    return out


def conflict_v2(model, arm: Arm, settings: V2EvalSettings, *, chunk: int = V2_CHUNK,
                image_size: int = 64, cases: MovingConflict | None = None) -> dict:
    """Copy fraction and C(k) on executed indices for the arm (None: the oracle) and for the
    oracle on the same states, prefix and goals (docs/dynreach.md §6.5, v2)."""
    d, s, w = settings.conflict_delay, settings.execution_horizon, settings.band_window
    if cases is None:
        seeds = split_seeds("test", settings.conflict_episodes, settings.test_offset)
        cases = moving_conflict(seeds, chunk, image_size)
    stale_pre = cases.stale_chunk[:, :d] if d else None
    fresh_pre = cases.fresh_chunk[:, :d] if d else None
    o = [_oracle_chunk(cases, cases.new_goal, stale_pre, chunk),
         _oracle_chunk(cases, cases.new_goal, fresh_pre, chunk),
         _oracle_chunk(cases, cases.old_goal, stale_pre, chunk)]
    out = {"delay": d, "prefix_length": d, "window": w,
           "oracle": _copy_summary(*o, cases, d, s, w, d > 0)}
    if model is None or arm.oracle:
        out["arm"] = out["oracle"]
        return out
    noise = cycle_noise(cases.episodes.seeds, MECHANISM_NOISE_CYCLE, chunk)
    tokens = instruction_tokens("S1M", len(cases.episodes.seeds))
    use_prefix = arm.runtime == "prefix" and d > 0

    def predict(img, prefix_chunk):
        obs = {"image": img, "state": cases.position.astype(np.float32), "tokens": tokens}
        if use_prefix:
            return model.act(obs, noise, prefix=prefix_chunk[:, :d], prefix_length=d)
        return model.act(obs, noise)

    base = predict(cases.new_image, cases.stale_chunk)
    swapped = predict(cases.new_image, cases.fresh_chunk)
    moved = predict(cases.old_image, cases.stale_chunk)
    out["arm"] = _copy_summary(base, swapped, moved, cases, d, s, w, use_prefix)
    out["noise_digest"] = noise_digest(noise)
    return out


def evaluate_arm_v2(model, arm: Arm, settings: V2EvalSettings, *, chunk: int = V2_CHUNK,
                    image_size: int = 64, progress: bool = True) -> dict:
    """Every condition and the mechanism test of one arm (model None for the oracle arm)."""
    from xr0lab.workspace.frontend import progress as progress_bar

    settings.check_chunk(chunk)
    conds = settings.conditions()
    out: dict[str, Any] = {"conditions": {}, "band_table": band_table(
        settings.delays, WINDOWS, settings.execution_horizon)}
    for sc, d in progress_bar(conds, desc=f"eval {arm.id}", enabled=progress, leave=False):
        out["conditions"][f"{sc}|d={d}"] = run_condition_v2(model, arm, settings, d, sc,
                                                            chunk=chunk, image_size=image_size)
    out["conflict"] = conflict_v2(model, arm, settings, chunk=chunk, image_size=image_size)
    return out
