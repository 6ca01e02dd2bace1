"""DynReach datasets: splits, determinism, labels, loader, copy temptation."""

import numpy as np
import pytest

from xr0lab.dynreach.data import (TEST_SEEDS, ScenarioMix, conflict_cases, generate, generate_mix,
                               prefix_predictability, split_seeds)
from xr0lab.dynreach.expert import rollout_expert
from xr0lab.dynreach.world import WorldConfig


def test_splits_are_disjoint_and_fixed():
    tr, va, te = (set(split_seeds(s, 1000)) for s in ("train", "validation", "test"))
    assert not (tr & va or tr & te or va & te)
    np.testing.assert_array_equal(TEST_SEEDS, split_seeds("test", 512))
    with pytest.raises(ValueError, match="split"):
        split_seeds("dev", 3)


@pytest.mark.parametrize("scenario", ["S1", "S3"])
def test_generate_is_deterministic_and_labelled(scenario):
    seeds = split_seeds("train", 20)
    a, b = generate(scenario, seeds), generate(scenario, seeds)
    np.testing.assert_array_equal(a.chunk, b.chunk)
    np.testing.assert_array_equal(a.position, b.position)
    assert len(a) == 20 * 120 and a.chunk.shape == (2400, 16, 2)
    r = rollout_expert(WorldConfig(scenario=scenario), seeds)
    np.testing.assert_allclose(a.chunk[:, 0], r.labels.reshape(-1, 2), atol=1e-7)
    # valid marks rows inside the episode.
    last = a.tick == 119
    assert a.valid[last, 0].all() and not a.valid[last, 1:].any()
    assert a.valid[a.tick <= 104].all()


def test_loader_batches():
    ds = generate("S2", split_seeds("train", 4))
    batches = list(ds.batches(64, seed=3, size=32))
    assert len(batches) == len(ds) // 64
    b = batches[0]
    assert b["image"].shape == (64, 32, 32, 3) and b["image"].dtype == np.uint8
    assert b["actions"].shape == (64, 16, 2) and b["valid"].shape == (64, 16)
    assert b["tokens"].shape == (64, 8) and b["state"].shape == (64, 2)
    again = next(ds.batches(64, seed=3, size=32))
    np.testing.assert_array_equal(again["image"], b["image"])


def test_scenario_mix_is_its_parts_in_order():
    seeds = split_seeds("train", 2)
    s1, s3 = generate("S1", seeds), generate("S3", seeds)
    mix = generate_mix(("S1", "S3"), seeds)
    assert isinstance(mix, ScenarioMix) and mix.scenario == "S1+S3"
    assert len(mix) == len(s1) + len(s3) == 480
    np.testing.assert_array_equal(mix.chunk, np.concatenate([s1.chunk, s3.chunk]))
    np.testing.assert_array_equal(mix.goal[240:], s3.goal)
    # Mixed indices, out of order: each row comes from its own part with its own instruction.
    idx = np.array([300, 5, 479, 0, 239, 240])
    part, local = mix.locate(idx)
    np.testing.assert_array_equal(part, [1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(local, [60, 5, 239, 0, 239, 0])
    b = mix.batch(idx, size=32)
    one = s3.batch(np.array([60]), size=32)
    np.testing.assert_array_equal(b["image"][0], one["image"][0])
    np.testing.assert_array_equal(b["actions"][1], s1.chunk[5])
    np.testing.assert_array_equal(b["tokens"][0], one["tokens"][0])
    assert not np.array_equal(b["tokens"][0], b["tokens"][1])    # S3 vs S1 instruction
    # One scenario is the plain dataset.
    assert not isinstance(generate_mix(("S2",), seeds), ScenarioMix)
    with pytest.raises(IndexError, match="out of range"):
        mix.locate([480])
    with pytest.raises(ValueError, match="repeat"):
        ScenarioMix([s1, s1])


def test_prefix_predictability_known_cases():
    # Constant chunks: the last prefix action predicts everything perfectly.
    rng = np.random.default_rng(0)
    const = np.repeat(rng.normal(size=(50, 1, 2)), 16, axis=1)
    out = prefix_predictability(const, 4)
    np.testing.assert_allclose(out["r2"], 1.0)
    np.testing.assert_allclose(out["cosine"], 1.0)
    assert list(out["k"]) == list(range(4, 16))
    # Reversals after the prefix: cosine -1.
    flip = const.copy()
    flip[:, 4:] *= -1
    np.testing.assert_allclose(prefix_predictability(flip, 4)["cosine"], -1.0)
    with pytest.raises(ValueError, match="prefix_length"):
        prefix_predictability(const, 16)


def test_expert_chunks_make_copying_tempting():
    # Version 1's re-plan labels: the last prefix action explains the rest of the plan. (The
    # executed labels of v2 bend at a jump inside the window, tests/dynreach/test_v2.py.)
    ds = generate("S1", split_seeds("train", 40), labels="replan")
    out = prefix_predictability(ds.chunk, 4, ds.valid)
    assert out["r2"][0] > 0.9 and out["cosine"].min() > 0.8


def test_conflict_cases():
    c = conflict_cases("S1", split_seeds("test", 16))
    # The stale plan keeps heading to the old goal; the fresh one turns to the new goal.
    d_new = c.new_goal - c.position

    def cos(a, b):
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    moving = np.linalg.norm(c.fresh_chunk[:, -1], axis=-1) > 1e-3
    assert (cos(c.fresh_chunk[moving, -1], d_new[moving]) > 0.9).all()
    assert c.images(32).shape == (16, 32, 32, 3)
