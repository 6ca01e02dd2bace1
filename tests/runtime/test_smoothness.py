"""Smoothness metrics on hand-made sequences with known answers."""

import math

import numpy as np
import pytest
import torch

from xr0lab.runtime.smoothness import (Smoothness, boundary_discontinuity_ratio, jerk, max_seam_jump,
                            seams_from_chunk_ids, smoothness, step_norms)


def col(*values):
    """1-D sequence as (T, 1) actions."""
    return np.asarray(values, dtype=float)[:, None]


def mask(T, *ticks):
    m = np.zeros(T, dtype=bool)
    m[list(ticks)] = True
    return m


def test_step_norms_are_euclidean_over_the_action_vector():
    a = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])
    np.testing.assert_allclose(step_norms(a), [5.0, 0.0])


def test_seams_from_chunk_ids_marks_every_change_of_source_including_holds():
    np.testing.assert_array_equal(seams_from_chunk_ids([-1, -1, 0, 0, 1, 1, -1]),
                                  [False, False, True, False, True, False, True])


def test_boundary_ratio_of_a_single_jump():
    # Steps 1, 1, 1, 7, 1, 1: the seam step is 7, every other step is 1.
    a = col(0, 1, 2, 3, 10, 11, 12)
    assert boundary_discontinuity_ratio(a, mask(7, 4)) == pytest.approx(7.0)
    assert max_seam_jump(a, mask(7, 4)) == pytest.approx(7.0)


def test_boundary_ratio_uses_vector_norms():
    a = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 5.0]])   # steps 1 and 5
    assert boundary_discontinuity_ratio(a, mask(3, 2)) == pytest.approx(5.0)


def test_boundary_ratio_pools_episodes():
    # Episode 0: seam step 4, other steps 2, 2. Episode 1: seam step 0, other steps 1, 1.
    a = np.stack([col(0, 2, 4, 8), col(0, 1, 2, 2)])
    seams = np.stack([mask(4, 3), mask(4, 3)])
    expected = ((4 + 0) / 2) / ((2 + 2 + 1 + 1) / 4)
    assert boundary_discontinuity_ratio(a, seams) == pytest.approx(expected)
    assert max_seam_jump(a, seams) == pytest.approx(4.0)


def test_boundary_ratio_edge_cases():
    a = col(0, 1, 2, 3)
    assert math.isnan(boundary_discontinuity_ratio(a, mask(4)))            # no seam
    assert boundary_discontinuity_ratio(col(0, 0, 5, 5), mask(4, 2)) == math.inf
    assert max_seam_jump(a, mask(4)) == 0.0


def test_jerk_of_a_parabola_is_its_second_difference():
    t = np.arange(6, dtype=float)
    assert jerk(col(*(t ** 2))) == pytest.approx(2.0)
    assert jerk(col(*(3 * t + 1))) == pytest.approx(0.0)
    both = np.stack([t ** 2, t ** 2], axis=-1)
    assert jerk(both) == pytest.approx(2 * math.sqrt(2))
    assert math.isnan(jerk(col(0, 1)))


def test_torch_and_numpy_agree():
    a = np.random.default_rng(0).normal(size=(2, 9, 3))
    seams = mask(9, 3, 6)
    assert smoothness(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(seams)) == \
        pytest.approx(smoothness(a.astype(np.float32), seams))


def test_smoothness_record():
    s = smoothness(col(0, 1, 2, 3, 10, 11, 12), mask(7, 4))
    assert s == Smoothness(boundary_ratio=pytest.approx(7.0), jerk=pytest.approx(12 / 5),
                           max_seam_jump=pytest.approx(7.0), mean_step=pytest.approx(2.0),
                           n_seams=1)


@pytest.mark.parametrize("seams, message", [
    (mask(4, 0), "tick 0 has no previous"),
    (np.array([0, 1, 0, 0]), "boolean"),
    (mask(5, 2), "does not broadcast"),
])
def test_bad_seams_are_rejected(seams, message):
    with pytest.raises(ValueError, match=message):
        boundary_discontinuity_ratio(col(0, 1, 2, 3), seams)


def test_actions_need_a_time_and_an_action_axis():
    with pytest.raises(ValueError, match=r"\(\.\.\., T, A\)"):
        jerk(np.arange(5.0))
