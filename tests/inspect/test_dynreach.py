"""The example model's DynReach geometry: chunk paths by the world's rules, headings, scenes,
moved targets, and K/V interventions measured as headings."""

import numpy as np
import pytest
import torch

from xr0lab.dynreach.physics import V_MAX
from xr0lab.inspect import dynreach as dr


def test_chunk_path_integrates_a_hand_made_chunk():
    chunk = [[0.03, 0.0], [0.0, 0.02], [-0.01, -0.01]]
    assert dr.chunk_path([0.2, 0.3], chunk).round(6).tolist() == [
        [0.2, 0.3], [0.23, 0.3], [0.23, 0.32], [0.22, 0.31]]


def test_chunk_path_clips_speed_and_the_square_as_the_world_does():
    from xr0lab.dynreach.world import DynReach, WorldConfig

    # 0.08 along x is clipped to v_max = 0.03, and the border stops the agent at 1.0.
    assert dr.chunk_path([0.98, 0.5], [[0.08, 0.0]]).tolist() == [[0.98, 0.5], [1.0, 0.5]]
    assert dr.chunk_path([0.5, 0.5], [[0.06, 0.08]]).round(6).tolist() == [
        [0.5, 0.5], [0.518, 0.524]]                       # norm 0.1 -> 0.03, direction kept
    # Against the world itself: the same commands from the same start give the same positions.
    rng = np.random.default_rng(0)
    env = DynReach(WorldConfig("S1"))
    env.reset(np.array([5, 6]))
    start = env.pos.copy()
    acts = rng.normal(0, 2 * V_MAX, (2, 12, 2))
    for k in range(12):
        env.step(acts[:, k])
    assert np.allclose(dr.chunk_path(start, acts)[:, -1], env.pos)
    # batched leading axes
    assert dr.chunk_path(np.zeros((3, 2)) + 0.5, np.zeros((3, 4, 2))).shape == (3, 5, 2)


def test_heading_angle_and_target_metrics():
    start = np.array([[0.5, 0.5], [0.5, 0.5]])
    east = np.tile([[0.01, 0.0]], (2, 10, 1))
    angles = dr.heading_angle(start, east, np.array([[0.9, 0.5], [0.5, 0.1]]))
    assert angles.round(6).tolist() == [0.0, 90.0]
    assert np.isnan(dr.heading_angle([0.5, 0.5], np.zeros((3, 2)), [0.9, 0.5]))
    # after 2 ticks of a chunk that turns: still heading east
    turn = np.array([[0.01, 0.0]] * 2 + [[0.0, 0.01]] * 8)
    assert float(dr.heading_angle([0.5, 0.5], turn, [0.9, 0.5], ticks=2)) == 0.0
    m = dr.target_metrics(start, east, {"t": np.array([[0.7, 0.5], [0.6, 0.5]])})
    assert np.allclose(m["t"]["end_distance"], [0.1, 0.0]) and np.allclose(m["t"]["angle_deg"], 0)
    with pytest.raises(ValueError, match="ticks"):
        dr.heading_angle([0.5, 0.5], east[0], [0.9, 0.5], ticks=11)


def test_world_chunk_undoes_the_normalisation():
    x = torch.zeros(1, 3, 32)
    x[..., 0], x[..., 5] = 1.0, 7.0    # dim 5 is padding
    assert np.allclose(dr.world_chunk(x), [[[V_MAX, 0.0]] * 3])


def test_scenes_are_the_states_just_after_the_jump():
    sc = dr.scenes("S1M", n=3, after_jump=2)
    assert len(sc) == 3 and sc.image.shape == (3, 64, 64, 3) and sc.label.shape == (3, 30, 2)
    assert (sc.tick == sc.episodes.t_perturb + 2).all()
    assert np.allclose(sc.goal, sc.episodes.new_goal)         # the visible target has jumped
    assert sc.obs["tokens"].shape[0] == 3
    # the plan drives toward the visible target, not toward where it stood before the jump
    end = dr.chunk_path(sc.state, sc.plan)[:, -1]
    before = np.linalg.norm(sc.state - sc.goal, axis=-1)
    assert (np.linalg.norm(end - sc.goal, axis=-1) < 0.5 * before).all()
    assert (dr.heading_angle(sc.state, sc.plan, sc.goal) < 20).all()
    assert dr.scenes("S1M", n=3, after_jump=2).episodes.seeds.tolist() == sc.episodes.seeds.tolist()


def _green_centre(image):
    """Centroid (x, y) of the green target's pixels, in world coordinates (render.py's grid)."""
    g = (image[..., 1] > 150) & (image[..., 0] < 100)
    i, j = np.nonzero(g)
    s = image.shape[0]
    return np.array([(j.mean() + 0.5) / s, 1 - (i.mean() + 0.5) / s])


def test_with_goal_redraws_only_the_target():
    sc = dr.scenes("S1M", n=2)
    goals = dr.far_goals(sc.goal, seed=1, start=sc.state, min_angle=90)
    moved = dr.with_goal(sc, goals)
    for b in range(2):
        assert np.abs(_green_centre(sc.image[b]) - sc.goal[b]).max() < 1.5 / 64
        assert np.abs(_green_centre(moved.image[b]) - goals[b]).max() < 1.5 / 64
    assert np.array_equal(moved.state, sc.state) and np.array_equal(moved.tick, sc.tick)
    assert np.array_equal(moved.label, sc.label)           # the training label is kept
    assert (dr.heading_angle(moved.state, moved.plan, goals) < 20).all()   # replanned


def test_far_goals_meet_their_constraints():
    goal = np.array([[0.2, 0.2], [0.8, 0.5]])
    start = np.array([[0.5, 0.5], [0.5, 0.5]])
    out = dr.far_goals(goal, seed=3, start=start, min_angle=120)
    assert (np.linalg.norm(out - goal, axis=-1) >= 0.4).all()
    assert ((out >= 0.1) & (out <= 0.9)).all()
    assert (np.linalg.norm(out - start, axis=-1) >= 0.25).all()
    cos = ((out - start) * (goal - start)).sum(-1) / (
        np.linalg.norm(out - start, axis=-1) * np.linalg.norm(goal - start, axis=-1))
    assert (np.degrees(np.arccos(cos)) >= 120).all()
    assert np.array_equal(out, dr.far_goals(goal, seed=3, start=start, min_angle=120))
    with pytest.raises(ValueError, match="constraints"):
        dr.far_goals(goal, min_distance=2.0)
    # An agent in a corner with the goal behind it: no point is 170 degrees away; the widest is
    # taken, and it is wider than any other candidate's.
    corner = dr.far_goals(np.array([[0.5, 0.5]]), start=np.array([[0.12, 0.88]]), min_angle=170)
    assert np.linalg.norm(corner - [0.5, 0.5]) >= 0.4
    to_c, to_g = corner[0] - [0.12, 0.88], np.array([0.5, 0.5]) - [0.12, 0.88]
    angle = np.degrees(np.arccos(to_c @ to_g / np.linalg.norm(to_c) / np.linalg.norm(to_g)))
    grid = np.stack(np.meshgrid(np.linspace(0.1, 0.9, 161), np.linspace(0.1, 0.9, 161)), -1)
    grid = grid.reshape(-1, 2)
    ok = (np.linalg.norm(grid - [0.5, 0.5], axis=-1) >= 0.4) & (
        np.linalg.norm(grid - [0.12, 0.88], axis=-1) >= 0.25)
    v = grid[ok] - [0.12, 0.88]
    cos = v @ to_g / np.linalg.norm(v, axis=-1) / np.linalg.norm(to_g)
    widest = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert angle == pytest.approx(widest.max(), abs=2.0) and angle < 170


def test_kv_target_sweep_records(tiny_model, example_inputs):
    ids = {k: example_inputs[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                           "image_grid_thw")}
    other_pixels = __import__("xr0lab").make_example_inputs(tiny_model.config, batch_size=2,
                                                            seed=1)["pixel_values"]
    with torch.no_grad():
        ctx = tiny_model.prefill(**ids)
        other = tiny_model.prefill(**{**ids, "pixel_values": other_pixels})
    noise = torch.randn(2, 30, 32, generator=torch.Generator().manual_seed(0))
    start = np.array([[0.5, 0.5], [0.3, 0.3]])
    targets = {"a": np.array([[0.9, 0.5], [0.3, 0.9]]), "b": np.array([[0.1, 0.5], [0.9, 0.3]])}
    recs = dr.kv_target_sweep(tiny_model, ctx, other, example_inputs["state"],
                              example_inputs["action_mask"], noise=noise, start=start,
                              targets=targets, vlm_layers=[ctx.vlm_layers[-1]],
                              tokens=ctx.image_token_mask)
    assert [(r["kind"], r["vlm_layer"]) for r in recs] == [
        ("intact", None), ("zero", ctx.vlm_layers[-1]), ("zero", "all"),
        ("swap", ctx.vlm_layers[-1]), ("swap", "all")]
    with torch.no_grad():
        intact = tiny_model.sample(ctx, example_inputs["state"], example_inputs["action_mask"],
                                   noise=noise)
    assert np.allclose(recs[0]["chunk"], dr.world_chunk(intact))
    expected = dr.target_metrics(start, recs[0]["chunk"], targets)
    assert recs[0]["angle_a"] == pytest.approx(float(np.mean(expected["a"]["angle_deg"])))
    assert recs[0]["distance_b"] == pytest.approx(float(np.mean(expected["b"]["end_distance"])))
    assert recs[0]["angles_a"].shape == (2,)


def test_describe_metrics_reads_a_build_record():
    text = dr.describe_metrics({
        "success": {"release": {"S1|d=0": {"success_plain": 1.0, "episodes": 4},
                                "S1M|d=3": {"success_plain": 0.25, "episodes": 4}}},
        "goal_probe": {"release": {"r2": 0.5}}})
    assert text == ("release: plain success S1 d=0 1.000, S1M d=3 0.250 (4 episodes each); "
                    "goal probe R^2 0.500")
