"""Evaluating DynReach arms through the runtime's virtual clock (docs/dynreach.md §3 and §6).

Every condition runs N test episodes as one batch of environments under one `ChunkExecutor`
(the runtime's virtual clock, the same scheduler as the real-time runner): H = 16, s = 8, the
arm's executor mode, delay d (or a per-cycle jittered d). The executed actions are stepped in a
plain world and in cup worlds (one per kappa) at once: the trajectory does not depend on the
outcome (a terminated episode keeps stepping, its outcome frozen), so every mode sees the same
actions and only the scoring differs.

Common random numbers: the test episodes are `TEST_SEEDS[:N]` in every arm, and the flow noise
of episode e at cycle c is drawn from default_rng((e, c, NOISE_SALT)) (`cycle_noise`), i.e. a
function of (episode seed, cycle index) only. Each condition records a digest of the noise
batch every call actually drew (`noise_digests`), which the sweep compares across arms.

Scenarios: `EvalSettings.scenario` is one scenario or a tuple; every condition runs in each, and
condition keys read "<scenario>|d=<d>" / "<scenario>|jitter=<d>". A policy trained on one
scenario is only meaningful on that one (the instruction tokens differ).

Throughput (continuous-reset mode) is computed with the executor restarting a slot's chunk on
reset: a restarted slot is exactly an episodic run, so successes per 1,000 ticks are
sum(successes) / sum(ticks consumed), each episode consuming ticks until its success, its spill
failure or the time-out (a renewal-reward count; it equals a continuous-reset run apart from the
last, truncated episode of each slot).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xr0lab.dynreach import metrics as bm
from xr0lab.dynreach.arms import Arm
from xr0lab.dynreach.data import TEST_SEEDS, ConflictCases, conflict_cases
from xr0lab.dynreach.expert import ExpertConfig, expert_continuation, rollout_expert
from xr0lab.dynreach.instructions import instruction_tokens
from xr0lab.dynreach.physics import DEFAULT_KAPPA
from xr0lab.dynreach.policies import (Tier0Policy, action_mask, normalise_actions,
                                      normalise_state)
from xr0lab.dynreach.render import render
from xr0lab.dynreach.scenarios import as_scenarios
from xr0lab.dynreach.world import DynReach, WorldConfig
from xr0lab.runtime.smoothness import jerk as jerk_metric
from xr0lab.runtime.smoothness import smoothness
from xr0lab.runtime import ChunkExecutor, ExecutorConfig, SampledDelay, guidance_weights

NOISE_SALT = 0x0F10_3A11
CHUNK, HORIZON = 16, 8
# Cycle index of the flow noise used by the mechanism tests (conflict test, C(k), attention):
# far past any executor cycle, so it never coincides with the noise of an evaluated chunk.
MECHANISM_NOISE_CYCLE = 10_000
# The delay whose timing the cost measurement uses: the primary condition's d.
COST_DELAY = 4


@dataclass(frozen=True)
class EvalSettings:
    scenario: str | tuple[str, ...] = "S1"
    delays: tuple[int, ...] = (0, 1, 2, 3, 4, 6, 8)
    jitter_delay: int | None = 4        # the jittered row: d per cycle from {d-1, d, d+1}
    n_episodes: int = 512
    kappa_scales: tuple[float, ...] = (1.0,)   # cup worlds at kappa = scale x DEFAULT_KAPPA
    conflict_episodes: int = 128
    conflict_prefix: int = 4
    attention_episodes: int = 32
    keep_example: int = 3               # episodes whose full trajectory is kept (frame strips)

    @property
    def scenarios(self) -> tuple[str, ...]:
        return as_scenarios(self.scenario)

    def __post_init__(self) -> None:
        self.scenarios  # validates
        if not 1 <= self.n_episodes <= len(TEST_SEEDS):
            raise ValueError(f"EvalSettings.n_episodes must be in [1, {len(TEST_SEEDS)}]")
        bad = [d for d in self.delays if not 0 <= d <= CHUNK - HORIZON]
        if bad:
            raise ValueError(f"delays {bad} violate 0 <= d <= H - s = {CHUNK - HORIZON}")


def cycle_noise(episode_seeds: np.ndarray, cycle: int, chunk: int = CHUNK) -> torch.Tensor:
    """Flow noise (N, H, 2) of cycle `cycle`: a function of (episode seed, cycle) only."""
    return torch.as_tensor(np.stack([
        np.random.default_rng((int(s), int(cycle), NOISE_SALT)).standard_normal((chunk, 2))
        for s in episode_seeds]), dtype=torch.float32)


class ArmPolicy:
    """The executor's policy callable for one arm over a batch of episodes.

    Counts its calls (the cycle index c names the noise), times each call, and keeps the noise
    keys it used and a digest of the noise it actually drew (for the common-random-numbers
    check).
    """

    def __init__(self, model: Tier0Policy, arm: Arm, episode_seeds: np.ndarray) -> None:
        self.model, self.arm, self.seeds = model, arm, np.asarray(episode_seeds)
        self.calls = 0
        self.seconds: list[float] = []
        self.noise_keys: list[tuple[int, int]] = []
        self.noise_digests: list[str] = []

    def __call__(self, obs: dict, prefix: Any, prefix_length: int,
                 prefix_weights: Any = None) -> np.ndarray:
        c = self.calls
        self.calls += 1
        noise = cycle_noise(self.seeds, c, self.model.cfg.chunk_length)
        self.noise_keys.append((int(self.seeds[0]), c))
        self.noise_digests.append(noise_digest(noise))
        start = time.perf_counter()
        if prefix_weights is not None and prefix is not None:
            out = self.model.act(obs, noise, guidance=(prefix, prefix_weights))
        else:
            out = self.model.act(obs, noise, prefix=prefix, prefix_length=prefix_length)
        self.seconds.append(time.perf_counter() - start)
        return out


def noise_digest(noise: torch.Tensor) -> str:
    """Short digest of a noise batch's exact bytes (equal digests: identical draws)."""
    return hashlib.blake2b(noise.detach().cpu().contiguous().numpy().tobytes(),
                           digest_size=8).hexdigest()


def executor_config(arm: Arm, delay: int, jitter: bool = False) -> ExecutorConfig:
    """The arm's executor timing at nominal delay d (p covers d + 1 under jitter; 0 for
    no-prefix arms, see `Arm.prefix_length`)."""
    p = arm.prefix_length(delay + (1 if jitter else 0), HORIZON, CHUNK)
    return ExecutorConfig(CHUNK, HORIZON, delay=delay, prefix_length=p, strategy=arm.runtime)


def reaction_lag(arm: Arm, config: ExecutorConfig, chunks, t_perturb) -> np.ndarray:
    """Per-episode lag of the latency floor (docs/dynreach.md §6.2): p for prefix execution; otherwise the
    delay of the cycle that first captures the perturbation (the one starting at the first
    trigger >= t_p), so a jittered delay counts as the cycle actually drew it. Episodes with no
    such cycle get the nominal d (their floor lies past the episode anyway)."""
    n = len(t_perturb)
    if arm.runtime == "prefix":
        return np.full(n, config.prefix_length, np.int64)
    triggers = np.array([c.trigger_tick for c in chunks], np.int64)
    delays = np.array([c.delay_ticks for c in chunks], np.int64)
    idx = np.searchsorted(triggers, bm.next_cycle_start(t_perturb, triggers))
    return np.where(idx < len(triggers), delays[np.minimum(idx, len(triggers) - 1)],
                    config.delay)


def run_condition(model: Tier0Policy, arm: Arm, settings: EvalSettings, delay: int, *,
                  jitter: bool = False, image_size: int | None = None,
                  scenario: str | None = None) -> dict:
    """One (arm, scenario, d) condition over the test episodes -> per-episode arrays + pooled.
    `scenario` defaults to the settings' only scenario."""
    if scenario is None:
        if len(settings.scenarios) != 1:
            raise ValueError(f"run_condition: settings hold scenarios {settings.scenarios}; "
                             "name the one to run")
        scenario = settings.scenarios[0]
    seeds = TEST_SEEDS[:settings.n_episodes]
    size = image_size or model.cfg.image_size
    plain = DynReach(WorldConfig(scenario, cup=False, image_size=size))
    cups = [DynReach(WorldConfig(scenario, cup=True, image_size=size,
                                 kappa=k * DEFAULT_KAPPA)) for k in settings.kappa_scales]
    for env in (plain, *cups):
        env.reset(seeds)
    config = executor_config(arm, delay, jitter)
    delays = SampledDelay.jitter(delay, 1, seed=NOISE_SALT) if jitter else None
    policy = ArmPolicy(model, arm, seeds)
    ex = ChunkExecutor(policy, config, delays=delays)
    for _ in range(plain.config.episode_ticks):
        a = ex.step(plain.observe)
        for env in (plain, *cups):
            env.step(a)
    tl = ex.timeline()
    ep = plain.episodes
    actions, positions = plain.actions, plain.positions
    rt, reacted = bm.reaction_time(actions, positions, ep.reaction_goals(), ep.t_perturb)
    starts = np.array([c.trigger_tick for c in tl.chunks])
    floor = bm.latency_floor(ep, positions, actions, starts,
                             reaction_lag(arm, config, tl.chunks, ep.t_perturb))
    out = {
        "delay": delay, "jitter": jitter, "prefix_length": config.prefix_length,
        "episode_seeds": seeds,
        "success_plain": plain.success.astype(np.float64),
        "ttr_plain": bm.time_to_reach(plain.success_tick, ep.t_perturb),
        "rt": rt, "reacted": reacted.astype(np.float64), "floor": floor,
        "ert": bm.excess_reaction_time(rt, floor),
        "jerk": np.array([jerk_metric(a[None]) for a in actions]),
        "duration_plain": _durations(plain),
    }
    tags = [_kappa_tag(k) for k in settings.kappa_scales]
    for tag, env in zip(tags, cups):
        out[f"success_{tag}"] = env.success.astype(np.float64)
        out[f"ttr_{tag}"] = bm.time_to_reach(env.success_tick, ep.t_perturb)
        out[f"spill_{tag}"] = bm.spill(actions, env.config.kappa)
        out[f"duration_{tag}"] = _durations(env)
    sm = smoothness(actions, tl.seams())
    counts = tl.counts()
    out["pooled"] = {
        "boundary_ratio": sm.boundary_ratio, "max_seam_jump": sm.max_seam_jump,
        "mean_step": sm.mean_step, "n_seams": sm.n_seams, "jerk": sm.jerk,
        "hold_ticks": counts["hold"] + counts["starved"], "overrun_cycles":
            counts["overrun_cycles"], "cycles": len(tl.chunks),
        "batch_seconds_per_cycle": float(np.mean(policy.seconds)),
        "throughput_plain": bm.throughput(out["success_plain"], int(out["duration_plain"].sum())),
        **{f"throughput_{tag}": bm.throughput(out[f"success_{tag}"],
                                              int(out[f"duration_{tag}"].sum()))
           for tag in tags},
    }
    out["noise_keys"] = policy.noise_keys
    out["noise_digests"] = policy.noise_digests
    out["example"] = {"seeds": seeds[:settings.keep_example],
                      "positions": positions[:settings.keep_example],
                      "actions": actions[:settings.keep_example],
                      "t_perturb": ep.t_perturb[:settings.keep_example],
                      "chunk_ids": tl.chunk_ids()}
    return out


def _kappa_tag(scale: float) -> str:
    return "cup" if scale == 1.0 else f"cup_k{scale:g}"


def _durations(env: DynReach) -> np.ndarray:
    """Ticks each episode consumed before it ended (success, spill failure or time-out)."""
    end = np.where(env.success_tick >= 0, env.success_tick,
                   np.where(env.fail_tick >= 0, env.fail_tick, env.config.episode_ticks))
    return end.astype(np.float64)


# ------------------------------------------------------------------------------ mechanism


def _obs(images: np.ndarray, state: np.ndarray, scenario: str) -> dict:
    return {"image": images, "state": state.astype(np.float32),
            "tokens": instruction_tokens(scenario, len(images))}


MOVING_CONFLICT_TICK = 8


def moving_conflict_cases(seeds, tick: int = MOVING_CONFLICT_TICK, horizon: int = CHUNK):
    """S1 conflict cases with the agent still moving: (cases, old-goal images renderer input).

    At the scheduled perturbation tick the S1 expert has usually parked on the old goal, so its
    stale plan is ~0 and "copying" it is indistinguishable from waiting. Here the state is the
    clean expert's at `tick` (accelerating toward the old goal) and the scene is shown as if the
    target had jumped at that tick: the stale plan keeps moving toward the old goal, the image
    shows the new one. Returns (ConflictCases, episodes rendering the old goal).
    """
    expert = ExpertConfig()
    r = rollout_expert(WorldConfig("S1"), seeds, expert, noise=False)
    ep = r.episodes
    rows, t = np.arange(ep.n), np.full(ep.n, tick)
    pos, prev = r.positions[rows, t], r.prev_actions[rows, t]
    stale, _ = expert_continuation(pos, prev, ep.old_goal, horizon, expert, None, r.draws.side)
    fresh, _ = expert_continuation(pos, prev, ep.new_goal, horizon, expert, None, r.draws.side)

    def showing(goal):
        goal_traj = np.broadcast_to(goal[:, None], ep.goal_traj.shape).copy()
        return dataclasses.replace(ep, goal_traj=goal_traj, t_perturb=t, success_from=t)

    return (ConflictCases(showing(ep.new_goal), t, pos, prev, ep.old_goal, ep.new_goal, stale,
                          fresh), showing(ep.old_goal))


def conflict_test(model: Tier0Policy, arm: Arm, settings: EvalSettings, *,
                  moving: bool = False, scenario: str = "S1") -> dict:
    """Conflict test and interventional copy score C(k) (docs/dynreach.md §6.5) on perturbation states.

    The image shows the new scene; the prefix (p = conflict_prefix) is the expert's plan for the
    stale one. C(k) swaps the prefix for the fresh plan's (Δ_prefix) or shows the scene of the
    tick before the perturbation (Δ_obs), with identical flow noise. No-prefix naive/sync arms
    predict without a prefix (their C is undefined); the guided arm gets the stale plan as its
    guidance target. S1 (default; `moving` = the agent still under way) or S2: the stale plan
    heads for the old goal. S3: the goal stays and the stale plan runs straight into the wall
    that just appeared; with one goal the direction scores are undefined, so only C(k) and the
    mean distance of the late actions from the fresh (detour) plan are returned.
    """
    size = model.cfg.image_size
    seeds = TEST_SEEDS[:settings.conflict_episodes]
    if moving:
        if scenario != "S1":
            raise ValueError(f"conflict_test: the moving-agent cases are S1 only, got {scenario}")
        cases, old_scene = moving_conflict_cases(seeds)
        old_img = render(old_scene, cases.tick, cases.position, size)
    else:
        cases = conflict_cases(scenario, seeds)
        old_img = render(cases.episodes, cases.tick - 1, cases.position, size)
    p = settings.conflict_prefix
    new_img = render(cases.episodes, cases.tick, cases.position, size)
    noise = cycle_noise(cases.episodes.seeds, MECHANISM_NOISE_CYCLE)

    def predict(img, prefix_chunk):
        obs = _obs(img, cases.position, scenario)
        if arm.runtime == "prefix":
            return model.act(obs, noise, prefix=prefix_chunk[:, :p], prefix_length=p)
        if arm.runtime == "guided":
            return model.act(obs, noise, guidance=(prefix_chunk[:, :HORIZON],
                                                   guidance_weights(CHUNK, p, HORIZON)))
        return model.act(obs, noise)

    base = predict(new_img, cases.stale_chunk)
    out: dict[str, Any] = {"scenario": scenario, "prefix_length": p}
    if scenario == "S3":
        late = slice(HORIZON, None)
        out["late_distance_fresh"] = float(np.linalg.norm(
            base[:, late] - cases.fresh_chunk[:, late], axis=-1).mean())
        out["late_distance_stale"] = float(np.linalg.norm(
            base[:, late] - cases.stale_chunk[:, late], axis=-1).mean())
    else:
        traj = cases.position[:, None] + np.cumsum(np.concatenate(
            [np.zeros_like(base[:, :1]), base[:, :-1]], 1), 1)
        scores = bm.conflict_scores(base, traj, cases.old_goal, cases.new_goal,
                                    late_from=HORIZON)
        out.update(obs_following_index=scores["obs_following_index"],
                   copy_fraction=scores["copy_fraction"], cos_new=scores["cos_new"],
                   cos_old=scores["cos_old"])
    if arm.runtime in ("prefix", "guided"):
        swapped = predict(new_img, cases.fresh_chunk)
        moved = predict(old_img, cases.stale_chunk)
        c = bm.copy_score(base, swapped, moved, prefix_length=p if arm.runtime == "prefix"
                          else 0)
        out.update(C=c["C"], delta_prefix=c["delta_prefix"], delta_obs=c["delta_obs"])
    return out


@torch.no_grad()
def attention_mass(model: Tier0Policy, arm: Arm, settings: EvalSettings) -> dict | None:
    """Mean attention mass on prefix columns, per layer, for early (k < p + 4) and late
    (k >= 8) noisy rows, averaged over heads, flow steps and conflict cases. A diagnostic only:
    attention is not causal influence, and the band leaks indirectly across layers."""
    if arm.runtime != "prefix":
        return None
    size = model.cfg.image_size
    cases = conflict_cases("S1", TEST_SEEDS[:settings.attention_episodes])
    p = settings.conflict_prefix
    obs = _obs(render(cases.episodes, cases.tick, cases.position, size), cases.position, "S1")
    ctx = model.context(obs)
    noise = cycle_noise(cases.episodes.seeds, MECHANISM_NOISE_CYCLE)
    A = model.cfg.padded_dim
    pre = normalise_actions(cases.stale_chunk[:, :p], A)
    noise = torch.cat([noise, noise.new_zeros(*noise.shape[:-1], A - 2)], -1)
    _, cache = model.expert.sample_with_cache(
        ctx, normalise_state(obs["state"], A), action_mask(*noise.shape[:2], A), noise=noise,
        prefix=pre,
        prefix_length=p, names_filter="dit.layers.*.attn.hook_pattern")
    L = ctx.prompt_length
    early, late, image = [], [], []
    for i in range(model.cfg.dit_layers):
        pat = cache[f"dit.layers.{i}.attn.hook_pattern"].float()   # (N, B, H, S, L + S)
        cols = pat[..., L + 2:L + 2 + p].sum(-1)                   # (N, B, H, S)
        early.append(float(cols[..., 2 + p:2 + min(p + 4, CHUNK)].mean()))
        late.append(float(cols[..., 2 + HORIZON:].mean()))
        image.append(float(pat[..., 2 + HORIZON:, :model.cfg.grid ** 2].sum(-1).mean()))
    return {"prefix_mass_early": early, "prefix_mass_late": late, "image_mass_late": image}


def cost(model: Tier0Policy, arm: Arm, repeats: int = 5) -> dict:
    """Denoising FLOPs and wall time of one chunk (batch 1) under the arm's runtime, timed as
    at d = COST_DELAY (the arm's p there; guidance weights planned for that d)."""
    from torch.utils.flop_counter import FlopCounterMode

    cases = conflict_cases("S1", TEST_SEEDS[:1])
    obs = _obs(render(cases.episodes, cases.tick, cases.position, model.cfg.image_size),
               cases.position, "S1")
    noise = cycle_noise(cases.episodes.seeds, 0)
    ctx = model.context(obs)
    kwargs: dict[str, Any] = {}
    if arm.runtime == "prefix":
        kwargs = dict(prefix=cases.stale_chunk,
                      prefix_length=arm.prefix_length(COST_DELAY, HORIZON, CHUNK))
    elif arm.runtime == "guided":
        kwargs = dict(guidance=(cases.stale_chunk[:, :HORIZON],
                                guidance_weights(CHUNK, COST_DELAY, HORIZON)))
    with FlopCounterMode(display=False) as counter:
        model.act(obs, noise, context=ctx, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.act(obs, noise, **kwargs)
        times.append(time.perf_counter() - t0)
    return {"denoise_flops": int(counter.get_total_flops()),
            "chunk_seconds_median": float(np.median(times))}


def condition_key(scenario: str, delay: int, jitter: bool = False) -> str:
    """'S1|d=4', 'S3|jitter=4': the key of one evaluated condition."""
    return f"{scenario}|{'jitter' if jitter else 'd'}={delay}"


def evaluate_arm(model: Tier0Policy, arm: Arm, settings: EvalSettings, *,
                 progress: bool = True) -> dict:
    """All conditions and mechanism tests of one trained arm. Arrays stay numpy."""
    from xr0lab.workspace.frontend import progress as progress_bar

    conds = [(d, False) for d in settings.delays]
    if settings.jitter_delay is not None:
        conds.append((settings.jitter_delay, True))
    conds = [(sc, d, jit) for sc in settings.scenarios for d, jit in conds]
    out: dict[str, Any] = {"conditions": {}}
    for sc, d, jit in progress_bar(conds, desc=f"eval {arm.id}", enabled=progress, leave=False):
        key = condition_key(sc, d, jit)
        out["conditions"][key] = run_condition(model, arm, settings, d, jitter=jit, scenario=sc)
    out["conflict"] = conflict_test(model, arm, settings)
    out["conflict_moving"] = conflict_test(model, arm, settings, moving=True)
    if "S3" in settings.scenarios:
        out["conflict_wall"] = conflict_test(model, arm, settings, scenario="S3")
    out["attention"] = attention_mass(model, arm, settings)
    out["cost"] = cost(model, arm)
    return out
