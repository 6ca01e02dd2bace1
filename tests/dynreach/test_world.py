"""DynReach world: determinism, dynamics, rendering, continuous-reset mode."""

import time

import numpy as np
import pytest

from xr0lab.dynreach.expert import rollout_expert
from xr0lab.dynreach.instructions import INSTRUCTIONS, tokenize
from xr0lab.dynreach.physics import WALL_HALF_THICKNESS, clip_norm
from xr0lab.dynreach.render import AGENT_COLOUR, BACKGROUND, render
from xr0lab.dynreach.scenarios import sample_episodes
from xr0lab.dynreach.seeds import SCENARIOS
from xr0lab.dynreach.world import DynReach, WorldConfig


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_episode_independent_of_batch(scenario):
    a = rollout_expert(WorldConfig(scenario=scenario), [1, 5, 2, 9, 13])
    b = rollout_expert(WorldConfig(scenario=scenario), [13, 9, 5])
    np.testing.assert_array_equal(a.positions[[1, 3, 4]], b.positions[[2, 1, 0]])
    np.testing.assert_array_equal(a.actions[[1, 3, 4]], b.actions[[2, 1, 0]])
    np.testing.assert_array_equal(a.episodes.goal_traj[[1, 3, 4]], b.episodes.goal_traj[[2, 1, 0]])
    # Different seeds give different episodes.
    assert not np.allclose(a.episodes.start[0], a.episodes.start[2])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_episode_layout_constraints(scenario):
    ep = sample_episodes(scenario, range(300))
    lo, hi = {"S3": (6, 10), "S1E": (6, 12), "S1M": (6, 60)}.get(scenario, (25, 60))
    assert ep.t_perturb.min() >= lo and ep.t_perturb.max() <= hi
    if scenario == "S1M":
        # Two jumps: the goal changes exactly at t_perturb and at t_second, nowhere else.
        changed = np.any(ep.goal_traj[:, 1:] != ep.goal_traj[:, :-1], axis=-1)
        assert (changed.sum(1) == 2).all()
        np.testing.assert_array_equal(changed.argmax(1) + 1, ep.t_perturb)
        assert (np.linalg.norm(ep.new_goal - ep.old_goal, axis=-1) > 0).all()
    if scenario == "S1E":
        assert (np.linalg.norm(ep.old_goal - ep.start, axis=-1) >= 0.45).all()
    if scenario in ("S1", "S2", "S1E"):
        assert (np.linalg.norm(ep.new_goal - ep.old_goal, axis=-1) >= 0.4).all()
        # The goal changes exactly at t_perturb and nowhere else.
        changed = np.any(ep.goal_traj[:, 1:] != ep.goal_traj[:, :-1], axis=-1)
        np.testing.assert_array_equal(changed.argmax(1) + 1, ep.t_perturb)
        assert changed.sum(1).max() == 1
    if scenario == "S3":
        on = ep.wall_on(np.full(ep.n, 10))
        np.testing.assert_array_equal(on, ep.t_perturb <= 10)


def test_s1e_jumps_while_the_expert_moves_at_full_speed():
    """S1E exists because at S1's jump the expert has almost always parked on the old goal."""
    from xr0lab.dynreach.expert import rollout_expert

    speeds = {}
    for sc in ("S1", "S1E"):
        r = rollout_expert(WorldConfig(sc), range(200), noise=False)
        rows = np.arange(r.episodes.n)
        speeds[sc] = np.linalg.norm(r.prev_actions[rows, r.episodes.t_perturb], axis=-1)
    np.testing.assert_allclose(speeds["S1E"], 0.03, atol=1e-9)
    assert np.median(speeds["S1"]) < 1e-4 and (speeds["S1"] > 0.025).mean() < 0.05


def test_action_norm_clipped_and_positions_clipped():
    env = DynReach(WorldConfig())
    env.reset([0, 1])
    env.step(np.array([[3.0, 4.0], [0.01, 0.0]]))
    np.testing.assert_allclose(env.actions[0, 0], [0.018, 0.024])   # norm 0.03, same direction
    np.testing.assert_allclose(env.actions[1, 0], [0.01, 0.0])
    for _ in range(60):
        env.step(np.array([[0.03, 0.03], [-0.03, 0.0]]))
    assert env.pos.min() >= 0 and env.pos.max() <= 1
    np.testing.assert_allclose(env.pos[0], [1.0, 1.0])
    np.testing.assert_allclose(clip_norm(np.array([[0.0, 0.0]])), [[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        env.step(np.zeros((3, 2)))


def test_wall_blocks_steps():
    env = DynReach(WorldConfig(scenario="S3"))
    env.reset([3])
    ep = env.episodes
    normal = np.array([-ep.wall_axis[0, 1], ep.wall_axis[0, 0]])
    # Put the agent just in front of the active wall and push straight through it.
    env.tick[:] = ep.t_perturb
    start = ep.wall_centre[0] - normal * (WALL_HALF_THICKNESS + 0.005)
    if np.dot(ep.start[0] - ep.wall_centre[0], normal) > 0:
        normal = -normal
        start = ep.wall_centre[0] - normal * (WALL_HALF_THICKNESS + 0.005)
    env.pos[:] = start
    for _ in range(5):
        env.step(normal[None] * 0.03)
    np.testing.assert_allclose(env.pos[0], start)


def test_render_agent_at_right_pixel():
    ep = sample_episodes("S1", [7])
    for size in (64, 32):
        for x, y in [(0.3, 0.7), (0.81, 0.12)]:
            img = render(ep, [0], np.array([[x, y]]), size, "float32")[0]
            assert img.shape == (size, size, 3)
            white = (img == AGENT_COLOUR).all(-1)
            i, j = int((1 - y) * size), int(x * size)
            assert white[i, j], (size, x, y)
            rows, cols = np.nonzero(img.min(-1) > 0.5)
            assert abs(rows.mean() + 0.5 - (1 - y) * size) < 1.0
            assert abs(cols.mean() + 0.5 - x * size) < 1.0
            np.testing.assert_allclose(img[-1, 0], BACKGROUND)  # bottom-left corner is empty
    # Anti-aliasing: rim pixels are partial.
    img = render(ep, [0], np.array([[0.5, 0.5]]), 64, "float32")[0]
    assert ((img[..., 0] > BACKGROUND[0] + 0.05) & (img[..., 0] < 0.95)).any()
    u8 = render(ep, [0], np.array([[0.5, 0.5]]), 64)
    assert u8.dtype == np.uint8 and u8.max() == 255


def test_render_shows_perturbation_only_from_t_perturb():
    for scenario in ("S1", "S2", "S3"):
        ep = sample_episodes(scenario, [11])
        tp = int(ep.t_perturb[0])
        pos = ep.start
        before = render(ep, [tp - 1], pos, 32)
        at = render(ep, [tp], pos, 32)
        assert (render(ep, [0], pos, 32) == before).all()
        assert (before != at).any(), scenario


def test_render_speed():
    ep = sample_episodes("S2", range(256))
    render(ep, np.zeros(256, int), ep.start, 64)
    t0 = time.perf_counter()
    render(ep, np.zeros(256, int), ep.start, 64)
    assert time.perf_counter() - t0 < 1.0


def test_observation_contents():
    env = DynReach(WorldConfig(scenario="S2", image_size=32))
    obs = env.reset([0, 1, 2])
    assert obs["image"].shape == (3, 32, 32, 3) and obs["image"].dtype == np.uint8
    assert set(obs) == {"image", "state", "tokens", "tick"}
    np.testing.assert_array_equal(obs["tokens"][0], tokenize(INSTRUCTIONS["S2"]))
    env = DynReach(WorldConfig(observe_velocity=True, observe_last_action=True,
                               image_dtype="float32"))
    env.reset([0])
    env.step(np.array([[0.01, 0.0]]))
    obs = env.observe()
    np.testing.assert_allclose(obs["last_action"], [[0.01, 0.0]])
    np.testing.assert_allclose(obs["velocity"], [[0.01, 0.0]], atol=1e-7)
    assert obs["image"].dtype == np.float32


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="scenario"):
        WorldConfig(scenario="S9")
    with pytest.raises(ValueError, match="image_size"):
        WorldConfig(image_size=48)
    with pytest.raises(ValueError, match="vocabulary"):
        tokenize("jump over the moon")
    with pytest.raises(RuntimeError, match="reset"):
        DynReach().step(np.zeros((1, 2)))


def test_cup_mode_fails_on_a_jerk():
    env = DynReach(WorldConfig(cup=True, kappa=0.01, spill_threshold=0.05))
    env.reset([0])
    env.step(np.array([[0.03, 0.0]]))     # |Δa| 0.03 -> spill 0.02
    assert env.fail_tick[0] == -1
    env.step(np.array([[-0.03, 0.0]]))    # |Δa| 0.06 -> spill 0.05, total 0.07 > 0.05
    assert env.fail_tick[0] == 2
    np.testing.assert_allclose(env.spills[0, :2], [0.02, 0.05])


def test_continuous_reset_mode():
    from xr0lab.dynreach.expert import ExpertConfig, expert_command

    def run(seeds, ticks=400):
        env = DynReach(WorldConfig(scenario="S1"), continuous=True)
        env.reset(seeds)
        cfg = ExpertConfig()
        resets = 0
        for _ in range(ticks):
            ep = env.episodes
            a = expert_command(env.pos, env.prev_action, ep.goal_at(env.tick), cfg)
            resets += env.step(a)["reset"].sum()
        return env, resets

    env, resets = run([0, 1, 2, 3])
    assert resets == env.completed["episodes"].sum() and resets >= 4 * 4
    assert env.completed["success"].sum() == env.completed["episodes"].sum()  # expert never fails
    assert 8 < env.throughput() < 30
    env2, _ = run([2, 3])
    np.testing.assert_array_equal(env.completed["success"][2:], env2.completed["success"])
    np.testing.assert_array_equal(env.pos[2:], env2.pos)
