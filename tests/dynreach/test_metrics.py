"""DynReach metrics on hand-made trajectories with known answers."""

import numpy as np
import pytest

from xr0lab.dynreach.expert import rollout_expert
from xr0lab.dynreach.metrics import (conflict_scores, copy_score, excess_reaction_time,
                                  latency_floor, next_cycle_start, reaction_time,
                                  restricted_mean_time_to_reach, spill, success_rate,
                                  throughput, time_to_reach)
from xr0lab.dynreach.physics import DEFAULT_KAPPA
from xr0lab.dynreach.scenarios import sample_episodes
from xr0lab.dynreach.world import WorldConfig


def test_success_and_time_to_reach():
    assert success_rate([True, False, True, True]) == 0.75
    np.testing.assert_array_equal(time_to_reach([40, -1, 100], [30, 30, 30], 60), [10, 60, 60])
    assert restricted_mean_time_to_reach([40, -1], [30, 30], 60) == 35.0


def _turn_episode(t=120, turn_at=40):
    """Agent at (0.5, 0.5) commanding +x, then +y from `turn_at`; goal straight up."""
    actions = np.zeros((1, t, 2))
    actions[0, :turn_at] = [0.03, 0.0]
    actions[0, turn_at:] = [0.0, 0.03]
    positions = np.full((1, t + 1, 2), 0.5)   # position held: only directions matter here
    return actions, positions, np.array([[0.5, 1.0]])


def test_reaction_time():
    actions, positions, goal = _turn_episode()
    rt, ok = reaction_time(actions, positions, goal, [30])
    assert ok[0] and rt[0] == 10
    # Already pointing at the goal before the perturbation: RT = 0 at t_p.
    rt, _ = reaction_time(actions, positions, goal, [45])
    assert rt[0] == 0
    # Never reacts: censored at T - t_p.
    rt, ok = reaction_time(actions[:, :40], positions[:, :41], goal, [30])
    assert not ok[0] and rt[0] == 10
    # A tiny command does not count as a reaction; a second alternative goal does.
    slow = actions.copy()
    slow[0, 40:45] = [0.0, 0.001]
    assert reaction_time(slow, positions, goal, [30])[0][0] == 15
    two = np.array([[[0.5, 0.0], [1.0, 0.5]]])   # K = 2: down or right
    assert reaction_time(actions, positions, two, [30])[0][0] == 0


def test_next_cycle_start():
    np.testing.assert_array_equal(next_cycle_start([30, 32, 33], np.arange(0, 120, 8)),
                                  [32, 32, 40])
    per_episode = np.array([[0, 7, 16, 23], [0, 9, 17, 25]])
    np.testing.assert_array_equal(next_cycle_start([8, 8], per_episode), [16, 9])


def test_latency_floor_hand_case():
    # Agent parked on the old goal (command 0) when the S1 target jumps: the expert's first
    # command points straight at the new goal, so F = wait + lag exactly.
    ep = sample_episodes("S1", [4])
    tp = int(ep.t_perturb[0])
    pos = np.broadcast_to(ep.old_goal[:, None], (1, 121, 2)).copy()
    actions = np.zeros((1, 120, 2))
    cycles = np.arange(0, 120, 8)
    t_c = cycles[cycles >= tp][0]
    f = latency_floor(ep, pos, actions, cycles, lag=3)
    assert f[0] == t_c - tp + 3
    f_sync = latency_floor(ep, pos, actions, cycles, lag=0)
    assert f_sync[0] == t_c - tp


@pytest.mark.parametrize("scenario", ["S1", "S2"])
def test_expert_has_zero_excess_reaction_time(scenario):
    # The expert itself, re-planning every tick with no delay, is the floor.
    r = rollout_expert(WorldConfig(scenario=scenario), range(32), noise=False)
    ep = r.episodes
    rt, ok = reaction_time(r.actions, r.positions, ep.reaction_goals(), ep.t_perturb)
    f = latency_floor(ep, r.positions, r.actions, np.arange(120), lag=0)
    assert ok.all()
    np.testing.assert_array_equal(excess_reaction_time(rt, f), 0.0)


def test_latency_floor_is_a_floor_for_the_s3_expert():
    # In S3 the floor lets the expert take whichever detour it can turn to sooner, so the
    # coin-flipping expert is at or above it.
    r = rollout_expert(WorldConfig(scenario="S3"), range(32), noise=False)
    ep = r.episodes
    rt, ok = reaction_time(r.actions, r.positions, ep.reaction_goals(), ep.t_perturb)
    f = latency_floor(ep, r.positions, r.actions, np.arange(120), lag=0)
    assert ok.all() and (rt >= f).all()


def test_spill_and_throughput():
    a = np.array([[[0.03, 0.0], [0.03, 0.0], [-0.03, 0.0]]])
    np.testing.assert_allclose(spill(a, 0.01), [0.02 + 0.0 + 0.05])
    r = rollout_expert(WorldConfig(cup=True), range(16), noise=False)
    np.testing.assert_array_equal(spill(r.actions, DEFAULT_KAPPA), 0.0)
    assert throughput([1, 2], ticks=600, slots=1) == 5.0
    assert throughput(np.ones(4), ticks=500, slots=4) == 2.0
    with pytest.raises(ValueError):
        throughput([1], ticks=0)


def test_conflict_scores():
    m, h = 5, 16
    pos = np.zeros((m, 2)) + 0.5
    old, new = pos + [0.3, 0.0], pos + [0.0, 0.3]
    toward_new = np.broadcast_to(np.array([0.0, 0.02]), (m, h, 2))
    toward_old = np.broadcast_to(np.array([0.02, 0.0]), (m, h, 2))
    s = conflict_scores(toward_new, pos, old, new, late_from=8)
    assert s["obs_following_index"] == pytest.approx(1.0) and s["copy_fraction"] == 0.0
    s = conflict_scores(toward_old, pos, old, new, late_from=8)
    assert s["obs_following_index"] == pytest.approx(-1.0) and s["copy_fraction"] == 1.0
    half = np.concatenate([toward_old[:, :12], toward_new[:, 12:]], axis=1)
    s = conflict_scores(half, pos, old, new, late_from=8)
    assert s["obs_following_index"] == pytest.approx(0.0) and s["copy_fraction"] == 0.5


def test_copy_score():
    m, h = 4, 16
    base = np.zeros((m, h, 2))
    swapped = np.full((m, h, 2), 2.0)
    moved = np.full((m, h, 2), 1.0)
    out = copy_score(base, swapped, moved, prefix_length=3)
    assert np.isnan(out["C"][:3]).all()
    np.testing.assert_allclose(out["C"][3:], 2.0 / 3.0)
    np.testing.assert_allclose(out["delta_obs"], np.sqrt(2.0))
    # Both deltas zero -> undefined.
    assert np.isnan(copy_score(base, base, base)["C"]).all()
    torch = pytest.importorskip("torch")
    out_t = copy_score(torch.zeros(m, h, 32), torch.ones(m, h, 32, requires_grad=True),
                       torch.zeros(m, h, 32))
    np.testing.assert_allclose(out_t["C"], 1.0)
