"""The DynReach expert solves every scenario smoothly; kappa is what the world assumes."""

import numpy as np
import pytest

from xr0lab.dynreach.expert import (ExpertConfig, expert_command, expert_continuation,
                                 measure_kappa, rollout_expert, segment_hits_wall)
from xr0lab.dynreach.physics import DEFAULT_KAPPA
from xr0lab.dynreach.seeds import SCENARIOS
from xr0lab.dynreach.world import WorldConfig


@pytest.mark.parametrize("cup", [False, True])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_expert_solves_without_spilling(scenario, cup):
    r = rollout_expert(WorldConfig(scenario=scenario, cup=cup), range(64), noise=False)
    assert (r.success_tick >= 0).all(), scenario
    assert (r.fail_tick < 0).all()
    assert r.spill.sum() == 0.0
    assert (r.success_tick >= r.episodes.success_from).all()


def test_kappa_matches_expert():
    k = measure_kappa(range(32))
    np.testing.assert_allclose(k["kappa"], DEFAULT_KAPPA, rtol=1e-9)
    # The rate limit on both axes is the bound.
    np.testing.assert_allclose(k["max_delta"], 0.006 * np.sqrt(2), rtol=1e-9)


def test_rate_limit_and_slowing():
    cfg = ExpertConfig()
    a = expert_command(np.array([[0.2, 0.2]]), np.zeros((1, 2)), np.array([[0.8, 0.2]]), cfg)
    np.testing.assert_allclose(a, [[0.006, 0.0]])
    # Far away and already at full speed toward the goal: keep full speed.
    a = expert_command(np.array([[0.2, 0.2]]), np.array([[0.03, 0.0]]), np.array([[0.8, 0.2]]))
    np.testing.assert_allclose(a, [[0.03, 0.0]])
    # 0.05 from the goal, moving at full speed: desired 0.015, one rate-limited step down.
    a = expert_command(np.array([[0.75, 0.2]]), np.array([[0.03, 0.0]]), np.array([[0.8, 0.2]]))
    np.testing.assert_allclose(a, [[0.024, 0.0]])


def test_noise_episodes_store_clean_labels():
    r = rollout_expert(WorldConfig(scenario="S1"), range(100))
    frac = r.draws.noisy.mean()
    assert 0.15 < frac < 0.45
    clean = ~r.draws.noisy
    np.testing.assert_array_equal(r.actions[clean], r.labels[clean])
    assert not np.allclose(r.actions[r.draws.noisy], r.labels[r.draws.noisy])
    # The label at tick t is the expert's command from the executed state.
    t = 40
    lab = expert_command(r.positions[:, t], r.prev_actions[:, t], r.episodes.goal_at(
        np.full(100, t)))
    np.testing.assert_allclose(lab, r.labels[:, t])
    assert (r.success_tick[r.draws.noisy] >= 0).mean() > 0.8


def test_s3_detours_are_bimodal_and_never_cross_the_wall():
    r = rollout_expert(WorldConfig(scenario="S3"), range(64), noise=False)
    ep = r.episodes
    assert 0.25 < r.draws.side.mean() < 0.75
    # No executed step crosses the wall once it is up.
    for t in range(int(ep.t_perturb.min()), 100):
        on = ep.wall_on(np.full(ep.n, t))
        hit = segment_hits_wall(r.positions[:, t], r.positions[:, t + 1], ep.wall_centre,
                                ep.wall_axis, 0.0)
        assert not (hit & on).any()


def test_continuation_matches_rollout_when_scene_is_static():
    r = rollout_expert(WorldConfig(scenario="S1"), range(8), noise=False)
    t = 5  # before any perturbation (t_p >= 25): the frozen scene is the true one
    acts, pos = expert_continuation(r.positions[:, t], r.prev_actions[:, t],
                                    r.episodes.old_goal, 16)
    np.testing.assert_allclose(acts, r.actions[:, t:t + 16])
    np.testing.assert_allclose(pos, r.positions[:, t:t + 17])
